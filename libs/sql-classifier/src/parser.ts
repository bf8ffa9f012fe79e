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

/** The text with constants replaced by `$n`; undefined when it does not parse. */
export const normalizeSql = (text: string): string | undefined => {
  assertLoaded();
  try {
    return normalizeSync(text);
  } catch {
    return undefined;
  }
};
