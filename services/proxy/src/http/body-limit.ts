import { Transform, type TransformCallback } from 'node:stream';
import { LimitExceededError } from '@sluice/contracts';

/** The request body grew past the listener's limits.maxMessageBytes while it streamed. */
export class BodyTooLargeError extends LimitExceededError {
  constructor(readonly limit: number) {
    super(`request body exceeds ${limit} bytes`);
  }
}

/**
 * Passes a request body through as it streams (never buffered whole) and fails the stream once it
 * is longer than `limit`: for bodies without a Content-Length, which cannot be refused up front.
 */
export class BodyLimit extends Transform {
  #seen = 0;
  exceeded = false;

  constructor(private readonly limit: number) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#seen += chunk.length;
    if (this.#seen > this.limit) {
      this.exceeded = true;
      callback(new BodyTooLargeError(this.limit));
      return;
    }
    callback(null, chunk);
  }
}
