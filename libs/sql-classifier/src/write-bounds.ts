import { mayBeRowFunction } from './catalogue.js';
import { isObject, list, names, str, unwrap, type Node } from './parse-tree.js';

/**
 * Whether an UPDATE, DELETE or MERGE provably touches only rows that the statement's own constants
 * pick out. Whether a condition bounds anything is undecidable in general (`WHERE id = id`,
 * `WHERE id <> -1`, `WHERE id > 0 OR true` all match every row), so this is a recognizer of one
 * shape, and everything it does not recognise counts as unbounded (high risk):
 *
 * a top-level AND-conjunct that compares a column of the target table with `=` to a constant or a
 * parameter (`id = 7`, `id = $1`, `id = '7'::int`), `IN` a list of those, or `= ANY` of a
 * parameter, a constant array or an ARRAY[…] of those; or `WHERE CURRENT OF cursor` (one row).
 *
 * Ranges (`<`, `>`, BETWEEN), OR, NOT, functions, subqueries and column-to-column comparisons never
 * bound: their extent depends on the data, not on the text.
 */

/** The name a column of the target is qualified with, and whether an unqualified column is the target's. */
export interface WriteTarget {
  /** The target's alias, or its table name when it has none: PostgreSQL accepts only that. */
  readonly refName: string;
  /** `schema.table` qualification accepted when the target has no alias and is schema-qualified. */
  readonly schema: string | undefined;
  /** False when other relations are in scope (FROM, USING, MERGE's source): `id` may be theirs. */
  readonly ownsUnqualified: boolean;
}

/** System columns hold values shared by many rows (`tableoid`, `xmin`, `xmax = 0`): never a bound. */
const SYSTEM_COLUMNS: ReadonlySet<string> = new Set(['tableoid', 'xmin', 'xmax', 'cmin', 'cmax', 'ctid']);

/** Every alias and table name under a FROM/USING list, subqueries included (more names only make it stricter). */
const namesIn = (value: unknown, into: Set<string>): void => {
  if (Array.isArray(value)) {
    for (const item of value) namesIn(item, into);
    return;
  }
  if (!isObject(value)) return;
  if (typeof value.relname === 'string') into.add(value.relname);
  if (typeof value.aliasname === 'string') into.add(value.aliasname);
  for (const key in value) namesIn(value[key], into);
};

/** The target of a write, given its RangeVar and the relations beside it (FROM, USING, MERGE source). */
export const writeTarget = (relation: unknown, others: unknown): WriteTarget | undefined => {
  if (!isObject(relation)) return undefined;
  const relname = str(relation.relname);
  if (!relname) return undefined;
  const alias = isObject(relation.alias) ? str(relation.alias.aliasname) : undefined;
  const refName = alias ?? relname;
  const beside = new Set<string>();
  namesIn(others, beside);
  // Another relation answering to the same name would make `name.col` ambiguous or theirs.
  if (beside.has(refName)) return undefined;
  return { refName, schema: alias === undefined ? str(relation.schemaname) : undefined, ownsUnqualified: list(others).length === 0 };
};

/** A column of the target, as written in the condition. */
const isTargetColumn = (node: unknown, target: WriteTarget): boolean => {
  const [tag, body] = unwrap(node) ?? [];
  if (tag !== 'ColumnRef' || !body) return false;
  const fields = list(body.fields);
  // `A_Star` (t.*) is not a String field: names() gives '' for it, which matches no column.
  const parts = names(fields);
  const column = parts[parts.length - 1] ?? '';
  if (column === '' || SYSTEM_COLUMNS.has(column)) return false;
  // `victim.num_nonnulls` is num_nonnulls(victim), 1 for every row, unless victim has that column.
  if (parts.length > 1 && mayBeRowFunction(column)) return false;
  if (parts.length === 1) return target.ownsUnqualified;
  if (parts.length === 2) return parts[0] === target.refName;
  if (parts.length === 3) return target.schema !== undefined && parts[0] === target.schema && parts[1] === target.refName;
  return false;
};

/** A constant or a parameter, possibly cast (the walk raises a cast to a non-built-in type on its own). */
const isConstantValue = (node: unknown): boolean => {
  const [tag, body] = unwrap(node) ?? [];
  if (!body) return false;
  if (tag === 'A_Const' || tag === 'ParamRef') return true;
  if (tag === 'TypeCast') return isConstantValue(body.arg);
  return false;
};

