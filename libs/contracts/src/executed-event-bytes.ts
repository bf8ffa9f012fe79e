import { eventType, isoTime, type CommandExecuted } from './events.js';

/**
 * Where an event's JSON is written as UTF-8, in place: the publisher's queue, whose bytes go on
 * the wire as they are (no JSON string per event, flattened, counted and encoded again).
 */
export interface JsonSink {
  /** The bytes written to; another array after `reserve` when the event moved. */
  buffer: Uint8Array;
  /** Where the next byte goes. */
  offset: number;
  /** Room for `bytes` more bytes at `offset`; what is written of the event so far moves with it. */
  reserve(bytes: number): void;
}

/** Thrown for data not of CommandExecuted's shape: the publisher then writes the event the general way (JSON.stringify). */
export class NotWritable extends TypeError {}

const encoder = new TextEncoder();
const bytesOf = (text: string): Uint8Array => encoder.encode(text);

const writeBytes = (sink: JsonSink, bytes: Uint8Array): void => {
  sink.reserve(bytes.length);
  sink.buffer.set(bytes, sink.offset);
  sink.offset += bytes.length;
};

/** Any text as UTF-8: a JSON text JSON.stringify wrote, which has no lone surrogate left. */
const writeText = (sink: JsonSink, text: string): void => {
  sink.reserve(text.length * 3);
  sink.offset += encoder.encodeInto(text, sink.buffer.subarray(sink.offset)).written;
};

/** A text known to be ASCII (a number's digits, a timestamp), byte per unit. */
const writeAscii = (sink: JsonSink, text: string): void => {
  sink.reserve(text.length);
  const buffer = sink.buffer;
  let at = sink.offset;
  for (let index = 0; index < text.length; index++) buffer[at++] = text.charCodeAt(index);
  sink.offset = at;
};

/**
 * `JSON.stringify(value)` of a string member: quoted byte per unit while it is ASCII with nothing
 * JSON escapes (SQL texts, ids and tags, almost always); anything else (`"`, `\\`, C0 controls,
 * beyond ASCII, surrogates) the long way, from where the string began.
 */
const writeString = (sink: JsonSink, value: string): void => {
  if (typeof value !== 'string') throw new NotWritable('not a string');
  const length = value.length;
  sink.reserve(length + 2);
  const buffer = sink.buffer;
  let at = sink.offset;
  buffer[at++] = 0x22; // "
  for (let index = 0; index < length; index++) {
    const unit = value.charCodeAt(index);
    if (unit < 0x20 || unit === 0x22 || unit === 0x5c || unit > 0x7f) {
      writeText(sink, JSON.stringify(value));
      return;
    }
    buffer[at++] = unit;
  }
  buffer[at++] = 0x22;
  sink.offset = at;
};

/** The digits of a whole number from 0 to 2^31, written in place. */
const writeDigits = (sink: JsonSink, value: number): void => {
  let digits = 1;
  for (let rest = value; rest >= 10; rest = Math.floor(rest / 10)) digits++;
  sink.reserve(digits);
  const buffer = sink.buffer;
  let at = sink.offset + digits;
  sink.offset = at;
  do {
    buffer[--at] = 0x30 + (value % 10);
    value = Math.floor(value / 10);
  } while (value > 0);
};

/**
 * A number as JSON.stringify writes it (`null` when not finite). Counts, sequence numbers and
 * durations in whole microseconds (the adapters round them so) are written digit by digit: a
 * number's text is otherwise made (and for a fraction, worked out) as a string first, the
 * costliest member of an event. A duration `m / 1000` (the double nearest it, as the division
 * gives) is shortest written as m's digits with the point three places in, trailing zeros
 * dropped: any other text of at most three decimals is another multiple of 0.001, far more than
 * half a unit in the last place away at these magnitudes, so it cannot round to the same double.
 */
const writeNumber = (sink: JsonSink, value: number): void => {
  if (typeof value !== 'number') throw new NotWritable('not a number');
  // -0 is written 0, as JSON.stringify does.
  if (value >= 0 && value <= 2_147_483_647) {
    if (Number.isInteger(value)) return writeDigits(sink, value);
    const thousandths = Math.round(value * 1000);
    if (thousandths / 1000 === value) {
      let decimals = 3;
      let fraction = thousandths % 1000;
      while (fraction % 10 === 0) {
        fraction /= 10;
        decimals--;
      }
      writeDigits(sink, Math.floor(thousandths / 1000));
      sink.reserve(1 + decimals);
      sink.buffer[sink.offset++] = 0x2e; // .
      const buffer = sink.buffer;
      for (let at = sink.offset + decimals - 1; at >= sink.offset; at--) {
        buffer[at] = 0x30 + (fraction % 10);
        fraction = Math.floor(fraction / 10);
      }
      sink.offset += decimals;
      return;
    }
  }
  writeAscii(sink, Number.isFinite(value) ? `${value}` : 'null');
};

const NULL = bytesOf('null');

/** What JSON.stringify writes of a member's value; a value it leaves out (undefined, a function) is no member here. */
const writeJson = (sink: JsonSink, value: unknown): void => {
  const json = JSON.stringify(value) as string | undefined;
  if (json === undefined) throw new NotWritable('not JSON');
  writeText(sink, json);
};

