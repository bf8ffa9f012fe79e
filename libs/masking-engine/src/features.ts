/**
 * One cheap pass over a value that tells each detector whether it could possibly match, so that
 * ordinary values (names, amounts, dates, ids) never reach a regular expression. This pass is the
 * whole cost of masking a value with nothing sensitive in it.
 */
export interface Features {
  digits: number;
  /** Longest digit run where one space or dash may sit between digits (cards, SSNs). */
  strictRun: number;
  /** Longest digit run where up to two of ` -.()+/` may sit between digits (phone numbers). */
  looseRun: number;
  upper: number;
  dots: number;
  colons: number;
  /** Any `@`. */
  at: boolean;
  /** Any of `_ - = ' " :`: the shapes of API keys and `password=` assignments. */
  secretish: boolean;
  /** Any `=` or `:`: an assignment could be present. */
  assigns: boolean;
  /** Two upper-case letters directly followed by two digits: how an IBAN starts. */
  ibanStart: boolean;
}

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

const features: Features = { digits: 0, strictRun: 0, looseRun: 0, upper: 0, dots: 0, colons: 0, at: false, secretish: false, assigns: false, ibanStart: false };

/**
 * Computes the features of a text. Returns a shared object that the next call overwrites: the
 * engine is synchronous and reads it before scanning again, and not allocating keeps the
 * nothing-to-mask path cheap.
 */
export const scanFeatures = (text: string): Features => {
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
    if (kind === OTHER) {
      // Letters and the like: most of any text. Each sets the same state, so a run of them is
      // passed over at once (the full step below cost ~40% more on a long run of them).
      upperRun = 0;
      digitsAfterUpper = 0;
      strictGap = 2;
      looseGap = 3;
      while (index + 1 < length) {
        const next = text.charCodeAt(index + 1);
        if (next < 128 && CLASSES[next] !== OTHER) break;
        index++;
      }
      continue;
    }
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
  features.digits = digits;
  features.strictRun = strictMax;
  features.looseRun = looseMax;
  features.upper = upper;
  features.dots = dots;
  features.colons = colons;
  features.at = at;
  features.secretish = secretish;
  features.assigns = equals || colons > 0;
  features.ibanStart = ibanStart;
  return features;
};
