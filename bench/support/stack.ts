import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { startTestIssuer, type TestIssuer } from '../../test/support/oidc.js';
import type { CleanupStack } from './cleanup.js';
import { READER_GROUP, WRITER_GROUP, startBenchSluice, type BenchSluice, type ResourceKind } from './deployment.js';
import { REDIS_PORT, dropDatabase, prepareBenchDatabase, startHttpTarget, startNodePipe, startPgbouncer, type HttpTarget, type Pgbouncer, PG_PORT } from './targets.js';

export interface StackOptions {
  /** pgbench scale of the throwaway database; 0 creates only the small customers table. */
  readonly scale: number;
  readonly pgbouncer: boolean;
  readonly nodePipe: boolean;
  readonly http: boolean;
  /**
   * A transaction-mode pgbouncer that Sluice serves as a second PostgreSQL resource: thousands of
   * Sluice sessions (the idle-sessions part) on the few server connections max_connections allows.
   */
  readonly pooledTarget?: boolean;
  /** Resources Sluice serves; empty skips Sluice. */
  readonly sluiceResources: readonly ResourceKind[];
  /** `services.audit.niceness` of the Sluice deployment; absent: the config's default. */
  readonly auditNiceness?: number;
  readonly log: (line: string) => void;
}

export interface Stack {
  readonly runId: string;
  readonly database: string;
  readonly issuer: TestIssuer;
  /** A token of an agent granted read (its SELECTs run in a read-only session). */
  readonly readerToken: string;
  /** A token of an agent granted read and write (TPC-B, Redis SET). */
  readonly writerToken: string;
  readonly pgbouncer?: Pgbouncer;
  readonly nodePipe?: { port: number; pid: number };
  readonly http?: HttpTarget;
  readonly sluice?: BenchSluice;
  /** Why Sluice (or part of it) could not be started, verbatim. */
  readonly sluiceErrors: string[];
  /** Problems that kept a row out (pgbouncer missing, …), verbatim. */
  readonly setupErrors: string[];
}

/** The Redis key redis-benchmark's GET/SET use when no -r is given. */
export const REDIS_BENCH_KEY = 'key:__rand_int__';

/**
 * Everything the benchmarks run against, each piece registered on `cleanup` as soon as it exists.
 * Sluice failing to start is recorded, not thrown, so the direct and pgbouncer rows still come out.
 */
export const buildStack = async (options: StackOptions, cleanup: CleanupStack): Promise<Stack> => {
  const runId = randomBytes(4).toString('hex');
  const database = `sluice_bench_${runId}`;
  const sluiceErrors: string[] = [];
  const setupErrors: string[] = [];

  const issuer = await startTestIssuer({ audience: 'sluice' });
  cleanup.defer('token issuer', () => issuer.close());
  const expiresIn = 6 * 3600;
  const readerToken = await issuer.mint({ sub: 'bench-reader', groups: [READER_GROUP], expiresIn });
  const writerToken = await issuer.mint({ sub: 'bench-writer', groups: [WRITER_GROUP], expiresIn });

  options.log(`creating database ${database}${options.scale > 0 ? ` (pgbench -i -s ${options.scale})` : ''}`);
  cleanup.defer(`database ${database}`, () => dropDatabase(database));
  await prepareBenchDatabase(database, options.scale);
  cleanup.defer(`redis key ${REDIS_BENCH_KEY}`, () => {
    spawnSync('redis-cli', ['-p', String(REDIS_PORT), 'DEL', REDIS_BENCH_KEY], { timeout: 5_000 });
  });

  let pgbouncer: Pgbouncer | undefined;
  if (options.pgbouncer) {
    try {
      pgbouncer = await startPgbouncer(database);
      cleanup.defer('pgbouncer', () => pgbouncer!.stop());
    } catch (error) {
      setupErrors.push(`pgbouncer: ${(error as Error).message}`);
    }
  }

  let nodePipe: { port: number; pid: number } | undefined;
  if (options.nodePipe) {
    const pipe = await startNodePipe(PG_PORT);
    cleanup.defer('node pipe proxy', () => pipe.stop());
    nodePipe = { port: pipe.port, pid: pipe.daemon.pid };
  }

  let pooledTarget: Pgbouncer | undefined;
  if (options.pooledTarget && options.sluiceResources.includes('postgres')) {
    try {
      pooledTarget = await startPgbouncer(database, { poolMode: 'transaction', maxClients: 2_500 });
      cleanup.defer('pgbouncer (transaction mode)', () => pooledTarget!.stop());
    } catch (error) {
      setupErrors.push(`pgbouncer in transaction mode: ${(error as Error).message}`);
    }
  }

  let http: HttpTarget | undefined;
  if (options.http) {
    http = await startHttpTarget();
    cleanup.defer('http target', () => http!.close());
  }

  let sluice: BenchSluice | undefined;
  const attempts: ResourceKind[][] = [[...options.sluiceResources]];
  // If the whole deployment will not start, a PostgreSQL-only one may (a resource type still
  // being built must not hide the PostgreSQL figures).
  if (options.sluiceResources.length > 1 && options.sluiceResources.includes('postgres')) attempts.push(['postgres']);
  for (const resources of options.sluiceResources.length > 0 ? attempts : []) {
    options.log(`starting sluice up with ${resources.join(', ')}`);
    try {
      const started = await startBenchSluice({
        runId,
        issuer: issuer.issuer,
        audience: issuer.audience,
        targetDatabase: database,
        httpTarget: http?.url,
        ...(pooledTarget ? { pooledTargetPort: pooledTarget.port } : {}),
        resources,
        ...(options.auditNiceness === undefined ? {} : { auditNiceness: options.auditNiceness }),
      });
      cleanup.defer('sluice', () => started.stop());
      sluice = started;
      break;
    } catch (error) {
      sluiceErrors.push(`sluice up with resources [${resources.join(', ')}] failed: ${(error as Error).message}`);
      options.log(`sluice up with ${resources.join(', ')} failed`);
    }
  }

  return { runId, database, issuer, readerToken, writerToken, pgbouncer, nodePipe, http, sluice, sluiceErrors, setupErrors };
};
