import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { compileMasking } from '@sluice/masking-engine';
import { maskJsonText, readUpTo } from './json-body.js';

const chunks = (...parts: string[]): Buffer[] => parts.map((part) => Buffer.from(part));

const restOf = async (stream: Readable): Promise<string> => {
  let text = '';
  for await (const chunk of stream as AsyncIterable<Buffer>) text += chunk.toString();
  return text;
};

describe('readUpTo', () => {
  it('reads a body to its end when it fits', async () => {
    const read = await readUpTo(Readable.from(chunks('{"a":', ' 1}')), 100);
    expect(read).toEqual({ bytes: Buffer.from('{"a": 1}'), complete: true });
  });

  it('stops past the limit and leaves the rest for an iterator, nothing lost or doubled', async () => {
    const stream = Readable.from(chunks('aaaa', 'bbbb', 'cccc', 'dddd'));
    const read = await readUpTo(stream, 6);
    expect(read.complete).toBe(false);
    expect(read.bytes.toString()).toBe('aaaabbbb');
    expect(await restOf(stream)).toBe('ccccdddd');
  });

  it('rejects on a stream error and on a close before the end', async () => {
    const failing = new Readable({ read() {} });
    const failed = readUpTo(failing, 100);
    failing.push(Buffer.from('{"a":'));
    failing.destroy(new Error('target reset'));
    await expect(failed).rejects.toThrow('target reset');

    const cut = new Readable({ read() {} });
    const closed = readUpTo(cut, 100);
    cut.push(Buffer.from('{"a":'));
    cut.destroy();
    await expect(closed).rejects.toThrow('before it was complete');
  });
});

describe('maskJsonText', () => {
  const masker = compileMasking(
    { defaultRegion: 'US', detectors: [], profiles: { pii: { detectors: ['email', 'phone'], strategy: 'partial', columns: [{ match: '(?i)ssn', strategy: 'redact' }] } } },
    { hashKey: 'test-key' },
  ).profile('pii')!;
  const masked = (document: unknown) => JSON.parse(maskJsonText(Buffer.from(JSON.stringify(document)), masker, {}).toString()) as unknown;

  it('masks a covered member that follows unchanged ones, keeping every member and its order', () => {
    const document = { id: 7, tags: ['a', 'b'], nested: { n: 1 }, ssn: '123-45-6789', after: 'plain' };
    const result = masked(document);
    expect(result).toEqual({ ...document, ssn: '[REDACTED]' });
    expect(Object.keys(result as object)).toEqual(Object.keys(document));
  });

  it('masks a covered member inside JSON held in a string, in an array after unchanged items', () => {
    const inner = JSON.stringify({ ssn: '123-45-6789', ok: 1 });
    const result = masked({ items: ['x', { k: 'y' }, inner, 'z'] }) as { items: unknown[] };
    expect(result.items.slice(0, 2)).toEqual(['x', { k: 'y' }]);
    expect(JSON.parse(result.items[2] as string)).toEqual({ ssn: '[REDACTED]', ok: 1 });
    expect(result.items[3]).toBe('z');
  });

  it('counts each covered member once, beside what the detectors find', () => {
    const counts = {};
    maskJsonText(Buffer.from(JSON.stringify({ ssn: '123-45-6789', rows: [{ ssn: { last4: '6789' } }], payload: JSON.stringify({ ssn: '1' }), contact: 'ada@example.com' })), masker, counts);
    expect(counts).toEqual({ 'column:(?i)ssn': 3, email: 1 });
  });

  it('sends a document with nothing to mask byte for byte', () => {
    const body = Buffer.from('{"id": 12345678901234567890, "name": "Ada"}');
    expect(maskJsonText(body, masker, {})).toBe(body);
  });
});
