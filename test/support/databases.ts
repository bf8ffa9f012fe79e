import pg from 'pg';
import { jetstreamManager } from '@nats-io/jetstream';
import { leaseStreamName } from '@sluice/contracts';
import { connectBus } from '@sluice/event-bus';

const ADMIN = { host: '127.0.0.1', port: 5432, user: 'postgres', database: 'postgres' };

/** Creates a throwaway database on the local PostgreSQL and runs `setupSql` in it. */
export const createDatabase = async (name: string, setupSql?: string): Promise<void> => {
  const admin = new pg.Client(ADMIN);
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  if (!setupSql) return;
  const target = new pg.Client({ ...ADMIN, database: name });
  await target.connect();
  await target.query(setupSql);
  await target.end();
};

/** Drops test databases (and roles) even while sessions are still attached. */
export const dropDatabases = async (names: readonly string[], roles: readonly string[] = []): Promise<void> => {
  const admin = new pg.Client(ADMIN);
  await admin.connect();
  for (const name of names) await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  for (const role of roles) await admin.query(`DROP ROLE IF EXISTS ${role}`).catch(() => undefined);
  await admin.end();
};

/** Deletes test JetStream streams; a missing one is fine. */
export const deleteStreams = async (names: readonly string[]): Promise<void> => {
  const nc = await connectBus('nats://127.0.0.1:4222', 'test-cleanup');
  const jsm = await jetstreamManager(nc);
  // With each events stream, the proxies' lease stream beside it.
  for (const name of names.flatMap((stream) => [stream, leaseStreamName(stream)])) await jsm.streams.delete(name).catch(() => undefined);
  await nc.drain();
};
