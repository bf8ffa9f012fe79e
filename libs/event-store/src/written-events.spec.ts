import { createRequire } from 'node:module';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildEvent, type CloudEvent, type SluiceEventDataByKind } from '@sluice/contracts';
import { BatchBytes } from './batch-bytes.js';
import { appendCopyRow, insertRow } from './batch-rows.js';
import { readWrittenEvents, WrittenEvent } from './written-events.js';

const referenceCanonicalize = createRequire(import.meta.url)('canonicalize') as (input: unknown) => string | undefined;

const receivedAt = new Date('2026-05-06T07:08:09.010Z');

/** What the proxy publishes for a pgbench SELECT (members in sorted order, as audit-port writes them). */
const executed = (data: Partial<SluiceEventDataByKind['command.executed']> = {}, index = 0): CloudEvent =>
  buildEvent('command.executed', {
    id: `0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f${index}`,
    source: 'proxy',
    subject: '7a6b5c4d-3e2f-1a0b-9c8d-7e6f5a4b3c2d',
    time: new Date('2026-01-02T03:04:05.678Z'),
    sessionseq: 3 + index,
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
      result: { bytes: 1, columns: ['a'], maskedCounts: { email: 2, phone: 1 }, rowCount: 1, rows: [['0']], truncated: false },
      risk: 'low',
      rule: 'readers',
      ...data,
    },
  });

/** `[json,json,…]` as the publisher sends it. */
const batch = (jsons: readonly string[]): Buffer => Buffer.from(`[${jsons.join(',')}]`, 'utf8');

/** What the general path makes of a message: decodeEvents (TextDecoder, JSON.parse) and the consumer's id filter. */
const decodedTheGeneralWay = (payload: Uint8Array): CloudEvent[] => {
  const parsed: unknown = JSON.parse(new TextDecoder().decode(payload));
  return (Array.isArray(parsed) ? parsed : [parsed]).filter((event): event is CloudEvent => typeof event === 'object' && event !== null && typeof (event as CloudEvent).id === 'string');
};

/** The COPY bytes (JCS text, then the row's COPY text) and the INSERT row an event becomes. */
const rowsOf = (event: CloudEvent) => {
  const bytes = new BatchBytes(16);
  const row = appendCopyRow(bytes, event, receivedAt, 'proxy');
  const copied = Buffer.alloc(row.end - row.at);
  bytes.copyTo(copied, 0, row.at, row.end);
  return { copy: { ...row, bytes: copied.subarray(64).toString('latin1') }, insert: insertRow(event, receivedAt, 'proxy') };
};

/**
 * Whenever a message is taken as written, each event's rows are byte for byte what the general
 * path makes of the same bytes. Returns whether it was taken.
 */
const expectSameAsGeneralPath = (payload: Buffer): boolean => {
  const written = readWrittenEvents(payload);
  if (written === undefined) return false;
  const general = decodedTheGeneralWay(payload);
  expect(written.length).toBe(general.length);
  written.forEach((event, index) => {
    const parsed = general[index]!;
    expect(event).toBeInstanceOf(WrittenEvent);
    const fast = rowsOf(event);
    const slow = rowsOf(parsed);
    expect(fast.copy.bytes).toBe(slow.copy.bytes);
    expect({ ...fast.copy, at: 0, split: 0, end: 0 }).toEqual({ ...slow.copy, at: 0, split: 0, end: 0 });
    expect(fast.copy.split - fast.copy.at).toBe(slow.copy.split - slow.copy.at);
    expect(fast.insert).toEqual(slow.insert);
    // What verify recomputes: RFC 8785 of the stored form.
    expect(event.text()).toBe(referenceCanonicalize(parsed));
    expect(event.toJSON()).toEqual(parsed);
    expect(event.data).toEqual(parsed.data);
  });
  return true;
};

