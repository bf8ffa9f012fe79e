import type { LoadFigures } from './parsers.js';
import type { CpuSample } from './processes.js';

/**
 * The latency series whose statement carries a new literal every time, as pgbench -S sends: issue
 * 12's added-latency target is read from it.
 */
export const NEW_LITERAL_QUERY = 'small row, another literal each time';

/** One path's figures for one statement shape in one round of the latency measurement. */
export interface LatencyResult {
  readonly path: string;
  readonly query: string;
  readonly iterations: number;
  readonly medianUs?: number;
  readonly p99Us?: number;
  readonly meanUs?: number;
  readonly error?: string;
}

/** Which workload a sample measured, independent of its settings: issue 12's verdict looks samples up by it. */
export type LoadKind =
  | 'pgbench-select'
  | 'pgbench-select-extended'
  | 'pgbench-select-c1'
  | 'pgbench-tpcb'
  | 'redis-get'
  | 'redis-set'
  | 'redis-get-pipelined'
  | 'redis-set-pipelined'
  | 'http-get';

/** CPU of the work Sluice causes outside its own processes, over the same run. */
export interface CausedCpu {
  /** The event store's PostgreSQL backends (connections to the store's database). */
  readonly storeUs: number;
  /** nats-server (shared: on a busy machine it includes other users' work). */
  readonly natsUs: number;
}

/** One load generator run: one benchmark, one path, one round. */
export interface LoadSample {
  readonly kind: LoadKind;
  /** Section and table the sample belongs to, e.g. `pgbench select-only -c 8 -j 2`. */
  readonly bench: string;
  readonly section: 'postgres' | 'redis' | 'http';
  readonly path: string;
  readonly round: number;
  readonly unit: 'tps' | 'rps';
  /** What one operation is, for the CPU column: `transaction`, `request`. */
  readonly operation: string;
  readonly figures?: LoadFigures;
  readonly cpu?: CpuSample;
  /** Sluice's path only: CPU of the event store's backends and of nats-server over the run and until its events are stored. */
  readonly caused?: CausedCpu;
  /**
   * Sluice's path only: milliseconds from the end of the load until the event store was still, the
   * audit's backlog. The CPU figures run until then, so they include storing the load's events.
   * Undefined: the store was still storing at the give-up (a problem is reported).
   */
  readonly auditBacklogMs?: number;
  readonly error?: string;
}
