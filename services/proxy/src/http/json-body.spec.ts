import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { readUpTo } from './json-body.js';

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
