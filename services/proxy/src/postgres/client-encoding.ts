/**
 * Client encodings other than UTF8. The proxy's session with the target always speaks UTF8; an
 * agent that asked for another client encoding has its text decoded from that encoding (and
 * re-encoded as UTF-8) before anything reads it, and everything the target sends encoded into it
 * after masking. The target therefore parses exactly the text Sluice decided on: a multi-byte
 * character whose trail byte is `\` or `'` (SJIS, BIG5, GBK) is one character to both.
 *
 * Conversion tables are iconv-lite's; each PostgreSQL encoding maps to the table that matches the
 * server's on the characters checked (see the README), and the encodings iconv-lite has no table
 * for are refused.
 * @see https://www.postgresql.org/docs/current/multibyte.html#MULTIBYTE-CHARSET-SUPPORTED
 */
import iconv from 'iconv-lite';
import { SluiceErrorCode } from '@sluice/contracts';
import { SqlStateError } from './sqlstate.js';

/** The server's error for text that cannot be converted, with its SQLSTATE and wording. */
export class EncodingConversionError extends SqlStateError {
  readonly code = SluiceErrorCode.InvalidArgument;
}

/** invalid_byte_sequence_for_encoding. */
export const INVALID_BYTE_SEQUENCE = '22021';
/** untranslatable_character. */
export const UNTRANSLATABLE_CHARACTER = '22P05';

/**
 * PostgreSQL's encoding names (as the server reports them) by their lookup key, aliases included
 * (encnames.c: case and punctuation ignored).
 */
const PG_ENCODINGS: Readonly<Record<string, string>> = {
  sqlascii: 'SQL_ASCII', utf8: 'UTF8', unicode: 'UTF8',
  latin1: 'LATIN1', latin2: 'LATIN2', latin3: 'LATIN3', latin4: 'LATIN4', latin5: 'LATIN5',
  latin6: 'LATIN6', latin7: 'LATIN7', latin8: 'LATIN8', latin9: 'LATIN9', latin10: 'LATIN10',
  iso88591: 'LATIN1', iso88592: 'LATIN2', iso88593: 'LATIN3', iso88594: 'LATIN4', iso88599: 'LATIN5',
  iso885910: 'LATIN6', iso885913: 'LATIN7', iso885914: 'LATIN8', iso885915: 'LATIN9', iso885916: 'LATIN10',
  iso88595: 'ISO_8859_5', iso88596: 'ISO_8859_6', iso88597: 'ISO_8859_7', iso88598: 'ISO_8859_8',
  win866: 'WIN866', alt: 'WIN866', windows866: 'WIN866', win874: 'WIN874', windows874: 'WIN874',
  win1250: 'WIN1250', win1251: 'WIN1251', win: 'WIN1251', win1252: 'WIN1252', win1253: 'WIN1253',
  win1254: 'WIN1254', win1255: 'WIN1255', win1256: 'WIN1256', win1257: 'WIN1257', win1258: 'WIN1258',
  windows1250: 'WIN1250', windows1251: 'WIN1251', windows1252: 'WIN1252', windows1253: 'WIN1253',
  windows1254: 'WIN1254', windows1255: 'WIN1255', windows1256: 'WIN1256', windows1257: 'WIN1257',
  windows1258: 'WIN1258', abc: 'WIN1258', tcvn: 'WIN1258', tcvn5712: 'WIN1258', vscii: 'WIN1258',
  koi8: 'KOI8R', koi8r: 'KOI8R', koi8u: 'KOI8U',
  eucjp: 'EUC_JP', euccn: 'EUC_CN', euckr: 'EUC_KR', euctw: 'EUC_TW', eucjis2004: 'EUC_JIS_2004',
  sjis: 'SJIS', shiftjis: 'SJIS', mskanji: 'SJIS', win932: 'SJIS', windows932: 'SJIS', shiftjis2004: 'SHIFT_JIS_2004',
  big5: 'BIG5', win950: 'BIG5', windows950: 'BIG5', gbk: 'GBK', win936: 'GBK', windows936: 'GBK',
  gb18030: 'GB18030', uhc: 'UHC', win949: 'UHC', windows949: 'UHC', johab: 'JOHAB', muleinternal: 'MULE_INTERNAL',
};

