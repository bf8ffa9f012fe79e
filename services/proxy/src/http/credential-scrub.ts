import { Transform, type TransformCallback } from 'node:stream';

/** What an echoed credential is replaced with, in headers and bodies. */
export const CREDENTIAL_REDACTED = '[REDACTED:credential]';

/**
 * Secrets shorter than this are not searched for: replacing every occurrence of a 3-character
 * string would corrupt bodies while protecting nothing a guess could not find.
 */
const MIN_SCRUBBED_LENGTH = 6;

/**
 * Secrets from this length on are searched for in base64 too. The base64 of a shorter one is
 * a handful of characters that ordinary base64 data (an embedded image) would hold by chance.
 */
const MIN_BASE64_SCRUBBED_LENGTH = 16;

/**
 * Every form in which a target could echo the credentials Sluice injected (a debug page, an
 * endpoint that returns the request's headers), as one case-insensitive pattern over the body's
 * bytes (read as latin1, one character a byte). Each byte of a secret may come as itself or
 * escaped the way real encoders write it, one byte differently from the next: JSON `\u002B` (in
 * any case) and `\/` (PHP, .NET and Go each escape other characters), percent-encoded in either
 * case, `+` for a space (forms), HTML character references (`&#43;`, `&#x2b;`, `&amp;`), and
 * NUL bytes between characters (UTF-16 and UTF-32 text). A long secret is also found in base64 and
 * base64url, at each of the three alignments it can have inside a longer encoded text.
 */
export interface CredentialPattern {
  readonly regex: RegExp;
  /** The longest text, in bytes, the pattern can match: what a stream holds back between chunks. */
  readonly longest: number;
}

/** The most bytes one byte of a secret can take in the body: `&#x0000HH;` and three NUL bytes after it. */
const LONGEST_FORM_OF_A_BYTE = 13;

const NAMED_HTML_REFERENCES: Readonly<Record<string, string>> = { '&': 'amp', '<': 'lt', '>': 'gt', '"': 'quot', "'": 'apos' };

const regexLiteral = (char: string): string => char.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');

/** Every way one byte of a secret may be written, as a regex alternation. */
const formsOfByte = (byte: number): string => {
  const char = String.fromCharCode(byte);
  const hex = byte.toString(16).padStart(2, '0');
  const forms = [regexLiteral(char), `%${hex}`];
  if (byte < 0x80) {
    forms.push(`\\\\u00${hex}`, `&#0{0,4}${byte};`, `&#x0{0,4}${hex};`);
    if (char === '/' || char === '"' || char === '\\') forms.push(`\\\\${regexLiteral(char)}`);
    if (char === ' ') forms.push('\\+');
    const named = NAMED_HTML_REFERENCES[char];
    if (named) forms.push(`&${named};`);
  }
  return `(?:${forms.join('|')})`;
};

/** A text in every form its bytes may take, NUL bytes allowed between them. */
const patternOf = (text: string): string => [...Buffer.from(text, 'utf8')].map(formsOfByte).join('\\x00{0,3}');

/** The characters of the base64 of `secret` that do not depend on the bytes around it, at each alignment. */
const base64Forms = (secret: string): string[] => {
  const bytes = Buffer.from(secret, 'utf8');
  const forms: string[] = [];
  for (let before = 0; before < 3; before++) {
    const encoded = Buffer.concat([Buffer.alloc(before), bytes, Buffer.alloc(2)]).toString('base64');
    // Character i carries bits [6i, 6i + 6): kept when they all come from the secret.
    const first = Math.ceil((8 * before) / 6);
    const end = Math.floor((8 * (before + bytes.length)) / 6);
    const inner = encoded.slice(first, end);
    forms.push(inner, inner.replaceAll('+', '-').replaceAll('/', '_'));
  }
  return forms;
};

/** The pattern of every form of `values` (header values and bare secrets); undefined when none is long enough to search for. */
export const credentialPattern = (values: readonly string[]): CredentialPattern | undefined => {
  const texts = new Set<string>();
  for (const value of values) {
    if (value.length < MIN_SCRUBBED_LENGTH) continue;
    texts.add(value);
    if (value.length >= MIN_BASE64_SCRUBBED_LENGTH) for (const form of base64Forms(value)) texts.add(form);
  }
  if (texts.size === 0) return undefined;
  // Longest first, so a header value is replaced whole rather than its bare secret within it.
  const ordered = [...texts].sort((a, b) => Buffer.byteLength(b) - Buffer.byteLength(a));
  return {
    regex: new RegExp(ordered.map(patternOf).join('|'), 'gi'),
    longest: LONGEST_FORM_OF_A_BYTE * Buffer.byteLength(ordered[0]!),
  };
};

/** The bytes with every echoed credential replaced; the same buffer when there is none. */
const replaceAll = (data: Buffer, pattern: CredentialPattern): Buffer => {
  const text = data.toString('latin1');
  pattern.regex.lastIndex = 0;
  if (!pattern.regex.test(text)) return data;
  pattern.regex.lastIndex = 0;
  return Buffer.from(text.replace(pattern.regex, CREDENTIAL_REDACTED), 'latin1');
};

/** A whole body with every echoed credential replaced. */
export const scrubCredentials = (data: Buffer, pattern: CredentialPattern | undefined): Buffer => (pattern ? replaceAll(data, pattern) : data);

/** A header value with every echoed credential replaced. */
export const scrubText = (text: string, pattern: CredentialPattern | undefined): string => {
  if (!pattern) return text;
  const bytes = Buffer.from(text, 'utf8');
  const scrubbed = replaceAll(bytes, pattern);
  return scrubbed === bytes ? text : scrubbed.toString('utf8');
};

/**
 * Replaces echoed credentials in a (decoded) body stream, whatever its content type. The last
 * `longest - 1` bytes are held back, so a credential split across chunks is still found whole.
 */
export class CredentialScrubStream extends Transform {
  private carry: Buffer = Buffer.alloc(0);
  private readonly keep: number;

  constructor(private readonly pattern: CredentialPattern) {
    super();
    this.keep = pattern.longest - 1;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const data = replaceAll(this.carry.length > 0 ? Buffer.concat([this.carry, chunk]) : chunk, this.pattern);
    const cut = Math.max(0, data.length - this.keep);
    this.carry = Buffer.from(data.subarray(cut));
    if (cut > 0) this.push(data.subarray(0, cut));
    callback();
  }

  override _flush(callback: TransformCallback): void {
    if (this.carry.length > 0) this.push(replaceAll(this.carry, this.pattern));
    callback();
  }
}
