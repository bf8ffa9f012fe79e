import { isoTime, kindOfType, type CloudEvent } from '@sluice/contracts';
import { HASH_TEXT_BYTES, type BatchBytes } from './batch-bytes.js';
import { chainHashOf, GENESIS_HASH, prepareEvent } from './chain.js';
import { allocCopyData, COPY_DATA_HEADER_BYTES, copyDataHeader, copyField, copyJsonField } from './copy-in.js';
import { INDEXED_TEXTS, MAX_INDEXED_TEXT_BYTES, TEXT_COLUMN, WrittenEvent } from './written-events.js';

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
 * An event ready to be chained and written (PostgreSQL): where its texts are. In the batch's
 * hashed bytes, from `at`, HASH_TEXT_BYTES of room for its prev_hash, then the JCS text its hash
 * covers up to `split`. In its COPY text bytes (the same bytes, from `split`, unless given apart),
 * from `copyStart` its COPY text up to its chain columns (COPY_COLUMNS' order, each field escaped,
 * a tab after the last) up to `end`, then CHAIN_FIELDS_BYTES of room for the chain's three fields.
 */
export interface CopyRow {
  readonly id: string;
  readonly sessionId: string;
  readonly at: number;
  readonly split: number;
  readonly copyStart: number;
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

/** The columns of a row other than `data`, which an event taken as written keeps as its bytes. */
type RowFields = Omit<RowColumns, 'data'>;

/** COPY_COLUMNS before `data`, each followed by a tab. */
const copyHead = (row: RowFields): string =>
  `${copyField(row.id)}\t${copyField(row.session_id)}\t${copyField(row.type)}\t${copyField(row.kind)}\t${copyField(row.source)}\t${isoTime(row.time)}\t`;

/** COPY_COLUMNS after `data` and before the chain's, each after a tab and followed by one. */
const copyTail = (row: RowFields): string =>
  `\t${copyJsonField(row.ext)}\t${copyField(row.resource)}\t${copyField(row.subject_sub)}\t` +
  `${copyField(row.command_id)}\t${copyField(row.approval_id)}\t${copyField(row.decision)}\t${row.masked_values}\t${copyField(row.signed_by)}\t`;

/** Every column of COPY_COLUMNS before the chain's, in that order, each followed by a tab. */
export const copyPrefix = (row: RowColumns): string => copyHead(row) + copyJsonField(row.data) + copyTail(row);

const stringField = (data: unknown, key: string): string | null => {
  if (data === null || typeof data !== 'object') return null;
  const value = (data as Record<string, unknown>)[key];
  return typeof value === 'string' ? value : null;
};

const subjectSub = (data: unknown): string | null => {
  if (data === null || typeof data !== 'object') return null;
  const subject = (data as Record<string, unknown>).subject;
  return stringField(subject, 'sub');
};

const maskedValues = (data: unknown): number => {
  if (data === null || typeof data !== 'object') return 0;
  // command.executed carries its result (and so its counts) under `result`.
  const result = (data as Record<string, unknown>).result;
  const counts = (result !== null && typeof result === 'object' ? (result as Record<string, unknown>) : (data as Record<string, unknown>)).maskedCounts;
  if (counts === null || typeof counts !== 'object') return 0;
  let total = 0;
  for (const value of Object.values(counts)) if (typeof value === 'number' && Number.isFinite(value)) total += value;
  return Math.min(Math.trunc(total), 2 ** 31 - 1);
};

const longerThanIndexable = (text: unknown): boolean =>
  typeof text === 'string' && text.length > MAX_INDEXED_TEXT_BYTES / 3 && Buffer.byteLength(text, 'utf8') > MAX_INDEXED_TEXT_BYTES;

/** The value at `path` in `event` (member of member…), as stringField and subjectSub read it. */
const valueAt = (event: CloudEvent, path: readonly string[]): unknown => {
  let value: unknown = event;
  for (const key of path) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
};

/**
 * Which text of `event` the store indexes but cannot (longer than MAX_INDEXED_TEXT_BYTES), if
 * any: such an event is refused, not stored. Events taken as written never hold one (their scan
 * leaves them to decodeEvents).
 */
export const unindexableText = (event: CloudEvent): string | undefined => {
  for (const { path } of INDEXED_TEXTS) if (longerThanIndexable(valueAt(event, path))) return path.join('.');
  return undefined;
};

/** An event's columns and the JCS text its hash covers (the general path: any CloudEvent). */
export const eventRow = (event: CloudEvent, receivedAt: Date, signedBy: string | null): { readonly row: RowColumns; readonly canonical: string } => {
  const { columns, canonical, dataJson, extJson } = prepareEvent(event, receivedAt);
  const data = columns.data;
  const row: RowColumns = {
    id: columns.id,
    session_id: columns.sessionId,
    type: columns.type,
    kind: kindOfType(columns.type) ?? columns.type,
    source: columns.source,
    time: columns.time,
    data: data === null ? null : (dataJson ?? JSON.stringify(data)),
    ext: extJson ?? JSON.stringify(columns.ext),
    resource: stringField(data, 'resource'),
    subject_sub: subjectSub(data),
    command_id: stringField(data, 'commandId'),
    approval_id: stringField(data, 'approvalId'),
    decision: stringField(data, 'decision'),
    masked_values: maskedValues(data),
    signed_by: signedBy,
  };
  return { row, canonical };
};

/** The last type an event taken as written had, and its kind: a batch's events mostly share one. */
let lastType = '';
let lastKind = '';

const kindOfWritten = (type: string): string => {
  if (type !== lastType) {
    lastKind = kindOfType(type) ?? type;
    lastType = type;
  }
  return lastKind;
};

/** The columns of an event taken as written but `data` (its bytes are the data column's text). */
const writtenFields = (event: WrittenEvent, signedBy: string | null): RowFields => ({
  id: event.id,
  session_id: event.subject,
  type: event.type,
  kind: kindOfWritten(event.type),
  source: event.source,
  time: event.storedTime,
  ext: event.extJson,
  resource: event.resource,
  subject_sub: event.subjectSub,
  command_id: event.commandId,
  approval_id: event.approvalId,
  decision: event.decision,
  masked_values: event.maskedValues,
  signed_by: signedBy,
});

/** An event as a row for INSERT (PGlite). */
export const insertRow = (event: CloudEvent, receivedAt: Date, signedBy: string | null): InsertRow => {
  if (event instanceof WrittenEvent) {
    const fields = writtenFields(event, signedBy);
    return { id: fields.id, sessionId: fields.session_id, canonical: event.text(), columns: { ...fields, data: event.dataText() } };
  }
  const { row, canonical } = eventRow(event, receivedAt, signedBy);
  return { id: row.id, sessionId: row.session_id, canonical, columns: row };
};

const TAB = 0x09;
const NEWLINE = 0x0a;
const COMMA = 0x2c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
/** `\N`, COPY's null. */
const NULL_FIELD = Buffer.from('\\N', 'latin1');

/** A text as COPY field bytes (UTF-8), kept for the last text given: a batch's events mostly share their kind and signer. */
class RepeatedField {
  #text: string | null | undefined;
  #bytes = NULL_FIELD;

