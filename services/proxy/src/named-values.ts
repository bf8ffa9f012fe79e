import type { ColumnInfo, MaskCounts, ProfileMasker } from '@sluice/masking-engine';

/** Field names whose ColumnInfo is kept: beyond this many, the set starts again. */
const NAMED_COLUMNS_KEPT = 1024;
/** Longer names get a ColumnInfo of their own each time (not kept). */
const NAMED_COLUMN_MAX_CHARS = 128;
const namedColumns = new Map<string, ColumnInfo>();

/**
 * The ColumnInfo of a field known only by its name (a JSON member, a hash field, a named value):
 * one object per name, so a masker's plan for it (kept per ColumnInfo object) is worked out once,
 * not for every member of every reply.
 */
export const columnNamed = (name: string): ColumnInfo => {
  let column = namedColumns.get(name);
  if (column) return column;
  column = Object.freeze({ name });
  if (name.length <= NAMED_COLUMN_MAX_CHARS) {
    if (namedColumns.size >= NAMED_COLUMNS_KEPT) namedColumns.clear();
    namedColumns.set(name, column);
  }
  return column;
};

/** Longest name looked at: longer "names" are not field names. */
const NAME = '[A-Za-z_][\\w.\\-]{0,127}';

/** `<ssn>…</ssn>`, `<p:ssn attr="x">…</p:ssn>`: an XML element holding only text. */
const XML_ELEMENT = new RegExp(`<((?:${NAME}:)?(${NAME}))(\\s[^<>]*)?>([^<]*)</\\1\\s*>`, 'g');
/** `ssn="…"` or `ssn='…'`: an XML/HTML attribute or a quoted assignment. */
const QUOTED_ASSIGNMENT = new RegExp(`(^|[\\s<,;?&({\\[])((?:${NAME}:)?(${NAME}))\\s*=\\s*("([^"]*)"|'([^']*)')`, 'g');
/** `"ssn": "…"` or `"ssn": 123`: a JSON member in text that is not one JSON document. */
const JSON_MEMBER = new RegExp(`"(${NAME})"\\s*:\\s*("((?:[^"\\\\]|\\\\.)*)"|-?\\d[\\d.eE+\\-]*)`, 'g');
/** `ssn=…` up to the next separator: forms, query strings, logs. */
const PLAIN_ASSIGNMENT = new RegExp(`(^|[\\s,;?&("'{\\[])(${NAME})=([^&;\\s,"'<>)}\\]]*)`, 'g');
/** `ssn: …` to the end of the line: YAML, headers in a dump, `key: value` logs. */
// The value runs to the end of the line and is trimmed in code: `(.+?)[ \t]*$` would backtrack
// quadratically over a long run of blanks.
const COLON_LINE = new RegExp(`^([ \\t\\-]*)(${NAME})[ \\t]*:[ \\t]+([^\\n]*)$`, 'gm');

/** Trailing blanks cut by a loop: `/[ \t]+$/` is quadratic on a long run of blanks not at the end. */
const trimBlanksEnd = (text: string): string => {
  let end = text.length;
  while (end > 0 && (text[end - 1] === ' ' || text[end - 1] === '\t' || text[end - 1] === '\r')) end--;
  return text.slice(0, end);
};

const escapeXml = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;');

/**
 * Masks values that a text names, by the column rule of their name: what a column rule covers in
 * a table or a JSON member, it covers in XML (`<ssn>`), attributes (`ssn="…"`), forms and logs
 * (`ssn=…`), JSON fragments (`"ssn": …`) and YAML (`ssn: …`). Only names a column rule matches are
 * touched; detectors run on the result as before. A value is masked whole (its rule's strategy);
 * a NULL from the rule becomes an empty value.
 */
export const maskNamedValues = (text: string, masker: ProfileMasker, counts: MaskCounts): string => {
  if (masker.columnRuleCount === 0) return text;
  // Every form below needs one of these characters: without them (most values) there is nothing to look for.
  if (!text.includes('=') && !text.includes(':') && !text.includes('<')) return text;
  const rule = (name: string): boolean => masker.hasColumnRule(columnNamed(name));
  const mask = (name: string, value: string): string => masker.maskCell(value, columnNamed(name), counts) ?? '';
  let out = text;
  out = out.replace(XML_ELEMENT, (whole, qualified: string, local: string, attributes: string | undefined, value: string) =>
    rule(local) ? `<${qualified}${attributes ?? ''}>${escapeXml(mask(local, value))}</${qualified}>` : whole,
  );
  out = out.replace(QUOTED_ASSIGNMENT, (whole, before: string, qualified: string, local: string, _quoted: string, double?: string, single?: string) => {
    if (!rule(local)) return whole;
    const masked = escapeXml(mask(local, double ?? single ?? ''));
    return double !== undefined ? `${before}${qualified}="${masked}"` : `${before}${qualified}='${masked.replace(/'/g, '&#39;')}'`;
  });
  out = out.replace(JSON_MEMBER, (whole, name: string, _value: string, escaped?: string) => {
    if (!rule(name)) return whole;
    let raw = escaped ?? _value;
    if (escaped !== undefined) {
      try {
        raw = JSON.parse(`"${escaped}"`) as string;
      } catch {
        // An escape JSON does not know: masked as written.
      }
    }
    return `"${name}": ${JSON.stringify(mask(name, raw))}`;
  });
  out = out.replace(PLAIN_ASSIGNMENT, (whole, before: string, name: string, value: string) => {
    let decoded = value;
    try {
      decoded = decodeURIComponent(value.replace(/\+/g, ' '));
    } catch {
      // Not percent-encoded: masked as written.
    }
    return rule(name) && value !== '' ? `${before}${name}=${mask(name, decoded)}` : whole;
  });
  out = out.replace(COLON_LINE, (whole, indent: string, name: string, value: string) => {
    const trimmed = trimBlanksEnd(value);
    return rule(name) && trimmed !== '' ? `${indent}${name}: ${mask(name, trimmed)}${value.slice(trimmed.length)}` : whole;
  });
  return out;
};
