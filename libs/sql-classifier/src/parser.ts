import { fingerprintSync, loadModule, normalizeSync, parseSync } from 'libpg-query';

let loading: Promise<void> | undefined;
let loaded = false;

/**
 * Loads the PostgreSQL parser (WASM) once; every other function needs it. The first parse and
 * normalisation in a process take most of a second (the module's code is compiled on first use):
 * they are done here, at start, not in the first agent's statement.
 */
export const loadSqlClassifier = (): Promise<void> => {
  loading ??= loadModule().then(() => {
    try {
      parseSync('SELECT a FROM b WHERE c = 1');
      normalizeSync('SELECT a FROM b WHERE c = 1');
    } catch {
      // Only a warm-up: a parser that fails here fails the same way when asked.
    }
    loaded = true;
  });
  return loading;
};

export const isSqlClassifierLoaded = (): boolean => loaded;

export const assertLoaded = (): void => {
  if (!loaded) throw new Error('the SQL classifier is not loaded: await loadSqlClassifier() first');
};

/** The libpg-query fingerprint (same for statements differing only in constants). */
export const fingerprintSql = (text: string): string | undefined => {
  assertLoaded();
  try {
    return fingerprintSync(text);
  } catch {
    return undefined;
  }
};

/** Normalised texts kept: the policy port and the proxy's caches ask about the same text in a row. */
const MAX_NORMALIZED = 64;
const MAX_NORMALIZED_TEXT_CHARS = 8 * 1024;
const normalized = new Map<string, string | null>();
/** Normalised forms by digit template (see digitTemplate), for texts whose digits are all in constants. */
const byDigitTemplate = new Map<string, string>();

const keep = <V>(map: Map<string, V>, key: string, value: V): void => {
  if (map.size >= MAX_NORMALIZED) map.delete(map.keys().next().value!);
  map.set(key, value);
};

/** The text with every run of ASCII digits replaced by one NUL (a character no SQL text carries). */
const digitTemplate = (text: string): string => text.replace(/[0-9]+/g, '\u0000');

/** A digit touching a letter: in a name, an exponent, a `0x`/`0o`/`0b` literal (where 8 or 9 may be junk). */
const DIGIT_BESIDE_LETTER = /[A-Za-z_\u0080-\uffff][0-9]|[0-9][A-Za-z_\u0080-\uffff]/;

/**
 * True when a text's normalised form holds every other text of its digit template too: the text
 * has no `$` (no parameter, no dollar quote, so every `$n` of the normalised form stands for one
 * of its constants), no digit touches a letter, and no digit survives normalisation (each lies
 * inside a constant). Another text of the template differs only in the contents of those digit
 * runs, between the same characters: the same tokens, constants only changing value, so the
 * same normalised form. (Digits the grammar reads as a count or a type modifier are kept by
 * normalisation and fail this.)
 */
const holdsForDigitTemplate = (text: string, result: string): boolean =>
  !text.includes('$') && result !== text && !DIGIT_BESIDE_LETTER.test(text) && !/[0-9]/.test(result.replace(/\$[0-9]+/g, ''));

/**
 * The text with constants replaced by `$n`; undefined when it does not parse. Under a new literal
 * in every statement (pgbench -S, an agent paging by id) the normaliser (a parse) runs once per
 * digit template rather than once per text.
 */
export const normalizeSql = (text: string): string | undefined => {
  assertLoaded();
  // A command's text is asked about several times in a row (session effects, the policy cache,
  // lineage, covered-column checks): the template's regular expression runs once for it.
  if (text === lastText) return lastResult;
  const known = normalized.get(text);
  if (known !== undefined) return remember(text, known ?? undefined);
  if (text.length > MAX_NORMALIZED_TEXT_CHARS) return normalizeOnce(text);
  const template = digitTemplate(text);
  const shared = byDigitTemplate.get(template);
  if (shared !== undefined) return remember(text, shared);
  const result = normalizeOnce(text);
  keep(normalized, text, result ?? null);
  if (result !== undefined && holdsForDigitTemplate(text, result)) keep(byDigitTemplate, template, result);
  return remember(text, result);
};

let lastText: string | undefined;
let lastResult: string | undefined;

const remember = (text: string, result: string | undefined): string | undefined => {
  lastText = text;
  lastResult = result;
  return result;
};

const normalizeOnce = (text: string): string | undefined => {
  try {
    return normalizeSync(text);
  } catch {
    return undefined;
  }
};
