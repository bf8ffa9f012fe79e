import { Buffer } from 'node:buffer';
import { COMMAND_LIMITS, CR, DEFAULT_LIMITS, LF, RespType, STREAMED, type RespLimits } from './codes.js';
import { ProtocolMalformedError } from './errors.js';

/** `command`: what a client sends (multibulk arrays of bulk strings, or inline lines); `reply`: any RESP2/RESP3 value. */
export type FrameMode = 'command' | 'reply';

const INCOMPLETE = -1;

/**
 * Finds the end of the CRLF-terminated line starting at `from`: the index of its CR, or
 * INCOMPLETE. A bare CR not followed by LF is malformed.
 */
export const findLineEnd = (buf: Buffer, from: number, end: number, maxLine: number): number => {
  const cr = buf.indexOf(CR, from);
  if (cr === -1 || cr >= end) {
    if (end - from > maxLine) throw new ProtocolMalformedError('line too long');
    return INCOMPLETE;
  }
  if (cr - from > maxLine) throw new ProtocolMalformedError('line too long');
  if (cr + 1 >= end) return INCOMPLETE;
  if (buf[cr + 1] !== LF) throw new ProtocolMalformedError('CR not followed by LF');
  return cr;
};

/** Parses a signed decimal integer in [from, to); throws unless it is one (at most 18 digits, never allocating). */
export const parseInteger = (buf: Buffer, from: number, to: number): number => {
  let i = from;
  let negative = false;
  if (buf[i] === 0x2d) {
    negative = true;
    i++;
  } else if (buf[i] === 0x2b) i++;
  if (i >= to || to - i > 18) throw new ProtocolMalformedError('bad integer');
  let value = 0;
  for (; i < to; i++) {
    const digit = buf[i]! - 0x30;
    if (digit < 0 || digit > 9) throw new ProtocolMalformedError('bad integer');
    value = value * 10 + digit;
  }
  return negative ? -value : value;
};

const isBlankLine = (buf: Buffer, from: number, to: number): boolean =>
  to - from === 1 || (to - from === 2 && buf[from] === CR);

