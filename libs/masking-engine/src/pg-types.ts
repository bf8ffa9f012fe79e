/**
 * How a PostgreSQL column type (by OID, text format) can be masked.
 * - `text`: scanned; masked values are text.
 * - `json`: parsed and walked; re-serialised.
 * - `scalar`: scanned (an int8 can hold a card number, inet an IP), but a masked value cannot be
 *   written in the type's syntax, so it becomes SQL NULL.
 * - `opaque`: never scanned (uuid, dates, booleans…: no detector shape fits them);
 *   a column rule makes it SQL NULL.
 * - `bytes`: bytea, scanned as the text its bytes spell (an SSN stored as bytes); a value with
 *   a finding becomes SQL NULL.
 * - `array`: element-wise by the element type.
 * Unknown OIDs (extension types such as citext, enums, domains) are treated as text: clients
 * decode types they do not know as strings.
 * @see https://github.com/postgres/postgres/blob/master/src/include/catalog/pg_type.dat
 */
export type TypeKind = 'text' | 'json' | 'scalar' | 'opaque' | 'bytes' | 'array';

const SCALAR = [20, 21, 23, 26, 700, 701, 790, 1700, 869, 650, 829, 774];
const OPAQUE = [
  16, 24, 2202, 2203, 2204, 2205, 2206, 3734, 3769, 4089, 4096, 28, 29, 1082, 1083, 1114, 1184, 1186, 1266, 2950, 3614, 3615, 600, 601,
  602, 603, 604, 628, 718, 1560, 1562, 3904, 3906, 3908, 3910, 3912, 3926, 3220, 5038, 2970, 27,
];
const JSON_TYPES = [114, 3802];
/** Types whose binary form is their UTF-8 text: text, varchar, bpchar, name, "char", unknown, xml. */
export const TEXT_OIDS: ReadonlySet<number> = new Set([25, 1043, 1042, 19, 18, 705, 142]);

/** Array type OID -> element type OID. */
export const ARRAY_ELEMENT: ReadonlyMap<number, number> = new Map([
  [1009, 25],
  [1015, 1043],
  [1014, 1042],
  [1003, 19],
  [1002, 18],
  [199, 114],
  [3807, 3802],
  [1005, 21],
  [1007, 23],
  [1016, 20],
  [1028, 26],
  [1021, 700],
  [1022, 701],
  [791, 790],
  [1231, 1700],
  [1041, 869],
  [651, 650],
  [1040, 829],
  [2951, 2950],
  [1182, 1082],
  [1183, 1083],
  [1115, 1114],
  [1185, 1184],
  [1187, 1186],
  [1000, 16],
  [1001, 17],
]);

const KINDS: ReadonlyMap<number, TypeKind> = new Map<number, TypeKind>([
  ...SCALAR.map((oid): [number, TypeKind] => [oid, 'scalar']),
  ...OPAQUE.map((oid): [number, TypeKind] => [oid, 'opaque']),
  ...JSON_TYPES.map((oid): [number, TypeKind] => [oid, 'json']),
  [17, 'bytes'],
  ...[...ARRAY_ELEMENT.keys()].map((oid): [number, TypeKind] => [oid, 'array']),
]);

export const typeKind = (oid: number | undefined): TypeKind => (oid === undefined ? 'text' : (KINDS.get(oid) ?? 'text'));
