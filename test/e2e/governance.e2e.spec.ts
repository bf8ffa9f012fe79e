import { createHmac } from 'node:crypto';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createClient } from 'redis';
import { createDatabase, deleteStreams, dropDatabases } from '../support/databases.js';
import { startTestIssuer, type TestIssuer } from '../support/oidc.js';
import { freePorts } from '../support/ports.js';
import { startHttpSink, type HttpSink } from '../support/sinks.js';
import { startSluice, type RunningSluice } from '../support/sluice.js';

const WEBHOOK_SECRET = 'e2e-webhook-secret';

describe('one Sluice deployment governing PostgreSQL, Redis and HTTP with approvals, masking and audit', () => {
  const run = randomUUID().slice(0, 8);
  const targetDb = `sluice_e2e_gov_${run}`;
  const storeDb = `sluice_e2e_govstore_${run}`;
  const stream = `SLUICE_E2E_GOV_${run}`;
  const subjectPrefix = `e2egov.${run}.events`;
  const keyPrefix = `e2e:${run}:`;
  let idp: TestIssuer;
  let sluice: RunningSluice;
  let webhook: HttpSink;
  let siem: HttpSink;
  let api: HttpSink;
  let pgPort: number;
  let redisPort: number;
  let httpPort: number;

  beforeAll(async () => {
    await createDatabase(
      targetDb,
      `CREATE TABLE orders (id int PRIMARY KEY, customer text, total numeric(10,2));
      INSERT INTO orders SELECT g, 'customer ' || g, g * 1.5 FROM generate_series(1, 50) g;
      CREATE TABLE profiles (id int PRIMARY KEY, ssn text, doc jsonb, notes text);
      INSERT INTO profiles VALUES (1, '123-45-6789', '{"contact": {"email": "bob@example.com"}, "tier": "gold"}',
        'call +1 415 555 0132 or card 4111111111111111');`,
    );
    const redis = createClient({ url: 'redis://127.0.0.1:6379' });
    await redis.connect();
    await redis.set(`${keyPrefix}contact`, 'reach me at carol@example.net');
    await redis.quit();

    idp = await startTestIssuer();
    webhook = await startHttpSink();
    siem = await startHttpSink();
    api = await startHttpSink((request) => ({
      body: JSON.stringify({ path: request.url, sawAuthorization: request.headers.authorization ?? null, email: 'dave@example.com' }),
    }));
    [pgPort, redisPort, httpPort] = (await freePorts(3)) as [number, number, number];
    sluice = await startSluice(
      {
        bus: { url: 'nats://127.0.0.1:4222', stream, subjectPrefix },
        eventStore: { url: `postgres://postgres@127.0.0.1:5432/${storeDb}` },
        identity: { oidc: [{ issuer: idp.issuer, audience: 'sluice' }] },
        resources: [
          { name: 'orders-db', type: 'postgres', listen: `127.0.0.1:${pgPort}`, target: { host: '127.0.0.1', database: targetDb }, credentials: { username: 'postgres' } },
          { name: 'kv', type: 'redis', listen: `127.0.0.1:${redisPort}`, target: { host: '127.0.0.1', port: 6379 } },
          { name: 'crm-api', type: 'http', listen: `127.0.0.1:${httpPort}`, target: { url: api.url }, credentials: { headers: { Authorization: { env: 'E2E_CRM_TOKEN', prefix: 'Bearer ' } } } },
        ],
        masking: {
          profiles: {
            sensitive: { detectors: ['credit_card', 'email', 'phone', 'us_ssn'], strategy: 'partial', columns: [{ match: '(?i)ssn', strategy: 'redact' }] },
          },
        },
        approval: { webhooks: [{ url: `${webhook.url}/hooks/approvals`, secret: { env: 'E2E_WEBHOOK_SECRET' } }] },
        audit: { readers: { groups: ['compliance'] }, exporters: [{ type: 'webhook', format: 'ocsf', url: `${siem.url}/siem` }] },
        rules: [
          { name: 'analysts-read', effect: 'allow', subjects: { groups: ['analysts'] }, actions: ['read'], mask: 'sensitive' },
          { name: 'operators-change', effect: 'allow', subjects: { groups: ['operators'] }, resources: ['orders-db', 'kv'], actions: ['read', 'write'], mask: 'sensitive' },
          { name: 'mass-changes-need-dba', effect: 'approve', subjects: { groups: ['operators'] }, resources: ['orders-db'], risk: 'high', approvers: { groups: ['dba'] } },
          { name: 'no-flush', effect: 'deny', actions: ['admin'] },
          { name: 'no-internal-paths', effect: 'deny', resources: ['crm-api'], paths: ['/internal/**'] },
        ],
      },
      { env: { E2E_WEBHOOK_SECRET: WEBHOOK_SECRET, E2E_CRM_TOKEN: 'crm-secret-token', NATS_URL: '', DATABASE_URL: '' } },
    );
  });

  afterAll(async () => {
    await sluice?.stop();
    await Promise.all([idp?.close(), webhook?.close(), siem?.close(), api?.close()]);
    await dropDatabases([targetDb, storeDb]);
    const redis = createClient({ url: 'redis://127.0.0.1:6379' });
    await redis.connect();
    for (const key of await redis.keys(`${keyPrefix}*`)) await redis.del(key);
    await redis.quit();
    await deleteStreams([stream]);
  });

  const pgClient = async (sub: string, groups: string[]) => {
    const client = new pg.Client({ host: '127.0.0.1', port: pgPort, user: sub, database: 'orders-db', password: await idp.mint({ sub, groups }) });
    await client.connect();
    return client;
  };

  it('masks columns, jsonb leaves and free text for a reader, keeping names and amounts', async () => {
    const client = await pgClient('analyst-1', ['analysts']);
    const { rows } = await client.query('SELECT id, ssn, doc, notes FROM profiles');
    const binary = await client.query({ text: 'SELECT ssn, notes FROM profiles WHERE id = $1', values: [1], binary: true } as pg.QueryConfig);
    const totals = await client.query('SELECT customer, total FROM orders WHERE id = 3');
    await client.end();
    const text = JSON.stringify([rows, binary.rows]);
    for (const raw of ['123-45-6789', 'bob@example.com', '4111111111111111', '415 555 0132']) expect(text).not.toContain(raw);
    expect(rows[0].doc.tier).toBe('gold');
    expect(totals.rows[0]).toEqual({ customer: 'customer 3', total: '4.50' });
  });

  it('holds a high-risk DELETE for a DBA, signs the webhook, runs it once on approval and records who approved', async () => {
    const client = await pgClient('ops-bot', ['operators']);
    const held = client.query('DELETE FROM orders');
    const hook = await webhook.waitFor((request) => request.url === '/hooks/approvals');
    const body = JSON.parse(hook.body);
    expect(body).toMatchObject({ resource: 'orders-db', rule: 'mass-changes-need-dba', risk: 'high' });
    expect(JSON.stringify(body.subject)).toContain('ops-bot');
    expect(body.command).toContain('DELETE');
    expect(typeof body.expiresAt).toBe('string');
    expect(hook.headers['x-sluice-signature']).toBe(`sha256=${createHmac('sha256', WEBHOOK_SECRET).update(hook.body).digest('hex')}`);

    const decisionUrl = `http://127.0.0.1:${sluice.ports.approvalHttp}/v1/approvals/${body.id}/decision`;
    const decide = async (sub: string, groups: string[], decision: string) =>
      fetch(decisionUrl, {
        method: 'POST',
        headers: { authorization: `Bearer ${await idp.mint({ sub, groups })}`, 'content-type': 'application/json' },
        body: JSON.stringify({ decision, reason: 'e2e' }),
      });
    expect((await decide('random-dev', ['developers'], 'approve')).status).toBe(403);
    expect((await decide('ops-bot', ['operators', 'dba'], 'approve')).status).toBe(403);
    expect((await decide('dba-alice', ['dba'], 'approve')).status).toBeLessThan(300);
    const result = await held;
    expect(result.command).toBe('DELETE');
    expect(result.rowCount).toBe(50);

    const again = client.query('DELETE FROM orders');
    const second = await webhook.waitFor((request) => request.url === '/hooks/approvals' && JSON.parse(request.body).id !== body.id);
    const secondId = JSON.parse(second.body).id;
    expect((await decide('dba-alice', ['dba'], 'deny')).status).toBe(409);
    await fetch(`http://127.0.0.1:${sluice.ports.approvalHttp}/v1/approvals/${secondId}/decision`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await idp.mint({ sub: 'dba-bob', groups: ['dba'] })}`, 'content-type': 'application/json' },
      body: JSON.stringify({ decision: 'deny', reason: 'not today' }),
    });
    const denied = await again.catch((error: unknown) => error as { code?: string; message?: string });
    expect(denied).toMatchObject({ code: '42501' });
    expect((denied as { message: string }).message).toContain(secondId);
    await client.end();
  });

  it('masks what a held command returns once a DBA approves it, with the profile the agent reads under', async () => {
    const client = await pgClient('ops-bot', ['operators']);
    // No WHERE: high risk, held. The approver releases the command, not the values a profile covers.
    const held = client.query('UPDATE profiles SET notes = notes RETURNING id, ssn, doc, notes');
    const hook = await webhook.waitFor((request) => request.url === '/hooks/approvals' && String(JSON.parse(request.body).command).includes('RETURNING'));
    const response = await fetch(`http://127.0.0.1:${sluice.ports.approvalHttp}/v1/approvals/${JSON.parse(hook.body).id}/decision`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await idp.mint({ sub: 'dba-carol', groups: ['dba'] })}`, 'content-type': 'application/json' },
      body: JSON.stringify({ decision: 'approve', reason: 'e2e' }),
    });
    expect(response.status).toBeLessThan(300);
    const result = await held;
    await client.end();
    expect(result.rowCount).toBe(1);
    const text = JSON.stringify(result.rows);
    for (const raw of ['123-45-6789', 'bob@example.com', '4111111111111111', '415 555 0132']) expect(text).not.toContain(raw);
    expect(result.rows[0].doc.tier).toBe('gold');
  });

  it('governs Redis: AUTH with a token, masked reads, NOPERM for admin commands, WRONGPASS for a bad token', async () => {
    const redis = createClient({ url: `redis://127.0.0.1:${redisPort}`, password: await idp.mint({ sub: 'analyst-2', groups: ['analysts'] }) });
    await redis.connect();
    const value = await redis.get(`${keyPrefix}contact`);
    expect(value).not.toContain('carol@example.net');
    expect(value).toContain('reach me at');
    await expect(redis.flushAll()).rejects.toThrow(/NOPERM/);
    await expect(redis.set(`${keyPrefix}x`, '1')).rejects.toThrow(/NOPERM/);
    expect(await redis.ping()).toBe('PONG');
    await redis.quit();

    const rogue = createClient({ url: `redis://127.0.0.1:${redisPort}`, password: 'garbage' });
    await expect(rogue.connect()).rejects.toThrow(/WRONGPASS/);
    await rogue.disconnect().catch(() => undefined);
  });

  it('governs HTTP: 401 without a token, the token swapped for the target credential, 403 problem for a denied path, masked JSON', async () => {
    expect((await fetch(`http://127.0.0.1:${httpPort}/customers`)).status).toBe(401);
    const token = await idp.mint({ sub: 'analyst-3', groups: ['analysts'] });
    const allowed = await fetch(`http://127.0.0.1:${httpPort}/customers/7`, { headers: { authorization: `Bearer ${token}` } });
    expect(allowed.status).toBe(200);
    const body = (await allowed.json()) as { sawAuthorization: string; email: string; path: string };
    // The target got its own credential; echoed back, it never reaches the agent (CONTRACT §3).
    expect(api.received.find((request) => request.url === '/customers/7')?.headers.authorization).toBe('Bearer crm-secret-token');
    expect(body.sawAuthorization).toBe('[REDACTED:credential]');
    expect(body.email).not.toBe('dave@example.com');
    const denied = await fetch(`http://127.0.0.1:${httpPort}/public/../internal/users`, { headers: { authorization: `Bearer ${token}` } });
    expect(denied.status).toBe(403);
    expect(denied.headers.get('content-type')).toContain('application/problem+json');
    expect(((await denied.json()) as { detail: string }).detail).toContain('no-internal-paths');
  });

  it('answers the sessions API, replays a session, verifies chains and exports OCSF without raw values', async () => {
    const client = await pgClient('auditee', ['analysts']);
    await client.query('SELECT notes FROM profiles');
    await client.end();
    const reader = { authorization: `Bearer ${await idp.mint({ sub: 'carol', groups: ['compliance'] })}` };
    let sessions: Array<{ session_id?: string; id?: string; sessionId?: string }> = [];
    for (let attempt = 0; attempt < 50 && sessions.length === 0; attempt++) {
      const response = await fetch(`http://127.0.0.1:${sluice.ports.auditHttp}/v1/sessions?subject=auditee&resource=orders-db`, { headers: reader });
      expect(response.status).toBe(200);
      sessions = ((await response.json()) as { sessions: typeof sessions }).sessions;
      if (sessions.length === 0) await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(sessions).toHaveLength(1);
    const sessionId = sessions[0]!.session_id ?? sessions[0]!.sessionId ?? sessions[0]!.id;
    const events = await fetch(`http://127.0.0.1:${sluice.ports.auditHttp}/v1/sessions/${sessionId}/events`, { headers: reader });
    expect(events.status).toBe(200);
    const replay = await sluice.cli(['replay', sessionId!, '--token', reader.authorization.slice('Bearer '.length)]);
    expect(replay.status).toBe(0);
    expect(replay.stdout).toContain('SELECT notes FROM profiles');
    expect(replay.stdout).not.toContain('4111111111111111');
    expect((await sluice.cli(['audit', 'verify'], { SLUICE_TOKEN: reader.authorization.slice('Bearer '.length) })).status).toBe(0);

    const store = new pg.Client({ host: '127.0.0.1', user: 'postgres', database: storeDb });
    await store.connect();
    const held = await store.query(`SELECT command, approver, approval_decision, outcome FROM sluice.commands WHERE decision = 'approve' ORDER BY time`);
    await store.end();
    expect(held.rows[0]).toMatchObject({ approver: 'dba-alice', outcome: 'DELETE 50' });
    expect(held.rows[0].command).toContain('DELETE FROM orders');

    const ocsf = await siem.waitFor((request) => request.url === '/siem' && request.body.includes('auditee'), 20_000);
    const exported = JSON.parse(ocsf.body);
    const first = Array.isArray(exported) ? exported[0] : exported;
    expect(first).toHaveProperty('class_uid');
    expect(first).toHaveProperty('metadata.product');
    expect(siem.received.map((request) => request.body).join('')).not.toMatch(/4111111111111111|123-45-6789|bob@example\.com/);
  });
});
