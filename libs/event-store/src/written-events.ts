import type { CloudEvent } from '@sluice/contracts';
import { timeWrittenAsStored } from './chain.js';

/*
 * Events read straight from the bytes a publisher wrote. Sluice's publishers write each event as
 * the RFC 8785 text of its stored form (members sorted, `data` first, time as toISOString gives
 * it), and a batch as `[event,event,…]`. When a message's bytes are exactly that, each event's
 * bytes are the text its chain hash covers and its `data` bytes the data column's text, so the
 * audit service need not decode, parse and serialise them again: one pass over the bytes checks
 * that they are canonical and picks out the columns. Anything the pass does not take as canonical
 * (a foreign publisher, whitespace, keys out of order or repeated, `__proto__`, an escape or a
 * number JSON.stringify would write otherwise, U+0000 or a lone surrogate the store replaces,
 * UTF-8 that is not well-formed, a time the store would give back otherwise) makes the whole
 * message take the general path (decodeEvents, prepareEvent), which stores the same rows from the
 * same bytes; written-events.spec.ts holds the two to the same columns, texts and COPY bytes.
 */

/**
 * UTF-8 bytes a text the store indexes with a btree (id, session_id, subject_sub, command_id,
 * approval_id) may have: an index entry holds at most 2704 bytes, and a longer text fails the
 * COPY, and with it the whole batch at every retry.
 */
export const MAX_INDEXED_TEXT_BYTES = 2048;

/** The scan stopped: the message is not taken as written. */
const REFUSED = -1;

/** Nesting beyond this is left to the general path (JSON.parse), not followed here. */
const MAX_DEPTH = 64;

/** Set by scanString for the string it just passed: whether it holds an escape, a non-ASCII character. */
const ESCAPED = 1;
const NON_ASCII = 2;
let stringFlags = 0;
/** Whether any string scanned since it was last cleared holds an escape (and so a backslash). */
let sawEscape = false;
/** Whether any text read for a column since it was last cleared held an escape. */
let columnEscaped = false;

/** Set by scanNumber: the number's value, and whether it is a non-negative integer written as digits. */
let numberValue = 0;
let numberIsCount = false;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

/** 1 for the bytes a string holds as themselves: printable ASCII but `"` and `\`. */
const PLAIN = new Uint8Array(256);
for (let byte = 0x20; byte < 0x80; byte += 1) PLAIN[byte] = byte === 0x22 || byte === 0x5c ? 0 : 1;

const isContinuation = (byte: number | undefined): boolean => byte !== undefined && (byte & 0xc0) === 0x80;

/**
 * Length of the well-formed UTF-8 sequence at `at` (RFC 3629, table 3-7 of Unicode: no overlong
 * forms, no surrogates, nothing past U+10FFFF), or 0. TextDecoder would turn anything else into
 * U+FFFD, which the bytes do not say.
 */
const utf8SequenceLength = (bytes: Buffer, at: number): number => {
  const lead = bytes[at]!;
  const second = bytes[at + 1];
  if (lead >= 0xc2 && lead <= 0xdf) return isContinuation(second) ? 2 : 0;
  if (lead >= 0xe0 && lead <= 0xef) {
    if (second === undefined || !isContinuation(second) || !isContinuation(bytes[at + 2])) return 0;
    if (lead === 0xe0 && second < 0xa0) return 0;
    if (lead === 0xed && second > 0x9f) return 0;
    return 3;
  }
  if (lead >= 0xf0 && lead <= 0xf4) {
    if (second === undefined || !isContinuation(second) || !isContinuation(bytes[at + 2]) || !isContinuation(bytes[at + 3])) return 0;
    if (lead === 0xf0 && second < 0x90) return 0;
    if (lead === 0xf4 && second > 0x8f) return 0;
    return 4;
  }
  return 0;
};

const lowerHexDigit = (byte: number | undefined): number => {
  if (byte === undefined) return -1;
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  if (byte >= 0x61 && byte <= 0x66) return byte - 0x61 + 10;
  return -1;
};

