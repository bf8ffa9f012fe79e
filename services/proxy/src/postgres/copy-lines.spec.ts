import { describe, expect, it } from 'vitest';
import type { CopyFormat } from '@sluice/sql-classifier';
import { splitCopyLine, writeCopyField } from './copy-lines.js';

const TEXT: CopyFormat = { format: 'text', delimiter: '\t', quote: '"', escape: '"', header: false };
const CSV: CopyFormat = { format: 'csv', delimiter: ',', quote: '"', escape: '"', header: false };

describe('COPY lines', () => {
  it('splits a text line on unescaped delimiters, reading \\N as NULL and unescaping values', () => {
    expect(splitCopyLine('1\\t2\tAda\\\\x\t\\N', TEXT)).toEqual([
      { raw: '1\\t2', value: '1\t2' },
      { raw: 'Ada\\\\x', value: 'Ada\\x' },
      { raw: '\\N', value: undefined },
    ]);
  });
  it('refuses a text line it cannot read with certainty (octal escapes)', () => {
    expect(splitCopyLine('\\101', TEXT)).toBeUndefined();
  });
  it('splits a CSV line with quoted delimiters, doubled quotes and an unquoted empty NULL', () => {
    expect(splitCopyLine('1,"a,""b""",,""', CSV)).toEqual([
      { raw: '1', value: '1' },
      { raw: '"a,""b"""', value: 'a,"b"' },
      { raw: '', value: undefined },
      { raw: '""', value: '' },
    ]);
    expect(splitCopyLine('1,"open', CSV)).toBeUndefined();
  });
  it('splits CSV with a custom delimiter and escape', () => {
    expect(splitCopyLine(`1;'a\\'b'`, { ...CSV, delimiter: ';', quote: "'", escape: '\\' })).toEqual([
      { raw: '1', value: '1' },
      { raw: `'a\\'b'`, value: "a'b" },
    ]);
  });
  it('writes values back in the format', () => {
    expect(writeCopyField('a\tb\\c', TEXT)).toBe('a\\tb\\\\c');
    expect(writeCopyField(null, TEXT)).toBe('\\N');
    expect(writeCopyField('say "hi"', CSV)).toBe('"say ""hi"""');
    expect(writeCopyField(null, CSV)).toBe('');
  });
});
