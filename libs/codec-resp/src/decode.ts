import { Buffer } from 'node:buffer';
import { CR, DEFAULT_LIMITS, LF, RespType, type RespLimits } from './codes.js';
import { ProtocolMalformedError } from './errors.js';
import { findLineEnd, parseInteger } from './frames.js';
import type { RespValue } from './messages.js';

interface Cursor {
  pos: number;
}

/**
 * Decodes one whole reply frame (as RespFramer yields it in `reply` mode) into a typed tree.
 * Throws ProtocolMalformedError on anything that is not exactly one RESP value.
 * @see https://redis.io/docs/latest/develop/reference/protocol-spec/#resp-protocol-description
 */
export const decodeReply = (frame: Buffer, limits: RespLimits = DEFAULT_LIMITS): RespValue => {
  const cursor: Cursor = { pos: 0 };
  const value = decodeValue(frame, cursor, 0, limits);
  if (cursor.pos !== frame.length) throw new ProtocolMalformedError('trailing bytes after the reply');
  return value;
};

const line = (buf: Buffer, cursor: Cursor, limits: RespLimits): [number, number] => {
  const from = cursor.pos + 1;
  const cr = findLineEnd(buf, from, buf.length, limits.maxLineLength);
  if (cr < 0) throw new ProtocolMalformedError('truncated line');
  cursor.pos = cr + 2;
  return [from, cr];
};

const blob = (buf: Buffer, cursor: Cursor, limits: RespLimits, length: number): Buffer => {
  if (length < 0 || length > limits.maxBulkLength) throw new ProtocolMalformedError('bad bulk length');
  const start = cursor.pos;
  const end = start + length;
  if (end + 2 > buf.length) throw new ProtocolMalformedError('truncated bulk string');
  if (buf[end] !== CR || buf[end + 1] !== LF) throw new ProtocolMalformedError('bulk string not terminated by CRLF');
  cursor.pos = end + 2;
  return buf.subarray(start, end);
};

const parseDouble = (raw: string): number => {
  const lower = raw.toLowerCase();
  if (lower === 'inf' || lower === '+inf') return Infinity;
  if (lower === '-inf') return -Infinity;
  if (lower === 'nan' || lower === '-nan') return NaN;
  const value = Number(raw);
  if (raw === '' || Number.isNaN(value)) throw new ProtocolMalformedError('bad double');
  return value;
};

