import { describe, expect, it } from 'vitest';
import { Backoff, retry } from './backoff.js';

describe('Backoff', () => {
  it('doubles each delay up to the ceiling, and starts over after reset', () => {
    const backoff = new Backoff({ initialMs: 100, maxMs: 500 });
    expect([backoff.next(), backoff.next(), backoff.next(), backoff.next()]).toEqual([100, 200, 400, 500]);
    backoff.reset();
    expect(backoff.next()).toBe(100);
  });

  it('spreads delays within the jitter', () => {
    const backoff = new Backoff({ initialMs: 1_000, maxMs: 1_000, jitter: 0.25 });
    for (let i = 0; i < 50; i++) {
      const delay = backoff.next();
      expect(delay).toBeGreaterThanOrEqual(750);
      expect(delay).toBeLessThanOrEqual(1_250);
    }
  });
});

describe('retry', () => {
  const transient = new Error('transient');
  const fatal = new Error('fatal');

  it('retries retryable failures until an attempt succeeds', async () => {
    let calls = 0;
    const result = await retry(async () => (++calls < 3 ? Promise.reject(transient) : 'ok'), {
      backoff: new Backoff({ initialMs: 1, maxMs: 2 }),
      retryable: (error) => error === transient,
    });
    expect([result, calls]).toEqual(['ok', 3]);
  });

  it('throws at once what is not retryable, and the last error once the attempts are spent', async () => {
    let calls = 0;
    const failing = (error: Error) => async () => {
      calls++;
      throw error;
    };
    await expect(retry(failing(fatal), { backoff: new Backoff({ initialMs: 1, maxMs: 1 }), retryable: (error) => error === transient })).rejects.toBe(fatal);
    expect(calls).toBe(1);
    calls = 0;
    await expect(retry(failing(transient), { backoff: new Backoff({ initialMs: 1, maxMs: 1 }), retryable: () => true, attempts: 3 })).rejects.toBe(transient);
    expect(calls).toBe(3);
  });

  it('gives up when the next attempt would start past the deadline', async () => {
    let calls = 0;
    const attempt = async () => {
      calls++;
      throw transient;
    };
    await expect(retry(attempt, { backoff: new Backoff({ initialMs: 60_000, maxMs: 60_000 }), retryable: () => true, deadline: Date.now() + 1_000 })).rejects.toBe(transient);
    expect(calls).toBe(1);
  });
});
