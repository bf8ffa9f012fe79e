import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { commandFixtures, replyFixtures } from './fixtures/redis-cli-7.js';
import { decodeCommand, decodeReply } from './decode.js';
import { encodeBulk, encodeCommand, encodeError, encodeNull, encodeValue } from './encode.js';
import { ProtocolMalformedError } from './errors.js';
import { RespFramer, type FrameMode } from './frames.js';

const hex = (text: string): Buffer => Buffer.from(text, 'hex');

/** Feeds `bytes` to a fresh framer cut at the given offsets and returns the frames. */
const frameAt = (mode: FrameMode, bytes: Buffer, cuts: readonly number[]): Buffer[] => {
  const framer = new RespFramer(mode);
  const frames: Buffer[] = [];
  let from = 0;
  for (const cut of [...cuts, bytes.length]) {
    frames.push(...framer.push(bytes.subarray(from, cut)));
    from = cut;
  }
  expect(framer.buffered).toBe(0);
  return frames;
};

const everySplit = (mode: FrameMode, bytes: Buffer, expected: Buffer[]): void => {
  expect(frameAt(mode, bytes, [])).toEqual(expected);
  expect(frameAt(mode, bytes, Array.from({ length: bytes.length }, (_, i) => i))).toEqual(expected);
  for (let cut = 1; cut < bytes.length; cut++) expect(frameAt(mode, bytes, [cut])).toEqual(expected);
};

const expectMalformed = (fn: () => unknown): void => {
  expect(fn).toThrow(ProtocolMalformedError);
  try {
    fn();
  } catch (error) {
    expect((error as ProtocolMalformedError).code).toBe('ERR_PROTOCOL_MALFORMED');
  }
};

describe('RespFramer and decodeCommand on commands captured from redis-cli 7', () => {
  for (const [name, text] of Object.entries(commandFixtures)) {
    it(`frames "${name}" whole, byte by byte and split at every offset`, () => {
      const bytes = hex(text);
      everySplit('command', bytes, [bytes]);
      // Re-encoding the decoded arguments gives back the exact bytes.
      expect(encodeCommand(decodeCommand(bytes))).toEqual(bytes);
    });
  }

  it('frames a pipeline of every captured command split at every offset', () => {
    const parts = Object.values(commandFixtures).map(hex);
    everySplit('command', Buffer.concat(parts), parts);
  });

  it('decodes the name and arguments of a multibulk command', () => {
    const args = decodeCommand(hex(commandFixtures['hset with two fields']!)).map(String);
    expect(args[0]).toBe('hset');
    expect(args.slice(2)).toEqual(['name', 'Ann', 'email', 'ann@example.com']);
  });

  it('splits inline commands like Redis, with quotes and escapes, and skips blank lines', () => {
    const bytes = Buffer.from('PING\r\n\r\nSET k "a b\\x41\\n" \'it\\\'s\'\nGET k\n');
    const frames = frameAt('command', bytes, []);
    expect(frames.map((frame) => decodeCommand(frame).map(String))).toEqual([['PING'], ['SET', 'k', 'a bA\n', "it's"], ['GET', 'k']]);
  });

  it('refuses unbalanced quotes in an inline command', () => {
    expectMalformed(() => decodeCommand(Buffer.from('SET k "abc\r\n')));
  });

  it('honours quotes opened inside an argument and ends unquoted arguments only where Redis does', () => {
    const split = (line: string) => decodeCommand(Buffer.from(line, 'latin1')).map((arg) => arg.toString('latin1'));
    expect(split('GET s"ecret:1"\r\n')).toEqual(['GET', 'secret:1']);
    expect(split("GET se'cr'\n")).toEqual(['GET', 'secr']);
    // \v and \f separate arguments only between them, never inside one (sdssplitargs).
    expect(split('GET a\vb \f c\r\n')).toEqual(['GET', 'a\vb', 'c']);
    expect(split('GET a\rb\n')).toEqual(['GET', 'a', 'b']);
    expect(split('ECHO ""\n')).toEqual(['ECHO', '']);
    expectMalformed(() => decodeCommand(Buffer.from('GET "a"b\r\n')));
    expectMalformed(() => decodeCommand(Buffer.from("GET x'a\r\n")));
    expectMalformed(() => decodeCommand(Buffer.from('GET a\0b\r\n')));
  });

  it('refuses a command whose arguments are not bulk strings', () => {
    expectMalformed(() => new RespFramer('command').push(Buffer.from('*2\r\n$3\r\nGET\r\n:1\r\n')));
  });
});

