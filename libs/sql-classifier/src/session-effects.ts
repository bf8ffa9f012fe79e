import { isPureFunction } from './catalogue.js';
import { names } from './parse-tree.js';
import { parseText } from './statement-shape.js';
import { isSqlClassifierLoaded } from './classify.js';
import { changesClientEncoding } from './client-encoding-statement.js';

/** What a command may do to the session state the proxy mirrors from the server. */
export interface SessionStateEffects {
  /** The command may change the effective search_path: the proxy reads it again afterwards. */
  readonly searchPath: boolean;
  /**
   * The command runs a cursor's query (FETCH, MOVE), whose functions its text does not show and
   * which may change search_path: read again after it too, at the next Sync in a pipeline.
   */
  readonly runsCursorQuery: boolean;
  /** The command writes (INSERT, UPDATE, DELETE, MERGE, anywhere in it): a trigger it fires may change search_path. */
  readonly writes: boolean;
  /**
   * A statement changes search_path and a later statement of the same message names a table
   * without its schema: that name resolves against a path nobody has read yet.
   */
  readonly unqualifiedAfterPathChange: boolean;
  /**
   * A statement after the first of the message names a table without its schema: code an earlier
   * one runs without showing it (a trigger of its write or COPY FROM, a view's function, a cursor's
   * query) may change the path that name resolves against, and the proxy cannot read it in between.
   */
  readonly unqualifiedAfterFirstStatement: boolean;
  /** A statement after a FETCH or MOVE of the message (its cursor's query runs unseen) names a table without its schema. */
  readonly unqualifiedAfterCursorQuery: boolean;
  /** A statement after a write or COPY FROM of the message (whose triggers run unseen) names a table without its schema. */
  readonly unqualifiedAfterWrite: boolean;
  /** A statement sets search_path for whatever runs after it (SET, RESET ALL, a transaction's end, set_config). */
  readonly setsPathForLater: boolean;
  /** A statement names a table without its schema (resolved through search_path). */
  readonly namesUnqualifiedTable: boolean;
  /**
   * SQL-level PREPARE and DEALLOCATE, in statement order (`*` for DEALLOCATE ALL): each is true
   * on the server once its command tag comes back.
   */
  readonly preparedStatements: readonly PreparedStatementChange[];
  /**
   * A statement sets or resets client_encoding (SET NAMES, RESET ALL and DISCARD ALL included): the
   * proxy converts at the client edge and handles it itself (see clientEncodingStatement).
   */
  readonly clientEncoding: boolean;
  /**
   * A statement is COPY … FROM STDIN: the target reads nothing but the client's copy data until
   * its CopyDone or CopyFail, so a read of the proxy's own must wait until after the COPY.
   */
  readonly copiesFromClient: boolean;
}

export interface PreparedStatementChange {
  readonly change: 'prepare' | 'deallocate';
  readonly name: string;
}

/**
 * Top-level statements that cannot change search_path by themselves (only through a function
 * they call, which is looked for separately; code the text does not show is runsHiddenCode).
 * Any other statement, one Sluice does not know included, counts as possibly changing it: the
 * cost of a wrong guess is one internal query.
 */
const KEEPS_SEARCH_PATH: ReadonlySet<string> = new Set([
  'SelectStmt',
  'InsertStmt',
  'UpdateStmt',
  'DeleteStmt',
  'MergeStmt',
  'ExplainStmt',
  'CopyStmt',
  'VariableShowStmt',
  'DeclareCursorStmt',
  'FetchStmt',
  'ClosePortalStmt',
  'PrepareStmt',
  'DeallocateStmt',
  'ListenStmt',
  'UnlistenStmt',
  'NotifyStmt',
  'LockStmt',
]);

/** Nodes under which code of unknown effect runs: it may call set_config('search_path', …). */
const RUNS_CODE: ReadonlySet<string> = new Set(['CallStmt', 'DoStmt', 'ExecuteStmt']);

/**
 * Writes, anywhere in the tree (a CTE's INSERT too): they fire triggers, whose functions the text
 * does not show. COPY FROM fires them too (counted below); from STDIN the read waits for its end.
 */
