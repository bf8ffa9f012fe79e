import { isObject, list, str, type Node } from './parse-tree.js';

/** Pieces of statements the classifier reads: constants, DefElem options, object kinds, the search path. */

/** `{ String: { sval } }` items of a name list, empty parts dropped. */
export const names = (list: unknown): string[] =>
  Array.isArray(list) ? list.map((item) => str((item as { String?: { sval?: unknown } }).String?.sval) ?? '').filter(Boolean) : [];

export const SKIP_RELATION: ReadonlySet<string> = new Set(['relation']);
export const SKIP_FUNCNAME: ReadonlySet<string> = new Set(['funcname']);

/** `A_Const` -> its value as text; undefined when not a constant. Protobuf JSON omits zero values. */
export const constantText = (node: unknown): string | undefined => {
  const aConst = isObject(node) ? (node.A_Const as Node | undefined) : undefined;
  if (!aConst) return undefined;
  if (isObject(aConst.sval)) return str(aConst.sval.sval) ?? '';
  if (isObject(aConst.ival)) return String((aConst.ival.ival as number | undefined) ?? 0);
  if (isObject(aConst.boolval)) return aConst.boolval.boolval ? 'true' : 'false';
  return undefined;
};

/**
 * A value the agent wrote: a constant or a parameter, possibly cast. Anything else is computed at
 * run time and may carry a column's value.
 */
export const isWrittenValue = (node: unknown): boolean => {
  if (!isObject(node)) return false;
  if (isObject(node.A_Const) || isObject(node.ParamRef)) return true;
  return isObject(node.TypeCast) && isWrittenValue(node.TypeCast.arg);
};

/**
 * Functions that keep their argument in the session after the statement: set_config's value is
 * shown by SHOW, current_setting(), pg_stat_activity and the server's ParameterStatus message, and
 * setseed's seed by every later random() (a seed is found again by trying the candidates offline).
 * None of those results derives from a column, so masking cannot follow the value there: the
 * argument must be one the agent wrote (`set_config('application_name', ssn, false)` launders ssn).
 */
export const SESSION_STATE_ARGUMENT: ReadonlyMap<string, number> = new Map([
  ['set_config', 1],
  ['setseed', 0],
]);

/**
 * Functions that send or keep their arguments where a later statement or another session reads
 * them: pg_notify's channel and payload reach every listener (the agent's own session after
 * COMMIT), setval's value stays in the sequence (`SELECT last_value`). In a write on a table whose
 * reads are guarded, a value computed from the target's columns (`UPDATE hr.salaries … WHERE
 * pg_notify('c', name) IS NULL`) leaves through them, past the withheld server texts: the write
 * then counts as reading its target.
 */
export const VALUE_SENDING_FUNCTIONS: ReadonlySet<string> = new Set(['pg_notify', 'setval']);

/** pg_toast (and pg_toast_temp_N): TOAST tables, named after the OID of the table whose values they hold. */
export const isToastSchema = (schema: string | undefined): boolean => schema !== undefined && schema.startsWith('pg_toast');

/** The role list psql's `\du` reads, and the catalog its rolconfig column is read from. */
export const ROLES_VIEW = 'pg_roles';
export const ROLE_SETTINGS = 'pg_catalog.pg_db_role_setting';

/** A DefElem's boolean value the way PostgreSQL's defGetBoolean reads it; no argument = true. */
export const defElemBoolean = (arg: unknown): boolean | undefined => {
  if (arg === undefined) return true;
  const node = arg as { String?: { sval?: string }; Integer?: { ival?: number }; Boolean?: { boolval?: boolean }; A_Const?: unknown };
  const text = node.String?.sval ?? (node.Integer ? String(node.Integer.ival ?? 0) : undefined) ?? (node.Boolean ? String(node.Boolean.boolval ?? false) : undefined) ?? constantText(arg);
  if (text === undefined) return undefined;
  const lower = text.toLowerCase();
  if (['true', 'on', '1', 't', 'yes', 'y'].includes(lower)) return true;
  if (['false', 'off', '0', 'f', 'no', 'n'].includes(lower)) return false;
  return undefined;
};

export const defElems = (list: unknown): { name: string; arg: unknown }[] =>
  Array.isArray(list)
    ? list.flatMap((item) => {
        const def = (item as { DefElem?: { defname?: string; arg?: unknown } }).DefElem;
        return def?.defname ? [{ name: def.defname, arg: def.arg }] : [];
      })
    : [];

/** `transaction_read_only` option set to false, i.e. READ WRITE. */
export const asksReadWrite = (options: unknown): boolean =>
  defElems(options).some((option) => option.name === 'transaction_read_only' && constantText(option.arg) !== '1');

