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
 * endpoint that returns the request's headers), over the body's bytes read as latin1 (one
 * character a byte). Each byte of a secret may come as itself or escaped the way real encoders
 * write it, one byte differently from the next: JSON `\u002B` (in any case) and `\/` (PHP, .NET
 * and Go each escape other characters), percent-encoded in either case, `+` for a space (forms),
 * HTML character references (`&#43;`, `&#x2b;`, `&amp;`), in any letter case, and NUL bytes between
 * characters (UTF-16 and UTF-32 text). A long secret is also found in base64 and base64url, at
 * each of the three alignments it can have inside a longer encoded text.
 *
 * Matching every form at every byte is two orders of magnitude slower than a search for a string,
 * so a body is first checked cheaply: the encoders above escape symbols, never letters or digits,
 * so a body holding a form of a secret holds each run of its letters and digits as it is (in some
 * case). Only a body that holds every run of a form is matched form by form; what that leaves is
 * checked once more with its escapes decoded, and a body still holding a credential is refused.
 */
export interface CredentialPattern {
  /** For each innermost secret: its runs of letters and digits, longest first, each found in any case. */
  readonly clues: readonly (readonly RegExp[])[];
  /** The base64 forms, as bytes (base64 has one case). */
  readonly base64: readonly Buffer[];
  /** The literal forms: the values, their JSON-escaped and percent-encoded forms, their base64. */
  readonly literal: RegExp;
  /** Every form, escapes mixed, to replace. */
  readonly exact: RegExp;
  /** The longest text, in bytes, `exact` can match: what a stream holds back between chunks. */
  readonly longest: number;
}

/** The most bytes one byte of a secret can take in the body: `&#x0000HH;` and three NUL bytes after it. */
const LONGEST_FORM_OF_A_BYTE = 13;

const NAMED_HTML_REFERENCES: Readonly<Record<string, string>> = { '&': 'amp', '<': 'lt', '>': 'gt', '"': 'quot', "'": 'apos' };
const NAMED_HTML_CHARACTERS: Readonly<Record<string, string>> = Object.fromEntries(Object.entries(NAMED_HTML_REFERENCES).map(([char, name]) => [name, char]));

const regexLiteral = (text: string): string => text.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');

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

