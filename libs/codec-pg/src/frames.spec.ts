import { readFileSync, readdirSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeBackend, decodeFrontend, decodeStartup } from './decode.js';
import { ProtocolMalformedError } from './errors.js';
import { FrameReader, splitFrames, type FramePhase } from './frames.js';
import type { Frame } from './messages.js';

const dir = new URL('../../../test/fixtures/pg/', import.meta.url);
interface Fixture {
  readonly name: string;
  readonly client: Buffer;
  readonly server: Buffer;
}
const fixtures: Fixture[] = readdirSync(dir)
  .filter((f) => f.endsWith('.json'))
  .map((f) => {
    const json = JSON.parse(readFileSync(new URL(f, dir), 'utf8')) as { client: string; server: string };
    return { name: f.replace(/\.json$/, ''), client: Buffer.from(json.client, 'hex'), server: Buffer.from(json.server, 'hex') };
  });

/** The relay answered SSLRequest with a single 'N' byte, which is not a framed message. */
const serverMessages = (f: Fixture): Buffer => (f.server[0] === 0x4e ? f.server.subarray(1) : f.server);
const clientPhase = (f: Fixture): FramePhase => (f.name === 'password-messages' ? 'typed' : 'startup');

const readAll = (chunks: Buffer[], phase: FramePhase): string[] => {
  const reader = new FrameReader({ phase });
  const frames: Frame[] = [];
  for (const chunk of chunks) frames.push(...reader.push(chunk));
  expect(reader.buffered).toBe(0);
  return frames.map((f) => f.raw.toString('hex'));
};

const bytewise = (b: Buffer): Buffer[] => [...b].map((x) => Buffer.from([x]));

describe('FrameReader on captured fixtures', () => {
  it('finds fixtures captured from psql 15 and node-postgres 8', () => {
    expect(fixtures.map((f) => f.name)).toEqual(
      expect.arrayContaining(['psql15-simple-query', 'node-postgres8-extended', 'psql15-copy-out', 'password-messages']),
    );
  });

  for (const fixture of fixtures) {
    for (const [side, bytes, phase] of [
      ['client', fixture.client, clientPhase(fixture)],
      ['server', serverMessages(fixture), 'typed'],
    ] as const) {
      if (bytes.length === 0) continue;
      it(`yields the same ${side} frames of ${fixture.name} whether fed whole, byte by byte or split at any offset`, () => {
        const whole = readAll([bytes], phase);
        expect(whole.join('')).toBe(bytes.toString('hex'));
        expect(readAll(bytewise(bytes), phase)).toEqual(whole);
        for (let cut = 1; cut < bytes.length; cut++) {
          expect(readAll([bytes.subarray(0, cut), bytes.subarray(cut)], phase)).toEqual(whole);
        }
      });
    }
  }
});

describe('splitFrames', () => {
  it('returns the incomplete tail as leftover when a frame is cut short', () => {
    const query = Buffer.from('5100000009736f6d6500', 'hex');
    const result = splitFrames(Buffer.concat([query, query.subarray(0, 3)]), 'typed');
    expect(result.frames).toHaveLength(1);
    expect(result.leftover.toString('hex')).toBe(query.subarray(0, 3).toString('hex'));
  });

  it('stays in the startup phase after an SSLRequest and leaves it after a StartupMessage', () => {
    const ssl = Buffer.from('0000000804d2162f', 'hex');
    expect(splitFrames(ssl, 'startup').phase).toBe('startup');
    const startup = Buffer.from('0000000d000300007573657200', 'hex');
    expect(splitFrames(Buffer.concat([ssl, startup]), 'startup').phase).toBe('typed');
  });

  it('refuses a claimed length beyond the limit without waiting for the bytes', () => {
    const huge = Buffer.from([0x51, 0x7f, 0xff, 0xff, 0xff]);
    expect(() => splitFrames(huge, 'typed', 1 << 20)).toThrow(ProtocolMalformedError);
    const hugeStartup = Buffer.from([0x7f, 0xff, 0xff, 0xff]);
    expect(() => splitFrames(hugeStartup, 'startup')).toThrow(ProtocolMalformedError);
  });

  it('refuses lengths shorter than the length field itself', () => {
    expect(() => splitFrames(Buffer.from([0x51, 0, 0, 0, 3]), 'typed')).toThrow(ProtocolMalformedError);
    expect(() => splitFrames(Buffer.from([0, 0, 0, 4]), 'startup')).toThrow(ProtocolMalformedError);
  });
});

const onlyMalformed = (fn: () => void): void => {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ProtocolMalformedError);
    expect((error as ProtocolMalformedError).code).toBe('ERR_PROTOCOL_MALFORMED');
  }
};

describe('FrameReader with large frames', () => {
  it('assembles a frame split over many small chunks and keeps what follows it', () => {
    const payload = Buffer.alloc(1 << 20, 0x61);
    const big = Buffer.concat([Buffer.from([0x64, 0, 0, 0, 0]), payload]);
    big.writeUInt32BE(4 + payload.length, 1);
    const next = Buffer.from('5300000004', 'hex');
    const all = Buffer.concat([big, next]);
    const reader = new FrameReader({ phase: 'typed' });
    const frames: Frame[] = [];
    const started = performance.now();
    for (let offset = 0; offset < all.length; offset += 1000) frames.push(...reader.push(all.subarray(offset, offset + 1000)));
    expect(performance.now() - started).toBeLessThan(500);
    expect(frames.map((f) => [f.code, f.body.length])).toEqual([[0x64, payload.length], [0x53, 0]]);
    expect(reader.buffered).toBe(0);
  });

  it('hands its partial frame over with takeLeftover', () => {
    const reader = new FrameReader({ phase: 'typed' });
    expect(reader.push(Buffer.from('51000000', 'hex'))).toEqual([]);
    expect(reader.push(Buffer.from('09', 'hex'))).toEqual([]);
    expect(reader.takeLeftover().toString('hex')).toBe('5100000009');
    expect(reader.buffered).toBe(0);
  });
});

describe('arbitrary bytes', () => {
  it('never crash the framer or the decoders with anything but ProtocolMalformedError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.constantFrom<FramePhase>('startup', 'typed'), (bytes, phase) => {
        onlyMalformed(() => {
          const { frames } = splitFrames(Buffer.from(bytes), phase, 1 << 16);
          for (const frame of frames) {
            if (frame.code === 0) onlyMalformed(() => decodeStartup(frame));
            else {
              onlyMalformed(() => decodeFrontend(frame));
              onlyMalformed(() => decodeBackend(frame));
            }
          }
        });
      }),
      { numRuns: 3000 },
    );
  });

  it('never crash the decoders when a well-formed header frames random payloads', () => {
    const codes = [...'QPBDESHCXdcfpFR2KZT1IsntAvVNGWh'].map((c) => c.charCodeAt(0));
    fc.assert(
      fc.property(fc.constantFrom(...codes), fc.uint8Array({ maxLength: 64 }), (code, payload) => {
        const frame: Frame = { code, body: Buffer.from(payload), raw: Buffer.alloc(0) };
        onlyMalformed(() => decodeFrontend(frame));
        onlyMalformed(() => decodeBackend(frame));
        onlyMalformed(() => decodeStartup({ ...frame, code: 0 }));
      }),
      { numRuns: 5000 },
    );
  });
});