/**
 * Passes the string at `at` (its opening quote), written as JSON.stringify writes strings: the
 * short escapes, `\u00xx` in lower case for the other C0 controls, everything else as itself.
 * `\u0000` and escaped surrogates (lone ones: the store replaces them) are refused too.
 */
const scanString = (bytes: Buffer, at: number): number => {
  let flags = 0;
  let index = at + 1;
  const length = bytes.length;
  while (index < length) {
    // The run of characters written as themselves, one table look-up a byte.
    while (index < length && PLAIN[bytes[index]!] === 1) index += 1;
    if (index >= length) break;
    const byte = bytes[index]!;
    if (byte === QUOTE) {
      stringFlags = flags;
      return index + 1;
    }
    if (byte === BACKSLASH) {
      flags |= ESCAPED;
      sawEscape = true;
      const escaped = bytes[index + 1];
      // " \ b f n r t
      if (escaped === 0x22 || escaped === 0x5c || escaped === 0x62 || escaped === 0x66 || escaped === 0x6e || escaped === 0x72 || escaped === 0x74) {
        index += 2;
        continue;
      }
      if (escaped !== 0x75 || bytes[index + 2] !== 0x30 || bytes[index + 3] !== 0x30) return REFUSED;
      const high = bytes[index + 4];
      const low = lowerHexDigit(bytes[index + 5]);
      if (low < 0 || (high !== 0x30 && high !== 0x31)) return REFUSED;
      const code = (high === 0x31 ? 16 : 0) + low;
      // U+0000 is not storable; the others have short escapes.
      if (code === 0 || code === 0x08 || code === 0x09 || code === 0x0a || code === 0x0c || code === 0x0d) return REFUSED;
      index += 6;
      continue;
    }
    if (byte < 0x20) return REFUSED;
    if (byte < 0x80) {
      index += 1;
      continue;
    }
    const sequence = utf8SequenceLength(bytes, index);
    if (sequence === 0) return REFUSED;
    flags |= NON_ASCII;
    index += sequence;
  }
  return REFUSED;
};

const isNumberByte = (byte: number): boolean => (byte >= 0x30 && byte <= 0x39) || byte === 0x2d || byte === 0x2b || byte === 0x2e || byte === 0x65 || byte === 0x45;

/** Digits of a count at most: below 2^53, so sums of a few stay exact whatever their order. */
const MAX_COUNT_DIGITS = 15;

/** Passes the number at `at` when it is written as JSON.stringify writes its value. */
const scanNumber = (bytes: Buffer, at: number): number => {
  let end = at;
  let digitsOnly = true;
  let value = 0;
  while (end < bytes.length && isNumberByte(bytes[end]!)) {
    const byte = bytes[end]!;
    if (byte >= 0x30 && byte <= 0x39) value = value * 10 + (byte - 0x30);
    else digitsOnly = false;
    end += 1;
  }
  const length = end - at;
  if (digitsOnly && length <= MAX_COUNT_DIGITS && (bytes[at] !== 0x30 || length === 1)) {
    numberValue = value;
    numberIsCount = true;
    return end;
  }
  if (length === 0) return REFUSED;
  const text = bytes.toString('latin1', at, end);
  const parsed = Number(text);
  // -0, 1E21, 1.0, +1, .5 and the like: JSON.stringify writes their values otherwise.
  if (String(parsed) !== text) return REFUSED;
  numberValue = parsed;
  numberIsCount = false;
  return end;
};

const matches = (bytes: Buffer, at: number, literal: readonly number[]): boolean => {
  for (let index = 0; index < literal.length; index += 1) if (bytes[at + index] !== literal[index]) return false;
  return true;
};

/** An ASCII text's bytes, as a plain array (every literal matched is one: one shape for matches). */
const bytesOf = (text: string): readonly number[] => Array.from(text, (char) => char.charCodeAt(0));
const TRUE = [0x74, 0x72, 0x75, 0x65];
const FALSE = [0x66, 0x61, 0x6c, 0x73, 0x65];
const NULL = [0x6e, 0x75, 0x6c, 0x6c];
const PROTO = bytesOf('"__proto__"');

