import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CloudEvent } from '@sluice/contracts';
import { openEventStore, type EventStore } from '@sluice/event-store';
import { executedEvents, storeDatabase } from './support/store-events.js';

/*
 * Red team of the event store's one-round-trip append (a batch whose sessions' heads this store
 * committed last is written on them without reading them): two stores on one database append
 * batches of the same sessions at the same time, each batch also redelivered to the other store,
 * and the stores' connections are terminated mid-run. Every event must be stored exactly once,
 * every chain whole (session_seq 1..n, each prev_hash the hash before it) and verifiable.
 */

const { run: RUN, database: DATABASE, adminUrl: ADMIN_URL, url: DB_URL } = storeDatabase('sluice_rt15_audit');
const executed = executedEvents(RUN, 'db');

/** A deterministic pseudo-random sequence, so a failure can be replayed. */
const random = (seed: number): (() => number) => {
  let state = seed;
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    return state / 2 ** 31;
  };
};

/** Appends a batch, again and again until it is stored (what a redelivery does after an error). */
const appendUntilStored = async (store: EventStore, events: readonly CloudEvent[]): Promise<number> => {
  for (let attempt = 0; ; attempt++) {
    try {
      await store.append(await store.prepare([...events], () => 'proxy'));
      return attempt;
    } catch (error) {
      if (attempt > 50) throw error;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
};

describe('red team s15: two event stores appending the same sessions', () => {
  let db: pg.Client;
  let stores: EventStore[] = [];

  beforeAll(async () => {
    stores = [await openEventStore({ url: DB_URL }), await openEventStore({ url: DB_URL })];
    db = new pg.Client({ connectionString: DB_URL });
    await db.connect();
  });

  afterAll(async () => {
    await db?.end();
    for (const store of stores) await store.close();
    const admin = new pg.Client({ connectionString: ADMIN_URL });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`);
    await admin.end();
  });

  const checkChains = async (sessions: readonly string[], ids: ReadonlySet<string>): Promise<void> => {
    const stored = await db.query<{ id: string; session_id: string; session_seq: number; prev_hash: string; hash: string }>(
      'SELECT id, session_id, session_seq, prev_hash, hash FROM sluice.events WHERE session_id = ANY($1) ORDER BY session_id, session_seq',
      [sessions],
    );
    // Exactly once: every id, no other, none twice.
    expect(stored.rows.length).toBe(ids.size);
    expect(new Set(stored.rows.map((row) => row.id))).toEqual(ids);
    for (const session of sessions) {
      const rows = stored.rows.filter((row) => row.session_id === session);
      expect(rows.map((row) => row.session_seq)).toEqual(rows.map((_, index) => index + 1));
      expect(rows.slice(1).map((row) => row.prev_hash)).toEqual(rows.slice(0, -1).map((row) => row.hash));
      expect(await stores[0]!.verify({ sessionId: session })).toMatchObject({ ok: true, events: rows.length });
    }
  };

  it('stores every event once, chains whole, when both stores append interleaved batches of the same sessions at once, with redeliveries', async () => {
    const sessions = ['rt-a', 'rt-b', 'rt-c'];
    const next = random(15);
    const batches: CloudEvent[][] = [];
    for (let b = 0; b < 60; b++) {
      const size = 1 + Math.floor(next() * 6);
      batches.push(Array.from({ length: size }, (_, i) => executed(sessions[Math.floor(next() * sessions.length)]!, `SELECT ${b}, ${i}`)));
    }
    const ids = new Set(batches.flat().map((event) => event.id));
    // Each store takes its own batches in turn, and every third batch of the other's again (a redelivery).
    const work = (index: number) => async () => {
      for (let b = 0; b < batches.length; b++) {
        if (b % 2 === index || b % 3 === 0) await appendUntilStored(stores[index]!, batches[b]!);
      }
    };
    await Promise.all([work(0)(), work(1)()]);
    await checkChains(sessions, ids);
    // And again, each store on the heads it remembers: the other moved every one of them.
    const more = Array.from({ length: 8 }, (_, b) => sessions.map((session) => executed(session, `SELECT more ${b}`)));
    for (let b = 0; b < more.length; b++) await appendUntilStored(stores[b % 2]!, more[b]!);
    await checkChains(sessions, new Set([...ids, ...more.flat().map((event) => event.id)]));
  });

  it('keeps every chain whole when a store writes on the heads it remembers for long runs, another store moves them between runs, and connections are terminated meanwhile', async () => {
    // Fresh stores: a store that saw a head move reads the heads for its next 100 batches, so
    // each run here is longer than that and most of its batches go on remembered heads.
    const fresh = [await openEventStore({ url: DB_URL }), await openEventStore({ url: DB_URL })];
    try {
      const sessions = ['rt-long-a', 'rt-long-b'];
      const next = random(7);
      const ids = new Set<string>();
      let kills = 0;
      for (let round = 0; round < 3; round++) {
        for (const [index, store] of fresh.entries()) {
          const runs = index === 0 ? 130 : 4;
          let done = false;
          const killer = (async () => {
            while (!done) {
              await new Promise((resolve) => setTimeout(resolve, 40));
              const killed = await db.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND state = $2', [DATABASE, 'idle']);
              kills += killed.rowCount ?? 0;
            }
          })();
          try {
            for (let b = 0; b < runs; b++) {
              const events = Array.from({ length: 1 + Math.floor(next() * 3) }, (_, i) => executed(sessions[Math.floor(next() * sessions.length)]!, `SELECT r${round} s${index} b${b} ${i}`));
              for (const event of events) ids.add(event.id);
              await appendUntilStored(store, events);
              // Now and then the same batch again (a redelivery), on the heads just remembered.
              if (b % 17 === 5) await appendUntilStored(store, events);
            }
          } finally {
            done = true;
            await killer;
          }
        }
      }
      expect(kills).toBeGreaterThan(0);
      await checkChains(sessions, ids);
    } finally {
      for (const store of fresh) await store.close();
    }
  });

  it('stores every event once, chains whole, when the stores\' connections are terminated mid-run', async () => {
    const sessions = ['rt-kill-a', 'rt-kill-b'];
    const next = random(42);
    const batches: CloudEvent[][] = [];
    for (let b = 0; b < 80; b++) {
      batches.push(Array.from({ length: 1 + Math.floor(next() * 4) }, (_, i) => executed(sessions[Math.floor(next() * sessions.length)]!, `SELECT k${b}, ${i}`)));
    }
    const ids = new Set(batches.flat().map((event) => event.id));
    let done = false;
    const killer = (async () => {
      let kills = 0;
      while (!done) {
        await new Promise((resolve) => setTimeout(resolve, 7));
        const killed = await db.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [DATABASE]);
        kills += killed.rowCount ?? 0;
      }
      return kills;
    })();
    const work = (index: number) => async () => {
      for (let b = 0; b < batches.length; b++) {
        if (b % 2 === index || b % 5 === 0) await appendUntilStored(stores[index]!, batches[b]!);
      }
    };
    try {
      await Promise.all([work(0)(), work(1)()]);
    } finally {
      done = true;
    }
    expect(await killer).toBeGreaterThan(0);
    await checkChains(sessions, ids);
  });
});
