import type { JsonSink } from '@sluice/contracts';

/** Bytes of one arena chunk: a few batches of events; a larger event gets a chunk of its own size. */
const CHUNK_BYTES = 1024 * 1024;
/** Chunks kept for reuse once every event in them is released. */
const MAX_SPARE_CHUNKS = 2;

const OPEN_BRACKET = 0x5b; // [
const COMMA = 0x2c; // ,
const CLOSE_BRACKET = 0x5d; // ]

/** Where a queued event's UTF-8 JSON sits: `chunk[start, end)`. */
export interface EventBytes {
  readonly chunk: Buffer;
  readonly start: number;
  readonly end: number;
}

/** A closed run of events as one message's payload: `[event,event,…]`, a view into a chunk. */
export interface Frame {
  readonly payload: Buffer;
  /** How many events it holds: the next ones queued, in order. */
  readonly events: number;
}

/**
 * The publisher's queued events as UTF-8, written once, one after another, already framed as
 * the batches they go out in: `[` before a batch's first event, `,` between events, `]` when the
 * batch is closed. A batch is then sent as a view of the bytes its events were written in, not
 * copied into a message of its own (a fresh buffer of hundreds of KB per batch, whose pages the
 * kernel had to map and zero, cost the proxy about as much as writing the events).
 *
 * Off the V8 heap, so a queued event (alive until JetStream acknowledges it) is nothing the
 * garbage collector copies. A batch never spans chunks: a chunk that fills up closes the open
 * batch and the event being written moves on. A chunk is reused once every event written in it
 * is released (`release`, when its batch is settled) and the arena has moved on from it.
 */
export class EventArena implements JsonSink {
  buffer: Buffer;
  offset = 0;
  /** Where the event being written began. */
  #start = 0;
  /** Where the separator before the event being written (`[` or `,`) is. */
  #separator = 0;
  /** Where the open batch's `[` is; -1 when no batch is open. */
  #frameStart = -1;
  #frameEvents = 0;
  /** Between begin and commit (or discard). */
  #writing = false;
  readonly #closed: Frame[] = [];
  readonly #chunkBytes: number;
  /** Events committed and not yet released, per chunk. */
  readonly #held = new Map<Buffer, number>();
  readonly #spare: Buffer[] = [];

  constructor(chunkBytes = CHUNK_BYTES) {
    this.#chunkBytes = chunkBytes;
    this.buffer = Buffer.allocUnsafeSlow(chunkBytes);
  }

  /** An event begins at the current offset, after its separator (opening a batch if none is open). */
  begin(): void {
    this.reserve(1);
    this.#writing = true;
    this.#separator = this.offset;
    if (this.#frameStart < 0) {
      this.#frameStart = this.offset;
      this.buffer[this.offset++] = OPEN_BRACKET;
    } else this.buffer[this.offset++] = COMMA;
    this.#start = this.offset;
  }

