import { describe, expect, it } from 'vitest';
import { LruCache } from './lru-cache.js';

describe('LruCache', () => {
  it('drops the least recently used entry first when full', () => {
    const cache = new LruCache<number>(4);
    for (const [index, key] of ['a', 'b', 'c', 'd'].entries()) cache.set(key, index);
    expect(cache.get('a')).toBe(0);
    cache.set('e', 4);
    expect(cache.get('b')).toBeUndefined();
    expect([cache.get('a'), cache.get('c'), cache.get('d'), cache.get('e')]).toEqual([0, 2, 3, 4]);
    expect(cache.size).toBe(4);
  });

  it('keeps an entry read between insertions, however many other entries come and go', () => {
    const cache = new LruCache<number>(100);
    cache.set('hot', -1);
    for (let index = 0; index < 10_000; index++) {
      cache.set(`cold-${index}`, index);
      expect(cache.get('hot')).toBe(-1);
      expect(cache.size).toBeLessThanOrEqual(100);
    }
    expect(cache.get('cold-9999')).toBe(9999);
    expect(cache.get('cold-9899')).toBeUndefined();
  });

  it('takes a new value for a key it holds, and forgets everything on clear', () => {
    const cache = new LruCache<string>(2);
    cache.set('k', 'old');
    cache.set('k', 'new');
    expect(cache.get('k')).toBe('new');
    expect(cache.size).toBe(1);
    cache.clear();
    expect(cache.get('k')).toBeUndefined();
    cache.set('x', '1');
    cache.set('y', '2');
    cache.set('z', '3');
    expect([cache.get('x'), cache.get('y'), cache.get('z')]).toEqual([undefined, '2', '3']);
  });

  it('answers a hit in a full cache of 10,000 in about the time of a cache of 10 (moving every hit made it linear)', () => {
    const cpuPerHit = (size: number): number => {
      const cache = new LruCache<number>(size);
      for (let index = 0; index < size; index++) cache.set(`key-${index}`, index);
      const keys = Array.from({ length: 10 }, (_, index) => `key-${index}`);
      for (let round = 0; round < 20_000; round++) cache.get(keys[round % 10]!);
      const before = process.cpuUsage();
      for (let round = 0; round < 200_000; round++) cache.get(keys[round % 10]!);
      const used = process.cpuUsage(before);
      return (used.user + used.system) / 200_000;
    };
    const small = cpuPerHit(10);
    const full = cpuPerHit(10_000);
    // The old cache took ~400 times longer at 10,000 entries than at 10; allow noise, not that.
    expect(full).toBeLessThan(Math.max(small, 0.05) * 20);
  });
});
