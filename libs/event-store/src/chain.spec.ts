import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { buildEvent } from '@sluice/contracts';
import { canonicalJson } from './canonical-json.js';
import { chainHash, chainHashOf, GENESIS_HASH, joinEvent, normalizeEvent, prepareEvent, splitEvent } from './chain.js';

const event = buildEvent('session.ended', {
  id: 'e1',
  source: 'proxy',
  subject: 's1',
  time: new Date('2026-01-02T03:04:05.678Z'),
  sessionseq: 4,
  data: { resource: 'db', reason: 'client closed', commands: 2, durationMs: 10 },
});

describe('hash chain', () => {
  it('hashes the previous hash followed by the RFC 8785 JSON of the event', () => {
    const expected = createHash('sha256').update(GENESIS_HASH + canonicalJson(event)).digest('hex');
    expect(chainHash(GENESIS_HASH, event)).toBe(expected);
  });

  it('canonical JSON sorts keys whatever order they were written in', () => {
    expect(canonicalJson({ b: 1, a: [true, null, 'x'] })).toBe('{"a":[true,null,"x"],"b":1}');
  });

  it('leaves an event Sluice built unchanged when normalising it', () => {
    expect(normalizeEvent(event, new Date())).toEqual(event);
  });

  it('rebuilds exactly the stored form from the columns, extension attributes included', () => {
    const normalized = normalizeEvent({ ...event, traceparent: '00-abc' } as never, new Date());
    expect(joinEvent(splitEvent(normalized))).toEqual(normalized);
  });

  it('replaces U+0000, which PostgreSQL cannot store, when an event carries one', () => {
    const normalized = normalizeEvent({ ...event, data: { ...event.data, reason: 'a\u0000b' } }, new Date());
    expect((normalized.data as { reason: string }).reason).toBe('a\uFFFDb');
  });

  it('normalises a foreign time to ISO milliseconds when an event has another format', () => {
    const normalized = normalizeEvent({ ...event, time: '2026-01-02T03:04:05Z' }, new Date());
    expect(normalized.time).toBe('2026-01-02T03:04:05.000Z');
  });
});

// The package the store used before its own writer: stored chains were hashed with it.
const referenceCanonicalize = createRequire(import.meta.url)('canonicalize') as (input: unknown) => string | undefined;

const awkwardValues: unknown[] = [
  { b: 1, a: [true, null, 'x'], c: { z: [], y: {} } },
  { '\u00e9': 1, e: 2, '\ud83d\ude00': 3, '\u20ac': 4, '\ufb33': 5, A: 6, '': 7, '10': 8, '9': 9 },
  ['tab\there', 'quote"back\\slash', 'line\nbreak', '\u0001\u001f\u007f', '\u2028\u2029', '\ud800 lone', 'emoji \ud83d\ude00'],
  [0, -0, 1, -1, 0.1, 1e21, 1e-7, 123456789012345680000, 5e-324, 1.7976931348623157e308, 2 ** 53, 0.000001, 33.3333333],
  { skip: undefined, keep: null, nested: [undefined, 1] },
  { date: new Date('2026-01-02T03:04:05.678Z') },
  'just a string',
  42,
  null,
];

const awkwardEvents: Array<Record<string, unknown>> = [
  { ...event },
  { ...event, traceparent: '00-abc', zextension: { deep: [1, 'two'] }, aextension: 'first' },
  { ...event, subject: '' },
  { ...event, subject: 7 },
  { id: 'no-subject', source: 'x', type: 't', time: '2026-01-02T03:04:05Z', specversion: '1.0' },
  { ...event, data: null },
  { ...event, data: undefined },
  { ...event, data: 'a string payload' },
  { ...event, time: 'not a time' },
  { ...event, time: undefined },
  { ...event, time: '2026-01-02T03:04:05.123456+02:00' },
  { ...event, data: { reason: 'a\u0000b', 'k\u0000': 1 } },
  { ...event, data: { text: 'a literal \\u0000 is not a NUL' } },
  { ...event, source: undefined, type: 5 },
  JSON.parse('{"id":"proto","source":"x","type":"t","__proto__":{"polluted":true},"data":{"__proto__":1}}') as Record<string, unknown>,
];

describe('canonical JSON and the prepared form', () => {
  it('writes exactly what the canonicalize package wrote when given awkward values', () => {
    for (const value of awkwardValues) expect(canonicalJson(value)).toBe(referenceCanonicalize(value));
  });

  it('refuses NaN and Infinity like the package did when a value holds one', () => {
    expect(() => canonicalJson({ a: Number.NaN })).toThrow();
    expect(() => canonicalJson([Number.POSITIVE_INFINITY])).toThrow();
    expect(() => canonicalJson(undefined)).toThrow(TypeError);
  });

  it('prepares the same columns and JCS text as normalise, split and join when events are awkward', () => {
    const receivedAt = new Date('2026-05-06T07:08:09.010Z');
    for (const input of awkwardEvents) {
      const longWay = splitEvent(normalizeEvent(input as never, receivedAt));
      const prepared = prepareEvent(input as never, receivedAt);
      expect(prepared.columns).toEqual(longWay);
      expect(JSON.stringify(prepared.columns.ext)).toBe(JSON.stringify(longWay.ext));
      expect(prepared.canonical).toBe(canonicalJson(joinEvent(longWay)));
      expect(prepared.canonical).toBe(referenceCanonicalize(joinEvent(longWay)));
      // The data column's text is the same value as the data it stores.
      if (prepared.dataJson !== undefined) expect(JSON.parse(prepared.dataJson)).toEqual(JSON.parse(JSON.stringify(longWay.data)));
    }
  });

  it('chains from the prepared text to the same hash as from the event when hashing', () => {
    const prepared = prepareEvent(event, new Date());
    expect(chainHashOf(GENESIS_HASH, prepared.canonical)).toBe(chainHash(GENESIS_HASH, joinEvent(prepared.columns)));
    expect(chainHashOf('a'.repeat(64), prepared.canonical)).toBe(
      createHash('sha256').update('a'.repeat(64) + referenceCanonicalize(event)).digest('hex'),
    );
  });
});