/** iconv-lite's table for each PostgreSQL encoding it can convert. */
const ICONV_TABLES: Readonly<Record<string, string>> = {
  LATIN1: 'latin1', LATIN2: 'iso-8859-2', LATIN3: 'iso-8859-3', LATIN4: 'iso-8859-4', LATIN5: 'iso-8859-9',
  LATIN6: 'iso-8859-10', LATIN7: 'iso-8859-13', LATIN8: 'iso-8859-14', LATIN9: 'iso-8859-15', LATIN10: 'iso-8859-16',
  ISO_8859_5: 'iso-8859-5', ISO_8859_6: 'iso-8859-6', ISO_8859_7: 'iso-8859-7', ISO_8859_8: 'iso-8859-8',
  WIN866: 'cp866', WIN874: 'windows-874', WIN1250: 'windows-1250', WIN1251: 'windows-1251', WIN1252: 'windows-1252',
  WIN1253: 'windows-1253', WIN1254: 'windows-1254', WIN1255: 'windows-1255', WIN1256: 'windows-1256',
  WIN1257: 'windows-1257', WIN1258: 'windows-1258', KOI8R: 'koi8-r', KOI8U: 'koi8-u',
  // PostgreSQL's SJIS, BIG5, GBK and UHC tables are Microsoft's code pages (932, 950, 936, 949).
  EUC_JP: 'eucjp', SJIS: 'cp932', BIG5: 'cp950', GBK: 'gbk', GB18030: 'gb18030', UHC: 'cp949',
  // iconv-lite reads EUC-CN and EUC-KR with the GBK and UHC tables, which accept more two-byte
  // forms; eucViolation refuses what the EUC forms do not have.
  EUC_CN: 'gb2312', EUC_KR: 'euc-kr',
};

const EUC_ONLY: ReadonlySet<string> = new Set(['EUC_CN', 'EUC_KR', 'EUC_JP']);

/** Encodings with one byte a character: a byte without a character is untranslatable (22P05), as on the server. */
const SINGLE_BYTE: ReadonlySet<string> = new Set(Object.keys(ICONV_TABLES).filter((name) => /^(LATIN|ISO_|WIN|KOI)/.test(name)));

/** PostgreSQL's lookup key for an encoding name: case and punctuation ignored (`UTF-8` = `utf8`). */
const encodingKey = (name: string): string => name.toLowerCase().replace(/[^a-z0-9]/g, '');

/** The server's name for an encoding given by any of its spellings, or undefined when PostgreSQL has none of that name. */
export const pgEncodingName = (name: string): string | undefined => PG_ENCODINGS[encodingKey(name)];

/** The client encodings PostgreSQL has that the proxy cannot convert, in the server's names. */
export const UNCONVERTIBLE_ENCODINGS: readonly string[] = [...new Set(Object.values(PG_ENCODINGS))].filter(
  (name) => name !== 'UTF8' && name !== 'SQL_ASCII' && ICONV_TABLES[name] === undefined,
);

const hexBytes = (bytes: Uint8Array): string => [...bytes].map((byte) => `0x${byte.toString(16).padStart(2, '0')}`).join(' ');

/** Whether every byte is ASCII (and no NUL): such text reads the same in every client encoding PostgreSQL has. */
const isPlainAscii = (bytes: Uint8Array): boolean => {
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i]!;
    if (byte >= 0x80 || byte === 0) return false;
  }
  return true;
};

/**
 * A single-byte encoding as two lookup tables built once from iconv-lite's: byte -> UTF-16 code
 * (0xFFFD: no character) and UTF-16 code -> byte (0: none). A table walk is several times faster
 * than iconv-lite's general path on short values, which is what rows are made of.
 */
interface SingleByteTables {
  readonly toCode: Uint16Array;
  readonly toByte: Uint8Array;
}

const singleByteTables = new Map<string, SingleByteTables>();

