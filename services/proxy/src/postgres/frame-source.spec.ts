import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { encodeQuery, encodeSync, FrameReader } from '@sluice/codec-pg';
import { SocketFrames } from './frame-source.js';

describe('SocketFrames with a limit on what it holds', () => {
  it('fails once frames not yet taken and an incomplete one together pass the limit', async () => {
    const socket = new PassThrough();
    const frames = new SocketFrames(socket, new FrameReader({ phase: 'typed' }), 100);
    socket.write(Buffer.concat(Array.from({ length: 20 }, () => encodeSync())));
    await new Promise((resolve) => setImmediate(resolve));
    expect(frames.failure).toBeUndefined();
    // 20 Syncs (100 bytes) are held; the start of a long message takes it past the limit.
    socket.write(encodeQuery('x'.repeat(50)).subarray(0, 20));
    await new Promise((resolve) => setImmediate(resolve));
    expect(frames.failure?.message).toMatch(/more than 100 bytes/);
  });

  it('counts only what is held: frames taken as they come never reach the limit', async () => {
    const socket = new PassThrough();
    const frames = new SocketFrames(socket, new FrameReader({ phase: 'typed' }), 100);
    for (let i = 0; i < 50; i++) {
      socket.write(encodeQuery(`select ${i}`));
      expect((await frames.next()).code).toBe(0x51);
    }
    expect(frames.failure).toBeUndefined();
  });

  it('holds nothing more once the limit was passed, while nobody is reading (a token being checked)', async () => {
    const socket = new PassThrough();
    const frames = new SocketFrames(socket, new FrameReader({ phase: 'typed' }), 100);
    socket.write(encodeQuery('x'.repeat(200)));
    await new Promise((resolve) => setImmediate(resolve));
    expect(frames.failure?.message).toMatch(/more than 100 bytes/);
    for (let i = 0; i < 1000; i++) socket.write(encodeQuery(`select ${i}`));
    await new Promise((resolve) => setImmediate(resolve));
    expect(frames.reader.buffered).toBe(0);
    await expect(frames.next()).rejects.toThrow(/more than 100 bytes/);
    expect(frames.detach()).toEqual([]);
  });

  it('holds exactly the limit, and fails at one byte more', async () => {
    const socket = new PassThrough();
    const frames = new SocketFrames(socket, new FrameReader({ phase: 'typed' }), 100);
    // 19 Syncs (95 bytes) and 5 bytes of a Query's header: 100 held.
    socket.write(Buffer.concat([...Array.from({ length: 19 }, () => encodeSync()), encodeQuery('x'.repeat(10)).subarray(0, 5)]));
    await new Promise((resolve) => setImmediate(resolve));
    expect(frames.failure).toBeUndefined();
    socket.write(Buffer.from('x'));
    await new Promise((resolve) => setImmediate(resolve));
    expect(frames.failure?.message).toMatch(/more than 100 bytes/);
  });
});
