import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { buildEvent, subjectForBatch } from '@sluice/contracts';
import { parseConfig, type LoadedConfig } from '@sluice/config';
import { connectBus, createMessageSigner, decodeEvents, type MessageSigner, type NatsConnection } from '@sluice/event-bus';
import { openEventStore, readWrittenEvents } from '@sluice/event-store';
import { startAuditService, type AuditService } from '@sluice/audit';
import { dropDatabases } from './support/databases.js';
import { writeSigningKeys } from './support/signing-keys.js';
import { waitUntil } from './support/wait.js';
import { canonicalBatch, canonicalize } from './support/written-batches.js';

/**
 * Red team of the audit service's COPY path for events taken as written (their COPY text copied
 * from the message's bytes), with real NATS, PostgreSQL and the audit service: messages written
 * byte by byte as a compromised (but signing) publisher or an agent filling texts could make them,
 * and as a foreign publisher (unsigned, wrongly signed). Every event is stored once exactly as the
 * general path stores it, the chains verify, or it is refused into sluice.rejected_events; no
 * message may hold up the ones behind it.
 */


const run = randomUUID().slice(0, 8);
const storeDb = `sluice_rt_copy_${run}`;
const replayDb = `sluice_rt_copyreplay_${run}`;
const stream = `RT_COPY_${run}`;
const prefix = `rtcopy.${run}.events`;
const subject = subjectForBatch('proxy', prefix);
const logger = pino({ level: process.env.TEST_LOG ?? 'silent' });
const ADMIN = { host: '127.0.0.1', port: 5432, user: 'postgres' };

const COLUMNS =
  'id, session_id, session_seq, type, kind, source, time, data::text AS data, ext::text AS ext, resource, subject_sub, command_id, approval_id, decision, masked_values, hash, prev_hash';

const query = async <R extends pg.QueryResultRow>(database: string, text: string, values: unknown[] = []): Promise<R[]> => {
  const client = new pg.Client({ ...ADMIN, database });
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end();
  }
};

/** A proxy event as a compromised proxy could write it (members sorted, `data` first), with `change` applied. */
const event = (session: string, change: (event: Record<string, unknown>) => void = () => undefined): Record<string, unknown> => {
  const built = JSON.parse(
    JSON.stringify(
      buildEvent('command.executed', {
        id: randomUUID(),
        source: 'proxy',
        subject: session,
        time: new Date('2026-11-27T19:00:00.123Z'),
        sessionseq: 1,
        data: {
          action: 'read',
          command: 'SELECT 1',
          commandId: 'c1',
          decision: 'allow',
          durationMs: 0.5,
          ok: true,
          outcome: 'SELECT 1',
          protocol: 'postgres',
          reason: 'allowed by readers',
          resource: 'db',
          result: { bytes: 1, columns: ['a'], maskedCounts: { email: 2 }, rowCount: 1, rows: [['0']], truncated: false },
          risk: 'low',
          rule: 'readers',
        },
      }),
    ),
  ) as Record<string, unknown>;
  change(built);
  return built;
};

const dataOf = (event: Record<string, unknown>): Record<string, unknown> => event.data as Record<string, unknown>;


