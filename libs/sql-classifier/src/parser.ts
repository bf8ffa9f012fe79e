import { fingerprintSync, loadModule, normalizeSync } from 'libpg-query';

let loading: Promise<void> | undefined;
let loaded = false;

/** Loads the PostgreSQL parser (WASM) once; every other function needs it. */
export const loadSqlClassifier = (): Promise<void> => {
  loading ??= loadModule().then(() => {
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

/** The text with constants replaced by `$n`; undefined when it does not parse. */
export const normalizeSql = (text: string): string | undefined => {
  assertLoaded();
  const known = normalized.get(text);
  if (known !== undefined) return known ?? undefined;
  let result: string | undefined;
  try {
    result = normalizeSync(text);
  } catch {
    result = undefined;
  }
  if (text.length <= MAX_NORMALIZED_TEXT_CHARS) {
    if (normalized.size >= MAX_NORMALIZED) normalized.delete(normalized.keys().next().value!);
    normalized.set(text, result ?? null);
  }
  return result;
};
