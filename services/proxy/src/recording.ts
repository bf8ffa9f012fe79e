import { ConfigInvalidError, type SluiceEventDataByKind, type SluiceEventKind } from '@sluice/contracts';

/** What the audit trail keeps of a command (`audit.recording`). */
export interface RecordingBounds {
  readonly maxRows: number;
  readonly maxBytes: number;
  readonly maxRowBytes: number;
  readonly maxCommandBytes: number;
}

/**
 * Milliseconds since `started` (a performance.now() reading) in whole microseconds, as every
 * adapter records a command's duration: a clock difference written with all its digits is the
 * costliest member of an event to serialise, and the digits past the microsecond say nothing.
 */
export const millisecondsSince = (started: number): number => Math.round((performance.now() - started) * 1000) / 1000;

/** Free-text fields other than the command (reasons, error messages) are kept up to this. */
const MAX_NOTE_BYTES = 2048;

/**
 * Characters whose JSON text is not their UTF-8: the C0 controls (`\n`, `\u0001`), `"` and `\`,
 * which JSON.stringify escapes, and surrogates (a lone one is written `\ud800`).
 */
// The control characters are exactly what this looks for.
// eslint-disable-next-line no-control-regex
const NOT_AS_UTF8 = /[\u0000-\u001f"\\\ud800-\udfff]/;

/**
 * The longest beginning of `text` whose JSON text (the string's content, as JSON.stringify writes
 * it into an event, UTF-8) is at most `maxBytes`, and that size. The bounds cap what an event
 * carries: counted as UTF-8, a value of control characters takes six times its bytes there, and
 * an event pushed past maxEventBytes is published reduced, its result dropped whole.
 */
const cutJson = (text: string, maxBytes: number): { readonly text: string; readonly truncated: boolean; readonly used: number } => {
  let used = 0;
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    let cost = 3;
    let units = 1;
    if (code < 0x80) cost = code >= 0x20 ? (code === 0x22 || code === 0x5c ? 2 : 1) : code === 0x08 || code === 0x09 || code === 0x0a || code === 0x0c || code === 0x0d ? 2 : 6;
    else if (code < 0x800) cost = 2;
    else if (code >= 0xd800 && code <= 0xdfff) {
      const next = text.charCodeAt(index + 1);
      // A pair is one 4-byte character; a lone surrogate is written as a six-character escape.
      if (code <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) units = 2;
      cost = units === 2 ? 4 : 6;
    }
    if (used + cost > maxBytes) return { text: text.slice(0, index), truncated: true, used };
    used += cost;
    index += units - 1;
  }
  return { text, truncated: false, used };
};

/**
 * A text cut to at most `maxBytes` of its JSON text (its UTF-8, with JSON's escapes), never inside
 * a character; `bytes` is its UTF-8 size before.
 */
export const cutText = (text: string, maxBytes: number): { readonly text: string; readonly truncated: boolean; readonly bytes: number } => {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (NOT_AS_UTF8.test(text)) {
    const cut = cutJson(text, maxBytes);
    return { text: cut.text, truncated: cut.truncated, bytes };
  }
  // Nothing escaped: the JSON text is the UTF-8.
  if (bytes <= maxBytes) return { text, truncated: false, bytes };
  // At most maxBytes UTF-16 units encode to at least as many bytes as are kept.
  const encoded = Buffer.from(text.slice(0, maxBytes), 'utf8');
  let end = Math.min(maxBytes, encoded.length);
  // Back off continuation bytes (10xxxxxx) so the cut falls on a character boundary.
  while (end > 0 && end < encoded.length && (encoded[end]! & 0xc0) === 0x80) end--;
  return { text: encoded.subarray(0, end).toString('utf8'), truncated: true, bytes };
};

const cutNote = (text: string): string => cutText(text, MAX_NOTE_BYTES).text;

/**
 * The table names a decision records are kept up to this (their JSON). They are the agent's: a
 * statement naming thousands of tables made a decision too large for its event, and the event was
 * published reduced, its command text cut to 1 KiB and its table list dropped whole.
 */
const MAX_TABLES_BYTES = 4096;

/**
 * Table names as recorded: the first ones whose JSON (quotes and commas included) fits
 * MAX_TABLES_BYTES, a first name longer than that cut; undefined when all of them fit.
 */
