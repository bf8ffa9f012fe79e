import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openEventStore, type EventStore } from '@sluice/event-store';
import { executedEvents, storeDatabase } from './support/store-events.js';

const { run: RUN, database: DATABASE, adminUrl: ADMIN_URL, url: DB_URL } = storeDatabase('sluice_store_copy_it');
const executed = executedEvents(RUN);

/** The COPY rows as PostgreSQL stored them. */
const storedRows = async (db: pg.Client, session: string) =>
  (await db.query<{ session_seq: number; resource: string; command: string; prev_hash: string; hash: string }>(
    `SELECT session_seq, resource, data->>'command' AS command, prev_hash, hash FROM sluice.events WHERE session_id = $1 ORDER BY seq`,
    [session],
  )).rows;

describe('event store COPY text on PostgreSQL', () => {
  let store: EventStore;
  let db: pg.Client;

  beforeAll(async () => {
    store = await openEventStore({ url: DB_URL });
    db = new pg.Client({ connectionString: DB_URL });
    await db.connect();
  });

  afterAll(async () => {
    await db?.end();
    await store?.close();
    const admin = new pg.Client({ connectionString: ADMIN_URL });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`);
    await admin.end();
  });

  it('stores texts with escapes and non-ASCII, and session_seq past nine, as written, each chain verifiable', async () => {
    const texts = ['back\\slash', 'tab\there', 'new\nline\r', '\\N', 'nul\u0000byte', 'é € 😀 דּ', '\\\\t'];
    const events = Array.from({ length: 24 }, (_, index) => executed(`s${index % 2}`, texts[index % texts.length]!));
    expect(await store.append(await store.prepare(events, () => 'proxy'))).toEqual({ stored: 24, duplicates: 0 });
    const rows = await storedRows(db, 's0');
    expect(rows.map((row) => row.session_seq)).toEqual(Array.from({ length: 12 }, (_, index) => index + 1));
    // U+0000 is the one character the store replaces (PostgreSQL text cannot hold it).
    expect(rows.map((row) => row.resource)).toEqual(events.filter((_, index) => index % 2 === 0).map((event) => (event.data as { resource: string }).resource.replace('\u0000', '\uFFFD')));
    expect(rows.map((row) => row.command)).toEqual(rows.map((row) => row.resource));
    expect(await store.verify()).toMatchObject({ ok: true, events: 24 });
  });

  it("continues a chain whose head, read back from the table, holds a tab, a backslash and a newline, storing that prev_hash as it reads", async () => {
    // Not a hash the store writes (someone wrote the table): the rows after it must still be COPY text that says what they hold.
    const odd = 'a\tb\\c\nd';
    await db.query(
      `INSERT INTO sluice.events (id, session_id, session_seq, type, kind, source, time, data, hash, prev_hash)
       VALUES ($1, 'odd', 5, 'sluice.command.executed', 'command.executed', 'proxy', now(), '{}', $2, $3)`,
      [`${RUN}-odd`, odd, '0'.repeat(64)],
    );
    const events = [executed('odd', 'SELECT 1'), executed('odd', 'SELECT 2')];
    expect(await store.append(await store.prepare(events, () => 'proxy'))).toEqual({ stored: 2, duplicates: 0 });
    const rows = await storedRows(db, 'odd');
    expect(rows.map((row) => [row.session_seq, row.prev_hash])).toEqual([[5, '0'.repeat(64)], [6, odd], [7, rows[1]!.hash]]);
  });
  it('keeps each chain whole when two stores append to the same sessions by turns (a head one of them knew moved on)', async () => {
    // Each store remembers the heads it committed and writes its next batch on them in one round
    // trip; the other store's batches in between moved those heads, so its guess is refused by the
    // (session_id, session_seq) index and the batch must be written again on the heads read.
    const other = await openEventStore({ url: DB_URL });
    try {
      const sessions = ['turns-a', 'turns-b'];
      let expected = 0;
      for (let turn = 0; turn < 6; turn++) {
        const writer = turn % 2 === 0 ? store : other;
        const events = Array.from({ length: 6 }, (_, index) => executed(sessions[index % 2]!, `SELECT ${turn}`));
        expect(await writer.append(await writer.prepare(events, () => 'proxy'))).toEqual({ stored: 6, duplicates: 0 });
        expected += 3;
        for (const session of sessions) {
          const rows = await storedRows(db, session);
          expect(rows.map((row) => row.session_seq)).toEqual(Array.from({ length: expected }, (_, index) => index + 1));
          expect(rows.slice(1).map((row) => row.prev_hash)).toEqual(rows.slice(0, -1).map((row) => row.hash));
        }
      }
      for (const session of sessions) expect(await store.verify({ sessionId: session })).toMatchObject({ ok: true, events: 18 });
    } finally {
      await other.close();
    }
  });

  it('stores a batch redelivered after its heads were remembered once, the new events behind it chained on', async () => {
    // A store of its own: one that saw a head move reads the heads for a while rather than guess.
    const fresh = await openEventStore({ url: DB_URL });
    try {
      const first = [executed('again', 'SELECT 1'), executed('again', 'SELECT 2')];
      expect(await fresh.append(await fresh.prepare(first, () => 'proxy'))).toEqual({ stored: 2, duplicates: 0 });
      expect(await fresh.append(await fresh.prepare(first, () => 'proxy'))).toEqual({ stored: 0, duplicates: 2 });
      const later = [...first, executed('again', 'SELECT 3')];
      expect(await fresh.append(await fresh.prepare(later, () => 'proxy'))).toEqual({ stored: 1, duplicates: 2 });
      expect(await fresh.append(await fresh.prepare([executed('again', 'SELECT 4')], () => 'proxy'))).toEqual({ stored: 1, duplicates: 0 });
      const rows = await storedRows(db, 'again');
      expect(rows.map((row) => [row.session_seq, row.command])).toEqual([[1, 'SELECT 1'], [2, 'SELECT 2'], [3, 'SELECT 3'], [4, 'SELECT 4']]);
      expect(await fresh.verify({ sessionId: 'again' })).toMatchObject({ ok: true, events: 4 });
    } finally {
      await fresh.close();
    }
  });
});
