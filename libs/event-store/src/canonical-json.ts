/**
 * RFC 8785 (JSON Canonicalization Scheme) writer, output identical to the `canonicalize` package
 * the store used first (stored chains must keep verifying; chain.spec.ts and
 * canonical-json.spec.ts compare the two): JCS strings and numbers are exactly ECMAScript's
 * JSON.stringify, keys sorted by UTF-16 code units (Array#sort's default). It is the largest CPU
 * cost of storing an event, hence plain loops and `+` rather than reduce and template strings,
 * and each member name's JSON text kept rather than written again for every event.
 */

/** Member names (with their colon) already written: events use a few dozen names over and over. */
const memberNames = new Map<string, string>();
/** Bounds what the cache holds whatever the events carry (an HTTP body's JSON may name anything). */
const MAX_MEMBER_NAMES = 4096;
const MAX_CACHED_NAME_LENGTH = 64;

/** A member name's JSON text with its colon (`"key":`), cached for the names events use over and over. */
export const memberName = (key: string): string => {
  let text = memberNames.get(key);
  if (text === undefined) {
    text = `${JSON.stringify(key)}:`;
    if (key.length <= MAX_CACHED_NAME_LENGTH && memberNames.size < MAX_MEMBER_NAMES) memberNames.set(key, text);
  }
  return text;
};

const writeCanonical = (value: unknown): string | undefined => {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (Number.isNaN(value)) throw new Error('NaN is not allowed');
      if (!Number.isFinite(value)) throw new Error('Infinity is not allowed');
      return JSON.stringify(value);
    case 'object': {
      const toJSON = (value as { toJSON?: unknown }).toJSON;
      if (typeof toJSON === 'function') return writeCanonical(toJSON.call(value));
      if (Array.isArray(value)) {
        let out = '[';
        for (let index = 0; index < value.length; index += 1) {
          const item: unknown = value[index];
          if (index > 0) out += ',';
          out += item === undefined || typeof item === 'symbol' ? 'null' : writeCanonical(item);
        }
        return out + ']';
      }
      const record = value as Record<string, unknown>;
      const keys = Object.keys(record);
      if (keys.length > 1) keys.sort();
      let out = '{';
      for (const key of keys) {
        const item = record[key];
        // Like the package: undefined and symbols are left out; a function is not (it writes undefined).
        if (item === undefined || typeof item === 'symbol') continue;
        if (out.length > 1) out += ',';
        out += memberName(key) + writeCanonical(item);
      }
      return out + '}';
    }
    default:
      return JSON.stringify(value);
  }
};

/** RFC 8785 text of a value, or undefined when it has none (undefined, a function, a symbol). */
export const canonicalText = (value: unknown): string | undefined => writeCanonical(value);

/** RFC 8785 (JSON Canonicalization Scheme) text of a value. */
export const canonicalJson = (value: unknown): string => {
  const text = writeCanonical(value);
  if (text === undefined) throw new TypeError('value has no JSON form');
  return text;
};
