import type { CopyFormat } from '@sluice/sql-classifier';

/**
 * One field of a COPY TO line: its raw text as written on the line, and its value (undefined for
 * NULL). Splitting follows PostgreSQL's COPY text and CSV formats.
 * @see https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9
 */
export interface CopyField {
  readonly raw: string;
  readonly value: string | undefined;
}

const TEXT_ESCAPES: Readonly<Record<string, string>> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v' };

/** Splits a text-format line (without its newline); undefined when it cannot be read with certainty. */
const splitText = (line: string, delimiter: string): CopyField[] | undefined => {
  if (delimiter.length !== 1) return undefined;
  const fields: CopyField[] = [];
  let raw = '';
  let value = '';
  for (let index = 0; index < line.length; index++) {
    const char = line[index]!;
    if (char === '\\') {
      const next = line[index + 1];
      if (next === undefined) return undefined;
      raw += char + next;
      index++;
      if (Object.hasOwn(TEXT_ESCAPES, next)) value += TEXT_ESCAPES[next];
      else if (/[0-7]/.test(next) || next === 'x') return undefined; // octal and hex escapes: rare, not worth guessing
      else value += next;
      continue;
    }
    if (char === delimiter) {
      fields.push({ raw, value: raw === '\\N' ? undefined : value });
      raw = '';
      value = '';
      continue;
    }
    raw += char;
    value += char;
  }
  fields.push({ raw, value: raw === '\\N' ? undefined : value });
  return fields;
};

/** Splits a CSV line (without its newline); undefined when it cannot be read with certainty. */
const splitCsv = (line: string, delimiter: string, quote: string, escape: string): CopyField[] | undefined => {
  if (delimiter.length !== 1 || quote.length !== 1 || escape.length !== 1) return undefined;
  const fields: CopyField[] = [];
  let start = 0;
  let value = '';
  let quoted = false;
  let inQuotes = false;
  for (let index = 0; index <= line.length; index++) {
    const char = line[index];
    if (inQuotes) {
      if (char === undefined) return undefined;
      if (char === escape && (line[index + 1] === quote || line[index + 1] === escape) && (escape !== quote || line[index + 1] === quote)) {
        value += line[index + 1];
        index++;
      } else if (char === quote) inQuotes = false;
      else value += char;
      continue;
    }
    if (char === undefined || char === delimiter) {
      const raw = line.slice(start, index);
      // An unquoted empty field is NULL (the default NULL string of CSV).
      fields.push({ raw, value: !quoted && raw === '' ? undefined : value });
      start = index + 1;
      value = '';
      quoted = false;
      continue;
    }
    if (char === quote) {
      inQuotes = true;
      quoted = true;
    } else value += char;
  }
  return fields;
};

export const splitCopyLine = (line: string, format: CopyFormat): CopyField[] | undefined =>
  format.format === 'csv' ? splitCsv(line, format.delimiter, format.quote, format.escape) : format.format === 'text' ? splitText(line, format.delimiter) : undefined;

/** Writes a value as a field of the format (null: SQL NULL). */
export const writeCopyField = (value: string | null, format: CopyFormat): string => {
  if (format.format === 'csv') {
    if (value === null) return '';
    const doubled = value.split(format.quote).join(format.escape + format.quote);
    return `${format.quote}${doubled}${format.quote}`;
  }
  if (value === null) return '\\N';
  let out = '';
  for (const char of value) {
    if (char === '\n') out += '\\n';
    else if (char === '\r') out += '\\r';
    else if (char === '\t') out += '\\t';
    else if (char === '\\' || char === format.delimiter) out += `\\${char}`;
    else out += char;
  }
  return out;
};