describe('the audit service storing messages taken as written', () => {
  let dir: string;
  let nc: NatsConnection;
  let service: AuditService;
  let proxy: MessageSigner;
  let policy: MessageSigner;
  const publish = async (payload: Buffer, signer: MessageSigner | null = proxy): Promise<void> => {
    await jetstream(nc).publish(subject, payload, signer ? { headers: signer.headersFor(payload) } : {});
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-rt-copy-'));
    const { signers, privateKeys } = writeSigningKeys(dir);
    const document = { bus: { url: 'nats://127.0.0.1:4222', stream, subjectPrefix: prefix }, provenance: { signers }, services: { audit: { http: '127.0.0.1:0' } } };
    const config = parseConfig(document);
    const loaded: LoadedConfig = { config: { ...config, eventStore: { url: `postgres://postgres@127.0.0.1:5432/${storeDb}` } }, path: join(dir, 'sluice.yaml'), dir };
    nc = await connectBus('nats://127.0.0.1:4222', 'rt-copy');
    service = await startAuditService({ loaded, logger });
    proxy = createMessageSigner('proxy', privateKeys.proxy!);
    policy = createMessageSigner('policy', privateKeys.policy!);
  }, 60_000);

  afterAll(async () => {
    await service?.stop();
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(stream).catch(() => undefined);
    await nc?.drain();
    await dropDatabases([storeDb, replayDb]);
    rmSync(dir, { recursive: true, force: true });
  });

  const stored = (ids: readonly string[]) =>
    query<{ id: string }>(storeDb, `SELECT ${COLUMNS} FROM sluice.events WHERE id = ANY($1::text[]) ORDER BY seq`, [ids]);
  const rejected = () => query<{ event_id: string | null; reason: string; claimed_signer: string | null }>(storeDb, 'SELECT event_id, reason, claimed_signer FROM sluice.rejected_events ORDER BY seq');
  const verified = async () => {
    const store = await openEventStore({ url: `postgres://postgres@127.0.0.1:5432/${storeDb}` });
    try {
      return await store.verify();
    } finally {
      await store.close();
    }
  };

  it('stores texts an agent or a target chose, copied from the bytes, as the general path stores them, and the chains verify', async () => {
    const session = randomUUID();
    const longSub = 'a'.repeat(2_000);
    const texts = ['\\N', '\\.', 'tab\there', 'nl\nx', 'cr\rx', 'back\\slash', '\u2028\u2029', '\u0085nel', '\ufeffbom', '\ufffe\uffff', '😀 é €', '"quoted"', '\u007f', '\u001f', 'x\\', '\\\\N'];
    const events = [
      // Plain texts (no escape): the columns are copied from the bytes.
      event(session, (one) => Object.assign(dataOf(one), { resource: '\u2028 \u0085 \ufeff \ufffe \uffff 😀', subject: { sub: longSub } })),
      event(session, (one) => Object.assign(one, { id: `${randomUUID()}\u2028😀`, type: 'sluice.command.executed.v2' })),
      event(session, (one) => Object.assign(dataOf(one), { subject: { sub: 12345 }, decision: { not: 'a string' }, approvalId: null, commandId: ['x'] })),
      event(session, (one) => Object.assign(dataOf(one), { subject: { sub: true, tub: 'x' }, resource: '' })),
      event(session, (one) => Object.assign(one, { xnote: 'ext \u2028 😀', zz: { k: ['\\N', '\t', '\\.'] } })),
      event(session, (one) => Object.assign(dataOf(one), { constructor: 'c', hasOwnProperty: 'h', toString: 's' })),
      // Texts with escapes: COPY's specials, the end-of-data marker, `\N` as text.
      ...texts.map((text) =>
        event(session, (one) => {
          Object.assign(one, { xnote: text });
          Object.assign(dataOf(one), { resource: text, commandId: text, approvalId: text, decision: text, subject: { sub: text }, command: text });
        }),
      ),
      ...texts.map((text) => event(session, (one) => Object.assign(one, { id: `${randomUUID()}${text}`, type: `sluice.command.executed${text}` }))),
    ];
    // Each a message of its own, so one the scanner refuses does not send the others the general way.
    const payloads = events.map((one) => canonicalBatch([one]));
    const taken = payloads.filter((payload) => readWrittenEvents(payload) !== undefined).length;
    expect(taken).toBe(payloads.length);
    for (const payload of payloads) await publish(payload);
    const ids = events.map((one) => one.id as string);
    await waitUntil(async () => (await stored(ids)).length === ids.length, 30_000, 'every event stored');
    const rows = await stored(ids);
    expect(rows.map((row) => row.id)).toEqual(ids);
    const first = rows[0] as unknown as { subject_sub: string; resource: string };
    expect(first.subject_sub).toBe(longSub);
    expect(first.resource).toBe('\u2028 \u0085 \ufeff \ufffe \uffff 😀');
    expect(await verified()).toMatchObject({ ok: true });

    // The general path (decodeEvents, prepareEvent) stores the same rows from the same bytes.
    const replay = await openEventStore({ url: `postgres://postgres@127.0.0.1:5432/${replayDb}` });
    try {
      for (const payload of payloads) await replay.append(decodeEvents(payload));
    } finally {
      await replay.close();
    }
    expect(await query(replayDb, `SELECT ${COLUMNS} FROM sluice.events ORDER BY seq`)).toEqual(rows);
  }, 90_000);

  it('never stores a canonical message that is unsigned, wrongly signed or signed by a service that may not publish it', async () => {
    const session = randomUUID();
    const [unsigned, forged, foreign, genuine] = [event(session), event(session), event(session), event(session)];
    await publish(canonicalBatch([unsigned]), null);
    const forgedBytes = canonicalBatch([forged]);
    // Signed, then one byte of a text changed: still canonical, so the scanner would take it.
    const headers = proxy.headersFor(forgedBytes);
    const tampered = Buffer.from(forgedBytes.toString('utf8').replace('"resource":"db"', '"resource":"dc"'), 'utf8');
    expect(readWrittenEvents(tampered)).toBeDefined();
    await jetstream(nc).publish(subject, tampered, { headers });
    await publish(canonicalBatch([foreign]), policy);
    await publish(canonicalBatch([genuine]));
    await waitUntil(async () => (await stored([genuine.id as string])).length === 1, 30_000, 'the genuine event stored');
    await waitUntil(async () => (await rejected()).filter((row) => [unsigned, forged, foreign].some((one) => one.id === row.event_id)).length === 3, 30_000, 'the others rejected');
    expect(await stored([unsigned, forged, foreign].map((one) => one.id as string))).toEqual([]);
    expect(await verified()).toMatchObject({ ok: false, firstBroken: { kind: 'rejected' } });
  }, 60_000);

  it('refuses into rejected_events a time PostgreSQL cannot store (before year 1, after 9999), never holding up the events behind it', async () => {
    const session = randomUUID();
    // toISOString writes each of these (so both paths take them as the stored time), timestamptz refuses them.
    const times = ['0000-01-01T00:00:00.000Z', '-000001-01-01T00:00:00.000Z', '+010000-01-01T00:00:00.000Z', '+275760-09-13T00:00:00.000Z'];
    const bad = times.map((time) => event(session, (one) => Object.assign(one, { time })));
    for (const one of bad) expect(readWrittenEvents(canonicalBatch([one]))).toBeDefined();
    const edges = ['0001-01-01T00:00:00.000Z', '9999-12-31T23:59:59.999Z'].map((time) => event(session, (one) => Object.assign(one, { time })));
    const after = event(session);
    for (const one of bad) await publish(canonicalBatch([one]));
    await publish(canonicalBatch(edges));
    await publish(canonicalBatch([after]));
    const good = [...edges, after].map((one) => one.id as string);
    await waitUntil(async () => (await stored(good)).length === good.length, 30_000, 'the events behind stored');
    const refused = (await rejected()).filter((row) => bad.some((one) => one.id === row.event_id));
    expect(refused).toHaveLength(bad.length);
    const rows = (await stored(good)) as unknown as { time: Date }[];
    expect(rows.map((row) => row.time.toISOString())).toEqual(['0001-01-01T00:00:00.000Z', '9999-12-31T23:59:59.999Z', '2026-11-27T19:00:00.123Z']);
  }, 60_000);

  it('stores or refuses an event whose indexed text (id, session, sub, command or approval id) is longer than a btree entry takes, never holding up the events behind it', async () => {
    const session = randomUUID();
    // Random, so that PostgreSQL cannot compress it under the btree limit (2704 bytes).
    const long = (): string => Array.from({ length: 120 }, () => randomUUID()).join('');
    const longSession = long();
    const cases = [
      event(session, (one) => Object.assign(one, { id: long() })),
      event(longSession, (one) => Object.assign(one, { id: randomUUID() })),
      event(session, (one) => Object.assign(dataOf(one), { commandId: long() })),
      event(session, (one) => Object.assign(dataOf(one), { approvalId: long() })),
      event(session, (one) => Object.assign(one, { type: 'sluice.session.rejected.v1', data: { code: 'x', protocol: 'redis', reason: 'denied', resource: 'db', subject: { groups: [], sub: long() } } })),
    ];
    const after = event(session);
    for (const one of cases) await publish(canonicalBatch([one]));
    await publish(canonicalBatch([after]));
    await waitUntil(async () => (await stored([after.id as string])).length === 1, 30_000, 'the event behind stored');
    const ids = cases.map((one) => one.id as string);
    expect(await stored(ids)).toEqual([]);
    // rejected_events keeps the start of a long id.
    const refused = (await rejected()).filter((row) => ids.some((id) => id.startsWith(row.event_id!)));
    expect(refused.map((row) => row.reason)).toEqual(['id', 'subject', 'data.commandId', 'data.approvalId', 'data.subject.sub'].map((text) => `${text} is longer than the 2048 bytes the store indexes`));
  }, 60_000);

  it('stores or refuses an event nested deeper than the scanner follows or jsonb takes, never holding up the events behind it', async () => {
    const session = randomUUID();
    const nested = (depth: number): string => `${'['.repeat(depth)}${']'.repeat(depth)}`;
    const deep = [100, 5_000, 50_000].map((depth) => {
      const one = event(session);
      const text = canonicalize(one).replace('"command":"SELECT 1"', `"command":"SELECT 1","deep":${nested(depth)}`);
      return { id: one.id as string, payload: Buffer.from(`[${text}]`, 'utf8') };
    });
    const after = event(session);
    for (const { payload } of deep) await publish(payload);
    await publish(canonicalBatch([after]));
    await waitUntil(async () => (await stored([after.id as string])).length === 1, 30_000, 'the event behind stored');
    const ids = deep.map(({ id }) => id);
    // Deeper than the scanner follows, the general path stores it; deeper than hashing and jsonb take, it is refused.
    expect((await stored(ids)).map((row) => row.id)).toEqual([ids[0]]);
    const refused = (await rejected()).filter((row) => ids.includes(row.event_id!));
    expect(refused.map((row) => [row.event_id, row.reason])).toEqual(ids.slice(1).map((id) => [id, 'nested more than 1000 levels deep']));
    const store = await openEventStore({ url: `postgres://postgres@127.0.0.1:5432/${storeDb}` });
    try {
      // The chain holds; only the refusals are reported.
      expect(await store.verify({ sessionId: session })).toMatchObject({ ok: false, events: 2, firstBroken: { kind: 'rejected', id: ids[1] } });
    } finally {
      await store.close();
    }
  }, 60_000);
});
