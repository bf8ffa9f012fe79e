import { decodeBackend, encodeNotificationResponse, type Frame } from '@sluice/codec-pg';
import { COLUMN_REDACTED, type ColumnInfo, type MaskCounts, type ProfileMasker } from '@sluice/masking-engine';

/**
 * Texts the server writes that are not result columns (error and notice fields, NOTIFY payloads)
 * but can quote a covered value: `SELECT reverse(ssn)::int` fails with `invalid input syntax for
 * type integer: "0211-50-870"`. Detectors alone miss what they do not recognise (an SSN in the 9xx
 * range, a reversed one), so where a column rule may be involved the strictest one applies.
 */

/** ErrorResponse / NoticeResponse fields that may quote data: message, detail, hint, context, internal query. */
const DATA_FIELDS: ReadonlySet<string> = new Set(['M', 'D', 'H', 'W', 'q']);

/** A text that may carry any column: every column rule of the profile could apply, the strictest does. */
const anyColumn = (name: string): ColumnInfo => ({ name, typeOid: 25, derivedFrom: [{ name: '*', anyColumn: true }] });
const MESSAGE = anyColumn('message');
const PAYLOAD = anyColumn('payload');

/** The strictest column rule's rendering of a text (a NULL rendering becomes the redaction mark). */
const strictest = (masker: ProfileMasker, value: string, column: ColumnInfo, counts: MaskCounts): string =>
  masker.maskCell(value, column, counts) ?? COLUMN_REDACTED;

/**
 * Whether the message's words are PostgreSQL's own: a RAISE in PL/pgSQL (or an elog of another
 * procedural language) writes whatever its format says, the value first if it likes (`RAISE
 * NOTICE '%: changed', NEW.amount` gives `250000: changed`). The server names the source file
 * (F) and routine (R) of every message; one from a procedural language's file or routine, or
 * without them, is treated as all value. Server files starting with `pl` (planner.c) are
 * treated so too: the message is then withheld whole, which only says less.
 */
const hasServerWords = (fields: Readonly<Record<string, string>>): boolean =>
  fields.F !== undefined && fields.R !== undefined && !/^pl/i.test(fields.F) && fields.R !== 'exec_stmt_raise';

/**
 * PostgreSQL's messages put the value after a colon or in double quotes (`…: "x"`, `value "x" is
 * out of range`); the words before say what went wrong and are kept, the rest is `replace`d. A
 * message with neither (a RAISE of a bare value) is replaced whole.
 */
const replaceMessageTail = (message: string, replace: (tail: string) => string, ownWords: boolean): string => {
  if (!ownWords) return replace(message);
  const colon = message.indexOf(': ');
  const quote = message.indexOf('"');
  const cut = colon < 0 ? quote : quote < 0 ? colon : Math.min(colon, quote);
  if (cut <= 0) return replace(message);
  const head = message.slice(0, cut);
  const separator = message[cut] === ':' ? ': ' : head.endsWith(' ') ? '' : ' ';
  return `${head}${separator}${replace(message.slice(cut))}`;
};

const maskMessage = (masker: ProfileMasker, message: string, counts: MaskCounts, ownWords: boolean): string =>
  replaceMessageTail(message, (tail) => strictest(masker, tail, MESSAGE, counts), ownWords);

/** What stands for a server text Sluice withholds. */
export const SERVER_TEXT_WITHHELD = '[withheld]';
const WITHHELD_DETAIL =
  "Sluice withheld the server's texts: the statement writes a table whose reads a rule denies or holds, and they can quote its rows.";

/**
 * The fields of an error or notice about a statement that writes a table whose reads are guarded
 * (`withholdServerTexts`): PostgreSQL quotes the row a write failed on (`Failing row contains
 * (…)`, `Key (id)=(1) already exists`, a cast's `invalid input syntax … "value"`), which the
 * guard cannot foresee. The message keeps its words up to the value; the detail says why; hint,
 * context and internal query go. SQLSTATE, severity, positions and object names are kept.
 */
export const withholdServerFields = (fields: Readonly<Record<string, string>>): Record<string, string> => {
  const kept: Record<string, string> = {};
  for (const [type, value] of Object.entries(fields)) {
    if (!DATA_FIELDS.has(type)) kept[type] = value;
    else if (type === 'M') kept[type] = replaceMessageTail(value, () => SERVER_TEXT_WITHHELD, hasServerWords(fields));
    else if (type === 'D') kept[type] = WITHHELD_DETAIL;
  }
  return kept;
};

/**
 * Masks the data fields of an error or notice: the profile's detectors always, and where the
 * statement touches a covered column, the strictest column rule over message, detail, hint,
 * context and internal query. SQLSTATE, severity, positions and names of objects are kept.
 */
export const maskServerFields = (
  fields: Readonly<Record<string, string>>,
  masker: ProfileMasker,
  coversColumn: boolean,
  counts: MaskCounts,
): Record<string, string> => {
  const masked: Record<string, string> = {};
  for (const [type, value] of Object.entries(fields)) {
    if (!DATA_FIELDS.has(type)) masked[type] = value;
    else if (!coversColumn) masked[type] = masker.maskText(value, counts);
    else masked[type] = type === 'M' ? maskMessage(masker, value, counts, hasServerWords(fields)) : strictest(masker, value, MESSAGE, counts);
  }
  return masked;
};

/**
 * A NotificationResponse with its payload masked: detectors, and where the profile has column
 * rules the strictest of them (the payload was written by any session from any column). The
 * channel name is kept. Undefined when nothing changed.
 */
export const maskNotification = (frame: Frame, masker: ProfileMasker | undefined): Buffer | undefined => {
  if (!masker) return undefined;
  const message = decodeBackend(frame) as { processId: number; channel: string; payload: string };
  if (message.payload === '') return undefined;
  const counts: MaskCounts = {};
  const payload = masker.columnRuleCount !== 0 ? strictest(masker, message.payload, PAYLOAD, counts) : masker.maskText(message.payload, counts);
  return payload === message.payload ? undefined : encodeNotificationResponse(message.processId, message.channel, payload);
};
