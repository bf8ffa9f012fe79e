import { describe, expect, it } from 'vitest';
import { compileMasking } from './compile.js';
import { spellUnicodeEscapes } from './unicode-escapes.js';

const masker = compileMasking(
  { defaultRegion: 'US', detectors: [], profiles: { pii: { detectors: ['credit_card', 'email', 'us_ssn'], strategy: 'partial', columns: [] } } },
  { hashKey: 'k' },
).profile('pii')!;

describe('values spelled with \\u escapes', () => {
  it('spells out printable escapes and keeps those a JSON string needs escaped', () => {
    expect(spellUnicodeEscapes('bob\\u0040example.com')).toBe('bob@example.com');
    expect(spellUnicodeEscapes('q\\u0022 b\\u005c c\\u0000 s\\ud83d\\ude00 d\\u007f')).toBe('q\\u0022 b\\u005c c\\u0000 s\\ud83d\\ude00 d\\u007f');
    const plain = 'no escapes here';
    expect(spellUnicodeEscapes(plain)).toBe(plain);
  });

  it('masks an email, a card and an SSN hidden by escapes in a text that is not one JSON document', () => {
    const texts = ['{"a":"bob\\u0040example.com"} trailing', 'data: {"card":"4111\\u00201111\\u00201111\\u00201111"', 'ssn \\u0031\\u0032\\u0033-45-6789'];
    for (const text of texts) {
      const masked = masker.maskText(text, {});
      expect(masked).not.toBe(text);
      for (const raw of ['bob@example.com', 'bob\\u0040example.com', '4111\\u00201111\\u00201111\\u00201111', '\\u0031\\u0032\\u0033-45-6789']) expect(masked).not.toContain(raw);
    }
    expect(masker.maskCell('mail bob\\u0040example.com', { name: 'note' }, {})).not.toContain('bob');
  });

  it('leaves a text whose escapes hide nothing exactly as it was', () => {
    const text = 'caf\\u00e9 \\u0040home {"x":"\\u0041"}';
    expect(masker.maskText(text, {})).toBe(text);
  });
});
