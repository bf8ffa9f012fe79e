import type { AuditCatchUp } from '../../test/support/audit-keeps-up.js';
import { IDLE_SESSION_TARGET_KIB, type IdleSessionsResult } from './idle-sessions.js';
import { NEW_LITERAL_QUERY, type LatencyResult, type LoadKind, type LoadSample } from './samples.js';
import { median } from './stats.js';

/**
 * Issue 12's targets, each judged from the run's own figures: one row per target with the value
 * measured, met or GAP, and how far from the bound. A GAP names the workload whose profile explains it.
 */
export type TargetId =
  | 'select-simple-direct'
  | 'select-simple-pgbouncer'
  | 'select-extended-direct'
  | 'select-extended-pgbouncer'
  | 'latency-c1'
  | 'cpu-all'
  | 'cpu-proxy'
  | 'redis-get'
  | 'redis-get-pipelined'
  | 'http-json'
  | 'audit'
  | 'memory';

export type TargetStatus = 'met' | 'GAP' | 'not measured';

export interface TargetResult {
  readonly id: TargetId;
  /** What is measured, in the issue's words. */
  readonly target: string;
  /** The bound, e.g. `>= 0.45 of direct`. */
  readonly goal: string;
  /** The measured value, formatted, with what it was read from. */
  readonly measured: string;
  readonly value?: number;
  readonly status: TargetStatus;
  /** How far the value is from the bound: the margin when met, the shortfall when a GAP. */
  readonly howFar: string;
  /** The workload whose profile explains a GAP (none for memory: a CPU profile does not show it). */
  readonly workload?: LoadKind;
}

export interface VerdictInput {
  readonly load: readonly LoadSample[];
  readonly latency: readonly (readonly LatencyResult[])[];
  /** Round 0: the long run after the rounds (`--audit-seconds`), labelled in `load`. */
  readonly auditKeepsUp: readonly (AuditCatchUp & { readonly round: number; readonly load?: string })[];
  readonly idleSessions: readonly IdleSessionsResult[];
  /** Sessions the memory target is stated at (2,000). */
  readonly idleSessionsWanted: number;
  /** pgbench -c of the select-only runs (8). */
  readonly clients: number;
}

/**
 * What a bare Node.js TCP pipe (`node-pipe`: no parsing, no policy, no recording) reaches in the
 * same rounds: the floor under any proxy built on Node's sockets, against which the targets read.
 */
export interface NodePipeFloor {
  readonly protocol: 'simple' | 'extended';
  /** The pipe's throughput over direct's, median over rounds. */
  readonly ofDirect: number;
  /** Sluice's throughput over the pipe's, median over rounds. */
  readonly sluiceOfPipe?: number;
  /** The pipe process's CPU per transaction (/proc). */
  readonly cpuUs?: number;
}

export interface Verdict {
  readonly rows: readonly TargetResult[];
  /** The bare Node.js pipe's figures for pgbench -S -c N, per protocol, where it ran. */
  readonly nodePipe: readonly NodePipeFloor[];
  /** The run started on a busy machine: every figure understates Sluice and the verdict is not comparable. */
  readonly comparable: boolean;
  readonly met: number;
  readonly gaps: number;
  readonly notMeasured: number;
}

const us = (value: number): string => (Math.abs(value) >= 1000 ? `${(value / 1000).toFixed(2)} ms` : `${Math.round(value)} µs`);

/** At least `bound`: the margin, or the shortfall and the factor still needed. */
const atLeast = (value: number, bound: number, unit: (n: number) => string = (n) => n.toFixed(2)): Pick<TargetResult, 'status' | 'howFar'> =>
  value >= bound
    ? { status: 'met', howFar: `${unit(value - bound)} above the bound` }
    : { status: 'GAP', howFar: `${unit(bound - value)} short: needs ×${(bound / Math.max(value, 1e-9)).toFixed(1)}` };

/** At most `bound`: the room left, or the excess and the factor it must shrink by. */
const atMost = (value: number, bound: number, unit: (n: number) => string): Pick<TargetResult, 'status' | 'howFar'> =>
  value <= bound
    ? { status: 'met', howFar: `${unit(bound - value)} to spare` }
    : { status: 'GAP', howFar: `${unit(value - bound)} over: must shrink ×${(value / Math.max(bound, 1e-9)).toFixed(1)}` };

