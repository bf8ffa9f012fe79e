import { describe, expect, it } from 'vitest';
import { ResultWithheldError } from '@sluice/contracts';
import { compileMasking, MAX_JSON_DEPTH, type ProfileMasker } from '@sluice/masking-engine';
import { maskJsonDocument } from './reply-masking.js';

const EMAIL = 'bob@example.com';
const nestedArrays = (levels: number, inner: string): string => '['.repeat(levels) + inner + ']'.repeat(levels);
/** `levels` objects one inside the other, `{"a":{"a":…inner…}}`. */
const nestedObjects = (levels: number, inner: string): string => '{"a":'.repeat(levels) + inner + '}'.repeat(levels);

const maskerWith = (columns: { match: string; strategy: 'redact' }[]): ProfileMasker =>
  compileMasking({ defaultRegion: 'US', detectors: [], profiles: { pii: { detectors: ['email'], strategy: 'redact', columns } } }, { hashKey: 'k' }).profile('pii')!;

const withoutRules = maskerWith([]);
const withRules = maskerWith([{ match: 'ssn', strategy: 'redact' }]);

describe('maskJsonDocument depth', () => {
  for (const [name, masker] of [
    ['without column rules', withoutRules],
    ['with column rules', withRules],
  ] as const) {
    it(`masks a document at the depth bound and withholds one a level past it, ${name}`, () => {
      const within = maskJsonDocument(JSON.parse(nestedArrays(MAX_JSON_DEPTH, JSON.stringify(EMAIL))), masker, {});
      expect(JSON.stringify(within)).not.toContain(EMAIL);
      for (const levels of [MAX_JSON_DEPTH + 1, 100_000]) {
        expect(() => maskJsonDocument(JSON.parse(nestedArrays(levels, '1')), masker, {})).toThrow(ResultWithheldError);
        expect(() => maskJsonDocument(JSON.parse(nestedObjects(levels, '1')), masker, {})).toThrow(ResultWithheldError);
      }
    });
  }

  it('withholds a document whose depth past the bound is under a member a column rule covers whole', () => {
    // The covered member is masked as its text, not walked: its depth still counts, from where it sits.
    const deepUnderCovered = (levels: number): unknown => JSON.parse(`{"ssn":${nestedArrays(levels, '1')}}`);
    expect(maskJsonDocument(deepUnderCovered(MAX_JSON_DEPTH - 1), withRules, {})).toEqual({ ssn: expect.any(String) });
    expect(() => maskJsonDocument(deepUnderCovered(MAX_JSON_DEPTH), withRules, {})).toThrow(ResultWithheldError);
    expect(() => maskJsonDocument(deepUnderCovered(200_000), withRules, {})).toThrow(ResultWithheldError);
    const deepInCovered = withRules.maskJson(deepUnderCovered(MAX_JSON_DEPTH - 1), {});
    expect(deepInCovered).toEqual({ ssn: expect.any(String) });
    expect(() => withRules.maskJson(deepUnderCovered(200_000), {})).toThrow(ResultWithheldError);
  });

  it('withholds JSON nested past the bound inside a JSON string', () => {
    const document = { payload: nestedObjects(MAX_JSON_DEPTH + 1, '1') };
    expect(() => maskJsonDocument(document, withRules, {})).toThrow(ResultWithheldError);
  });
});