const decodeValue = (buf: Buffer, cursor: Cursor, depth: number, limits: RespLimits): RespValue => {
  if (cursor.pos >= buf.length) throw new ProtocolMalformedError('truncated reply');
  const type = buf[cursor.pos]!;
  switch (type) {
    case RespType.SimpleString: {
      const [from, to] = line(buf, cursor, limits);
      return { type: 'simple', value: buf.toString('utf8', from, to) };
    }
    case RespType.SimpleError: {
      const [from, to] = line(buf, cursor, limits);
      return { type: 'error', value: buf.toString('utf8', from, to) };
    }
    case RespType.Integer: {
      const [from, to] = line(buf, cursor, limits);
      parseInteger(buf, from, to);
      return { type: 'integer', value: BigInt(buf.toString('latin1', from, to)) };
    }
    case RespType.BigNumber: {
      const [from, to] = line(buf, cursor, limits);
      const text = buf.toString('latin1', from, to);
      if (!/^[+-]?\d+$/.test(text)) throw new ProtocolMalformedError('bad big number');
      return { type: 'bigNumber', value: BigInt(text) };
    }
    case RespType.Double: {
      const [from, to] = line(buf, cursor, limits);
      const raw = buf.toString('latin1', from, to);
      return { type: 'double', value: parseDouble(raw), raw };
    }
    case RespType.Boolean: {
      const [from, to] = line(buf, cursor, limits);
      if (to !== from + 1 || (buf[from] !== 0x74 && buf[from] !== 0x66)) throw new ProtocolMalformedError('bad boolean');
      return { type: 'boolean', value: buf[from] === 0x74 };
    }
    case RespType.Null: {
      const [from, to] = line(buf, cursor, limits);
      if (to !== from) throw new ProtocolMalformedError('bad null');
      return { type: 'null', form: '_' };
    }
    case RespType.BulkString:
    case RespType.BulkError:
    case RespType.VerbatimString: {
      const [from, to] = line(buf, cursor, limits);
      const length = parseInteger(buf, from, to);
      if (length === -1 && type === RespType.BulkString) return { type: 'null', form: '$' };
      const value = blob(buf, cursor, limits, length);
      if (type === RespType.BulkString) return { type: 'bulk', value };
      if (type === RespType.BulkError) return { type: 'blobError', value };
      if (value.length < 4 || value[3] !== 0x3a) throw new ProtocolMalformedError('bad verbatim string');
      return { type: 'verbatim', format: value.toString('latin1', 0, 3), value: value.subarray(4) };
    }
    case RespType.Array:
    case RespType.Set:
    case RespType.Push:
    case RespType.Map:
    case RespType.Attribute: {
      const [from, to] = line(buf, cursor, limits);
      const count = parseInteger(buf, from, to);
      if (count === -1 && type === RespType.Array) return { type: 'null', form: '*' };
      if (count < 0 || count > limits.maxAggregateLength) throw new ProtocolMalformedError('bad aggregate length');
      if (depth >= limits.maxDepth) throw new ProtocolMalformedError('nested too deeply');
      // Each element takes at least 3 bytes: refuse counts the frame cannot hold before allocating.
      const perElement = type === RespType.Map || type === RespType.Attribute ? 6 : 3;
      if (count * perElement > buf.length - cursor.pos) throw new ProtocolMalformedError('truncated aggregate');
      if (type === RespType.Map || type === RespType.Attribute) {
        const entries: (readonly [RespValue, RespValue])[] = [];
        for (let i = 0; i < count; i++) {
          const key = decodeValue(buf, cursor, depth + 1, limits);
          entries.push([key, decodeValue(buf, cursor, depth + 1, limits)]);
        }
        if (type === RespType.Map) return { type: 'map', entries };
        return { type: 'attribute', attributes: entries, value: decodeValue(buf, cursor, depth, limits) };
      }
      const items: RespValue[] = [];
      for (let i = 0; i < count; i++) items.push(decodeValue(buf, cursor, depth + 1, limits));
      return { type: type === RespType.Array ? 'array' : type === RespType.Set ? 'set' : 'push', items };
    }
    default:
      throw new ProtocolMalformedError(`unknown RESP type byte 0x${type.toString(16)}`);
  }
};

/**
 * Decodes one command frame (as RespFramer yields it in `command` mode) into its name and
 * arguments. Multibulk frames are arrays of bulk strings; anything else is an inline command,
 * split like Redis' sdssplitargs (double quotes with escapes, single quotes).
 * @see https://redis.io/docs/latest/develop/reference/protocol-spec/#sending-commands-to-a-redis-server
 */
export const decodeCommand = (frame: Buffer): Buffer[] => {
  if (frame[0] === RespType.Array) {
    const cursor: Cursor = { pos: 0 };
    const [from, to] = line(frame, cursor, DEFAULT_LIMITS);
    const count = parseInteger(frame, from, to);
    if (count <= 0) return [];
    if (count * 4 > frame.length) throw new ProtocolMalformedError('truncated command');
    const args: Buffer[] = [];
    for (let i = 0; i < count; i++) {
      if (frame[cursor.pos] !== RespType.BulkString) throw new ProtocolMalformedError('command arguments must be bulk strings');
      const [lf, lt] = line(frame, cursor, DEFAULT_LIMITS);
      args.push(blob(frame, cursor, DEFAULT_LIMITS, parseInteger(frame, lf, lt)));
    }
    if (cursor.pos !== frame.length) throw new ProtocolMalformedError('trailing bytes after the command');
    return args;
  }
  return splitInline(frame);
};

