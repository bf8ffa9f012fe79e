import { describe, expect, it } from 'vitest';
import { normaliseSql } from './approval-text.js';

describe('normaliseSql', () => {
  it.each([
    ['  select 1;;  ', 'select 1'],
    ['select 1', 'select 1'],
    ['select 1; ;', 'select 1; '],
    [';;;', ''],
    ['\n\tselect \';\'\n', "select ';'"],
  ])('turns %j into %j', (text, normalised) => {
    expect(normaliseSql(text)).toBe(normalised);
  });

  it('stays linear on a long run of semicolons followed by one other character', () => {
    const hostile = `${';'.repeat(400_000)}x`;
    const started = performance.now();
    for (let round = 0; round < 10; round++) expect(normaliseSql(hostile)).toBe(hostile);
    // Ten scans of 400,000 characters; the quadratic regex took 1.8 s for one of 40,000.
    expect(performance.now() - started).toBeLessThan(500);
  });
});
