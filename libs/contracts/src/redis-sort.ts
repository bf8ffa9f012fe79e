/** SORT's BY and GET patterns, read the way Redis reads them; shared by the policy (keys) and the proxy (fields). */

const text = (arg: Buffer | string | undefined): string => (arg === undefined ? '' : typeof arg === 'string' ? arg : arg.toString('latin1'));
const isOption = (arg: Buffer | string | undefined, option: string): boolean => text(arg).toLowerCase() === option;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Bytes of the well-formed UTF-8 sequence starting at `at` (WHATWG's ranges), or 0 when there is none. */
const utf8SequenceLength = (bytes: Uint8Array, at: number): number => {
  const lead = bytes[at]!;
  const continues = (offset: number, low = 0x80, high = 0xbf): boolean => {
    const byte = bytes[at + offset];
    return byte !== undefined && byte >= low && byte <= high;
  };
  if (lead < 0x80) return 1;
  if (lead >= 0xc2 && lead <= 0xdf) return continues(1) ? 2 : 0;
  if (lead >= 0xe0 && lead <= 0xef) return continues(1, lead === 0xe0 ? 0xa0 : 0x80, lead === 0xed ? 0x9f : 0xbf) && continues(2) ? 3 : 0;
  if (lead >= 0xf0 && lead <= 0xf4) return continues(1, lead === 0xf0 ? 0x90 : 0x80, lead === 0xf4 ? 0x8f : 0xbf) && continues(2) && continues(3) ? 4 : 0;
  return 0;
};

/**
 * A Redis key or key pattern as rules name it: rules are Unicode text, so the UTF-8 in a key
 * (`geheim-ü:1`) reaches them decoded, and each byte that is not part of UTF-8 as one character
 * of its value. Decoded sequence by sequence, not all or nothing: `geheim-ü:` followed by binary
 * bytes still starts with `geheim-ü:` for a rule on `geheim-ü:*`. Command names and options stay
 * byte-wise (Redis compares them ASCII-only).
 */
export const redisKeyName = (arg: Buffer | string | undefined): string => {
  if (arg === undefined || typeof arg === 'string') return arg ?? '';
  try {
    return utf8.decode(arg);
  } catch {
    let name = '';
    let run = 0;
    for (let at = 0; at < arg.length; ) {
      const length = utf8SequenceLength(arg, at);
      if (length > 0) {
        at += length;
        continue;
      }
      name += utf8.decode(arg.subarray(run, at)) + String.fromCharCode(arg[at]!);
      run = ++at;
    }
    return name + utf8.decode(arg.subarray(run));
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
