import { createRequire } from 'node:module';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildEvent } from '@sluice/contracts';
import { canonicalJson, canonicalText } from './canonical-json.js';

// The package the store used before its own writer: stored chains were hashed with it.
const referenceCanonicalize = createRequire(import.meta.url)('canonicalize') as (input: unknown) => string | undefined;

describe('RFC 8785 writer', () => {
  it('writes exactly what the canonicalize package writes when given any JSON value, parsed or built', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 5 }), (value) => {
        const expected = referenceCanonicalize(value);
        expect(canonicalText(value)).toBe(expected);
        expect(canonicalText(JSON.parse(JSON.stringify(value)))).toBe(expected);
      }),
      { numRuns: 1000 },
    );
  });

  it('writes exactly what the package writes when member names outnumber and outgrow what it keeps written', () => {
    const manyNames = Object.fromEntries(Array.from({ length: 6000 }, (_, index) => [`name-${6000 - index}`, index]));
    const longNames = { ['\u00e9'.repeat(100)]: 1, ['"quoted\\name\u0001'.repeat(20)]: 2, a: 3 };
    for (const value of [manyNames, longNames, manyNames, longNames]) expect(canonicalJson(value)).toBe(referenceCanonicalize(value));
  });

  it('writes like the package when a value holds what JSON.stringify writes differently', () => {
    const awkward: unknown[] = [
      { '10': 'ten', '9': 'nine', a: 1, '': 0 },
      JSON.parse('{"b":1,"__proto__":{"x":1},"a":2}'),
      { date: new Date('2026-01-02T03:04:05.678Z'), z: 1 },
      { skip: undefined, keep: null, nested: [undefined, 1] },
      { toJSON: () => ({ b: 2, a: 1 }) },
      { b: Object.assign(Object.create(null) as object, { d: 1, c: 2 }), a: -0 },
      [1e21, 5e-324, 0.1, -1, 2 ** 53],
      'tab\there "quoted" \u2028 \ud800',
    ];
    for (const value of awkward) expect(canonicalText(value)).toBe(referenceCanonicalize(value));
    expect(() => canonicalJson({ a: Number.NaN })).toThrow();
    expect(() => canonicalJson({ a: [Number.POSITIVE_INFINITY] })).toThrow();
    expect(() => canonicalJson(undefined)).toThrow(TypeError);
  });

  // The lead "hash the exact bytes as published" holds only for canonical bytes: the bus
  // carries JSON.stringify of events as built, members in the order they were written, so the
  // store writes the JCS text itself. Should publishers ever build events in JCS order, this
  // test says so and the bytes could be hashed as they are.
  it('finds the bus JSON of a command event differs from its JCS text, so the store canonicalises it', () => {
    const event = buildEvent('command.executed', {
      id: 'e1',
      source: 'proxy',
      subject: 's1',
      time: new Date('2026-01-02T03:04:05.678Z'),
      sessionseq: 3,
      data: { commandId: 'c1', resource: 'db', protocol: 'postgres', command: 'SELECT 1', action: 'read', risk: 'low', decision: 'allow', rule: 'r', reason: 'ok', outcome: 'SELECT 1', ok: true, durationMs: 1 },
    });
    expect(JSON.stringify(event)).not.toBe(canonicalJson(event));
    expect(JSON.parse(JSON.stringify(event))).toEqual(JSON.parse(canonicalJson(event)));
  });
});
