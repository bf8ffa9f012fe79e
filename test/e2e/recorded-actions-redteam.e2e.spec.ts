import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createClient } from 'redis';
import { openEventStore } from '@sluice/event-store';
import { asSeparateEvents } from '../support/command-events.js';
import { createDatabase, deleteStreams, dropDatabases } from '../support/databases.js';
import { startTestIssuer, type TestIssuer } from '../support/oidc.js';
import { freePorts } from '../support/ports.js';
import { startSluice, type RunningSluice } from '../support/sluice.js';
import { waitUntil } from '../support/wait.js';

interface StoredEvent {
  readonly type: string;
  readonly session_id: string;
  readonly data: Record<string, unknown>;
}

const run = randomUUID().slice(0, 8);
const targetDb = `sluice_e2e_recact_${run}`;
const storeDb = `sluice_e2e_recactstore_${run}`;
const stream = `SLUICE_E2E_RECACT_${run}`;
const keyPrefix = `recact:${run}:`;
const RAW_EMAIL = 'bob@example.com';

const nestedArrays = (levels: number, inner: string): string => '['.repeat(levels) + inner + ']'.repeat(levels);

/**
 * Red team of what a read-only agent and the data in its targets can do to the record of its
 * actions, through a real `sluice up`: every command it runs must be in sluice.events with its
 * outcome, in its session's chain, and nothing may end the session or go to rejected_events.
 * - Target values nested past what masking walks (jsonb thousands of levels deep, a Redis string
 *   or HTTP body of deep JSON) overflowed the stack: the PostgreSQL session died as a proxy error
 *   with its command never completed. They are now withheld as unmaskable, the session goes on.
 * - A statement naming thousands of tables made its decision too large for one event: it was
 *   published reduced, the command text cut to 1 KiB and the table list dropped. The list is now
 *   cut to its first 4 KiB of names, the command text kept to maxCommandBytes.
 * - A value spelled with \u escapes (`bob\u0040example.com`) in a text that is not one JSON
 *   document (a log line, JSON with trailing bytes) reached the agent and the record unmasked.
 * - Approvers were shown a long statement cut without a sign of it (the first 80 KiB, or 1 KiB
 *   when its escapes made approval.requested too large): padding hid the write they granted. A
 *   statement longer than maxCommandBytes is now refused instead of held.
 * - The user name and settings (application_name) an agent sends at startup were recorded raw in
 *   session.started, where the same text in a command is masked.
 * - An agent that hangs up while its command runs (a long read, a blocking XREAD) left the command
 *   decided with no outcome at all; it is now completed as ERR_CONNECTION_CLOSED (it may have run).
 *   An HTTP request's completion came after its session's end; the end now waits for it.
 */
