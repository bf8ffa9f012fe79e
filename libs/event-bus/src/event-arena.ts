import type { JsonSink } from '@sluice/contracts';

/** Bytes of one arena chunk: some hundreds of events; a larger event gets a chunk of its own size. */
const CHUNK_BYTES = 256 * 1024;

/** Where a queued event's UTF-8 JSON sits: `chunk[start, end)`, followed by a comma. */
export interface EventBytes {
  readonly chunk: Buffer;
  readonly start: number;
  readonly end: number;
}

/**
 * The publisher's queued events as UTF-8, written once, one after another, each followed by a
 * comma: events queued in a row are then one run of bytes, copied into a batch at once. Off the
 * V8 heap, so a queued event (alive until JetStream acknowledges it) is nothing the garbage
 * collector copies. A chunk is never written twice: the last event queued in it lets it go.
 */
export class EventArena implements JsonSink {
  buffer: Buffer = Buffer.allocUnsafeSlow(CHUNK_BYTES);
  offset = 0;
  /** Where the event being written began. */
  #start = 0;

  /** An event begins at the current offset. */
  begin(): void {
    this.#start = this.offset;
  }

  reserve(bytes: number): void {
    if (this.offset + bytes <= this.buffer.length) return;
    const written = this.offset - this.#start;
    const next = Buffer.allocUnsafeSlow(Math.max(CHUNK_BYTES, 2 * (written + bytes)));
    this.buffer.copy(next, 0, this.#start, this.offset);
    this.buffer = next;
    this.#start = 0;
    this.offset = written;
  }

  /** Bytes written of the event being written. */
  get written(): number {
    return this.offset - this.#start;
  }

  /** Drops what was written of the event being written. */
  discard(): void {
    this.offset = this.#start;
  }

  /** Ends the event being written: its bytes, and a comma after them. */
  commit(): EventBytes {
    const length = this.offset - this.#start;
    this.reserve(1);
    const start = this.#start;
    this.buffer[this.offset++] = 0x2c; // ,
    this.#start = this.offset;
    return { chunk: this.buffer, start, end: start + length };
  }

  /** A whole text (an event JSON.stringify wrote) as the next event. */
  writeText(json: string): EventBytes {
    this.begin();
    // A UTF-8 byte count is at most three per UTF-16 unit.
    this.reserve(json.length * 3);
    this.offset += this.buffer.write(json, this.offset, 'utf8');
    return this.commit();
  }
}
