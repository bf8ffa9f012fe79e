import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { MaskingConfig } from '@sluice/config';
import { compileMasking } from './compile.js';
import { scanFeatures, type Features } from './features.js';

/*
 * Red team of the feature scan's skip over characters no detector looks for (a21f7ac): the
 * features gate every detector, so a value whose features came out lower than before would reach
 * no regular expression and leave a sensitive value unmasked. Two probes: the features equal the
 * scan before the skip on strings built to sit sensitive values next to, and inside, runs of
 * non-ASCII text; and sensitive values in such company are masked.
 */
// The scan as it was before the skip (a21f7ac~1), verbatim: the reference.
const OTHER = 0;
const DIGIT = 1;
/** Space: keeps strict and loose runs. */
const SPACE = 2;
/** Dash: keeps both runs, and is part of key shapes. */
const DASH = 3;
/** `(`, `)`, `+`, `/`: keep loose runs only. */
const LOOSE = 4;
const DOT = 5;
const UPPER = 6;
const AT = 7;
const COLON = 8;
/** `_`, `'`, `"`. */
const SECRETISH = 9;
const EQUALS = 10;

const CLASSES = new Uint8Array(128);
for (let code = 48; code <= 57; code++) CLASSES[code] = DIGIT;
for (let code = 65; code <= 90; code++) CLASSES[code] = UPPER;
CLASSES[32] = SPACE;
CLASSES[45] = DASH;
for (const char of '()+/') CLASSES[char.charCodeAt(0)] = LOOSE;
CLASSES[46] = DOT;
CLASSES[64] = AT;
CLASSES[58] = COLON;
for (const char of `_'"`) CLASSES[char.charCodeAt(0)] = SECRETISH;
CLASSES[61] = EQUALS;

const before: Features = { digits: 0, strictRun: 0, looseRun: 0, upper: 0, dots: 0, colons: 0, at: false, secretish: false, assigns: false, ibanStart: false };

/**
 * Computes the features of a text. Returns a shared object that the next call overwrites: the
 * engine is synchronous and reads it before scanning again, and not allocating keeps the
 * nothing-to-mask path cheap.
 */
const scanBeforeSkip = (text: string): Features => {
  let digits = 0;
  let strict = 0;
  let strictMax = 0;
  let strictGap = 0;
  let loose = 0;
  let looseMax = 0;
  let looseGap = 0;
  let upper = 0;
  let dots = 0;
  let colons = 0;
  let at = false;
  let secretish = false;
  let equals = false;
  let ibanStart = false;
  // Upper-case letters just seen, and digits seen right after two or more of them.
  let upperRun = 0;
  let digitsAfterUpper = 0;
  const length = text.length;
  for (let index = 0; index < length; index++) {
    const code = text.charCodeAt(index);
    const kind = code < 128 ? CLASSES[code]! : OTHER;
    if (kind === UPPER) {
      upperRun++;
      digitsAfterUpper = 0;
    } else if (kind === DIGIT) {
      if (digitsAfterUpper > 0) {
        if (++digitsAfterUpper >= 2) ibanStart = true;
      } else if (upperRun >= 2) digitsAfterUpper = 1;
      upperRun = 0;
    } else {
      upperRun = 0;
      digitsAfterUpper = 0;
    }
    switch (kind) {
      case OTHER:
        strictGap = 2;
        looseGap = 3;
        break;
      case DIGIT:
        digits++;
        if (strictGap > 1) strict = 0;
        strict++;
        strictGap = 0;
        if (strict > strictMax) strictMax = strict;
        if (looseGap > 2) loose = 0;
        loose++;
        looseGap = 0;
        if (loose > looseMax) looseMax = loose;
        break;
      case SPACE:
        strictGap++;
        looseGap++;
        break;
      case DASH:
        strictGap++;
        looseGap++;
        secretish = true;
        break;
      case LOOSE:
        strictGap = 2;
        looseGap++;
        break;
      case DOT:
        strictGap = 2;
        looseGap++;
        dots++;
        break;
      case UPPER:
        strictGap = 2;
        looseGap = 3;
        upper++;
        break;
      case AT:
        strictGap = 2;
        looseGap = 3;
        at = true;
        break;
      case COLON:
        strictGap = 2;
        looseGap = 3;
        colons++;
        secretish = true;
        break;
      case EQUALS:
        strictGap = 2;
        looseGap = 3;
        equals = true;
        secretish = true;
        break;
      default:
        strictGap = 2;
        looseGap = 3;
        secretish = true;
    }
  }
  before.digits = digits;
  before.strictRun = strictMax;
  before.looseRun = looseMax;
  before.upper = upper;
  before.dots = dots;
  before.colons = colons;
  before.at = at;
  before.secretish = secretish;
  before.assigns = equals || colons > 0;
  before.ibanStart = ibanStart;
  return { ...before };
};

