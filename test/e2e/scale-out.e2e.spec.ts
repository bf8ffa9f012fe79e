import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, dropDatabases } from '../support/databases.js';
import { startNatsCluster, waitForJetStream, type NatsCluster } from '../support/nats-cluster.js';
import { startTestIssuer, type TestIssuer } from '../support/oidc.js';
import { freePorts } from '../support/ports.js';
import { startHttpSink, type HttpSink } from '../support/sinks.js';
import { startSluice, type RunningSluice } from '../support/sluice.js';
import { waitUntil } from '../support/wait.js';

/**
 * Two of everything on a three-node NATS cluster: two `sluice up` (each a proxy, policy, masking,
 * approval and audit) sharing one deployment's keys, one R3 stream and one event store. A command
 * held on proxy A is approved through approval B; a policy reload on A reaches proxy B; then,
 * under load from pg clients on both proxies, one NATS node, proxy B and every other service of
 * A are killed with SIGKILL. Afterwards every statement proxy A answered as completed has its
 * events in the store once, no event is stored twice, every chain verifies, and the sessions that
 * were open on proxy B are recorded as ended ('proxy lost'). What proxy B answered but had not yet
 * got acknowledged when it died is lost with it (counted; see the todo).
 */
describe('scale out: two of everything on a three-node NATS cluster', () => {
  const run = randomUUID().slice(0, 8);
  const targetDb = `sluice_e2e_scale_${run}`;
  const storeDb = `sluice_e2e_scalestore_${run}`;
  let cluster: NatsCluster;
  let idp: TestIssuer;
  let webhook: HttpSink;
  let a: RunningSluice;
  let b: RunningSluice;
  let portA: number;
  let portB: number;

  const rules = [
    { name: 'agents-read', effect: 'allow', subjects: { groups: ['agents'] }, actions: ['read'] },
    { name: 'ops-write', effect: 'allow', subjects: { groups: ['ops'] }, actions: ['read', 'write'] },
    { name: 'mass-delete-needs-dba', effect: 'approve', subjects: { groups: ['ops'] }, risk: 'high', approvers: { groups: ['dba'] } },
  ];
  const env = { E2E_SCALE_WEBHOOK_SECRET: 'scale-out', NATS_URL: '', DATABASE_URL: '', SLUICE_HEALTH_LISTEN: '' };

  beforeAll(async () => {
    await createDatabase(targetDb, `CREATE TABLE orders (id int PRIMARY KEY, total int); INSERT INTO orders SELECT g, g FROM generate_series(1, 20) g;`);
    cluster = await startNatsCluster();
    await waitForJetStream(cluster.url);
    idp = await startTestIssuer();
    webhook = await startHttpSink();
    [portA, portB] = (await freePorts(2)) as [number, number];
    const config = (port: number) => ({
      bus: { url: cluster.url, stream: `SLUICE_E2E_SCALE_${run}`, subjectPrefix: `e2escale.${run}.events` },
      eventStore: { url: `postgres://postgres@127.0.0.1:5432/${storeDb}` },
      identity: { oidc: [{ issuer: idp.issuer, audience: 'sluice' }] },
      resources: [{ name: 'orders-db', type: 'postgres', listen: `127.0.0.1:${port}`, target: { host: '127.0.0.1', database: targetDb }, credentials: { username: 'postgres' } }],
      approval: { webhooks: [{ url: `${webhook.url}/hooks`, secret: { env: 'E2E_SCALE_WEBHOOK_SECRET' } }] },
      audit: { readers: { groups: ['compliance'] }, stream: { replicas: 3 } },
      rules,
    });
    a = await startSluice(config(portA), { env, readyTimeoutMs: 120_000 });
    // The same deployment: B uses the keys (signing keys, bus seeds, gRPC CA) A made.
    b = await startSluice(config(portB), { env: { ...env, SLUICE_KEYS_DIR: join(a.dir, '.sluice', 'keys') }, readyTimeoutMs: 120_000 });
  }, 300_000);

  afterAll(async () => {
    await Promise.all([b?.stop(), a?.stop()]);
    await cluster?.stop();
    await Promise.all([idp?.close(), webhook?.close()]);
    await dropDatabases([targetDb, storeDb]);
  }, 120_000);

  const connect = async (port: number, sub: string, groups: string[]): Promise<pg.Client> => {
    const client = new pg.Client({ host: '127.0.0.1', port, user: sub, database: 'orders-db', password: await idp.mint({ sub, groups }), query_timeout: 20_000 });
    // A proxy killed under a client ends its socket: that is an error to the query, not to the test process.
    client.on('error', () => undefined);
    await client.connect();
    return client;
  };

  it('creates the event stream with three replicas', async () => {
    const { connect: connectNats } = await import('@nats-io/transport-node');
    const { jetstreamManager } = await import('@nats-io/jetstream');
    const nc = await connectNats({ servers: cluster.urls.slice() });
    try {
      const info = await (await jetstreamManager(nc)).streams.info(`SLUICE_E2E_SCALE_${run}`);
      expect(info.config.num_replicas).toBe(3);
      expect(info.cluster?.replicas?.length).toBe(2);
    } finally {
      await nc.close();
    }
  });

  it('holds a command on proxy A until approval instance B approves it', async () => {
    const client = await connect(portA, 'ops-bot', ['ops']);
    try {
      const held = client.query('DELETE FROM orders');
      const hook = await webhook.waitFor((request) => request.url === '/hooks', 30_000);
      const { id } = JSON.parse(hook.body) as { id: string };
      const decision = await fetch(`http://127.0.0.1:${b.ports.approvalHttp}/v1/approvals/${id}/decision`, {
        method: 'POST',
        headers: { authorization: `Bearer ${await idp.mint({ sub: 'dba-dan', groups: ['dba'] })}`, 'content-type': 'application/json' },
        body: JSON.stringify({ decision: 'approve', reason: 'decided on instance B' }),
      });
      expect(decision.status, await decision.clone().text()).toBeLessThan(300);
      expect((await held).rowCount).toBe(20);
    } finally {
      await client.end();
    }
  });

  it('serves a policy reload made on instance A through proxy B too', async () => {
    const auditor = await connect(portB, 'auditor-ann', ['auditors']);
    try {
      await expect(auditor.query('SELECT 1 AS one')).rejects.toThrow();
    } finally {
      await auditor.end();
    }
    // Both instances read the same rules (one ConfigMap in Kubernetes): change both files, reload one.
    for (const deployment of [a, b]) {
      const config = parse(readFileSync(deployment.configPath, 'utf8')) as { rules: unknown[] };
      config.rules.push({ name: 'auditors-read', effect: 'allow', subjects: { groups: ['auditors'] }, actions: ['read'] });
      writeFileSync(deployment.configPath, stringify(config));
    }
    const reload = await a.cli(['policy', 'reload', '--config', a.configPath]);
    expect(reload.status, reload.stdout + reload.stderr).toBe(0);
    await waitUntil(
      async () => {
        const client = await connect(portB, 'auditor-ann', ['auditors']);
        try {
          return await client.query('SELECT 1 AS one').then(() => true, () => false);
        } finally {
          await client.end();
        }
      },
      30_000,
      'proxy B to serve the reloaded rules',
    );
  });

  const LOAD_MS = 15_000;
  const CLIENTS_PER_PROXY = 3;
  /** Statement text -> the port of the proxy that answered it. */
  const completed = new Map<string, number>();

  it('keeps answering while a NATS node, proxy B and the other services of A are killed mid-load', async () => {
    const statement = (client: number, n: number): string => `SELECT ${client * 1_000_000 + n} AS scale_n`;
    const until = Date.now() + LOAD_MS;
    const failures: string[] = [];
    const load = async (index: number, home: number, other: number): Promise<void> => {
      let port = home;
      let client: pg.Client | undefined;
      for (let n = 0; Date.now() < until; n += 1) {
        try {
          client ??= await connect(port, `load-${index}`, ['agents']);
          const text = statement(index, n);
          const { rows } = await client.query<{ scale_n: number }>(text);
          if (rows[0]?.scale_n === index * 1_000_000 + n) completed.set(text, port);
        } catch (error) {
          failures.push(`${index}@${port}: ${(error as Error).message}`);
          await client?.end().catch(() => undefined);
          client = undefined;
          // An agent whose proxy went away reconnects to the other one.
          port = port === home ? other : home;
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
      }
      await client?.end().catch(() => undefined);
    };
    const pidsOf = async (deployment: RunningSluice): Promise<Record<string, number>> => {
      const body = (await (await fetch(`http://127.0.0.1:${deployment.ports.admin}/readyz`)).json()) as { services: Record<string, { pid: number | null }> };
      return Object.fromEntries(Object.entries(body.services).flatMap(([name, service]) => (service.pid === null ? [] : [[name, service.pid]])));
    };
    const chaos = (async () => {
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      await cluster.kill(1);
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      const [pidsA, pidsB] = await Promise.all([pidsOf(a), pidsOf(b)]);
      process.kill(pidsB.proxy!, 'SIGKILL');
      for (const name of ['policy', 'masking', 'approval', 'audit']) process.kill(pidsA[name]!, 'SIGKILL');
    })();
    await Promise.all([
      chaos,
      ...Array.from({ length: CLIENTS_PER_PROXY }, (_, index) => load(index, portA, portB)),
      ...Array.from({ length: CLIENTS_PER_PROXY }, (_, index) => load(CLIENTS_PER_PROXY + index, portB, portA)),
    ]);
    console.info(`scale-out load: ${completed.size} statements completed, ${failures.length} failed while services died`);
    expect(completed.size).toBeGreaterThan(50);
  }, LOAD_MS + 120_000);

  it('stores every statement the surviving proxy completed, each event once, and every chain verifies', async () => {
    const store = new pg.Client({ host: '127.0.0.1', user: 'postgres', database: storeDb });
    await store.connect();
    try {
      // Per statement text: how many commands carry it, and how many events of each kind they have.
      const stored = async (): Promise<Map<string, { commands: number; kinds: Record<string, number> }>> => {
        const { rows } = await store.query<{ text: string; commands: string; kind: string; events: string }>(
          `WITH statements AS (
             SELECT DISTINCT session_id, command_id, data->>'command' AS text
               FROM sluice.events WHERE data->>'command' LIKE 'SELECT % AS scale_n' AND command_id IS NOT NULL),
           per_text AS (SELECT text, count(*) AS commands FROM statements GROUP BY text),
           per_kind AS (
             SELECT s.text, e.kind, count(*) AS events
               FROM statements s JOIN sluice.events e ON e.session_id = s.session_id AND e.command_id = s.command_id
              GROUP BY s.text, e.kind)
           SELECT k.text, t.commands, k.kind, k.events FROM per_kind k JOIN per_text t USING (text)`,
        );
        const byText = new Map<string, { commands: number; kinds: Record<string, number> }>();
        for (const row of rows) {
          const entry = byText.get(row.text) ?? { commands: Number(row.commands), kinds: {} };
          entry.kinds[row.kind] = Number(row.events);
          byText.set(row.text, entry);
        }
        return byText;
      };
      const isDone = (entry: { kinds: Record<string, number> } | undefined): boolean =>
        entry !== undefined && Object.keys(entry.kinds).some((kind) => kind === 'command.completed' || kind === 'command.executed');
      let byText = await stored();
      // An audit writer killed mid-batch leaves its messages to the other after ack_wait (30 s).
      // The query reads every event of the load (tens of thousands on a fast machine): asked every
      // 2 s, not back to back, it leaves the store's CPU to the audit writer it is waiting for.
      await waitUntil(
        async () => {
          await new Promise((resolve) => setTimeout(resolve, 2_000));
          byText = await stored();
          return [...completed].every(([text, port]) => port !== portA || isDone(byText.get(text)));
        },
        120_000,
        'every completed statement in the store',
      ).catch(() => undefined);
      // Proxy A was never killed: every statement it answered is stored, through the loss of a
      // NATS node and of the policy, masking, approval and audit instances it used.
      const missing = (answeredBy: number) => [...completed].filter(([text, port]) => port === answeredBy && !isDone(byText.get(text))).map(([text]) => text);
      expect(missing(portA), `of ${completed.size} completed statements`).toEqual([]);
      // Proxy B was SIGKILLed: what it answered while its events were not yet acknowledged (its
      // NATS node had just died) is lost with it. Measured here; see the todo below.
      console.info(`scale-out store: ${missing(portB).length} of ${[...completed.values()].filter((port) => port === portB).length} statements answered by the SIGKILLed proxy B not stored`);
      const doubled = [...byText].filter(([, entry]) => entry.commands !== 1 || Object.values(entry.kinds).some((count) => count !== 1));
      expect(doubled).toEqual([]);
    } finally {
      await store.end();
    }
    const verify = await a.cli(['audit', 'verify'], { SLUICE_TOKEN: await idp.mint({ sub: 'carol', groups: ['compliance'] }) });
    expect(verify.status, verify.stdout + verify.stderr).toBe(0);
    // The wait above (120 s at most), then queries and a verify over every event of the load:
    // on a machine twice as fast the load holds twice the statements (55,000 in 15 s), and under
    // the rest of the suite those took the test past 180 s twice in four CI runs.
  }, 300_000);

  it.todo(
    'every statement answered by a proxy that is then SIGKILLed is stored: needs the proxy to answer a command only once its events are acknowledged (the event pipeline, not changed here)',
  );

  it("records the sessions open on the SIGKILLed proxy as ended, reason 'proxy lost', within the lease bound", async () => {
    const store = new pg.Client({ host: '127.0.0.1', user: 'postgres', database: storeDb });
    await store.connect();
    try {
      const open = async () =>
        (await store.query<{ session_id: string }>(`SELECT session_id FROM sluice.sessions WHERE subject LIKE 'load-%' AND ended_at IS NULL AND NOT rejected`)).rows;
      // Lease lapse (10 s) + sweep (3 s), with room for a loaded machine; the chaos was long enough ago.
      await waitUntil(async () => (await open()).length === 0, 60_000, 'every load session to be recorded as ended').catch(() => undefined);
      expect(await open()).toEqual([]);
      const lost = await store.query<{ reason: string }>(
        `SELECT e.data->>'reason' AS reason FROM sluice.events e JOIN sluice.sessions s USING (session_id)
          WHERE e.kind = 'session.ended' AND s.subject LIKE 'load-%' AND e.data->>'reason' LIKE 'proxy lost%'`,
      );
      expect(lost.rows.length).toBeGreaterThan(0);
    } finally {
      await store.end();
    }
  }, 90_000);
});
