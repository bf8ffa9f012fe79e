import { describe, expect, it } from 'vitest';
import { decodeFrontend } from './decode.js';
import { encodeFlush, encodeParse } from './encode.js';
import { FrameReader } from './frames.js';

const decodeAll = (bytes: Buffer) => new FrameReader({ phase: 'typed' }).push(bytes).map((frame) => decodeFrontend(frame));

describe('encoding frontend messages the proxy sends on its own', () => {
  it('writes a Parse without parameter types and a Flush that decode back', () => {
    expect(decodeAll(Buffer.concat([encodeParse('s1', "select 'é'::int4"), encodeFlush()]))).toEqual([
      { type: 'Parse', name: 's1', text: "select 'é'::int4", paramTypes: [] },
      { type: 'Flush' },
    ]);
  });
});
