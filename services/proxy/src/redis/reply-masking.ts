import { isUtf8 } from 'node:buffer';
import type { RespValue } from '@sluice/codec-resp';
import { assertJsonDepthWithin, assertJsonWalkable, COLUMN_COUNT_PREFIX, COLUMN_REDACTED, type MaskCounts, type ProfileMasker } from '@sluice/masking-engine';
import { columnNamed, maskNamedValues } from '../named-values.js';

/**
 * A value of a hash field whose name the reply does not carry (HVALS): the profile's strictest
 * treatment applies, i.e. the whole value is redacted whenever the profile has column rules.
 */
export const UNKNOWN_FIELD: unique symbol = Symbol('unknown field');
export type FieldName = string | typeof UNKNOWN_FIELD | undefined;

/** Where a reply's strings come from, so column rules (by field name) can apply. */
export type FieldHint =
  /** A flat RESP2 array of field/value pairs (HGETALL, HRANDFIELD … WITHVALUES, CONFIG GET). */
  | { readonly kind: 'pairs' }
  /** A RESP3 array of [field, value] arrays (HRANDFIELD … WITHVALUES). */
  | { readonly kind: 'pairList' }
  /** Values of these fields in order (HMGET), or one field (HGET). */
  | { readonly kind: 'fields'; readonly names: readonly FieldName[] }
  /** Values repeating these fields, one round per element (SORT … GET a GET b->f). */
  | { readonly kind: 'cycle'; readonly names: readonly FieldName[] }
  /** Values of fields the reply does not name (HVALS). */
  | { readonly kind: 'unknownFields' }
  /** `[cursor, items]` of a SCAN-family reply; the items follow `inner`. */
  | { readonly kind: 'scan'; readonly inner: FieldHint | undefined }
  /** Stream entries: `[id, [field, value, …]]` each (XRANGE, XCLAIM). */
  | { readonly kind: 'entries' }
  /** Streams and their entries: `[[name, entries], …]` in RESP2, a map name → entries in RESP3 (XREAD). */
  | { readonly kind: 'streams' }
  /** Every string anywhere in the reply may be a field's value (scripts, XINFO, MONITOR): the strictest rule. */
  | { readonly kind: 'everyValue' };

/** Deep equality of two parsed JSON values: did masking change anything? */
export const sameJson = (a: unknown, b: unknown): boolean => {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((item, i) => sameJson(item, b[i]));
  if (Array.isArray(b)) return false;
  const aKeys = Object.keys(a);
  const bRecord = b as Record<string, unknown>;
  if (aKeys.length !== Object.keys(bRecord).length) return false;
  return aKeys.every((k) => k in bRecord && sameJson((a as Record<string, unknown>)[k], bRecord[k]));
};

/**
 * Masks a parsed JSON document: column rules apply to object members by their key (a member
 * named `ssn` is a field named `ssn`, as in a hash or a header), whatever the value's shape; the
 * rest is walked by maskJson (detectors, with hints from key names).
 */
export const maskJsonDocument = (document: unknown, masker: ProfileMasker, counts: MaskCounts): unknown => {
  if (masker.columnRuleCount === 0) return masker.maskJson(document, counts);
  const covered = maskCoveredMembers(document, masker, counts, 0, 0);
  // maskJson applies the same rules by key: every covered member it meets is one masked and
  // counted above, so only its detectors' findings count.
  const walkCounts: MaskCounts = {};
  const masked = masker.maskJson(covered, walkCounts);
  for (const kind in walkCounts) if (!kind.startsWith(COLUMN_COUNT_PREFIX)) counts[kind] = (counts[kind] ?? 0) + walkCounts[kind]!;
  return masked;
};

/** A covered member's value as the text its rule masks; the value is not walked, so its depth is checked first. */
const coveredText = (value: unknown, depth: number): string => {
  assertJsonWalkable(value, depth);
  return JSON.stringify(value);
};

