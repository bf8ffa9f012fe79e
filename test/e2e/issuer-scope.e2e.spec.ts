import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { connect as connectTcp } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createDatabase, deleteStreams, dropDatabases } from '../support/databases.js';
import { startTestIssuer, type TestIssuer } from '../support/oidc.js';
import { freePort } from '../support/ports.js';
import { startHttpSink, type HttpSink } from '../support/sinks.js';
import { startSluice, type RunningSluice } from '../support/sluice.js';

/**
 * Two trusted issuers: the company's (people and production agents) and a second one whose
 * subjects and groups its users can influence (a CI system's workload identities, say). Rules,
 * approvers and audit readers that name the first must not match the second's tokens, even when
 * they carry the same sub and groups.
 */
describe('rules, approvers and audit readers scoped to an issuer', () => {
  const run = randomUUID().slice(0, 8);
  const targetDb = `sluice_e2e_iss_${run}`;
  const storeDb = `sluice_e2e_issstore_${run}`;
  const stream = `SLUICE_E2E_ISS_${run}`;
  let company: TestIssuer;
  let other: TestIssuer;
  let webhook: HttpSink;
  let sluice: RunningSluice;
  let pgPort: number;
  let redisPort: number;
  let httpPort: number;
  let api: Server;

  beforeAll(async () => {
    await createDatabase(targetDb, `CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items VALUES (1, 'one'), (2, 'two'); CREATE TABLE notes (body text);`);
    [company, other, webhook] = await Promise.all([startTestIssuer(), startTestIssuer(), startHttpSink()]);
    pgPort = await freePort();
    [redisPort, httpPort] = [await freePort(), await freePort()];
    api = createServer((_request, response) => response.writeHead(200, { 'content-type': 'text/plain' }).end('ok'));
    await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
    const apiPort = (api.address() as { port: number }).port;
    sluice = await startSluice(
      {
        bus: { url: 'nats://127.0.0.1:4222', stream, subjectPrefix: `e2eiss.${run}.events` },
        eventStore: { url: `postgres://postgres@127.0.0.1:5432/${storeDb}` },
        identity: { oidc: [{ issuer: company.issuer, audience: 'sluice' }, { issuer: other.issuer, audience: 'sluice' }] },
        resources: [
          {
            name: 'db',
            type: 'postgres',
            listen: `127.0.0.1:${pgPort}`,
            target: { host: '127.0.0.1', database: targetDb },
            credentials: { username: 'postgres' },
            limits: { maxConnectionsPerSubject: 2 },
          },
          { name: 'kv', type: 'redis', listen: `127.0.0.1:${redisPort}`, target: { host: '127.0.0.1', port: 6379 } },
          { name: 'api', type: 'http', listen: `127.0.0.1:${httpPort}`, target: { url: `http://127.0.0.1:${apiPort}` } },
        ],
        approval: { webhooks: [{ url: `${webhook.url}/hooks` }] },
        audit: { readers: { groups: ['compliance'], issuer: company.issuer } },
        rules: [
          { name: 'company-agents-read', effect: 'allow', subjects: { groups: ['agents'], issuer: company.issuer }, actions: ['read'] },
          { name: 'company-agents-write', effect: 'allow', subjects: { groups: ['agents'], issuer: [company.issuer] }, actions: ['write'] },
          // The other issuer's agents may log in and read one table: their sessions see the same decision cache.
          { name: 'ci-reads-notes', effect: 'allow', subjects: { issuer: other.issuer }, actions: ['read'], tables: ['public.notes'] },
          { name: 'mass-deletes-need-dba', effect: 'approve', subjects: { groups: ['agents'] }, risk: 'high', approvers: { groups: ['dba'], issuer: company.issuer } },
        ],
      },
      { env: { NATS_URL: '', DATABASE_URL: '' } },
    );
  });

  afterAll(async () => {
    await sluice?.stop();
    await Promise.all([company?.close(), other?.close(), webhook?.close(), new Promise((resolve) => (api ? api.close(resolve) : resolve(undefined)))]);
    await dropDatabases([targetDb, storeDb]);
    await deleteStreams([stream]);
  });

  const connect = async (issuer: TestIssuer, sub: string, groups: string[]) => {
    const client = new pg.Client({ host: '127.0.0.1', port: pgPort, user: sub, database: 'db', password: await issuer.mint({ sub, groups }) });
    await client.connect();
    return client;
  };

  it("lets the company's agent read, and refuses the same sub and groups from the other issuer, after the decision was cached", async () => {
    const ours = await connect(company, 'agent-1', ['agents']);
    for (let round = 0; round < 3; round++) expect((await ours.query('SELECT name FROM items WHERE id = 1')).rows).toEqual([{ name: 'one' }]);
    await ours.end();

    const theirs = await connect(other, 'agent-1', ['agents']);
    await expect(theirs.query('SELECT name FROM items WHERE id = 1')).rejects.toMatchObject({ code: '42501' });
    expect((await theirs.query('SELECT body FROM notes')).rows).toEqual([]);
    await theirs.end();
  });

  it("does not let the other issuer's tokens with the same sub fill the company agent's maxConnectionsPerSubject", async () => {
    const squatters = [await connect(other, 'agent-3', ['agents']), await connect(other, 'agent-3', ['agents'])];
    await expect(connect(other, 'agent-3', ['agents'])).rejects.toMatchObject({ code: '53300' });
    const ours = await connect(company, 'agent-3', ['agents']);
    expect((await ours.query('SELECT name FROM items WHERE id = 2')).rows).toEqual([{ name: 'two' }]);
    await Promise.all([ours.end(), ...squatters.map((client) => client.end())]);
  });

  it('does not hand a cached decision to a subject whose one group name spells two groups with the cache key separator', async () => {
    const ours = await connect(company, 'agent-4', ['agents', 'x']);
    for (let round = 0; round < 3; round++) expect((await ours.query('SELECT name FROM items WHERE id = 1')).rows).toEqual([{ name: 'one' }]);
    await ours.end();
    const spelled = await connect(company, 'agent-4', ['agents\u0002x']);
    await expect(spelled.query('SELECT name FROM items WHERE id = 1')).rejects.toMatchObject({ code: '42501' });
    await spelled.end();
  });

  it("decides each Redis re-AUTH as its own issuer's identity: the same sub and groups from the other issuer get NOPERM", async () => {
    const key = `iss:${run}:k`;
    const redis = new Redis({ port: redisPort, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, password: await company.mint({ sub: 'agent-5', groups: ['agents'] }) });
    await redis.connect();
    try {
      expect(await redis.get(key)).toBeNull();
      expect(await redis.call('AUTH', await other.mint({ sub: 'agent-5', groups: ['agents'] }))).toBe('OK');
      await expect(redis.get(key)).rejects.toThrow(/^NOPERM/);
      expect(await redis.call('AUTH', await company.mint({ sub: 'agent-5', groups: ['agents'] }))).toBe('OK');
      expect(await redis.get(key)).toBeNull();
    } finally {
      redis.disconnect();
    }
  });

  it('decides each HTTP request on one keep-alive connection by its own token: the same sub and groups from the other issuer get 403', async () => {
    const [ours, theirs] = [await company.mint({ sub: 'agent-6', groups: ['agents'] }), await other.mint({ sub: 'agent-6', groups: ['agents'] })];
    const socket = connectTcp(httpPort, '127.0.0.1');
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    const statusOf = async (token: string): Promise<string> => {
      const before = received.length;
      socket.write(`GET /items HTTP/1.1\r\nhost: api\r\nauthorization: Bearer ${token}\r\n\r\n`);
      const deadline = Date.now() + 5_000;
      for (;;) {
        const answer = received.slice(before);
        const head = /^HTTP\/1\.1 (\d{3})[^]*?\r\n\r\n/.exec(answer);
        // The upstream answers chunked and its last chunk may arrive in a later read than the first.
        const whole = head && (/transfer-encoding: chunked/i.test(head[0]) ? answer.endsWith('\r\n0\r\n\r\n') : answer.length >= head[0].length + Number(/content-length: (\d+)/i.exec(head[0])?.[1] ?? 0));
        if (whole) return head[1]!;
        if (Date.now() > deadline) throw new Error(`no whole answer: ${answer}`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    };
    try {
      expect(await statusOf(ours)).toBe('200');
      expect(await statusOf(theirs)).toBe('403');
      expect(await statusOf(ours)).toBe('200');
    } finally {
      socket.destroy();
    }
  });

  it("lets only the company's DBA release a held command; a DBA group from the other issuer gets 403", async () => {
    const agent = await connect(company, 'agent-2', ['agents']);
    const held = agent.query('DELETE FROM items');
    const hook = await webhook.waitFor((request) => request.url === '/hooks');
    const { id, approvers } = JSON.parse(hook.body) as { id: string; approvers: { issuers?: string[] } };
    expect(approvers.issuers).toEqual([company.issuer]);
    const decide = async (token: string) =>
      fetch(`http://127.0.0.1:${sluice.ports.approvalHttp}/v1/approvals/${id}/decision`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ decision: 'approve', reason: 'ok' }),
      });
    const impostor = await decide(await other.mint({ sub: 'dba-1', groups: ['dba'] }));
    expect(impostor.status).toBe(403);
    // Nor may the impostor read the request (approvers and the requester only).
    const peek = await fetch(`http://127.0.0.1:${sluice.ports.approvalHttp}/v1/approvals/${id}`, { headers: { authorization: `Bearer ${await other.mint({ sub: 'agent-2', groups: ['dba'] })}` } });
    expect(peek.status).toBe(404);
    const dba = await decide(await company.mint({ sub: 'dba-1', groups: ['dba'] }));
    expect(dba.status).toBe(200);
    expect((await held).rowCount).toBe(2);
    await agent.end();
  });

  it("answers the audit API to the company's compliance group only", async () => {
    const sessions = async (token: string) => fetch(`http://127.0.0.1:${sluice.ports.auditHttp}/v1/sessions`, { headers: { authorization: `Bearer ${token}` } });
    expect((await sessions(await other.mint({ sub: 'auditor', groups: ['compliance'] }))).status).toBe(403);
    expect((await sessions(await company.mint({ sub: 'auditor', groups: ['compliance'] }))).status).toBe(200);
  });
});