const WRITES: ReadonlySet<string> = new Set(['InsertStmt', 'UpdateStmt', 'DeleteStmt', 'MergeStmt']);

const containsNode = (value: unknown, tags: ReadonlySet<string>): boolean => {
  if (Array.isArray(value)) return value.some((item) => containsNode(item, tags));
  if (typeof value !== 'object' || value === null) return false;
  const node = value as Record<string, unknown>;
  for (const key in node) {
    if (tags.has(key)) return true;
    if (containsNode(node[key], tags)) return true;
  }
  return false;
};

/**
 * A call that resolves to a built-in function of the catalogue (which writes nothing, settings
 * included): one without arguments (`count(*)`, `now()`, `current_database()`) of pg_catalog when
 * the session searches pg_catalog first. With arguments, a function of the same name in another
 * schema could match the argument types better and be called instead, so those still count.
 */
const callsBuiltinWithoutArguments = (call: Record<string, unknown>, searchPath: readonly string[]): boolean =>
  (call.args === undefined || (Array.isArray(call.args) && call.args.length === 0)) &&
  // Resolves to pg_catalog's: named with it, or unqualified while pg_catalog is searched first.
  isPureFunction(names(call.funcname), searchPath);

/** Code of unknown effect under the value; a function of the catalogue called without arguments is known. */
const runsUnknownCode = (value: unknown, searchPath: readonly string[] | undefined): boolean => {
  if (Array.isArray(value)) return value.some((item) => runsUnknownCode(item, searchPath));
  if (typeof value !== 'object' || value === null) return false;
  const node = value as Record<string, unknown>;
  for (const key in node) {
    if (RUNS_CODE.has(key)) return true;
    if (key === 'FuncCall' && (searchPath === undefined || !callsBuiltinWithoutArguments(node[key] as Record<string, unknown>, searchPath))) return true;
    if (runsUnknownCode(node[key], searchPath)) return true;
  }
  return false;
};

/** Statements that change search_path (or whose `$user` it is) for the statements after them in the same message. */
const SETS_PATH_IN_MESSAGE: ReadonlySet<string> = new Set(['DiscardStmt', 'CallStmt', 'DoStmt', 'ExecuteStmt']);
const PATH_SETTINGS: ReadonlySet<string> = new Set(['search_path', 'role', 'session_authorization']);
/** Transaction statements that keep every setting as it is; the others end or roll back SETs. */
const KEEPS_SETTINGS: ReadonlySet<string> = new Set(['TRANS_STMT_BEGIN', 'TRANS_STMT_START', 'TRANS_STMT_SAVEPOINT', 'TRANS_STMT_RELEASE']);

const setsPathForLaterStatements = (type: string, stmt: Record<string, unknown>): boolean => {
  const node = stmt[type] as { kind?: string; name?: string } | undefined;
  if (type === 'VariableSetStmt') return node?.kind === 'VAR_RESET_ALL' || PATH_SETTINGS.has((node?.name ?? '').toLowerCase());
  if (type === 'TransactionStmt') return !KEEPS_SETTINGS.has(node?.kind ?? '');
  return SETS_PATH_IN_MESSAGE.has(type) || callsSetConfig(stmt);
};

const callsSetConfig = (value: unknown): boolean => {
  if (Array.isArray(value)) return value.some(callsSetConfig);
  if (typeof value !== 'object' || value === null) return false;
  const node = value as Record<string, unknown>;
  const call = node.FuncCall as { funcname?: { String?: { sval?: string } }[] } | undefined;
  if (call && (call.funcname?.at(-1)?.String?.sval ?? '').toLowerCase() === 'set_config') return true;
  for (const key in node) if (callsSetConfig(node[key])) return true;
  return false;
};

/**
 * A RangeVar without a schema: a table name resolved through search_path. A statement's own
 * relation (INSERT INTO t, UPDATE t, COPY t, CREATE TABLE t) is one too, unwrapped in the tree.
 */