/**
 * Whether the key [start, end) (quotes included, ASCII, no escape) follows the key before it
 * [previousStart, previousEnd) strictly: RFC 8785 sorts by UTF-16 code units, which for ASCII is
 * the order of the bytes, a key before every longer key it begins.
 */
const follows = (bytes: Buffer, previousStart: number, previousEnd: number, start: number, end: number): boolean => {
  const previousLength = previousEnd - previousStart - 2;
  const length = end - start - 2;
  const shorter = Math.min(previousLength, length);
  for (let offset = 1; offset <= shorter; offset += 1) {
    const before = bytes[previousStart + offset]!;
    const after = bytes[start + offset]!;
    if (before !== after) return before < after;
  }
  return previousLength < length;
};

/**
 * Passes an object member's key at `at` (its opening quote) that follows the key before it
 * (previousStart < 0 for the first): ASCII without escapes (other keys are left to the general
 * path, as their UTF-8 order is not always RFC 8785's), never `__proto__`, not starting with a
 * digit (JSON.parse lists integer-like keys first, so the general path writes some of them in
 * another order).
 */
const scanKey = (bytes: Buffer, at: number, previousStart: number, previousEnd: number): number => {
  if (bytes[at] !== QUOTE) return REFUSED;
  const end = scanString(bytes, at);
  if (end === REFUSED || stringFlags !== 0 || bytes[end] !== COLON) return REFUSED;
  const first = bytes[at + 1]!;
  if (first >= 0x30 && first <= 0x39) return REFUSED;
  if (previousStart >= 0 && !follows(bytes, previousStart, previousEnd, at, end)) return REFUSED;
  if (end - at === PROTO.length && matches(bytes, at, PROTO)) return REFUSED;
  return end;
};

const scanValue = (bytes: Buffer, at: number, depth: number): number => {
  const byte = bytes[at];
  if (byte === QUOTE) return scanString(bytes, at);
  if (byte === OPEN_BRACE) return scanObject(bytes, at, depth + 1, undefined);
  if (byte === OPEN_BRACKET) return scanArray(bytes, at, depth + 1, false);
  if (byte === 0x74) return matches(bytes, at, TRUE) ? at + 4 : REFUSED;
  if (byte === 0x66) return matches(bytes, at, FALSE) ? at + 5 : REFUSED;
  if (byte === 0x6e) return matches(bytes, at, NULL) ? at + 4 : REFUSED;
  if (byte === 0x2d || (byte !== undefined && byte >= 0x30 && byte <= 0x39)) return scanNumber(bytes, at);
  return REFUSED;
};

/** Set by a scan that sums counts (maskedCounts): their total. */
let countsTotal = 0;

/**
 * Passes an array; with `summing`, countsTotal is the sum of its numbers (Object.values of an
 * array is its elements). A number other than a count there is left to the general path, whose
 * floating-point sum could round otherwise in another order.
 */
const scanArray = (bytes: Buffer, at: number, depth: number, summing: boolean): number => {
  if (depth > MAX_DEPTH) return REFUSED;
  let total = 0;
  let index = at + 1;
  if (bytes[index] === CLOSE_BRACKET) {
    if (summing) countsTotal = 0;
    return index + 1;
  }
  for (;;) {
    const byte = bytes[index];
    index = scanValue(bytes, index, depth);
    if (index === REFUSED) return REFUSED;
    if (summing && (byte === 0x2d || (byte! >= 0x30 && byte! <= 0x39))) {
      if (!numberIsCount) return REFUSED;
      total += numberValue;
    }
    const next = bytes[index];
    if (next === COMMA) {
      index += 1;
      continue;
    }
    if (next !== CLOSE_BRACKET) return REFUSED;
    if (summing) {
      // Exact whatever the order of the additions (Object.values' order is not the bytes').
      if (total > Number.MAX_SAFE_INTEGER) return REFUSED;
      countsTotal = total;
    }
    return index + 1;
  }
};

