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

  it('sends the messages of one read as one write: runs of two chunks with a message of its own between', () => {
    const first = Buffer.from('abcdef');
    const second = Buffer.from('ghijkl');
    const out = new Outbox();
    for (const [start, end] of [[0, 2], [2, 4], [4, 6]] as const) out.push(first.subarray(start, end));
    out.push(Buffer.from('XY'));
    out.push(second.subarray(0, 3));
    out.push(second.subarray(3, 6));
    const sent = written(out);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.toString()).toBe('abcdefXYghijkl');
  });

  it('does not join a view to the one before the last flush', () => {
    const chunk = Buffer.from('abcdefgh');
    const out = new Outbox();
    out.push(chunk.subarray(0, 4));
    expect(written(out).map(String)).toEqual(['abcd']);
    expect(out.empty).toBe(true);
    out.push(chunk.subarray(4, 8));
    expect(written(out).map(String)).toEqual(['efgh']);
  });

  it('keeps a view that is adjacent in memory but not next in order apart', () => {
    const chunk = Buffer.from('abcdefgh');
    const out = new Outbox();
    out.push(chunk.subarray(4, 8));
    out.push(chunk.subarray(0, 4));
    expect(written(out).map(String)).toEqual(['efghabcd']);
  });
});