const isBigIntText = (buf: Buffer, from: number, to: number): boolean => {
  let i = from;
  if (buf[i] === 0x2d || buf[i] === 0x2b) i++;
  if (i >= to) return false;
  for (; i < to; i++) {
    const c = buf[i]!;
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
};

/**
 * Splits a byte stream into whole RESP frames. Each `push` returns the frames completed so
 * far; partial bytes stay buffered. Scanning resumes where it stopped, so a large reply
 * arriving in many chunks is scanned once, and the buffer grows by doubling, so feeding it
 * byte by byte stays linear. Returned frames are never overwritten later.
 *
 * A frame is one top-level value; an attribute (`|`) and the value it annotates form one frame.
 * RESP3 streamed strings/aggregates (`$?`, `*?`) are refused: Redis never sends them.
 * @see https://redis.io/docs/latest/develop/reference/protocol-spec/
 */
export class RespFramer {
  private readonly limits: RespLimits;
  private buf: Buffer = Buffer.alloc(0);
  private len = 0;
  /** Where scanning of the current (incomplete) frame resumes. */
  private pos = 0;
  /** Values still expected at each open aggregate level. */
  private stack: number[] = [];
  /** Bytes needed before rescanning is worth it (a bulk body known to be incomplete). */
  private needed = 0;

  constructor(
    readonly mode: FrameMode,
    limits?: Partial<RespLimits>,
  ) {
    this.limits = { ...(mode === 'command' ? COMMAND_LIMITS : DEFAULT_LIMITS), ...limits };
  }

  /** Bytes buffered towards the next frame. */
  get buffered(): number {
    return this.len;
  }

  push(chunk: Uint8Array): Buffer[] {
    const frames: Buffer[] = [];
    if (chunk.length === 0) return frames;
    let data: Buffer;
    const fromChunk = this.len === 0;
    if (fromChunk) {
      // Zero-copy fast path: frames are slices of the caller's chunk.
      data = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
    } else {
      this.append(chunk);
      if (this.len < this.needed) return frames;
      // A view of the filled part, so searches never run into the spare capacity.
      data = this.buf.subarray(0, this.len);
    }
    const end = data.length;
    let start = 0;
    for (;;) {
      if (start >= end) break;
      const frameEnd = this.scan(data, start, end);
      if (frameEnd === INCOMPLETE) break;
      // A blank inline line is no command (Redis skips it too).
      if (!(this.mode === 'command' && isBlankLine(data, start, frameEnd))) frames.push(data.subarray(start, frameEnd));
      start = frameEnd;
      this.pos = start;
      this.stack = [];
      this.needed = 0;
    }
    // Keep the leftover in a fresh buffer: the old one now backs frames handed out.
    const leftover = end - start;
    if (leftover === 0) {
      this.buf = Buffer.alloc(0);
      this.len = 0;
      this.pos = 0;
    } else if (start > 0 || fromChunk) {
      const fresh = Buffer.allocUnsafe(Math.max(leftover * 2, 256));
      data.copy(fresh, 0, start, end);
      this.buf = fresh;
      this.len = leftover;
      this.pos -= start;
      if (this.needed > 0) this.needed -= start;
    }
    return frames;
  }

  private append(chunk: Uint8Array): void {
    const required = this.len + chunk.length;
    if (required > this.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(required, this.buf.length * 2));
      this.buf.copy(grown, 0, 0, this.len);
      this.buf = grown;
    }
    this.buf.set(chunk, this.len);
    this.len = required;
  }

  /** Returns the end of the frame starting at `start`, or INCOMPLETE (state kept for resuming). */
  private scan(buf: Buffer, start: number, end: number): number {
    if (this.pos < start) this.pos = start;
    if (this.mode === 'command' && this.pos === start && this.stack.length === 0 && buf[start] !== RespType.Array) {
      return this.scanInline(buf, start, end);
    }
    const { maxLineLength, maxBulkLength, maxAggregateLength, maxDepth } = this.limits;
    let pos = this.pos;
    const stack = this.stack;
    for (;;) {
      if (pos >= end) {
        this.pos = pos;
        return INCOMPLETE;
      }
      const type = buf[pos]!;
      if (this.mode === 'command' && stack.length > 0 && type !== RespType.BulkString) {
        throw new ProtocolMalformedError('command arguments must be bulk strings');
      }
      const cr = findLineEnd(buf, pos + 1, end, maxLineLength);
      if (cr === INCOMPLETE) {
        this.pos = pos;
        return INCOMPLETE;
      }
      const lineEnd = cr + 2;
      let aggregate = 0;
      switch (type) {
        case RespType.SimpleString:
        case RespType.SimpleError:
        case RespType.Double:
          pos = lineEnd;
          break;
        case RespType.Integer:
          parseInteger(buf, pos + 1, cr);
          pos = lineEnd;
          break;
        case RespType.BigNumber:
          if (!isBigIntText(buf, pos + 1, cr)) throw new ProtocolMalformedError('bad big number');
          pos = lineEnd;
          break;
        case RespType.Null:
          if (cr !== pos + 1) throw new ProtocolMalformedError('bad null');
          pos = lineEnd;
          break;
        case RespType.Boolean:
          if (cr !== pos + 2 || (buf[pos + 1] !== 0x74 && buf[pos + 1] !== 0x66)) throw new ProtocolMalformedError('bad boolean');
          pos = lineEnd;
          break;
        case RespType.BulkString:
        case RespType.BulkError:
        case RespType.VerbatimString: {
          if (buf[pos + 1] === STREAMED) throw new ProtocolMalformedError('streamed strings are not supported');
          const length = parseInteger(buf, pos + 1, cr);
          if (length === -1 && type === RespType.BulkString && this.mode === 'reply') {
            pos = lineEnd;
            break;
          }
          if (length < 0 || length > maxBulkLength) throw new ProtocolMalformedError('bad bulk length');
          if (type === RespType.VerbatimString && length < 4) throw new ProtocolMalformedError('bad verbatim string');
          const bodyEnd = lineEnd + length;
          if (bodyEnd + 2 > end) {
            this.pos = pos;
            this.needed = bodyEnd + 2;
            return INCOMPLETE;
          }
          if (buf[bodyEnd] !== CR || buf[bodyEnd + 1] !== LF) throw new ProtocolMalformedError('bulk string not terminated by CRLF');
          pos = bodyEnd + 2;
          break;
        }
        case RespType.Array:
        case RespType.Set:
        case RespType.Push:
        case RespType.Map:
        case RespType.Attribute: {
          if (buf[pos + 1] === STREAMED) throw new ProtocolMalformedError('streamed aggregates are not supported');
          const count = parseInteger(buf, pos + 1, cr);
          // `*-1` is RESP2's null array; in a command Redis ignores it like `*0`.
          if (count === -1 && type === RespType.Array) {
            pos = lineEnd;
            break;
          }
          if (count < 0 || count > maxAggregateLength) throw new ProtocolMalformedError('bad aggregate length');
          if (stack.length >= maxDepth) throw new ProtocolMalformedError('nested too deeply');
          if (this.mode === 'command' && type !== RespType.Array) throw new ProtocolMalformedError('commands are arrays');
          // An attribute is followed by the value it annotates: count it as one more element.
          aggregate = type === RespType.Map ? count * 2 : type === RespType.Attribute ? count * 2 + 1 : count;
          pos = lineEnd;
          break;
        }
        default:
          throw new ProtocolMalformedError(`unknown RESP type byte 0x${type.toString(16)}`);
      }
      if (aggregate > 0) {
        stack.push(aggregate);
        continue;
      }
      // One value completed: close every aggregate it completes.
      for (;;) {
        const top = stack.length - 1;
        if (top < 0) {
          this.pos = pos;
          return pos;
        }
        const remaining = stack[top]! - 1;
        if (remaining > 0) {
          stack[top] = remaining;
          break;
        }
        stack.pop();
      }
    }
  }

  /**
   * An inline command is one line ended by LF (CR optional), as telnet sends it.
   * @see https://redis.io/docs/latest/develop/reference/protocol-spec/#inline-commands
   */
  private scanInline(buf: Buffer, start: number, end: number): number {
    const lf = buf.indexOf(LF, start);
    if (lf === -1 || lf >= end) {
      if (end - start > this.limits.maxInlineLength) throw new ProtocolMalformedError('inline command too long');
      return INCOMPLETE;
    }
    if (lf - start > this.limits.maxInlineLength) throw new ProtocolMalformedError('inline command too long');
    return lf + 1;
  }
}
