/** SORT's BY and GET patterns, read the way Redis reads them; shared by the policy (keys) and the proxy (fields). */

const text = (arg: Buffer | string | undefined): string => (arg === undefined ? '' : typeof arg === 'string' ? arg : arg.toString('latin1'));
const isOption = (arg: Buffer | string | undefined, option: string): boolean => text(arg).toLowerCase() === option;
const utf8 = new TextDecoder('utf-8', { fatal: true });
/**
 * A Redis key or key pattern as rules name it: rules are Unicode text, so a UTF-8 key
 * (`geheim-ü:1`) reaches them decoded as UTF-8, not byte by byte; a key that is not UTF-8 keeps
 * one character per byte. Command names and options stay byte-wise (Redis compares them ASCII-only).
 */
export const redisKeyName = (arg: Buffer | string | undefined): string => {
  if (arg === undefined || typeof arg === 'string') return arg ?? '';
  try {
    return utf8.decode(arg);
  } catch {
    return arg.toString('latin1');
  }
};

/**
 * The part of a SORT BY/GET pattern that names keys: Redis replaces the first `*` with each
 * element and reads `key->field` as a hash field. A pattern without `*` (BY nosort, GET #) reads
 * no key at all.
 * @see https://github.com/redis/redis/blob/7.0/src/sort.c (lookupKeyByPattern)
 */
export const sortPatternKey = (pattern: string): { readonly key: string; readonly field: string | undefined } | undefined => {
  const star = pattern.indexOf('*');
  if (star < 0) return undefined;
  const arrow = pattern.indexOf('->', star + 1);
  if (arrow >= 0 && arrow + 2 < pattern.length) return { key: pattern.slice(0, arrow), field: pattern.slice(arrow + 2) };
  return { key: pattern, field: undefined };
};

/** SORT key [BY pattern] [LIMIT offset count] [GET pattern …] [ASC|DESC] [ALPHA] [STORE dest], walked as sortCommandGeneric does. */
export const sortOptions = (args: readonly (Buffer | string)[]): { by: string | undefined; gets: string[]; store: string | undefined } => {
  let by: string | undefined;
  let store: string | undefined;
  const gets: string[] = [];
  for (let index = 2; index < args.length; index++) {
    const more = args.length - index - 1;
    if (isOption(args[index], 'limit') && more >= 2) index += 2;
    else if (isOption(args[index], 'by') && more >= 1) by = redisKeyName(args[++index]);
    else if (isOption(args[index], 'get') && more >= 1) gets.push(redisKeyName(args[++index]));
    else if (isOption(args[index], 'store') && more >= 1) store = redisKeyName(args[++index]);
  }
  return { by, gets, store };
};
