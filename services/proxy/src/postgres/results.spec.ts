import { decodeDataRow, encodeDataRow, TypeOid, type FieldDescription } from '@sluice/codec-pg';
import { compileMasking, type ProfileMasker } from '@sluice/masking-engine';
import { describe, expect, it } from 'vitest';
import { ResultWithheldError } from '@sluice/contracts';
import { CopyOutSet, ResultColumnsCache, ResultSet } from './results.js';
import { maskBinaryVia } from '../../../../test/support/fake-masker.js';

const field = (name: string, typeOid: number, format = 0): FieldDescription => ({
  name,
  typeOid,
  format,
  tableOid: 0,
  attnum: 0,
  typeSize: -1,
  typeModifier: -1,
});

const textMasker: Pick<ProfileMasker, 'maskCell' | 'hasColumnRule'> = {
  maskCell: (value, column, counts) => {
    if (column?.name === 'ssn') return '***';
    if (value.includes('@')) {
      counts.email = (counts.email ?? 0) + 1;
      return value.replace(/[\w.]+@/, '***@');
    }
    if (value === '4111111111111111') return 'XXXX1111';
    return value;
  },
  hasColumnRule: (column) => column.name === 'ssn',
};
const masker: ProfileMasker = {
  name: 'test',
  ...textMasker,
  maskBinaryCell: maskBinaryVia(textMasker),
  maskText: (value) => value.replaceAll(/[\w.]+@/g, '***@'),
  maskJson: (value) => value,
};

const limits = { maxRows: 10, maxBytes: 1000 };
/** The body of an encoded DataRow (after code and length). */
const body = (values: (Buffer | string | null)[]): Buffer => encodeDataRow(values).subarray(5);
const int4 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
const int8 = (n: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(n);
  return b;
};

describe('ResultSet', () => {
  it('leaves a row untouched (no re-encode) when nothing in it is sensitive', () => {
    const set = new ResultSet([field('name', TypeOid.text), field('n', TypeOid.int4)], masker, limits);
    expect(set.row(body(['Ada', '1']))).toBeUndefined();
    expect(set.rows).toEqual([['Ada', '1']]);
  });

  it('re-encodes a text row with the masked values and their new lengths, keeping NULLs', () => {
    const set = new ResultSet([field('email', TypeOid.text), field('x', TypeOid.text)], masker, limits);
    const out = set.row(body(['ada@example.com', null]))!;
    expect(out[0]).toBe(0x44);
    expect(out.readUInt32BE(1)).toBe(out.length - 1);
    expect(decodeDataRow(out.subarray(5)).map((v) => v?.toString() ?? null)).toEqual(['***@example.com', null]);
    expect(set.counts).toEqual({ email: 1 });
  });

  it('nulls a binary integer column a rule covers, and one whose decimal text a detector changes', () => {
    const set = new ResultSet([field('ssn', TypeOid.int4, 1), field('card', TypeOid.int8, 1), field('id', TypeOid.int4, 1)], masker, limits);
    const out = set.row(body([int4(123456789), int8(4111111111111111n), int4(7)]))!;
    const values = decodeDataRow(out.subarray(5));
    expect(values[0]).toBeNull();
    expect(values[1]).toBeNull();
    expect(values[2]?.readInt32BE(0)).toBe(7);
    expect(set.rows).toEqual([[null, null, '7']]);
  });

  it('masks binary text and jsonb values and re-encodes jsonb with its version byte', () => {
    const set = new ResultSet([field('email', TypeOid.varchar, 1), field('doc', TypeOid.jsonb, 1)], masker, limits);
    const out = set.row(body([Buffer.from('bob@x.org'), Buffer.concat([Buffer.from([1]), Buffer.from('{"e":"bob@x.org"}')])]))!;
    const values = decodeDataRow(out.subarray(5));
    expect(values[0]!.toString()).toBe('***@x.org');
    expect(values[1]![0]).toBe(1);
    expect(values[1]!.toString('utf8', 1)).toBe('{"e":"***@x.org"}');
  });

  it('withholds a row whose width differs from its description', () => {
    const set = new ResultSet([field('a', TypeOid.text)], masker, limits);
    expect(() => set.row(body(['a', 'b']))).toThrow(ResultWithheldError);
  });

  it('records rows up to the limits and marks the event truncated beyond them', () => {
    const set = new ResultSet([field('a', TypeOid.text)], undefined, { maxRows: 2, maxBytes: 1000 });
    for (const v of ['1', '2', '3']) expect(set.row(body([v]))).toBeUndefined();
    expect(set.toEvent('c1')).toMatchObject({ commandId: 'c1', columns: ['a'], rows: [['1'], ['2']], rowCount: 3, truncated: true });
    const small = new ResultSet([field('a', TypeOid.text)], undefined, { maxRows: 100, maxBytes: 5 });
    for (const v of ['1234', '5678', '9']) small.row(body([v]));
    expect(small.toEvent('c2')).toMatchObject({ rows: [['1234']], rowCount: 3, truncated: true });
  });
});

describe('CopyOutSet', () => {
  it('masks each COPY line as free text and records the masked lines', () => {
    const set = new CopyOutSet(false, masker, limits);
    const out = set.data(Buffer.from('1\tada@example.com\n'))!;
    expect(out.subarray(5).toString()).toBe('1\t***@example.com\n');
    expect(set.data(Buffer.from('2\tnothing\n'))).toBeUndefined();
    expect(set.toEvent('c').rows).toEqual([['1\t***@example.com'], ['2\tnothing']]);
  });

  it('refuses binary COPY when a profile applies, since it cannot be masked', () => {
    expect(() => new CopyOutSet(true, masker, limits)).toThrow(ResultWithheldError);
  });
});

