import { parseSync } from 'libpg-query';
import { isSqlClassifierLoaded } from './classify.js';

/** What a command may do to the session state the proxy mirrors from the server. */
export interface SessionStateEffects {
  /** The command may change the effective search_path: the proxy reads it again afterwards. */
  readonly searchPath: boolean;
}

/**
 * Top-level statements that cannot change search_path by themselves (only through a function
 * they call, which is looked for separately). Any other statement, one Sluice does not know
 * included, counts as possibly changing it: the cost of a wrong guess is one internal query.
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

/** Nodes under which a function of unknown effect runs: it may call set_config('search_path', …). */
const RUNS_FUNCTIONS: ReadonlySet<string> = new Set(['FuncCall', 'CallStmt', 'DoStmt', 'ExecuteStmt']);

const containsAny = (value: unknown, keys: ReadonlySet<string>): boolean => {
  if (Array.isArray(value)) return value.some((item) => containsAny(item, keys));
  if (typeof value !== 'object' || value === null) return false;
  for (const key in value) {
    if (keys.has(key) || containsAny((value as Record<string, unknown>)[key], keys)) return true;
  }
  return false;
};

/**
 * Reads from the parse tree (never from the text) what a command may change in the session
 * state. Unparseable text, or the parser not loaded yet, may change anything.
 */
export const sessionStateEffects = (text: string): SessionStateEffects => {
  if (!isSqlClassifierLoaded()) return { searchPath: true };
  let tree: { stmts?: { stmt?: Record<string, unknown> }[] };
  try {
    tree = text.trim() === '' ? { stmts: [] } : (parseSync(text) as typeof tree);
  } catch {
    return { searchPath: true };
  }
  for (const raw of tree.stmts ?? []) {
    const stmt = raw.stmt ?? {};
    const type = Object.keys(stmt)[0] ?? '';
    if (!KEEPS_SEARCH_PATH.has(type) || containsAny(stmt, RUNS_FUNCTIONS)) return { searchPath: true };
  }
  return { searchPath: false };
};