  reserve(bytes: number): void {
    // One byte is always left over: room for the `]` that closes the open batch.
    if (this.offset + bytes < this.buffer.length) return;
    const previous = this.buffer;
    if (!this.#writing) {
      if (this.#frameEvents > 0) this.#closeAt(this.offset);
      this.buffer = this.#chunk(Math.max(this.#chunkBytes, 2 * (bytes + 1)));
      this.offset = this.#start = this.#separator = 0;
      this.#recycle(previous);
      return;
    }
    // The open batch ends with the events committed in this chunk (its `]` where the event's
    // separator was); the event being written opens the next batch in the new chunk.
    const written = this.offset - this.#start;
    if (this.#frameEvents > 0) this.#closeAt(this.#separator);
    const next = this.#chunk(Math.max(this.#chunkBytes, 2 * (written + bytes + 2)));
    next[0] = OPEN_BRACKET;
    previous.copy(next, 1, this.#start, this.offset);
    this.buffer = next;
    this.#frameStart = 0;
    this.#separator = 0;
    this.#start = 1;
    this.offset = 1 + written;
    this.#recycle(previous);
  }

  /** Bytes written of the event being written. */
  get written(): number {
    return this.offset - this.#start;
  }

  /** Bytes the open batch would take if it were closed now (its brackets included); 0 when none is open. */
  get frameBytes(): number {
    return this.#frameStart < 0 ? 0 : this.offset - this.#frameStart + 1;
  }

  /** Events committed in the open batch. */
  get frameEvents(): number {
    return this.#frameEvents;
  }

  /** Whether a closed batch waits to be taken. */
  get hasClosed(): boolean {
    return this.#closed.length > 0;
  }

  /** Drops what was written of the event being written, its separator too. */
  discard(): void {
    this.#writing = false;
    this.offset = this.#separator;
    this.#start = this.offset;
    if (this.#frameEvents === 0) this.#frameStart = -1;
  }

  /** Ends the event being written (in the open batch): its bytes. */
  commit(): EventBytes {
    const bytes: EventBytes = { chunk: this.buffer, start: this.#start, end: this.offset };
    this.#writing = false;
    this.#frameEvents += 1;
    this.#held.set(this.buffer, (this.#held.get(this.buffer) ?? 0) + 1);
    this.#start = this.offset;
    return bytes;
  }

  /**
   * The event being written goes in a new batch: the open one is closed before it (when it holds
   * any event). Its separator becomes the `]`, and the event moves up a byte behind a `[`.
   */
  closeBeforeCurrent(): void {
    if (!this.#writing || this.#frameEvents === 0) return;
    this.reserve(1);
    // reserve may have moved the event to a new chunk, closing the batch there itself.
    if (this.#frameEvents === 0) return;
    this.#closeAt(this.#separator);
    this.buffer.copyWithin(this.#start + 1, this.#start, this.offset);
    this.buffer[this.#start] = OPEN_BRACKET;
    this.#frameStart = this.#separator = this.#start;
    this.#start += 1;
    this.offset += 1;
  }

  /** Closes the open batch (between events), if it holds any event. */
  closeFrame(): void {
    if (this.#writing || this.#frameEvents === 0) return;
    // The byte reserve always leaves over takes the `]`.
    this.#closeAt(this.offset);
    this.offset += 1;
    this.#start = this.#separator = this.offset;
  }

  /** The oldest closed batch, taken. */
  takeFrame(): Frame | undefined {
    return this.#closed.shift();
  }

  /** An event's bytes are no longer needed (its batch was settled): its chunk may be reused. */
  release(event: EventBytes): void {
    const held = this.#held.get(event.chunk);
    if (held === undefined) return;
    if (held > 1) this.#held.set(event.chunk, held - 1);
    else {
      this.#held.delete(event.chunk);
      this.#recycle(event.chunk);
    }
  }

  /** A whole text (an event JSON.stringify wrote) as the next event. */
  writeText(json: string): EventBytes {
    this.begin();
    // A UTF-8 byte count is at most three per UTF-16 unit.
    this.reserve(json.length * 3);
    this.offset += this.buffer.write(json, this.offset, 'utf8');
    return this.commit();
  }

  /** Closes the open batch with `]` at `at` (its end). */
  #closeAt(at: number): void {
    this.buffer[at] = CLOSE_BRACKET;
    this.#closed.push({ payload: this.buffer.subarray(this.#frameStart, at + 1), events: this.#frameEvents });
    this.#frameStart = -1;
    this.#frameEvents = 0;
  }

  #chunk(bytes: number): Buffer {
    if (bytes <= this.#chunkBytes) {
      const spare = this.#spare.pop();
      if (spare) return spare;
    }
    return Buffer.allocUnsafeSlow(bytes);
  }

  /** A chunk nothing holds and the arena no longer writes in goes to the spares. */
  #recycle(chunk: Buffer): void {
    if (chunk === this.buffer || this.#held.has(chunk) || chunk.length !== this.#chunkBytes) return;
    if (this.#spare.length < MAX_SPARE_CHUNKS && !this.#spare.includes(chunk)) this.#spare.push(chunk);
  }
}
