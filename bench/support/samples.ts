import type { LoadFigures } from './parsers.js';
import type { CpuSample } from './processes.js';

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

/** One load generator run: one benchmark, one path, one round. */
export interface LoadSample {
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
  readonly error?: string;
}
