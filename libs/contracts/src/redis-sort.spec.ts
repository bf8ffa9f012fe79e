import { describe, expect, it } from 'vitest';
import { redisKeyName } from './redis-sort.js';

describe('redisKeyName', () => {
  it('decodes UTF-8 keys, and ASCII and Latin-1-only keys as before', () => {
    expect(redisKeyName(Buffer.from('geheim-ü:1'))).toBe('geheim-ü:1');
    expect(redisKeyName(Buffer.from([0x67, 0xfc]))).toBe('g\u00fc');
    expect(redisKeyName(Buffer.from([0xff]))).toBe('\u00ff');
    expect(redisKeyName('as given')).toBe('as given');
  });

  it('decodes the UTF-8 sequences of a key that holds other bytes too: a binary suffix does not hide a non-ASCII prefix', () => {
    const binarySuffix = Buffer.concat([Buffer.from('geheim-ü:'), Buffer.from([0xff, 0x00, 0xc3])]);
    expect(redisKeyName(binarySuffix)).toBe('geheim-ü:\u00ff\u0000\u00c3');
    // Overlong, surrogate and out-of-range forms are not UTF-8: each of their bytes stands alone.
    expect(redisKeyName(Buffer.from([0xc0, 0xaf, 0x41]))).toBe('\u00c0\u00afA');
    expect(redisKeyName(Buffer.from([0xed, 0xa0, 0x80, 0xe2, 0x82, 0xac]))).toBe('\u00ed\u00a0\u0080€');
    expect(redisKeyName(Buffer.from([0xf4, 0x90, 0x80, 0x80, 0xf0, 0x9f, 0x98, 0x80]))).toBe('\u00f4\u0090\u0080\u0080😀');
    expect(redisKeyName(Buffer.from([0xf0, 0x9f, 0x98]))).toBe('\u00f0\u009f\u0098');
  });
});
