import { describe, expect, it } from 'vitest';
import { BackendCode, decodeFrontend, encodeDataRow, encodeQuery, FrontendCode, type FieldDescription, type Frame } from '@sluice/codec-pg';
import { ClientEncoding, EncodingConversionError, pgEncodingName, UNCONVERTIBLE_ENCODINGS } from './client-encoding.js';
import { ClientEdge } from './client-encoding-frames.js';

const named = (name: string): ClientEncoding => ClientEncoding.named(name)!;

const failure = (run: () => unknown): EncodingConversionError => {
  try {
    run();
  } catch (error) {
    if (error instanceof EncodingConversionError) return error;
    throw error;
  }
  throw new Error('expected a conversion error');
};

const frameOf = (raw: Buffer): Frame => ({ code: raw[0]!, body: raw.subarray(5), raw });

const field = (name: string, typeOid: number, format: number): FieldDescription => ({ name, tableOid: 0, attnum: 0, typeOid, typeSize: -1, typeModifier: -1, format });

describe('client encodings', () => {
  it('knows PostgreSQL names and aliases as the server spells them, and which it cannot convert', () => {
    expect(pgEncodingName('iso-8859-1')).toBe('LATIN1');
    expect(pgEncodingName('Shift_JIS')).toBe('SJIS');
    expect(pgEncodingName('windows-936')).toBe('GBK');
    expect(pgEncodingName('unicode')).toBe('UTF8');
    expect(pgEncodingName('klingon')).toBeUndefined();
    expect([...UNCONVERTIBLE_ENCODINGS].sort()).toEqual(['EUC_JIS_2004', 'EUC_TW', 'JOHAB', 'MULE_INTERNAL', 'SHIFT_JIS_2004']);
    expect(ClientEncoding.named('utf-8')).toBeUndefined();
    expect(ClientEncoding.named('sql_ascii')).toBeUndefined();
    expect(failure(() => ClientEncoding.named('EUC_TW')).sqlstate).toBe('0A000');
    expect(failure(() => ClientEncoding.named('klingon'))).toMatchObject({ sqlstate: '22023', message: 'invalid value for parameter "client_encoding": "klingon"' });
  });

  it('decodes strictly, with the server\'s errors: an invalid sequence (22021), a byte with no character (22P05), NUL', () => {
    expect(named('SJIS').decode(Buffer.from([0x95, 0x5c]))).toBe('表');
    // Two codes for one character (NEC and JIS rows) both read, as on the server.
    expect(named('SJIS').decode(Buffer.from([0x87, 0x90]))).toBe('≒');
    expect(failure(() => named('SJIS').decode(Buffer.from([0x41, 0x82, 0x27])))).toMatchObject({ sqlstate: '22021', message: 'invalid byte sequence for encoding "SJIS": 0x82 0x27' });
    expect(failure(() => named('LATIN3').decode(Buffer.from([0x41, 0xf0])))).toMatchObject({
      sqlstate: '22P05',
      message: 'character with byte sequence 0xf0 in encoding "LATIN3" has no equivalent in encoding "UTF8"',
    });
    expect(failure(() => named('LATIN1').decode(Buffer.from([0xe9, 0x00]))).sqlstate).toBe('22021');
    // GBK-only forms are not EUC-CN, whose bytes are all 0xA1-0xFE.
    expect(named('EUC_CN').decode(Buffer.from([0xb0, 0xa1]))).toBe('啊');
    expect(failure(() => named('EUC_CN').decode(Buffer.from([0x81, 0x40]))).sqlstate).toBe('22021');
  });

  it('encodes strictly: a character without an equivalent is the server\'s 22P05, an error text falls back to ?', () => {
    expect(named('LATIN1').encode('café')).toEqual(Buffer.from('café', 'latin1'));
    expect(failure(() => named('LATIN1').encode('euro €'))).toMatchObject({
      sqlstate: '22P05',
      message: 'character with byte sequence 0xe2 0x82 0xac in encoding "UTF8" has no equivalent in encoding "LATIN1"',
    });
    expect(named('LATIN1').encodeLossy('euro €')).toEqual(Buffer.from('euro ?'));
  });

  it('returns plain ASCII as it is, without converting', () => {
    const ascii = Buffer.from("select 'x'");
    expect(named('SJIS').toUtf8(ascii)).toBe(ascii);
    expect(named('SJIS').fromUtf8(ascii)).toBe(ascii);
  });
});

describe('the client edge', () => {
  it('decodes a Query in the client encoding before anything reads it: an SJIS trail byte 0x5C is not a backslash', () => {
    const edge = new ClientEdge(named('SJIS'));
    const sjis = Buffer.concat([Buffer.from("select E'"), Buffer.from([0x95, 0x5c]), Buffer.from("'; delete from t; --'")]);
    const query = frameOf(Buffer.concat([Buffer.from([FrontendCode.Query, 0, 0, 0, sjis.length + 5]), sjis, Buffer.from([0])]));
    const converted = edge.fromClient(query)!;
    expect(decodeFrontend(converted)).toEqual({ type: 'Query', text: "select E'表'; delete from t; --'" });
    expect(edge.fromClient(frameOf(encodeQuery('select 1')))?.raw).toEqual(encodeQuery('select 1'));
  });

  it('converts text values of a DataRow, passes binary values without text, converts binary text, refuses a binary array', () => {
    const edge = new ClientEdge(named('LATIN1'));
    const int4 = Buffer.from([0, 0, 0, 0xe9]);
    const row = encodeDataRow(['é', int4, 'ü', null]);
    const fields = [field('a', 25, 0), field('b', 23, 1), field('c', 25, 1), field('d', 25, 0)];
    expect(edge.toClient(row, fields)).toEqual(encodeDataRow([Buffer.from([0xe9]), int4, Buffer.from([0xfc]), null]));
    const array = encodeDataRow([Buffer.from('é')]);
    expect(failure(() => edge.toClient(array, [field('tags', 1009, 1)]))).toMatchObject({ sqlstate: '0A000' });
    expect(failure(() => edge.toClient(encodeDataRow(['€']), [field('a', 25, 0)])).sqlstate).toBe('22P05');
  });

  it('converts COPY FROM STDIN data split inside a character, up to each newline', () => {
    const edge = new ClientEdge(named('SJIS'));
    edge.toClient(Buffer.from([BackendCode.CopyInResponse, 0, 0, 0, 7, 0, 0, 0]), undefined);
    const copyData = (bytes: number[]): Frame => frameOf(Buffer.from([FrontendCode.CopyData, 0, 0, 0, bytes.length + 4, ...bytes]));
    const first = edge.fromClient(copyData([0x61, 0x0a, 0x95]))!;
    expect(first.body).toEqual(Buffer.from('a\n'));
    const second = edge.fromClient(copyData([0x5c, 0x0a]))!;
    expect(second.body.toString('utf8')).toBe('表\n');
  });
});
