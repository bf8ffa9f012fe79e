import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstream } from '@nats-io/jetstream';
import { buildEvent, subjectForBatch, type CloudEvent } from '@sluice/contracts';
import { parseConfig, type LoadedConfig } from '@sluice/config';
import { connectBus, createMessageSigner, type MessageSigner, type NatsConnection } from '@sluice/event-bus';
import { openEventStore, readWrittenEvents, type EventStore } from '@sluice/event-store';
import { startAuditService, type AuditService } from '@sluice/audit';
import { createDatabase, deleteStreams, dropDatabases } from './support/databases.js';
import { writeSigningKeys } from './support/signing-keys.js';
import { waitUntil } from './support/wait.js';
import { canonicalBatch } from './support/written-batches.js';

/**
 * The audit service when PostgreSQL refuses one event of a batch for a reason no check before
 * the COPY foresees (here a CHECK constraint the test adds for one event id): the batch must not
 * be retried for ever. Every other event is stored once, in order, chained; the refused one is
 * kept in sluice.rejected_events with PostgreSQL's reason; an error that can pass (a lock
 * timeout, a killed connection) is still retried, and refuses nothing.
 */


const run = randomUUID().slice(0, 8);
const storeDb = `sluice_store_refusal_${run}`;
const stream = `STORE_REFUSAL_${run}`;
const prefix = `storerefusal.${run}.events`;
const subject = subjectForBatch('proxy', prefix);
const storeUrl = `postgres://postgres@127.0.0.1:5432/${storeDb}`;
/** A store database whose encoding lacks most of Unicode: PostgreSQL refuses such characters, no check foresees it. */
const latin1Db = `sluice_store_latin1_${run}`;
const latin1Stream = `STORE_LATIN1_${run}`;
const latin1Prefix = `storelatin1.${run}.events`;
const logger = pino({ level: process.env.TEST_LOG ?? 'silent' });
const ADMIN = { host: '127.0.0.1', port: 5432, user: 'postgres' };
/** Short, so that a lock held by the test fails the service's statements rather than holding them. */
const LOCK_TIMEOUT = '200ms';

const query = async <R extends pg.QueryResultRow>(text: string, values: unknown[] = [], database = storeDb): Promise<R[]> => {
  const client = new pg.Client({ ...ADMIN, database });
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end();
  }
};

const event = (session: string, time = '2026-11-27T21:00:00.123Z'): Record<string, unknown> =>
  JSON.parse(
    JSON.stringify(
      buildEvent('command.decided', {
        id: randomUUID(),
        source: 'proxy',
        subject: session,
        time: new Date('2026-11-27T21:00:00.123Z'),
        sessionseq: 1,
        data: { action: 'read', command: 'SELECT 1', commandId: randomUUID(), decision: 'allow', protocol: 'postgres', reason: 'r', resource: 'db', risk: 'low', rule: 'readers' },
      }),
    ),
    (key, value: unknown) => (key === 'time' ? time : value),
  ) as Record<string, unknown>;

const signedByProxy = (): string => 'proxy';

const idOf = (one: Record<string, unknown>): string => one.id as string;


