/**
 * Just enough of PostgreSQL's binary wire formats to scan and rewrite a cell: text-like types are
 * UTF-8, jsonb is a version byte and JSON text, numbers and inet are decoded to their text form
 * for scanning (a masked one becomes SQL NULL, never re-encoded), arrays are split into elements.
 * @see https://github.com/postgres/postgres/tree/master/src/backend/utils/adt (the *_send/*_recv functions)
 */
import { decodeBinaryNumeric, ProtocolMalformedError } from '@sluice/codec-pg';

/** Binary-format decoders of scalar types to the text a detector scans; undefined: not scanned. */
export const decodeBinaryScalar = (oid: number | undefined, value: Uint8Array): string | undefined => {
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength);
  switch (oid) {
    case 21:
      return value.length === 2 ? String(view.getInt16(0)) : undefined;
    case 23:
      return value.length === 4 ? String(view.getInt32(0)) : undefined;
    case 26:
      return value.length === 4 ? String(view.getUint32(0)) : undefined;
    case 20:
      return value.length === 8 ? String(view.getBigInt64(0)) : undefined;
    case 700:
      return value.length === 4 ? String(view.getFloat32(0)) : undefined;
    case 701:
      return value.length === 8 ? String(view.getFloat64(0)) : undefined;
    case 1700:
      return decodeNumeric(value);
    case 869:
    case 650:
      return decodeInet(value);
    default:
      return undefined;
  }
};

/** numeric_send, decoded by the proxy's codec so both print the same text (NaN, ±Infinity included). */
const decodeNumeric = (value: Uint8Array): string | undefined => {
  try {
    return decodeBinaryNumeric(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
  } catch (error) {
    if (error instanceof ProtocolMalformedError) return undefined;
    throw error;
  }
};

/** inet_send: family (2 = IPv4, 3 = IPv6), bits, is_cidr, address length, address. */
const decodeInet = (value: Uint8Array): string | undefined => {
  if (value.length < 4) return undefined;
  const family = value[0];
  const length = value[3]!;
  const address = value.subarray(4, 4 + length);
  if (family === 2 && length === 4) return Array.from(address).join('.');
  if (family === 3 && length === 16) {
    const groups: string[] = [];
    for (let index = 0; index < 16; index += 2) groups.push(((address[index]! << 8) | address[index + 1]!).toString(16));
    return groups.join(':');
  }
  return undefined;
};

export interface BinaryArray {
  readonly dimensions: readonly { readonly size: number; readonly lowerBound: number }[];
  readonly elementOid: number;
  readonly elements: (Uint8Array | null)[];
}

/** array_recv layout: ndim, has-null flag, element OID, (size, lower bound) per dimension, then length-prefixed elements. */
export const decodeBinaryArray = (value: Uint8Array): BinaryArray | undefined => {
  if (value.length < 12) return undefined;
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength);
  const ndim = view.getInt32(0);
  const elementOid = view.getUint32(8);
  if (ndim < 0 || ndim > 6 || value.length < 12 + ndim * 8) return undefined;
  const dimensions: { size: number; lowerBound: number }[] = [];
  let count = ndim === 0 ? 0 : 1;
  for (let index = 0; index < ndim; index++) {
    const size = view.getInt32(12 + index * 8);
    if (size < 0) return undefined;
    dimensions.push({ size, lowerBound: view.getInt32(16 + index * 8) });
    count *= size;
  }
  let offset = 12 + ndim * 8;
  // Never trust a count the bytes cannot hold (each element needs at least its length word).
  if (count * 4 > value.length - offset) return undefined;
  const elements: (Uint8Array | null)[] = [];
  for (let index = 0; index < count; index++) {
    if (offset + 4 > value.length) return undefined;
    const length = view.getInt32(offset);
    offset += 4;
    if (length === -1) {
      elements.push(null);
      continue;
    }
    if (length < 0 || offset + length > value.length) return undefined;
    elements.push(value.subarray(offset, offset + length));
    offset += length;
  }
  return offset === value.length ? { dimensions, elementOid, elements } : undefined;
};

export const encodeBinaryArray = (array: BinaryArray): Uint8Array => {
  const header = 12 + array.dimensions.length * 8;
  const size = array.elements.reduce((sum, element) => sum + 4 + (element?.length ?? 0), header);
  const out = Buffer.alloc(size);
  out.writeInt32BE(array.dimensions.length, 0);
  out.writeInt32BE(array.elements.some((element) => element === null) ? 1 : 0, 4);
  out.writeUInt32BE(array.elementOid, 8);
  array.dimensions.forEach((dimension, index) => {
    out.writeInt32BE(dimension.size, 12 + index * 8);
    out.writeInt32BE(dimension.lowerBound, 16 + index * 8);
  });
  let offset = header;
  for (const element of array.elements) {
    if (element === null) {
      out.writeInt32BE(-1, offset);
      offset += 4;
      continue;
    }
    out.writeInt32BE(element.length, offset);
    offset += 4;
    out.set(element, offset);
    offset += element.length;
  }
  return out;
};
