import { parsedOrUndefined } from './statement-shape.js';
import type { ColumnLineage, LineageOptions } from './lineage.js';
import { isObject, list, names, str, unwrap, walkTree, type Node } from './parse-tree.js';
import { columnsReferencedIn } from './session-statements.js';
import { isWrittenValue, pathSchemasOf } from './statement-parts.js';

/** Where a write puts values: a column of a table (candidates by search path), or somewhere unknown. */
export interface WrittenColumn {
  readonly tables: readonly string[];
  readonly column: string;
}

/** One value a write stores, with the columns it may carry. */
export interface ValueFlow {
  /** Undefined when the text does not say which column (INSERT without a column list, MERGE). */
  readonly target: WrittenColumn | undefined;
  readonly sources: ColumnLineage;
}

/**
 * Where a statement's values may go past masking: into table columns by a write (read back later
 * by another statement, which column rules would not follow), and into which rows a predicate
 * keeps when the other side of the comparison is a generated series or a VALUES list (the count
 * or the series value returned gives the compared value away).
 */
export interface CoveredFlows {
  readonly writes: readonly ValueFlow[];
  /** Columns a WHERE, ON or HAVING compares where a set-returning function, VALUES or a CTE is in FROM. */
  readonly seriesPredicates: ColumnLineage;
  /** `x.name` / `(x).name` naming one of options.rowFunctions: a call whose result lineage cannot follow. */
  readonly attributeCalls: readonly string[];
}

export interface CoveredFlowOptions extends LineageOptions {
  /** The target's functions callable in attribute notation (TargetCatalogFacts.rowFunctions). */
  readonly rowFunctions?: ReadonlySet<string>;
}

const MAX_EXECUTE_DEPTH = 3;