const tablesOf = (table: string): SingleByteTables => {
  const known = singleByteTables.get(table);
  if (known) return known;
  const toCode = new Uint16Array(256);
  const toByte = new Uint8Array(0x10000);
  for (let byte = 0; byte < 256; byte++) {
    const char = iconv.decode(Buffer.from([byte]), table);
    const code = char.length === 1 ? char.charCodeAt(0) : 0xfffd;
    toCode[byte] = code;
    if (code !== 0xfffd && byte !== 0 && toByte[code] === 0) toByte[code] = byte;
  }
  const tables = { toCode, toByte };
  singleByteTables.set(table, tables);
  return tables;
};

/** One non-UTF8 client encoding: strict conversion both ways, with the server's errors. */
export class ClientEncoding {
  readonly #table: string;
  readonly #singleByte: boolean;
  readonly #eucOnly: boolean;
  readonly #eucTwoByte: boolean;
  readonly #gb18030: boolean;
  readonly #tables: SingleByteTables | undefined;

  private constructor(
    /** The name PostgreSQL reports (ParameterStatus client_encoding). */
    readonly name: string,
  ) {
    this.#table = ICONV_TABLES[name]!;
    this.#singleByte = SINGLE_BYTE.has(name);
    this.#eucOnly = EUC_ONLY.has(name);
    this.#eucTwoByte = name !== 'EUC_JP';
    this.#gb18030 = name === 'GB18030';
    this.#tables = this.#singleByte ? tablesOf(this.#table) : undefined;
  }

  /**
   * The conversion for a client encoding the agent named: undefined for UTF8 (and SQL_ASCII, which
   * the proxy passes through unconverted over a UTF8 database). Throws the server's 22023 for a
   * name PostgreSQL does not have and 0A000 for an encoding the proxy cannot convert.
   */
  static named(requested: string): ClientEncoding | undefined {
    const name = pgEncodingName(requested);
    if (name === undefined) throw new EncodingConversionError('22023', `invalid value for parameter "client_encoding": "${requested}"`);
    if (name === 'UTF8' || name === 'SQL_ASCII') return undefined;
    if (ICONV_TABLES[name] === undefined) {
      throw new EncodingConversionError('0A000', `client_encoding "${name}" is not supported through sluice (not supported: ${UNCONVERTIBLE_ENCODINGS.join(', ')})`);
    }
    return new ClientEncoding(name);
  }

