/*
 * Which PostgreSQL errors are about the data a statement was given, as opposed to the server,
 * the connection or a race: only those can be pinned on one event, and so end in that event's
 * refusal rather than a retry of its batch.
 * @see https://www.postgresql.org/docs/current/errcodes-appendix.html
 */

/**
 * SQLSTATE classes that describe the values sent: 22 data exception (invalid jsonb, a value out
 * of range, a character the database encoding lacks), 23 integrity constraint violation (a
 * check, a not-null), 54 program limit exceeded (an index row too large, jsonb nested too deep).
 * Everything else is retried: 08 connection, 40 serialization and deadlock, 53 resources, 55 a
 * lock not available, 57 an operator's cancel or shutdown, 42 a privilege or schema (a
 * deployment fault that refusing events would hide), XX an internal error or corruption of the
 * server itself.
 */
const DATA_CLASSES: ReadonlySet<string> = new Set(['22', '23', '54']);

/**
 * unique_violation is the one integrity error that is not about a value alone: on the event id
 * it means stored already (append skips those), on (session_id, session_seq) a chain head that
 * moved. Neither may cost an event its place in the chain: both are retried.
 */
const UNIQUE_VIOLATION = '23505';

const SQLSTATE = /^[0-9A-Z]{5}$/;

/**
 * The SQLSTATE of an error PostgreSQL (or PGlite) returned, else undefined (a socket error, a
 * bug): an ErrorResponse always has a severity, and a system error's code may look like one (EPIPE).
 */
export const sqlStateOf = (error: unknown): string | undefined => {
  const { code, severity } = (error ?? {}) as { code?: unknown; severity?: unknown };
  return typeof severity === 'string' && typeof code === 'string' && SQLSTATE.test(code) ? code : undefined;
};

/** Whether PostgreSQL refused a statement because of the data it was given (see DATA_CLASSES). */
export const refusesData = (error: unknown): boolean => {
  const code = sqlStateOf(error);
  return code !== undefined && code !== UNIQUE_VIOLATION && DATA_CLASSES.has(code.slice(0, 2));
};

/** What PostgreSQL said, as a refused event's reason: its message, the constraint and the SQLSTATE. */
export const refusalReason = (error: unknown): string => {
  const { message, constraint } = error as { message?: unknown; constraint?: unknown };
  const text = typeof message === 'string' && message !== '' ? message : String(error);
  const named = typeof constraint === 'string' && constraint !== '' && !text.includes(constraint) ? ` (constraint ${constraint})` : '';
  return `PostgreSQL refused it: ${text}${named} [SQLSTATE ${sqlStateOf(error) ?? '?'}]`;
};
