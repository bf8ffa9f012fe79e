import { CompiledQuery, Kysely, Migrator, sql, type RawBuilder } from 'kysely';
import type pg from 'pg';
import { type CloudEvent, type EventRejected, type SessionSummary, type StoredEvent } from '@sluice/contracts';
import { chainHash, GENESIS_HASH, joinEvent, storableText, type StoredCloudEvent } from './chain.js';
import type { SluiceDatabase } from './database.js';
import { pgliteBackend, postgresBackend, type StoreBackend } from './dialect.js';
import { migrationProvider, WRITER_ROLE } from './migrations.js';
import { BatchBytes } from './batch-bytes.js';
import { copyIn } from './copy-in.js';
import { refusalReason, refusesData } from './data-refusal.js';
import { appendCopyRow, chain, CHAIN_FIELDS_BYTES, copyDataChunks, COPY_STATEMENT, eventInsert, insertHash, insertRow, type ChainLink, type CopyRow, type InsertRow, type StoredOfBatch } from './batch-rows.js';

/** Minimal logger shape (pino fits). */
export interface StoreLogger {
  info(object: object, message?: string): void;
  warn(object: object, message?: string): void;
}

export interface OpenEventStoreOptions {
  /** postgres://… ; without it the embedded PGlite store at `path` is used. */
  readonly url?: string | undefined;
  /** PGlite data folder, default `./.sluice/pglite`. */
  readonly path?: string | undefined;
  readonly logger?: StoreLogger | undefined;
  /** Pool size for PostgreSQL (default 4). */
  readonly maxConnections?: number | undefined;
}

export type { SessionSummary, StoredEvent };

/** One page of a session's events: those with `seq` above `afterSeq`, at most `limit`. */
export interface SessionEventsPage {
  readonly afterSeq?: number | undefined;
  readonly limit: number;
}

export interface AppendResult {
  readonly stored: number;
  readonly duplicates: number;
}

/** An event of a batch PostgreSQL refused on its own (see EventStore.appendStorable). */
export interface RefusedEvent {
  readonly id: string;
  /** What PostgreSQL said, its SQLSTATE included. */
  readonly reason: string;
}

export interface StorableAppendResult extends AppendResult {
  /** Left out, in the batch's order; never stored, never chained. */
  readonly refused: readonly RefusedEvent[];
}

export type VerifyResult =
  | { readonly ok: true; readonly sessions: number; readonly events: number }
  | {
      readonly ok: false;
      readonly sessions: number;
      readonly events: number;
      /**
       * `chain`: an event does not follow from the one before it; `rejected`: a record the audit
       * service did not chain, not genuine or refused by PostgreSQL for its data (seq is its place in sluice.rejected_events); `unsigned`:
       * an event stored without a verified signature.
       */
      readonly firstBroken: { readonly id: string; readonly seq: number; readonly sessionId: string; readonly reason: string; readonly kind: 'chain' | 'rejected' | 'unsigned' };
      /** Records kept apart from the chains, not genuine or refused for their data (in the scope verified). */
      readonly rejected?: number;
      /** Events stored without a verified signature (in the scope verified). */
      readonly unsigned?: number;
    };

/** A message or event the audit service did not chain (not genuine, or refused by PostgreSQL for its data): kept, never chained. */
export interface RejectedRecord extends EventRejected {
  /** `<stream>:<stream seq>:<index in the message>`: storing it again is a no-op. */
  readonly key: string;
  /** The event as received (JSON), or the message's text when it was not JSON. */
  readonly payload: string;
}

export interface SessionQuery {
  readonly subject?: string | undefined;
  readonly resource?: string | undefined;
  /** Sessions that started at or after this time. */
  readonly from?: Date | undefined;
  /** Sessions that started at or before this time. */
  readonly to?: Date | undefined;
  /** Sessions with at least one command that got this decision (allow, deny, approve). */
  readonly decision?: string | undefined;
  readonly limit?: number | undefined;
  /** `next` of the previous page. */
  readonly cursor?: string | undefined;
}

export interface SessionPage {
  readonly sessions: readonly SessionSummary[];
  readonly next?: string;
}

const PREPARED = Symbol('sluice.preparedBatch');

/** Events with all the CPU work of storing them done (see EventStore.prepare). */
export type PreparedBatch = InsertBatch | CopyBatch;

interface PreparedBatchBase {
  readonly [PREPARED]: true;
  /** Events given, duplicates and events without an id included. */
  readonly received: number;
}

