import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { BodyRead } from './json-body.js';

/** Bytes of a body kept before anyone reads it; past this the target's connection is paused. */
const UNREAD_LIMIT = 64 * 1024;

export interface UpstreamResponse {
  readonly statusCode: number;
  readonly headers: Record<string, string | string[] | undefined>;
  /**
   * The body as a stream, made the first time it is asked for (from what `readUpTo` left).
   * Destroying it before its end aborts the call, as undici's own response body does.
   */
  readonly body: Readable;
  /**
   * The body to its end, or what came until past `max` bytes (the rest is then left for `body`):
   * a small body is read without a stream, a promise per chunk or an event listener.
   */
  readUpTo(max: number): Promise<BodyRead>;
}

/**
 * One request to the target through undici's `dispatch`, answered with the status and headers
 * once they come. `request()` makes a stream for every body and an async-hooks resource, a
 * promise and an abort listener for every call: most of the proxy's CPU for a small JSON reply.
 * Failures before the headers reject the promise; after them they fail the body (its stream
 * or `readUpTo`), so a cut body is never taken for a whole one.
 */
export const callUpstream = (dispatcher: Dispatcher, options: Dispatcher.DispatchOptions): { response: Promise<UpstreamResponse>; abort(reason: Error): void } => {
  const call = new UpstreamCall(options);
  dispatcher.dispatch(options, call);
  return { response: call.head, abort: (reason) => call.abort(reason) };
};

class UpstreamCall implements Dispatcher.DispatchHandler, UpstreamResponse {
  readonly head: Promise<UpstreamResponse>;
  statusCode = 0;
  headers: Record<string, string | string[] | undefined> = {};
  #resolveHead!: (response: UpstreamResponse) => void;
  #rejectHead!: (error: Error) => void;
  #started = false;
  #controller: Dispatcher.DispatchController | undefined;
  /** Set when aborted before undici connected the call: it is aborted as soon as it is. */
  #abortReason: Error | undefined;
  #chunks: Buffer[] = [];
  #buffered = 0;
  #ended = false;
  #error: Error | undefined;
  #stream: Readable | undefined;
  #waiter: { readonly max: number; readonly resolve: (read: BodyRead) => void; readonly reject: (error: Error) => void } | undefined;

  constructor(private readonly options: Dispatcher.DispatchOptions) {
    this.head = new Promise((resolve, reject) => {
      this.#resolveHead = resolve;
      this.#rejectHead = reject;
    });
  }

  abort(reason: Error): void {
    if (this.#ended || this.#error) return;
    if (this.#stream) this.#stream.destroy(reason);
    else if (this.#controller) this.#controller.abort(reason);
    else this.#abortReason = reason;
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#abortReason) controller.abort(this.#abortReason);
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    // 1xx answers are interim: the response is the one after them.
    if (statusCode < 200) return;
    this.statusCode = statusCode;
    this.headers = headers;
    this.#started = true;
    this.#resolveHead(this);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#stream) {
      if (!this.#stream.push(chunk)) controller.pause();
      return;
    }
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    const waiter = this.#waiter;
    if (waiter && this.#buffered > waiter.max) {
      // Past the limit: what came is handed over, the rest waits (paused) for the stream.
      this.#waiter = undefined;
      controller.pause();
      waiter.resolve({ bytes: this.#take(), complete: false });
    } else if (!waiter && this.#buffered > UNREAD_LIMIT) controller.pause();
  }

  onResponseEnd(): void {
    this.#ended = true;
    if (this.#stream) this.#stream.push(null);
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.resolve({ bytes: this.#take(), complete: true });
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    if (this.#ended || this.#error) return;
    this.#error = error;
    // The request body is not needed any more (undici's request() does the same).
    const body = this.options.body;
    if (body instanceof Readable) body.on('error', () => {}).destroy(error);
    if (!this.#started) return this.#rejectHead(error);
    this.#stream?.destroy(error);
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.reject(error);
  }

  readUpTo(max: number): Promise<BodyRead> {
    if (this.#stream || this.#waiter) return Promise.reject(new Error('the body is already being read'));
    if (this.#error) return Promise.reject(this.#error);
    if (this.#ended) return Promise.resolve({ bytes: this.#take(), complete: true });
    if (this.#buffered > max) {
      this.#controller?.pause();
      return Promise.resolve({ bytes: this.#take(), complete: false });
    }
    // What came before the limit was raised is read on: the connection may have been paused.
    const waiting = new Promise<BodyRead>((resolve, reject) => (this.#waiter = { max, resolve, reject }));
    this.#controller?.resume();
    return waiting;
  }

  get body(): Readable {
    if (this.#stream) return this.#stream;
    const stream = new Readable({
      read: () => this.#controller?.resume(),
      destroy: (error, callback) => {
        // Given up before its end: the target's connection cannot be reused for another call.
        if (!this.#ended && !this.#error) {
          this.#error = error ?? new Error('the response body was destroyed');
          this.#controller?.abort(this.#error);
        }
        callback(error);
      },
    });
    this.#stream = stream;
    for (const chunk of this.#chunks) stream.push(chunk);
    this.#chunks = [];
    this.#buffered = 0;
    if (this.#error) stream.destroy(this.#error);
    else if (this.#ended) stream.push(null);
    return stream;
  }

  #take(): Buffer {
    const chunks = this.#chunks;
    this.#chunks = [];
    this.#buffered = 0;
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  }
}