  bytesOf(text: string | null): Buffer {
    if (text !== this.#text) {
      this.#bytes = Buffer.from(copyField(text), 'utf8');
      this.#text = text;
    }
    return this.#bytes;
  }
}

const kindField = new RepeatedField();
const signerField = new RepeatedField();

/** A text column of an event taken as written, then a tab: its string's bytes (see TEXT_COLUMN), or `\N`. */
const appendTextColumn = (bytes: BatchBytes, event: WrittenEvent, column: number): void => {
  const start = event.columnSpans[column]!;
  if (start < 0) bytes.appendBytes(NULL_FIELD, 0, NULL_FIELD.length);
  else bytes.appendBytes(event.payload, start + 1, event.columnSpans[column + 1]! - 1);
  bytes.appendByte(TAB);
};

/** A count (masked_values: an integer from 0 to 2^31 - 1) as its decimal digits, without a string per event. */
const appendCount = (bytes: BatchBytes, count: number): void => {
  if (count >= 10) appendCount(bytes, Math.floor(count / 10));
  bytes.appendByte(0x30 + (count % 10));
};

/**
 * The COPY text of an event taken as written whose text columns hold no escape, copied from its
 * bytes: a text column's string between its quotes is its text's UTF-8 and holds nothing COPY's
 * text format escapes (no control character, no backslash), the time is as toISOString writes it
 * (timeWrittenAsStored), and the ext column is its members' bytes joined as extJson joins them.
 */
const appendWrittenColumns = (bytes: BatchBytes, event: WrittenEvent, signedBy: string | null): void => {
  appendTextColumn(bytes, event, TEXT_COLUMN.id);
  appendTextColumn(bytes, event, TEXT_COLUMN.sessionId);
  appendTextColumn(bytes, event, TEXT_COLUMN.type);
  const kind = kindField.bytesOf(kindOfWritten(event.type));
  bytes.appendBytes(kind, 0, kind.length);
  bytes.appendByte(TAB);
  appendTextColumn(bytes, event, TEXT_COLUMN.source);
  appendTextColumn(bytes, event, TEXT_COLUMN.time);
  bytes.appendJsonField(event.payload, event.dataStart, event.dataEnd, event.dataHasBackslash);
  bytes.appendByte(TAB);
  bytes.appendByte(OPEN_BRACE);
  const members = event.extMembers;
  for (let index = 0; index < members.length; index += 2) {
    if (index > 0) bytes.appendByte(COMMA);
    bytes.appendJsonField(event.payload, members[index]!, members[index + 1]!, event.extHasBackslash);
  }
  bytes.appendByte(CLOSE_BRACE);
  bytes.appendByte(TAB);
  appendTextColumn(bytes, event, TEXT_COLUMN.resource);
  appendTextColumn(bytes, event, TEXT_COLUMN.subjectSub);
  appendTextColumn(bytes, event, TEXT_COLUMN.commandId);
  appendTextColumn(bytes, event, TEXT_COLUMN.approvalId);
  appendTextColumn(bytes, event, TEXT_COLUMN.decision);
  appendCount(bytes, event.maskedValues);
  bytes.appendByte(TAB);
  const signer = signerField.bytesOf(signedBy);
  bytes.appendBytes(signer, 0, signer.length);
  bytes.appendByte(TAB);
};

/** Digits session_seq is written with in place: an integer column's, which reads leading zeros as such. */
const SEQ_DIGITS = 10;
const LARGEST_SEQ_IN_PLACE = 10 ** SEQ_DIGITS - 1;

/**
 * Room kept after each row's COPY text for its chain fields, which are known only once the chain
 * heads are read: session_seq as SEQ_DIGITS digits, hash and prev_hash as 64 hex digits each,
 * tabs between, a newline after. Of one width whatever the values, so the rows prepared back to
 * back are the COPY data as they lie, sent without being copied again.
 */
export const CHAIN_FIELDS_BYTES = SEQ_DIGITS + 1 + HASH_TEXT_BYTES + 1 + HASH_TEXT_BYTES + 1;

/**
 * An event written for COPY (PostgreSQL): its JCS text after room for its prev_hash into
 * `bytes`, its COPY text up to the chain's columns and room for them into `copyText` (by default
 * `bytes`, after the JCS text). An event taken as written is copied from the bytes it came in:
 * its text and its data are not written again.
 */
export const appendCopyRow = (bytes: BatchBytes, event: CloudEvent, receivedAt: Date, signedBy: string | null, copyText: BatchBytes = bytes): CopyRow => {
  if (event instanceof WrittenEvent) {
    const at = bytes.appendBytes(event.payload, event.start, event.end, HASH_TEXT_BYTES);
    const split = bytes.length;
    const copyStart = copyText.length;
    if (!event.columnEscaped) appendWrittenColumns(copyText, event, signedBy);
    else {
      const fields = writtenFields(event, signedBy);
      copyText.append(copyHead(fields));
      copyText.appendJsonField(event.payload, event.dataStart, event.dataEnd, event.dataHasBackslash);
      copyText.append(copyTail(fields));
    }
    return { id: event.id, sessionId: event.subject, at, split, copyStart, end: copyText.skip(CHAIN_FIELDS_BYTES) };
  }
  const { row, canonical } = eventRow(event, receivedAt, signedBy);
  const at = bytes.append(canonical, HASH_TEXT_BYTES);
  const split = bytes.length;
  const copyStart = copyText.append(copyPrefix(row));
  return { id: row.id, sessionId: row.session_id, at, split, copyStart, end: copyText.skip(CHAIN_FIELDS_BYTES) };
};

/** Bytes of rows a CopyData message holds at most (a longer row goes alone). */
const COPY_DATA_BYTES = 1024 * 1024;

/** Whether `text` is a hash as the store writes them: 64 lower-case hex digits. */
const isHexHash = (text: string): boolean => {
  if (text.length !== HASH_TEXT_BYTES) return false;
  for (let index = 0; index < HASH_TEXT_BYTES; index += 1) {
    const code = text.charCodeAt(index);
    if (code < 0x30 || (code > 0x39 && code < 0x61) || code > 0x66) return false;
  }
  return true;
};

/**
 * Whether the chained rows can be sent where they lie: each right after the one before (none
 * skipped as stored already) and each chain field of the width its room has. A hash is chain's
 * (sha256 hex); a prev_hash is the hash of the link before it in its session or else the
 * session's head as read back from the table, so that one is checked, not assumed to be hex.
 */
const sendableInPlace = (links: readonly ChainLink<CopyRow>[]): boolean => {
  const lastHashOf = new Map<string, string>();
  for (let index = 0; index < links.length; index += 1) {
    const { prepared, sessionSeq, hash, prevHash } = links[index]!;
    if (index > 0 && prepared.copyStart !== links[index - 1]!.prepared.end + CHAIN_FIELDS_BYTES) return false;
    if (!Number.isInteger(sessionSeq) || sessionSeq < 0 || sessionSeq > LARGEST_SEQ_IN_PLACE) return false;
    if (hash.length !== HASH_TEXT_BYTES) return false;
    if (prevHash !== lastHashOf.get(prepared.sessionId) && !isHexHash(prevHash)) return false;
    lastHashOf.set(prepared.sessionId, hash);
  }
  return true;
};

/** Writes a row's chain fields into the room after its COPY text (sendableInPlace said they fit). */
const writeChainFields = (copyText: BatchBytes, { prepared, sessionSeq, hash, prevHash }: ChainLink<CopyRow>): void => {
  let at = prepared.end;
  let seq = sessionSeq;
  for (let digit = SEQ_DIGITS - 1; digit >= 0; digit -= 1) {
    copyText.overwriteByte(at + digit, 0x30 + (seq % 10));
    seq = Math.floor(seq / 10);
  }
  at += SEQ_DIGITS;
  copyText.overwriteByte(at, TAB);
  at = copyText.overwrite(at + 1, hash);
  copyText.overwriteByte(at, TAB);
  at = copyText.overwrite(at + 1, prevHash);
  copyText.overwriteByte(at, NEWLINE);
};

/**
 * The chained rows as the chunks of CopyData messages (copyIn's): each message a header, then a
 * view of the rows as they lie in `copyText`, their chain fields written into their room. Rows
 * that do not lie back to back (some were stored already) or whose chain fields do not fit their
 * room are copied into messages of their own instead (gatheredCopyData). A retry writes the room
 * again: copyIn settled the attempt before it (the server answered, or the connection is gone),
 * and what that connection may still have queued after an error is CopyData the server ignores.
 */
export const copyDataChunks = (copyText: BatchBytes, links: readonly ChainLink<CopyRow>[]): Buffer[] => {
  if (!sendableInPlace(links)) return gatheredCopyData(copyText, links);
  const chunks: Buffer[] = [];
  let start = links[0]?.prepared.copyStart ?? 0;
  for (let index = 0; index < links.length; index += 1) {
    const link = links[index]!;
    writeChainFields(copyText, link);
    const end = link.prepared.end + CHAIN_FIELDS_BYTES;
    const next = links[index + 1];
    if (next === undefined || next.prepared.end + CHAIN_FIELDS_BYTES - start > COPY_DATA_BYTES) {
      chunks.push(copyDataHeader(end - start), copyText.view(start, end));
      start = end;
    }
  }
  return chunks;
};

/** The chained rows copied into CopyData messages, each row's chain fields written as COPY text after it. */
const gatheredCopyData = (copyText: BatchBytes, links: readonly ChainLink<CopyRow>[]): Buffer[] => {
  const messages: Buffer[] = [];
  let first = 0;
  while (first < links.length) {
    const tails: string[] = [];
    let length = 0;
    let last = first;
    for (; last < links.length && (last === first || length <= COPY_DATA_BYTES); last += 1) {
      const { prepared, sessionSeq, hash, prevHash } = links[last]!;
      const tail = `${sessionSeq}\t${copyField(hash)}\t${copyField(prevHash)}\n`;
      tails.push(tail);
      length += prepared.end - prepared.copyStart + Buffer.byteLength(tail, 'utf8');
    }
    const message = allocCopyData(length);
    let offset = COPY_DATA_HEADER_BYTES;
    for (let index = first; index < last; index += 1) {
      const { prepared } = links[index]!;
      offset += copyText.copyTo(message, offset, prepared.copyStart, prepared.end);
      offset += message.write(tails[index - first]!, offset, 'utf8');
    }
    messages.push(message);
    first = last;
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
    let head = heads.get(sessionId);
    if (head === undefined) {
      head = { hash: GENESIS_HASH, sessionSeq: 0 };
      heads.set(sessionId, head);
    }
    // The JCS text is that of the form rebuilt from the columns, exactly what verify recomputes.
    const link = { prepared, sessionSeq: head.sessionSeq + 1, hash: hashOf(head.hash, prepared), prevHash: head.hash };
    // Moved on in place: the heads are this call's own.
    head.hash = link.hash;
    head.sessionSeq = link.sessionSeq;
    links.push(link);
  }
  return links;
};