export const ADMIN_DROPS: ReadonlySet<string> = new Set([
  'OBJECT_EXTENSION',
  'OBJECT_FDW',
  'OBJECT_FOREIGN_SERVER',
  'OBJECT_EVENT_TRIGGER',
  'OBJECT_PUBLICATION',
  'OBJECT_SUBSCRIPTION',
  'OBJECT_LANGUAGE',
  'OBJECT_ACCESS_METHOD',
  'OBJECT_TABLESPACE',
  'OBJECT_DATABASE',
  'OBJECT_ROLE',
  'OBJECT_USER_MAPPING',
]);
export const RELATION_DROPS: ReadonlySet<string> = new Set(['OBJECT_TABLE', 'OBJECT_VIEW', 'OBJECT_MATVIEW', 'OBJECT_FOREIGN_TABLE', 'OBJECT_SEQUENCE', 'OBJECT_INDEX']);
/** Objects that live on a table, named `[schema.]table.name` in COMMENT/SECURITY LABEL/ALTER EXTENSION: the table is all but the last part. */
export const OBJECTS_ON_A_TABLE: ReadonlySet<string> = new Set(['OBJECT_COLUMN', 'OBJECT_TABCONSTRAINT', 'OBJECT_TRIGGER', 'OBJECT_POLICY', 'OBJECT_RULE']);
/**
 * Renames that move a relation's rows under another name: a guard on reading the old name must
 * hold them (the agent could read them under the new one). ALTER INDEX … RENAME renames a table
 * too (PostgreSQL lets it, for compatibility). A column, constraint or trigger rename moves none.
 */
export const ROW_MOVING_RENAMES: ReadonlySet<string> = new Set(['OBJECT_TABLE', 'OBJECT_VIEW', 'OBJECT_MATVIEW', 'OBJECT_FOREIGN_TABLE', 'OBJECT_SEQUENCE', 'OBJECT_INDEX']);

/** ALTER TABLE … ENABLE [ALWAYS | REPLICA] RULE/TRIGGER: code that sees the table's rows starts to run on its writes. */
export const ROW_CODE_ENABLES: ReadonlySet<string> = new Set([
  'AT_EnableRule', 'AT_EnableAlwaysRule', 'AT_EnableReplicaRule', 'AT_EnableTrig', 'AT_EnableAlwaysTrig', 'AT_EnableReplicaTrig', 'AT_EnableTrigAll', 'AT_EnableTrigUser',
]);

export const ADMIN_RENAMES: ReadonlySet<string> = new Set(['OBJECT_ROLE', 'OBJECT_DATABASE', 'OBJECT_TABLESPACE', 'OBJECT_FDW', 'OBJECT_FOREIGN_SERVER', 'OBJECT_EVENT_TRIGGER', 'OBJECT_PUBLICATION', 'OBJECT_SUBSCRIPTION', 'OBJECT_LANGUAGE']);

const pathKeys = new WeakMap<readonly string[], string>();

/**
 * A search path as part of a cache key, one string per path array: JSON, since a schema name may
 * hold a comma or a control character (the one schema `"a,public"` is not `a, public`), and `-`
 * for a path not known.
 */
export const searchPathKey = (path: readonly string[] | undefined): string => {
  if (path === undefined) return '-';
  let key = pathKeys.get(path);
  if (key === undefined) pathKeys.set(path, (key = JSON.stringify(path)));
  return key;
};

/** The schemas an unqualified table name may resolve to, in search order. */
export const pathSchemasOf = (searchPath: readonly string[] | undefined): readonly string[] => {
  const schemas: string[] = [];
  for (const entry of searchPath ?? []) {
    const schema = entry.trim().replace(/^"(.*)"$/, '$1');
    // `$user` names a schema we cannot know here (the proxy passes the server's resolved path);
    // pg_temp and pg_catalog hold no user tables.
    if (schema && schema !== '$user' && !schema.startsWith('pg_temp') && schema !== 'pg_catalog' && !schemas.includes(schema)) schemas.push(schema);
  }
  return schemas.length > 0 ? schemas : ['public'];
};

/**
 * INSERT/UPDATE/DELETE/MERGE … RETURNING: the statement hands back rows of the table it writes,
 * so it reads that table too (PostgreSQL 18's parse tree wraps the list in a returningClause).
 */
export const returnsRows = (statement: Node): boolean =>
  list(isObject(statement.returningClause) ? statement.returningClause.exprs : statement.returningList).length > 0;
