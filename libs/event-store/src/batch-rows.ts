import { isoTime } from '@sluice/contracts';
import type { BatchBytes } from './batch-bytes.js';
import { chainHashOf, GENESIS_HASH } from './chain.js';
import { allocCopyData, COPY_DATA_HEADER_BYTES, copyField, copyJsonField } from './copy-in.js';

/*
 * What a batch of events becomes on its way into sluice.events: rows with their place in their
 * session's chain, written as COPY text (PostgreSQL) or as INSERT values (PGlite).
 */

/** Columns of one event as the INSERT takes them, before its place in the chain is known. */
export interface RowColumns {
  readonly id: string;
  readonly session_id: string;
  readonly type: string;
  readonly kind: string;
  readonly source: string;
  readonly time: Date;
  readonly data: string | null;
  readonly ext: string;
  readonly resource: string | null;
  readonly subject_sub: string | null;
  readonly command_id: string | null;
  readonly approval_id: string | null;
  readonly decision: string | null;
  readonly masked_values: number;
  readonly signed_by: string | null;
}

/** An event ready to be chained and written (PGlite): its columns and the JCS text its hash covers. */
export interface InsertRow {
  readonly id: string;
  readonly sessionId: string;
  readonly canonical: string;
  readonly columns: RowColumns;
}

/**
 * An event ready to be chained and written (PostgreSQL): where its texts are in the batch's
 * bytes. From `at`, HASH_TEXT_BYTES of room for its prev_hash, then the JCS text its hash covers
 * up to `split`, then its COPY text up to its chain columns (COPY_COLUMNS' order, each field
 * escaped, a tab after the last) up to `end`, so that appending only adds the chain's three fields.
 */
export interface CopyRow {
  readonly id: string;
  readonly sessionId: string;
  readonly at: number;
  readonly split: number;
  readonly end: number;
}

export type PreparedRow = InsertRow | CopyRow;

export type EventInsert = RowColumns & { readonly session_seq: number; readonly hash: string; readonly prev_hash: string };

/** An event's place in its session's chain, worked out once the chain heads were read. */
export interface ChainLink<Row extends PreparedRow = PreparedRow> {
  readonly prepared: Row;
  readonly sessionSeq: number;
  readonly hash: string;
  readonly prevHash: string;
}

/** COPY's column list: the chain's columns last, as the chain is known last (see copyPrefix). */
const COPY_COLUMNS = [
  'id', 'session_id', 'type', 'kind', 'source', 'time', 'data', 'ext',
  'resource', 'subject_sub', 'command_id', 'approval_id', 'decision', 'masked_values', 'signed_by',
  'session_seq', 'hash', 'prev_hash',
] as const satisfies ReadonlyArray<keyof EventInsert>;

export const COPY_STATEMENT = `COPY sluice.events (${COPY_COLUMNS.join(', ')}) FROM STDIN`;

/** Every column of COPY_COLUMNS before the chain's, in that order, each followed by a tab. */
export const copyPrefix = (row: RowColumns): string =>
  `${copyField(row.id)}\t${copyField(row.session_id)}\t${copyField(row.type)}\t${copyField(row.kind)}\t${copyField(row.source)}\t` +
  `${isoTime(row.time)}\t${copyJsonField(row.data)}\t${copyJsonField(row.ext)}\t${copyField(row.resource)}\t${copyField(row.subject_sub)}\t` +
  `${copyField(row.command_id)}\t${copyField(row.approval_id)}\t${copyField(row.decision)}\t${row.masked_values}\t${copyField(row.signed_by)}\t`;

/** Rows per CopyData message (~0.5 MB of events). */
const ROWS_PER_COPY_DATA = 1000;

/**
 * The chained rows as CopyData messages: each row's prepared bytes, then its chain fields (hashes
 * are hex and seq a number: nothing to escape), copied straight into the message.
 */
export const copyDataMessages = (bytes: BatchBytes, links: readonly ChainLink<CopyRow>[]): Buffer[] => {
  const messages: Buffer[] = [];
  for (let first = 0; first < links.length; first += ROWS_PER_COPY_DATA) {
    const last = Math.min(links.length, first + ROWS_PER_COPY_DATA);
    const tails: string[] = [];
    let length = 0;
    for (let index = first; index < last; index += 1) {
      const { prepared, sessionSeq, hash, prevHash } = links[index]!;
      const tail = `${sessionSeq}\t${hash}\t${prevHash}\n`;
      tails.push(tail);
      // prev_hash is read back from the table: counted, not assumed to be hex.
      length += prepared.end - prepared.split + Buffer.byteLength(tail, 'utf8');
    }
    const message = allocCopyData(length);
    let offset = COPY_DATA_HEADER_BYTES;
    for (let index = first; index < last; index += 1) {
      const { prepared } = links[index]!;
      offset += bytes.copyTo(message, offset, prepared.split, prepared.end);
      offset += message.write(tails[index - first]!, offset, 'utf8');
    }
    messages.push(message);
  }
  return messages;
};

export const eventInsert = ({ prepared: { columns }, sessionSeq, hash, prevHash }: ChainLink<InsertRow>): EventInsert => ({
  ...columns,
  session_seq: sessionSeq,
  hash,
  prev_hash: prevHash,
});

/** A row of lookupStatement: an id stored already, or a session's chain head. */
export interface StoredOfBatch {
  readonly id: string | null;
  readonly session_id: string | null;
  readonly hash: string | null;
  readonly session_seq: number | null;
}

/** An INSERT row's chain hash, from its JCS text. */
export const insertHash = (prevHash: string, row: InsertRow): string => chainHashOf(prevHash, row.canonical);

/** The batch's events not stored yet, each chained to its session's head in the order given. */
export const chain = <Row extends PreparedRow>(rows: readonly Row[], hashOf: (prevHash: string, row: Row) => string, stored: readonly StoredOfBatch[]): ChainLink<Row>[] => {
  const existing = new Set<string>();
  const heads = new Map<string, { hash: string; sessionSeq: number }>();
  for (const row of stored) {
    if (row.id !== null) existing.add(row.id);
    else if (row.session_id !== null) heads.set(row.session_id, { hash: row.hash!, sessionSeq: row.session_seq! });
  }
  const links: ChainLink<Row>[] = [];
  for (const prepared of rows) {
    // Ids and sessions are already as stored (prepareEvent: no U+0000, no lone surrogate).
    if (existing.has(prepared.id)) continue;
    const sessionId = prepared.sessionId;
    const head = heads.get(sessionId) ?? { hash: GENESIS_HASH, sessionSeq: 0 };
    // The JCS text is that of the form rebuilt from the columns, exactly what verify recomputes.
    const link = { prepared, sessionSeq: head.sessionSeq + 1, hash: hashOf(head.hash, prepared), prevHash: head.hash };
    heads.set(sessionId, { hash: link.hash, sessionSeq: link.sessionSeq });
    links.push(link);
  }
  return links;
};