const namesUnqualifiedTable = (value: unknown): boolean => {
  if (Array.isArray(value)) return value.some(namesUnqualifiedTable);
  if (typeof value !== 'object' || value === null) return false;
  const node = value as Record<string, unknown>;
  const wrapped = node.RangeVar as { schemaname?: string; relname?: string } | undefined;
  const range = wrapped ?? (typeof node.relname === 'string' ? { relname: node.relname, schemaname: node.schemaname as string | undefined } : undefined);
  if (range && range.relname && !range.schemaname) return true;
  for (const key in node) if (namesUnqualifiedTable(node[key])) return true;
  return false;
};

/**
 * Reads from the parse tree (never from the text) what a command may change in the session
 * state. Unparseable text, or the parser not loaded yet, may change anything. With the search
 * path the command runs under, a call of a built-in function without arguments is known not to
 * change it; without, every function call may.
 */
export const sessionStateEffects = (text: string, path?: readonly string[]): SessionStateEffects => {
  // Unknown: may set the path, and may name anything unqualified.
  const unknown = { searchPath: true, runsCursorQuery: true, writes: true, unqualifiedAfterPathChange: false, unqualifiedAfterFirstStatement: true, unqualifiedAfterCursorQuery: true, unqualifiedAfterWrite: true, setsPathForLater: true, namesUnqualifiedTable: true, preparedStatements: [], clientEncoding: false, copiesFromClient: false };
  if (!isSqlClassifierLoaded()) return unknown;
  let tree: { stmts?: { stmt?: Record<string, unknown> }[] };
  try {
    tree = text.trim() === '' ? { stmts: [] } : parseText(text);
  } catch {
    return unknown;
  }
  let searchPath = false;
  let runsCursorQuery = false;
  let writes = false;
  let pathSetEarlier = false;
  let unqualifiedAfterPathChange = false;
  let unqualified = false;
  let unqualifiedAfterFirstStatement = false;
  let unqualifiedAfterCursorQuery = false;
  let unqualifiedAfterWrite = false;
  const preparedStatements: PreparedStatementChange[] = [];
  let clientEncoding = false;
  let copiesFromClient = false;
  for (const raw of tree.stmts ?? []) {
    const stmt = raw.stmt ?? {};
    const type = Object.keys(stmt)[0] ?? '';
    const node = stmt[type] as { name?: string; isall?: boolean } | undefined;
    if (type === 'PrepareStmt' && node?.name) preparedStatements.push({ change: 'prepare', name: node.name });
    if (type === 'DeallocateStmt') preparedStatements.push({ change: 'deallocate', name: node?.isall || !node?.name ? '*' : node.name });
    if (namesUnqualifiedTable(stmt)) {
      unqualified = true;
      if (pathSetEarlier) unqualifiedAfterPathChange = true;
      if (raw !== tree.stmts?.[0]) unqualifiedAfterFirstStatement = true;
      if (runsCursorQuery) unqualifiedAfterCursorQuery = true;
      if (writes) unqualifiedAfterWrite = true;
    }
    if (!KEEPS_SEARCH_PATH.has(type) || runsUnknownCode(stmt, path)) searchPath = true;
    if (type === 'FetchStmt') runsCursorQuery = true;
    if (containsNode(stmt, WRITES)) writes = true;
    if (setsPathForLaterStatements(type, stmt)) pathSetEarlier = true;
    if (changesClientEncoding(stmt) !== undefined) clientEncoding = true;
    const copy = stmt.CopyStmt as { is_from?: boolean; filename?: string; is_program?: boolean } | undefined;
    if (copy?.is_from === true) {
      writes = true;
      if (copy.filename === undefined && copy.is_program !== true) copiesFromClient = true;
    }
  }
  return { searchPath, runsCursorQuery, writes, unqualifiedAfterPathChange, unqualifiedAfterFirstStatement, unqualifiedAfterCursorQuery, unqualifiedAfterWrite, setsPathForLater: pathSetEarlier, namesUnqualifiedTable: unqualified, preparedStatements, clientEncoding, copiesFromClient };
};
