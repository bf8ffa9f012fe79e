import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstreamManager } from '@nats-io/jetstream';
import { buildEvent, writeExecutedEvent, type CloudEvent, type CommandExecuted } from '@sluice/contracts';
import { parseConfig, type LoadedConfig } from '@sluice/config';
import { connectBus, createMessageSigner, decodeEvents, EventPublisher, type NatsConnection } from '@sluice/event-bus';
import { openEventStore, readWrittenEvents, type EventStore } from '@sluice/event-store';
import { startAuditService, type AuditService } from '@sluice/audit';
import { dropDatabases } from './support/databases.js';
import { writeSigningKeys } from './support/signing-keys.js';
import { waitUntil } from './support/wait.js';

/**
 * Red team of the audit reader with real NATS and PostgreSQL: command.executed events written by
 * the proxy's own writer (writeExecutedEvent into the publisher's arena, signed as the proxy),
 * whose every agent-controlled text is drawn to break a byte scanner, a COPY line or jsonb: lone
 * surrogates, NUL, controls, quotes and backslashes, U+2028, noncharacters, text that looks like
 * JSON or like an escape. Each must be stored once with the text PostgreSQL can hold, the chains
 * must verify after the jsonb round trip, and the general path must store the same rows.
 */

const run = randomUUID().slice(0, 8);
const storeDb = `sluice_rt_reader_${run}`;
const replayDb = `sluice_rt_readerreplay_${run}`;
const stream = `RT_READER_${run}`;
const prefix = `rtreader.${run}.events`;
const logger = pino({ level: process.env.TEST_LOG ?? 'silent' });
const ADMIN = { host: '127.0.0.1', port: 5432, user: 'postgres' };

/** What PostgreSQL keeps of a text: no U+0000, no lone surrogate (both U+FFFD). */
// eslint-disable-next-line no-control-regex
const asStored = (text: string): string => text.replace(/[\u0000\p{Surrogate}]/gu, '\uFFFD');

/** Units an agent can get into a recorded text, the awkward ones over-represented. */
const awkwardUnit = fc.oneof(
  fc.constantFrom('\u0000', '\u0001', '\u001f', '\b', '\t', '\n', '\f', '\r', '"', '\\', '/', '\u007f', '\u0080', '\u2028', '\u2029', '\ufeff', '\ufffe', '\uffff', '\ud800', '\udfff', '😀', 'é'),
  fc.constantFrom('\\u0000', '\\ud800', '","decision":"deny', '"},{"data":', '\\.', '\\N', '\t\\N\t'),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
  fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 3 }),
);
const awkwardText = fc.array(awkwardUnit, { maxLength: 40 }).map((units) => units.join(''));

const rows = async (database: string) => {
  const client = new pg.Client({ ...ADMIN, database });
  await client.connect();
  try {
    const result = await client.query<{ id: string; session_id: string; session_seq: number; hash: string; prev_hash: string; data: string; ext: string; command_id: string | null; decision: string | null; masked_values: number }>(
      'SELECT id, session_id, session_seq, hash, prev_hash, data::text AS data, ext::text AS ext, command_id, decision, masked_values FROM sluice.events ORDER BY seq',
    );
    return result.rows;
  } finally {
    await client.end();
  }
};

