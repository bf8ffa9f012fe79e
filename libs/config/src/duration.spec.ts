import { describe, expect, it } from 'vitest';
import { parseDuration, parsePointInTime } from './duration.js';

describe('parseDuration', () => {
  it('reads every unit, and a bare number as seconds', () => {
    expect(['500ms', '30s', '2m', '1h', '7d', '2w', '1.5s', 90].map((text) => parseDuration(text))).toEqual([
      500, 30_000, 120_000, 3_600_000, 604_800_000, 1_209_600_000, 1_500, 90_000,
    ]);
  });

  it('refuses what is not a non-negative duration', () => {
    for (const text of ['', 'soon', '-1s', '1y', '1 s 2', Number.NaN, -1, Number.POSITIVE_INFINITY]) expect(parseDuration(text)).toBeUndefined();
  });
});

describe('parsePointInTime', () => {
  const now = Date.parse('2026-06-01T12:00:00Z');

  it('reads a look-back from now', () => {
    expect(parsePointInTime('30m', now)).toEqual(new Date(now - 30 * 60_000));
    expect(parsePointInTime(' 1w ', now)).toEqual(new Date(now - 7 * 86_400_000));
  });

  it('reads a bare number as epoch milliseconds, not as seconds ago', () => {
    expect(parsePointInTime('1700000000000', now)).toEqual(new Date(1_700_000_000_000));
  });

  it('reads an ISO time and refuses anything else', () => {
    expect(parsePointInTime('2026-01-01T00:00:00Z', now)).toEqual(new Date('2026-01-01T00:00:00Z'));
    for (const text of ['yesterday', '1y', '', '99999999999999999999']) expect(parsePointInTime(text, now)).toBeUndefined();
  });
});