describe('RespFramer, decodeReply and encodeValue on replies captured from Redis 7', () => {
  for (const [name, text] of Object.entries(replyFixtures)) {
    it(`frames "${name}" at every split and re-encodes it byte for byte`, () => {
      const bytes = hex(text);
      everySplit('reply', bytes, [bytes]);
      expect(encodeValue(decodeReply(bytes))).toEqual(bytes);
    });
  }

  it('frames every captured reply back to back split at every offset', () => {
    const parts = Object.values(replyFixtures).map(hex);
    everySplit('reply', Buffer.concat(parts), parts);
  });

  it('decodes a RESP3 map, a nested array with a double and the null forms', () => {
    const map = decodeReply(hex(replyFixtures['hgetall RESP3 map']!));
    expect(map.type).toBe('map');
    if (map.type !== 'map') return;
    expect(map.entries.map(([k, v]) => [String(k.type === 'bulk' && k.value), String(v.type === 'bulk' && v.value)])).toEqual([
      ['name', 'Ann'],
      ['email', 'ann@example.com'],
    ]);
    expect(decodeReply(hex(replyFixtures['zrange RESP3 nested with double']!))).toEqual({
      type: 'array',
      items: [{ type: 'array', items: [{ type: 'bulk', value: Buffer.from('m') }, { type: 'double', value: 1.5, raw: '1.5' }] }],
    });
    expect(decodeReply(hex(replyFixtures['RESP2 null bulk']!))).toEqual({ type: 'null', form: '$' });
    expect(decodeReply(hex(replyFixtures['RESP3 null']!))).toEqual({ type: 'null', form: '_' });
    const info = decodeReply(hex(replyFixtures['info as verbatim string']!));
    expect(info.type === 'verbatim' && info.format).toBe('txt');
  });

  it('decodes the RESP3 types of the specification examples and re-encodes them exactly', () => {
    const samples = [
      '#t\r\n',
      '#f\r\n',
      '(3492890328409238509324850943850943825024385\r\n',
      ',-inf\r\n',
      ',1.23e-5\r\n',
      '!21\r\nSYNTAX invalid syntax\r\n',
      '=15\r\ntxt:Some string\r\n',
      '|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n*2\r\n:2039123\r\n:9543892\r\n',
      '*-1\r\n',
      '*3\r\n:1\r\n$-1\r\n*0\r\n',
      '%1\r\n+first\r\n~2\r\n:1\r\n#t\r\n',
    ];
    for (const sample of samples) {
      const bytes = Buffer.from(sample, 'latin1');
      everySplit('reply', bytes, [bytes]);
      expect(encodeValue(decodeReply(bytes))).toEqual(bytes);
    }
    expect(decodeReply(Buffer.from('#t\r\n'))).toEqual({ type: 'boolean', value: true });
    const attributed = decodeReply(Buffer.from(samples[7]!, 'latin1'));
    expect(attributed.type === 'attribute' && attributed.value.type).toBe('array');
  });

  it('encodes errors on one line, bulk strings and the null of each protocol', () => {
    expect(encodeError('NOPERM denied\r\nby rule x').toString()).toBe('-NOPERM denied by rule x\r\n');
    expect(encodeBulk('héllo').toString()).toBe('$6\r\nhéllo\r\n');
    expect(encodeNull(2).toString()).toBe('$-1\r\n');
    expect(encodeNull(3).toString()).toBe('_\r\n');
  });
});

