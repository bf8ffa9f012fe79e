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
/**
 * `"ssn": "…"`, `"ssn": 123`, `"ssn": {…}` or `"ssn": […]`: a JSON member in text that is not one
 * JSON document. Its name is read as JSON reads it, escapes and all (`"\\u0073sn"` is `ssn`).
 */
const JSON_MEMBER = /"((?:[^"\\\n]|\\.){1,256})"\s*:\s*("((?:[^"\\]|\\.)*)"|-?\d[\d.eE+-]*|[{[])/g;
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

/** A JSON string's text as JSON reads it; as written when it holds an escape JSON does not know. */
const jsonString = (written: string): string => {
  if (!written.includes('\\')) return written;
  try {
    return JSON.parse(`"${written}"`) as string;
  } catch {
    return written;
  }
};

/**
 * Where the object or array opened at `open` ends, its strings' brackets not counted: the end of
 * the text when it is never closed (a cut or broken document), so that all of it is masked.
 */
const closingEnd = (text: string, open: number): number => {
  let depth = 0;
  for (let index = open; index < text.length; index++) {
    const char = text[index];
    if (char === '"') {
      for (index++; index < text.length && text[index] !== '"'; index++) if (text[index] === '\\') index++;
    } else if (char === '{' || char === '[') depth++;
    else if ((char === '}' || char === ']') && --depth === 0) return index + 1;
  }
  return text.length;
};

/** JSON members whose name a column rule covers, their value masked whole (an object or array as its text). */
const maskJsonMembers = (text: string, rule: (name: string) => boolean, mask: (name: string, value: string) => string): string => {
  if (!text.includes('"')) return text;
  let out = '';
  let copied = 0;
  JSON_MEMBER.lastIndex = 0;
  for (let match = JSON_MEMBER.exec(text); match !== null; match = JSON_MEMBER.exec(text)) {
    const [whole, writtenName, value, quoted] = match as unknown as [string, string, string, string | undefined];
    const name = jsonString(writtenName);
    // An object or array of a member not covered is read on: its own members are looked at next.
    if (!rule(name)) continue;
    let end = match.index + whole.length;
    let raw: string;
    if (value === '{' || value === '[') {
      end = closingEnd(text, end - 1);
      raw = text.slice(match.index + whole.length - 1, end);
    } else raw = quoted === undefined ? value : jsonString(quoted);
    out += `${text.slice(copied, match.index)}"${writtenName}": ${JSON.stringify(mask(name, raw))}`;
    copied = end;
    JSON_MEMBER.lastIndex = end;
  }
  return copied === 0 ? text : out + text.slice(copied);
};

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
  out = maskJsonMembers(out, rule, mask);
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
