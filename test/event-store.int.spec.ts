import { createHash } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildEvent, type CloudEvent, type CommandDecided } from '@sluice/contracts';
import { openEventStore, WRITER_ROLE, type EventStore } from '@sluice/event-store';

const RUN = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
const DATABASE = `sluice_store_it_${RUN}`;
const ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';
const DB_URL = `postgres://postgres@127.0.0.1:5432/${DATABASE}`;

let counter = 0;
const decided = (session: string): CloudEvent => {
  counter += 1;
  return buildEvent('command.decided', {
    id: `${RUN}-${counter}`,
    source: 'proxy',
    subject: session,
    time: new Date(),
    data: { commandId: `c${counter}`, resource: 'shop-db', protocol: 'postgres', command: 'SELECT 1', action: 'read', risk: 'low', decision: 'allow', rule: 'r', reason: 'ok' },
  });
};

/** The audit service stores only what a service provably signed; these events are the proxy's. */
const signedByProxy = (): string => 'proxy';
const appendSigned = async (store: EventStore, events: readonly CloudEvent[] | Awaited<ReturnType<EventStore['prepare']>>) =>
  store.append(Array.isArray(events) ? await store.prepare(events as readonly CloudEvent[], signedByProxy) : events);

const chainOf = async (store: EventStore, session: string) =>
  (await store.sessionEvents(session)).map((event) => ({ id: event.id, prev: event.prev_hash, hash: event.hash }));

