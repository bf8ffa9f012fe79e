import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { compileMasking, decodeBinaryArray, type ColumnInfo, type MaskCounts } from '@sluice/masking-engine';

/**
 * Masked values must stay valid for their column type: every value the engine returns for a real
 * PostgreSQL result is sent back to PostgreSQL as a literal of the same type, which must accept it.
 */
const ALL = ['credit_card', 'email', 'phone', 'us_ssn', 'iban', 'ipv4', 'ipv6', 'jwt', 'secret'];
const masking = compileMasking(
  {
    defaultRegion: 'US',
    detectors: [],
    profiles: {
      pii: { detectors: ALL, strategy: 'partial', columns: [{ match: '(?i)^ssn$', strategy: 'redact' }] },
      hashed: { detectors: ALL, strategy: 'hash', columns: [{ match: '^forced_', strategy: 'hash' }] },
    },
  },
  { hashKey: 'pg-int' },
);

const QUERY = `
  SELECT
    'Ann Smith'::text AS name,
    'ann@example.com'::varchar AS email,
    'call +1 415 555 2671'::text AS note,
    '123-45-6789'::text AS ssn,
    4111111111111111::int8 AS card_int8,
    4111111111111111::numeric AS card_numeric,
    1234.56::numeric AS amount,
    '10.1.2.3'::inet AS client_ip,
    '550e8400-e29b-41d4-a716-446655440000'::uuid AS id,
    '2024-01-15 10:23:45+00'::timestamptz AS created_at,
    '{"email": "ann@example.com", "card": "4111 1111 1111 1111", "n": 1}'::jsonb AS profile,
    '{"a": "b"}'::json AS plain_json,
    ARRAY['ann@example.com', 'plain, with comma', NULL]::text[] AS emails,
    ARRAY[4111111111111111, 42]::int8[] AS numbers,
    ARRAY['{"e": "ann@example.com"}']::jsonb[] AS docs,
    'bob@example.com'::text AS forced_email,
    42::int4 AS forced_int
`;

describe('masked PostgreSQL values stay valid for their types', () => {
  let client: pg.Client;

  beforeAll(async () => {
    client = new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database: 'postgres' });
    await client.connect();
  });

  afterAll(async () => {
    await client?.end();
  });

  /** Text-format result with raw strings (no client-side parsing). */
  const rawRows = async (): Promise<{ fields: pg.FieldDef[]; row: unknown[] }> => {
    const result = await client.query({ text: QUERY, rowMode: 'array', types: { getTypeParser: () => (value: unknown) => value } } as pg.QueryConfig);
    return { fields: result.fields, row: result.rows[0] as unknown[] };
  };

  const typeName = async (oid: number): Promise<string> => (await client.query<{ t: string }>('SELECT $1::regtype::text AS t', [oid])).rows[0]!.t;

  it.each(['pii', 'hashed'])('text format: PostgreSQL accepts every value the %s profile returns, as its own type', async (profileName) => {
    const masker = masking.profile(profileName)!;
    const { fields, row } = await rawRows();
    const counts: MaskCounts = {};
    const masked: Record<string, string | null> = {};
    for (const [index, field] of fields.entries()) {
      const column: ColumnInfo = { name: field.name, typeOid: field.dataTypeID };
      const value = masker.maskCell(row[index] as string, column, counts);
      masked[field.name] = value;
      if (value !== null) {
        const type = await typeName(field.dataTypeID);
        const echoed = await client.query<{ v: string }>(`SELECT $1::${type}::text AS v`, [value]);
        expect(echoed.rows).toHaveLength(1);
      }
    }
    expect(masked.name).toBe('Ann Smith');
    expect(masked.amount).toBe('1234.56');
    expect(masked.id).toBe('550e8400-e29b-41d4-a716-446655440000');
    expect(masked.created_at).toBe(row[fields.findIndex((field) => field.name === 'created_at')]);
    expect(masked.plain_json).toBe('{"a": "b"}');
    expect(masked.card_int8).toBeNull();
    expect(masked.card_numeric).toBeNull();
    expect(masked.client_ip).toBeNull();
    expect(masked.forced_int).toBe(profileName === 'hashed' ? null : '42');
    const everything = JSON.stringify(masked);
    for (const raw of ['ann@example.com', 'bob@example.com', '4111111111111111', '4111 1111 1111 1111', '415 555 2671', '123-45-6789', '10.1.2.3']) {
      expect(everything).not.toContain(raw);
    }
  });

  it('binary format: masked cells decode, and no raw value survives', async () => {
    // node-postgres hands binary cells over as strings, so the bytes come from the types' own
    // send functions: exactly what the server puts in a binary DataRow.
    const columns: [name: string, typeOid: number, send: string][] = [
      ['name', 25, "textsend('Ann Smith')"],
      ['email', 1043, "varcharsend('ann@example.com')"],
      ['card_int8', 20, 'int8send(4111111111111111)'],
      ['card_numeric', 1700, 'numeric_send(4111111111111111)'],
      ['amount', 1700, 'numeric_send(1234.56)'],
      ['client_ip', 869, "inet_send('10.1.2.3')"],
      ['id', 2950, "uuid_send('550e8400-e29b-41d4-a716-446655440000')"],
      ['profile', 3802, `jsonb_send('{"email": "ann@example.com", "card": "4111 1111 1111 1111", "n": 1}')`],
      ['emails', 1009, "array_send(ARRAY['ann@example.com', 'plain, with comma', NULL]::text[])"],
      ['numbers', 1016, 'array_send(ARRAY[4111111111111111, 42]::int8[])'],
    ];
    const result = await client.query({ text: `SELECT ${columns.map(([, , send]) => send).join(', ')}`, rowMode: 'array' });
    const row = result.rows[0] as Buffer[];
    const masker = masking.profile('pii')!;
    const counts: MaskCounts = {};
    const out = new Map<string, Uint8Array | null>();
    columns.forEach(([name, typeOid], index) => out.set(name, masker.maskBinaryCell(row[index]!, { name, typeOid }, counts)));
    const input = new Map(columns.map(([name], index) => [name, row[index]!]));

    const text = (name: string): string => Buffer.from(out.get(name)!).toString('utf8');
    expect(text('email')).toBe('a***@example.com');
    expect(out.get('name')).toBe(input.get('name'));
    expect(out.get('amount')).toBe(input.get('amount'));
    expect(out.get('id')).toBe(input.get('id'));
    expect(out.get('card_int8')).toBeNull();
    expect(out.get('card_numeric')).toBeNull();
    expect(out.get('client_ip')).toBeNull();
    const profile = out.get('profile')!;
    expect(profile[0]).toBe(1);
    expect(JSON.parse(Buffer.from(profile.subarray(1)).toString())).toEqual({ email: 'a***@example.com', card: '**** **** **** 1111', n: 1 });
    const emails = decodeBinaryArray(out.get('emails')!)!;
    expect(emails.elements.map((element) => element && Buffer.from(element).toString())).toEqual(['a***@example.com', 'plain, with comma', null]);
    const numbers = decodeBinaryArray(out.get('numbers')!)!;
    expect(numbers.elements[0]).toBeNull();
    expect(Buffer.from(numbers.elements[1]!).readBigInt64BE()).toBe(42n);
    expect(counts).toMatchObject({ email: 3, credit_card: 4, ipv4: 1 });
  });
});