/** JSON inside a JSON string is walked this deep at most (`"{\"a\": \"{…}\"}"`). */
const MAX_NESTED_JSON = 4;

/**
 * The document with covered members masked; a part with nothing to mask is returned as it is (the
 * same object), so a document that needs nothing here is not copied: maskJson walks it next.
 * `depth`: arrays and objects above this node in its document.
 */
const maskCoveredMembers = (node: unknown, masker: ProfileMasker, counts: MaskCounts, nested: number, depth: number): unknown => {
  if (typeof node === 'string') return maskCoveredText(node, masker, counts, nested);
  if (node === null || typeof node !== 'object') return node;
  assertJsonDepthWithin(depth);
  if (Array.isArray(node)) {
    let out: unknown[] | undefined;
    for (let index = 0; index < node.length; index++) {
      const item: unknown = node[index];
      const masked = maskCoveredMembers(item, masker, counts, nested, depth + 1);
      if (out) out[index] = masked;
      else if (masked !== item) {
        out = node.slice();
        out[index] = masked;
      }
    }
    return out ?? node;
  }
  const members = Object.entries(node as Record<string, unknown>);
  let out: Record<string, unknown> | undefined;
  for (let index = 0; index < members.length; index++) {
    const [key, value] = members[index]!;
    const column = columnNamed(key);
    // A nested object or array under a covered key is covered whole, as its text.
    const masked =
      value !== null && masker.hasColumnRule(column)
        ? masker.maskCell(typeof value === 'string' ? value : coveredText(value, depth + 1), column, counts)
        : maskCoveredMembers(value, masker, counts, nested, depth + 1);
    if (out) out[key] = masked;
    else if (masked !== value) {
      // No prototype: a `__proto__` member stays a member.
      out = Object.create(null) as Record<string, unknown>;
      for (let before = 0; before < index; before++) out[members[before]![0]] = members[before]![1];
      out[key] = masked;
    }
  }
  return out ?? node;
};

/**
 * A string inside a JSON document: JSON encoded again (`"payload": "{\"ssn\": …}"`) is walked
 * and re-encoded, text that names values (`ssn=…`) has them masked by their rule.
 */
const maskCoveredText = (text: string, masker: ProfileMasker, counts: MaskCounts, nested: number): string => {
  const parsed = parseJsonDocument(text);
  if (parsed !== undefined) {
    if (nested >= MAX_NESTED_JSON) return COLUMN_REDACTED;
    const walked = maskCoveredMembers(parsed, masker, counts, nested + 1, 0);
    return sameJson(parsed, walked) ? text : JSON.stringify(walked);
  }
  return maskNamedValues(text, masker, counts);
};

export const looksLikeJson = (text: string): boolean => {
  const first = text.trimStart()[0];
  return first === '{' || first === '[';
};

/** The object or array a text holds as JSON; undefined when it holds none. */
const parseJsonDocument = (text: string): object | undefined => {
  if (!looksLikeJson(text)) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  return typeof parsed === 'object' && parsed !== null ? parsed : undefined;
};

/**
 * Masks one string value: a JSON object/array is walked with maskJson, a value of a named
 * field goes through maskCell (column rules apply), anything else through maskText.
 * Returns null when a column rule nulls the value.
 */
export const maskString = (text: string, masker: ProfileMasker, counts: MaskCounts, field: FieldName): string | null => {
  if (field === UNKNOWN_FIELD) {
    if (masker.columnRuleCount === 0) return maskString(text, masker, counts, undefined);
    counts['column:unknown-field'] = (counts['column:unknown-field'] ?? 0) + 1;
    return COLUMN_REDACTED;
  }
  if (field !== undefined && masker.hasColumnRule(columnNamed(field))) return masker.maskCell(text, columnNamed(field), counts);
  const parsed = parseJsonDocument(text);
  if (parsed !== undefined) {
    const masked = maskJsonDocument(parsed, masker, counts);
    return sameJson(parsed, masked) ? text : JSON.stringify(masked);
  }
  if (field !== undefined) return masker.maskCell(text, columnNamed(field), counts);
  return masker.maskText(maskNamedValues(text, masker, counts), counts);
};

