import * as crypto from 'node:crypto';
import type { CloudEvent } from '@sluice/contracts';
import { canonicalJson, canonicalText } from './canonical-json.js';

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

// jsonb refuses U+0000 and PostgreSQL text cannot hold it either.
const stripNul = (value: unknown): unknown => {
  if (typeof value === 'string') return value.includes('\u0000') ? value.replaceAll('\u0000', '\uFFFD') : value;
  if (Array.isArray(value)) return value.map(stripNul);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, inner] of Object.entries(value)) out[stripNul(key) as string] = stripNul(inner);
    return out;
  }
  return value;
};

/**
 * The form an event is stored, hashed and served in. Events Sluice publishes pass through
 * unchanged; foreign ones get `time` as ISO-8601 UTC with milliseconds (what timestamptz gives
 * back), U+0000 replaced by U+FFFD, and a missing `time` set to the receipt time.
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
  // The deep copy is only paid by the rare event that holds a U+0000.
  return (JSON.stringify(normalized).includes('\\u0000') ? stripNul(normalized) : normalized) as StoredCloudEvent;
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
}

const isColumnAttribute = (key: string): boolean =>
  key === 'id' || key === 'source' || key === 'type' || key === 'subject' || key === 'time' || key === 'data';

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
  // JCS writes U+0000 as \u0000 (a false alarm on a literal backslash-u0000 only costs the long way).
  if (canonical.includes('\\u0000')) return preparedTheLongWay(event, receivedAt);
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
