/**
 * Added latency of one statement through Sluice (issue 2): median and p99 of 1,000 sequential
 * queries with node-postgres, direct to PostgreSQL vs through Sluice (and beside pgbouncer and a
 * bare Node byte pipe), after a warm-up so that policy decisions are cached.
 *
 *   npx tsx --conditions=development bench/pg-latency.ts [--iterations 1000] [--warmup 200] [--rounds 1]
 *
 * bench/run.ts calls `measurePgLatency` in each of its rounds; run alone, this file sets up its own
 * throwaway database, token issuer, pgbouncer and `sluice up`, and removes them afterwards.
 */
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { CleanupStack } from './support/cleanup.js';
import { killStartedChildren } from './support/processes.js';
import { renderLatencyTable, latencyVerdict } from './support/report.js';
import { NEW_LITERAL_QUERY, type LatencyResult } from './support/samples.js';
import { buildStack, type Stack } from './support/stack.js';
import { percentileOfSorted } from './support/stats.js';
import { PG_ADMIN_USER, PG_HOST, PG_PORT } from './support/targets.js';

export interface LatencyPath {
  /** `direct`, `pgbouncer`, `node-pipe`, `sluice`. */
  readonly name: string;
  readonly client: pg.ClientConfig;
}

export interface LatencyQuery {
  readonly name: string;
  /** The statement, or a function of the iteration number for one whose literal changes. */
  readonly text: string | ((iteration: number) => string);
}

export type { LatencyResult };

export const LATENCY_QUERIES: readonly LatencyQuery[] = [
  { name: 'SELECT 1', text: 'SELECT 1' },
  // What agents and pgbench -S send: the same statement with another literal each time, so a
  // decision cache keyed by the exact text misses and only one keyed by the normalized text hits.
  { name: NEW_LITERAL_QUERY, text: (iteration) => `SELECT id, name, amount, ${iteration} AS n FROM bench_customers WHERE id = ${(iteration % 100) + 1}` },
  // One row of four columns, one of them an email the masking profile covers.
  { name: 'small row (masked email)', text: 'SELECT id, name, email, amount FROM bench_customers WHERE id = 42' },
];

/** `first` numbers the statements, so that the warm-up never sends a text the measurement will. */
const timeQueries = async (client: pg.Client, text: LatencyQuery['text'], count: number, first = 0): Promise<number[]> => {
  const samples = new Array<number>(count);
  for (let index = 0; index < count; index++) {
    const statement = typeof text === 'string' ? text : text(first + index);
    const begin = process.hrtime.bigint();
    await client.query(statement);
    samples[index] = Number(process.hrtime.bigint() - begin) / 1000;
  }
  return samples;
};

/**
 * For each query, each path in turn (so that paths see the same machine state): connect, warm up,
 * then time `iterations` sequential simple-protocol queries on one connection.
 */
export const measurePgLatency = async (
  paths: readonly LatencyPath[],
  options: {
    iterations: number;
    warmup: number;
    queries?: readonly LatencyQuery[];
    /** Number of the first statement: give each round its own so a later round sees new texts too. */
    firstStatement?: number;
  },
): Promise<LatencyResult[]> => {
  const results: LatencyResult[] = [];
  for (const query of options.queries ?? LATENCY_QUERIES) {
    for (const path of paths) {
      const client = new pg.Client({ ...path.client, connectionTimeoutMillis: 10_000 });
      try {
        await client.connect();
        await timeQueries(client, query.text, options.warmup, 1_000_000_000 + (options.firstStatement ?? 0));
        const samples = (await timeQueries(client, query.text, options.iterations, options.firstStatement ?? 0)).sort((a, b) => a - b);
        results.push({
          path: path.name,
          query: query.name,
          iterations: options.iterations,
          medianUs: percentileOfSorted(samples, 50),
          p99Us: percentileOfSorted(samples, 99),
          meanUs: samples.reduce((sum, value) => sum + value, 0) / samples.length,
        });
      } catch (error) {
        const detail = error as { code?: string; message?: string };
        results.push({ path: path.name, query: query.name, iterations: options.iterations, error: `${detail.code ? `${detail.code} ` : ''}${detail.message ?? String(error)}` });
      } finally {
        await client.end().catch(() => undefined);
      }
    }
  }
  return results;
};

/** The node-postgres connection of every path the stack offers. */
export const latencyPaths = (stack: Stack): LatencyPath[] => {
  const paths: LatencyPath[] = [{ name: 'direct', client: { host: PG_HOST, port: PG_PORT, user: PG_ADMIN_USER, database: stack.database } }];
  if (stack.pgbouncer) paths.push({ name: 'pgbouncer', client: { host: PG_HOST, port: stack.pgbouncer.port, user: PG_ADMIN_USER, database: stack.database } });
  if (stack.nodePipe) paths.push({ name: 'node-pipe', client: { host: PG_HOST, port: stack.nodePipe.port, user: PG_ADMIN_USER, database: stack.database } });
  const sluicePort = stack.sluice?.ports.postgres;
  if (sluicePort !== undefined)
    paths.push({ name: 'sluice', client: { host: PG_HOST, port: sluicePort, user: 'bench-reader', password: stack.readerToken, database: stack.database } });
  return paths;
};

const main = async (): Promise<void> => {
  const { values } = parseArgs({
    options: { iterations: { type: 'string', default: '1000' }, warmup: { type: 'string', default: '200' }, rounds: { type: 'string', default: '1' } },
  });
  const iterations = Number(values.iterations);
  const warmup = Number(values.warmup);
  const rounds = Number(values.rounds);
  const log = (line: string) => process.stderr.write(`[pg-latency] ${line}\n`);
  const cleanup = new CleanupStack();
  const abort = (signal: string) => {
    log(`${signal}: cleaning up`);
    killStartedChildren();
    void cleanup.run().finally(() => process.exit(130));
  };
  process.once('SIGINT', () => abort('SIGINT'));
  process.once('SIGTERM', () => abort('SIGTERM'));
  const deadline = setTimeout(() => abort('deadline (10 min)'), 10 * 60_000);
  try {
    const stack = await buildStack({ scale: 0, pgbouncer: true, nodePipe: true, http: false, sluiceResources: ['postgres'], log }, cleanup);
    for (const error of [...stack.setupErrors, ...stack.sluiceErrors]) log(error);
    const perRound: LatencyResult[][] = [];
    for (let round = 1; round <= rounds; round++) {
      log(`round ${round}/${rounds}`);
      perRound.push(await measurePgLatency(latencyPaths(stack), { iterations, warmup, firstStatement: round * 1_000_000 }));
    }
    process.stdout.write(`${renderLatencyTable(perRound)}\n\n${latencyVerdict(perRound)}\n`);
  } finally {
    clearTimeout(deadline);
    await cleanup.run(log);
  }
};

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    () => process.exit(0),
    (error: unknown) => {
      process.stderr.write(`pg-latency failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exit(1);
    },
  );
}
