import { Transform, type TransformCallback } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import type { MaskCounts, ProfileMasker } from '@sluice/masking-engine';
import { maskNamedValues } from '../named-values.js';
import { maskJsonDocument, sameJson } from '../redis/reply-masking.js';

/**
 * Streaming text masking keeps a window of this many characters unsent, so a value split
 * across chunks is masked whole. Memory per response is bounded by about twice this plus one
 * chunk, whatever the body's size.
 */
export const DEFAULT_MASK_WINDOW = 16 * 1024;

/** JSON bodies up to this size are parsed and walked (maskJson); larger ones are scanned as text. */
export const DEFAULT_MAX_JSON_BYTES = 8 * 1024 * 1024;

export type BodyKind = 'json' | 'text' | 'opaque';

/** How a response body can be masked, from its content type. */
export const bodyKind = (contentType: string | undefined): BodyKind => {
  const type = (contentType ?? '').split(';', 1)[0]!.trim().toLowerCase();
  if (type === 'application/json' || type.endsWith('+json')) return 'json';
  if (
    type.startsWith('text/') ||
    type.endsWith('+xml') ||
    type === 'application/xml' ||
    type === 'application/javascript' ||
    type === 'application/x-ndjson' ||
    type === 'application/ndjson' ||
    type === 'application/x-www-form-urlencoded' ||
    type === 'application/graphql-response+json'
  ) {
    return 'text';
  }
  return 'opaque';
};

/** A decoder for a content-encoding, `null` for identity, undefined when Sluice cannot decode it. */
export const decoderFor = (encoding: string | undefined): (() => Transform) | null | undefined => {
  const value = (encoding ?? '').trim().toLowerCase();
  if (value === '' || value === 'identity') return null;
  if (value === 'gzip' || value === 'x-gzip') return () => createGunzip();
  if (value === 'deflate') return () => createInflate();
  if (value === 'br') return () => createBrotliDecompress();
  return undefined;
};

/**
 * Where to cut the text so no sensitive value is split: the last line break before `limit`,
 * else the end of a JSON member (`",`), else a space between non-digits (card and phone
 * numbers hold spaces between digits), else `limit` itself. A PEM block that has begun but not
 * ended is kept whole when it fits in the window.
 */
export const safeCut = (text: string, limit: number, window: number): number => {
  const floor = Math.max(1, limit - window);
  const pemStart = text.lastIndexOf('-----BEGIN', limit);
  if (pemStart >= floor && text.indexOf('-----END', pemStart) === -1) return pemStart;
  const newline = text.lastIndexOf('\n', limit - 1);
  if (newline >= floor) return newline + 1;
  for (let i = limit - 1; i >= floor; i--) {
    const c = text.charCodeAt(i);
    if (c === 0x2c /* , */ && text.charCodeAt(i - 1) === 0x22 /* " */) return i + 1;
  }
  for (let i = limit - 1; i >= floor; i--) {
    const c = text.charCodeAt(i);
    if ((c === 0x20 || c === 0x09) && !isDigit(text.charCodeAt(i - 1)) && !isDigit(text.charCodeAt(i + 1))) return i + 1;
  }
  return limit;
};

const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;

/** Masks a UTF-8 text stream with maskText, holding back a window so split values are still caught. */
export class TextMaskStream extends Transform {
  private readonly decoder = new StringDecoder('utf8');
  private carry = '';

  constructor(
    private readonly masker: ProfileMasker,
    private readonly counts: MaskCounts,
    private readonly window = DEFAULT_MASK_WINDOW,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.carry += this.decoder.write(chunk);
      while (this.carry.length >= 2 * this.window) {
        const cut = safeCut(this.carry, this.carry.length - this.window, this.window);
        this.push(maskTextWithJsonLines(this.carry.slice(0, cut), this.masker, this.counts), 'utf8');
        this.carry = this.carry.slice(cut);
      }
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    try {
      this.carry += this.decoder.end();
      if (this.carry.length > 0) this.push(maskTextWithJsonLines(this.carry, this.masker, this.counts), 'utf8');
      this.carry = '';
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }
}

/**
 * Masks streamed text; under a profile with column rules, a line that ends in a JSON object or
 * array (`data: {…}` of server-sent events, a JSON log line) has that JSON walked, so members a
 * column rule names are masked whole; values other lines name (`<ssn>`, `ssn=…`, `ssn: …`) are
 * masked by their name's rule. Other lines are masked together, as one text, so detectors that
 * span lines (PEM blocks) still see them whole.
 */
export const maskTextWithJsonLines = (text: string, masker: ProfileMasker, counts: MaskCounts): string => {
  if (masker.columnRuleCount === 0) return masker.maskText(text, counts);
  if (!/[[{]/.test(text)) return masker.maskText(maskNamedValues(text, masker, counts), counts);
  const out: string[] = [];
  let run: string[] = [];
  const flush = () => {
    if (run.length > 0) out.push(masker.maskText(maskNamedValues(run.join('\n'), masker, counts), counts));
    run = [];
  };
  for (const line of text.split('\n')) {
    const walked = jsonLine(line, masker, counts);
    if (walked === undefined) run.push(line);
    else {
      flush();
      out.push(walked);
    }
  }
  flush();
  return out.join('\n');
};

/** The line with its trailing JSON walked, or undefined when it does not end in JSON. */
const jsonLine = (line: string, masker: ProfileMasker, counts: MaskCounts): string | undefined => {
  const start = line.search(/[[{]/);
  if (start < 0) return undefined;
  const json = line.slice(start).trimEnd();
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const walked = maskJsonDocument(parsed, masker, counts);
  const body = sameJson(parsed, walked) ? json : JSON.stringify(walked);
  return masker.maskText(line.slice(0, start), counts) + body + line.slice(start + json.length);
};

/** The first `maxBytes` of a response body as sent, for the result.returned record. */
export class BodyRecording {
  private readonly kept: Buffer[] = [];
  private keptBytes = 0;
  /** A body sent whole as a text that fits: recorded as it is. */
  private keptText: string | undefined;
  total = 0;

  constructor(private readonly maxBytes: number) {}

  /** A body sent whole; a text that fits is kept as it is (not encoded, copied and decoded again). */
  keepWhole(body: Buffer | string, bytes: number): void {
    if (typeof body !== 'string') return this.keep(body);
    if (this.total > 0 || bytes > this.maxBytes) return this.keep(Buffer.from(body, 'utf8'));
    this.keptText = body;
    this.total = bytes;
    this.keptBytes = bytes;
  }

  keep(chunk: Buffer): void {
    this.total += chunk.length;
    if (this.keptBytes < this.maxBytes) {
      const part = chunk.subarray(0, this.maxBytes - this.keptBytes);
      this.kept.push(part);
      this.keptBytes += part.length;
    }
  }

  get recorded(): string {
    if (this.keptText !== undefined) return this.keptText;
    // A body read whole is one chunk: decoded as it is, not copied first.
    return this.kept.length === 1 ? this.kept[0]!.toString('utf8') : Buffer.concat(this.kept).toString('utf8');
  }

  get truncated(): boolean {
    return this.total > this.keptBytes;
  }
}

/** Keeps what passes through in a BodyRecording (a streamed body). */
export class RecordingTap extends Transform {
  constructor(private readonly recording: BodyRecording) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.recording.keep(chunk);
    callback(null, chunk);
  }
}