/** C's isspace() in the C locale: where Redis skips blanks between arguments. */
const isSpace = (c: number): boolean => c === 0x20 || (c >= 0x09 && c <= 0x0d);
/** The bytes that end an unquoted argument in sdssplitargs (not \v or \f, which isspace also counts). */
const endsUnquoted = (c: number): boolean => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
const hexValue = (c: number): number =>
  c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : c >= 0x41 && c <= 0x46 ? c - 0x37 : -1;
const DOUBLE_QUOTE_ESCAPES: Readonly<Record<number, number>> = { 0x6e: 0x0a, 0x72: 0x0d, 0x74: 0x09, 0x62: 0x08, 0x61: 0x07 };

/**
 * The byte an escape at `i` inside a quoted argument stands for, and how many bytes it spans;
 * undefined when no escape starts there. Double quotes take `\xHH` and `\<c>` (n r t b a, or
 * the character itself); single quotes take only `\'`.
 */
const quotedEscape = (frame: Buffer, i: number, n: number, quote: number): { byte: number; length: number } | undefined => {
  if (frame[i] !== 0x5c || i + 1 >= n) return undefined;
  const next = frame[i + 1]!;
  if (quote === 0x27) return next === 0x27 ? { byte: 0x27, length: 2 } : undefined;
  if (next === 0x78 && i + 3 < n && hexValue(frame[i + 2]!) >= 0 && hexValue(frame[i + 3]!) >= 0) {
    return { byte: hexValue(frame[i + 2]!) * 16 + hexValue(frame[i + 3]!), length: 4 };
  }
  return { byte: DOUBLE_QUOTE_ESCAPES[next] ?? next, length: 2 };
};

/**
 * Splits an inline command line exactly as Redis does: processInlineBuffer cuts the line at its
 * LF (and one CR before it), then sdssplitargs splits it. Quotes may open anywhere inside an
 * argument (`s"ecret:1"` is `secret:1`), a closing quote must be followed by a blank or the end,
 * and an unbalanced quote is a protocol error. Redis reads the line as a C string, so a NUL byte
 * would make it stop early or wait for ever: such a line is refused.
 * @see https://github.com/redis/redis/blob/7.0/src/sds.c (sdssplitargs)
 * @see https://github.com/redis/redis/blob/7.0/src/networking.c (processInlineBuffer)
 */
export const splitInline = (frame: Buffer): Buffer[] => {
  let n = frame.length;
  if (n > 0 && frame[n - 1] === 0x0a) {
    n--;
    if (n > 0 && frame[n - 1] === 0x0d) n--;
  }
  if (frame.subarray(0, n).includes(0)) throw new ProtocolMalformedError('NUL byte in inline command');
  const unbalanced = () => new ProtocolMalformedError('unbalanced quotes in inline command');
  const args: Buffer[] = [];
  let i = 0;
  for (;;) {
    while (i < n && isSpace(frame[i]!)) i++;
    if (i >= n) return args;
    const out: number[] = [];
    let quote = 0;
    for (;;) {
      if (quote !== 0) {
        if (i >= n) throw unbalanced();
        const c = frame[i]!;
        const escape = quotedEscape(frame, i, n, quote);
        if (escape) {
          out.push(escape.byte);
          i += escape.length;
        } else if (c === quote) {
          if (i + 1 < n && !isSpace(frame[i + 1]!)) throw unbalanced();
          i++;
          break;
        } else {
          out.push(c);
          i++;
        }
      } else {
        if (i >= n) break;
        const c = frame[i]!;
        if (endsUnquoted(c)) {
          i++;
          break;
        }
        if (c === 0x22 || c === 0x27) quote = c;
        else out.push(c);
        i++;
      }
    }
    args.push(Buffer.from(out));
  }
};
