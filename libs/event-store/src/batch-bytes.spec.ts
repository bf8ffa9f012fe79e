import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BatchBytes, HASH_TEXT_BYTES } from './batch-bytes.js';
import { chainHashOf, GENESIS_HASH } from './chain.js';
import { copyJsonField } from './copy-in.js';

const hexHash = fc.stringMatching(/^[0-9a-f]{64}$/);

describe('batch bytes', () => {
  it('hashes a text written after its room as chainHashOf hashes the text, whatever the text and prev_hash', () => {
    fc.assert(
      fc.property(
        fc.array(fc.string({ unit: 'grapheme' }), { minLength: 1, maxLength: 8 }),
        fc.oneof(hexHash, fc.constant(GENESIS_HASH), fc.string({ unit: 'grapheme', minLength: 60, maxLength: 70 })),
        (texts, prevHash) => {
          // A small first buffer, so that growing it (and keeping what was written) is exercised.
          const bytes = new BatchBytes(16);
          const spans = texts.map((text) => {
            const at = bytes.append(text, HASH_TEXT_BYTES);
            const end = bytes.length;
            bytes.append('\tafter\t');
            return { text, at, end };
          });
          for (const { text, at, end } of spans) expect(bytes.chainHash(prevHash, at, end)).toBe(chainHashOf(prevHash, text));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('copies the UTF-8 of what was written', () => {
    const bytes = new BatchBytes(8);
    bytes.append('ignored');
    const start = bytes.length;
    bytes.append('π → ü, 🙂 and a tab\t');
    const target = Buffer.alloc(bytes.length - start);
    expect(bytes.copyTo(target, 0, start, bytes.length)).toBe(target.length);
    expect(target.toString('utf8')).toBe('π → ü, 🙂 and a tab\t');
  });

  it('copies bytes of another buffer after their room, and a JSON text as copyJsonField writes it, whatever the text', () => {
    fc.assert(
      fc.property(fc.jsonValue({ stringUnit: 'binary', maxDepth: 2 }), fc.string({ unit: 'grapheme' }), (value, before) => {
        const json = JSON.stringify(value);
        const source = Buffer.from(`${before}${json}`, 'utf8');
        const start = Buffer.byteLength(before, 'utf8');
        const bytes = new BatchBytes(16);
        bytes.append('x');
        const at = bytes.appendBytes(source, start, source.length, HASH_TEXT_BYTES);
        const split = bytes.length;
        bytes.appendJsonField(source, start, source.length, json.includes('\\'));
        const written = Buffer.alloc(bytes.length - at);
        bytes.copyTo(written, 0, at, bytes.length);
        expect(written.subarray(HASH_TEXT_BYTES, split - at).toString('utf8')).toBe(json);
        expect(written.subarray(split - at).toString('utf8')).toBe(copyJsonField(json));
      }),
      { numRuns: 300 },
    );
  });
});