/**
 * Passes an object; `onMember` (if any) is told each member (the key without its quotes, where
 * its value starts and ends) and may refuse it. With `summing`, countsTotal is the sum of its
 * values' counts (maskedValues' reading), as scanArray's.
 */
const scanObject = (
  bytes: Buffer,
  at: number,
  depth: number,
  onMember: ((keyStart: number, keyEnd: number, valueStart: number, valueEnd: number) => boolean) | undefined,
  summing = false,
): number => {
  if (depth > MAX_DEPTH) return REFUSED;
  let index = at + 1;
  let total = 0;
  if (bytes[index] === CLOSE_BRACE) {
    if (summing) countsTotal = 0;
    return index + 1;
  }
  let previousStart = -1;
  let previousEnd = -1;
  for (;;) {
    const keyStart = index;
    const keyEnd = scanKey(bytes, index, previousStart, previousEnd);
    if (keyEnd === REFUSED) return REFUSED;
    const valueStart = keyEnd + 1;
    const first = bytes[valueStart];
    index = onMember === undefined ? scanValue(bytes, valueStart, depth) : scanMemberValue(bytes, valueStart, depth, onMember, keyStart, keyEnd);
    if (index === REFUSED) return REFUSED;
    if (summing && (first === 0x2d || (first! >= 0x30 && first! <= 0x39))) {
      if (!numberIsCount) return REFUSED;
      total += numberValue;
    }
    previousStart = keyStart;
    previousEnd = keyEnd;
    const next = bytes[index];
    if (next === COMMA) {
      index += 1;
      continue;
    }
    if (next !== CLOSE_BRACE) return REFUSED;
    if (summing) {
      if (total > Number.MAX_SAFE_INTEGER) return REFUSED;
      countsTotal = total;
    }
    return index + 1;
  }
};

const scanMemberValue = (
  bytes: Buffer,
  valueStart: number,
  depth: number,
  onMember: (keyStart: number, keyEnd: number, valueStart: number, valueEnd: number) => boolean,
  keyStart: number,
  keyEnd: number,
): number => {
  const end = scanValue(bytes, valueStart, depth);
  if (end === REFUSED) return REFUSED;
  return onMember(keyStart + 1, keyEnd - 1, valueStart, end) ? end : REFUSED;
};

const keyIs = (bytes: Buffer, start: number, end: number, name: readonly number[]): boolean => end - start === name.length && matches(bytes, start, name);

const ID = bytesOf('id');
const SOURCE = bytesOf('source');
const TYPE = bytesOf('type');
const SUBJECT = bytesOf('subject');
const TIME = bytesOf('time');
const RESOURCE = bytesOf('resource');
const COMMAND_ID = bytesOf('commandId');
const APPROVAL_ID = bytesOf('approvalId');
const DECISION = bytesOf('decision');
const RESULT = bytesOf('result');
const MASKED_COUNTS = bytesOf('maskedCounts');
const SUB = bytesOf('sub');
/** `{"data":`: an event written in canonical order starts so (no key sorts before `data` in Sluice's events). */
const DATA_FIRST = bytesOf('{"data":');

/**
 * The last ASCII text decoded in each place the consumer's texts are read (source, type, subject,
 * time), with the bytes it was decoded from: most repeat from one event to the next, and comparing
 * the bytes to the last one's bytes costs less than decoding them (a call into the runtime and a
 * new string each time). A payload is never written once read, so the bytes kept are still the text's.
 */
const lastTexts: string[] = [];
const lastPayloads: Buffer[] = [];
const lastStarts: number[] = [];
const REPEATING = { source: 0, type: 1, subject: 2, time: 3 } as const;

const sameBytes = (before: Buffer, beforeStart: number, bytes: Buffer, start: number, end: number): boolean => {
  for (let offset = 0; offset < end - start; offset += 1) if (before[beforeStart + offset] !== bytes[start + offset]) return false;
  return true;
};

