import { TypeOid } from './codes.js';
import { ProtocolMalformedError } from './errors.js';

/**
 * Binary-format values the proxy must read to mask or record them. Anything not listed here is
 * opaque to the proxy.
 * @see https://www.postgresql.org/docs/current/protocol-overview.html#PROTOCOL-FORMAT-CODES
 */

const TEXT_LIKE: ReadonlySet<number> = new Set([TypeOid.text, TypeOid.varchar, TypeOid.bpchar, TypeOid.name, TypeOid.json, TypeOid.char]);

/** Types whose binary form is their UTF-8 text. */
export const isTextLikeType = (typeOid: number): boolean => TEXT_LIKE.has(typeOid);

/** jsonb binary: a version byte (1) then the JSON text. */
export const JSONB_VERSION = 1;

const NUMERIC_POS = 0x0000;
const NUMERIC_NEG = 0x4000;
const NUMERIC_NAN = 0xc000;
const NUMERIC_PINF = 0xd000;
const NUMERIC_NINF = 0xf000;

/** Binary numeric (base-10000 digits) to its decimal text, as numeric_out prints it. */
export const decodeBinaryNumeric = (value: Buffer): string => {
  if (value.length < 8) throw new ProtocolMalformedError('numeric: truncated');
  const ndigits = value.readInt16BE(0);
  const weight = value.readInt16BE(2);
  const sign = value.readUInt16BE(4);
  const dscale = value.readInt16BE(6);
  if (ndigits < 0 || value.length !== 8 + ndigits * 2 || dscale < 0) throw new ProtocolMalformedError('numeric: bad header');
  if (sign === NUMERIC_NAN) return 'NaN';
  if (sign === NUMERIC_PINF) return 'Infinity';
  if (sign === NUMERIC_NINF) return '-Infinity';
  if (sign !== NUMERIC_POS && sign !== NUMERIC_NEG) throw new ProtocolMalformedError('numeric: bad sign');
  const digit = (i: number): number => (i >= 0 && i < ndigits ? value.readInt16BE(8 + i * 2) : 0);
  let integer = '';
  if (weight < 0) integer = '0';
  else for (let i = 0; i <= weight; i++) integer += i === 0 ? String(digit(i)) : String(digit(i)).padStart(4, '0');
  let fraction = '';
  for (let i = weight + 1; fraction.length < dscale; i++) fraction += String(digit(i)).padStart(4, '0');
  const text = dscale > 0 ? `${integer}.${fraction.slice(0, dscale)}` : integer;
  return sign === NUMERIC_NEG ? `-${text}` : text;
};

/**
 * The text form of a binary value of a type the proxy understands, or undefined for any other
 * type (bytea, uuid, dates, arrays, composites…).
 */
export const binaryToText = (typeOid: number, value: Buffer): string | undefined => {
  switch (typeOid) {
    case TypeOid.int2:
      if (value.length !== 2) throw new ProtocolMalformedError('int2: bad length');
      return String(value.readInt16BE(0));
    case TypeOid.int4:
      if (value.length !== 4) throw new ProtocolMalformedError('int4: bad length');
      return String(value.readInt32BE(0));
    case TypeOid.oid:
      if (value.length !== 4) throw new ProtocolMalformedError('oid: bad length');
      return String(value.readUInt32BE(0));
    case TypeOid.int8:
      if (value.length !== 8) throw new ProtocolMalformedError('int8: bad length');
      return value.readBigInt64BE(0).toString();
    case TypeOid.float4:
      if (value.length !== 4) throw new ProtocolMalformedError('float4: bad length');
      return String(value.readFloatBE(0));
    case TypeOid.float8:
      if (value.length !== 8) throw new ProtocolMalformedError('float8: bad length');
      return String(value.readDoubleBE(0));
    case TypeOid.numeric:
      return decodeBinaryNumeric(value);
    case TypeOid.bool:
      if (value.length !== 1) throw new ProtocolMalformedError('bool: bad length');
      return value[0] === 0 ? 'f' : 't';
    case TypeOid.jsonb:
      if (value.length < 1 || value[0] !== JSONB_VERSION) throw new ProtocolMalformedError('jsonb: unknown version');
      return value.toString('utf8', 1);
    default:
      return isTextLikeType(typeOid) ? value.toString('utf8') : undefined;
  }
};