const notMeasured = (why: string): Pick<TargetResult, 'status' | 'howFar' | 'measured'> => ({ status: 'not measured', howFar: '—', measured: why });

const usable = (sample: LoadSample | undefined): sample is LoadSample => sample !== undefined && !sample.error && sample.figures?.throughput !== undefined;

/** Per round, the path's throughput over the base path's in the same round; the median over rounds. */
export const throughputRatio = (load: readonly LoadSample[], kind: LoadKind, path: string, basePath: string): number | undefined =>
  median(
    load
      .filter((sample) => sample.kind === kind && sample.path === path && usable(sample))
      .map((sample) => {
        const base = load.find((other) => other.kind === kind && other.path === basePath && other.round === sample.round);
        return usable(base) ? sample.figures!.throughput! / base.figures!.throughput! : undefined;
      }),
  );

/** Median over rounds of a CPU figure per operation of a path's (Sluice's unless named) runs of one workload. */
const cpuPerOperation = (load: readonly LoadSample[], kind: LoadKind, pick: (sample: LoadSample) => number | undefined, path = 'sluice'): number | undefined =>
  median(
    load
      .filter((sample) => sample.kind === kind && sample.path === path && usable(sample) && sample.cpu && sample.figures?.operations)
      .map((sample) => {
        const value = pick(sample);
        return value === undefined ? undefined : value / sample.figures!.operations!;
      }),
  );

const ratioRow = (
  input: VerdictInput,
  id: TargetId,
  target: string,
  kind: LoadKind,
  basePath: 'direct' | 'pgbouncer',
  bound: number,
): TargetResult => {
  const goal = `>= ${bound.toFixed(2)} of ${basePath}`;
  const rounds = input.load.filter((sample) => sample.kind === kind && sample.path === 'sluice' && usable(sample)).length;
  const value = throughputRatio(input.load, kind, 'sluice', basePath);
  if (value === undefined) {
    const ran = input.load.some((sample) => sample.kind === kind && sample.path === 'sluice');
    return { id, target, goal, workload: kind, ...notMeasured(ran ? `failed (see What failed)` : `not run`) };
  }
  return { id, target, goal, value, workload: kind, measured: `${value.toFixed(2)} (median of ${rounds} round${rounds === 1 ? '' : 's'})`, ...atLeast(value, bound) };
};

const latencyRow = (input: VerdictInput): TargetResult => {
  const base = { id: 'latency-c1', target: 'added latency of one SELECT at -c 1, over pgbouncer\'s, at the median', goal: '<= +40 µs', workload: 'pgbench-select-c1' } as const;
  const added = median(
    input.latency.map((round) => {
      const mine = round.find((result) => result.query === NEW_LITERAL_QUERY && result.path === 'sluice');
      const theirs = round.find((result) => result.query === NEW_LITERAL_QUERY && result.path === 'pgbouncer');
      return mine?.medianUs === undefined || theirs?.medianUs === undefined ? undefined : mine.medianUs - theirs.medianUs;
    }),
  );
  if (added === undefined) return { ...base, ...notMeasured(input.latency.length === 0 ? 'not run' : 'failed (see What failed)') };
  return {
    ...base,
    value: added,
    measured: `+${us(added)} (node-postgres, ${NEW_LITERAL_QUERY}: Sluice's median − pgbouncer's, same round)`,
    ...atMost(added, 40, us),
  };
};