/** bytes [start, end), ASCII, as text: the last text read in `place` when the bytes are its own. */
const asciiAt = (bytes: Buffer, start: number, end: number, place: number): string => {
  const last = lastTexts[place];
  if (last !== undefined && last.length === end - start && sameBytes(lastPayloads[place]!, lastStarts[place]!, bytes, start, end)) return last;
  const text = bytes.toString('latin1', start, end);
  lastTexts[place] = text;
  lastPayloads[place] = bytes;
  lastStarts[place] = start;
  return text;
};

/** The text of the string [start, end) (its quotes included) as JSON.parse gives it. */
const stringAt = (bytes: Buffer, start: number, end: number, flags: number, place = -1): string => {
  if ((flags & ESCAPED) !== 0) columnEscaped = true;
  if (flags === 0) return place < 0 ? bytes.toString('latin1', start + 1, end - 1) : asciiAt(bytes, start + 1, end - 1, place);
  if ((flags & ESCAPED) === 0) return bytes.toString('utf8', start + 1, end - 1);
  return JSON.parse(bytes.toString('utf8', start, end)) as string;
};

/**
 * Where an event's text columns are in its bytes: for each, the start and end of its JSON string
 * (quotes included), or -1 and -1 when the column is null (the value is absent or not a string,
 * as the store's stringField reads it). Written as COPY text, a column is its string's bytes
 * between the quotes unless WrittenEvent.columnEscaped; read as text, it is parsed when asked for.
 */
export const TEXT_COLUMN = { id: 0, sessionId: 2, type: 4, source: 6, time: 8, resource: 10, subjectSub: 12, commandId: 14, approvalId: 16, decision: 18 } as const;

/**
 * The texts the store indexes with a btree (see MAX_INDEXED_TEXT_BYTES), each by where it is in
 * an event (a refusal names it so: `data.subject.sub`) and by its column here. Both the scan
 * below and the general path's unindexableText check these, so neither can miss one.
 */
export const INDEXED_TEXTS = [
  { path: ['id'], column: TEXT_COLUMN.id },
  { path: ['subject'], column: TEXT_COLUMN.sessionId },
  { path: ['data', 'subject', 'sub'], column: TEXT_COLUMN.subjectSub },
  { path: ['data', 'commandId'], column: TEXT_COLUMN.commandId },
  { path: ['data', 'approvalId'], column: TEXT_COLUMN.approvalId },
] as const;

const INDEXED_COLUMNS: readonly number[] = INDEXED_TEXTS.map(({ column }) => column);

/** Records the string just scanned at [start, end) as `column`, or leaves the column null when the value is not a string. */
const spanOfString = (spans: number[], column: number, bytes: Buffer, start: number, end: number): void => {
  if (bytes[start] !== QUOTE) return;
  // Called just after the value was scanned: stringFlags are its own.
  if ((stringFlags & ESCAPED) !== 0) columnEscaped = true;
  spans[column] = start;
  spans[column + 1] = end;
};

/**
 * The counts the store derives from `data` (see batch-rows.ts: maskedValues), read while the
 * data is scanned.
 */
interface DataCounts {
  /** `data.result` is an object or array: the counts are its `maskedCounts` (an array has none). */
  resultIsObject: boolean;
  resultCounts: number;
  dataCounts: number;
}

/** maskedCounts as the store sums them: numbers of an object or array, anything else 0. */
const countsAt = (bytes: Buffer, start: number, end: number, depth: number): number => {
  const first = bytes[start];
  if (first === OPEN_BRACE) return scanObject(bytes, start, depth + 1, undefined, true) === end ? countsTotal : Number.NaN;
  if (first === OPEN_BRACKET) return scanArray(bytes, start, depth + 1, true) === end ? countsTotal : Number.NaN;
  return 0;
};

