/** Figures read from a load generator's output; undefined where the output did not carry them. */
export interface LoadFigures {
  /** Transactions or requests per second. */
  readonly throughput: number | undefined;
  /** Mean latency in milliseconds, as the tool reports it. */
  readonly latencyMs: number | undefined;
  readonly p50Ms?: number | undefined;
  readonly p99Ms?: number | undefined;
  /** Operations completed (transactions, requests). */
  readonly operations: number | undefined;
  /** Failed operations (pgbench failed transactions, wrk non-2xx answers and socket errors). */
  readonly failures: number;
}

const number = (text: string | undefined): number | undefined => {
  if (text === undefined) return undefined;
  const value = Number.parseFloat(text.replace(/,/g, ''));
  return Number.isFinite(value) ? value : undefined;
};

/** pgbench 15's summary (`tps = …`, `latency average = … ms`, transactions processed / failed). */
export const parsePgbench = (output: string): LoadFigures => ({
  throughput: number(/^tps = ([\d.]+)/m.exec(output)?.[1]),
  latencyMs: number(/^latency average = ([\d.]+) ms/m.exec(output)?.[1]),
  operations: number(/^number of transactions actually processed: (\d+)/m.exec(output)?.[1]),
  failures: number(/^number of failed transactions: (\d+)/m.exec(output)?.[1]) ?? 0,
});

/**
 * redis-benchmark `--csv`: a header line, then one line per test:
 * "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
 */
export const parseRedisBenchmarkCsv = (output: string, test: string, requests: number): LoadFigures => {
  const line = output
    .split('\n')
    .map((row) => row.trim().split(',').map((cell) => cell.replace(/^"|"$/g, '')))
    .find((cells) => cells[0]?.toUpperCase() === test.toUpperCase());
  return {
    throughput: number(line?.[1]),
    latencyMs: number(line?.[2]),
    p50Ms: number(line?.[4]),
    p99Ms: number(line?.[6]),
    operations: line ? requests : undefined,
    failures: 0,
  };
};

const wrkDurationMs = (text: string | undefined): number | undefined => {
  const match = /^([\d.]+)(us|ms|s|m)$/.exec(text ?? '');
  if (!match) return undefined;
  const scale = { us: 0.001, ms: 1, s: 1000, m: 60_000 }[match[2] as 'us' | 'ms' | 's' | 'm'];
  return Number(match[1]) * scale;
};

/** wrk 4.1 with `--latency`: thread stats, the latency distribution and the totals. */
export const parseWrk = (output: string): LoadFigures => {
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  const socketErrors = errors ? errors.slice(1).reduce((sum, value) => sum + Number(value), 0) : 0;
  return {
    throughput: number(/^Requests\/sec:\s+([\d.]+)/m.exec(output)?.[1]),
    latencyMs: wrkDurationMs(/^\s+Latency\s+(\S+)/m.exec(output)?.[1]),
    p50Ms: wrkDurationMs(/^\s+50%\s+(\S+)/m.exec(output)?.[1]),
    p99Ms: wrkDurationMs(/^\s+99%\s+(\S+)/m.exec(output)?.[1]),
    operations: number(/^\s+(\d+) requests in/m.exec(output)?.[1]),
    failures: (number(/Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1]) ?? 0) + socketErrors,
  };
};