/** Prepared for INSERT (PGlite). */
interface InsertBatch extends PreparedBatchBase {
  readonly rows: readonly InsertRow[];
  readonly bytes?: undefined;
  readonly copyText?: undefined;
}

/** Prepared for COPY (PostgreSQL): the texts the rows' hashes cover are in `bytes`, their COPY text in `copyText`. */
interface CopyBatch extends PreparedBatchBase {
  readonly rows: readonly CopyRow[];
  readonly bytes: BatchBytes;
  readonly copyText: BatchBytes;
}

const isPrepared = (value: readonly CloudEvent[] | PreparedBatch): value is PreparedBatch => PREPARED in value;

export interface EventStore {
  readonly backend: 'postgres' | 'pglite';
  /**
   * Does the CPU work of storing events (normalising, splitting into columns, the JCS text the
   * chain hashes) without touching the database, so a caller can prepare its next batch while
   * the previous one is being written. Events without an id are dropped; repeated ids kept once.
   * `signerOf` names the service whose signature was verified for an event (`signed_by`).
   */
  prepare(events: readonly CloudEvent[], signerOf?: (event: CloudEvent) => string | undefined): Promise<PreparedBatch>;
  /**
   * Stores events in one transaction, each once (by id), chaining each session's events in
   * the order given.
   */
  append(events: readonly CloudEvent[] | PreparedBatch): Promise<AppendResult>;
  /**
   * append, but an event PostgreSQL refuses for its data (refusesData) is left out and named
   * rather than failing the whole batch at every retry: the batch is then stored in parts, in its
   * order, a refused part halved until the refused events stand alone. Any other error fails it as
   * append does. Each event is stored once however often this is retried, the ones behind a
   * refused event chained to the last one stored.
   */
  appendStorable(batch: PreparedBatch): Promise<StorableAppendResult>;
  /** Keeps refused records (once each, by key), apart from the events. */
  reject(records: readonly RejectedRecord[]): Promise<void>;
  /**
   * Recomputes every chain (or one session's) in seq order, then names the first record kept
   * apart from the chains (rejected_events) and the first event stored without a verified signature.
   */
  verify(options?: { readonly sessionId?: string | undefined }): Promise<VerifyResult>;
  listSessions(query?: SessionQuery): Promise<SessionPage>;
  /** A session's events in order; with `page`, at most `limit` of them after stream seq `afterSeq`. */
  sessionEvents(sessionId: string, page?: SessionEventsPage): Promise<readonly StoredEvent[]>;
  countEvents(): Promise<number>;
  close(): Promise<void>;
}

const INSERT_CHUNK = 400;
/** Events prepared between two turns of the event loop (~2 ms of work). */
const PREPARE_SLICE = 200;
const VERIFY_PAGE = 5000;
/** Above this many sessions in one batch, one exclusive lock replaces per-session locks (lock table size). */
const MAX_SESSION_LOCKS = 128;
/** Key of the advisory lock shared by every appender; a big batch takes it exclusively. */
const APPEND_LOCK_KEY = 0x51_75_69_63; // 'Quic' — any constant unique to Sluice

const chunks = <T>(items: readonly T[], size: number): T[][] => {
  const out: T[][] = [];
  for (let index = 0; index < items.length; index += size) out.push(items.slice(index, index + size));
  return out;
};

/**
 * A refused record's short fields come from whoever published it: PostgreSQL text cannot hold
 * NUL (one would fail the insert, and the batch would retry forever), and a name needs no more
 * than this many characters.
 */
const MAX_REJECTED_FIELD = 1024;
const rejectedField = (text: string): string => storableText(text.slice(0, MAX_REJECTED_FIELD));
const optionalText = (text: string | undefined): string | null => (text === undefined ? null : rejectedField(text));