describe('the audit service when PostgreSQL refuses an event', () => {
  let dir: string;
  let nc: NatsConnection;
  let service: AuditService;
  let proxy: MessageSigner;
  let signers: ReturnType<typeof writeSigningKeys>['signers'];

  /** An audit service of its own on the store `database`, its stream `stream`. */
  const auditService = (database: string, stream: string, subjectPrefix: string): Promise<AuditService> => {
    const document = { bus: { url: 'nats://127.0.0.1:4222', stream, subjectPrefix }, provenance: { signers }, services: { audit: { http: '127.0.0.1:0' } } };
    const config = parseConfig(document);
    const loaded: LoadedConfig = { config: { ...config, eventStore: { url: `postgres://postgres@127.0.0.1:5432/${database}` } }, path: join(dir, 'sluice.yaml'), dir };
    return startAuditService({ loaded, logger });
  };

  /** Publishes signed by the proxy; the message's stream sequence. */
  const publish = async (payload: Buffer): Promise<number> => (await jetstream(nc).publish(subject, payload, { headers: proxy.headersFor(payload) })).seq;

  const stored = (session: string) =>
    query<{ id: string; session_seq: number; hash: string; prev_hash: string }>('SELECT id, session_seq, hash, prev_hash FROM sluice.events WHERE session_id = $1 ORDER BY seq', [session]);
  const rejected = (session: string) =>
    query<{ key: string; event_id: string; reason: string; claimed_signer: string | null; payload: string }>(
      'SELECT key, event_id, reason, claimed_signer, payload FROM sluice.rejected_events WHERE session_id = $1 ORDER BY seq',
      [session],
    );
  /** Makes PostgreSQL refuse exactly these events (a constraint on the column the store fills from them). */
  const refuseIds = (name: string, ids: readonly string[]) =>
    query(`ALTER TABLE sluice.events ADD CONSTRAINT ${name} CHECK (id NOT IN (${ids.map((id) => `'${id}'`).join(', ')}))`);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-store-refusal-'));
    const keys = writeSigningKeys(dir);
    signers = keys.signers;
    const { privateKeys } = keys;
    await createDatabase(storeDb, `ALTER DATABASE ${storeDb} SET lock_timeout = '${LOCK_TIMEOUT}'`);
    nc = await connectBus('nats://127.0.0.1:4222', 'store-refusal');
    service = await auditService(storeDb, stream, prefix);
    proxy = createMessageSigner('proxy', privateKeys.proxy!);
  }, 60_000);

  afterAll(async () => {
    await service?.stop();
    await nc?.drain();
    await deleteStreams([stream, latin1Stream]);
    await dropDatabases([storeDb, latin1Db]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('stores every other event of the batch once and in order, keeps the refused one with PostgreSQL’s reason, and goes on with later batches', async () => {
    const session = randomUUID();
    const [first, second, third, fourth, fifth] = Array.from({ length: 5 }, () => event(session));
    const refusedWritten = event(session);
    // Larger than a stranger's refused message is kept of: a genuine event is kept whole.
    (refusedWritten.data as Record<string, unknown>).command = `SELECT '${'x'.repeat(100_000)}'`;
    const refusedDecoded = event(session);
    // A year the checks before the COPY refuse: its message is decoded, not taken as written.
    const refusedEarly = event(session, '0000-01-01T00:00:00.000Z');
    // Refused before the COPY, and kept whole too: the record is a genuine event's only copy.
    (refusedEarly.data as Record<string, unknown>).command = `SELECT '${'y'.repeat(100_000)}'`;
    await refuseIds('refuse_two_events', [idOf(refusedWritten), idOf(refusedDecoded)]);
    expect(readWrittenEvents(canonicalBatch([first!, refusedWritten, second!]))).toBeDefined();

    const writtenSeq = await publish(canonicalBatch([first!, refusedWritten, second!]));
    const decodedSeq = await publish(canonicalBatch([refusedEarly, third!, refusedDecoded, fourth!]));
    const good = [first, second, third, fourth].map((one) => idOf(one!));
    await waitUntil(async () => (await stored(session)).length === good.length, 30_000, 'the other events stored');
    await waitUntil(async () => (await rejected(session)).length === 3, 30_000, 'the refused events kept');

    const rows = await stored(session);
    expect(rows.map((row) => row.id)).toEqual(good);
    // One chain over the gaps: each event follows the one stored before it.
    expect(rows.map((row) => row.session_seq)).toEqual([1, 2, 3, 4]);
    rows.slice(1).forEach((row, index) => expect(row.prev_hash).toBe(rows[index]!.hash));
    const refusals = await rejected(session);
    const byId = new Map(refusals.map((row) => [row.event_id, row]));
    // Keyed by its message and its index in it, as the consumer keys its own refusals.
    expect(byId.get(idOf(refusedWritten))).toMatchObject({ key: `${stream}:${writtenSeq}:1`, claimed_signer: 'proxy' });
    expect(byId.get(idOf(refusedDecoded))).toMatchObject({ key: `${stream}:${decodedSeq}:2`, claimed_signer: 'proxy' });
    expect(byId.get(idOf(refusedEarly))).toMatchObject({ key: `${stream}:${decodedSeq}:0`, reason: 'time is outside the years 1 to 9999 the store keeps' });
    expect(JSON.parse(byId.get(idOf(refusedEarly))!.payload)).toEqual(refusedEarly);
    for (const refused of [refusedWritten, refusedDecoded]) {
      const row = byId.get(idOf(refused))!;
      expect(row.reason).toContain('refuse_two_events');
      expect(row.reason).toContain('[SQLSTATE 23514]');
      expect(JSON.parse(row.payload)).toEqual(refused);
    }

    // Later batches are stored; nothing was stored or kept twice.
    await publish(canonicalBatch([fifth!]));
    await waitUntil(async () => (await stored(session)).length === good.length + 1, 30_000, 'a later batch stored');
    expect((await stored(session)).map((row) => row.id)).toEqual([...good, idOf(fifth!)]);
    expect(await rejected(session)).toHaveLength(3);
    expect(service.consumers().find((state) => state.durable === 'audit-store')).toMatchObject({ failing: false });

    // The table says what it holds to whoever reads the schema.
    const [described] = await query<{ comment: string }>(`SELECT obj_description('sluice.rejected_events'::regclass, 'pg_class') AS comment`);
    expect(described!.comment).toContain('refused by PostgreSQL for their data');

    // verify holds the chain and reports the refusals, as for every refused event.
    const store = await openEventStore({ url: storeUrl });
    try {
      expect(await store.verify({ sessionId: session })).toMatchObject({ ok: false, events: 5, rejected: 3, firstBroken: { kind: 'rejected' } });
    } finally {
      await store.close();
    }
  }, 90_000);

  describe('storing a batch again after a crash part way', () => {
    let store: EventStore;
    beforeAll(async () => {
      store = await openEventStore({ url: storeUrl });
    });
    afterAll(async () => {
      await store?.close();
    });

    it('stores what the crash left unstored once, in order, and refuses the same events again', async () => {
      const session = randomUUID();
      const events = Array.from({ length: 12 }, () => event(session)) as unknown as CloudEvent[];
      await refuseIds('refuse_for_the_crash', [events[3]!.id, events[9]!.id]);
      // What a first try had stored before the process died: the events up to the first refused one.
      expect(await store.appendStorable(await store.prepare(events.slice(0, 3), signedByProxy))).toMatchObject({ stored: 3, refused: [] });
      const again = await store.appendStorable(await store.prepare(events, signedByProxy));
      expect(again).toMatchObject({ stored: 7, duplicates: 3, refused: [{ id: events[3]!.id }, { id: events[9]!.id }] });
      const once = await store.appendStorable(await store.prepare(events, signedByProxy));
      expect(once).toMatchObject({ stored: 0, duplicates: 10, refused: [{ id: events[3]!.id }, { id: events[9]!.id }] });
      const good = events.filter((_, index) => index !== 3 && index !== 9).map((one) => one.id);
      expect((await stored(session)).map((row) => row.id)).toEqual(good);
      expect(await store.verify({ sessionId: session })).toMatchObject({ ok: true, events: 10 });
    });

    it('fails a batch as append does when the error is not about its data', async () => {
      const session = randomUUID();
      const events = Array.from({ length: 3 }, () => event(session)) as unknown as CloudEvent[];
      const locker = new pg.Client({ ...ADMIN, database: storeDb });
      await locker.connect();
      try {
        await locker.query('BEGIN; LOCK TABLE sluice.events IN ACCESS EXCLUSIVE MODE');
        await expect(store.appendStorable(await store.prepare(events))).rejects.toMatchObject({ code: '55P03' });
      } finally {
        await locker.query('ROLLBACK');
        await locker.end();
      }
      expect(await stored(session)).toEqual([]);
    });
  });

  it('fails the batch, and only the batch, when the server ends the connection of an append waiting on a lock', async () => {
    // No lock_timeout: the append waits on the lock until its backend is ended.
    const waiting = await openEventStore({ url: `${storeUrl}?options=${encodeURIComponent('-c lock_timeout=0')}` });
    const session = randomUUID();
    const events = Array.from({ length: 3 }, () => event(session)) as unknown as CloudEvent[];
    const locker = new pg.Client({ ...ADMIN, database: storeDb });
    await locker.connect();
    try {
      await locker.query('BEGIN; LOCK TABLE sluice.events IN ACCESS EXCLUSIVE MODE');
      const appending = waiting.appendStorable(await waiting.prepare(events, signedByProxy));
      const backends = async () =>
        (await locker.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`, [storeDb])).rows;
      await waitUntil(async () => (await backends()).length > 0, 10_000, 'the append waiting on the lock');
      for (const { pid } of await backends()) await locker.query('SELECT pg_terminate_backend($1)', [pid]);
      await expect(appending).rejects.toMatchObject({ code: '57P01' });
      await locker.query('ROLLBACK');
      // The pool goes on with a new connection.
      expect(await waiting.appendStorable(await waiting.prepare(events, signedByProxy))).toMatchObject({ stored: 3, refused: [] });
    } finally {
      await locker.end();
      await waiting.close();
    }
  });

  it('keeps an event whose text the database encoding cannot hold, and its refusal, never holding up the events behind it', async () => {
    const admin = new pg.Client({ ...ADMIN, database: 'postgres' });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${latin1Db} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`);
    await admin.end();
    const latin1 = await auditService(latin1Db, latin1Stream, latin1Prefix);
    try {
      const session = randomUUID();
      const [first, second] = [event(session), event(session)];
      // LATIN1 has é: stored. It has no emoji: refused, by the COPY and then by rejected_events as it is.
      (first.data as Record<string, unknown>).command = "SELECT 'café'";
      const emoji = event(session);
      (emoji.data as Record<string, unknown>).command = "SELECT '😀'";
      const payload = canonicalBatch([first, emoji, second]);
      const { seq } = await jetstream(nc).publish(subjectForBatch('proxy', latin1Prefix), payload, { headers: proxy.headersFor(payload) });
      const storedThere = () => query<{ id: string }>('SELECT id FROM sluice.events WHERE session_id = $1 ORDER BY seq', [session], latin1Db);
      const rejectedThere = () => query<{ key: string; event_id: string; reason: string; payload: string }>('SELECT key, event_id, reason, payload FROM sluice.rejected_events', [], latin1Db);
      await waitUntil(async () => (await storedThere()).length === 2 && (await rejectedThere()).length === 1, 30_000, 'the others stored, the emoji kept');
      expect((await storedThere()).map((row) => row.id)).toEqual([idOf(first), idOf(second)]);
      const [kept] = await rejectedThere();
      expect(kept).toMatchObject({ key: `${latin1Stream}:${seq}:1`, event_id: idOf(emoji) });
      expect(kept!.reason).toMatch(/^kept with every non-ASCII character as a \\u escape, .*\[SQLSTATE 22P05\]$/);
      // Escaped, the payload is still the event's JSON.
      expect(JSON.parse(kept!.payload)).toEqual(emoji);
    } finally {
      await latin1.stop();
    }
  }, 60_000);

  it('retries a batch while its errors can pass (a lock held past lock_timeout, killed connections) and refuses none of its events', async () => {
    const session = randomUUID();
    const events = Array.from({ length: 6 }, () => event(session));
    const locker = new pg.Client({ ...ADMIN, database: storeDb });
    await locker.connect();
    try {
      await locker.query('BEGIN; LOCK TABLE sluice.events IN ACCESS EXCLUSIVE MODE');
      await publish(canonicalBatch(events.slice(0, 3)));
      await publish(canonicalBatch(events.slice(3)));
      await waitUntil(() => service.consumers().find((state) => state.durable === 'audit-store')?.failing === true, 30_000, 'the batch failing on the lock');
      // Tries enough to have halved a batch of six down to single events, had the error been taken for the data's.
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      await locker.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, [storeDb]);
      await new Promise((resolve) => setTimeout(resolve, 500));
    } finally {
      await locker.query('ROLLBACK');
      await locker.end();
    }
    await waitUntil(async () => (await stored(session)).length === events.length, 60_000, 'every event stored once the lock is gone');
    expect((await stored(session)).map((row) => row.id)).toEqual(events.map(idOf));
    expect(await rejected(session)).toEqual([]);
  }, 90_000);
});