const cpuRows = (input: VerdictInput): TargetResult[] => {
  const kind = 'pgbench-select';
  const proxy = cpuPerOperation(input.load, kind, (sample) => sample.cpu?.proxyUs);
  const own = cpuPerOperation(input.load, kind, (sample) => sample.cpu?.allUs);
  const store = cpuPerOperation(input.load, kind, (sample) => sample.caused?.storeUs);
  const nats = cpuPerOperation(input.load, kind, (sample) => sample.caused?.natsUs);
  // Summed per round, then the median: the parts' medians may come from different rounds.
  const all = cpuPerOperation(input.load, kind, (sample) => (sample.cpu ? sample.cpu.allUs + (sample.caused?.storeUs ?? 0) + (sample.caused?.natsUs ?? 0) : undefined));
  const allRow: TargetResult =
    all === undefined
      ? { id: 'cpu-all', target: 'CPU per governed SELECT, all Sluice processes and the PostgreSQL and NATS work they cause', goal: '<= 60 µs', workload: kind, ...notMeasured('not run') }
      : {
          id: 'cpu-all',
          target: 'CPU per governed SELECT, all Sluice processes and the PostgreSQL and NATS work they cause',
          goal: '<= 60 µs',
          workload: kind,
          value: all,
          measured: `${us(all)} (Sluice's processes ${us(own!)}${store === undefined ? '' : `, event store backends ${us(store)}`}${nats === undefined ? '' : `, nats-server ${us(nats)} (shared with other users)`}; pgbench -S -c ${input.clients}, /proc)`,
          ...atMost(all, 60, us),
        };
  const proxyRow: TargetResult =
    proxy === undefined
      ? { id: 'cpu-proxy', target: 'CPU per governed SELECT, the proxy alone', goal: '<= 25 µs', workload: kind, ...notMeasured('not run') }
      : { id: 'cpu-proxy', target: 'CPU per governed SELECT, the proxy alone', goal: '<= 25 µs', workload: kind, value: proxy, measured: `${us(proxy)} (pgbench -S -c ${input.clients}, /proc)`, ...atMost(proxy, 25, us) };
  return [allRow, proxyRow];
};

const auditRow = (input: VerdictInput): TargetResult => {
  const base = { id: 'audit', target: `the audit keeps up: every statement of pgbench -S -c ${input.clients} in the store`, goal: 'within 2 s, none lost or doubled', workload: 'pgbench-select' } as const;
  const checks = input.auditKeepsUp;
  if (checks.length === 0) return { ...base, ...notMeasured('not run') };
  const failed = checks.filter((check) => !check.ok);
  const slowest = Math.max(...checks.map((check) => check.caughtUpMs ?? Number.POSITIVE_INFINITY));
  const lost = Math.max(0, ...checks.map((check) => check.expected - check.recorded));
  const doubled = checks.reduce((sum, check) => sum + check.doubled, 0);
  const long = checks.find((check) => check.round === 0);
  const measured = `${checks.length - failed.length} of ${checks.length} checks pass${long ? ` (one after ${long.load ?? 'the long run'})` : ', after the rounds\' runs only'}; slowest ${Number.isFinite(slowest) ? `${slowest} ms` : 'not within 2 s'}, ${lost} missing, ${doubled} doubled`;
  if (failed.length === 0) return { ...base, value: slowest, measured, status: 'met', howFar: `${2_000 - slowest} ms to spare` };
  const why = [
    Number.isFinite(slowest) ? (slowest > 2_000 ? `${slowest - 2_000} ms late` : '') : 'not caught up within 2 s',
    lost > 0 ? `${lost} statements missing` : '',
    doubled > 0 ? `${doubled} doubled` : '',
    failed.some((check) => check.recorded > check.expected) ? 'more recorded than pgbench counted' : '',
  ].filter(Boolean);
  return { ...base, measured, status: 'GAP', howFar: why.join(', ') || 'see the audit table' };
};

const memoryRow = (input: VerdictInput): TargetResult => {
  const base = { id: 'memory', target: 'memory per idle authenticated session', goal: `<= ${IDLE_SESSION_TARGET_KIB} KiB at ${input.idleSessionsWanted.toLocaleString('en-US')} sessions` } as const;
  const measured = input.idleSessions.filter((result) => Number.isFinite(result.perSessionKiB));
  if (measured.length === 0) return { ...base, ...notMeasured(input.idleSessions.length === 0 ? 'not run' : 'no session opened') };
  const worst = measured.reduce((a, b) => (b.perSessionKiB > a.perSessionKiB ? b : a));
  const fewest = Math.min(...input.idleSessions.map((result) => result.opened));
  const stopped = input.idleSessions.find((result) => result.error);
  const text = `${worst.perSessionKiB.toFixed(1)} KiB (${worst.protocol}, the worse protocol; ${measured.map((result) => `${result.protocol} ${result.opened.toLocaleString('en-US')} sessions`).join(', ')})`;
  if (stopped) return { ...base, value: worst.perSessionKiB, measured: text, status: 'GAP', howFar: `${stopped.protocol} sessions stopped opening: ${stopped.error}` };
  const verdict = atMost(worst.perSessionKiB, IDLE_SESSION_TARGET_KIB, (n) => `${n.toFixed(1)} KiB`);
  // Fewer sessions than the target's count say little about the bound at 2,000.
  if (fewest < input.idleSessionsWanted) return { ...base, value: worst.perSessionKiB, measured: text, status: 'not measured', howFar: `only ${fewest.toLocaleString('en-US')} sessions opened (${verdict.status} at that count)` };
  return { ...base, value: worst.perSessionKiB, measured: text, ...verdict };
};