describe('ResultSet with the real masking engine', () => {
  const pii = compileMasking(
    {
      defaultRegion: 'US',
      detectors: [],
      profiles: { pii: { detectors: ['email', 'credit_card', 'us_ssn'], strategy: 'partial', columns: [{ match: '(?i)ssn', strategy: 'redact' }] } },
    },
    { hashKey: 'k' },
  ).profile('pii')!;

  it('sends no raw value a profile covers, in text or binary format, and keeps names and amounts', () => {
    const set = new ResultSet(
      [field('name', TypeOid.text), field('email', TypeOid.text), field('ssn', TypeOid.int4, 1), field('card', TypeOid.int8, 1), field('amount', TypeOid.int4, 1)],
      pii,
      limits,
    );
    const out = set.row(body(['Ada Lovelace', 'ada@example.com', int4(123456789), int8(4111111111111111n), int4(1250)]))!;
    const values = decodeDataRow(out.subarray(5));
    expect(values[0]!.toString()).toBe('Ada Lovelace');
    expect(values[1]!.toString()).not.toContain('ada@');
    expect(values[2]).toBeNull();
    expect(values[3]).toBeNull();
    expect(values[4]!.readInt32BE(0)).toBe(1250);
    expect(JSON.stringify(set.toEvent('c'))).not.toContain('ada@example.com');
  });

  it('masks a column by the rule of the column it derives from, and only that column', () => {
    const set = new ResultSet([field('tail', TypeOid.text), field('name', TypeOid.text)], pii, limits, undefined, [
      [{ name: 'ssn', qualifiedName: 'public.people.ssn' }],
      [{ name: 'name', qualifiedName: 'public.people.name' }],
    ]);
    const out = set.row(body(['6789', 'Ada Lovelace']))!;
    expect(decodeDataRow(out.subarray(5)).map((value) => value?.toString())).toEqual(['[REDACTED]', 'Ada Lovelace']);
    expect(set.counts).toEqual({ 'column:(?i)ssn': 1 });
  });
});

describe('a first row larger than the recording budget', () => {
  it('is recorded cut to maxBytes (truncated), not whole, while the agent gets it unchanged', () => {
    const set = new ResultSet([field('big', TypeOid.text), field('n', TypeOid.text)], undefined, { maxRows: 10, maxBytes: 1024 });
    const body = encodeDataRow(['x'.repeat(3 * 1024 * 1024), '7']).subarray(5);
    expect(set.row(body)).toBeUndefined();
    const event = set.toEvent('c1');
    expect(event.truncated).toBe(true);
    // maxBytes bounds the row's JSON: its brackets and comma and each cell's quotes and comma take 9 of the 1024.
    expect(event.rows).toEqual([['x'.repeat(1024 - 9), '']]);
    expect(Buffer.byteLength(JSON.stringify(event.rows))).toBeLessThanOrEqual(1024);
    expect(event.bytes).toBe(body.length);
  });
});

describe('ResultColumnsCache for an Execute\'s columns', () => {
  const masker = {} as ProfileMasker;
  const qualify = (tableOid: number, attnum: number): string | undefined => (tableOid === 0 ? undefined : `public.t.c${attnum}`);
  const none = () => undefined;
  const described = (format = 0, tableOid = 0): FieldDescription[] => [{ ...field('ssn', TypeOid.text, format), tableOid, attnum: 1 }, field('n', TypeOid.int4, format)];

  it('gives a portal describing the same columns the same column objects, so the masker plans them once', () => {
    const cache = new ResultColumnsCache();
    const first = cache.ofFields(described(), masker, undefined, undefined, 0, qualify, none);
    expect(cache.ofFields(described(), masker, undefined, undefined, 0, qualify, none)).toBe(first);
  });

  it('works the columns out again when anything they are masked by differs: a format, the table, the masker, the lineage, the catalog facts, the statement', () => {
    for (const [fields, other, lineage, catalog, statement] of [
      [described(1), masker, undefined, undefined, 0],
      [described(0, 16384), masker, undefined, undefined, 0],
      [described(), {} as ProfileMasker, undefined, undefined, 0],
      [described(), masker, {}, undefined, 0],
      [described(), masker, undefined, new Map(), 0],
      [described(), masker, undefined, undefined, 1],
    ] as const) {
      const fresh = new ResultColumnsCache();
      const columns = fresh.ofFields(described(), masker, undefined, undefined, 0, qualify, none);
      expect(fresh.ofFields(fields, other, lineage, catalog, statement, qualify, none)).not.toBe(columns);
    }
  });

  it('works the columns out again when the catalog names a column differently now', () => {
    const cache = new ResultColumnsCache();
    const first = cache.ofFields(described(0, 16384), masker, undefined, undefined, 0, qualify, none);
    const renamed = (_tableOid: number, attnum: number): string | undefined => `public.renamed.c${attnum}`;
    const again = cache.ofFields(described(0, 16384), masker, undefined, undefined, 0, renamed, none);
    expect(again).not.toBe(first);
    expect(again.columns[0]!.info.qualifiedName).toBe('public.renamed.c1');
  });
});