const maskBlob = (
  value: Buffer,
  masker: ProfileMasker,
  counts: MaskCounts,
  field: FieldName,
): Buffer | null => {
  // Binary values (not UTF-8) cannot carry text a detector finds; re-decoding them would corrupt them.
  if (!isUtf8(value)) return value;
  const text = value.toString('utf8');
  const masked = maskString(text, masker, counts, field);
  if (masked === null) return null;
  return masked === text ? value : Buffer.from(masked, 'utf8');
};

const scalarText = (value: RespValue): string | undefined => {
  switch (value.type) {
    case 'simple':
      return value.value;
    case 'bulk':
    case 'verbatim':
      return value.value.toString('utf8');
    case 'integer':
    case 'bigNumber':
      return value.value.toString();
    default:
      return undefined;
  }
};

/**
 * Walks a reply and masks every string in it. Returns the same object when nothing changed, so
 * the caller can forward the original bytes.
 */
export const maskReply = (
  value: RespValue,
  masker: ProfileMasker,
  counts: MaskCounts,
  protocol: 2 | 3,
  hint?: FieldHint,
  field?: FieldName,
): RespValue => {
  if (hint?.kind === 'everyValue') field = UNKNOWN_FIELD;
  switch (value.type) {
    case 'simple':
    case 'error': {
      const masked = maskString(value.value, masker, counts, field);
      if (masked === null) return { type: 'null', form: protocol === 3 ? '_' : '$' };
      return masked === value.value ? value : { type: value.type, value: masked };
    }
    case 'bulk':
    case 'blobError': {
      const masked = maskBlob(value.value, masker, counts, field);
      if (masked === null) return { type: 'null', form: protocol === 3 ? '_' : '$' };
      return masked === value.value ? value : { type: value.type, value: masked };
    }
    case 'verbatim': {
      const masked = maskBlob(value.value, masker, counts, undefined);
      return masked === value.value || masked === null ? value : { type: 'verbatim', format: value.format, value: masked };
    }
    case 'array':
    case 'set':
    case 'push': {
      let changed = false;
      const items = value.items.map((item, index) => {
        let itemField: FieldName;
        let itemHint: FieldHint | undefined;
        if (hint?.kind === 'pairs' && index % 2 === 1) itemField = scalarText(value.items[index - 1]!) ?? UNKNOWN_FIELD;
        else if (hint?.kind === 'fields') itemField = hint.names[index] ?? UNKNOWN_FIELD;
        else if (hint?.kind === 'cycle') itemField = hint.names[index % hint.names.length];
        else if (hint?.kind === 'unknownFields') itemField = UNKNOWN_FIELD;
        else if (hint?.kind === 'pairList') itemHint = { kind: 'pairs' };
        else if (hint?.kind === 'scan' && index === 1) itemHint = hint.inner;
        else if (hint?.kind === 'entries') itemHint = { kind: 'scan', inner: { kind: 'pairs' } };
        else if (hint?.kind === 'streams') itemHint = { kind: 'scan', inner: { kind: 'entries' } };
        else if (hint?.kind === 'everyValue') itemHint = hint;
        const masked = maskReply(item, masker, counts, protocol, itemHint, itemField);
        if (masked !== item) changed = true;
        return masked;
      });
      return changed ? { type: value.type, items } : value;
    }
    case 'map':
    case 'attribute': {
      let changed = false;
      const maskEntries = (entries: readonly (readonly [RespValue, RespValue])[]) =>
        entries.map(([key, entry]) => {
          const strict = hint?.kind === 'everyValue';
          const maskedKey = maskReply(key, masker, counts, protocol);
          const valueHint: FieldHint | undefined = strict ? hint : hint?.kind === 'streams' ? { kind: 'entries' } : undefined;
          const valueField = strict ? UNKNOWN_FIELD : valueHint ? undefined : scalarText(key);
          const maskedValue = maskReply(entry, masker, counts, protocol, valueHint, valueField);
          if (maskedKey !== key || maskedValue !== entry) changed = true;
          return [maskedKey, maskedValue] as const;
        });
      if (value.type === 'map') {
        const entries = maskEntries(value.entries);
        return changed ? { type: 'map', entries } : value;
      }
      const attributes = maskEntries(value.attributes);
      const inner = maskReply(value.value, masker, counts, protocol, hint, field);
      return changed || inner !== value.value ? { type: 'attribute', attributes, value: inner } : value;
    }
    default:
      // Integers, doubles, booleans, big numbers and nulls carry no text.
      return value;
  }
};