/** Reads `data` (scanned from `at`) for its derived columns into `spans` and `counts`; its end, or REFUSED. */
const scanData = (bytes: Buffer, at: number, spans: number[], counts: DataCounts): number => {
  if (bytes[at] !== OPEN_BRACE) return scanValue(bytes, at, 1);
  return scanObject(bytes, at, 2, (keyStart, keyEnd, valueStart, valueEnd) => {
    if (keyIs(bytes, keyStart, keyEnd, RESOURCE)) spanOfString(spans, TEXT_COLUMN.resource, bytes, valueStart, valueEnd);
    else if (keyIs(bytes, keyStart, keyEnd, COMMAND_ID)) spanOfString(spans, TEXT_COLUMN.commandId, bytes, valueStart, valueEnd);
    else if (keyIs(bytes, keyStart, keyEnd, APPROVAL_ID)) spanOfString(spans, TEXT_COLUMN.approvalId, bytes, valueStart, valueEnd);
    else if (keyIs(bytes, keyStart, keyEnd, DECISION)) spanOfString(spans, TEXT_COLUMN.decision, bytes, valueStart, valueEnd);
    else if (keyIs(bytes, keyStart, keyEnd, SUBJECT)) {
      if (bytes[valueStart] === OPEN_BRACE) {
        const end = scanObject(bytes, valueStart, 3, (innerStart, innerEnd, subStart, subEnd) => {
          if (keyIs(bytes, innerStart, innerEnd, SUB)) spanOfString(spans, TEXT_COLUMN.subjectSub, bytes, subStart, subEnd);
          return true;
        });
        if (end !== valueEnd) return false;
      }
    } else if (keyIs(bytes, keyStart, keyEnd, RESULT)) {
      const first = bytes[valueStart];
      if (first === OPEN_BRACKET) counts.resultIsObject = true;
      else if (first === OPEN_BRACE) {
        counts.resultIsObject = true;
        const end = scanObject(bytes, valueStart, 3, (innerStart, innerEnd, countsStart, countsEnd) => {
          if (!keyIs(bytes, innerStart, innerEnd, MASKED_COUNTS)) return true;
          counts.resultCounts = countsAt(bytes, countsStart, countsEnd, 3);
          return !Number.isNaN(counts.resultCounts);
        });
        if (end !== valueEnd) return false;
      }
    } else if (keyIs(bytes, keyStart, keyEnd, MASKED_COUNTS)) {
      counts.dataCounts = countsAt(bytes, valueStart, valueEnd, 2);
      return !Number.isNaN(counts.dataCounts);
    }
    return true;
  });
};

/** An event without members for the ext column. */
const NO_EXT_MEMBERS: readonly number[] = [];

/**
 * An event taken as written: its bytes in the message it came in, the columns read from them.
 * It is a CloudEvent to whatever handles it on the way (the consumer's checks read id, source,
 * type, subject and time); anything else of it is parsed from its bytes when asked for.
 */
export class WrittenEvent implements CloudEvent {
  #parsed: CloudEvent | undefined;

  constructor(
    /** The message's bytes (a copy: nothing the bus client owns is kept). */
    readonly payload: Buffer,
    /** The event's bytes [start, end): its stored form's RFC 8785 text. */
    readonly start: number,
    readonly end: number,
    /** `data`'s bytes [dataStart, dataEnd): the data column's text. */
    readonly dataStart: number,
    readonly dataEnd: number,
    /** Whether `data`'s bytes hold a backslash (which COPY's text format doubles). */
    readonly dataHasBackslash: boolean,
    /**
     * Whether a text column (id, source, type, subject, resource…) was written with an escape:
     * only then may it hold a tab, a line break or a backslash COPY's text format escapes, and
     * only then do its bytes differ from its text's UTF-8.
     */
    readonly columnEscaped: boolean,
    /** Where the text columns' strings are in `payload` (see TEXT_COLUMN). */
    readonly columnSpans: readonly number[],
    /**
     * The ext column's members (those other than the columns', in order): the start and end of
     * each in `payload`, `"key":value` (its JSON text is theirs joined by commas, in braces).
     */
    readonly extMembers: readonly number[],
    /** Whether the ext members' bytes hold a backslash (which COPY's text format doubles). */
    readonly extHasBackslash: boolean,
    readonly id: string,
    readonly source: string,
    readonly type: string,
    readonly subject: string,
    readonly time: string,
    /** The time as stored (time survives timestamptz's round trip as written). */
    readonly storedTime: Date,
    readonly maskedValues: number,
  ) {}

