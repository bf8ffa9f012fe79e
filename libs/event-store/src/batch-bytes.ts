import * as crypto from 'node:crypto';

/** Width of a chain hash (sha256 hex): the room kept before each hashed text for its prev_hash. */
export const HASH_TEXT_BYTES = 64;

/** Up to this many bytes appendBytes copies in a loop of its own rather than with Buffer#copy. */
const SHORT_COPY_BYTES = 64;

const sha256Hex: (bytes: Uint8Array) => string =
  typeof crypto.hash === 'function'
    ? (bytes) => crypto.hash('sha256', bytes, 'hex')
    : (bytes) => crypto.createHash('sha256').update(bytes).digest('hex');

/**
 * The texts a prepared batch keeps until it is written, as UTF-8 in one buffer outside the
 * JavaScript heap. A batch is prepared while the one before it is written and lives until its own
 * COPY is sent: at thousands of events a second that outlives a scavenge or two, and kept as
 * strings (and the concatenations they were built of) every byte of it was copied by the garbage
 * collector, then promoted and marked. Here the collector sees one buffer. The bytes are also
 * what the hash and the CopyData messages take, so nothing is encoded twice.
 */
export class BatchBytes {
  #buffer: Buffer;
  #length = 0;

  constructor(expectedBytes: number) {
    this.#buffer = Buffer.allocUnsafe(Math.max(expectedBytes, 4096));
  }

  /** Bytes written so far. */
  get length(): number {
    return this.#length;
  }

  /**
   * Writes `text` as UTF-8 after `room` bytes left unwritten; returns where the room begins (the
   * text begins `room` bytes later).
   */
  append(text: string, room = 0): number {
    // At most three UTF-8 bytes per UTF-16 unit: room to spare without counting them first.
    this.#ensure(room + text.length * 3);
    const start = this.#length;
    this.#length = start + room + this.#buffer.write(text, start + room, 'utf8');
    return start;
  }

  /**
   * sha256 hex of `prevHash` followed by the text written after the room at `at` (up to `end`),
   * both as UTF-8: chainHashOf(prevHash, text). A prev_hash as the store writes them (64 ASCII
   * characters) is written into the room and hashed with the text in one call.
   */
  chainHash(prevHash: string, at: number, end: number): string {
    const buffer = this.#buffer;
    // As many UTF-8 bytes as characters: ASCII only, one byte each, as latin1 writes them.
    if (prevHash.length === HASH_TEXT_BYTES && Buffer.byteLength(prevHash, 'utf8') === HASH_TEXT_BYTES) {
      buffer.write(prevHash, at, HASH_TEXT_BYTES, 'latin1');
      return sha256Hex(buffer.subarray(at, end));
    }
    // Any other text (not one the store wrote): its own UTF-8, then the text's.
    return crypto.createHash('sha256').update(prevHash, 'utf8').update(buffer.subarray(at + HASH_TEXT_BYTES, end)).digest('hex');
  }

  /**
   * Appends bytes [start, end) of `source` after `room` bytes left unwritten; returns where the
   * room begins, as append does.
   */
  appendBytes(source: Buffer, start: number, end: number, room = 0): number {
    this.#ensure(room + end - start);
    const at = this.#length;
    const buffer = this.#buffer;
    let to = at + room;
    // A row's short fields one by one: a loop costs less than a call into the runtime (and the
    // view Buffer#copy makes of the source) for each.
    if (end - start <= SHORT_COPY_BYTES) for (let index = start; index < end; index += 1) buffer[to++] = source[index]!;
    else to += source.copy(buffer, to, start, end);
    this.#length = to;
    return at;
  }

  /** Appends one byte. */
  appendByte(byte: number): void {
    this.#ensure(1);
    this.#buffer[this.#length++] = byte;
  }

  /**
   * Appends the JSON text in bytes [start, end) of `source` as one field in COPY's text format
   * (copyJsonField's bytes): JSON holds no raw control character, so only a backslash is doubled.
   * `hasBackslash` false (the caller knows there is none) makes it a plain copy.
   */
  appendJsonField(source: Buffer, start: number, end: number, hasBackslash: boolean): void {
    if (!hasBackslash) {
      this.appendBytes(source, start, end);
      return;
    }
    // At most twice the bytes: room first, then one pass.
    this.#ensure(2 * (end - start));
    const buffer = this.#buffer;
    let at = this.#length;
    for (let index = start; index < end; index += 1) {
      const byte = source[index]!;
      buffer[at++] = byte;
      if (byte === 0x5c) buffer[at++] = byte;
    }
    this.#length = at;
  }

  /** Leaves `room` bytes unwritten (for overwrite, later); returns where they begin. */
  skip(room: number): number {
    this.#ensure(room);
    const at = this.#length;
    this.#length = at + room;
    return at;
  }

  /** Writes an ASCII `text` over bytes written or skipped before, from `at`; returns where it ends. */
  overwrite(at: number, text: string): number {
    if (at < 0 || at + text.length > this.#length) throw new RangeError(`overwriting bytes ${at}-${at + text.length} of ${this.#length}`);
    return at + this.#buffer.write(text, at, text.length, 'latin1');
  }

  /** Writes one byte over one written or skipped before. */
  overwriteByte(at: number, byte: number): void {
    if (at < 0 || at >= this.#length) throw new RangeError(`overwriting byte ${at} of ${this.#length}`);
    this.#buffer[at] = byte;
  }

  /**
   * Bytes [start, end) as a Buffer that shares their memory (nothing copied): only for bytes that
   * are done, as appending may move them all to a larger buffer.
   */
  view(start: number, end: number): Buffer {
    if (start < 0 || end > this.#length || start > end) throw new RangeError(`viewing bytes ${start}-${end} of ${this.#length}`);
    return this.#buffer.subarray(start, end);
  }

  /** Copies bytes [start, end) into `target` at `targetStart`; returns how many. */
  copyTo(target: Buffer, targetStart: number, start: number, end: number): number {
    return this.#buffer.copy(target, targetStart, start, end);
  }

  #ensure(bytes: number): void {
    if (this.#length + bytes <= this.#buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.#buffer.length * 2, this.#length + bytes));
    this.#buffer.copy(grown, 0, 0, this.#length);
    this.#buffer = grown;
  }
}
