/**
 * Reading a response body that may be JSON, and walking it so column rules apply by member name.
 * Helpers of the HTTP adapter's masking; the iterator of the body is advanced by hand throughout
 * (a `return` out of for-await would destroy the stream), so reading can always continue.
 */
import type { Readable } from 'node:stream';
import type { MaskCounts, ProfileMasker } from '@sluice/masking-engine';
import { maskJsonDocument, sameJson } from '../redis/reply-masking.js';
import { maskTextWithJsonLines } from './body-masking.js';

export interface BodyRead {
  readonly bytes: Buffer;
  /** The body ended within what was read. */
  readonly complete: boolean;
}

const isJsonSpace = (byte: number): boolean => byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d;

/**
 * Reads until the first byte that is not JSON whitespace (or the end, or past `max` bytes). The
 * iterator is advanced by hand (a `return` out of for-await would destroy the stream), so reading
 * can continue from it.
 */
export const readStart = async (chunks: AsyncIterator<Buffer>, max: number): Promise<BodyRead> => {
  const parts: Buffer[] = [];
  let size = 0;
  for (;;) {
    const next = await chunks.next();
    if (next.done) return { bytes: Buffer.concat(parts), complete: true };
    parts.push(next.value);
    size += next.value.length;
    const bytes = Buffer.concat(parts);
    const partOfBom = bytes.length < 3 && bytes.every((byte, index) => byte === BOM[index]);
    if (size > max || (!partOfBom && bytes.subarray(hasBom(bytes) ? 3 : 0).some((byte) => !isJsonSpace(byte)))) return { bytes, complete: false };
  }
};

/**
 * Reads a body to its end, or until past `max` bytes, by its events: an async iterator per
 * response costs more than the rest of reading a small body. Past `max` the stream is left
 * paused with the rest unread, for an iterator to go on from (readable events take over).
 */
export const readUpTo = (stream: Readable, max: number): Promise<BodyRead> =>
  new Promise<BodyRead>((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    const stop = (): void => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      stream.off('close', onClose);
    };
    const onData = (chunk: Buffer): void => {
      parts.push(chunk);
      size += chunk.length;
      if (size <= max) return;
      stream.pause();
      stop();
      resolve({ bytes: Buffer.concat(parts), complete: false });
    };
    const onEnd = (): void => {
      stop();
      resolve({ bytes: parts.length === 1 ? parts[0]! : Buffer.concat(parts), complete: true });
    };
    const onError = (error: Error): void => {
      stop();
      reject(error);
    };
    // Closed before its end without an error (the target went away mid-body): not a whole body.
    const onClose = (): void => onError(new Error('the body ended before it was complete'));
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onError);
    stream.on('close', onClose);
  });

/** The UTF-8 byte-order mark, which some servers write before a document. */
const BOM = [0xef, 0xbb, 0xbf] as const;
const hasBom = (bytes: Buffer): boolean => bytes[0] === BOM[0] && bytes[1] === BOM[1] && bytes[2] === BOM[2];

/** Reads on until the end or past `max` bytes in all. */
export const readMore = async (first: Buffer, chunks: AsyncIterator<Buffer>, max: number): Promise<BodyRead> => {
  const parts: Buffer[] = [first];
  let size = first.length;
  while (size <= max) {
    const next = await chunks.next();
    if (next.done) return { bytes: Buffer.concat(parts), complete: true };
    parts.push(next.value);
    size += next.value.length;
  }
  return { bytes: Buffer.concat(parts), complete: false };
};

/** Does the body start (after whitespace) like a JSON object or array? */
export const opensLikeJson = (bytes: Buffer): boolean => {
  // A UTF-8 byte-order mark may come first (some servers write one).
  const first = bytes.subarray(hasBom(bytes) ? 3 : 0).find((byte) => !isJsonSpace(byte));
  return first === 0x7b /* { */ || first === 0x5b /* [ */;
};

export async function* prepend(first: Buffer, rest: AsyncIterator<Buffer>): AsyncGenerator<Buffer> {
  yield first;
  for (;;) {
    const next = await rest.next();
    if (next.done) return;
    yield next.value;
  }
}

/**
 * A body masked whole: its bytes (as they came when masking changed nothing, or as the text
 * scan wrote them), or the JSON text masking wrote, sent and recorded as it is: never encoded to
 * bytes and decoded back. Such a text is well-formed (JSON.stringify escapes a lone surrogate),
 * so its UTF-8 is the same however it is encoded.
 */
export type MaskedBody = Buffer | string;

/** The size in bytes of a masked body as it is sent (UTF-8). */
export const byteLengthOf = (body: MaskedBody): number => (typeof body === 'string' ? Buffer.byteLength(body, 'utf8') : body.length);

/** Walks a JSON document with maskJson; a body that is not JSON is scanned as text instead. */
export const maskJsonText = (bytes: Buffer, masker: ProfileMasker, counts: MaskCounts): MaskedBody => {
  const text = bytes.toString('utf8', hasBom(bytes) ? 3 : 0);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return Buffer.from(maskTextWithJsonLines(text, masker, counts), 'utf8');
  }
  const masked = maskJsonDocument(parsed, masker, counts);
  // Re-serialising an unchanged document could lose precision (big integers): send the original.
  return sameJson(parsed, masked) ? bytes : JSON.stringify(masked);
};

/**
 * A text body that opened like JSON: one JSON document, or NDJSON (one document per line), is
 * walked as JSON so column rules apply by member name; anything else is scanned as text.
 */
export const maskTextBody = (bytes: Buffer, masker: ProfileMasker, counts: MaskCounts): MaskedBody => {
  const text = bytes.toString('utf8', hasBom(bytes) ? 3 : 0);
  let oneDocument = true;
  try {
    JSON.parse(text);
  } catch {
    // Not one document: perhaps one per line.
    oneDocument = false;
  }
  // Outside the try: a document masking refuses (nested past MAX_JSON_DEPTH) is withheld, not
  // scanned line by line, where a covered member spelled `"\u0073sn"` or holding an object is not seen.
  if (oneDocument) return maskJsonText(bytes, masker, counts);
  const lines = text.split('\n');
  const documents: unknown[] = [];
  for (const line of lines) {
    if (line.trim() === '') {
      documents.push(undefined);
      continue;
    }
    try {
      documents.push(JSON.parse(line));
    } catch {
      return Buffer.from(maskTextWithJsonLines(text, masker, counts), 'utf8');
    }
  }
  const masked = lines.map((line, index) => {
    const document = documents[index];
    if (document === undefined) return line;
    const walked = maskJsonDocument(document, masker, counts);
    return sameJson(document, walked) ? line : JSON.stringify(walked) + (line.endsWith('\r') ? '\r' : '');
  });
  return Buffer.from(masked.join('\n'), 'utf8');
};