const plain = (value: RespValue): unknown => {
  switch (value.type) {
    case 'null':
      return null;
    case 'boolean':
      return value.value;
    case 'double':
      return value.raw;
    case 'integer':
    case 'bigNumber':
      return value.value.toString();
    case 'simple':
    case 'error':
      return value.value;
    case 'bulk':
    case 'blobError':
    case 'verbatim':
      return value.value.toString('utf8');
    case 'array':
    case 'set':
    case 'push':
      return value.items.map(plain);
    case 'map':
      return value.entries.map(([k, v]) => [plain(k), plain(v)]);
    case 'attribute':
      return plain(value.value);
  }
};

const cell = (value: RespValue): string | null => {
  const unwrapped = plain(value);
  if (unwrapped === null) return null;
  return typeof unwrapped === 'string' ? unwrapped : JSON.stringify(unwrapped);
};

/** Column names are shared by every reply of a shape: nothing changes a recorded result's columns. */
const VALUE_COLUMNS: readonly string[] = Object.freeze(['value']);
const KEY_VALUE_COLUMNS: readonly string[] = Object.freeze(['key', 'value']);

export interface ReplyRows {
  readonly columns: readonly string[];
  readonly rows: (string | null)[][];
  readonly rowCount: number;
  readonly truncated: boolean;
}

/**
 * Flattens a (masked) reply into rows of strings for result.returned: a map gives key/value
 * rows, an array one row per element, a scalar one row. Stops at the recording limits.
 */
export const flattenReply = (value: RespValue, limits: { readonly maxRows: number; readonly maxBytes: number }): ReplyRows => {
  const inner = value.type === 'attribute' ? value.value : value;
  let columns: readonly string[];
  let all: RespValue[][];
  if (inner.type === 'map') {
    columns = KEY_VALUE_COLUMNS;
    all = inner.entries.map(([k, v]) => [k, v]);
  } else if (inner.type === 'array' || inner.type === 'set' || inner.type === 'push') {
    columns = VALUE_COLUMNS;
    all = inner.items.map((item) => [item]);
  } else {
    // One row of one cell (GET, INCR, +OK: most replies), the same as the walk below gives it,
    // without its arrays.
    const text = cell(inner);
    const kept = limits.maxRows > 0 && (text?.length ?? 0) <= limits.maxBytes;
    return { columns: VALUE_COLUMNS, rows: kept ? [[text]] : [], rowCount: 1, truncated: !kept };
  }
  const rows: (string | null)[][] = [];
  let bytes = 0;
  let truncated = false;
  for (const row of all) {
    if (rows.length >= limits.maxRows) {
      truncated = true;
      break;
    }
    const cells = row.map(cell);
    const size = cells.reduce((sum, text) => sum + (text?.length ?? 0), 0);
    if (bytes + size > limits.maxBytes) {
      truncated = true;
      break;
    }
    bytes += size;
    rows.push(cells);
  }
  return { columns, rows, rowCount: all.length, truncated };
};