/** Characters around which a skip could go wrong: non-ASCII letters, marks, invisibles, look-alikes. */
const ODD = ['é', 'ü', 'ß', '漢', 'я', 'ש', '\u0301', '\u0308', '\u200b', '\u200c', '\u200d', '\u2060', '\ufeff', '\u200e', '\u200f', '\u202e', '\u00a0', '\u3000', '０', '４', '９', 'Ａ', '＠', '．', '－', '😀', '\ud83d', '\ude00', '\u0000', '\u007f', '\u0085'];
const ASCII_SIGNIFICANT = ['0', '1', '4', '9', 'A', 'G', 'B', 'Z', 'a', 'z', ' ', '-', '(', ')', '+', '/', '.', '@', ':', '_', "'", '"', '=', '\t', '\n', '~'];

const oddString = fc
  .array(fc.oneof(fc.constantFrom(...ODD), fc.constantFrom(...ASCII_SIGNIFICANT), fc.string({ unit: 'grapheme', maxLength: 3 }), fc.string({ unit: 'binary', maxLength: 3 })), { maxLength: 60 })
  .map((parts) => parts.join(''));

describe('scanFeatures skip red team', () => {
  it('reads the same features as the scan before the skip, for any mix of non-ASCII and significant characters', () => {
    fc.assert(
      fc.property(oddString, (text) => {
        expect({ ...scanFeatures(text) }).toEqual(scanBeforeSkip(text));
      }),
      { numRuns: 5_000 },
    );
  });

  it('reads the same features as before for a sensitive value placed right after, before or inside a run of odd characters', () => {
    const values = ['4111111111111111', '4111 1111 1111 1111', '123-45-6789', 'GB82WEST12345698765432', 'ada@example.com', '+1 (555) 123-4567', 'password=hunter2', 'sk_live_abcdef0123456789'];
    for (const value of values) {
      for (const odd of ODD) {
        for (const text of [`${odd.repeat(40)}${value}`, `${value}${odd.repeat(40)}`, `${odd}${value}${odd}`, [...value].join(odd)]) {
          expect({ ...scanFeatures(text) }, JSON.stringify(text)).toEqual(scanBeforeSkip(text));
        }
      }
    }
  });
});

const config: MaskingConfig = {
  defaultRegion: 'US',
  detectors: [],
  profiles: { pii: { detectors: ['credit_card', 'email', 'phone', 'us_ssn', 'iban', 'jwt', 'secret'], strategy: 'redact', columns: [] } },
};
const pii = compileMasking(config, { hashKey: 'redteam-key' }).profile('pii')!;

describe('masking after runs of non-ASCII text', () => {
  const secrets = [
    ['card', '4111111111111111'],
    ['spaced card', '4111 1111 1111 1111'],
    ['SSN', '123-45-6789'],
    ['IBAN', 'GB82WEST12345698765432'],
    ['e-mail', 'ada@example.com'],
    ['phone', '+1 415 555 2671'],
  ] as const;
  // No ASCII letter touches the value (that would join it to a word, by design not a value of its own).
  const neighbours = ['é'.repeat(50), 'Zoë Müller ', '漢字漢字', 'שלום ', '\u200b\u200b', '\u200f\u202e', 'é\u0301\u0301', '\u0301', '😀😀', '\ud83d', '０１２３', '\u3000', '\u200b'.repeat(300), '\u00a0'.repeat(300)];

  it.each(secrets)('masks a %s right after a run of non-ASCII characters, and amid them', (_name, value) => {
    for (const neighbour of neighbours) {
      for (const text of [`${neighbour}${value}`, `${neighbour} ${value} ${neighbour}`, `${neighbour}${value}\u200b${neighbour}`]) {
        expect(pii.maskText(text, {}), JSON.stringify(text)).not.toContain(value);
      }
    }
  });

  it.each(['_john.doe@corp.com', '.ada@example.com', '+ada@example.com', '-ada@example.com', '%ada@example.com', '\u0301ada@example.com', 'x \u0301ada@example.com'])(
    'masks the address in %j, whose local part starts with no letter or digit',
    (text) => {
      const masked = pii.maskText(text, {});
      expect(masked).toContain('[REDACTED:email]');
      expect(masked).not.toContain('ada@');
      expect(masked).not.toContain('john');
    },
  );
});
