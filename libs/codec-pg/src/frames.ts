import { MAX_MESSAGE_LENGTH, MAX_STARTUP_PACKET_LENGTH, StartupCode } from './codes.js';
import { MessageTooLongError, ProtocolMalformedError } from './errors.js';
import type { Frame } from './messages.js';

/**
 * `startup`: untyped packets (int32 length, then payload) as a client sends them before its
 * StartupMessage; `typed`: code byte, int32 length, payload.
 */
export type FramePhase = 'startup' | 'typed';

const NOTHING_LEFT = Buffer.alloc(0);

export interface SplitResult {
  readonly frames: Frame[];
  /** Bytes of an incomplete frame, to prepend to the next chunk. */
  readonly leftover: Buffer;
  /** The phase the next frame is read in. */
  readonly phase: FramePhase;
}

/**
 * Splits a buffer into whole frames plus the leftover of an incomplete one. Frames are views into
 * `buffer` (no copy). In the startup phase, an SSLRequest or GSSENCRequest keeps the phase (the
 * client retries its startup after the answer); any other packet ends it.
 * Lengths are checked before anything is buffered for them: a claimed length beyond `maxLength`
 * raises ProtocolMalformedError at once, so a hostile length never makes anyone wait or allocate.
 * @see https://www.postgresql.org/docs/current/protocol-overview.html#PROTOCOL-MESSAGE-CONCEPTS
 */
export const splitFrames = (buffer: Buffer, phase: FramePhase, maxLength: number = MAX_MESSAGE_LENGTH): SplitResult => {
  const frames: Frame[] = [];
  let offset = 0;
  let current = phase;
  const size = buffer.length;
  while (true) {
    if (current === 'typed') {
      if (size - offset < 5) break;
      const length = buffer.readUInt32BE(offset + 1);
      if (length < 4) throw new ProtocolMalformedError(`message length ${length} out of range for code 0x${buffer[offset]!.toString(16)}`);
      if (length > maxLength) throw new MessageTooLongError(length, maxLength);
      const end = offset + 1 + length;
      if (end > size) break;
      frames.push({ code: buffer[offset]!, body: buffer.subarray(offset + 5, end), raw: buffer.subarray(offset, end) });
      offset = end;
    } else {
      if (size - offset < 4) break;
      const length = buffer.readUInt32BE(offset);
      if (length < 8 || length > MAX_STARTUP_PACKET_LENGTH) {
        throw new ProtocolMalformedError(`startup packet length ${length} out of range`);
      }
      const end = offset + length;
      if (end > size) break;
      const body = buffer.subarray(offset + 4, end);
      frames.push({ code: 0, body, raw: buffer.subarray(offset, end) });
      offset = end;
      const request = body.readUInt32BE(0);
      if (request !== StartupCode.SSLRequest && request !== StartupCode.GSSENCRequest) current = 'typed';
    }
  }
  // Most chunks end on a frame boundary: no new (empty) view for them.
  return { frames, leftover: offset === size ? NOTHING_LEFT : buffer.subarray(offset), phase: current };
};

export interface FrameReaderOptions {
  readonly phase?: FramePhase;
  /** Longest message accepted; defaults to PostgreSQL's own limit (1 GB). */
  readonly maxLength?: number;
}

/** Bytes needed before the first frame of `buffer` is whole (its header, when not yet known). */
const bytesNeeded = (buffer: Buffer, phase: FramePhase): number => {
  if (phase === 'typed') return buffer.length < 5 ? 5 : 1 + buffer.readUInt32BE(1);
  return buffer.length < 4 ? 4 : buffer.readUInt32BE(0);
};

/**
 * Chunks in, whole frames out: keeps the leftover between pushes. A frame that straddles chunks
 * is collected as a list and joined once, when it is complete (so a large row arriving in many
 * small chunks is copied once, not once per chunk).
 */
export class FrameReader {
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** Total bytes the pending frame needs (header first, then the whole frame). */
  #needed = 0;
  #phase: FramePhase;
  readonly #maxLength: number;

  constructor(options: FrameReaderOptions = {}) {
    this.#phase = options.phase ?? 'typed';
    this.#maxLength = options.maxLength ?? MAX_MESSAGE_LENGTH;
  }

  get phase(): FramePhase {
    return this.#phase;
  }

  /** Bytes held for an incomplete frame. */
  get buffered(): number {
    return this.#pendingBytes;
  }

  push(chunk: Buffer): Frame[] {
    let buffer = chunk;
    if (this.#pendingBytes > 0) {
      this.#pending.push(chunk);
      this.#pendingBytes += chunk.length;
      if (this.#pendingBytes < this.#needed) return [];
      buffer = Buffer.concat(this.#pending, this.#pendingBytes);
      this.#pending = [];
      this.#pendingBytes = 0;
    }
    const result = splitFrames(buffer, this.#phase, this.#maxLength);
    this.#phase = result.phase;
    if (result.leftover.length > 0) {
      this.#pending = [result.leftover];
      this.#pendingBytes = result.leftover.length;
      this.#needed = bytesNeeded(result.leftover, result.phase);
    }
    return result.frames;
  }

  /** Takes the buffered bytes out (handing the stream over to another reader). */
  takeLeftover(): Buffer {
    const rest = Buffer.concat(this.#pending, this.#pendingBytes);
    this.#pending = [];
    this.#pendingBytes = 0;
    return rest;
  }
}
