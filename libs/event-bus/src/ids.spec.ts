import { describe, expect, it, vi } from 'vitest';
import { timeOrderedId } from './ids.js';

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('timeOrderedId', () => {
  it('is a UUIDv7 whose first 48 bits are the time it was made, in milliseconds', () => {
    const before = Date.now();
    const id = timeOrderedId();
    const after = Date.now();
    expect(id).toMatch(UUID_V7);
    const millis = parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
    expect(millis).toBeGreaterThanOrEqual(before);
    expect(millis).toBeLessThanOrEqual(after);
  });

  it('sorts in the order the ids were made, within a millisecond too, and never repeats', () => {
    const ids = Array.from({ length: 3_000 }, () => timeOrderedId());
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
  });

  it('draws new random bits for every id, past the pool of random bytes too', () => {
    const randomParts = Array.from({ length: 3_000 }, () => timeOrderedId().slice(19));
    expect(new Set(randomParts).size).toBe(randomParts.length);
  });

  it('carries each millisecond its own time, its counter starting again at 0', () => {
    const millis = (id: string) => parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
    const counter = (id: string) => parseInt(id.slice(15, 18), 16);
    const clock = vi.spyOn(Date, 'now');
    try {
      clock.mockReturnValue(0x0190_0000_0fff);
      const first = [timeOrderedId(), timeOrderedId()];
      clock.mockReturnValue(0x0190_0000_1000);
      const second = [timeOrderedId(), timeOrderedId()];
      expect(first.map(millis)).toEqual([0x0190_0000_0fff, 0x0190_0000_0fff]);
      expect(second.map(millis)).toEqual([0x0190_0000_1000, 0x0190_0000_1000]);
      expect([...first, ...second].map(counter)).toEqual([0, 1, 0, 1]);
      expect([...first, ...second].every((id) => UUID_V7.test(id))).toBe(true);
    } finally {
      clock.mockRestore();
    }
  });
});
