import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { Outbox } from './outbox.js';

const written = (out: Outbox): Buffer[] => {
  const sink = new PassThrough();
  const chunks: Buffer[] = [];
  sink.on('data', (chunk: Buffer) => chunks.push(chunk));
  out.flush(sink);
  return chunks;
};

describe('Outbox', () => {
  it('sends adjacent views of one chunk back as that one slice, without copying', () => {
    const chunk = Buffer.from('abcdefgh');
    const out = new Outbox();
    out.push(chunk.subarray(0, 3));
    out.push(chunk.subarray(3, 8));
    const [sent] = written(out);
    expect(sent!.toString()).toBe('abcdefgh');
    expect(sent!.buffer).toBe(chunk.buffer);
  });

  it('joins what is not adjacent into one write in the order pushed', () => {
    const chunk = Buffer.from('abcdefgh');
    const out = new Outbox();
    out.push(chunk.subarray(0, 2));
    out.push(Buffer.from('XY'));
    out.push(chunk.subarray(4, 8));
    const sent = written(out);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.toString()).toBe('abXYefgh');
    expect(out.empty).toBe(true);
  });
});