  /** The agent's bytes as text; throws 22021 (or 22P05 for a single-byte encoding's unmapped byte) as the server would. */
  decode(bytes: Uint8Array): string {
    if (isPlainAscii(bytes)) return Buffer.from(bytes).toString('latin1');
    const zero = bytes.indexOf(0);
    if (zero >= 0) throw this.#invalid(bytes.subarray(zero, zero + 1));
    if (this.#tables) return this.#decodeSingleByte(bytes, this.#tables.toCode);
    const text = iconv.decode(Buffer.from(bytes), this.#table);
    // iconv-lite replaces what it cannot read with U+FFFD, which no client encoding but GB18030 has
    // a form for; GB18030 maps all of Unicode, so there an exact round trip proves the bytes valid.
    // (A round trip elsewhere would refuse valid duplicates: SJIS 0x8790 and 0x81E0 are both ≒.)
    const at = this.#gb18030 ? firstDifference(iconv.encode(text, this.#table), bytes) : invalidAt(text, this.#table);
    const offset = at >= 0 ? at : this.#eucOnly ? eucViolation(bytes, this.#eucTwoByte) : -1;
    if (offset < 0) return text;
    if (this.#singleByte) {
      throw new EncodingConversionError(UNTRANSLATABLE_CHARACTER, `character with byte sequence ${hexBytes(bytes.subarray(offset, offset + 1))} in encoding "${this.name}" has no equivalent in encoding "UTF8"`);
    }
    throw this.#invalid(bytes.subarray(offset, offset + 2));
  }

  #decodeSingleByte(bytes: Uint8Array, toCode: Uint16Array): string {
    const codes = new Uint16Array(bytes.length);
    for (let i = 0; i < bytes.length; i++) {
      const code = toCode[bytes[i]!]!;
      if (code === 0xfffd) {
        throw new EncodingConversionError(UNTRANSLATABLE_CHARACTER, `character with byte sequence ${hexBytes(bytes.subarray(i, i + 1))} in encoding "${this.name}" has no equivalent in encoding "UTF8"`);
      }
      codes[i] = code;
    }
    return Buffer.from(codes.buffer, codes.byteOffset, codes.byteLength).toString('utf16le');
  }

  /** Text in this encoding; throws 22P05 for a character it has no equivalent for, as the server would. */
  encode(text: string): Buffer {
    const tables = this.#tables;
    if (tables) {
      const out = Buffer.allocUnsafe(text.length);
      for (let i = 0; i < text.length; i++) {
        const code = text.charCodeAt(i);
        const byte = code < 0x80 ? code : tables.toByte[code]!;
        if (byte === 0 && code !== 0) throw this.#untranslatable(text.codePointAt(i)!);
        out[i] = byte;
      }
      return out;
    }
    const bytes = iconv.encode(text, this.#table);
    // iconv-lite writes `?` for a character the table lacks; no multi-byte form of these encodings
    // has 0x3F inside it, so as many `?` out as in means nothing was replaced.
    if (count(bytes, 0x3f) === countChar(text, '?')) return bytes;
    for (const char of text) {
      if (iconv.decode(iconv.encode(char, this.#table), this.#table) !== char) throw this.#untranslatable(char.codePointAt(0)!);
    }
    return bytes;
  }

  #untranslatable(codePoint: number): EncodingConversionError {
    const utf8 = Buffer.from(String.fromCodePoint(codePoint), 'utf8');
    return new EncodingConversionError(UNTRANSLATABLE_CHARACTER, `character with byte sequence ${hexBytes(utf8)} in encoding "UTF8" has no equivalent in encoding "${this.name}"`);
  }

  /** UTF-8 bytes from the target in this encoding (strict); plain ASCII is returned as it is. */
  fromUtf8(bytes: Buffer): Buffer {
    return isPlainAscii(bytes) ? bytes : this.encode(bytes.toString('utf8'));
  }

  /** The agent's bytes as UTF-8 (strict); plain ASCII is returned as it is. */
  toUtf8(bytes: Buffer): Buffer {
    return isPlainAscii(bytes) ? bytes : Buffer.from(this.decode(bytes), 'utf8');
  }

  /**
   * Text for a message the agent must get whole (an error, a notice): a character without an
   * equivalent becomes `?`, as the server's own error reporting falls back to ASCII.
   */
  encodeLossy(text: string): Buffer {
    return iconv.encode(text, this.#table);
  }

  #invalid(bytes: Uint8Array): EncodingConversionError {
    return new EncodingConversionError(INVALID_BYTE_SEQUENCE, `invalid byte sequence for encoding "${this.name}": ${hexBytes(bytes)}`);
  }
}

const count = (bytes: Uint8Array, value: number): number => {
  let n = 0;
  for (const byte of bytes) if (byte === value) n++;
  return n;
};

const countChar = (text: string, char: string): number => {
  let n = 0;
  for (let at = text.indexOf(char); at >= 0; at = text.indexOf(char, at + 1)) n++;
  return n;
};

const firstDifference = (a: Uint8Array, b: Uint8Array): number => {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : length;
};

/** The byte offset of the first character iconv-lite could not read (U+FFFD in its output), or -1. */
const invalidAt = (text: string, table: string): number => {
  const replaced = text.indexOf('\uFFFD');
  return replaced < 0 ? -1 : iconv.encode(text.slice(0, replaced), table).length;
};

/**
 * Where EUC bytes leave the EUC form (iconv-lite reads EUC-CN and EUC-KR with the wider GBK and UHC
 * tables): every byte of a character is 0xA1-0xFE (EUC-JP also has the single shifts 0x8E and 0x8F
 * as a first byte). Returns the offset of the first character that breaks it, or -1.
 */
const eucViolation = (bytes: Uint8Array, twoByteOnly: boolean): number => {
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i]!;
    if (byte < 0x80) continue;
    const shift = !twoByteOnly && (byte === 0x8e || byte === 0x8f);
    if (!shift && (byte < 0xa1 || byte === 0xff)) return i;
    const length = byte === 0x8f ? 3 : 2;
    for (let k = 1; k < length; k++) {
      const next = bytes[i + k];
      if (next === undefined || next < 0xa1 || next === 0xff) return i;
    }
    i += length - 1;
  }
  return -1;
};