describe('event store appends on PostgreSQL', () => {
  let store: EventStore;
  let second: EventStore;

  beforeAll(async () => {
    store = await openEventStore({ url: DB_URL });
    second = await openEventStore({ url: DB_URL });
  });

  afterAll(async () => {
    await store?.close();
    await second?.close();
    const admin = new pg.Client({ connectionString: ADMIN_URL });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`);
    await admin.end();
  });

  it('continues each session chain and skips stored ids when a later batch repeats some', async () => {
    const first = [decided('a'), decided('b'), decided('a')];
    expect(await appendSigned(store, first)).toEqual({ stored: 3, duplicates: 0 });
    const next = [first[2]!, decided('a'), first[0]!, decided('b')];
    expect(await appendSigned(store, await store.prepare(next, signedByProxy))).toEqual({ stored: 2, duplicates: 2 });
    const chain = await chainOf(store, 'a');
    expect(chain.map((link) => link.id)).toEqual([first[0]!.id, first[2]!.id, next[1]!.id]);
    for (let index = 1; index < chain.length; index += 1) expect(chain[index]!.prev).toBe(chain[index - 1]!.hash);
    expect(await store.verify({ sessionId: 'a' })).toMatchObject({ ok: true, events: 3 });
  });

  it('stores a batch once when two stores append it at the same moment (a redelivery racing its first delivery)', async () => {
    const batch = Array.from({ length: 40 }, (_, index) => decided(`race-${index % 4}`));
    const results = await Promise.all([appendSigned(store, batch), appendSigned(second, batch)]);
    expect(results.map((result) => result.stored).sort()).toEqual([0, 40]);
    expect(results.map((result) => result.duplicates).sort()).toEqual([0, 40]);
    for (let session = 0; session < 4; session += 1) expect(await store.verify({ sessionId: `race-${session}` })).toMatchObject({ ok: true, events: 10 });
  });

  it('chains every session when one batch spans more sessions than it locks one by one', async () => {
    const events = Array.from({ length: 600 }, (_, index) => decided(`wide-${index % 300}`));
    expect(await appendSigned(store, events)).toEqual({ stored: 600, duplicates: 0 });
    expect(await appendSigned(store, events.slice(0, 300).map((event) => ({ ...event, id: `${event.id}-again` })))).toEqual({ stored: 300, duplicates: 0 });
    const one = await store.sessionEvents('wide-7');
    expect(one.map((event) => event.id)).toEqual([events[7]!.id, events[307]!.id, `${events[7]!.id}-again`]);
    expect(await store.verify()).toMatchObject({ ok: true });
  });

  it('keeps every chain valid when two stores append to the same sessions at once', async () => {
    const batches = (store: EventStore) =>
      Array.from({ length: 6 }, () => appendSigned(store, Array.from({ length: 50 }, (_, index) => decided(`shared-${index % 5}`))));
    const results = await Promise.all([...batches(store), ...batches(second)]);
    expect(results.reduce((sum, result) => sum + result.stored, 0)).toBe(600);
    for (let session = 0; session < 5; session += 1) {
      const events = await store.sessionEvents(`shared-${session}`);
      expect(events).toHaveLength(120);
    }
    expect(await store.verify()).toMatchObject({ ok: true });
  });

  it('drops events without an id and counts them as not stored when a batch holds some', async () => {
    const good = decided('c');
    expect(await appendSigned(store, [{ ...good, id: '' }, good, good])).toEqual({ stored: 1, duplicates: 2 });
    expect(await appendSigned(store, [{ ...good, id: '' }])).toEqual({ stored: 0, duplicates: 1 });
  });

  it('stores text with tabs, newlines, backslashes and other scripts unchanged when a value holds them', async () => {
    const awkward = 'tab\there\nline\r\\back\\slash "quoted" \u00e9\u20ac\ud83d\ude00 \\N \\.';
    const event = buildEvent('command.decided', {
      id: `${RUN}-awk\tward\\id`,
      source: 'proxy\nsource',
      subject: `awk\tward-${RUN}`,
      time: new Date(),
      data: { commandId: awkward, resource: awkward, protocol: 'postgres', command: awkward, action: 'read', risk: 'low', decision: 'allow', rule: 'r', reason: awkward },
    });
    expect(await appendSigned(store, [event])).toEqual({ stored: 1, duplicates: 0 });
    const [stored] = await store.sessionEvents(`awk\tward-${RUN}`);
    expect(stored).toMatchObject({ id: event.id, source: 'proxy\nsource', data: event.data });
    expect(await store.verify({ sessionId: `awk\tward-${RUN}` })).toMatchObject({ ok: true, events: 1 });
  });

  it('stores a batch of more rows than one CopyData message carries, text beyond ASCII in every other row, each row as it was', async () => {
    const session = `many-${RUN}`;
    const events = Array.from({ length: 2_345 }, (_, index) => {
      const event = decided(session);
      const command = index % 2 === 0 ? `SELECT 'é€😀 ${index}'` : `SELECT ${index}`;
      return { ...event, data: { ...(event.data as CommandDecided), command } };
    });
    expect(await appendSigned(store, events)).toEqual({ stored: events.length, duplicates: 0 });
    const stored = await store.sessionEvents(session);
    expect(stored.map((event) => (event.data as CommandDecided).command)).toEqual(events.map((event) => (event.data as CommandDecided).command));
    expect(await store.verify({ sessionId: session })).toMatchObject({ ok: true, events: events.length });
  });

  it("hashes a published command.executed's JSON as written and verifies it from the stored columns, whatever its text holds", async () => {
    const session = `as-written-${RUN}`;
    const awkward = 'tab\there\nline\r\\back\\slash "quoted" \u2028\u2029 \u00e9\u20ac\ud83d\ude00 \\N \\. \\u0041 </script>';
    const executed = (seq: number, durationMs: number) =>
      buildEvent('command.executed', {
        id: `${RUN}-as-written-${seq}`,
        source: 'proxy',
        subject: session,
        time: new Date(),
        sessionseq: seq,
        // Members in sorted order, as the proxy's audit port writes them.
        data: {
          action: 'read', command: awkward, commandId: `c-${seq}`, decision: 'allow', durationMs, ok: true, outcome: 'SELECT 1', protocol: 'postgres', reason: awkward, resource: 'db',
          result: { bytes: 3, columns: [awkward], maskedCounts: { email: 1 }, rowCount: 2, rows: [[awkward], [null]], truncated: false },
          risk: 'low', rule: 'r', tables: ['public.t'],
        },
      });
    const published = [executed(1, 0.1), executed(2, 1e21), executed(3, 5e-324)].map((event) => JSON.stringify(event));
    // As the audit service gets them: parsed from the bus's JSON.
    expect(await appendSigned(store, published.map((json) => JSON.parse(json) as CloudEvent))).toEqual({ stored: 3, duplicates: 0 });
    const stored = await store.sessionEvents(session);
    let previous = '0'.repeat(64);
    for (const [index, json] of published.entries()) {
      expect(stored[index]!.hash).toBe(createHash('sha256').update(previous + json).digest('hex'));
      previous = stored[index]!.hash;
    }
    expect(await store.verify({ sessionId: session })).toMatchObject({ ok: true, events: 3 });
  });

  it('rejects the whole batch and keeps appending afterwards when a row cannot be stored', async () => {
    const bad = { ...decided('d'), source: undefined } as unknown as CloudEvent;
    const good = decided('d');
    await expect(appendSigned(store, [good, bad])).rejects.toMatchObject({ code: '23502' });
    expect(await store.sessionEvents('d')).toHaveLength(0);
    expect(await appendSigned(store, [good])).toEqual({ stored: 1, duplicates: 0 });
  });

  it('stores an event whose id and session hold a lone surrogate once, and finds it stored when it comes again', async () => {
    const event = { ...decided(`lone-${RUN}\ud800`), id: `${RUN}-lone\udc00` };
    expect(await appendSigned(store, [event])).toEqual({ stored: 1, duplicates: 0 });
    expect(await appendSigned(store, [event, decided(`lone-${RUN}\ud800`)])).toEqual({ stored: 1, duplicates: 1 });
    expect((await store.sessionEvents(`lone-${RUN}\ufffd`)).map((stored) => stored.seq > 0)).toEqual([true, true]);
  });

  it("keeps a lone surrogate in an event's data as U+FFFD and still verifies its chain (an agent's text cannot make it look tampered)", async () => {
    const session = `data-lone-${RUN}`;
    const event = decided(session);
    const data = { ...(event.data as CommandDecided), command: `SELECT '\ud83d' -- \udc00 and a pair 😀`, ['key\udbff']: 'x' };
    expect(await appendSigned(store, [{ ...event, data }, decided(session)])).toEqual({ stored: 2, duplicates: 0 });
    const [stored] = await store.sessionEvents(session);
    expect((stored!.data as CommandDecided).command).toBe(`SELECT '\ufffd' -- \ufffd and a pair 😀`);
    expect(await store.verify({ sessionId: session })).toMatchObject({ ok: true, events: 2 });
  });

  it('stores nothing and goes on through its one connection when the COPY is refused before its first row', async () => {
    // The rows travel with the COPY statement (not after CopyInResponse): refused at its start,
    // the server must drop them and stay in step with the client.
    const single = await openEventStore({ url: DB_URL, maxConnections: 1 });
    const admin = new pg.Client({ connectionString: DB_URL });
    await admin.connect();
    try {
      const session = `refused-${RUN}`;
      const events = [decided(session), decided(session)];
      await admin.query(`REVOKE INSERT ON sluice.events FROM ${WRITER_ROLE}`);
      await expect(appendSigned(single, events)).rejects.toMatchObject({ code: '42501' });
      await admin.query(`GRANT INSERT ON sluice.events TO ${WRITER_ROLE}`);
      expect(await single.sessionEvents(session)).toHaveLength(0);
      expect(await appendSigned(single, events)).toEqual({ stored: 2, duplicates: 0 });
      expect(await single.verify({ sessionId: session })).toMatchObject({ ok: true, events: 2 });
    } finally {
      await admin.query(`GRANT INSERT ON sluice.events TO ${WRITER_ROLE}`);
      await admin.end();
      await single.close();
    }
  });

  it('names a rejected record, then an event stored without a verified signature, when verifying', async () => {
    const session = `prov-${RUN}`;
    const unsigned = { ...decided(session), id: `${RUN}-unsigned` };
    await store.append([unsigned]);
    expect(await store.verify({ sessionId: session })).toMatchObject({ ok: false, unsigned: 1, rejected: 0, firstBroken: { kind: 'unsigned', id: unsigned.id } });
    const record = { key: `S:${RUN}:0`, reason: 'bad signature for signer approval', claimedSigner: 'approval', natsSubject: 'sluice.events.approval.decided', streamSeq: 7, eventId: `${RUN}-forged`, sessionId: session, payload: '{"id":"forged\u0000"}' };
    await store.reject([record]);
    await store.reject([record]);
    // Whatever a forger puts in its fields, the record is kept (a failing insert would block the stream).
    await store.reject([{ ...record, key: `S:${RUN}:1`, eventId: `nul\u0000${'x'.repeat(5000)}`, sessionId: `other-${RUN}\u0000`, eventType: '\u0000' }]);
    const result = await store.verify({ sessionId: session });
    expect(result).toMatchObject({ ok: false, rejected: 1, unsigned: 1, firstBroken: { kind: 'rejected', id: `${RUN}-forged`, sessionId: session } });
    expect(result.ok === false && result.firstBroken.reason).toContain('bad signature for signer approval (signer approval) on sluice.events.approval.decided, stream seq 7');
  });

  it('keeps the writer role at INSERT and SELECT and gives the compliance role SELECT only', async () => {
    const client = new pg.Client({ connectionString: DB_URL });
    await client.connect();
    try {
      const privileges = async (role: string, table: string) =>
        (await client.query<{ privilege_type: string }>(`SELECT privilege_type FROM information_schema.role_table_grants WHERE grantee = $1 AND table_schema = 'sluice' AND table_name = $2 ORDER BY 1`, [role, table])).rows.map((row) => row.privilege_type);
      for (const table of ['events', 'rejected_events']) {
        expect(await privileges('sluice_event_writer', table)).toEqual(['INSERT', 'SELECT']);
        expect(await privileges('sluice_audit_reader', table)).toEqual(['SELECT']);
      }
      expect(await privileges('sluice_audit_reader', 'sessions')).toEqual(['SELECT']);
      await client.query('BEGIN');
      await client.query('SET LOCAL ROLE sluice_audit_reader');
      expect((await client.query('SELECT count(*) FROM sluice.commands')).rowCount).toBe(1);
      await expect(client.query(`INSERT INTO sluice.rejected_events (key, reason, nats_subject, stream_seq, payload) VALUES ('k', 'r', 's', 1, 'p')`)).rejects.toMatchObject({ code: '42501' });
      await client.query('ROLLBACK');
    } finally {
      await client.end();
    }
  });

  it('shows a command.executed in sluice.commands and sluice.sessions like a decided, completed and returned command', async () => {
    const session = `${RUN}-executed`;
    const common = { source: 'proxy', subject: session, time: new Date() };
    await appendSigned(store, [
      buildEvent('session.started', { ...common, id: `${RUN}-x1`, data: { resource: 'shop-db', protocol: 'postgres', subject: { sub: 'agent-x', groups: [], issuer: 'i' }, client: 'c', readOnly: true } }),
      buildEvent('command.executed', {
        ...common,
        id: `${RUN}-x2`,
        data: {
          commandId: `${RUN}-cx`, resource: 'shop-db', protocol: 'postgres', command: 'SELECT email FROM customers', action: 'read', risk: 'low', decision: 'allow', rule: 'r', reason: 'ok',
          outcome: 'SELECT 2', ok: true, durationMs: 2,
          result: { columns: ['email'], rows: [['a***@example.com'], ['b***@example.com']], rowCount: 2, bytes: 32, truncated: false, maskedCounts: { email: 2 } },
        },
      }),
    ]);
    const client = new pg.Client({ connectionString: DB_URL });
    await client.connect();
    try {
      const { rows: commands } = await client.query('SELECT decision, outcome, ok, row_count, truncated, masked_values FROM sluice.commands WHERE session_id = $1', [session]);
      expect(commands).toEqual([{ decision: 'allow', outcome: 'SELECT 2', ok: true, row_count: '2', truncated: false, masked_values: 2 }]);
      const { rows: sessions } = await client.query('SELECT commands, masked_values, events FROM sluice.sessions WHERE session_id = $1', [session]);
      expect(sessions).toEqual([{ commands: '1', masked_values: '2', events: '2' }]);
    } finally {
      await client.end();
    }
    expect((await store.listSessions({ decision: 'allow', subject: 'agent-x' })).sessions.map((row) => row.id)).toContain(session);
    expect(await store.verify({ sessionId: session })).toMatchObject({ ok: true, events: 2 });
  });
});
