import type { Duplex } from 'node:stream';

/**
 * Concatenates what goes out on one socket in one drain: adjacent views of the same chunk are
 * merged back, so an unmodified run of frames leaves as the slice it arrived in.
 */
export class Outbox {
  #parts: Buffer[] = [];
  #size = 0;

  push(buffer: Buffer): void {
    const parts = this.#parts;
    const last = parts[parts.length - 1];
    if (last && last.buffer === buffer.buffer && last.byteOffset + last.length === buffer.byteOffset) {
      parts[parts.length - 1] = Buffer.from(last.buffer, last.byteOffset, last.length + buffer.length);
    } else parts.push(buffer);
    this.#size += buffer.length;
  }

  get empty(): boolean {
    return this.#parts.length === 0;
  }

  /** One write per drain; returns false when the socket wants us to wait for 'drain'. */
  flush(socket: Duplex): boolean {
    const parts = this.#parts;
    if (parts.length === 0) return true;
    const data = parts.length === 1 ? parts[0]! : Buffer.concat(parts, this.#size);
    this.#parts = [];
    this.#size = 0;
    return socket.write(data);
  }
}
