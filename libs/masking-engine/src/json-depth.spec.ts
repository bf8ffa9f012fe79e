import { describe, expect, it } from 'vitest';
import { ResultWithheldError } from '@sluice/contracts';
import { compileMasking } from './compile.js';
import { assertJsonWalkable, jsonDeeperThan, MAX_JSON_DEPTH } from './json-depth.js';

const nested = (levels: number, inner: string): string => '['.repeat(levels) + inner + ']'.repeat(levels);

describe('JSON depth', () => {
  it('tells a document deeper than the bound from one at it, at any depth without recursing', () => {
    expect(jsonDeeperThan(JSON.parse(nested(MAX_JSON_DEPTH, '1')), MAX_JSON_DEPTH)).toBe(false);
    expect(jsonDeeperThan(JSON.parse(nested(MAX_JSON_DEPTH + 1, '1')), MAX_JSON_DEPTH)).toBe(true);
    expect(jsonDeeperThan(JSON.parse(`{"a":${nested(200_000, '{}')}}`), MAX_JSON_DEPTH)).toBe(true);
    expect(jsonDeeperThan('text', 0)).toBe(false);
    expect(() => assertJsonWalkable(JSON.parse(nested(MAX_JSON_DEPTH + 1, '1')))).toThrow(ResultWithheldError);
  });

  it('withholds (never overflows the stack on) a json cell nested past the bound, and masks one within it', () => {
    const masker = compileMasking(
      { defaultRegion: 'US', detectors: [], profiles: { pii: { detectors: ['email'], strategy: 'redact', columns: [{ match: 'ssn', strategy: 'redact' }] } } },
      { hashKey: 'k' },
    ).profile('pii')!;
    const column = { name: 'doc', typeOid: 3802 };
    for (const levels of [MAX_JSON_DEPTH + 1, 50_000]) expect(() => masker.maskCell(nested(levels, '"bob@example.com"'), column, {})).toThrow(ResultWithheldError);
    expect(() => masker.maskJson(JSON.parse(nested(50_000, '1')), {})).toThrow(ResultWithheldError);
    expect(masker.maskCell(nested(MAX_JSON_DEPTH - 1, '"bob@example.com"'), column, {})).not.toContain('bob@example.com');
  });
});