/** An array of texts and nulls (a row, the column names). */
const writeCells = (sink: JsonSink, cells: unknown): void => {
  if (!Array.isArray(cells)) throw new NotWritable('not an array');
  sink.reserve(1);
  sink.buffer[sink.offset++] = 0x5b; // [
  for (let index = 0; index < cells.length; index++) {
    if (index > 0) {
      sink.reserve(1);
      sink.buffer[sink.offset++] = 0x2c; // ,
    }
    const cell: unknown = cells[index];
    if (cell === null) writeBytes(sink, NULL);
    else writeString(sink, cell as string);
  }
  sink.reserve(1);
  sink.buffer[sink.offset++] = 0x5d; // ]
};

const writeRows = (sink: JsonSink, rows: unknown): void => {
  if (!Array.isArray(rows)) throw new NotWritable('not an array');
  sink.reserve(1);
  sink.buffer[sink.offset++] = 0x5b;
  for (let index = 0; index < rows.length; index++) {
    if (index > 0) {
      sink.reserve(1);
      sink.buffer[sink.offset++] = 0x2c;
    }
    writeCells(sink, rows[index] as unknown);
  }
  sink.reserve(1);
  sink.buffer[sink.offset++] = 0x5d;
};

const EMPTY_OBJECT = bytesOf('{}');

/** Counts by name: `{}` at once for the usual record with no name in it. */
const writeCounts = (sink: JsonSink, counts: Readonly<Record<string, number>>): void => {
  // for-in sees inherited enumerable names too: when it sees none, JSON (own names only) has none.
  for (const _name in counts) return writeJson(sink, counts);
  if (typeof counts !== 'object' || counts === null || Array.isArray(counts)) throw new NotWritable('not a record');
  writeBytes(sink, EMPTY_OBJECT);
};

/** `,"name":<json>`, or nothing for an absent (undefined) member, as JSON.stringify leaves it out. */
const writeOptional = (sink: JsonSink, name: Uint8Array, value: unknown): void => {
  if (value === undefined) return;
  writeBytes(sink, name);
  writeJson(sink, value);
};

const COMMAND_BYTES = bytesOf(',"commandBytes":');
const COMMAND_ID = bytesOf(',"commandId":');
const ERROR = bytesOf(',"error":');
const OK_OUTCOME = bytesOf(',"ok":true,"outcome":');
const NOT_OK_OUTCOME = bytesOf(',"ok":false,"outcome":');
const RESULT_BYTES = bytesOf(',"result":{"bytes":');
const COLUMNS = bytesOf(',"columns":');
const MASKED_COUNTS = bytesOf(',"maskedCounts":');
const ROW_COUNT = bytesOf(',"rowCount":');
const ROWS = bytesOf(',"rows":');
const RESULT_TRUNCATED_END = bytesOf(',"truncated":true}');
const RESULT_WHOLE_END = bytesOf(',"truncated":false}');
const TRUNCATED = bytesOf(',"truncated":');
const DATA_END_ID = bytesOf('},"datacontenttype":"application/json","id":');
const SESSIONSEQ = bytesOf(',"sessionseq":');

/** The members a command's decision gives every command.executed it decides, as last written. */
let decisionPart:
  | {
      readonly action: string;
      readonly decision: string;
      readonly protocol: string;
      readonly reason: string;
      readonly resource: string;
      readonly risk: string;
      readonly rule: string;
      readonly tables: readonly string[] | undefined;
      /** Up to the command's text. */
      readonly head: Uint8Array;
      /** The decision, up to the duration's value. */
      readonly decided: Uint8Array;
      readonly middle: Uint8Array;
      readonly tail: Uint8Array;
    }
  | undefined;
/** The envelope members before the subject (the session id), for the source last written. */
let sourcePart: { readonly source: string; readonly bytes: Uint8Array } | undefined;
const MINUTE_MS = 60_000;
/**
 * `,"time":"` and the ISO text of the minute last written, up to its seconds: the events a busy
 * proxy writes go out of time order by a few milliseconds (sessions interleave, and each command's
 * event leaves when its outcome comes), so a text kept for the millisecond last written was made
 * again for about one event in three; within a minute only the seconds and milliseconds change.
 */
let minute: { readonly start: number; readonly head: Uint8Array } = { start: Number.NaN, head: new Uint8Array(0) };
const TIME_END = bytesOf(`Z","type":${JSON.stringify(eventType('command.executed'))}}`);

/**
 * The time and type members, as `isoTime` and JSON.stringify write them: the minute's text, then
 * `ss.sss` digit by digit. toISOString's text always ends in those six and the `Z`, whatever the year.
 */