const boundTables = (tables: readonly string[] | undefined): readonly string[] | undefined => {
  if (tables === undefined) return undefined;
  let estimate = 2;
  for (const name of tables) estimate += 3 + name.length * 6;
  if (estimate <= MAX_TABLES_BYTES) return undefined;
  const kept: string[] = [];
  let used = 2;
  for (const name of tables) {
    const cut = cutJson(name, MAX_TABLES_BYTES - used - 3);
    if (cut.truncated && kept.length > 0) break;
    kept.push(cut.text);
    used += 3 + cut.used;
    if (cut.truncated) break;
  }
  return kept.length === tables.length && kept.every((name, index) => name === tables[index]) ? undefined : kept;
};

/** Each cell's quotes and comma (`null,` for a null) and the row's brackets and comma: its JSON with every text empty. */
const rowFraming = (row: readonly (string | null)[]): number => {
  let framing = 3;
  for (const value of row) framing += value === null ? 5 : 3;
  return framing;
};

/**
 * Result rows as recorded: at most maxRows rows, the texts of each at most maxRowBytes, and all
 * of it at most maxBytes, counted as the event's JSON carries them (escapes, and the quotes,
 * commas and brackets around the texts in the total: a thousand empty cells are not nothing); the
 * first row included, however large the agent's row was. A cut value keeps its beginning.
 */
export const boundRows = (
  rows: readonly (readonly (string | null)[])[],
  bounds: Pick<RecordingBounds, 'maxRows' | 'maxBytes' | 'maxRowBytes'>,
): { readonly rows: (string | null)[][]; readonly truncated: boolean } => {
  const kept: (string | null)[][] = [];
  let total = 0;
  let truncated = rows.length > bounds.maxRows;
  for (const row of rows.slice(0, bounds.maxRows)) {
    const framing = rowFraming(row);
    let rowBudget = Math.min(bounds.maxRowBytes, bounds.maxBytes - total - framing);
    if (rowBudget < 0) {
      truncated = true;
      break;
    }
    total += framing;
    const cells = row.map((value) => {
      if (value === null) return null;
      const cut = cutJson(value, rowBudget);
      if (cut.truncated) truncated = true;
      rowBudget -= cut.used;
      total += cut.used;
      return cut.text;
    });
    kept.push(cells);
  }
  return { rows: kept, truncated };
};

/**
 * True when boundRows would keep every row as it is (with `reserved` bytes of maxBytes taken
 * first), told from the texts' lengths alone (a UTF-16 unit takes at most six bytes of JSON,
 * `\u0001`): no copy of the rows and no byte count per cell for a result within its bounds, the
 * usual one.
 */
const fitByLength = (rows: readonly (readonly (string | null)[])[], bounds: Pick<RecordingBounds, 'maxRows' | 'maxBytes' | 'maxRowBytes'>, reserved = 0): boolean => {
  if (rows.length > bounds.maxRows) return false;
  let total = reserved;
  for (const row of rows) {
    let units = 0;
    let framing = 3;
    for (const value of row) {
      if (value === null) framing += 5;
      else {
        units += value.length;
        framing += 3;
      }
    }
    if (units * 6 > bounds.maxRowBytes) return false;
    total += framing + units * 6;
  }
  return total <= bounds.maxBytes;
};

/** The most the column names take of an event's JSON (each name's quotes and comma, six bytes a unit), told from their lengths. */
const columnsByLength = (columns: readonly string[]): number => {
  let estimate = 0;
  for (const name of columns) estimate += 3 + name.length * 6;
  return estimate;
};

/**
 * Column names as recorded: their JSON (each name's quotes and comma included) at most `maxBytes`,
 * names past it cut or empty; `used` is that JSON's size (`estimate`, columnsByLength's, when it is
 * within the bound).
 */
const boundColumns = (columns: readonly string[], maxBytes: number, estimate: number): { readonly names: readonly string[]; readonly used: number; readonly truncated: boolean } => {
  if (estimate <= maxBytes) return { names: columns, used: estimate, truncated: false };
  let used = 3 * columns.length;
  let truncated = false;
  const names = columns.map((name) => {
    const cut = cutJson(name, Math.max(0, maxBytes - used));
    if (cut.truncated) truncated = true;
    used += cut.used;
    return cut.text;
  });
  return { names, used, truncated };
};

/**
 * Cuts what an agent controls in an event's data to the recording bounds, before the event is
 * built: the command text (with `truncated` and its original size), result rows, free-text notes.
 * The publisher bounds the whole event besides; this keeps the useful part of a large one.
 */
export const boundEventData = <K extends SluiceEventKind>(kind: K, data: SluiceEventDataByKind[K], bounds: RecordingBounds): SluiceEventDataByKind[K] =>
  // The switch narrows `kind`, not `data` (a generic): each case returns the same kind's data.
  boundData(kind, data, bounds) as SluiceEventDataByKind[K];