/** The right side of `= ANY(…)`: a parameter, a constant array literal or ARRAY[constants]. */
const isConstantArray = (node: unknown): boolean => {
  const [tag, body] = unwrap(node) ?? [];
  if (!body) return false;
  if (tag === 'A_ArrayExpr') return list(body.elements).every(isConstantValue);
  if (tag === 'TypeCast') return isConstantArray(body.arg);
  return tag === 'A_Const' || tag === 'ParamRef';
};

const isEqualityName = (name: unknown): boolean => {
  const parts = names(name);
  return (parts.length === 1 && parts[0] === '=') || (parts.length === 2 && parts[0] === 'pg_catalog' && parts[1] === '=');
};

/** One conjunct of the shape described above. */
const isBoundingConjunct = (node: Node, target: WriteTarget): boolean => {
  const [tag, body] = unwrap(node) ?? [];
  if (!body) return false;
  if (tag === 'CurrentOfExpr') return true;
  if (tag !== 'A_Expr' || !isEqualityName(body.name)) return false;
  const kind = str(body.kind);
  if (kind === 'AEXPR_OP') {
    return (isTargetColumn(body.lexpr, target) && isConstantValue(body.rexpr)) || (isTargetColumn(body.rexpr, target) && isConstantValue(body.lexpr));
  }
  if (kind === 'AEXPR_IN') {
    const items = list(isObject(body.rexpr) && isObject(body.rexpr.List) ? body.rexpr.List.items : undefined);
    return isTargetColumn(body.lexpr, target) && items.length > 0 && items.every(isConstantValue);
  }
  if (kind === 'AEXPR_OP_ANY') return isTargetColumn(body.lexpr, target) && isConstantArray(body.rexpr);
  return false;
};

/** True when some top-level AND-conjunct of the condition bounds the target's rows by constants. */
export const boundsTargetRows = (condition: unknown, target: WriteTarget | undefined): boolean => {
  if (target === undefined || !isObject(condition)) return false;
  const [tag, body] = unwrap(condition) ?? [];
  if (tag === 'BoolExpr' && body && str(body.boolop) === 'AND_EXPR') return list(body.args).some((arg) => boundsTargetRows(arg, target));
  return isBoundingConjunct(condition, target);
};

/**
 * Whether every action of a MERGE touches only bounded rows. A WHEN MATCHED action is bounded by
 * the ON condition or by its own AND condition; NOT MATCHED BY SOURCE acts on the target rows the
 * ON condition does *not* pick, so its UPDATE or DELETE is never bounded; INSERT and DO NOTHING
 * change no existing row.
 */
export const mergeIsBounded = (merge: Node): boolean => {
  const target = writeTarget(merge.relation, [merge.sourceRelation]);
  const onBounds = boundsTargetRows(merge.joinCondition, target);
  return list(merge.mergeWhenClauses).every((item) => {
    const clause = isObject(item) && isObject(item.MergeWhenClause) ? item.MergeWhenClause : undefined;
    if (!clause) return false;
    const command = str(clause.commandType);
    if (command === 'CMD_INSERT' || command === 'CMD_NOTHING') return true;
    if (command !== 'CMD_UPDATE' && command !== 'CMD_DELETE') return false;
    if (str(clause.matchKind) !== 'MERGE_WHEN_MATCHED') return false;
    return onBounds || boundsTargetRows(clause.condition, target);
  });
};

/**
 * Whether an INSERT's ON CONFLICT DO UPDATE changes only bounded rows. Each inserted row updates at
 * most one existing row, so a VALUES list (or DEFAULT VALUES) bounds the update by the text; rows
 * from a query (`INSERT INTO t SELECT * FROM t ON CONFLICT (id) DO UPDATE …`) may rewrite the whole
 * table unless the DO UPDATE's own WHERE pins the target's rows. In that WHERE, `excluded` is in scope.
 */
export const upsertIsBounded = (insert: Node): boolean => {
  const onConflict = isObject(insert.onConflictClause) ? insert.onConflictClause : undefined;
  if (onConflict === undefined || str(onConflict.action) !== 'ONCONFLICT_UPDATE') return true;
  if (insert.selectStmt === undefined) return true;
  const [tag, select] = unwrap(insert.selectStmt) ?? [];
  const valuesOnly = tag === 'SelectStmt' && select !== undefined && list(select.valuesLists).length > 0 && (str(select.op) ?? 'SETOP_NONE') === 'SETOP_NONE';
  return valuesOnly || boundsTargetRows(onConflict.whereClause, writeTarget(insert.relation, [{ relname: 'excluded' }]));
};
