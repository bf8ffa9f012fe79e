import { setTimeout as sleep } from 'node:timers/promises';

export interface BackoffOptions {
  /** The first delay. */
  readonly initialMs: number;
  /** No delay is longer. */
  readonly maxMs: number;
  /**
   * Spread of each delay, as a fraction either side (0.25: 75 % to 125 %), so many clients that
   * lost the same server do not come back in step. 0 (the default) for none.
   */
  readonly jitter?: number;
}

/**
 * Exponential backoff: each delay doubles the one before, up to `maxMs`; `reset` after a success.
 * The one way Sluice spaces retries and reconnects.
 */
export class Backoff {
  #nextMs: number;

  constructor(readonly options: BackoffOptions) {
    this.#nextMs = options.initialMs;
  }

  /** The delay before the next attempt (and doubles the one after). */
  next(): number {
    const delay = Math.min(this.#nextMs, this.options.maxMs);
    this.#nextMs = Math.min(delay * 2, this.options.maxMs);
    const jitter = this.options.jitter ?? 0;
    return jitter > 0 ? delay * (1 - jitter + Math.random() * 2 * jitter) : delay;
  }

  /** The delay `next` would start from, without jitter and without moving on. */
  peek(): number {
    return Math.min(this.#nextMs, this.options.maxMs);
  }

  reset(): void {
    this.#nextMs = this.options.initialMs;
  }
}

/** Waits `ms`, or less if `signal` aborts first; never rejects. */
export const pause = (ms: number, signal?: AbortSignal): Promise<void> =>
  sleep(ms, undefined, signal ? { signal } : {}).then(
    () => undefined,
    () => undefined,
  );

export interface RetryOptions {
  readonly backoff: Backoff;
  /** Whether an error may be retried; anything else is thrown at once. */
  readonly retryable: (error: unknown) => boolean;
  /** At most this many attempts in all (default: until `deadline` or `signal`). */
  readonly attempts?: number;
  /** No attempt starts after this time (epoch ms). */
  readonly deadline?: number;
  /** Stops retrying: the last error is thrown. */
  readonly signal?: AbortSignal;
  /** Told of each failure that will be retried. */
  readonly onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
}

/**
 * Runs `attempt` until it resolves, backing off between failures. Throws the last error once it
 * is not retryable, the attempts are spent, the next try would start past the deadline, or the
 * signal aborted.
 */
export const retry = async <T>(attempt: (attemptNumber: number) => Promise<T>, options: RetryOptions): Promise<T> => {
  for (let attemptNumber = 1; ; attemptNumber++) {
    try {
      return await attempt(attemptNumber);
    } catch (error) {
      const delay = options.backoff.next();
      const spent = options.attempts !== undefined && attemptNumber >= options.attempts;
      const late = options.deadline !== undefined && Date.now() + delay > options.deadline;
      if (!options.retryable(error) || spent || late || options.signal?.aborted) throw error;
      options.onRetry?.(error, attemptNumber, delay);
      await pause(delay, options.signal);
      if (options.signal?.aborted) throw error;
    }
  }
};
