import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildEvent, type SluiceEventDataByKind } from '@sluice/contracts';
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

/** What the proxy publishes for a pgbench SELECT (audit-port's literal, members in sorted order). */
const executed = (data: Partial<SluiceEventDataByKind['command.executed']> = {}) =>
  buildEvent('command.executed', {
    id: '0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0',
    source: 'proxy',
    subject: '7a6b5c4d-3e2f-1a0b-9c8d-7e6f5a4b3c2d',
    time: new Date('2026-01-02T03:04:05.678Z'),
    sessionseq: 3,
    data: {
      action: 'read',
      command: 'SELECT 1',
      commandId: 'c1',
      decision: 'allow',
      durationMs: 0.41,
      ok: true,
      outcome: 'SELECT 1',
      protocol: 'postgres',
      reason: 'allowed by readers',
      resource: 'db',
      result: { bytes: 1, columns: ['a'], maskedCounts: {}, rowCount: 1, rows: [['0']], truncated: false },
      risk: 'low',
      rule: 'readers',
      ...data,
    },
  });

/** As the audit service gets it: parsed from the bus's JSON. */
const received = (event: unknown): Record<string, unknown> => JSON.parse(JSON.stringify(event)) as Record<string, unknown>;

const expectSameAsLongWay = (input: Record<string, unknown>): ReturnType<typeof prepareEvent> => {
  const receivedAt = new Date('2026-05-06T07:08:09.010Z');
  const longWay = splitEvent(normalizeEvent(input as never, receivedAt));
  const prepared = prepareEvent(input as never, receivedAt);
  expect(prepared.columns).toEqual(longWay);
  expect(prepared.canonical).toBe(referenceCanonicalize(joinEvent(longWay)));
  if (prepared.extJson !== undefined) expect(prepared.extJson).toBe(JSON.stringify(longWay.ext));
  if (prepared.dataJson !== undefined) expect(JSON.parse(prepared.dataJson)).toEqual(JSON.parse(JSON.stringify(longWay.data)));
  return prepared;
};

describe('events whose JSON is already their canonical text', () => {
  it('publishes the JSON of a proxy event as exactly its RFC 8785 text, so the store hashes it as written', () => {
    const event = executed();
    const json = JSON.stringify(event);
    expect(json).toBe(referenceCanonicalize(JSON.parse(json)));
    const prepared = expectSameAsLongWay(received(event));
    expect(prepared.canonical).toBe(json);
    // Taken as written: the ext text came from the same pass.
    expect(prepared.extJson).toBeDefined();
  });

  it('hashes the same text as the long way when strings hold unicode, escapes, U+2028 and nested data', () => {
    const strings = ['é € 😀 דּ', 'quote" back\\slash tab\t nl\n', '\u0001\u001f\u007f', '\u2028\u2029', 'a literal \\u0000 is no NUL', '</script>'];
    for (const text of strings) {
      const prepared = expectSameAsLongWay(received(executed({ command: text, reason: text, result: { bytes: 1, columns: [text], maskedCounts: { email: 1 }, rowCount: 1, rows: [[text, null]], truncated: false } })));
      // A literal backslash-u before 0000 looks like an escaped NUL: that one only costs the long way.
      if (!text.startsWith('a literal')) expect(prepared.extJson).toBeDefined();
    }
  });

  it('writes numbers as the long way does whatever their size', () => {
    for (const durationMs of [0, -0, 0.1, 1e21, 1e-7, 5e-324, 1.7976931348623157e308, 2 ** 53, 33.3333333]) {
      expect(expectSameAsLongWay(received(executed({ durationMs }))).extJson).toBeDefined();
    }
  });

  it('takes the long way when a lone surrogate or U+0000 must be replaced before storing', () => {
    for (const text of ['\ud800 lone', 'trail \udfff', 'nul \u0000 here']) {
      const prepared = expectSameAsLongWay(received(executed({ command: text })));
      expect(prepared.extJson).toBeUndefined();
      expect(prepared.canonical).toContain('\ufffd');
    }
  });

  it('takes the long way when keys are out of order, integer-like or the time is not as stored', () => {
    const out = [
      received(executed({ result: { bytes: 1, columns: [], maskedCounts: { phone: 1, email: 2 }, rowCount: 0, rows: [], truncated: false } })),
      received(executed({ result: { bytes: 1, columns: [], maskedCounts: { '10': 1, '9': 2 }, rowCount: 0, rows: [], truncated: false } })),
      { ...received(executed()), time: '2026-01-02T03:04:05Z' },
      { ...received(executed()), subject: '' },
      { specversion: '1.0', ...received(executed()) },
      { ...received(executed()), data: null },
      { ...received(executed()), aaa: 1 },
      JSON.parse(JSON.stringify(received(executed())).replace('"datacontenttype"', '"__proto__":{"x":1},"datacontenttype"')) as Record<string, unknown>,
    ];
    for (const input of out) expect(expectSameAsLongWay(input).extJson).toBeUndefined();
  });

  it('takes each event at its own time when events of one millisecond and of others come in turn', () => {
    const at = (time: string) => ({ ...received(executed()), time });
    const times = ['2026-01-02T03:04:05.678Z', '2026-01-02T03:04:05.678Z', '2026-01-02T03:04:05.679Z', '2026-01-02T03:04:05.678Z'];
    expect(times.map((time) => expectSameAsLongWay(at(time)).columns.time.toISOString())).toEqual(times);
    // A text that names the same instant but is not what the store gives back never passes for it.
    expect(expectSameAsLongWay(at('2026-01-02T03:04:05.678+00:00')).extJson).toBeUndefined();
  });

  it('prepares the same columns and hashed text as the long way for any JSON an event may hold', () => {
    const json = fc.jsonValue({ maxDepth: 3, stringUnit: 'binary' });
    fc.assert(
      fc.property(fc.dictionary(fc.string({ unit: 'binary' }), json, { maxKeys: 4 }), json, fc.string({ unit: 'binary' }), fc.boolean(), (extra, data, subject, sorted) => {
        const event = received({ ...extra, ...received(executed()), subject: subject || 's', data });
        const input = sorted ? (JSON.parse(referenceCanonicalize(event)!) as Record<string, unknown>) : event;
        expectSameAsLongWay(input);
      }),
      { numRuns: 300 },
    );
  });
});
