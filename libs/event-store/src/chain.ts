import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type { CloudEvent } from '@sluice/contracts';

// canonicalize is CommonJS whose typings declare an ESM default export; under NodeNext that
// default would be typed as the module object, so load it through require.
const canonicalize = createRequire(import.meta.url)('canonicalize') as (input: unknown) => string | undefined;

/**
 * prev_hash of the first event of every session chain: 64 zeros (the sha256 width), so every row
 * has the same shape and a chain's start is recognisable.
 */
export const GENESIS_HASH = '0'.repeat(64);

/** RFC 8785 (JSON Canonicalization Scheme) text of a value. */
export const canonicalJson = (value: unknown): string => {
  const text = canonicalize(value);
  if (text === undefined) throw new TypeError('value has no JSON form');
  return text;
};

/** hash = sha256 hex of (prev_hash || JCS(event)), both as UTF-8. */
export const chainHash = (prevHash: string, event: unknown): string =>
  createHash('sha256').update(prevHash, 'utf8').update(canonicalJson(event), 'utf8').digest('hex');

/** A CloudEvent in the exact form the store keeps and hashes. */
export type StoredCloudEvent = CloudEvent & Readonly<Record<string, unknown>>;

// jsonb refuses U+0000 and PostgreSQL text cannot hold it either.
const NUL = /\u0000/g;
const stripNul = (value: unknown): unknown => {
  if (typeof value === 'string') return value.includes('\u0000') ? value.replace(NUL, '\uFFFD') : value;
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
