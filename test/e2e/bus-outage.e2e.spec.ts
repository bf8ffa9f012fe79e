import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect as connectTcp } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createDatabase, dropDatabases } from '../support/databases.js';
import { startTestIssuer, type TestIssuer } from '../support/oidc.js';
import { freePorts } from '../support/ports.js';
import { startSluice, type RunningSluice } from '../support/sluice.js';

/** A NATS server of this test's own (the shared one must not go down), JetStream on a folder that outlives restarts. */
const startNats = async (port: number, storeDir: string): Promise<ChildProcess> => {
  const child = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir], { stdio: 'ignore' });
  const deadline = Date.now() + 10_000;
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      const socket = connectTcp(port, '127.0.0.1', () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (up) return child;
    if (Date.now() > deadline) throw new Error('nats-server did not start');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
};

const stopNats = (child: ChildProcess | undefined): Promise<void> =>
  new Promise((resolve) => {
    if (!child || child.exitCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });

/** Polls `attempt` until it returns true or the time is up. */
const eventually = async (attempt: () => Promise<boolean>, withinMs: number): Promise<boolean> => {
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline) {
    if (await attempt()) return true;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return false;
};

describe('while the bus is down', () => {
  const run = randomUUID().slice(0, 8);
  const targetDb = `sluice_e2e_bus_${run}`;
  const storeDb = `sluice_e2e_busstore_${run}`;
  const natsDir = mkdtempSync(join(tmpdir(), 'sluice-e2e-nats-'));
  let natsPort: number;
  let pgPort: number;
  let nats: ChildProcess | undefined;
  let idp: TestIssuer;
  let sluice: RunningSluice;

  beforeAll(async () => {
    await createDatabase(targetDb);
    idp = await startTestIssuer();
    [natsPort, pgPort] = (await freePorts(2)) as [number, number];
    nats = await startNats(natsPort, natsDir);
    sluice = await startSluice({
      identity: { oidc: [{ issuer: idp.issuer, audience: 'sluice' }] },
      eventStore: { url: `postgres://postgres@127.0.0.1:5432/${storeDb}` },
      bus: { url: `nats://127.0.0.1:${natsPort}` },
      resources: [{ name: 'db', type: 'postgres', listen: `127.0.0.1:${pgPort}`, target: { host: '127.0.0.1', database: targetDb }, credentials: { username: 'postgres' } }],
      rules: [{ name: 'agents-read', effect: 'allow', subjects: { groups: ['agents'] }, actions: ['read'] }],
    });
  });

  afterAll(async () => {
    await sluice?.stop();
    await stopNats(nats);
    await idp?.close();
    await dropDatabases([targetDb, storeDb]);
    rmSync(natsDir, { recursive: true, force: true });
  });

  it('refuses commands (58000, session usable) and serves them again by itself once the bus is back', async () => {
    const client = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'agent', database: 'db', password: await idp.mint({ sub: 'agent', groups: ['agents'] }) });
    client.on('error', () => undefined);
    await client.connect();
    const probe = () => client.query('SELECT 1 AS one').then(() => 'served', (error: { code?: string }) => error.code ?? 'error');
    expect(await probe()).toBe('served');

    await stopNats(nats);
    // Commands already accepted wait for the bus; from the first failed publish on, new ones are refused.
    expect(await eventually(async () => (await probe()) === '58000', 30_000)).toBe(true);

    nats = await startNats(natsPort, natsDir);
    expect(await eventually(async () => (await probe()) === 'served', 30_000)).toBe(true);
    await client.end();
  });
});
