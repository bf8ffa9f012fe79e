import type { Duplex } from 'node:stream';
import type { Frame, FrameReader } from '@sluice/codec-pg';
import { ConnectionClosedError, ProtocolMalformedError } from '@sluice/contracts';

/**
 * Awaitable frames from a socket, for the short request/response exchanges of the startup phases
 * (client authentication, target authentication). The data path proper does not use it: there
 * frames are handled as they arrive, without a promise per message.
 */
export class SocketFrames {
  readonly #frames: Frame[] = [];
  #head = 0;
  #waiter: { resolve: (frame: Frame) => void; reject: (error: Error) => void } | undefined;
  #error: Error | undefined;

  /** Bytes of the frames read but not yet taken. */
  #heldBytes = 0;

  /**
   * @param maxHeldBytes The most it holds, frames not yet taken and an incomplete one together:
   *   before the agent has logged in anyone may send, and a length header claiming the resource's
   *   whole message limit, or frames sent while the login is checked, would otherwise pile up.
   */
  constructor(
    readonly socket: Duplex,
    readonly reader: FrameReader,
    readonly maxHeldBytes = Number.POSITIVE_INFINITY,
  ) {
    socket.on('data', this.#onData);
    socket.on('close', this.#onClose);
    socket.on('error', this.#onError);
  }

  readonly #onData = (chunk: Buffer): void => {
    // Once reading has failed nothing more is held: the session ends at its next read, and until
    // then (a token still being checked) a stranger could otherwise go on piling frames up.
    if (this.#error) return;
    try {
      for (const frame of this.reader.push(chunk)) {
        this.#frames.push(frame);
        this.#heldBytes += frame.raw.length;
      }
      if (this.#heldBytes + this.reader.buffered > this.maxHeldBytes) {
        this.#frames.length = this.#head = this.#heldBytes = 0;
        this.reader.takeLeftover();
        throw new ProtocolMalformedError(`more than ${this.maxHeldBytes} bytes sent before the login was answered`);
      }
    } catch (error) {
      this.#fail(error as Error);
      return;
    }
    this.#wake();
  };

  readonly #onClose = (): void => this.#fail(new ConnectionClosedError());
  readonly #onError = (error: Error): void => this.#fail(error);

  #fail(error: Error): void {
    this.#error ??= error;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.reject(this.#error);
  }

  #wake(): void {
    if (!this.#waiter || this.#head >= this.#frames.length) return;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter.resolve(this.#take());
  }

  #take(): Frame {
    const frame = this.#frames[this.#head++]!;
    this.#heldBytes -= frame.raw.length;
    return frame;
  }

  next(): Promise<Frame> {
    if (this.#head < this.#frames.length) return Promise.resolve(this.#take());
    if (this.#error) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }

  /** Why reading failed (malformed bytes, the socket closed), if it did; kept after detach. */
  get failure(): Error | undefined {
    return this.#error;
  }

  /** Stops listening; returns frames read but not yet taken (the reader keeps any partial one). */
  detach(): Frame[] {
    this.socket.off('data', this.#onData);
    this.socket.off('close', this.#onClose);
    this.socket.off('error', this.#onError);
    const rest = this.#frames.slice(this.#head);
    this.#frames.length = 0;
    this.#head = 0;
    this.#heldBytes = 0;
    return rest;
  }
}
