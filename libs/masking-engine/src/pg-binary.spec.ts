import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { compileMasking } from './compile.js';
import { decodeBinaryArray, decodeBinaryScalar, encodeBinaryArray } from './pg-binary.js';

// Captured from PostgreSQL 15 with the *_send functions, e.g. encode(numeric_send(1234.56), 'hex').
const fixtures = {
  numericCard: '0004000300000000100f045704570457',
  numericAmount: '000200000000000204d215e0',
  numericNegativeFraction: '0001ffff4000000201f4',
  numericInfinity: '00000000d0000020',
  numericMinusInfinity: '00000000f0000020',
  numericNaN: '00000000c0000000',
  int8Card: '000e9b08a568f1c7',
  textArray: '00000001000000010000001900000003000000010000000f616e6e406578616d706c652e636f6d00000005706c61696effffffff',
  int8Array: '0000000100000000000000140000000200000001000000080000000000000001000000080000000000000002',
  jsonb: '017b2265223a2022616e6e406578616d706c652e636f6d222c20226e223a20317d',
  inet4: '022000040a010203',
  inet6: '0380001020010db8000000000000000000000001',
};
const hex = (name: keyof typeof fixtures): Buffer => Buffer.from(fixtures[name], 'hex');

const pii = compileMasking(
  {
    defaultRegion: 'US',
    detectors: [],
    profiles: { pii: { detectors: ['credit_card', 'email', 'ipv4', 'ipv6'], strategy: 'partial', columns: [{ match: '^secret_notes$' }] } },
  },
  { hashKey: 'k' },
).profile('pii')!;

describe('binary format decoding', () => {
  it('decodes numeric, int8 and inet values to the text PostgreSQL would print', () => {
    expect(decodeBinaryScalar(1700, hex('numericCard'))).toBe('4111111111111111');
    expect(decodeBinaryScalar(1700, hex('numericAmount'))).toBe('1234.56');
    expect(decodeBinaryScalar(1700, hex('numericNegativeFraction'))).toBe('-0.05');
    expect(decodeBinaryScalar(1700, hex('numericInfinity'))).toBe('Infinity');
    expect(decodeBinaryScalar(1700, hex('numericMinusInfinity'))).toBe('-Infinity');
    expect(decodeBinaryScalar(1700, hex('numericNaN'))).toBe('NaN');
    expect(decodeBinaryScalar(20, hex('int8Card'))).toBe('4111111111111111');
    expect(decodeBinaryScalar(869, hex('inet4'))).toBe('10.1.2.3');
    expect(decodeBinaryScalar(869, hex('inet6'))).toBe('2001:db8:0:0:0:0:0:1');
  });

  it('decodes and re-encodes an array byte for byte', () => {
    const array = decodeBinaryArray(hex('textArray'))!;
    expect(array.elements.map((element) => element && Buffer.from(element).toString())).toEqual(['ann@example.com', 'plain', null]);
    expect(Buffer.from(encodeBinaryArray(array))).toEqual(hex('textArray'));
  });

  it('never crashes or over-allocates on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        decodeBinaryArray(bytes);
        decodeBinaryScalar(1700, bytes);
        decodeBinaryScalar(869, bytes);
        pii.maskBinaryCell(bytes, { name: 'a', typeOid: 1009 }, {});
        pii.maskBinaryCell(bytes, { name: 'j', typeOid: 3802 }, {});
      }),
    );
  });
});

describe('maskBinaryCell', () => {
  it('nulls a card number held in numeric or int8 and keeps amounts byte for byte', () => {
    expect(pii.maskBinaryCell(hex('numericCard'), { name: 'n', typeOid: 1700 }, {})).toBeNull();
    expect(pii.maskBinaryCell(hex('int8Card'), { name: 'n', typeOid: 20 }, {})).toBeNull();
    const amount = hex('numericAmount');
    expect(pii.maskBinaryCell(amount, { name: 'n', typeOid: 1700 }, {})).toBe(amount);
  });

  it('masks text as UTF-8 and jsonb after its version byte', () => {
    expect(Buffer.from(pii.maskBinaryCell(Buffer.from('mail ann@example.com'), { name: 't', typeOid: 25 }, {})!).toString()).toBe('mail a***@example.com');
    const jsonb = pii.maskBinaryCell(hex('jsonb'), { name: 'j', typeOid: 3802 }, {})!;
    expect(jsonb[0]).toBe(1);
    expect(JSON.parse(Buffer.from(jsonb.subarray(1)).toString())).toEqual({ e: 'a***@example.com', n: 1 });
  });

  it('masks array elements and re-frames the array with the new lengths', () => {
    const masked = decodeBinaryArray(pii.maskBinaryCell(hex('textArray'), { name: 'a', typeOid: 1009 }, {})!)!;
    expect(masked.elements.map((element) => element && Buffer.from(element).toString())).toEqual(['a***@example.com', 'plain', null]);
    const ints = hex('int8Array');
    expect(pii.maskBinaryCell(ints, { name: 'a', typeOid: 1016 }, {})).toBe(ints);
  });

  it('nulls inet addresses the profile covers, and any typed value under a column rule', () => {
    expect(pii.maskBinaryCell(hex('inet4'), { name: 'ip', typeOid: 869 }, {})).toBeNull();
    expect(pii.maskBinaryCell(hex('inet6'), { name: 'ip', typeOid: 869 }, {})).toBeNull();
    const counts = {};
    expect(pii.maskBinaryCell(hex('int8Array'), { name: 'secret_notes', typeOid: 1016 }, counts)).toBeNull();
    expect(counts).toEqual({ 'column:^secret_notes$': 1 });
  });
});
