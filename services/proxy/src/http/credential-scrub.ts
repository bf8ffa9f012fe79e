import { Transform, type TransformCallback } from 'node:stream';

/** What an echoed credential is replaced with, in headers and bodies. */
export const CREDENTIAL_REDACTED = '[REDACTED:credential]';

/**
 * Secrets shorter than this are not searched for: replacing every occurrence of a 3-character
 * string would corrupt bodies while protecting nothing a guess could not find.
 */
const MIN_SCRUBBED_LENGTH = 6;

/**
 * The forms in which a target could echo a credential Sluice injected (a debug page, an endpoint
 * that returns the request's headers): the header value and the bare secret, as they are, escaped
 * inside a JSON string, and percent-encoded. Longest first, so a header value is replaced whole.
 */
export const credentialNeedles = (values: readonly string[]): Buffer[] => {
  const forms = new Set<string>();
  for (const value of values) {
    if (value.length < MIN_SCRUBBED_LENGTH) continue;
    forms.add(value);
    forms.add(JSON.stringify(value).slice(1, -1));
    forms.add(encodeURIComponent(value));
  }
  return [...forms].sort((a, b) => b.length - a.length).map((form) => Buffer.from(form, 'utf8'));
};

const replaceAll = (data: Buffer, needles: readonly Buffer[], replacement: Buffer): Buffer => {
  let out = data;
  for (const needle of needles) {
    let at = out.indexOf(needle);
    if (at < 0) continue;
    const parts: Buffer[] = [];
    let from = 0;
    while (at >= 0) {
      parts.push(out.subarray(from, at), replacement);
      from = at + needle.length;
      at = out.indexOf(needle, from);
    }
    parts.push(out.subarray(from));
    out = Buffer.concat(parts);
  }
  return out;
};

const REPLACEMENT = Buffer.from(CREDENTIAL_REDACTED);

/** A whole body with every echoed credential replaced. */
export const scrubCredentials = (data: Buffer, needles: readonly Buffer[]): Buffer => (needles.length === 0 ? data : replaceAll(data, needles, REPLACEMENT));

/** A header value with every echoed credential replaced. */
export const scrubText = (text: string, needles: readonly Buffer[]): string => {
  if (needles.length === 0) return text;
  const bytes = Buffer.from(text, 'utf8');
  const scrubbed = replaceAll(bytes, needles, Buffer.from(CREDENTIAL_REDACTED));
  return scrubbed === bytes ? text : scrubbed.toString('utf8');
};

/**
 * Replaces echoed credentials in a (decoded) body stream, byte by byte, whatever its content
 * type. The last `longest - 1` bytes are held back, so a credential split across chunks is
 * still found whole.
 */
export class CredentialScrubStream extends Transform {
  private carry: Buffer = Buffer.alloc(0);
  private readonly keep: number;
  private readonly replacement = Buffer.from(CREDENTIAL_REDACTED);

  constructor(private readonly needles: readonly Buffer[]) {
    super();
    this.keep = Math.max(0, ...needles.map((needle) => needle.length - 1));
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const data = replaceAll(this.carry.length > 0 ? Buffer.concat([this.carry, chunk]) : chunk, this.needles, this.replacement);
    const cut = Math.max(0, data.length - this.keep);
    this.carry = Buffer.from(data.subarray(cut));
    if (cut > 0) this.push(data.subarray(0, cut));
    callback();
  }

  override _flush(callback: TransformCallback): void {
    if (this.carry.length > 0) this.push(this.carry);
    callback();
  }
}
