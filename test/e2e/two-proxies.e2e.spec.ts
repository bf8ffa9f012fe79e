import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, deleteStreams, dropDatabases } from '../support/databases.js';
import { startTestIssuer, type TestIssuer } from '../support/oidc.js';
import { freePorts } from '../support/ports.js';
import { startHttpSink, type HttpSink } from '../support/sinks.js';
import { SLUICE_BIN, startSluice, type RunningSluice } from '../support/sluice.js';

/**
 * Two proxies in front of one set of policy, masking, approval and audit services: `sluice up`
 * runs the first, `sluice proxy` the second from the same folder (so with the same deployment
 * keys) on a copy of the config that differs only in where the resource listens. Sessions go
 * through both at once, an approval held on the second is decided by the one approval service,
 * and the store ends up with every session's events once, every chain intact.
 */
describe('two proxies of one deployment', () => {
  const run = randomUUID().slice(0, 8);
  const targetDb = `sluice_e2e_two_${run}`;
  const storeDb = `sluice_e2e_twostore_${run}`;
  const stream = `SLUICE_E2E_TWO_${run}`;
  let idp: TestIssuer;
  let webhook: HttpSink;
  let sluice: RunningSluice;
  let proxyB: ChildProcess | undefined;
  let proxyBOutput = '';
  let portA: number;
  let portB: number;
  let healthB: number;

  beforeAll(async () => {
    await createDatabase(targetDb, `CREATE TABLE orders (id int PRIMARY KEY, total int); INSERT INTO orders SELECT g, g FROM generate_series(1, 50) g;`);
    idp = await startTestIssuer();
    webhook = await startHttpSink();
    [portA, portB, healthB] = (await freePorts(3)) as [number, number, number];
    sluice = await startSluice({
      bus: { url: 'nats://127.0.0.1:4222', stream, subjectPrefix: `e2etwo.${run}.events` },
      eventStore: { url: `postgres://postgres@127.0.0.1:5432/${storeDb}` },
      identity: { oidc: [{ issuer: idp.issuer, audience: 'sluice' }] },
      resources: [{ name: 'orders-db', type: 'postgres', listen: `127.0.0.1:${portA}`, target: { host: '127.0.0.1', database: targetDb }, credentials: { username: 'postgres' } }],
      approval: { webhooks: [{ url: `${webhook.url}/hooks`, secret: { env: 'E2E_TWO_WEBHOOK_SECRET' } }] },
      audit: { readers: { groups: ['compliance'] } },
      rules: [
        { name: 'agents-read', effect: 'allow', subjects: { groups: ['agents'] }, actions: ['read'] },
        { name: 'ops-write', effect: 'allow', subjects: { groups: ['ops'] }, actions: ['read', 'write'] },
        { name: 'mass-delete-needs-dba', effect: 'approve', subjects: { groups: ['ops'] }, risk: 'high', approvers: { groups: ['dba'] } },
      ],
    }, { env: { E2E_TWO_WEBHOOK_SECRET: 'two-proxies', NATS_URL: '', DATABASE_URL: '' } });

    const config = parse(readFileSync(sluice.configPath, 'utf8')) as { resources: Array<{ listen: string }> };
    config.resources[0]!.listen = `127.0.0.1:${portB}`;
    writeFileSync(join(sluice.dir, 'proxy-b.yaml'), stringify(config));
    proxyB = spawn(process.execPath, [SLUICE_BIN, 'proxy', '--config', 'proxy-b.yaml'], {
      cwd: sluice.dir,
      env: { ...process.env, LOG_LEVEL: 'warn', NATS_URL: '', DATABASE_URL: '', SLUICE_KEYS_DIR: '', SLUICE_HEALTH_LISTEN: `127.0.0.1:${healthB}`, E2E_TWO_WEBHOOK_SECRET: 'two-proxies' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    proxyB.stdout!.on('data', (chunk: Buffer) => (proxyBOutput += chunk.toString()));
    proxyB.stderr!.on('data', (chunk: Buffer) => (proxyBOutput += chunk.toString()));
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (proxyB.exitCode !== null) throw new Error(`the second proxy exited:\n${proxyBOutput}`);
      const status = await fetch(`http://127.0.0.1:${healthB}/readyz`).then((response) => response.status, () => 0);
      if (status === 200) break;
      if (Date.now() > deadline) throw new Error(`the second proxy was not ready in time:\n${proxyBOutput}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  });

  afterAll(async () => {
    if (proxyB && proxyB.exitCode === null) {
      const exited = new Promise((resolve) => proxyB!.once('exit', resolve));
      proxyB.kill('SIGTERM');
      await exited;
    }
    await sluice?.stop();
    await Promise.all([idp?.close(), webhook?.close()]);
    await dropDatabases([targetDb, storeDb]);
    await deleteStreams([stream]);
  });

  const connect = async (port: number, sub: string, groups: string[]): Promise<pg.Client> => {
    const client = new pg.Client({ host: '127.0.0.1', port, user: sub, database: 'orders-db', password: await idp.mint({ sub, groups }) });
    await client.connect();
    return client;
  };

  const STATEMENTS = 10;
  const sessionsPerProxy = 4;

  it('serves sessions through both proxies at once', async () => {
    const sessions = [portA, portB].flatMap((port, proxy) =>
      Array.from({ length: sessionsPerProxy }, async (_, index) => {
        const client = await connect(port, `agent-${'ab'[proxy]}-${index}`, ['agents']);
        try {
          for (let statement = 0; statement < STATEMENTS; statement += 1) {
            const { rows } = await client.query(`SELECT ${statement} AS n`);
            expect(rows).toEqual([{ n: statement }]);
          }
        } finally {
          await client.end();
        }
      }),
    );
    await Promise.all(sessions);
  });

  it('holds a command on the second proxy until the one approval service releases it', async () => {
    const client = await connect(portB, 'ops-bot', ['ops']);
    try {
      const held = client.query('DELETE FROM orders');
      const hook = await webhook.waitFor((request) => request.url === '/hooks');
      const { id } = JSON.parse(hook.body) as { id: string };
      const decision = await fetch(`http://127.0.0.1:${sluice.ports.approvalHttp}/v1/approvals/${id}/decision`, {
        method: 'POST',
        headers: { authorization: `Bearer ${await idp.mint({ sub: 'dba-dan', groups: ['dba'] })}`, 'content-type': 'application/json' },
        body: JSON.stringify({ decision: 'approve', reason: 'two proxies' }),
      });
      expect(decision.status).toBeLessThan(300);
      expect((await held).rowCount).toBe(50);
    } finally {
      await client.end();
    }
  });

  it("stores both proxies' sessions, each statement once, and every chain verifies", async () => {
    const store = new pg.Client({ host: '127.0.0.1', user: 'postgres', database: storeDb });
    await store.connect();
    try {
      const countsOf = async () =>
        (
          await store.query<{ subject: string; statements: string }>(
            `SELECT s.subject, count(c.*) AS statements
               FROM sluice.sessions s JOIN sluice.commands c USING (session_id)
              WHERE s.subject LIKE 'agent-%' AND c.command LIKE 'SELECT % AS n' AND s.ended_at IS NOT NULL
              GROUP BY s.subject ORDER BY s.subject`,
          )
        ).rows;
      const expected = ['a', 'b'].flatMap((proxy) => Array.from({ length: sessionsPerProxy }, (_, index) => ({ subject: `agent-${proxy}-${index}`, statements: String(STATEMENTS) })));
      let counts = await countsOf();
      for (const deadline = Date.now() + 30_000; JSON.stringify(counts) !== JSON.stringify(expected) && Date.now() < deadline; counts = await countsOf()) {
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      expect(counts).toEqual(expected);
      // The held command's completion is recorded after the agent got its answer: wait for it too.
      const approvedOf = async () => (await store.query(`SELECT approver, outcome FROM sluice.commands WHERE decision = 'approve'`)).rows;
      let approved = await approvedOf();
      for (const deadline = Date.now() + 30_000; approved[0]?.outcome == null && Date.now() < deadline; approved = await approvedOf()) {
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      expect(approved).toEqual([{ approver: 'dba-dan', outcome: 'DELETE 50' }]);
    } finally {
      await store.end();
    }
    const token = await idp.mint({ sub: 'carol', groups: ['compliance'] });
    const verify = await sluice.cli(['audit', 'verify'], { SLUICE_TOKEN: token });
    expect(verify.status, verify.stdout + verify.stderr).toBe(0);
  });
});
