import { binaryToText, isTextLikeType, TypeOid } from '@sluice/codec-pg';
import type { ProfileMasker } from '@sluice/masking-engine';

/** The binary side of a fake masker: decode what the codec can read, mask it as text, as the engine does. */
export const maskBinaryVia =
  (fake: Pick<ProfileMasker, 'maskCell' | 'hasColumnRule'>): ProfileMasker['maskBinaryCell'] =>
  (value, column, counts) => {
    const bytes = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    const oid = column?.typeOid ?? TypeOid.text;
    if (column && fake.hasColumnRule(column) && !isTextLikeType(oid)) return null;
    if (oid === TypeOid.jsonb) {
      const text = bytes.toString('utf8', 1);
      const masked = fake.maskCell(text, column, counts);
      return masked === text ? value : masked === null ? null : Buffer.concat([Buffer.from([1]), Buffer.from(masked)]);
    }
    const text = binaryToText(oid, bytes);
    if (text === undefined) return value;
    const masked = fake.maskCell(text, column, counts);
    if (masked === text) return value;
    return masked !== null && isTextLikeType(oid) ? Buffer.from(masked) : null;
  };