  /** The event's JSON text (its RFC 8785 text). */
  text(): string {
    return this.payload.toString('utf8', this.start, this.end);
  }

  /** `data`'s JSON text. */
  dataText(): string {
    return this.payload.toString('utf8', this.dataStart, this.dataEnd);
  }

  /** The members other than the columns', in order, as JSON: the ext column. */
  get extJson(): string {
    const members = this.extMembers;
    if (members.length === 0) return '{}';
    let json = '{';
    for (let index = 0; index < members.length; index += 2) json += (index === 0 ? '' : ',') + this.payload.toString('utf8', members[index], members[index + 1]);
    return `${json}}`;
  }

  get resource(): string | null {
    return this.#textColumn(TEXT_COLUMN.resource);
  }

  get subjectSub(): string | null {
    return this.#textColumn(TEXT_COLUMN.subjectSub);
  }

  get commandId(): string | null {
    return this.#textColumn(TEXT_COLUMN.commandId);
  }

  get approvalId(): string | null {
    return this.#textColumn(TEXT_COLUMN.approvalId);
  }

  get decision(): string | null {
    return this.#textColumn(TEXT_COLUMN.decision);
  }

  /** The event as decodeEvents gives it. */
  toJSON(): CloudEvent {
    this.#parsed ??= JSON.parse(this.text()) as CloudEvent;
    return this.#parsed;
  }

  get specversion(): '1.0' {
    return this.toJSON().specversion;
  }

  get datacontenttype(): 'application/json' {
    return this.toJSON().datacontenttype;
  }

  get sessionseq(): number | undefined {
    return this.toJSON().sessionseq;
  }

  get data(): CloudEvent['data'] {
    return this.toJSON().data;
  }

  #textColumn(column: number): string | null {
    const start = this.columnSpans[column]!;
    return start < 0 ? null : (JSON.parse(this.payload.toString('utf8', start, this.columnSpans[column + 1])) as string);
  }
}

/** The envelope's members read while it is scanned (offsets of string values, their flags). */
interface EnvelopeFields {
  id: string | undefined;
  source: string | undefined;
  type: string | undefined;
  subject: string | undefined;
  time: string | undefined;
}

