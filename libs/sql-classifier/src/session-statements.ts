import { parsedOrUndefined, parseText } from './statement-shape.js';
import { isBuiltinOperator, isBuiltinOperatorExpression, isBuiltinType, isCataloguedFunction, mayBeRowFunction, STATISTICS_RELATIONS } from './catalogue.js';
import { isSqlClassifierLoaded } from './classify.js';
import type { ColumnLineage, LineageOptions, LineageSource } from './lineage.js';
import { isPostgres15Identifier, NONE, union } from './lineage-relations.js';
import { viewsCalled, type ViewSources } from './view-sources.js';
import { functionMemberKeys, operatorMemberKeys, subscriptMemberKeys, type MemberKeys } from './json-members.js';
import { isObject, list, names, str, walkTree, type Node } from './parse-tree.js';

/**
 * Whether a RangeVar may name one of options.renamingRelations. Unqualified: one of that name in
 * any schema, since the session's temporary schema (pg_temp_N) is searched before the path
 * whatever the path says, and a name the path does not resolve today may resolve tomorrow.
 */
const readsRenamingRelation = (range: Node, options: LineageOptions): boolean => {
  const renaming = options.renamingRelations;
  if (!renaming || renaming.size === 0) return false;
  const relname = str(range.relname) ?? '';
  const schema = str(range.schemaname);
  if (schema !== undefined) return renaming.has(`${schema}.${relname}`);
  const suffix = `.${relname}`;
  for (const name of renaming) if (name.endsWith(suffix)) return true;
  return false;
};

/**
 * The views of options.views a RangeVar may name: the one of its schema, or, unqualified, one of
 * that name in any schema (as readsRenamingRelation, for the same reasons).
 */
const viewsNamedBy = (range: Node, options: LineageOptions): ViewSources[] => {
  const views = options.views;
  if (!views || views.size === 0) return [];
  const relname = str(range.relname) ?? '';
  const schema = str(range.schemaname);
  if (schema !== undefined) {
    const view = views.get(`${schema}.${relname}`);
    return view ? [view] : [];
  }
  return viewsCalled(views, relname).map((name) => views.get(name)!);
};

/** Any column of any table. */
const ANY_COLUMN: ColumnLineage = [{ column: '*', anyColumn: true }];

/**
 * Every column a text names anywhere (select list, WHERE, JOIN, function arguments), by name; any
 * column where it names a whole row, a `*`, a function, cast or operator the catalogue does not
 * vouch for, or a prepared statement or cursor. For texts the server quotes back in errors and
 * notices: a covered column anywhere in the statement may be in them. Undefined when the text
 * does not parse (callers treat that as any column).
 */
export const referencedColumns = (text: string, options: LineageOptions = {}): ColumnLineage | undefined => {
  const tree = parsedOrUndefined(text);
  if (!tree) return undefined;
  return columnsReferencedIn(tree, tree, options);
};

/**
 * The columns `part` (a node of `tree`) names, as referencedColumns says; `tree` is the whole
 * parse tree, whose relation names and alias lists tell a whole-row reference from a column.
 * `functionAliasesAsColumns`: the alias of a function in FROM (`generate_series(…) g`, `unnest(…)
 * s(n)`) names the function's value, not a table's row; for a caller that counts the function's
 * arguments itself.
 */