const boundData = (kind: SluiceEventKind, data: SluiceEventDataByKind[SluiceEventKind], bounds: RecordingBounds): unknown => {
  switch (kind) {
    case 'command.decided': {
      const decided = data as SluiceEventDataByKind['command.decided'];
      const tables = boundTables(decided.tables);
      // A UTF-16 unit takes at most six bytes of JSON: most texts fit without being counted.
      if (decided.command.length * 6 <= bounds.maxCommandBytes && decided.reason.length * 6 <= MAX_NOTE_BYTES && !tables) return data;
      const command = cutText(decided.command, bounds.maxCommandBytes);
      const reason = cutNote(decided.reason);
      if (!command.truncated && reason === decided.reason && !tables) return data;
      // An adapter that recorded only the beginning already says the full size.
      const commandBytes = decided.commandBytes ?? command.bytes;
      const truncated = command.truncated || tables !== undefined;
      return { ...decided, command: command.text, reason, ...(tables ? { tables } : {}), ...(truncated ? { truncated: true, commandBytes } : {}) };
    }
    case 'command.completed': {
      const completed = data as SluiceEventDataByKind['command.completed'];
      if (!completed.error) return data;
      return { ...completed, outcome: cutNote(completed.outcome), error: { code: cutNote(completed.error.code), message: cutNote(completed.error.message) } };
    }
    case 'result.returned': {
      const result = data as SluiceEventDataByKind['result.returned'];
      // The column names are the agent's too (a thousand names of control characters): they take their part of maxBytes first.
      const estimate = columnsByLength(result.columns);
      if (estimate <= bounds.maxRowBytes && fitByLength(result.rows, bounds, estimate)) return data;
      const columns = boundColumns(result.columns, bounds.maxRowBytes, estimate);
      const rowBounds = { maxRows: bounds.maxRows, maxRowBytes: bounds.maxRowBytes, maxBytes: Math.max(0, bounds.maxBytes - columns.used) };
      const bounded = boundRows(result.rows, rowBounds);
      if (!bounded.truncated && !columns.truncated) return data;
      return { ...result, ...(columns.truncated ? { columns: columns.names } : {}), rows: bounded.rows, truncated: true };
    }
    case 'session.rejected':
    case 'session.ended': {
      const session = data as SluiceEventDataByKind['session.ended'];
      const reason = cutNote(session.reason);
      return reason === session.reason ? data : { ...session, reason };
    }
    default:
      return data;
  }
};

/** Room in an event for its envelope and the fields around the recorded command and rows. */
const EVENT_OVERHEAD_BYTES = 8 * 1024;

/**
 * Whether a command's recorded text and its recorded result fit one event together (then a
 * command allowed without a hold is recorded as one `command.executed` carrying its result).
 */
export const resultFitsExecuted = (bounds: RecordingBounds & { readonly maxEventBytes: number }): boolean =>
  bounds.maxCommandBytes + Math.min(bounds.maxBytes, bounds.maxRows * bounds.maxRowBytes) + EVENT_OVERHEAD_BYTES <= bounds.maxEventBytes;

/**
 * Checked at start against the bus server's max_payload: the recording limits must fit one event,
 * and one event one NATS message. A misfit is a config error naming the key (the service refuses
 * to start) rather than events reduced at run time.
 */
/** `room`: the largest event the bus carries in one message (event-bus's eventRoom of max_payload). */
export const checkRecordingFits = (bounds: RecordingBounds & { readonly maxEventBytes: number }, room: number): void => {
  const key = 'audit.recording';
  if (bounds.maxEventBytes > room) {
    throw new ConfigInvalidError(`${key}.maxEventBytes`, `${bounds.maxEventBytes} does not fit the bus: its server takes at most ${room} bytes per event (max_payload less framing and signature headers)`);
  }
  if (bounds.maxCommandBytes + EVENT_OVERHEAD_BYTES > bounds.maxEventBytes) {
    throw new ConfigInvalidError(`${key}.maxCommandBytes`, `${bounds.maxCommandBytes} does not fit an event of ${key}.maxEventBytes (${bounds.maxEventBytes}) with ${EVENT_OVERHEAD_BYTES} bytes to spare`);
  }
  if (Math.min(bounds.maxBytes, bounds.maxRows * bounds.maxRowBytes) + EVENT_OVERHEAD_BYTES > bounds.maxEventBytes) {
    throw new ConfigInvalidError(`${key}.maxBytes`, `${bounds.maxBytes} does not fit an event of ${key}.maxEventBytes (${bounds.maxEventBytes}) with ${EVENT_OVERHEAD_BYTES} bytes to spare`);
  }
};