const readEvent = (payload: Buffer, at: number): { readonly event: WrittenEvent; readonly end: number } | undefined => {
  if (!matches(payload, at, DATA_FIRST)) return undefined;
  const dataStart = at + DATA_FIRST.length;
  // Absent and null are one thing in the stored form: a null data is left to the general path.
  if (matches(payload, dataStart, NULL)) return undefined;
  // Every column null until its string is read; a literal, so the array is packed from the start.
  const spans = [-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1];
  const counts: DataCounts = { resultIsObject: false, resultCounts: 0, dataCounts: 0 };
  sawEscape = false;
  columnEscaped = false;
  const dataEnd = scanData(payload, dataStart, spans, counts);
  if (dataEnd === REFUSED) return undefined;
  // Outside strings canonical JSON has no backslash: whether COPY must double any in the data.
  const dataHasBackslash = sawEscape;
  const envelope: EnvelopeFields = { id: undefined, source: undefined, type: undefined, subject: undefined, time: undefined };
  const stringMember = (column: number, start: number, end: number, place = -1): string | undefined => {
    if (payload[start] !== QUOTE) return undefined;
    spans[column] = start;
    spans[column + 1] = end;
    // Called just after the value was scanned: stringFlags are its own.
    return stringAt(payload, start, end, stringFlags, place);
  };
  let extMembers: number[] | undefined;
  let extHasBackslash = false;
  let index = dataEnd;
  let previousStart = at + 1;
  let previousEnd = dataStart - 1;
  while (payload[index] === COMMA) {
    const keyStart = index + 1;
    const keyEnd = scanKey(payload, keyStart, previousStart, previousEnd);
    if (keyEnd === REFUSED) return undefined;
    const valueStart = keyEnd + 1;
    sawEscape = false;
    const valueEnd = scanValue(payload, valueStart, 1);
    if (valueEnd === REFUSED) return undefined;
    const nameStart = keyStart + 1;
    const nameEnd = keyEnd - 1;
    if (keyIs(payload, nameStart, nameEnd, ID)) envelope.id = stringMember(TEXT_COLUMN.id, valueStart, valueEnd);
    else if (keyIs(payload, nameStart, nameEnd, SOURCE)) envelope.source = stringMember(TEXT_COLUMN.source, valueStart, valueEnd, REPEATING.source);
    else if (keyIs(payload, nameStart, nameEnd, TYPE)) envelope.type = stringMember(TEXT_COLUMN.type, valueStart, valueEnd, REPEATING.type);
    else if (keyIs(payload, nameStart, nameEnd, SUBJECT)) envelope.subject = stringMember(TEXT_COLUMN.sessionId, valueStart, valueEnd, REPEATING.subject);
    else if (keyIs(payload, nameStart, nameEnd, TIME)) envelope.time = stringMember(TEXT_COLUMN.time, valueStart, valueEnd, REPEATING.time);
    else {
      (extMembers ??= []).push(keyStart, valueEnd);
      // Keys hold no escape (scanKey): a backslash in a member is in one of its strings.
      if (sawEscape) extHasBackslash = true;
    }
    previousStart = keyStart;
    previousEnd = keyEnd;
    index = valueEnd;
  }
  if (payload[index] !== CLOSE_BRACE) return undefined;
  // A string's JSON is at least as long as its UTF-8: a longer one is measured by the general path.
  for (const column of INDEXED_COLUMNS) if (spans[column + 1]! - spans[column]! > MAX_INDEXED_TEXT_BYTES) return undefined;
  const { id, source, type, subject, time } = envelope;
  // What the consumer and the general path need of every event, else theirs to refuse or rewrite.
  if (!id || !source || !type || !subject || !time) return undefined;
  const storedTime = timeWrittenAsStored(time);
  if (!storedTime) return undefined;
  const maskedValues = Math.min(Math.trunc(counts.resultIsObject ? counts.resultCounts : counts.dataCounts), 2 ** 31 - 1);
  const end = index + 1;
  const event = new WrittenEvent(
    payload, at, end, dataStart, dataEnd, dataHasBackslash, columnEscaped, spans, extMembers ?? NO_EXT_MEMBERS, extHasBackslash,
    id, source, type, subject, time, storedTime, maskedValues,
  );
  return { event, end };
};

/**
 * The events of a message (`[event,…]` or one event) taken as written, or undefined when any of
 * it is not exactly what a Sluice publisher writes: then the message takes the general path.
 * The events read `data` itself, not a copy (copying every message cost the audit a few per cent
 * of its CPU): its bytes must not change while they are in use, as a received message's never do.
 */
export const readWrittenEvents = (data: Uint8Array): WrittenEvent[] | undefined => {
  const payload = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (payload[0] === OPEN_BRACE) {
    const single = readEvent(payload, 0);
    return single && single.end === payload.length ? [single.event] : undefined;
  }
  if (payload[0] !== OPEN_BRACKET || payload.length < 3) return undefined;
  const events: WrittenEvent[] = [];
  let index = 1;
  for (;;) {
    const read = readEvent(payload, index);
    if (!read) return undefined;
    events.push(read.event);
    index = read.end;
    if (payload[index] === COMMA) {
      index += 1;
      continue;
    }
    return payload[index] === CLOSE_BRACKET && index + 1 === payload.length ? events : undefined;
  }
};
