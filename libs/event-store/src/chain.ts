import * as crypto from 'node:crypto';
import type { CloudEvent } from '@sluice/contracts';
import { canonicalJson, canonicalText, memberName } from './canonical-json.js';

/**
 * prev_hash of the first event of every session chain: 64 zeros (the sha256 width), so every row
 * has the same shape and a chain's start is recognisable.
 */
export const GENESIS_HASH = '0'.repeat(64);

/** hash = sha256 hex of (prev_hash || JCS(event)), both as UTF-8. */
export const chainHash = (prevHash: string, event: unknown): string => chainHashOf(prevHash, canonicalJson(event));

// One-shot crypto.hash (Node >= 20.12) costs a fraction of createHash's object per event; the
// engines field still admits 20.11, which gets the stream form.
const sha256Hex: (text: string) => string =
  typeof crypto.hash === 'function'
    ? (text) => crypto.hash('sha256', text, 'hex')
    : (text) => crypto.createHash('sha256').update(text, 'utf8').digest('hex');

/** chainHash from the JCS text already written (see prepareEvent). */
export const chainHashOf = (prevHash: string, canonical: string): string => sha256Hex(prevHash + canonical);

/** A CloudEvent in the exact form the store keeps and hashes. */
export type StoredCloudEvent = CloudEvent & Readonly<Record<string, unknown>>;

// U+0000 is exactly what these look for.
// eslint-disable-next-line no-control-regex
const UNSTORABLE = /[\u0000\p{Surrogate}]/u;
// eslint-disable-next-line no-control-regex
const UNSTORABLE_ALL = /[\u0000\p{Surrogate}]/gu;

/**
 * Text as PostgreSQL keeps it: jsonb and text refuse U+0000, and a lone surrogate (not UTF-8 at
 * all) becomes U+FFFD on its way in. Both are replaced before an event is hashed, so the hash
 * covers what is stored and `verify` can recompute it.
 */
export const storableText = (text: string): string => (UNSTORABLE.test(text) ? text.replace(UNSTORABLE_ALL, '\uFFFD') : text);

const storable = (value: unknown): unknown => {
  if (typeof value === 'string') return storableText(value);
  if (Array.isArray(value)) return value.map(storable);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, inner] of Object.entries(value)) out[storableText(key)] = storable(inner);
    return out;
  }
  return value;
};

/** In JSON.stringify's output: a U+0000, or a lone surrogate (the only surrogates it escapes). */
const ESCAPED_UNSTORABLE = /\\u(?:0000|d[89a-f])/i;

/** ESCAPED_UNSTORABLE, searched for only in a text with a `\u` escape (JSON.stringify writes few). */
const hasEscapedUnstorable = (json: string): boolean => json.includes('\\u') && ESCAPED_UNSTORABLE.test(json);

/**
 * The form an event is stored, hashed and served in. Events Sluice publishes pass through
 * unchanged; foreign ones get `time` as ISO-8601 UTC with milliseconds (what timestamptz gives
 * back), U+0000 and lone surrogates replaced by U+FFFD (storableText), and a missing `time` set to
 * the receipt time.
 */
export const normalizeEvent = (event: CloudEvent, receivedAt: Date): StoredCloudEvent => {
  const parsed = typeof event.time === 'string' ? new Date(event.time) : undefined;
  const time = parsed && !Number.isNaN(parsed.getTime()) ? parsed : receivedAt;
  const { data, subject, ...rest } = event as CloudEvent & { data?: unknown; subject?: unknown };
  // Absent and null are one thing in the columns, so they are one thing in the hashed form too.
  const normalized = {
    ...rest,
    ...(typeof subject === 'string' && subject !== '' ? { subject } : {}),
    time: time.toISOString(),
    ...(data === null || data === undefined ? {} : { data }),
  };
  // The deep copy is only paid by the rare event that holds such a character.
  return (ESCAPED_UNSTORABLE.test(JSON.stringify(normalized)) ? storable(normalized) : normalized) as StoredCloudEvent;
};

/** Attributes kept in their own columns; everything else of the envelope goes to `ext`. */
export const COLUMN_ATTRIBUTES = ['id', 'source', 'type', 'subject', 'time', 'data'] as const;