/** Escapes `holdsCredential` decodes (once) and NUL bytes it drops, before looking for a literal form. */
// eslint-disable-next-line no-control-regex -- NUL bytes between characters are UTF-16 and UTF-32 text
const ESCAPE = /\\u00([0-9a-f]{2})|\\([/"\\])|%([0-9a-f]{2})|&#x0*([0-9a-f]{1,2});|&#0*([0-9]{1,3});|&(amp|lt|gt|quot|apos);|\x00+/gi;

const unescaped = (text: string): string =>
  text.replace(ESCAPE, (_escape, json?: string, backslashed?: string, percent?: string, hexReference?: string, reference?: string, named?: string) => {
    const hex = json ?? percent ?? hexReference;
    if (hex !== undefined) return String.fromCharCode(parseInt(hex, 16));
    if (reference !== undefined) return String.fromCharCode(Number(reference) & 0xff);
    return backslashed ?? (named === undefined ? '' : NAMED_HTML_CHARACTERS[named.toLowerCase()]!);
  });

/** The pattern of every form of `values` (header values and bare secrets); undefined when none is long enough to search for. */
export const credentialPattern = (values: readonly string[]): CredentialPattern | undefined => {
  const texts = new Set<string>();
  const secrets = new Set<string>();
  const base64 = new Set<string>();
  const literals = new Set<string>();
  const searched = values.filter((value) => value.length >= MIN_SCRUBBED_LENGTH);
  for (const value of searched) {
    texts.add(value);
    const bytes = Buffer.from(value, 'utf8').toString('latin1');
    for (const form of [bytes, JSON.stringify(value).slice(1, -1), encodeURIComponent(value)]) literals.add(form).add(unescaped(form));
    // A header value holds its bare secret: the quick test looks for the secret alone, and the
    // base64 of a header value holds the base64 forms of a secret long enough to have them.
    const within = searched.filter((other) => other !== value && value.includes(other));
    if (within.length === 0) secrets.add(value);
    if (value.length < MIN_BASE64_SCRUBBED_LENGTH || within.some((other) => other.length >= MIN_BASE64_SCRUBBED_LENGTH)) continue;
    for (const form of base64Forms(value)) {
      texts.add(form);
      base64.add(form);
      literals.add(form);
    }
  }
  if (texts.size === 0) return undefined;
  // Longest first, so a header value is replaced whole rather than its bare secret within it.
  const longestFirst = (forms: Iterable<string>): string[] => [...forms].sort((a, b) => Buffer.byteLength(b) - Buffer.byteLength(a));
  const ordered = longestFirst(texts);
  const runsOf = (text: string): string[] => longestFirst(Buffer.from(text, 'utf8').toString('latin1').match(/[A-Za-z0-9]+/g) ?? []);
  return {
    clues: [...secrets].map((secret) => runsOf(secret).map((run) => new RegExp(run, 'i'))),
    base64: [...base64].map((form) => Buffer.from(form, 'latin1')),
    literal: new RegExp(longestFirst(literals).map(regexLiteral).join('|'), 'i'),
    exact: new RegExp(ordered.map(patternOf).join('|'), 'gi'),
    longest: LONGEST_FORM_OF_A_BYTE * Buffer.byteLength(ordered[0]!),
  };
};

/** Could the text hold a secret: every run of letters and digits of one of them? A secret of symbols only could be anywhere. */
const mayHold = (text: string, pattern: CredentialPattern): boolean => pattern.clues.some((runs) => runs.every((run) => run.test(text)));

/** Does the text hold a credential, as it is or with its escapes decoded? */
const holdsCredential = (text: string, pattern: CredentialPattern): boolean => pattern.literal.test(text) || pattern.literal.test(unescaped(text));

/** Raised for a body in which a credential is found but cannot be replaced: it is withheld, not sent. */
export class CredentialNotScrubbed extends Error {
  constructor() {
    super('an echoed credential could not be scrubbed');
  }
}

/** The bytes with every echoed credential replaced; the same buffer when there is none. */
const replaceAll = (data: Buffer, pattern: CredentialPattern): Buffer => {
  const text = data.toString('latin1');
  const candidate =
    mayHold(text, pattern) ||
    pattern.base64.some((form) => data.includes(form)) ||
    // UTF-16 and UTF-32 text holds NUL bytes between the characters of a run.
    (data.includes(0) && mayHold(text.replaceAll('\0', ''), pattern));
  if (!candidate) return data;
  pattern.exact.lastIndex = 0;
  const scrubbed = text.replace(pattern.exact, CREDENTIAL_REDACTED);
  // A form the quick test knows but the exact pattern does not (a run of NUL bytes, a reference
  // padded with many zeros): fail closed.
  if (holdsCredential(scrubbed, pattern)) throw new CredentialNotScrubbed();
  return scrubbed === text ? data : Buffer.from(scrubbed, 'latin1');
};

/** A whole body with every echoed credential replaced; throws CredentialNotScrubbed for one that cannot be made safe. */
export const scrubCredentials = (data: Buffer, pattern: CredentialPattern | undefined): Buffer => (pattern ? replaceAll(data, pattern) : data);

/** A header value with every echoed credential replaced (replaced whole when it cannot be scrubbed in part). */
export const scrubText = (text: string, pattern: CredentialPattern | undefined): string => {
  if (!pattern) return text;
  const bytes = Buffer.from(text, 'utf8');
  try {
    const scrubbed = replaceAll(bytes, pattern);
    return scrubbed === bytes ? text : scrubbed.toString('utf8');
  } catch {
    return CREDENTIAL_REDACTED;
  }
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
    let data: Buffer;
    try {
      data = replaceAll(this.carry.length > 0 ? Buffer.concat([this.carry, chunk]) : chunk, this.pattern);
    } catch (error) {
      callback(error as Error);
      return;
    }
    const cut = Math.max(0, data.length - this.keep);
    this.carry = Buffer.from(data.subarray(cut));
    if (cut > 0) this.push(data.subarray(0, cut));
    callback();
  }

  override _flush(callback: TransformCallback): void {
    callback(null, this.carry.length > 0 ? this.carry : undefined);
  }
}