describe('events taken as written', () => {
  it('takes a batch of proxy events as written and stores what the general path stores', () => {
    const payload = batch([0, 1, 2].map((index) => JSON.stringify(executed({}, index))));
    expect(expectSameAsGeneralPath(payload)).toBe(true);
    const [first] = readWrittenEvents(payload)!;
    expect(first!.maskedValues).toBe(3);
    expect(first!.resource).toBe('db');
    expect(first!.extJson).toBe('{"datacontenttype":"application/json","sessionseq":3,"specversion":"1.0"}');
  });

  it('takes one event that is not in a batch', () => {
    expect(expectSameAsGeneralPath(Buffer.from(JSON.stringify(executed()), 'utf8'))).toBe(true);
  });

  it("reads a message's own bytes, not a copy of them, from a Uint8Array at an offset as from a Buffer", () => {
    const json = batch([0, 1].map((index) => JSON.stringify(executed({}, index))));
    // As a received NATS message is: a view into a larger buffer, not a Buffer.
    const received = new Uint8Array(json.length + 10);
    received.set(json, 7);
    const message = received.subarray(7, 7 + json.length);
    const events = readWrittenEvents(message)!;
    expect(events).toHaveLength(2);
    expect(events[1]!.payload.buffer).toBe(received.buffer);
    expect(events[1]!.text()).toBe(JSON.stringify(executed({}, 1)));
    expect(readWrittenEvents(json)![0]!.payload).toBe(json);
  });

  it('takes strings with escapes, non-ASCII, U+2028 and backslashes as written, the data column escaped for COPY', () => {
    const texts = ['é € 😀 דּ', 'quote" back\\slash tab\t nl\n', '\u0001\u001f\u007f\b\f\r', '\u2028\u2029', 'a literal \\u0000 is no NUL', '</script>'];
    for (const text of texts) {
      const payload = batch([JSON.stringify(executed({ command: text, reason: text, resource: text, decision: text as never }))]);
      expect(expectSameAsGeneralPath(payload)).toBe(true);
    }
  });

  it('leaves to the general path what the store rewrites or JSON.stringify writes otherwise', () => {
    const json = JSON.stringify(executed());
    const refused = [
      JSON.stringify(executed({ command: 'nul \u0000 here' })),
      JSON.stringify(executed({ command: '\ud800 lone' })),
      JSON.stringify(executed({ command: 'trail \udfff' })),
      json.replace('"durationMs":0.41', '"durationMs":1e21'),
      json.replace('"durationMs":0.41', '"durationMs":-0'),
      json.replace('"durationMs":0.41', '"durationMs":0.410'),
      json.replace('"durationMs":0.41', '"durationMs":4.1E-1'),
      json.replace('"command":"SELECT 1"', '"command":"SELECT \\u0031"'),
      json.replace('"command":"SELECT 1"', '"command":"SELECT\\/1"'),
      json.replace('"command":"SELECT 1"', '"command":"\\u001F"'),
      json.replace('"command":"SELECT 1"', '"command":"\\u000a"'),
      json.replace('"command":"SELECT 1"', '"command":"\\ud83d\\ude00"'),
      json.replace('"action":"read","command"', '"command":"x","action":"read","command"'),
      json.replace('"action":"read"', '"action":"read","action":"write"'),
      json.replace('"datacontenttype"', '"__proto__":{"x":1},"datacontenttype"'),
      json.replace('"action":"read"', '"__proto__":1,"action":"read"'),
      json.replace('"maskedCounts":{"email":2,"phone":1}', '"maskedCounts":{"phone":1,"email":2}'),
      json.replace('"maskedCounts":{"email":2,"phone":1}', '"maskedCounts":{"10":1,"9":2}'),
      json.replace('"time":"2026-01-02T03:04:05.678Z"', '"time":"2026-01-02T03:04:05.678+00:00"'),
      json.replace('"subject":"7a6b5c4d-3e2f-1a0b-9c8d-7e6f5a4b3c2d"', '"subject":""'),
      json.replace('{"data":{', '{"data":null,"x":{'),
      json.replace('{"data"', '{"aaa":1,"data"'),
      json.replace('"action":"read"', '"action": "read"'),
      json.replace('"action":"read"', '"a\\u0063tion":"read"'),
      json.replace('"action":"read"', '"actión":"read"'),
    ];
    for (const text of refused) {
      expect(JSON.parse(text)).toBeDefined();
      expect(readWrittenEvents(batch([text]))).toBeUndefined();
      expect(readWrittenEvents(batch([json, text]))).toBeUndefined();
    }
  });

  it('leaves to the general path a text the store indexes that may be longer than a btree entry takes', () => {
    const fits = 'x'.repeat(2046);
    const long = 'x'.repeat(2047);
    const base = JSON.parse(JSON.stringify(executed())) as Record<string, unknown>;
    const data = base.data as Record<string, unknown>;
    const variants = (text: string) => [
      { ...base, id: text },
      { ...base, subject: text },
      { ...base, data: { ...data, commandId: text } },
      { ...base, data: { ...data, approvalId: text } },
      { ...base, data: { ...data, subject: { sub: text } } },
    ];
    for (const event of variants(fits)) expect(expectSameAsGeneralPath(batch([referenceCanonicalize(event)!]))).toBe(true);
    for (const event of variants(long)) expect(readWrittenEvents(batch([referenceCanonicalize(event)!]))).toBeUndefined();
    // Not indexed: as long as it likes.
    expect(expectSameAsGeneralPath(batch([referenceCanonicalize({ ...base, data: { ...data, resource: long, decision: long } })!]))).toBe(true);
  });

  it('refuses bytes that are not well-formed UTF-8 (TextDecoder would store U+FFFD)', () => {
    const json = JSON.stringify(executed({ command: 'é' }));
    const [head, tail] = json.split('é') as [string, string];
    for (const bad of [[0xc3], [0xed, 0xa0, 0x80], [0xc0, 0xaf], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0xff], [0x80]]) {
      const payload = Buffer.concat([Buffer.from(`[${head}`), Buffer.from(bad), Buffer.from(`${tail}]`)]);
      expect(readWrittenEvents(payload)).toBeUndefined();
    }
    expect(readWrittenEvents(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), batch([json])]))).toBeUndefined();
  });

  it('finds each event where it ends whatever its strings hold, and refuses a message that is not one batch', () => {
    const tricky = JSON.stringify(executed({ command: '},{"data":{}}]', reason: '"],[' }));
    expect(expectSameAsGeneralPath(batch([tricky, tricky.replace('e9f0', 'e9f1')]))).toBe(true);
    const json = JSON.stringify(executed());
    for (const text of [`[${json}][${json}]`, `[${json},]`, `[${json}`, `[${json}]x`, `[${json}] `, `[,${json}]`, '[]', '', `[${json.slice(0, -1)}]`, `${json}${json}`, `[[${json}]]`]) {
      expect(readWrittenEvents(Buffer.from(text, 'utf8'))).toBeUndefined();
    }
  });

  it('reads the derived columns as the store does whatever data holds', () => {
    const shapes: unknown[] = [
      { resource: 7, commandId: null, decision: ['x'], subject: { sub: 'alice' }, maskedCounts: { a: 1, b: 'x', c: 2 } },
      { subject: ['sub'], result: [1, 2], maskedCounts: { a: 5 } },
      { approvalId: 'a1', result: { maskedCounts: [1, 2, 'x', 3] }, maskedCounts: { a: 5 } },
      { result: null, maskedCounts: [4, { n: 1 }, 5] },
      { result: 'text', maskedCounts: 'many' },
      { result: { maskedCounts: { a: 2147483647, b: 5 } } },
      { subject: { sub: { deep: 1 }, tub: 'x' } },
      'a string payload',
      [1, 'two', { three: 3 }],
      42,
      true,
    ];
    for (const data of shapes) {
      const event = { ...JSON.parse(JSON.stringify(executed())), data } as Record<string, unknown>;
      expect(expectSameAsGeneralPath(batch([referenceCanonicalize(event)!]))).toBe(true);
    }
    const fractional = { ...JSON.parse(JSON.stringify(executed())), data: { maskedCounts: { a: 0.5, b: 0.7 } } } as Record<string, unknown>;
    expect(readWrittenEvents(batch([referenceCanonicalize(fractional)!]))).toBeUndefined();
  });

  it('copies text columns and ext members from the bytes, whatever their length, characters and escapes', () => {
    const base = JSON.parse(JSON.stringify(executed())) as Record<string, unknown>;
    const sized = (length: number, fill: string): string => fill.repeat(Math.ceil(length / fill.length)).slice(0, length);
    const texts = [
      ...[62, 63, 64, 65, 66, 127, 128, 129].map((length) => sized(length, 'x')),
      ...[62, 63, 64, 65].map((length) => `${sized(length, 'é')}\\`),
      sized(65, 'a"b'),
      'é € 😀',
      'tab\there',
      'back\\slash',
      'nl\nx',
    ];
    for (const text of texts) {
      const events = [
        { ...base, id: text, subject: text },
        { ...base, source: text, type: text },
        { ...base, type: `sluice.${text}.v1` },
        { ...base, xnote: text, zz: [text, { k: text }] },
        { ...base, data: { ...(base.data as object), resource: text, commandId: text, approvalId: text, decision: text, subject: { sub: text } } },
      ];
      for (const event of events) expect(expectSameAsGeneralPath(batch([referenceCanonicalize(event)!]))).toBe(true);
    }
    const bare = { id: 'e1', source: 'proxy', type: 'sluice.command.executed.v1', subject: 's1', time: '2026-01-02T03:04:05.678Z', data: { resource: null, decision: 3 } };
    expect(expectSameAsGeneralPath(batch([referenceCanonicalize(bare)!]))).toBe(true);
    expect(readWrittenEvents(batch([referenceCanonicalize(bare)!]))![0]!.extJson).toBe('{}');
  });

  it('stores the same rows as the general path whatever the text columns and ext members hold', () => {
    const awkward = fc.constantFrom('a', '\\', '"', 'é', '\t', '\u2028', '😀', '\u0000', '\ud800');
    const text = fc.oneof(fc.string({ unit: 'binary', maxLength: 80 }), fc.string({ unit: 'grapheme-ascii', minLength: 60, maxLength: 70 }), fc.string({ unit: awkward, maxLength: 70 }));
    // Texts without an escape, so that the columns are copied from the bytes more often than not.
    const plain = fc.string({ unit: fc.constantFrom('a', '-', ' ', 'é', '€', '😀', '\u2028'), minLength: 1, maxLength: 70 });
    const column = fc.oneof({ arbitrary: plain, weight: 4 }, { arbitrary: text, weight: 1 });
    const key = fc.stringMatching(/^[a-z][a-zA-Z0-9_]{0,6}$/).filter((name) => !['id', 'source', 'type', 'subject', 'time', 'data'].includes(name));
    let copied = 0;
    fc.assert(
      fc.property(
        fc.record({ id: column, source: column, type: fc.oneof(column, column.map((kind) => `sluice.${kind}.v1`)), subject: column }),
        fc.record({ resource: fc.oneof(column, fc.constant(null), fc.integer()), commandId: column, approvalId: column, decision: column, subject: fc.record({ sub: column }) }, { requiredKeys: [] }),
        fc.dictionary(key, fc.oneof(text, fc.jsonValue({ maxDepth: 2 })), { maxKeys: 4 }),
        (columns, data, ext) => {
          const event = { ...ext, ...columns, time: '2026-01-02T03:04:05.678Z', data: { ...data, action: 'read' } };
          const payload = batch([JSON.stringify(executed()), referenceCanonicalize(event)!]);
          if (expectSameAsGeneralPath(payload) && !readWrittenEvents(payload)![1]!.columnEscaped) copied += 1;
        },
      ),
      { numRuns: 400 },
    );
    expect(copied).toBeGreaterThan(20);
  });

  it('stores the same rows as the general path for any JSON an event may hold', () => {
    const json = fc.jsonValue({ maxDepth: 3, stringUnit: 'binary' });
    const awkwardNumber = fc.constantFrom(0, -0, 1e21, 1e-7, 5e-324, 1.7976931348623157e308, 2 ** 53, 0.1, -1, 123456789012345680000);
    let taken = 0;
    fc.assert(
      fc.property(
        fc.dictionary(fc.string({ unit: 'binary' }), fc.oneof(json, awkwardNumber), { maxKeys: 4 }),
        fc.oneof(json, fc.dictionary(fc.string({ unit: 'binary' }), fc.oneof(json, awkwardNumber), { maxKeys: 6 })),
        fc.string({ unit: 'binary' }),
        fc.boolean(),
        (extra, data, subject, sorted) => {
          const event = { ...extra, ...JSON.parse(JSON.stringify(executed())), subject: subject || 's', data } as Record<string, unknown>;
          const text = sorted ? referenceCanonicalize(event)! : JSON.stringify(event);
          if (expectSameAsGeneralPath(batch([JSON.stringify(executed()), text]))) taken += 1;
        },
      ),
      { numRuns: 500 },
    );
    // Both paths are exercised. About 7% of these events are taken (30,000 runs: 2,126), so 500
    // runs take ~35 ± 6: a bound of 25 failed one run in about thirty; 5 is over five deviations off.
    expect(taken).toBeGreaterThan(5);
    expect(taken).toBeLessThan(475);
  });

  it('takes every canonical event whose strings, keys and numbers need nothing rewritten', () => {
    const safeText = fc.string({ unit: 'grapheme' }).filter((text) => !text.includes('\u0000'));
    const key = fc.stringMatching(/^[a-zA-Z_][a-zA-Z0-9_]{0,8}$/).filter((text) => text !== '__proto__');
    const value = fc.letrec((tie) => ({
      value: fc.oneof({ depthSize: 'small' }, safeText, fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }).filter((n) => !Object.is(n, -0)), fc.boolean(), fc.constant(null), tie('array'), tie('object')),
      array: fc.array(tie('value'), { maxLength: 3 }),
      object: fc.dictionary(key, tie('value'), { maxKeys: 3 }),
    })).value;
    fc.assert(
      fc.property(fc.dictionary(key, value, { maxKeys: 5 }), safeText, (data, command) => {
        const event = { ...JSON.parse(JSON.stringify(executed({ command }))), data: { ...data, command } } as Record<string, unknown>;
        expect(expectSameAsGeneralPath(batch([referenceCanonicalize(event)!]))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('never takes bytes as written that the general path would store otherwise, whatever a byte is changed to', () => {
    const payload = batch([JSON.stringify(executed({ command: 'é\\"x' })), JSON.stringify(executed({}, 1))]);
    let taken = 0;
    fc.assert(
      fc.property(fc.nat(payload.length - 1), fc.integer({ min: 0, max: 255 }), fc.constantFrom('replace', 'insert', 'delete'), (at, byte, how) => {
        const changed =
          how === 'replace'
            ? Buffer.concat([payload.subarray(0, at), Buffer.from([byte]), payload.subarray(at + 1)])
            : how === 'insert'
              ? Buffer.concat([payload.subarray(0, at), Buffer.from([byte]), payload.subarray(at)])
              : Buffer.concat([payload.subarray(0, at), payload.subarray(at + 1)]);
        if (expectSameAsGeneralPath(changed)) taken += 1;
      }),
      { numRuns: 2000 },
    );
    // Changes inside strings and numbers keep some messages canonical: those are held to the general path.
    expect(taken).toBeGreaterThan(100);
  });
});
