import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { copyField, copyJsonField } from './copy-in.js';

describe('COPY text fields', () => {
  it('writes a JSON text as copyField does whatever the JSON holds', () => {
    fc.assert(
      fc.property(fc.jsonValue({ stringUnit: 'binary' }), fc.string({ unit: 'binary' }), (value, text) => {
        for (const json of [JSON.stringify(value), JSON.stringify(text), JSON.stringify({ [text]: [text, value] })]) expect(copyJsonField(json)).toBe(copyField(json));
      }),
      { numRuns: 500 },
    );
    expect(copyJsonField('{"a":"back\\\\slash \\n \\t"}')).toBe(copyField('{"a":"back\\\\slash \\n \\t"}'));
    expect(copyJsonField(null)).toBe('\\N');
  });
});