export interface EventColumns {
  readonly id: string;
  readonly source: string;
  readonly type: string;
  readonly sessionId: string;
  readonly time: Date;
  readonly data: unknown;
  readonly ext: Record<string, unknown>;
}

export const splitEvent = (event: StoredCloudEvent): EventColumns => {
  const ext: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(event)) {
    if (!(COLUMN_ATTRIBUTES as readonly string[]).includes(key)) ext[key] = value;
  }
  return {
    id: event.id,
    source: event.source,
    type: event.type,
    sessionId: event.subject ?? '',
    time: new Date(event.time),
    data: event.data ?? null,
    ext,
  };
};

/**
 * Rebuilds the envelope from the stored columns, so that a change to any column (not only to
 * a copy of the JSON) breaks the chain.
 */
export const joinEvent = (row: EventColumns): StoredCloudEvent =>
  ({
    ...row.ext,
    id: row.id,
    source: row.source,
    type: row.type,
    ...(row.sessionId === '' ? {} : { subject: row.sessionId }),
    time: row.time.toISOString(),
    ...(row.data === null ? {} : { data: row.data }),
  }) as StoredCloudEvent;

/** An event ready to store: its columns and the JCS text of its stored form, which the chain hashes. */
export interface PreparedEvent {
  readonly columns: EventColumns;
  readonly canonical: string;
  /** `data` as JSON (its JCS text, written for `canonical` anyway), when there is data. */
  readonly dataJson?: string;
  /** `ext` as JSON, the same text as JSON.stringify(columns.ext), when it was written on the way. */
  readonly extJson?: string;
}

const isColumnAttribute = (key: string): boolean =>
  key === 'id' || key === 'source' || key === 'type' || key === 'subject' || key === 'time' || key === 'data';

/**
 * Whether JSON.stringify writes `value` exactly as RFC 8785 does: plain JSON only (what JSON.parse
 * gives: no undefined, no toJSON, finite numbers) and every object's own keys already in sorted
 * order (UTF-16 code units, as Array#sort compares). Then the two differ in nothing: JCS strings
 * and numbers are ECMAScript's JSON.stringify. Object.keys is the order JSON.stringify writes, so
 * integer-like keys (which objects list first, in numeric order) are judged as written.
 */
const inCanonicalOrder = (value: unknown): boolean => {
  if (value === null) return true;
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(value);
    case 'object': {
      if (Array.isArray(value)) {
        for (let index = 0; index < value.length; index += 1) if (!inCanonicalOrder(value[index])) return false;
        return true;
      }
      if (Object.getPrototypeOf(value) !== Object.prototype) return false;
      const record = value as Record<string, unknown>;
      let previous: string | undefined;
      for (const key in record) {
        // for-in lists own keys in Object.keys order here (a plain object: no inherited enumerables).
        if (previous !== undefined && !(previous < key)) return false;
        if (key === '__proto__' || !inCanonicalOrder(record[key])) return false;
        previous = key;
      }
      return true;
    }
    default:
      return false;
  }
};

/** The last time text found to be what toISOString writes, and its Date (treated as immutable). */
let verifiedTimeText = '';
let verifiedTime = new Date(0);

/**
 * The Date of a time text that survives the timestamptz round trip (toISOString gives it back),
 * else undefined. The events of a batch mostly share their millisecond: each distinct text is
 * parsed and checked once in a row, not once per event.
 */
export const timeWrittenAsStored = (text: string): Date | undefined => {
  if (text === verifiedTimeText) return verifiedTime;
  const parsed = new Date(text);
  if (Number.isNaN(parsed.getTime()) || parsed.toISOString() !== text) return undefined;
  verifiedTimeText = text;
  verifiedTime = parsed;
  return parsed;
};

/**
 * prepareEvent for an event whose JSON is already its stored form's JCS text (what Sluice's
 * publishers write: envelope and data built with their keys in sorted order, `data` first, time
 * as toISOString gives it): the data column's text and the hashed text come from JSON.stringify,
 * native and several times faster than writing JCS member by member. Undefined when the event is
 * not such an event (then the general path decides, with the same result).
 */