describe('the audit reader against command.executed events an agent filled', () => {
  let dir: string;
  let nc: NatsConnection;
  let service: AuditService;
  let publisher: EventPublisher;
  let store: EventStore | undefined;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-rt-reader-'));
    const { signers, privateKeys } = writeSigningKeys(dir);
    const document = { bus: { url: 'nats://127.0.0.1:4222', stream, subjectPrefix: prefix }, provenance: { signers }, services: { audit: { http: '127.0.0.1:0' } } };
    const config = parseConfig(document);
    const loaded: LoadedConfig = { config: { ...config, eventStore: { url: `postgres://postgres@127.0.0.1:5432/${storeDb}` } }, path: join(dir, 'sluice.yaml'), dir };
    nc = await connectBus('nats://127.0.0.1:4222', 'rt-reader');
    service = await startAuditService({ loaded, logger });
    publisher = new EventPublisher(nc, { source: 'proxy', subjectPrefix: prefix, maxBatchEvents: 40, signer: createMessageSigner('proxy', privateKeys.proxy!) });
  }, 60_000);

  afterAll(async () => {
    await store?.close().catch(() => undefined);
    await service?.stop();
    await publisher?.close();
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(stream).catch(() => undefined);
    await nc?.drain();
    await dropDatabases([storeDb, replayDb]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('stores every event once with its texts as PostgreSQL holds them, the chains verify, and the general path stores the same rows', async () => {
    // The first half holds nothing PostgreSQL rewrites (their batches are taken as written), the second anything.
    const texts = fc.sample(awkwardText, { numRuns: 400, seed: 20261127 }).map((text, index) => (index < 200 ? asStored(text) : text));
    const sessions = Array.from({ length: 7 }, () => randomUUID());
    const published: { id: string; text: string }[] = [];
    const time = new Date();
    for (const [index, text] of texts.entries()) {
      if (index === 200) await publisher.flush();
      const session = sessions[index % sessions.length]!;
      const id = randomUUID();
      const data: CommandExecuted = {
        action: 'read',
        command: `SELECT ${text}`,
        commandId: `c-${index}`,
        decision: 'allow',
        durationMs: 0.25,
        error: index % 3 === 0 ? { code: '22021', message: text } : undefined,
        ok: index % 3 !== 0,
        outcome: index % 3 === 0 ? 'ERROR' : `SELECT ${text.length}`,
        protocol: 'postgres',
        reason: 'allowed by readers',
        resource: 'db',
        result: { bytes: text.length, columns: [text, 'b'], maskedCounts: {}, rowCount: 2, rows: [[text, null], ['', text]], truncated: false },
        risk: 'low',
        rule: 'readers',
        tables: undefined,
        truncated: undefined,
      };
      const fields = { id, source: 'proxy', subject: session, time, sessionseq: index + 1, data };
      publisher.publishWritten(id, writeExecutedEvent, fields, (value) => buildEvent('command.executed', value) as CloudEvent);
      published.push({ id, text });
    }
    await publisher.flush();
    await waitUntil(async () => (await service.store.countEvents()) >= published.length, 30_000, 'every event stored');
    const stored = await rows(storeDb);
    expect(stored).toHaveLength(published.length);
    const byId = new Map(stored.map((row) => [row.id, row]));
    for (const { id, text } of published) {
      const row = byId.get(id)!;
      const data = JSON.parse(row.data) as CommandExecuted;
      expect(data.command).toBe(asStored(`SELECT ${text}`));
      expect(data.result!.rows).toEqual([[asStored(text), null], ['', asStored(text)]]);
      expect(data.result!.columns[0]).toBe(asStored(text));
      expect(data.decision).toBe('allow');
      expect(row.decision).toBe('allow');
    }
    store = await openEventStore({ url: `postgres://postgres@127.0.0.1:5432/${storeDb}` });
    expect(await store.verify()).toEqual({ ok: true, sessions: sessions.length, events: published.length });

    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(stream);
    const messages: Uint8Array[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq += 1) {
      const message = await jsm.streams.getMessage(stream, { seq });
      if (message) messages.push(message.data);
    }
    // Both paths ran: messages with no text PostgreSQL rewrites are taken as written.
    expect(messages.some((message) => readWrittenEvents(message) !== undefined)).toBe(true);
    expect(messages.some((message) => readWrittenEvents(message) === undefined)).toBe(true);
    const replay = await openEventStore({ url: `postgres://postgres@127.0.0.1:5432/${replayDb}` });
    try {
      for (const message of messages) await replay.append(decodeEvents(message));
    } finally {
      await replay.close();
    }
    expect(await rows(replayDb)).toEqual(stored);
  }, 120_000);
});