export const columnsReferencedIn = (tree: unknown, part: unknown, options: LineageOptions = {}, functionAliasesAsColumns = false): ColumnLineage => {
  const relationNames = new Set<string>();
  const columns = new Map<string, LineageSource>();
  let any = false;
  let renamesColumns = false;
  const readViews: ViewSources[] = [];
  const collectRelations = (value: unknown): void => {
    if (Array.isArray(value)) return value.forEach(collectRelations);
    if (!isObject(value)) return;
    const fromFunction = value.RangeFunction ?? value.RangeTableFunc;
    if (functionAliasesAsColumns && isObject(fromFunction)) {
      for (const key in fromFunction) if (key !== 'alias') collectRelations(fromFunction[key]);
      return;
    }
    if (typeof value.relname === 'string') {
      relationNames.add(value.relname);
      // A view's column (`nick`) may be a covered column (`ssn`) under another name.
      if (readsRenamingRelation(value, options)) renamesColumns = true;
      // Else, a view's column counts with the columns it shows (`tax_id` of `ssn as tax_id`).
      else readViews.push(...viewsNamedBy(value, options));
    }
    if (isObject(value.alias) && typeof value.alias.aliasname === 'string') relationNames.add(value.alias.aliasname);
    // `people AS x(a, b, c)`: `c` is `ssn` under a name the text alone cannot map back.
    if (isObject(value.alias) && list(value.alias.colnames).length > 0) renamesColumns = true;
    for (const key in value) collectRelations(value[key]);
  };
  // `doc->>'ssn'` carries the member a column rule for `ssn` covers: the key counts as a column.
  const memberKeys = (keys: MemberKeys): void => {
    if (keys === 'unknown') any = true;
    else for (const key of keys ?? []) columns.set(key, { column: key });
  };
  const enter = (tag: string, node: Node): boolean => {
    if (any) return false;
    switch (tag) {
      case 'ColumnRef': {
        const fields = list(node.fields);
        const last = fields.at(-1);
        const parts = names(fields);
        if (isObject(last) && 'A_Star' in last) any = true;
        else if (parts.length === 1 && relationNames.has(parts[0]!)) any = true;
        // `p.concat` may be concat(p), the whole row.
        else if (parts.length > 1 && mayBeRowFunction(parts.at(-1)!)) any = true;
        else if (parts.length > 0) columns.set(parts.at(-1)!, { column: parts.at(-1)! });
        return false;
      }
      case 'FuncCall':
        if (!isCataloguedFunction(names(node.funcname), options.searchPath)) any = true;
        memberKeys(functionMemberKeys(names(node.funcname), list(node.args)));
        // PostgreSQL 15 reads SYSTEM_USER as a column name (see isPostgres15Identifier).
        if (isPostgres15Identifier(node, names(node.funcname))) columns.set('system_user', { column: 'system_user' });
        break;
      case 'TypeCast': {
        const type = names((node.typeName as Node | undefined)?.names);
        if (type.length > 0 && !isBuiltinType(type, options.searchPath)) any = true;
        break;
      }
      case 'A_Expr':
        if (!isBuiltinOperatorExpression(str(node.kind), names(node.name), options.searchPath)) any = true;
        memberKeys(operatorMemberKeys(node));
        break;
      case 'A_Indirection': {
        // A subscript by a computed index is an array's far more often than a document's (psql's
        // \d+ reads `indkey[i]`): only keys written as constants count here.
        const keys = subscriptMemberKeys(list(node.indirection));
        if (keys !== 'unknown') memberKeys(keys);
        break;
      }
      case 'SortBy': {
        const operator = names(node.useOp);
        if (operator.length > 0 && !isBuiltinOperator(operator, options.searchPath)) any = true;
        break;
      }
      case 'ExecuteStmt':
      case 'FetchStmt':
        any = true;
        return false;
      // A write's errors quote rows it did not name: a check or not-null violation's "Failing row
      // contains (…)" is the whole new row, a foreign key's "Key (…)=(…)" the row's key columns.
      case 'InsertStmt':
      case 'UpdateStmt':
      case 'DeleteStmt':
      case 'MergeStmt':
        any = true;
        return false;
      case 'CopyStmt':
        if (node.is_from === true || (list(node.attlist).length === 0 && !isObject(node.query))) any = true;
        break;
      default:
        break;
    }
    return true;
  };
  collectRelations(tree);
  // Statistics relations quote sample values of every column.
  for (const name of relationNames) if (STATISTICS_RELATIONS.has(name)) any = true;
  if (renamesColumns) any = true;
  walkTree(part, enter);
  if (any) return ANY_COLUMN;
  const named = [...columns.values()];
  if (readViews.length === 0) return named;
  // A name is resolved against every view read, whichever relation it belongs to: more, never fewer.
  return union(named, ...named.flatMap((source) => readViews.map((view) => view.columns.get(source.column) ?? NONE)));
};

/** The cursors a text DECLAREs: name -> the text of its DECLARE statement. Empty when it does not parse. */
export const declaredCursors = (text: string): Map<string, string> => {
  const out = new Map<string, string>();
  if (!isSqlClassifierLoaded() || !/declare/i.test(text)) return out;
  try {
    const tree = parseText(text) as { stmts?: { stmt?: Node; stmt_location?: number; stmt_len?: number }[] };
    const bytes = Buffer.from(text, 'utf8');
    for (const raw of tree.stmts ?? []) {
      const declared = (raw.stmt as { DeclareCursorStmt?: Node } | undefined)?.DeclareCursorStmt;
      const name = str(declared?.portalname);
      if (!name) continue;
      // Locations are byte offsets; a length of 0 means "to the end of the text".
      const start = raw.stmt_location ?? 0;
      const end = raw.stmt_len ? start + raw.stmt_len : bytes.length;
      out.set(name, bytes.subarray(start, end).toString('utf8'));
    }
  } catch {
    return out;
  }
  return out;
};

/** The cursor a FETCH (not MOVE) of a one-statement text reads from; undefined for anything else. */
export const fetchedCursor = (text: string): string | undefined => {
  if (!isSqlClassifierLoaded() || !/fetch/i.test(text)) return undefined;
  try {
    const tree = parseText(text) as { stmts?: { stmt?: Node }[] };
    for (const raw of tree.stmts ?? []) {
      const fetch = (raw.stmt as { FetchStmt?: Node } | undefined)?.FetchStmt;
      if (fetch && fetch.ismove !== true) return str(fetch.portalname) ?? '';
    }
  } catch {
    return undefined;
  }
  return undefined;
};
