import type { Duplex } from 'node:stream';

/**
 * Concatenates what goes out on one socket in one drain: adjacent views of the same chunk are
 * merged back, so an unmodified run of frames leaves as the slice it arrived in.
 */
export class Outbox {
  /** Closed runs, in order. */
  #parts: Buffer[] = [];
  #size = 0;
  /**
   * The open run: the first view pushed and the end of the last view adjacent to it in the same
   * memory. Its one view is made when the run closes, not a new one at every message of a chunk.
   */
  #run: Buffer | undefined;
  #runEnd = 0;

  push(buffer: Buffer): void {
    const run = this.#run;
    this.#size += buffer.length;
    if (run && run.buffer === buffer.buffer && this.#runEnd === buffer.byteOffset) {
      this.#runEnd += buffer.length;
      return;
    }
    if (run) this.#parts.push(this.#closedRun(run));
    this.#run = buffer;
    this.#runEnd = buffer.byteOffset + buffer.length;
  }

  #closedRun(run: Buffer): Buffer {
    return this.#runEnd === run.byteOffset + run.length ? run : Buffer.from(run.buffer, run.byteOffset, this.#runEnd - run.byteOffset);
  }

  get empty(): boolean {
    return this.#run === undefined;
  }

  /** One write per drain; returns false when the socket wants us to wait for 'drain'. */
  flush(socket: Duplex): boolean {
    const run = this.#run;
    if (!run) return true;
    const last = this.#closedRun(run);
    const parts = this.#parts;
    const data = parts.length === 0 ? last : Buffer.concat([...parts, last], this.#size);
    if (parts.length > 0) this.#parts = [];
    this.#run = undefined;
    this.#size = 0;
    return socket.write(data);
  }
}
