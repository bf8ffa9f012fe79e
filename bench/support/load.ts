import { parsePgbench, parseRedisBenchmarkCsv, parseWrk, type LoadFigures } from './parsers.js';
import { runTool, type ToolResult } from './processes.js';
import { PG_HOST } from './targets.js';

export interface LoadRun {
  readonly figures?: LoadFigures;
  /** Set when the tool failed or its output carried no figures: the tail of what it printed. */
  readonly error?: string;
  readonly result: ToolResult;
}

const tail = (text: string, lines = 25) => text.trim().split('\n').slice(-lines).join('\n');

const failure = (tool: string, result: ToolResult): string =>
  `${tool} ${result.timedOut ? `timed out after ${Math.round(result.elapsedMs / 1000)} s` : `exited with ${result.status ?? result.signal}`}:\n${tail(`${result.stderr}\n${result.stdout}`)}`;

export interface PgbenchOptions {
  readonly port: number;
  readonly user: string;
  readonly password?: string;
  readonly database: string;
  /** `select-only` is pgbench -S; `tpcb` is the default TPC-B-like script. */
  readonly script: 'select-only' | 'tpcb';
  /** pgbench -M: `simple` (one Query message) or `extended` (Parse/Bind/Execute with the literal as a parameter). */
  readonly protocol?: 'simple' | 'extended';
  readonly clients: number;
  readonly threads: number;
  readonly seconds: number;
}

/** pgbench (simple query mode unless asked), without its vacuum step (done once at setup; VACUUM is DDL to Sluice). */
export const runPgbench = async (options: PgbenchOptions): Promise<LoadRun> => {
  const args = ['-h', PG_HOST, '-p', String(options.port), '-U', options.user, '-n', '-M', options.protocol ?? 'simple'];
  args.push('-c', String(options.clients), '-j', String(Math.min(options.threads, options.clients)), '-T', String(options.seconds));
  if (options.script === 'select-only') args.push('-S');
  args.push(options.database);
  const env: NodeJS.ProcessEnv = { ...process.env, PGSSLMODE: 'disable', PGCONNECT_TIMEOUT: '10', PGAPPNAME: 'sluice-bench' };
  if (options.password === undefined) delete env.PGPASSWORD;
  else env.PGPASSWORD = options.password;
  const result = await runTool('pgbench', args, { env, timeoutMs: (options.seconds + 60) * 1000 });
  const figures = parsePgbench(result.stdout);
  if (result.status !== 0 || figures.throughput === undefined) return { result, figures, error: failure('pgbench', result) };
  return { result, figures };
};

export interface RedisBenchmarkOptions {
  readonly port: number;
  readonly password?: string;
  readonly test: 'get' | 'set';
  readonly clients: number;
  readonly requests: number;
  readonly pipeline: number;
  readonly timeoutMs: number;
}

/** redis-benchmark for one test, CSV output; `-a` makes every connection send AUTH <token>. */
export const runRedisBenchmark = async (options: RedisBenchmarkOptions): Promise<LoadRun> => {
  const args = ['-h', '127.0.0.1', '-p', String(options.port), '-c', String(options.clients), '-n', String(options.requests)];
  args.push('-P', String(options.pipeline), '-t', options.test, '--csv');
  if (options.password !== undefined) args.push('-a', options.password);
  const result = await runTool('redis-benchmark', args, { timeoutMs: options.timeoutMs });
  const figures = parseRedisBenchmarkCsv(result.stdout, options.test, options.requests);
  // redis-benchmark reports error replies on stderr ("Error from server: …") and still prints a rate.
  const serverErrors = /Error from server|NOPERM|WRONGPASS|NOAUTH/i.test(result.stderr);
  if (result.status !== 0 || figures.throughput === undefined || serverErrors) return { result, figures, error: failure('redis-benchmark', result) };
  return { result, figures };
};

export interface WrkOptions {
  readonly url: string;
  readonly token: string;
  readonly threads: number;
  readonly connections: number;
  readonly seconds: number;
}

/** wrk with the agent's bearer token on every request; non-2xx answers count as failures. */
export const runWrk = async (options: WrkOptions): Promise<LoadRun> => {
  const args = ['-t', String(options.threads), '-c', String(options.connections), '-d', `${options.seconds}s`, '--latency', '--timeout', '5s'];
  args.push('-H', `Authorization: Bearer ${options.token}`, options.url);
  const result = await runTool('wrk', args, { timeoutMs: (options.seconds + 30) * 1000 });
  const figures = parseWrk(result.stdout);
  const failedShare = figures.operations ? figures.failures / figures.operations : 1;
  if (result.status !== 0 || figures.throughput === undefined || failedShare > 0.01)
    return { result, figures, error: failure('wrk', { ...result, stderr: `${result.stderr}\n${figures.failures} of ${figures.operations ?? 0} requests failed` }) };
  return { result, figures };
};
