import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import pg from 'pg';
import {
  CompiledQuery,
  PostgresAdapter,
  PostgresDialect,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type DatabaseConnection,
  type Dialect,
  type Driver,
  type QueryResult,
} from 'kysely';
import type { PGlite } from '@electric-sql/pglite';

/** A kysely dialect plus what the store must know about the engine behind it. */
export interface StoreBackend {
  readonly dialect: Dialect;
  readonly kind: 'postgres' | 'pglite';
  /** Where it lives, with no password, for logs and errors. */
  readonly location: string;
  /** PostgreSQL only: the pool behind the dialect, for what kysely cannot do (COPY). */
  readonly pool?: pg.Pool;
}

// bigint columns (seq, counts) as numbers: seq stays far below 2^53 in any real deployment.
const INT8_OID = 20;
const pgTypes = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID ? (value: string) => Number(value) : (pg.types.getTypeParser(oid, format) as (value: string) => unknown)) as typeof pg.types.getTypeParser,
};

const redact = (url: string): string => {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return 'postgres';
  }
};

const databaseName = (url: string): string => decodeURIComponent(new URL(url).pathname.replace(/^\//, '')) || 'postgres';

/** Creates the database when it does not exist, through the server's `postgres` database. */
const ensureDatabase = async (url: string): Promise<void> => {
  const probe = new pg.Client({ connectionString: url });
  try {
    await probe.connect();
    return;
  } catch (error) {
    if ((error as { code?: string }).code !== '3D000') throw error;
  } finally {
    await probe.end().catch(() => undefined);
  }
  const adminUrl = new URL(url);
  adminUrl.pathname = '/postgres';
  const admin = new pg.Client({ connectionString: adminUrl.toString() });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(databaseName(url))}`);
  } catch (error) {
    // Another process created it first.
    if ((error as { code?: string }).code !== '42P04') throw error;
  } finally {
    await admin.end();
  }
};

export const postgresBackend = async (url: string, maxConnections = 4): Promise<StoreBackend> => {
  await ensureDatabase(url);
  const pool = new pg.Pool({ connectionString: url, max: maxConnections, types: pgTypes });
  // An idle client that loses its server must not crash the process.
  pool.on('error', () => undefined);
  // Nor one handed out: pg-pool drops its idle listener as it hands a client out, and a FATAL
  // read in the same chunk as a new connection's ReadyForQuery (pg_terminate_backend, a server
  // shutting down) is emitted before the caller's await resumes, with no query to fail. Its
  // next query fails instead, and the pool drops it on release (it is no longer queryable).
  pool.on('connect', (client) => client.on('error', () => undefined));
  return { dialect: new PostgresDialect({ pool }), kind: 'postgres', location: redact(url), pool };
};

export const pgliteBackend = async (path: string): Promise<StoreBackend> => {
  const dataDir = resolve(path);
  mkdirSync(dataDir, { recursive: true });
  // Imported on demand: PGlite costs ~760 MB RSS and seconds to start, only the embedded mode pays it.
  const { PGlite: PGliteClass } = await import('@electric-sql/pglite');
  const client = await PGliteClass.create(dataDir, { parsers: { [INT8_OID]: (value: string) => Number(value) } });
  const dialect: Dialect = {
    createAdapter: () => new PostgresAdapter(),
    createDriver: () => new PGliteDriver(client),
    createIntrospector: (db) => new PostgresIntrospector(db),
    createQueryCompiler: () => new PostgresQueryCompiler(),
  };
  return { dialect, kind: 'pglite', location: dataDir };
};

/**
 * The few lines of kysely-pglite's driver, kept here because its dialect fires an unawaited
 * mkdir (an unhandled rejection when the folder goes away). PGlite has one connection: the
 * store serialises its calls, so transactions never interleave.
 */
class PGliteDriver implements Driver {
  constructor(private readonly client: PGlite) {}
  async init(): Promise<void> {}
  async acquireConnection(): Promise<DatabaseConnection> {
    const client = this.client;
    return {
      async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
        const result = await client.query<R>(query.sql, [...query.parameters]);
        return { rows: result.rows, ...(result.affectedRows === undefined ? {} : { numAffectedRows: BigInt(result.affectedRows) }) };
      },
      // kysely's interface wants an async iterator; this one fails on the first next(), never yields.
      // eslint-disable-next-line require-yield
      async *streamQuery(): AsyncIterableIterator<QueryResult<never>> {
        throw new Error('PGlite does not stream');
      },
    };
  }
  async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('BEGIN'));
  }
  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('COMMIT'));
  }
  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('ROLLBACK'));
  }
  async releaseConnection(): Promise<void> {}
  async destroy(): Promise<void> {
    await this.client.close();
  }
}
