import { ConfigInvalidError, type SluiceEventDataByKind, type SluiceEventKind } from '@sluice/contracts';

/** What the audit trail keeps of a command (`audit.recording`). */
export interface RecordingBounds {
  readonly maxRows: number;
  readonly maxBytes: number;
  readonly maxRowBytes: number;
  readonly maxCommandBytes: number;
}

/** Free-text fields other than the command (reasons, error messages) are kept up to this. */
const MAX_NOTE_BYTES = 2048;

/** A text cut to at most `maxBytes` of UTF-8, never inside a character; `bytes` is its size before. */
export const cutText = (text: string, maxBytes: number): { readonly text: string; readonly truncated: boolean; readonly bytes: number } => {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes <= maxBytes) return { text, truncated: false, bytes };
  // At most maxBytes UTF-16 units encode to at least as many bytes as are kept; a split
  // surrogate pair at the end would encode as a replacement character, so it goes.
  let prefix = text.slice(0, maxBytes);
  const last = prefix.charCodeAt(prefix.length - 1);
  if (last >= 0xd800 && last <= 0xdbff) prefix = prefix.slice(0, -1);
  const encoded = Buffer.from(prefix, 'utf8');
  let end = Math.min(maxBytes, encoded.length);
  // Back off continuation bytes (10xxxxxx) so the cut falls on a character boundary.
  while (end > 0 && end < encoded.length && (encoded[end]! & 0xc0) === 0x80) end--;
  return { text: encoded.subarray(0, end).toString('utf8'), truncated: true, bytes };
};

const cutNote = (text: string): string => cutText(text, MAX_NOTE_BYTES).text;

/**
 * Result rows as recorded: at most maxRows rows, each at most maxRowBytes, all at most maxBytes
 * (the first row included, however large the agent's row was); a cut value keeps its beginning.
 */
export const boundRows = (
  rows: readonly (readonly (string | null)[])[],
  bounds: Pick<RecordingBounds, 'maxRows' | 'maxBytes' | 'maxRowBytes'>,
): { readonly rows: (string | null)[][]; readonly truncated: boolean } => {
  const kept: (string | null)[][] = [];
  let total = 0;
  let truncated = rows.length > bounds.maxRows;
  for (const row of rows.slice(0, bounds.maxRows)) {
    let rowBudget = Math.min(bounds.maxRowBytes, bounds.maxBytes - total);
    if (rowBudget <= 0) {
      truncated = true;
      break;
    }
    const cells = row.map((value) => {
      if (value === null) return null;
      const cut = cutText(value, Math.max(0, rowBudget));
      if (cut.truncated) truncated = true;
      const used = cut.truncated ? Buffer.byteLength(cut.text, 'utf8') : cut.bytes;
      rowBudget -= used;
      total += used;
      return cut.text;
    });
    kept.push(cells);
  }
  return { rows: kept, truncated };
};

/**
 * True when boundRows would keep every row as it is, told from the texts' lengths alone (a UTF-8
 * byte count is at most three per UTF-16 unit): no copy of the rows and no byte count per cell for
 * a result within its bounds, the usual one. Strictly within them, as boundRows gives a row only
 * a budget left above zero.
 */
const fitByLength = (rows: readonly (readonly (string | null)[])[], bounds: Pick<RecordingBounds, 'maxRows' | 'maxBytes' | 'maxRowBytes'>): boolean => {
  if (rows.length > bounds.maxRows) return false;
  let total = 0;
  for (const row of rows) {
    let units = 0;
    for (const value of row) if (value !== null) units += value.length;
    if (units * 3 >= bounds.maxRowBytes) return false;
    total += units;
  }
  return total * 3 < bounds.maxBytes;
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
      // A UTF-8 byte count is at most three per UTF-16 unit: most texts fit without being counted.
      if (decided.command.length * 3 <= bounds.maxCommandBytes && decided.reason.length * 3 <= MAX_NOTE_BYTES) return data;
      const command = cutText(decided.command, bounds.maxCommandBytes);
      const reason = cutNote(decided.reason);
      if (!command.truncated && reason === decided.reason) return data;
      // An adapter that recorded only the beginning already says the full size.
      const commandBytes = decided.commandBytes ?? command.bytes;
      return { ...decided, command: command.text, reason, ...(command.truncated ? { truncated: true, commandBytes } : {}) };
    }
    case 'command.completed': {
      const completed = data as SluiceEventDataByKind['command.completed'];
      if (!completed.error) return data;
      return { ...completed, outcome: cutNote(completed.outcome), error: { code: cutNote(completed.error.code), message: cutNote(completed.error.message) } };
    }
    case 'result.returned': {
      const result = data as SluiceEventDataByKind['result.returned'];
      if (fitByLength(result.rows, bounds)) return data;
      const bounded = boundRows(result.rows, bounds);
      return bounded.truncated ? { ...result, rows: bounded.rows, truncated: true } : data;
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