describe('the record of a read-only agent\'s actions against deep values and hang-ups', () => {
  let idp: TestIssuer;
  let sluice: RunningSluice;
  let api: Server;
  let pgPort: number;
  let redisPort: number;
  let httpPort: number;
  let httpBody = '{}';
  const direct = createClient({ url: 'redis://127.0.0.1:6379' });

  beforeAll(async () => {
    await createDatabase(targetDb);
    await direct.connect();
    idp = await startTestIssuer();
    api = createServer((request, response) => {
      const answer = () => response.writeHead(200, { 'content-type': 'application/json' }).end(httpBody);
      if (request.url === '/slow') setTimeout(answer, 1_500);
      else answer();
    });
    await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
    const apiPort = (api.address() as { port: number }).port;
    [pgPort, redisPort, httpPort] = (await freePorts(3)) as [number, number, number];
    sluice = await startSluice({
      identity: { oidc: [{ issuer: idp.issuer, audience: 'sluice' }] },
      eventStore: { url: `postgres://postgres@127.0.0.1:5432/${storeDb}` },
      bus: { url: 'nats://127.0.0.1:4222', stream, subjectPrefix: `e2erecact.${run}.events` },
      masking: { profiles: { pii: { detectors: ['credit_card', 'email', 'us_ssn'], strategy: 'partial', columns: [{ match: '(?i)ssn', strategy: 'redact' }] } } },
      resources: [
        { name: 'db', type: 'postgres', listen: `127.0.0.1:${pgPort}`, target: { host: '127.0.0.1', database: targetDb }, credentials: { username: 'postgres' } },
        { name: 'kv', type: 'redis', listen: `127.0.0.1:${redisPort}`, target: { host: '127.0.0.1', port: 6379 } },
        { name: 'api', type: 'http', listen: `127.0.0.1:${httpPort}`, target: { url: `http://127.0.0.1:${apiPort}` } },
      ],
      rules: [
        { name: 'agents-read', effect: 'allow', subjects: { groups: ['agents'] }, actions: ['read'], mask: 'pii' },
        { name: 'writes-held', effect: 'approve', subjects: { groups: ['writers'] }, actions: ['write'], approvers: { groups: ['dba'] } },
      ],
    });
  }, 90_000);

  afterAll(async () => {
    await sluice?.stop();
    await idp?.close();
    await new Promise((resolve) => (api ? api.close(resolve) : resolve(undefined)));
    for (const key of await direct.keys(`${keyPrefix}*`)) await direct.del(key);
    await direct.quit();
    await dropDatabases([targetDb, storeDb]);
    await deleteStreams([stream]);
  });

  const pgAgent = async (sub: string): Promise<pg.Client> => {
    const client = new pg.Client({ host: '127.0.0.1', port: pgPort, user: sub, database: 'db', password: await idp.mint({ sub, groups: ['agents'] }) });
    client.on('error', () => undefined);
    await client.connect();
    return client;
  };

  const redisAgent = async (sub: string) => {
    const client = createClient({ url: `redis://127.0.0.1:${redisPort}`, password: await idp.mint({ sub, groups: ['agents'] }) });
    client.on('error', () => undefined);
    await client.connect();
    return client;
  };

  /** The session's events, once `settled` holds of them and (unless `ended` is false) its session.ended is stored. */
  const sessionEvents = async (sub: string, settled: (events: StoredEvent[]) => boolean, ended = true): Promise<StoredEvent[]> => {
    const store = new pg.Client({ host: '127.0.0.1', user: 'postgres', database: storeDb });
    await store.connect();
    try {
      let events: StoredEvent[] = [];
      await waitUntil(async () => {
        const rows = (
          await store.query<StoredEvent>(
            `SELECT type, session_id, data FROM sluice.events WHERE session_id IN
               (SELECT session_id FROM sluice.events WHERE kind = 'session.started' AND subject_sub = $1) ORDER BY seq`,
            [sub],
          )
        ).rows;
        events = asSeparateEvents(rows);
        return (!ended || events.some((event) => event.type.startsWith('sluice.session.ended'))) && settled(events);
      }, 30_000);
      return events;
    } finally {
      await store.end();
    }
  };

  const completionOf = (events: StoredEvent[], command: string): Record<string, unknown> | undefined => {
    const id = events.find((event) => event.type.startsWith('sluice.command.decided') && event.data.command === command)?.data.commandId;
    return id === undefined ? undefined : events.find((event) => event.type.startsWith('sluice.command.completed') && event.data.commandId === id)?.data;
  };

  it('withholds a PostgreSQL json value nested past what masking walks, records it failed, and the session goes on', async () => {
    const agent = await pgAgent('recact-pg-deep');
    const deepTexts = [5_000, 300].map((levels) => `select (repeat('[', ${levels}) || repeat(']', ${levels}))::jsonb as doc`);
    for (const text of deepTexts) await expect(agent.query(text)).rejects.toThrow(/result withheld/);
    // Within the bound it is walked and masked as ever.
    const within = await agent.query(`select '${nestedArrays(200, JSON.stringify(RAW_EMAIL))}'::jsonb as doc`);
    expect(JSON.stringify(within.rows)).not.toContain(RAW_EMAIL);
    expect((await agent.query('select 2 as n')).rows).toEqual([{ n: 2 }]);
    await agent.end();

    const events = await sessionEvents('recact-pg-deep', (all) => all.filter((event) => event.type.startsWith('sluice.command.completed')).length >= 4);
    for (const text of deepTexts) expect(completionOf(events, text)).toMatchObject({ ok: false, error: { message: expect.stringContaining('nested deeper than') } });
    expect(events.find((event) => event.type.startsWith('sluice.session.ended'))?.data.reason).toBe('client_terminated');
    expect(JSON.stringify(events)).not.toContain(RAW_EMAIL);
  });

  it('withholds a Redis string and an HTTP body of JSON nested past what masking walks, and records both', async () => {
    await direct.set(`${keyPrefix}deep`, nestedArrays(50_000, '1'));
    const redis = await redisAgent('recact-redis-deep');
    await expect(redis.get(`${keyPrefix}deep`)).rejects.toThrow(/withheld/);
    expect(await redis.ping()).toBe('PONG');
    await redis.quit();
    const redisEvents = await sessionEvents('recact-redis-deep', () => true);
    expect(completionOf(redisEvents, `GET ${keyPrefix}deep`)).toMatchObject({ ok: false, error: { code: 'ERR_MASKING_UNAVAILABLE' } });

    httpBody = nestedArrays(100_000, '1');
    const token = await idp.mint({ sub: 'recact-http-deep', groups: ['agents'] });
    const response = await fetch(`http://127.0.0.1:${httpPort}/deep`, { headers: { authorization: `Bearer ${token}` } });
    expect(response.status).toBe(503);
    await response.text();
    // An HTTP session lasts as long as the agent's keep-alive connection: its completion is enough.
    const httpEvents = await sessionEvents('recact-http-deep', (all) => all.some((event) => event.type.startsWith('sluice.command.completed')), false);
    expect(completionOf(httpEvents, 'GET /deep')).toMatchObject({ ok: false, error: { code: 'ERR_MASKING_UNAVAILABLE' } });
  });

  it('masks values spelled with \\u escapes in texts that are not one JSON document, for the agent and in the record', async () => {
    const hidden = ['bob\\u0040example.com', '4111\\u00201111\\u00201111\\u00201111'];
    await direct.set(`${keyPrefix}escaped`, `log line {"mail":"${hidden[0]}","card":"${hidden[1]}"} trailing`);
    const redis = await redisAgent('recact-escapes');
    const value = await redis.get(`${keyPrefix}escaped`);
    await redis.quit();
    httpBody = `{"mail":"${hidden[0]}"} trailing`;
    const token = await idp.mint({ sub: 'recact-escapes', groups: ['agents'] });
    const body = await (await fetch(`http://127.0.0.1:${httpPort}/escaped`, { headers: { authorization: `Bearer ${token}` } })).text();
    const agent = await pgAgent('recact-escapes');
    const row = (await agent.query(`select 'note ${hidden[0]}' as note`)).rows[0] as { note: string };
    await agent.end();
    for (const seen of [value, body, row.note]) {
      expect(seen).toContain('example.com');
      for (const raw of [...hidden, RAW_EMAIL]) expect(seen).not.toContain(raw);
    }
    const events = await sessionEvents('recact-escapes', (all) => all.filter((event) => event.type.startsWith('sluice.result.returned')).length >= 3, false);
    const recorded = JSON.stringify(events).replaceAll('\\\\', '\\');
    for (const raw of [...hidden, RAW_EMAIL]) expect(recorded).not.toContain(raw);
  });

  it('records a statement naming thousands of tables with its command text, its table list cut, never as a reduced event', async () => {
    const agent = await pgAgent('recact-pg-tables');
    const names = Array.from({ length: 5_000 }, (_, index) => `"${'t'.repeat(58)}${String(index).padStart(5, '0')}"`);
    const text = `select 1 from ${names.join(', ')}`;
    await expect(agent.query(text)).rejects.toThrow(/does not exist/);
    await agent.end();
    const events = await sessionEvents('recact-pg-tables', (all) => all.some((event) => event.type.startsWith('sluice.command.decided') && event.data.truncated === true));
    const decided = events.find((event) => event.type.startsWith('sluice.command.decided') && event.data.truncated === true)!.data;
    expect(decided.reduced).toBeUndefined();
    expect(String(decided.command)).toBe(text.slice(0, String(decided.command).length));
    // maxCommandBytes (16 KiB) of its JSON, each quote written as two bytes: far more than a reduced event's 1 KiB.
    expect(Buffer.byteLength(String(decided.command))).toBeGreaterThan(15_000);
    expect(decided.commandBytes).toBe(Buffer.byteLength(text));
    const tables = decided.tables as string[];
    expect(tables.length).toBeGreaterThan(10);
    expect(Buffer.byteLength(JSON.stringify(tables))).toBeLessThanOrEqual(4_096);
  });

  it('masks the user name, database name and settings an agent sends at startup in session.started, as it masks its command texts', async () => {
    const sub = 'recact-pg-startup';
    const raw = ['4111111111111111', RAW_EMAIL, '123-45-6789'];
    const agent = new pg.Client({ host: '127.0.0.1', port: pgPort, user: RAW_EMAIL, database: 'db', application_name: `card ${raw[0]} ssn ${raw[2]}`, password: await idp.mint({ sub, groups: ['agents'] }) });
    await agent.connect();
    await agent.query(`select 1 as n -- ${raw.join(' ')}`);
    await agent.end();
    const events = await sessionEvents(sub, () => true);
    const started = events.find((event) => event.type.startsWith('sluice.session.started'))!.data;
    expect(started.parameters).toMatchObject({ application_name: expect.stringMatching(/^card .+ ssn /) });
    const recorded = JSON.stringify(events);
    for (const value of raw) expect(recorded).not.toContain(value);
  });

  it('masks what a refused startup parameter quotes of the agent\'s packet in session.rejected', async () => {
    const sub = 'recact-pg-startup-refused';
    const store = new pg.Client({ host: '127.0.0.1', user: 'postgres', database: storeDb });
    await store.connect();
    try {
      // A setting outside those allowed, a `-c` word without a value, and a server switch: each refusal quotes it.
      for (const options of [`-c ${RAW_EMAIL}=1`, '-c ssn=123-45-6789x -c 4111111111111111', `-x ${RAW_EMAIL}`]) {
        const agent = new pg.Client({ host: '127.0.0.1', port: pgPort, user: sub, database: 'db', options, password: await idp.mint({ sub, groups: ['agents'] }) });
        await expect(agent.connect()).rejects.toThrow(/startup parameter/);
      }
      let reasons: string[] = [];
      await waitUntil(async () => {
        const rows = (await store.query<{ reason: string }>(`SELECT data->>'reason' AS reason FROM sluice.events WHERE kind = 'session.rejected' AND subject_sub = $1`, [sub])).rows;
        reasons = rows.map((row) => row.reason);
        return reasons.length === 3;
      }, 30_000);
      for (const reason of reasons) expect(reason).toMatch(/^startup parameter refused: /);
      const recorded = reasons.join('\n');
      for (const value of [RAW_EMAIL, '4111111111111111', '123-45-6789']) expect(recorded).not.toContain(value);
    } finally {
      await store.end();
    }
  });

  it('completes in the record a PostgreSQL statement the agent hung up on while it ran', async () => {
    const agent = await pgAgent('recact-pg-hangup');
    const text = 'select count(*) from generate_series(1, 30000000)';
    void agent.query(text).catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 300));
    (agent as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    const events = await sessionEvents('recact-pg-hangup', (all) => completionOf(all, text) !== undefined);
    expect(completionOf(events, text)).toMatchObject({ ok: false, error: { code: 'ERR_CONNECTION_CLOSED', message: expect.stringContaining('may have run') } });
  });

  it('completes in the record a Redis command the agent hung up on while it blocked', async () => {
    const redis = await redisAgent('recact-redis-hangup');
    const args = ['XREAD', 'BLOCK', '3000', 'STREAMS', `${keyPrefix}stream`, '$'];
    void redis.sendCommand(args).catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await redis.disconnect();
    const events = await sessionEvents('recact-redis-hangup', (all) => completionOf(all, args.join(' ')) !== undefined);
    expect(completionOf(events, args.join(' '))).toMatchObject({ ok: false, error: { code: 'ERR_CONNECTION_CLOSED' } });
  });

  it('ends an HTTP session in the record only after the completion of the request the agent hung up on', async () => {
    const token = await idp.mint({ sub: 'recact-http-hangup', groups: ['agents'] });
    const controller = new AbortController();
    const pending = fetch(`http://127.0.0.1:${httpPort}/slow`, { headers: { authorization: `Bearer ${token}` }, signal: controller.signal }).catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 300));
    controller.abort();
    await pending;
    const events = await sessionEvents('recact-http-hangup', (all) => completionOf(all, 'GET /slow') !== undefined);
    expect(completionOf(events, 'GET /slow')).toMatchObject({ ok: false });
    expect(events.at(-1)?.type).toMatch(/^sluice\.session\.ended/);
  });

  it('never sends approvers a statement cut short: one longer than they can be shown whole is refused, not held', async () => {
    const sub = 'recact-approval';
    const agent = new pg.Client({ host: '127.0.0.1', port: pgPort, user: sub, database: 'db', password: await idp.mint({ sub, groups: ['writers'] }) });
    agent.on('error', () => undefined);
    await agent.connect();
    await agent.query('create temp table scratch (n int)').catch(() => undefined);
    // Padding before the write: approvers were shown the first 80 KiB (or 1 KiB, the approval
    // event reduced for its escapes) without the write, or any sign the text went on.
    for (const pad of ['x'.repeat(100_000), '\u0001'.repeat(50_000)]) {
      await expect(agent.query(`/* ${pad} */ delete from scratch`)).rejects.toThrow(/longer than approvers can be shown whole/);
    }
    await agent.end();
    const dba = await idp.mint({ sub: 'recact-dba', groups: ['dba'] });
    const listed = (await (await fetch(`http://127.0.0.1:${sluice.ports.approvalHttp}/v1/approvals`, { headers: { authorization: `Bearer ${dba}` } })).json()) as { approvals: unknown[] };
    expect(listed.approvals).toEqual([]);
    const events = await sessionEvents(sub, (all) => all.filter((event) => event.type.startsWith('sluice.command.completed')).length >= 2);
    expect(events.some((event) => event.type.startsWith('sluice.approval.requested'))).toBe(false);
  });

  it('keeps every session in its chain: nothing refused into rejected_events, and the chains verify', async () => {
    const store = await openEventStore({ url: `postgres://postgres@127.0.0.1:5432/${storeDb}` });
    try {
      expect(await store.verify()).toMatchObject({ ok: true });
    } finally {
      await store.close();
    }
    const client = new pg.Client({ host: '127.0.0.1', user: 'postgres', database: storeDb });
    await client.connect();
    const rejected = await client.query('SELECT reason FROM sluice.rejected_events');
    await client.end();
    expect(rejected.rows).toEqual([]);
  });
});