const preparedAsWritten = (envelope: Record<string, unknown>): PreparedEvent | undefined => {
  if (Object.getPrototypeOf(envelope) !== Object.prototype) return undefined;
  const { time, subject, data } = envelope;
  if (typeof time !== 'string' || typeof subject !== 'string' || subject === '' || data === null || data === undefined) return undefined;
  // Stored as timestamptz, served as toISOString: only that text survives the round trip.
  const parsed = timeWrittenAsStored(time);
  if (!parsed) return undefined;
  let first = true;
  let previous: string | undefined;
  let tail = '';
  let extJson = '{';
  const ext: Record<string, unknown> = {};
  for (const key in envelope) {
    if (first) {
      if (key !== 'data') return undefined;
      first = false;
      previous = key;
      continue;
    }
    if (!(previous! < key) || key === '__proto__') return undefined;
    previous = key;
    const value = envelope[key];
    if (!inCanonicalOrder(value)) return undefined;
    const member = memberName(key) + JSON.stringify(value);
    tail += `,${member}`;
    if (isColumnAttribute(key)) continue;
    ext[key] = value;
    extJson += extJson.length > 1 ? `,${member}` : member;
  }
  if (!inCanonicalOrder(data)) return undefined;
  const dataJson = JSON.stringify(data);
  const canonical = `{"data":${dataJson}${tail}}`;
  // PostgreSQL stores neither U+0000 nor a lone surrogate: such an event takes the general path.
  if (hasEscapedUnstorable(canonical)) return undefined;
  const columns: EventColumns = {
    id: envelope.id as string,
    source: envelope.source as string,
    type: envelope.type as string,
    sessionId: subject,
    time: parsed,
    data,
    ext,
  };
  return { columns, canonical, dataJson, extJson: `${extJson}}` };
};

const preparedTheLongWay = (event: CloudEvent, receivedAt: Date): PreparedEvent => {
  const columns = splitEvent(normalizeEvent(event, receivedAt));
  return { columns, canonical: canonicalJson(joinEvent(columns)) };
};

/**
 * Same result as `splitEvent(normalizeEvent(event))` and `canonicalJson(joinEvent(columns))`
 * (chain.spec.ts holds it to that), in one pass without the intermediate envelopes: storing is
 * CPU-bound on this work. The rare event with a U+0000 takes the long way.
 */
export const prepareEvent = (event: CloudEvent, receivedAt: Date): PreparedEvent => {
  const envelope = event as unknown as Record<string, unknown>;
  const asWritten = preparedAsWritten(envelope);
  if (asWritten) return asWritten;
  const parsed = typeof envelope.time === 'string' ? new Date(envelope.time) : undefined;
  const time = parsed && !Number.isNaN(parsed.getTime()) ? parsed : receivedAt;
  const subject = envelope.subject;
  const sessionId = typeof subject === 'string' ? subject : '';
  const data = envelope.data ?? null;
  const ext: Record<string, unknown> = {};
  const keys: string[] = [];
  for (const key of Object.keys(envelope)) {
    if (isColumnAttribute(key)) continue;
    // Assigning it would set the prototype, not a key: keep whatever the long way does with it.
    if (key === '__proto__') return preparedTheLongWay(event, receivedAt);
    ext[key] = envelope[key];
    keys.push(key);
  }
  keys.push('id', 'source', 'type', 'time');
  if (sessionId !== '') keys.push('subject');
  if (data !== null) keys.push('data');
  keys.sort();
  const timeText = time.toISOString();
  let canonical = '{';
  let dataJson: string | undefined;
  for (const key of keys) {
    const value =
      key === 'time' ? timeText : key === 'subject' ? sessionId : key === 'data' ? data : isColumnAttribute(key) ? envelope[key] : ext[key];
    if (value === undefined || typeof value === 'symbol') continue;
    if (canonical.length > 1) canonical += ',';
    const written = canonicalText(value);
    // The data column takes the same text: data is not serialised a second time.
    if (key === 'data') dataJson = written;
    canonical += `${JSON.stringify(key)}:${written}`;
  }
  canonical += '}';
  // JCS writes U+0000 and lone surrogates as \u escapes (a false alarm on a literal backslash-u
  // only costs the long way).
  if (hasEscapedUnstorable(canonical)) return preparedTheLongWay(event, receivedAt);
  const columns: EventColumns = {
    id: envelope.id as string,
    source: envelope.source as string,
    type: envelope.type as string,
    sessionId,
    time,
    data,
    ext,
  };
  return dataJson === undefined ? { columns, canonical } : { columns, canonical, dataJson };
};