describe('RespFramer bounds', () => {
  it('refuses an absurd bulk length without waiting for or allocating its bytes', () => {
    expectMalformed(() => new RespFramer('reply').push(Buffer.from('$99999999999\r\n')));
    expectMalformed(() => new RespFramer('command').push(Buffer.from('*1\r\n$600000000\r\n')));
  });

  it('refuses an absurd aggregate length and a command with too many arguments', () => {
    expectMalformed(() => new RespFramer('reply').push(Buffer.from('*99999999999\r\n')));
    expectMalformed(() => new RespFramer('command').push(Buffer.from('*2000000\r\n')));
    expectMalformed(() => decodeReply(Buffer.from('*2000000\r\n:1\r\n')));
  });

  it('refuses nesting deeper than the limit', () => {
    expectMalformed(() => new RespFramer('reply').push(Buffer.from('*1\r\n'.repeat(200))));
    expectMalformed(() => new RespFramer('reply', { maxDepth: 4 }).push(Buffer.from('*1\r\n'.repeat(5) + ':1\r\n')));
    expectMalformed(() => decodeReply(Buffer.from('*1\r\n'.repeat(200) + ':1\r\n')));
  });

  it('refuses a line longer than the limit, an unknown type byte and streamed RESP3 strings', () => {
    expectMalformed(() => new RespFramer('reply', { maxLineLength: 16 }).push(Buffer.from('+' + 'a'.repeat(40))));
    expectMalformed(() => new RespFramer('command').push(Buffer.from('x'.repeat(70 * 1024))));
    expectMalformed(() => new RespFramer('reply').push(Buffer.from('@1\r\n')));
    expectMalformed(() => new RespFramer('reply').push(Buffer.from('$?\r\n;4\r\nHell\r\n;0\r\n')));
    expectMalformed(() => new RespFramer('reply').push(Buffer.from('$3\r\nabcXY')));
  });

  it('frames a 4 MiB bulk reply fed in 1 KiB chunks, resuming instead of rescanning', () => {
    const body = Buffer.alloc(4 * 1024 * 1024, 0x61);
    const bytes = Buffer.concat([Buffer.from(`$${body.length}\r\n`), body, Buffer.from('\r\n:1\r\n')]);
    const framer = new RespFramer('reply');
    const frames: Buffer[] = [];
    const started = performance.now();
    for (let i = 0; i < bytes.length; i += 1024) frames.push(...framer.push(bytes.subarray(i, i + 1024)));
    expect(frames.map((frame) => frame.length)).toEqual([bytes.length - 4, 4]);
    expect(performance.now() - started).toBeLessThan(2_000);
  });

  it('frames a reply of 100,000 elements fed in small chunks in linear time', () => {
    const bytes = Buffer.from('*100000\r\n' + ':1\r\n'.repeat(100_000));
    const framer = new RespFramer('reply');
    const frames: Buffer[] = [];
    const started = performance.now();
    for (let i = 0; i < bytes.length; i += 100) frames.push(...framer.push(bytes.subarray(i, i + 100)));
    expect(frames).toHaveLength(1);
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});

describe('property: arbitrary bytes', () => {
  const onlyMalformed = (fn: () => unknown): void => {
    try {
      fn();
    } catch (error) {
      if (!(error instanceof ProtocolMalformedError)) throw error;
    }
  };

  it('never crash the framer or the decoders with anything but ProtocolMalformedError', () => {
    const alphabet = fc.constantFrom(...'*$+-:_#,(!=%|~>\r\n0123456789-?tfab '.split(''));
    const bytes = fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.array(alphabet, { maxLength: 64 }).map((chars) => new Uint8Array(Buffer.from(chars.join('')))));
    fc.assert(
      fc.property(bytes, fc.integer({ min: 1, max: 8 }), (data, step) => {
        for (const mode of ['command', 'reply'] as const) {
          onlyMalformed(() => {
            const framer = new RespFramer(mode);
            for (let i = 0; i < data.length; i += step) {
              for (const frame of framer.push(data.subarray(i, i + step))) {
                if (mode === 'reply') encodeValue(decodeReply(frame));
                else decodeCommand(frame);
              }
            }
          });
        }
        onlyMalformed(() => decodeReply(Buffer.from(data)));
        onlyMalformed(() => decodeCommand(Buffer.from(data)));
      }),
      { numRuns: 3000 },
    );
  });

  it('frames that the framer accepts always decode', () => {
    const value = fc.letrec((tie) => ({
      value: fc.oneof(
        { depthSize: 'small' },
        fc.string().map((s) => `+${s.replace(/[\r\n]/g, '')}\r\n`),
        fc.integer().map((n) => `:${n}\r\n`),
        fc.string().map((s) => `$${Buffer.byteLength(s)}\r\n${s}\r\n`),
        fc.constant('_\r\n'),
        fc.array(tie('value'), { maxLength: 4 }).map((items) => `*${items.length}\r\n${items.join('')}`),
        fc.array(fc.tuple(tie('value'), tie('value')), { maxLength: 3 }).map((pairs) => `%${pairs.length}\r\n${pairs.flat().join('')}`),
      ),
    })).value;
    fc.assert(
      fc.property(fc.array(value, { minLength: 1, maxLength: 4 }), fc.integer({ min: 1, max: 16 }), (values, step) => {
        const bytes = Buffer.from(values.join(''));
        const framer = new RespFramer('reply');
        const frames: Buffer[] = [];
        for (let i = 0; i < bytes.length; i += step) frames.push(...framer.push(bytes.subarray(i, i + step)));
        expect(frames.map(String)).toEqual(values);
        for (const frame of frames) expect(encodeValue(decodeReply(frame))).toEqual(frame);
      }),
      { numRuns: 500 },
    );
  });
});