/** Undefined when the text does not parse (the policy refuses such a text anyway). */
export const coveredFlows = (text: string, options: CoveredFlowOptions = {}, depth = 0): CoveredFlows | undefined => {
  const tree = parsedOrUndefined(text);
  if (!tree) return undefined;
  const writes: ValueFlow[] = [];
  const predicates: ColumnLineage[] = [];
  const attributeCalls: string[] = [];
  const ctes = new Set<string>();
  const collectCtes = (value: unknown): void => {
    if (Array.isArray(value)) return value.forEach(collectCtes);
    if (!isObject(value)) return;
    if (typeof value.ctename === 'string') ctes.add(value.ctename);
    for (const key in value) collectCtes(value[key]);
  };
  collectCtes(tree);
  const refs = (...parts: unknown[]): ColumnLineage => columnsReferencedIn(tree, parts, options);
  /** A predicate's columns: a function's alias counts by the columns of the function's arguments. */
  const predicateRefs = (from: unknown, ...parts: unknown[]): ColumnLineage => {
    const predicates = [...parts, ...joinQuals(from)].filter((part) => part !== undefined);
    if (predicates.length === 0) return [];
    return columnsReferencedIn(tree, [...predicates, ...functionsIn(from)], options, true);
  };
  const schemas = pathSchemasOf(options.searchPath);
  const tablesOf = (relation: unknown): string[] => {
    if (!isObject(relation)) return [];
    const relname = str(relation.relname) ?? '';
    const schema = str(relation.schemaname);
    return schema ? [`${schema}.${relname}`] : schemas.map((name) => `${name}.${relname}`);
  };

  /** A FROM list (or a predicate's sublink) holding rows the text generates rather than reads. */
  const generatesRows = (value: unknown): boolean => {
    if (Array.isArray(value)) return value.some(generatesRows);
    const wrapped = unwrap(value);
    const node = wrapped ? wrapped[1] : isObject(value) ? value : undefined;
    if (!node) return false;
    if (wrapped?.[0] === 'RangeFunction' || wrapped?.[0] === 'RangeTableFunc') return true;
    if (wrapped?.[0] === 'SelectStmt' && list(node.valuesLists).length > 0) return true;
    if (wrapped?.[0] === 'RangeVar' && node.schemaname === undefined && ctes.has(str(node.relname) ?? '')) return true;
    for (const key in node) if (generatesRows(node[key])) return true;
    return false;
  };

  /** Output columns of a SELECT paired with the written columns, where the text pairs them. */
  const insertedFlows = (select: Node | undefined, targets: readonly (WrittenColumn | undefined)[], context: readonly unknown[]): void => {
    const simple = select && (select.op === undefined || select.op === 'SETOP_NONE');
    const rows = simple ? list(select.valuesLists).map((row) => list((row as { List?: { items?: unknown } }).List?.items)) : [];
    const columns = simple && rows.length === 0 ? list(select.targetList).map((target) => (target as { ResTarget?: Node }).ResTarget?.val) : undefined;
    if (!select || (!columns && rows.length === 0)) {
      for (const target of targets.length > 0 ? targets : [undefined]) writes.push({ target, sources: refs(select, ...context) });
      return;
    }
    const shared = refs(select.fromClause, select.withClause, ...context);
    const width = Math.max(columns?.length ?? 0, ...rows.map((row) => row.length));
    for (let i = 0; i < width; i++) {
      const values = columns ? [columns[i]] : rows.map((row) => row[i]);
      // A `*` or whole row in the list shifts every later column: no pairing holds after it.
      writes.push({ target: targets[i], sources: [...refs(values), ...shared] });
    }
  };

  /** The columns of the table itself an expression names (a generated column's, an ALTER … USING). */
  const ownColumns = (expression: unknown, tables: readonly string[]): ColumnLineage => {
    const found: { table: string; column: string }[] = [];
    const walk = (value: unknown): void => {
      if (Array.isArray(value)) return value.forEach(walk);
      const wrapped = unwrap(value);
      if (wrapped?.[0] === 'ColumnRef') {
        const column = names(wrapped[1].fields).at(-1);
        if (column) for (const table of tables) found.push({ table, column });
        return;
      }
      const node = wrapped ? wrapped[1] : isObject(value) ? value : undefined;
      if (node) for (const key in node) walk(node[key]);
    };
    walk(expression);
    return [...found, ...refs(expression)];
  };

  /** A column definition whose values come from other columns: GENERATED ALWAYS AS (expression). */
  const generatedFlows = (definition: unknown, tables: readonly string[]): void => {
    const column = unwrap(definition);
    if (column?.[0] !== 'ColumnDef') return;
    for (const constraint of list(column[1].constraints)) {
      const generated = (constraint as { Constraint?: Node }).Constraint;
      if (generated?.contype !== 'CONSTR_GENERATED') continue;
      const name = str(column[1].colname);
      writes.push({ target: name ? { tables, column: name } : undefined, sources: ownColumns(generated.raw_expr, tables) });
    }
  };

  /** The SELECTs around the node being visited, innermost last. */
  const enclosing: Node[] = [];

  const enter = (tag: string, node: Node): boolean => {
    switch (tag) {
      case 'ColumnRef':
      case 'A_Indirection': {
        const parts = tag === 'ColumnRef' ? names(node.fields) : names(node.indirection);
        const last = parts.at(-1);
        if ((tag === 'A_Indirection' || parts.length > 1) && last && options.rowFunctions?.has(last)) attributeCalls.push(last);
        break;
      }
      case 'InsertStmt': {
        const tables = tablesOf(node.relation);
        const named = list(node.cols).map((col) => str((col as { ResTarget?: Node }).ResTarget?.name));
        const targets = named.map((column) => (column === undefined ? undefined : { tables, column }));
        const select = unwrap(node.selectStmt)?.[1];
        const hasStar = JSON.stringify(select?.targetList ?? []).includes('"A_Star"');
        insertedFlows(select, hasStar ? [] : targets, [node.withClause]);
        // ON CONFLICT DO UPDATE SET col = … writes too.
        if (isObject(node.onConflictClause)) writes.push({ target: undefined, sources: refs(node.onConflictClause) });
        break;
      }
      case 'UpdateStmt': {
        const tables = tablesOf(node.relation);
        const context = refs(node.fromClause, node.withClause);
        for (const target of list(node.targetList)) {
          const res = (target as { ResTarget?: Node }).ResTarget;
          const column = str(res?.name);
          // SET (a, b) = (SELECT …): the row's members are not paired here.
          const multi = isObject(res?.val) && 'MultiAssignRef' in res.val;
          writes.push({ target: column && !multi ? { tables, column } : undefined, sources: [...refs(res?.val), ...context] });
        }
        break;
      }
      // DDL that moves a column's values under another name: a rename, a type change USING an
      // expression of other columns, a generated column.
      case 'RenameStmt':
        if (node.renameType === 'OBJECT_COLUMN') {
          const tables = tablesOf(node.relation);
          const from = str(node.subname);
          const to = str(node.newname);
          if (from && to) writes.push({ target: { tables, column: to }, sources: tables.map((table) => ({ table, column: from })) });
        }
        break;
      case 'CreateStmt': {
        const tables = tablesOf(node.relation);
        for (const element of list(node.tableElts)) generatedFlows(element, tables);
        break;
      }
      case 'AlterTableStmt': {
        const tables = tablesOf(node.relation);
        for (const item of list(node.cmds)) {
          const command = (item as { AlterTableCmd?: Node }).AlterTableCmd;
          if (!command) continue;
          if (command.subtype === 'AT_AddColumn') generatedFlows(command.def, tables);
          const using = (command.def as { ColumnDef?: Node } | undefined)?.ColumnDef?.raw_default;
          const column = str(command.name);
          if (command.subtype === 'AT_AlterColumnType' && using !== undefined && column) {
            writes.push({ target: { tables, column }, sources: ownColumns(using, tables) });
          }
        }
        break;
      }
      case 'FuncCall':
        // setval keeps its value in the sequence, which any later statement reads back
        // (`SELECT last_value FROM s`): a value computed at run time counts with the columns it
        // names and those of the FROM items around it.
        if (names(node.funcname).at(-1)?.toLowerCase() === 'setval' && !isWrittenValue(list(node.args)[1])) {
          writes.push({ target: undefined, sources: [...refs(list(node.args)[1]), ...enclosing.flatMap((select) => refs(select.fromClause, select.withClause))] });
        }
        break;
      case 'MergeStmt':
        writes.push({ target: undefined, sources: refs(node.sourceRelation, node.mergeWhenClauses, node.withClause) });
        break;
      case 'CreateTableAsStmt': {
        const into = isObject(node.into) ? node.into : undefined;
        const select = unwrap(node.query)?.[1];
        const tables = tablesOf(into?.rel);
        const named = list(into?.colNames).map((name) => str((name as { String?: { sval?: unknown } }).String?.sval));
        const outputs = list(select?.targetList).map((target) => {
          const res = (target as { ResTarget?: Node }).ResTarget;
          const ref = (res?.val as { ColumnRef?: Node } | undefined)?.ColumnRef;
          return str(res?.name) ?? names(ref?.fields).at(-1);
        });
        const columns = outputs.map((output, i) => named[i] ?? output);
        const hasStar = JSON.stringify(select?.targetList ?? []).includes('"A_Star"');
        insertedFlows(select, hasStar ? [] : columns.map((column) => (column ? { tables, column } : undefined)), []);
        break;
      }
      case 'SelectStmt':
        if (isObject(node.intoClause)) writes.push({ target: undefined, sources: refs(node.targetList, node.fromClause, node.withClause) });
        if (generatesRows(node.fromClause) || generatesRows([node.whereClause, node.havingClause])) {
          predicates.push(predicateRefs(node.fromClause, node.whereClause, node.havingClause));
        }
        break;
      case 'DeleteStmt':
        if (generatesRows(node.usingClause) || generatesRows(node.whereClause)) predicates.push(predicateRefs(node.usingClause, node.whereClause));
        break;
      case 'ExecuteStmt': {
        const prepared = options.preparedStatements?.get(str(node.name) ?? '');
        const inner = prepared === undefined || depth >= MAX_EXECUTE_DEPTH ? undefined : coveredFlows(prepared, options, depth + 1);
        if (!inner) writes.push({ target: undefined, sources: [{ column: '*', anyColumn: true }] });
        else {
          writes.push(...inner.writes);
          predicates.push(inner.seriesPredicates);
          attributeCalls.push(...inner.attributeCalls);
        }
        break;
      }
      default:
        break;
    }
    if (tag === 'UpdateStmt' && (generatesRows(node.fromClause) || generatesRows(node.whereClause))) predicates.push(predicateRefs(node.fromClause, node.whereClause));
    if (tag === 'SelectStmt') enclosing.push(node);
    return true;
  };
  const leave = (tag: string): void => {
    if (tag === 'SelectStmt') enclosing.pop();
  };
  walkTree(tree, enter, leave);
  return { writes, seriesPredicates: predicates.flat(), attributeCalls };
};

/** The functions of a FROM list (`generate_series(…) g`, `ROWS FROM (…)`, XMLTABLE), outside subqueries. */
const functionsIn = (from: unknown): unknown[] => {
  const found: unknown[] = [];
  const walk = (value: unknown): void => {
    if (Array.isArray(value)) return value.forEach(walk);
    const wrapped = unwrap(value);
    if (!wrapped) return;
    if (wrapped[0] === 'RangeFunction' || wrapped[0] === 'RangeTableFunc') found.push(wrapped[1]);
    if (wrapped[0] === 'JoinExpr') {
      walk(wrapped[1].larg);
      walk(wrapped[1].rarg);
    }
  };
  walk(from);
  return found;
};

/** The ON conditions of the joins in a FROM list. */
const joinQuals = (from: unknown): unknown[] => {
  const quals: unknown[] = [];
  const walk = (value: unknown): void => {
    if (Array.isArray(value)) return value.forEach(walk);
    const wrapped = unwrap(value);
    if (!wrapped || wrapped[0] !== 'JoinExpr') return;
    quals.push(wrapped[1].quals);
    walk(wrapped[1].larg);
    walk(wrapped[1].rarg);
  };
  walk(from);
  return quals;
};