const writeTime = (sink: JsonSink, time: Date): void => {
  const millis = time.getTime();
  const start = Math.floor(millis / MINUTE_MS) * MINUTE_MS;
  if (start !== minute.start) {
    // An invalid date (NaN) throws here, as buildEvent does.
    const iso = isoTime(time);
    minute = { start, head: bytesOf(`,"time":"${iso.slice(0, -7)}`) };
  }
  writeBytes(sink, minute.head);
  const within = millis - start;
  const seconds = Math.floor(within / 1000);
  const thousandths = within % 1000;
  sink.reserve(6);
  const buffer = sink.buffer;
  let at = sink.offset;
  buffer[at++] = 0x30 + Math.floor(seconds / 10);
  buffer[at++] = 0x30 + (seconds % 10);
  buffer[at++] = 0x2e; // .
  buffer[at++] = 0x30 + Math.floor(thousandths / 100);
  buffer[at++] = 0x30 + (Math.floor(thousandths / 10) % 10);
  buffer[at++] = 0x30 + (thousandths % 10);
  sink.offset = at;
  writeBytes(sink, TIME_END);
};

/** A text member of a decision (JSON.stringify writes a non-string too, as buildEvent's JSON would). */
const member = (value: unknown): string => {
  const json = JSON.stringify(value) as string | undefined;
  if (json === undefined) throw new NotWritable('not JSON');
  return json;
};

/**
 * `JSON.stringify(buildEvent('command.executed', fields))` as UTF-8, written member by member into
 * `sink`: the proxy publishes one such event per command, and the members a decision or the
 * source give every one of them are encoded once for a run of them, not once per event (a
 * session's members are not: sessions interleave). Members in the order JSON.stringify writes
 * buildEvent's (RFC 8785's); executed-event-bytes.spec.ts holds the two to the same bytes for data
 * holding CommandExecuted's members in that order (an audit port's literal). Data of another shape
 * throws (NotWritable, or the TypeError of reading it), part of it written: the caller drops that.
 */
export const writeExecutedEvent = (
  sink: JsonSink,
  fields: { readonly id: string; readonly source: string; readonly subject: string; readonly time: Date; readonly sessionseq?: number; readonly data: CommandExecuted },
): void => {
  const data = fields.data;
  let decided = decisionPart;
  if (
    decided === undefined ||
    decided.action !== data.action ||
    decided.decision !== data.decision ||
    decided.protocol !== data.protocol ||
    decided.reason !== data.reason ||
    decided.resource !== data.resource ||
    decided.risk !== data.risk ||
    decided.rule !== data.rule ||
    decided.tables !== data.tables
  ) {
    decided = decisionPart = {
      action: data.action,
      decision: data.decision,
      protocol: data.protocol,
      reason: data.reason,
      resource: data.resource,
      risk: data.risk,
      rule: data.rule,
      tables: data.tables,
      head: bytesOf(`{"data":{"action":${member(data.action)},"command":`),
      decided: bytesOf(`,"decision":${member(data.decision)},"durationMs":`),
      middle: bytesOf(`,"protocol":${member(data.protocol)},"reason":${member(data.reason)},"resource":${member(data.resource)}`),
      tail: bytesOf(`,"risk":${member(data.risk)},"rule":${member(data.rule)}${data.tables === undefined ? '' : `,"tables":${member(data.tables)}`}`),
    };
  }
  if (sourcePart?.source !== fields.source) {
    sourcePart = { source: fields.source, bytes: bytesOf(`,"source":${member(fields.source)},"specversion":"1.0","subject":`) };
  }
  writeBytes(sink, decided.head);
  writeString(sink, data.command);
  if (data.commandBytes !== undefined) {
    writeBytes(sink, COMMAND_BYTES);
    writeNumber(sink, data.commandBytes);
  }
  writeBytes(sink, COMMAND_ID);
  writeString(sink, data.commandId);
  writeBytes(sink, decided.decided);
  writeNumber(sink, data.durationMs);
  writeOptional(sink, ERROR, data.error);
  if (data.ok === true) writeBytes(sink, OK_OUTCOME);
  else if (data.ok === false) writeBytes(sink, NOT_OK_OUTCOME);
  else throw new NotWritable('not a boolean');
  writeString(sink, data.outcome);
  writeBytes(sink, decided.middle);
  const result = data.result;
  if (result !== undefined) {
    writeBytes(sink, RESULT_BYTES);
    writeNumber(sink, result.bytes);
    writeBytes(sink, COLUMNS);
    writeCells(sink, result.columns);
    writeBytes(sink, MASKED_COUNTS);
    writeCounts(sink, result.maskedCounts);
    writeBytes(sink, ROW_COUNT);
    writeNumber(sink, result.rowCount);
    writeBytes(sink, ROWS);
    writeRows(sink, result.rows);
    if (result.truncated === true) writeBytes(sink, RESULT_TRUNCATED_END);
    else if (result.truncated === false) writeBytes(sink, RESULT_WHOLE_END);
    else throw new NotWritable('not a boolean');
  }
  writeBytes(sink, decided.tail);
  writeOptional(sink, TRUNCATED, data.truncated);
  writeBytes(sink, DATA_END_ID);
  writeString(sink, fields.id);
  if (fields.sessionseq !== undefined) {
    writeBytes(sink, SESSIONSEQ);
    writeNumber(sink, fields.sessionseq);
  }
  writeBytes(sink, sourcePart.bytes);
  writeString(sink, fields.subject);
  writeTime(sink, fields.time);
};