/** Judges every target of issue 12 from the run's samples. */
export const judgeTargets = (input: VerdictInput, comparable: boolean): Verdict => {
  const rows: TargetResult[] = [
    ratioRow(input, 'select-simple-direct', `pgbench -S -c ${input.clients}, simple protocol`, 'pgbench-select', 'direct', 0.45),
    ratioRow(input, 'select-simple-pgbouncer', `pgbench -S -c ${input.clients}, simple protocol`, 'pgbench-select', 'pgbouncer', 0.6),
    ratioRow(input, 'select-extended-direct', `pgbench -S -c ${input.clients}, extended protocol`, 'pgbench-select-extended', 'direct', 0.45),
    ratioRow(input, 'select-extended-pgbouncer', `pgbench -S -c ${input.clients}, extended protocol`, 'pgbench-select-extended', 'pgbouncer', 0.6),
    latencyRow(input),
    ...cpuRows(input),
    ratioRow(input, 'redis-get', 'redis-benchmark GET -c 50', 'redis-get', 'direct', 0.5),
    ratioRow(input, 'redis-get-pipelined', 'redis-benchmark GET -c 50 -P 16', 'redis-get-pipelined', 'direct', 0.4),
    ratioRow(input, 'http-json', 'wrk -c 50, 1 KB JSON body with PII', 'http-get', 'direct', 0.3),
    auditRow(input),
    memoryRow(input),
  ];
  const nodePipe = (['simple', 'extended'] as const).flatMap((protocol): NodePipeFloor[] => {
    const kind = protocol === 'simple' ? 'pgbench-select' : 'pgbench-select-extended';
    const ofDirect = throughputRatio(input.load, kind, 'node-pipe', 'direct');
    if (ofDirect === undefined) return [];
    return [{ protocol, ofDirect, sluiceOfPipe: throughputRatio(input.load, kind, 'sluice', 'node-pipe'), cpuUs: cpuPerOperation(input.load, kind, (sample) => sample.cpu?.proxyUs, 'node-pipe') }];
  });
  return {
    rows,
    nodePipe,
    comparable,
    met: rows.filter((row) => row.status === 'met').length,
    gaps: rows.filter((row) => row.status === 'GAP').length,
    notMeasured: rows.filter((row) => row.status === 'not measured').length,
  };
};

/** The workloads to profile, each with the gaps it explains. */
export const gapWorkloads = (verdict: Verdict): Map<LoadKind, TargetId[]> => {
  const workloads = new Map<LoadKind, TargetId[]>();
  for (const row of verdict.rows) {
    if (row.status !== 'GAP' || !row.workload) continue;
    workloads.set(row.workload, [...(workloads.get(row.workload) ?? []), row.id]);
  }
  return workloads;
};

/** One line for the console's log: how many targets are met, and which are not. */
export const summarizeVerdict = (verdict: Verdict): string => {
  const gaps = verdict.rows.filter((row) => row.status === 'GAP').map((row) => row.id);
  const head = `${verdict.met} of ${verdict.rows.length} targets met${gaps.length > 0 ? `; GAP: ${gaps.join(', ')}` : ''}${verdict.notMeasured > 0 ? `; ${verdict.notMeasured} not measured` : ''}`;
  return verdict.comparable ? head : `not comparable (busy machine): ${head}`;
};