/** Every character beyond ASCII as a `\uXXXX` escape (UTF-16 units, as JSON writes them): a JSON text stays the same JSON. */
const asciiText = (text: string): string =>
  storableText(text).replace(/[\u0080-\uffff]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`);

/**
 * A refused record in ASCII alone, for a database that refused its text as it is (one whose
 * encoding lacks a character of it, LATIN1 say, where every event holding one is refused too);
 * its reason says so.
 */
const inAscii = (record: RejectedRecord): RejectedRecord => {
  const optional = (text: string | undefined): string | undefined => (text === undefined ? undefined : asciiText(text));
  return {
    ...record,
    key: asciiText(record.key),
    reason: `kept with every non-ASCII character as a \\u escape, as the database refused the text: ${asciiText(record.reason)}`,
    natsSubject: asciiText(record.natsSubject),
    payload: asciiText(record.payload),
    claimedSigner: optional(record.claimedSigner),
    eventId: optional(record.eventId),
    eventType: optional(record.eventType),
    sessionId: optional(record.sessionId),
  };
};

/** The first refused record, else the first event without a verified signature, with their counts. */
const findNotGenuine = async (
  db: Kysely<SluiceDatabase>,
  sessionId: string | undefined,
): Promise<Pick<Extract<VerifyResult, { ok: false }>, 'firstBroken' | 'rejected' | 'unsigned'> | undefined> => {
  const inSession = sessionId === undefined ? sql`true` : sql`session_id = ${sessionId}`;
  const { rows } = await sql<{ which: string; seq: string; id: string | null; session_id: string | null; reason: string | null; total: string }>`
    (SELECT 'rejected' AS which, seq, coalesce(event_id, key) AS id, session_id,
            reason || coalesce(' (signer ' || claimed_signer || ')', '') || ' on ' || nats_subject || ', stream seq ' || stream_seq AS reason,
            count(*) OVER () AS total
       FROM sluice.rejected_events WHERE ${inSession} ORDER BY seq LIMIT 1)
    UNION ALL
    (SELECT 'unsigned', seq, id, session_id, 'stored without a verified signature', count(*) OVER ()
       FROM sluice.events WHERE signed_by IS NULL AND ${inSession} ORDER BY seq LIMIT 1)`.execute(db);
  const rejected = rows.find((row) => row.which === 'rejected');
  const unsigned = rows.find((row) => row.which === 'unsigned');
  const first = rejected ?? unsigned;
  if (!first) return undefined;
  return {
    firstBroken: { id: first.id ?? '?', seq: Number(first.seq), sessionId: first.session_id ?? '-', reason: first.reason ?? '', kind: first.which as 'rejected' | 'unsigned' },
    rejected: Number(rejected?.total ?? 0),
    unsigned: Number(unsigned?.total ?? 0),
  };
};

const iso = (value: Date | string | null): string | null => (value === null ? null : new Date(value).toISOString());

/** Serialises every call: PGlite has one connection, and interleaved statements would share its transaction. */
class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.tail.then(task, task);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

interface EventRow {
  seq: number;
  id: string;
  session_id: string;
  session_seq: number;
  type: string;
  source: string;
  time: Date;
  data: unknown;
  ext: Record<string, unknown> | null;
  hash: string;
  prev_hash: string;
}

const rowToEvent = (row: EventRow): StoredCloudEvent =>
  joinEvent({ id: row.id, source: row.source, type: row.type, sessionId: row.session_id, time: new Date(row.time), data: row.data, ext: row.ext ?? {} });


/** What a batch touches: its event ids (when wanted), and its sessions in the one order every appender locks them. */
const keysOf = (batch: PreparedBatch, withIds = true): { ids: string[]; sessions: string[] } => ({
  ids: withIds ? batch.rows.map(({ id }) => id) : [],
  sessions: [...new Set(batch.rows.map(({ sessionId }) => sessionId))].sort(),
});

/**
 * Chain heads must not move under an appender: it locks each session of its batch, under a
 * shared lock that a very large batch takes exclusively instead. One statement (the role switch
 * too): the select list runs left to right, the session locks in one fixed order so appenders
 * never deadlock. `sessionsArray` is a SQL text[] expression.
 */
const lockStatement = (role: string | undefined, sessionCount: number, sessionsArray: string): string => {
  const switchRole = role === undefined ? 'NULL' : `set_config('role', '${role}', true)`;
  if (sessionCount > MAX_SESSION_LOCKS) return `SELECT ${switchRole}, pg_advisory_xact_lock(${APPEND_LOCK_KEY}::bigint)`;
  return `SELECT ${switchRole}, pg_advisory_xact_lock_shared(${APPEND_LOCK_KEY}::bigint),
                (SELECT count(pg_advisory_xact_lock(v.key))
                   FROM (SELECT hashtextextended(s, 0) AS key FROM unnest(${sessionsArray}) AS s ORDER BY 1) AS v)`;
};

/** Each session's head through the (session_id, session_seq) index (not a scan of all its events, which grew with the table). */
const headsStatement = (sessionsArray: string): string =>
  `SELECT NULL AS id, s AS session_id, h.hash, h.session_seq
     FROM unnest(${sessionsArray}) AS s
     CROSS JOIN LATERAL (SELECT e.hash, e.session_seq FROM sluice.events e
                          WHERE e.session_id = s ORDER BY e.session_seq DESC LIMIT 1) AS h`;

/**
 * After the locks (a new statement, so a new snapshot), in one statement: which ids are stored
 * already, and each session's head.
 */
const lookupStatement = (idsArray: string, sessionsArray: string): string =>
  `SELECT e.id, NULL AS session_id, NULL AS hash, NULL::integer AS session_seq
     FROM sluice.events e WHERE e.id = ANY(${idsArray})
   UNION ALL
   ${headsStatement(sessionsArray)}`;

/** The unique constraint on sluice.events.id (PostgreSQL's default name for `id text UNIQUE`). */
const EVENT_ID_CONSTRAINT = 'events_id_key';

/** The COPY refused a row because its event id is stored already (a redelivered event). */
const isStoredAlready = (error: unknown): boolean =>
  (error as { code?: unknown }).code === '23505' && (error as { constraint?: unknown }).constraint === EVENT_ID_CONSTRAINT;

/** The unique constraint on sluice.events (session_id, session_seq): one event per place in a chain. */
const CHAIN_PLACE_CONSTRAINT = 'events_session_id_session_seq_key';

/** The COPY refused a row because its place in its chain is taken: the chain head moved on. */
const isHeadMoved = (error: unknown): boolean =>
  (error as { code?: unknown }).code === '23505' && (error as { constraint?: unknown }).constraint === CHAIN_PLACE_CONSTRAINT;

/** Chain heads a store remembers (the sessions it wrote last); a batch with another session reads its heads. */
const MAX_KNOWN_HEADS = 10_000;
/** Batches that read their heads after a guessed head turned out moved (another appender at work). */
const READ_HEADS_AFTER_MOVE = 100;

class KyselyEventStore implements EventStore {
  readonly backend: 'postgres' | 'pglite';
  private readonly queue: SerialQueue | undefined;
  private useWriterRole = false;
  private readonly pool: pg.Pool | undefined;
  /** Each session's chain head as this store last committed it (see knownHeads). */
  private readonly heads = new Map<string, { hash: string; sessionSeq: number }>();
  /** Batches still to read their heads before known heads are used again. */
  private readHeadsFor = 0;

  constructor(
    private readonly db: Kysely<SluiceDatabase>,
    backend: StoreBackend,
  ) {
    this.backend = backend.kind;
    this.pool = backend.pool;
    this.queue = backend.kind === 'pglite' ? new SerialQueue() : undefined;
  }

  private serial<T>(task: () => Promise<T>): Promise<T> {
    return this.queue ? this.queue.run(task) : task();
  }

  async init(logger?: StoreLogger): Promise<void> {
    await sql`CREATE SCHEMA IF NOT EXISTS sluice`.execute(this.db).catch((error: unknown) => {
      // Two processes creating it at once: the loser sees a unique violation; the schema exists.
      if ((error as { code?: string }).code !== '23505') throw error;
    });
    const migrator = new Migrator({
      db: this.db,
      provider: migrationProvider,
      migrationTableSchema: 'sluice',
      migrationTableName: 'migrations',
      migrationLockTableName: 'migrations_lock',
    });
    const { error, results } = await migrator.migrateToLatest();
    if (error) throw error instanceof Error ? error : new Error('event store migration failed', { cause: error });
    for (const result of results ?? []) logger?.info({ migration: result.migrationName, status: result.status }, 'event store migration');
    const { rows } = await sql<{ usable: boolean }>`
      SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = ${WRITER_ROLE})
         AND pg_has_role(current_user, ${WRITER_ROLE}, 'MEMBER')
         AND has_table_privilege(${WRITER_ROLE}, 'sluice.events', 'INSERT') AS usable`.execute(this.db).catch(() => ({ rows: [] }));
    this.useWriterRole = rows[0]?.usable === true;
    if (!this.useWriterRole) logger?.warn({ role: WRITER_ROLE }, 'appending as the connecting user: the INSERT/SELECT-only role is not available');
  }

  async prepare(events: readonly CloudEvent[], signerOf?: (event: CloudEvent) => string | undefined): Promise<PreparedBatch> {
    const receivedAt = new Date();
    const seen = new Set<string>();
    const insertRows: InsertRow[] = [];
    const copyRows: CopyRow[] = [];
    // Two buffers, so that the rows' COPY text lies back to back and is sent where it lies: the
    // JCS texts (~1 KB an event) and the COPY text (the same again and the chain's fields), grown if need be.
    const bytes = this.pool ? new BatchBytes(events.length * 1024) : undefined;
    const copyText = this.pool ? new BatchBytes(events.length * (1024 + CHAIN_FIELDS_BYTES)) : undefined;
    let sinceYield = 0;
    for (const event of events) {
      if (++sinceYield >= PREPARE_SLICE) {
        // Let I/O in between (the previous batch's statements are waiting on it): the point of
        // preparing ahead is to fill the time the database works, not to hold its replies.
        sinceYield = 0;
        await new Promise((resolve) => setImmediate(resolve));
      }
      if (typeof event?.id !== 'string' || event.id === '' || seen.has(event.id)) continue;
      seen.add(event.id);
      const signedBy = signerOf?.(event) ?? null;
      if (bytes && copyText) copyRows.push(appendCopyRow(bytes, event, receivedAt, signedBy, copyText));
      else insertRows.push(insertRow(event, receivedAt, signedBy));
    }
    return bytes && copyText
      ? { [PREPARED]: true, received: events.length, rows: copyRows, bytes, copyText }
      : { [PREPARED]: true, received: events.length, rows: insertRows };
  }

  async append(events: readonly CloudEvent[] | PreparedBatch): Promise<AppendResult> {
    const batch = isPrepared(events) ? events : await this.prepare(events);
    if (batch.rows.length === 0) return { stored: 0, duplicates: batch.received };
    if (batch.bytes) {
      // Only a store with a pool prepares for COPY.
      if (!this.pool) throw new Error('a batch prepared for COPY needs a PostgreSQL event store');
      return this.appendWithCopy(this.pool, batch);
    }
    const { ids, sessions } = keysOf(batch);
    const role = this.useWriterRole ? WRITER_ROLE : undefined;
    const rows = batch.rows;
    return this.serial(() =>
      this.db.transaction().execute(async (trx) => {
        const run = async <R>(text: string, parameters: readonly unknown[]) => (await trx.executeQuery<R>(CompiledQuery.raw(text, [...parameters]))).rows;
        await run(lockStatement(role, sessions.length, '$1::text[]'), sessions.length > MAX_SESSION_LOCKS ? [] : [sessions]);
        const links = chain(rows, insertHash, await run<StoredOfBatch>(lookupStatement('$1::text[]', '$2::text[]'), [ids, sessions]));
        for (const part of chunks(links, INSERT_CHUNK)) await trx.insertInto('sluice.events').values(part.map(eventInsert)).execute();
        return { stored: links.length, duplicates: batch.received - links.length };
      }),
    );
  }

  async appendStorable(batch: PreparedBatch): Promise<StorableAppendResult> {
    try {
      return { ...(await this.append(batch)), refused: [] };
    } catch (error) {
      if (!refusesData(error)) throw error;
    }
    const refused: RefusedEvent[] = [];
    let stored = 0;
    // Each part in its own transaction, the first half before the second: the order (and so each
    // chain) is the batch's, and what a part stored stays stored when a later part fails.
    const storeInParts = async (rows: PreparedBatch['rows']): Promise<void> => {
      try {
        stored += (await this.append({ ...batch, received: rows.length, rows } as PreparedBatch)).stored;
      } catch (error) {
        if (!refusesData(error)) throw error;
        if (rows.length === 1) {
          refused.push({ id: rows[0]!.id, reason: refusalReason(error) });
          return;
        }
        const half = Math.ceil(rows.length / 2);
        await storeInParts(rows.slice(0, half));
        await storeInParts(rows.slice(half));
      }
    };
    await storeInParts(batch.rows);
    return { stored, duplicates: batch.received - stored - refused.length, refused };
  }

  /**
   * PostgreSQL: the same transaction on a pool client of its own in two round trips, rows
   * written with COPY (which parses far less than INSERT … SELECT FROM unnest(…) of one array
   * per column, and keeps the order given, so seq follows each session's chain). The first
   * Query message begins, locks and reads the chain heads; the second COPYs the chained rows and
   * commits. The ids are not looked up first: the unique index on id checks each row as it goes
   * in anyway, so a batch is first written as if none were stored, and only a batch that holds a
   * redelivered event (the COPY refuses it, the transaction rolls back) is written again, its
   * stored ids looked up and skipped.
   */
  private async appendWithCopy(pool: pg.Pool, batch: CopyBatch): Promise<AppendResult> {
    const known = this.knownHeads(batch);
    if (known !== undefined) {
      try {
        return await this.copyBatch(pool, batch, false, known);
      } catch (error) {
        if (isStoredAlready(error)) return this.copyBatch(pool, batch, true);
        if (!isHeadMoved(error)) throw error;
        // Another appender moved a chain on (or a commit whose outcome was lost went through):
        // the heads are read again, and this store reads them for a while before guessing again.
        this.heads.clear();
        this.readHeadsFor = READ_HEADS_AFTER_MOVE;
      }
    }
    try {
      return await this.copyBatch(pool, batch, false);
    } catch (error) {
      if (!isStoredAlready(error)) throw error;
      return this.copyBatch(pool, batch, true);
    }
  }

  /**
   * The chain head of each session of the batch as this store last committed it, when it knows
   * every one (else undefined: the heads are read in the transaction). A head it knows is right
   * unless another appender (or a commit whose answer was lost) added to the chain since: then
   * the batch's first (session_id, session_seq) is taken already, the unique index refuses the
   * COPY (isHeadMoved) and the batch is written again with the heads read.
   */
  private knownHeads(batch: CopyBatch): StoredOfBatch[] | undefined {
    if (this.readHeadsFor > 0) {
      this.readHeadsFor -= 1;
      return undefined;
    }
    const known: StoredOfBatch[] = [];
    const seen = new Set<string>();
    for (const { sessionId } of batch.rows) {
      if (seen.has(sessionId)) continue;
      seen.add(sessionId);
      const head = this.heads.get(sessionId);
      if (head === undefined) return undefined;
      known.push({ id: null, session_id: sessionId, hash: head.hash, session_seq: head.sessionSeq });
    }
    return known;
  }

  /** Remembers the heads a committed batch left (the last link of each session). */
  private rememberHeads(links: readonly ChainLink<CopyRow>[]): void {
    for (const link of links) {
      const sessionId = link.prepared.sessionId;
      // Deleted first so the Map's order is that of use: the least recently written go first.
      this.heads.delete(sessionId);
      this.heads.set(sessionId, { hash: link.hash, sessionSeq: link.sessionSeq });
    }
    for (const sessionId of this.heads.keys()) {
      if (this.heads.size <= MAX_KNOWN_HEADS) break;
      this.heads.delete(sessionId);
    }
  }

  /**
   * One attempt in its own transaction. Simple Query messages take several statements but no
   * parameters, so the batch's ids and sessions travel as one escaped JSON literal each.
   */
  private async copyBatch(pool: pg.Pool, batch: CopyBatch, lookUpIds: boolean, knownHeads?: readonly StoredOfBatch[]): Promise<AppendResult> {
    const client = await pool.connect();
    let broken: Error | undefined;
    // A connection the server ends (pg_terminate_backend, a restart) also emits 'error' on its
    // client after failing the query: unheard while the client is checked out, that is an
    // uncaught exception, and the audit service died of it.
    const lost = (error: Error): void => {
      broken ??= error;
    };
    client.on('error', lost);
    let open = false;
    try {
      const { ids, sessions } = keysOf(batch, lookUpIds);
      const textArray = (values: readonly string[]): string =>
        `ARRAY(SELECT json_array_elements_text(${client.escapeLiteral(JSON.stringify(values))}::json))`;
      const sessionsArray = textArray(sessions);
      open = true;
      const lock = lockStatement(this.useWriterRole ? WRITER_ROLE : undefined, sessions.length, sessionsArray);
      const { rows, bytes, copyText } = batch;
      const hashOf = (prevHash: string, row: CopyRow): string => bytes.chainHash(prevHash, row.at, row.split);
      if (knownHeads !== undefined) {
        // One round trip: the heads are known, so the locks, the COPY and the commit go in one
        // Query message (the server skips what follows a statement that fails).
        const links = chain(rows, hashOf, knownHeads);
        await copyIn(client, `BEGIN; ${lock}; ${COPY_STATEMENT}; COMMIT`, copyDataChunks(copyText, links));
        open = false;
        this.rememberHeads(links);
        return { stored: links.length, duplicates: batch.received - links.length };
      }
      // Each statement of a Query message gets its own snapshot, so the lookup sees every chain
      // head committed before the locks were granted.
      const results = (await client.query(
        `BEGIN; ${lock}; ${lookUpIds ? lookupStatement(textArray(ids), sessionsArray) : headsStatement(sessionsArray)}`,
      )) as unknown as pg.QueryResult[];
      const links = chain(rows, hashOf, results[2]!.rows as StoredOfBatch[]);
      if (links.length === 0) {
        await client.query('ROLLBACK');
        open = false;
        return { stored: 0, duplicates: batch.received };
      }
      await copyIn(client, `${COPY_STATEMENT}; COMMIT`, copyDataChunks(copyText, links));
      open = false;
      this.rememberHeads(links);
      return { stored: links.length, duplicates: batch.received - links.length };
    } catch (error) {
      // The server refused something (an SQLSTATE) and the rollback went through: the connection
      // is in step and goes back to the pool. Anything else (a socket error) and it is dropped.
      const refused = typeof (error as { code?: unknown }).code === 'string';
      const rolledBack = !open || (await client.query('ROLLBACK').then(() => true, () => false));
      if (!refused || !rolledBack) broken = error instanceof Error ? error : new Error(String(error));
      throw error;
    } finally {
      client.off('error', lost);
      client.release(broken);
    }
  }

  verify(options: { readonly sessionId?: string | undefined } = {}): Promise<VerifyResult> {
    return this.serial(async () => {
      const heads = new Map<string, { hash: string; sessionSeq: number }>();
      let events = 0;
      let after = 0;
      for (;;) {
        let query = this.db
          .selectFrom('sluice.events')
          .select(['seq', 'id', 'session_id', 'session_seq', 'type', 'source', 'time', 'data', 'ext', 'hash', 'prev_hash'])
          .where('seq', '>', after)
          .orderBy('seq')
          .limit(VERIFY_PAGE);
        if (options.sessionId !== undefined) query = query.where('session_id', '=', options.sessionId);
        const rows = (await query.execute()) as EventRow[];
        for (const row of rows) {
          events += 1;
          const head = heads.get(row.session_id) ?? { hash: GENESIS_HASH, sessionSeq: 0 };
          const reason =
            row.prev_hash !== head.hash
              ? 'prev_hash is not the hash of the previous event of the session'
              : row.session_seq !== head.sessionSeq + 1
                ? `session_seq ${row.session_seq} follows ${head.sessionSeq}`
                : chainHash(head.hash, rowToEvent(row)) !== row.hash
                  ? 'content does not match its hash'
                  : undefined;
          if (reason) {
            return { ok: false, sessions: heads.size, events, firstBroken: { id: row.id, seq: row.seq, sessionId: row.session_id, reason, kind: 'chain' } };
          }
          heads.set(row.session_id, { hash: row.hash, sessionSeq: row.session_seq });
        }
        if (rows.length < VERIFY_PAGE) break;
        after = rows[rows.length - 1]!.seq;
      }
      const notGenuine = await findNotGenuine(this.db, options.sessionId);
      if (notGenuine) return { ok: false, sessions: heads.size, events, ...notGenuine };
      return { ok: true, sessions: heads.size, events };
    });
  }

  async reject(records: readonly RejectedRecord[]): Promise<void> {
    try {
      await this.insertRejected(records);
    } catch (error) {
      if (!refusesData(error)) throw error;
      // A record PostgreSQL cannot take must neither keep the others out (retried for ever) nor be lost.
      for (const record of records) {
        try {
          await this.insertRejected([record]);
        } catch (alone) {
          if (!refusesData(alone)) throw alone;
          await this.insertRejected([inAscii(record)]);
        }
      }
    }
  }

  private insertRejected(records: readonly RejectedRecord[]): Promise<void> {
    if (records.length === 0) return Promise.resolve();
    const role = this.useWriterRole ? sql`SELECT set_config('role', ${WRITER_ROLE}, true)` : undefined;
    return this.serial(() =>
      this.db.transaction().execute(async (trx) => {
        if (role) await role.execute(trx);
        for (const part of chunks(records, INSERT_CHUNK)) {
          await trx
            .insertInto('sluice.rejected_events')
            .values(
              part.map((record) => ({
                key: rejectedField(record.key),
                reason: rejectedField(record.reason),
                claimed_signer: optionalText(record.claimedSigner),
                nats_subject: rejectedField(record.natsSubject),
                stream_seq: record.streamSeq,
                event_id: optionalText(record.eventId),
                event_type: optionalText(record.eventType),
                session_id: optionalText(record.sessionId),
                payload: storableText(record.payload),
              })),
            )
            .onConflict((conflict) => conflict.column('key').doNothing())
            .execute();
        }
      }),
    );
  }

  listSessions(query: SessionQuery = {}): Promise<SessionPage> {
    return this.serial(async () => {
      const limit = Math.max(1, Math.min(query.limit ?? 50, 1000));
      const conditions: RawBuilder<unknown>[] = [sql`true`];
      if (query.subject !== undefined) conditions.push(sql`s.subject = ${query.subject}`);
      if (query.resource !== undefined) conditions.push(sql`s.resource = ${query.resource}`);
      if (query.from !== undefined) conditions.push(sql`s.started_at >= ${query.from}`);
      if (query.to !== undefined) conditions.push(sql`s.started_at <= ${query.to}`);
      if (query.decision !== undefined) {
        conditions.push(sql`EXISTS (SELECT 1 FROM sluice.events d WHERE d.session_id = s.session_id AND d.kind IN ('command.decided', 'command.executed') AND d.decision = ${query.decision})`);
      }
      const cursor = query.cursor === undefined ? undefined : Number.parseInt(query.cursor, 10);
      if (cursor !== undefined && Number.isFinite(cursor)) conditions.push(sql`s.first_seq < ${cursor}`);
      const { rows } = await sql<{
        session_id: string;
        subject: string | null;
        resource: string | null;
        protocol: string | null;
        started_at: Date;
        ended_at: Date | null;
        commands: number;
        denials: number;
        approvals: number;
        masked_values: number;
        events: number;
        rejected: boolean;
        first_seq: number;
      }>`SELECT s.* FROM sluice.sessions s WHERE ${sql.join(conditions, sql` AND `)} ORDER BY s.first_seq DESC LIMIT ${limit + 1}`.execute(this.db);
      const page = rows.slice(0, limit);
      const sessions = page.map((row) => ({
        id: row.session_id,
        session_id: row.session_id,
        subject: row.subject,
        resource: row.resource,
        protocol: row.protocol,
        started_at: iso(row.started_at)!,
        ended_at: iso(row.ended_at),
        commands: Number(row.commands),
        denials: Number(row.denials),
        approvals: Number(row.approvals),
        masked_values: Number(row.masked_values),
        events: Number(row.events),
        rejected: row.rejected,
      }));
      return rows.length > limit ? { sessions, next: String(page[page.length - 1]!.first_seq) } : { sessions };
    });
  }

  sessionEvents(sessionId: string, page?: SessionEventsPage): Promise<readonly StoredEvent[]> {
    return this.serial(async () => {
      let query = this.db
        .selectFrom('sluice.events')
        .select(['seq', 'id', 'session_id', 'session_seq', 'type', 'source', 'time', 'data', 'ext', 'hash', 'prev_hash'])
        .where('session_id', '=', sessionId)
        .orderBy('seq');
      if (page?.afterSeq !== undefined) query = query.where('seq', '>', page.afterSeq);
      if (page !== undefined) query = query.limit(page.limit);
      const rows = (await query.execute()) as EventRow[];
      return rows.map((row) => ({ ...rowToEvent(row), seq: Number(row.seq), hash: row.hash, prev_hash: row.prev_hash }));
    });
  }

  countEvents(): Promise<number> {
    return this.serial(async () => {
      const { rows } = await sql<{ count: number }>`SELECT count(*) AS count FROM sluice.events`.execute(this.db);
      return Number(rows[0]?.count ?? 0);
    });
  }

  close(): Promise<void> {
    return this.serial(() => this.db.destroy());
  }
}

export const DEFAULT_PGLITE_PATH = './.sluice/pglite';

/**
 * Opens (and migrates) the event store: PostgreSQL when `url` is given (the database is created
 * when missing), else the embedded PGlite at `path`.
 */
export const openEventStore = async (options: OpenEventStoreOptions = {}): Promise<EventStore> => {
  const backend = options.url
    ? await postgresBackend(options.url, options.maxConnections)
    : await pgliteBackend(options.path ?? DEFAULT_PGLITE_PATH);
  const db = new Kysely<SluiceDatabase>({ dialect: backend.dialect });
  const store = new KyselyEventStore(db, backend);
  try {
    await store.init(options.logger);
  } catch (error) {
    await db.destroy().catch(() => undefined);
    throw error;
  }
  options.logger?.info({ backend: backend.kind, location: backend.location }, 'event store open');
  return store;
};
