import { parseText } from './statement-shape.js';
import { isBuiltinOperator, isBuiltinType, isCataloguedFunction, isPureFunction, mayBeRowFunction, STATISTICS_RELATIONS, STATISTICS_VALUE_COLUMN } from './catalogue.js';
import { copyFormat, type CopyFormat } from './copy-format.js';
import { functionMemberKeys, operatorMemberKeys, subscriptMemberKeys, type MemberKeys } from './json-members.js';
import { isObject, list, names, str, unwrap, type Node } from './parse-tree.js';
import {
  allSources,
  ANY_COLUMN,
  derived,
  isPostgres15Identifier,
  mergePositional,
  NONE,
  renamed,
  SYSTEM_USER,
  union,
  withSearchAndCycleColumns,
  type Item,
  type Relation,
  type Sources,
} from './lineage-relations.js';
import { isSqlClassifierLoaded } from './classify.js';

/** A table column an output column's value derives from. */
export interface LineageSource {
  /**
   * `schema.table`; an unqualified table gives one source per schema of the search path (default
   * `public`); absent when unknown.
   */
  readonly table?: string;
  /** The column's name as PostgreSQL folds it (unquoted: lower case); `*` with anyColumn. */
  readonly column: string;
  /**
   * The value may carry any column (of `table` when given): a whole row (`to_jsonb(p)`), or the
   * result of a function, cast or operator the catalogue does not vouch for, which may read any
   * table itself. Column rules apply to it as to every column they could match.
   */
  readonly anyColumn?: true;
}

/** The sources of one output column; empty when its value carries no column (a constant, count()). */
export type ColumnLineage = readonly LineageSource[];

/**
 * The output columns of one statement. A `*` over a table (or a subquery with such a `*`) has a
 * width the text alone cannot tell: the columns before the first such `*` are `head`, those after
 * the last one `tail`, and `open` says that the middle is unknown. The columns of a `*` are plain
 * table columns, which the wire's table OID and attribute number already name.
 */
export interface StatementLineage {
  readonly head: readonly ColumnLineage[];
  readonly tail: readonly ColumnLineage[];
  readonly open: boolean;
  /**
   * What each column of the unknown middle carries when no table OID will name it: a COPY of a
   * whole table (its lines carry no column names), a FETCH from a cursor this text cannot see.
   */
  readonly fill?: ColumnLineage;
  /** The lineage of a column of the unknown middle by its name, where the wire will not name its table. */
  readonly byName?: (column: string) => ColumnLineage;
  /** COPY … TO STDOUT: how its lines are written, so they can be split into columns. */
  readonly copy?: CopyFormat;
}

export type { CopyFormat };

export interface SqlLineage {
  /** Per statement of the text, in order; undefined where the statement returns no rows or its lineage is unknown. */
  readonly statements: readonly (StatementLineage | undefined)[];
  /** False when the answer depends on more than the text and search path (EXECUTE of a prepared statement). */
  readonly cacheable: boolean;
}

export interface LineageOptions {
  /** The session's search_path; unqualified tables resolve against its first usable schema. */
  readonly searchPath?: readonly string[];
  /** The session's prepared statements, name -> SQL text, for `EXECUTE name`. */
  readonly preparedStatements?: ReadonlyMap<string, string>;
  /** The session's cursors, name -> the text of their DECLARE, for `FETCH … name`. */
  readonly cursors?: ReadonlyMap<string, string>;
}

const MAX_EXECUTE_DEPTH = 3;
const MAX_RECURSIVE_ROUNDS = 4;
const MAX_SCHEMAS = 8;

/**
 * Masking fails closed: an expression carries every column under it unless the step is listed
 * here as revealing nothing of its arguments' values. The list is decided on the result type:
 * a count of rows, a row's position, a boolean. (A boolean, like a WHERE clause, still answers one
 * yes/no question about a value: inference through predicates is out of scope, see the README.)
 * Lengths, hashes, sums and ranks with arguments are not here: `length(repeat('x', ascii(ssn)))`
 * is the value's first character, an unkeyed hash of an SSN is reversed by enumeration.
 */
const REVEALS_NOTHING_WITHOUT_ARGUMENTS: ReadonlySet<string> = new Set(['count', 'row_number', 'rank', 'dense_rank', 'percent_rank', 'cume_dist']);
/** count(x) and num_nulls say how many values are null, never what they are. */
const COUNTS_NULLS: ReadonlySet<string> = new Set(['count', 'num_nulls', 'num_nonnulls']);
/** Of those, the ones that count rows: their result is as many as the rows (see Scope.rowSources). */
const COUNTS_ROWS: ReadonlySet<string> = new Set(['count', 'row_number', 'rank', 'dense_rank', 'percent_rank', 'cume_dist']);
/**
 * Built-in set-returning functions: in a select list they return as many rows as their arguments
 * say (`generate_series(1, split_part(ssn, '-', 3)::int)` is 5678 rows), so a count of those rows
 * is the value. A function off the catalogue may return a set too: it counts as one.
 */
const SET_RETURNING: ReadonlySet<string> = new Set([
  'generate_series', 'generate_subscripts', 'unnest', 'regexp_matches', 'regexp_split_to_table', 'string_to_table',
  'json_array_elements', 'jsonb_array_elements', 'json_array_elements_text', 'jsonb_array_elements_text', 'json_each',
  'jsonb_each', 'json_each_text', 'jsonb_each_text', 'json_object_keys', 'jsonb_object_keys', 'jsonb_path_query',
  'jsonb_path_query_tz', 'json_populate_recordset', 'jsonb_populate_recordset', 'json_to_recordset', 'jsonb_to_recordset',
]);

/**
 * Binary operators of the built-in types whose result is a boolean. Prefix forms are not: `~x`
 * is a bitwise NOT, and `&&` is not here because `tsquery && tsquery` is a tsquery.
 */
const BOOLEAN_BINARY_OPERATORS: ReadonlySet<string> = new Set([
  '=', '<>', '!=', '<', '>', '<=', '>=',
  '~', '~*', '!~', '!~*', '~~', '~~*', '!~~', '!~~*',
]);
/** A_Expr kinds whose result is a boolean whatever the operands (IN, LIKE, BETWEEN, IS DISTINCT FROM, op ANY). */
const BOOLEAN_EXPR_KINDS: ReadonlySet<string> = new Set([
  'AEXPR_OP_ANY', 'AEXPR_OP_ALL', 'AEXPR_DISTINCT', 'AEXPR_NOT_DISTINCT', 'AEXPR_IN', 'AEXPR_LIKE', 'AEXPR_ILIKE',
  'AEXPR_SIMILAR', 'AEXPR_BETWEEN', 'AEXPR_NOT_BETWEEN', 'AEXPR_BETWEEN_SYM', 'AEXPR_NOT_BETWEEN_SYM',
]);

/** JSON members read by key carry a column of that name; by a key known only at run time, any column. */
const memberSources = (keys: MemberKeys): Sources => (keys === undefined ? NONE : keys === 'unknown' ? ANY_COLUMN : keys.map((column) => ({ column })));

/** One level of name resolution: a query's FROM items and CTEs, under its enclosing query's. */
class Scope {
  readonly relations: Relation[] = [];
  /** FROM items in order, for an unqualified `*`. */
  readonly fromItems: Relation[] = [];
  readonly ctes = new Map<string, Item[]>();
  /**
   * What decides how many rows this query has beyond its tables' rows: the arguments of a
   * set-returning function in FROM or in a select list, here or in a subquery. A count of rows
   * carries them (`SELECT count(*) FROM generate_series(1, <covered value>)` is the value).
   */
  readonly rowSources: Sources[] = [];

  constructor(readonly parent: Scope | undefined) {}

  cte(name: string): Item[] | undefined {
    for (let scope: Scope | undefined = this; scope; scope = scope.parent) {
      const items = scope.ctes.get(name);
      if (items) return items;
    }
    return undefined;
  }

  relation(name: string): Relation | undefined {
    for (let scope: Scope | undefined = this; scope; scope = scope.parent) {
      const found = scope.relations.filter((relation) => relation.name === name);
      if (found.length > 0) return found.at(-1);
    }
    return undefined;
  }

  /** An unqualified column: the nearest level where some relation may have it (all of those there). */
  column(name: string): Sources {
    for (let scope: Scope | undefined = this; scope; scope = scope.parent) {
      let found: Sources[] | undefined;
      for (const relation of scope.relations) {
        const sources = relation.column(name);
        if (sources) (found ??= []).push(sources);
      }
      if (found) return union(...found);
    }
    // No relation in scope can have it, yet the server found it: something the walk does not
    // model (a new clause, an added column) put it there, so it may carry any column.
    return ANY_COLUMN;
  }
}

/** The lineage walk of one statement. */
class LineageWalk {
  cacheable = true;

  constructor(
    private readonly schemas: readonly string[],
    private readonly options: LineageOptions,
    private readonly depth: number,
  ) {}

  statement(stmt: unknown): Item[] | undefined {
    const wrapped = unwrap(stmt);
    if (!wrapped) return undefined;
    const [tag, node] = wrapped;
    switch (tag) {
      case 'SelectStmt':
        // SELECT … INTO fills a table and returns no rows.
        return node.intoClause ? undefined : this.select(node, new Scope(undefined));
      case 'InsertStmt':
      case 'UpdateStmt':
      case 'DeleteStmt':
      case 'MergeStmt':
        return this.returning(tag, node);
      case 'ExecuteStmt':
        return this.execute(node);
      case 'CopyStmt':
        return node.is_from === true ? undefined : this.copy(node);
      case 'FetchStmt':
        return node.ismove === true ? undefined : this.fetch(node);
      case 'DeclareCursorStmt':
        // DECLARE returns no rows; FETCH does, looked up by name.
        return undefined;
      default:
        return undefined;
    }
  }

  /** COPY table [(columns)] TO / COPY (query) TO: the columns of its lines. */
  private copy(node: Node): Item[] {
    if (isObject(node.query)) return this.statement(node.query) ?? [{ kind: 'star', resolve: () => ANY_COLUMN, whole: ANY_COLUMN }];
    const target = isObject(node.relation) ? node.relation : {};
    const table = this.table(this.tableNames(str(target.schemaname), str(target.relname) ?? ''), undefined);
    const columns = names(node.attlist);
    if (columns.length === 0) return table.items();
    return columns.map((column) => ({ kind: 'column', name: column, sources: table.column(column) ?? NONE }));
  }

  /** FETCH from a cursor: the columns of its DECLAREd query; any column when the cursor is not known. */
  private fetch(node: Node): Item[] {
    const unknown: Item[] = [{ kind: 'star', resolve: () => ANY_COLUMN, whole: ANY_COLUMN }];
    this.cacheable = false;
    const text = this.options.cursors?.get(str(node.portalname) ?? '');
    if (text === undefined || this.depth >= MAX_EXECUTE_DEPTH) return unknown;
    let tree: { stmts?: { stmt?: Node }[] };
    try {
      tree = parseText(text);
    } catch {
      return unknown;
    }
    const declared = tree.stmts?.map((raw) => (raw.stmt as { DeclareCursorStmt?: Node } | undefined)?.DeclareCursorStmt).find((stmt) => str(stmt?.portalname) === str(node.portalname));
    if (!declared) return unknown;
    return new LineageWalk(this.schemas, this.options, this.depth + 1).statement(declared.query) ?? unknown;
  }

  /** The output items of a SELECT (any form: plain, set operation, VALUES). */
  select(node: Node, parent: Scope): Item[] {
    const scope = new Scope(parent);
    const items = this.selectIn(node, scope);
    // Rows generated in a subquery, a CTE or a set operation's branch are rows of the query around it.
    parent.rowSources.push(...scope.rowSources);
    return items;
  }

  private selectIn(node: Node, scope: Scope): Item[] {
    if (isObject(node.withClause)) this.withClause(node.withClause, scope);
    const op = str(node.op);
    if (op && op !== 'SETOP_NONE') {
      const left = isObject(node.larg) ? this.select(node.larg, scope) : [];
      const right = isObject(node.rarg) ? this.select(node.rarg, scope) : [];
      return mergePositional(left, right);
    }
    if (Array.isArray(node.valuesLists)) {
      const rows = node.valuesLists.map((row) => list((row as { List?: { items?: unknown } }).List?.items));
      const width = rows[0]?.length ?? 0;
      const items: Item[] = [];
      for (let index = 0; index < width; index++) {
        items.push({ kind: 'column', name: `column${index + 1}`, sources: union(...rows.map((row) => this.expr(row[index], scope))) });
      }
      return items;
    }
    for (const from of list(node.fromClause)) {
      const relation = this.fromItem(from, scope);
      if (relation) scope.fromItems.push(relation);
    }
    return this.targets(list(node.targetList), scope);
  }

  private targets(targets: readonly unknown[], scope: Scope): Item[] {
    const items: Item[] = [];
    for (const target of targets) {
      const res = (target as { ResTarget?: Node }).ResTarget;
      if (!res) continue;
      const value = res.val;
      const ref = (value as { ColumnRef?: Node } | undefined)?.ColumnRef;
      const fields = ref ? list(ref.fields) : [];
      if (ref && isObject(fields.at(-1)) && 'A_Star' in (fields.at(-1) as Node)) {
        items.push(...this.starItems(names(fields.slice(0, -1)), scope));
        continue;
      }
      const sources = this.expr(value, scope);
      if (this.mayReturnSet(value)) scope.rowSources.push(sources);
      items.push({ kind: 'column', name: str(res.name) ?? this.outputName(value), sources });
    }
    return items;
  }

  /** Whether a select-list expression calls a set-returning function (or one off the catalogue, which may be). */
  private mayReturnSet(value: unknown): boolean {
    if (Array.isArray(value)) return value.some((item) => this.mayReturnSet(item));
    if (!isObject(value)) return false;
    const call = isObject(value.FuncCall) ? value.FuncCall : undefined;
    if (call) {
      const parts = names(call.funcname);
      if (!isCataloguedFunction(parts, this.options.searchPath) || SET_RETURNING.has(parts.at(-1) ?? '')) return true;
    }
    // A subquery's own rows are counted in its own scope.
    if (isObject(value.SubLink)) return false;
    for (const key in value) if (this.mayReturnSet(value[key])) return true;
    return false;
  }

  /** `*` or `rel.*` in a target list: the columns it expands to. */
  private starItems(qualifier: readonly string[], scope: Scope): Item[] {
    if (qualifier.length === 0) return scope.fromItems.flatMap((relation) => relation.items());
    const relation = scope.relation(qualifier.at(-1)!);
    return relation ? relation.items() : [{ kind: 'star', resolve: () => ANY_COLUMN, whole: ANY_COLUMN, opaque: true }];
  }

  /** The column name PostgreSQL gives an unaliased target (what an outer query refers to). */
  private outputName(value: unknown): string | undefined {
    const wrapped = unwrap(value);
    if (!wrapped) return undefined;
    const [tag, node] = wrapped;
    switch (tag) {
      case 'ColumnRef':
        return names(node.fields).at(-1);
      case 'FuncCall':
        return names(node.funcname).at(-1);
      case 'TypeCast':
        return this.outputName(node.arg) ?? names((node.typeName as Node | undefined)?.names).at(-1);
      case 'A_Indirection': {
        const last = list(node.indirection).at(-1);
        return str((last as { String?: { sval?: unknown } } | undefined)?.String?.sval) ?? this.outputName(node.arg);
      }
      case 'CoalesceExpr':
        return 'coalesce';
      case 'CaseExpr':
        return 'case';
      default:
        return undefined;
    }
  }

  private withClause(clause: Node, scope: Scope): void {
    const recursive = clause.recursive === true;
    for (const entry of list(clause.ctes)) {
      const cte = (entry as { CommonTableExpr?: Node }).CommonTableExpr;
      const name = str(cte?.ctename);
      if (!cte || !name) continue;
      const columnNames = names(cte.aliascolnames);
      const query = unwrap(cte.ctequery);
      let items: Item[];
      if (query?.[0] === 'SelectStmt') {
        if (recursive) {
          // The recursive term reads the CTE itself: iterate until its sources stop growing.
          // Start from the non-recursive term, the one branch that does not read the CTE.
          const seed = str(query[1].op) !== 'SETOP_NONE' && isObject(query[1].larg) ? this.select(query[1].larg, scope) : [];
          items = renamed(seed, columnNames);
          scope.ctes.set(name, items);
          for (let round = 0; round < MAX_RECURSIVE_ROUNDS; round++) {
            const next = renamed(this.select(query[1], scope), columnNames);
            const stable = allSources(next).length === allSources(items).length && next.length === items.length;
            items = next;
            scope.ctes.set(name, items);
            if (stable && round > 0) break;
          }
        } else items = renamed(this.select(query[1], scope), columnNames);
      } else if (query) {
        // A data-changing CTE: what its RETURNING gives.
        items = renamed(this.returning(query[0], query[1], scope) ?? [], columnNames);
      } else items = [];
      scope.ctes.set(name, withSearchAndCycleColumns(cte, items));
    }
  }

  /** Registers one FROM item in the scope; returns it for `*`. */
  private fromItem(from: unknown, scope: Scope): Relation | undefined {
    const wrapped = unwrap(from);
    if (!wrapped) return undefined;
    const [tag, node] = wrapped;
    const alias = isObject(node.alias) ? node.alias : undefined;
    const aliasName = str(alias?.aliasname);
    const aliasColumns = names(alias?.colnames);
    let relation: Relation | undefined;
    switch (tag) {
      case 'RangeVar': {
        const relname = str(node.relname) ?? '';
        const schema = str(node.schemaname);
        const cte = schema ? undefined : scope.cte(relname);
        if (cte) relation = derived(aliasName ?? relname, renamed(cte, aliasColumns));
        else {
          relation = this.table(this.tableNames(schema, relname), aliasName ?? relname);
          if (aliasColumns.length > 0) relation = derived(relation.name, renamed(relation.items(), aliasColumns));
        }
        break;
      }
      case 'RangeSubselect': {
        const query = unwrap(node.subquery);
        const items = query?.[0] === 'SelectStmt' ? this.select(query[1], scope) : [];
        relation = derived(aliasName, renamed(items, aliasColumns));
        break;
      }
      case 'RangeFunction': {
        // Columns of a set-returning function derive from its arguments (unnest(array[ssn])).
        const entries = list(node.functions).map((entry) => list((entry as { List?: { items?: unknown } }).List?.items));
        const calls = entries.map((items) => items[0]);
        const columnName = (def: unknown): string => str((def as { ColumnDef?: Node }).ColumnDef?.colname) ?? '';
        const defined = list(node.coldeflist).map(columnName);
        // A column definition list names what a record-returning function fills by name: json(b)_to_record
        // reads the member `ssn` into `AS x(ssn text)`. Each defined name is a key read, like `->> 'ssn'`
        // (ROWS FROM gives each function its own list).
        const keys = [...defined, ...entries.flatMap((items) => list((items[1] as { List?: { items?: unknown } } | undefined)?.List?.items).map(columnName))];
        // expr() adds ANY_COLUMN for a function the catalogue does not vouch for (my_report() reads tables itself).
        const generated = union(...calls.map((call) => this.expr(call, scope)));
        scope.rowSources.push(generated);
        const sources = union(generated, memberSources(keys.filter(Boolean)));
        const functionName = names((calls[0] as { FuncCall?: Node } | undefined)?.FuncCall?.funcname).at(-1);
        const columnNames = aliasColumns.length > 0 ? aliasColumns : defined;
        const named: Item[] = columnNames.map((name) => ({ kind: 'column', name, sources }));
        // How many columns a function returns is the catalog's knowledge (json_each gives two): past
        // the named ones, a `*` of unknown width whose every column carries the arguments.
        const rest: Item = { kind: 'star', resolve: () => sources, whole: sources, opaque: true };
        const width = defined.length > 0 && aliasColumns.length <= defined.length ? named : [...named, rest];
        relation = {
          name: aliasName ?? functionName,
          items: () => width,
          // A bare name resolves to the function's column (unaliased, a scalar function's one column is named after it).
          column: () => sources,
        };
        break;
      }
      case 'RangeTableSample':
        // `people AS p TABLESAMPLE …` returns some of the table's rows, columns and alias unchanged:
        // the alias sits on the inner RangeVar, which registers itself.
        return this.fromItem(node.relation, scope);
      case 'JoinExpr':
        relation = this.join(node, scope, aliasName, aliasColumns);
        // An unaliased join adds no name of its own: its sides were registered by theirs.
        if (!aliasName) return relation;
        break;
      default: {
        // XMLTABLE, JSON_TABLE, ROWS FROM …: any column may derive from anything they read, and
        // any bare name may be one of their columns (XMLTABLE's COLUMNS v …).
        const sources = this.generic(node, scope);
        relation = { name: aliasName, items: () => [{ kind: 'star', resolve: () => sources, whole: sources, opaque: true }], column: () => sources };
      }
    }
    scope.relations.push(relation);
    return relation;
  }

  /**
   * A base table: its columns are not in the text, so any name may be one of them. Columns
   * renamed by an alias list (`people AS p(a, b)`) keep the alias as their name here.
   */
  private table(tables: readonly string[], name: string | undefined): Relation {
    const relname = tables[0]?.slice(tables[0].indexOf('.') + 1) ?? '';
    // A TOAST table's chunks are another table's values, any of its columns: any column.
    if (tables.some((table) => table.startsWith('pg_toast'))) {
      return { name, items: () => [{ kind: 'star', resolve: () => ANY_COLUMN, whole: ANY_COLUMN, opaque: true }], column: () => ANY_COLUMN };
    }
    if (STATISTICS_RELATIONS.has(relname)) {
      // Sample values of every column of every table: any column, resolved by name on the wire.
      const sources = (column: string): Sources => (STATISTICS_VALUE_COLUMN.test(column) ? ANY_COLUMN : tables.map((table) => ({ table, column })));
      return { name, items: () => [{ kind: 'star', resolve: sources, whole: ANY_COLUMN, opaque: true }], column: sources };
    }
    const sources = (column: string): Sources => tables.map((table) => ({ table, column }));
    const whole: Sources = tables.map((table) => ({ table, column: '*', anyColumn: true }));
    return { name, items: () => [{ kind: 'star', resolve: sources, whole }], column: sources };
  }

  /**
   * `schema.table` names an unqualified table may stand for: one per schema of the search path,
   * since which of them holds the table is the catalog's knowledge, not the text's.
   */
  private tableNames(schema: string | undefined, relname: string): string[] {
    return schema ? [`${schema}.${relname}`] : this.schemas.map((candidate) => `${candidate}.${relname}`);
  }

  /** A join: both sides in the scope by their names; its own columns for `*` or its alias. */
  private join(node: Node, scope: Scope, aliasName: string | undefined, aliasColumns: readonly string[]): Relation {
    const inner = aliasName ? new Scope(scope) : scope;
    const left = this.fromItem(node.larg, inner);
    const right = this.fromItem(node.rarg, inner);
    if (aliasName) {
      // `(a JOIN b) AS j`: a and b are hidden behind j, yet their columns still resolve unqualified.
      for (const relation of inner.relations) scope.relations.push({ ...relation, name: undefined });
      scope.rowSources.push(...inner.rowSources);
    }
    const using = names(node.usingClause);
    const leftItems = left?.items() ?? [];
    const rightItems = right?.items() ?? [];
    const items: Item[] = [];
    for (const column of using) {
      items.push({ kind: 'column', name: column, sources: union(left?.column(column) ?? NONE, right?.column(column) ?? NONE) });
    }
    const shared = new Set(using);
    const keep = (item: Item): boolean => item.kind === 'star' || !shared.has(item.name ?? '');
    items.push(...leftItems.filter(keep), ...rightItems.filter(keep));
    return derived(aliasName, renamed(items, aliasColumns));
  }

  /** RETURNING of INSERT/UPDATE/DELETE/MERGE; undefined without one (no rows). */
  private returning(tag: string, node: Node, parent?: Scope): Item[] | undefined {
    const clause = isObject(node.returningClause) ? list(node.returningClause.exprs) : list(node.returningList);
    if (clause.length === 0) return undefined;
    const scope = new Scope(parent);
    if (isObject(node.withClause)) this.withClause(node.withClause, scope);
    const target = isObject(node.relation) ? node.relation : undefined;
    const extra = tag === 'UpdateStmt' ? node.fromClause : tag === 'DeleteStmt' ? node.usingClause : tag === 'MergeStmt' ? [node.sourceRelation] : undefined;
    // The FROM items first: the values written may come from them (UPDATE … SET item = p.ssn FROM people p).
    const sources = new Scope(scope);
    const fromItems: Relation[] = [];
    for (const from of list(extra)) {
      const relation = this.fromItem(from, sources);
      if (relation) fromItems.push(relation);
    }
    if (target) {
      const relname = str(target.relname) ?? '';
      const schema = str(target.schemaname);
      const aliasName = str((target.alias as Node | undefined)?.aliasname);
      const table = this.table(this.tableNames(schema, relname), aliasName ?? relname);
      sources.relations.push(table);
      const written = this.writtenSources(tag, node, sources);
      // RETURNING reads the row as written: any of its columns may hold what the statement wrote.
      const returned: Relation =
        written.length === 0
          ? table
          : {
              name: table.name,
              items: () => table.items().map((item): Item => (item.kind === 'star' ? { ...item, resolve: (column) => union(item.resolve(column), written), whole: union(item.whole, written) } : item)),
              column: (column) => union(table.column(column) ?? NONE, written),
            };
      scope.relations.push(returned);
      scope.fromItems.push(returned);
    }
    // RETURNING * names the target's columns only (and, in PostgreSQL, the FROM items' too).
    for (const relation of fromItems) {
      scope.relations.push(relation);
      scope.fromItems.push(relation);
    }
    return this.targets(clause, scope);
  }

  /** What an INSERT, UPDATE or MERGE writes into its target's row: the sources of its values. */
  private writtenSources(tag: string, node: Node, scope: Scope): Sources {
    if (tag === 'InsertStmt') {
      const query = unwrap(node.selectStmt);
      const inserted = query?.[0] === 'SelectStmt' ? allSources(this.select(query[1], scope)) : this.generic(query?.[1] ?? {}, scope);
      // ON CONFLICT DO UPDATE SET item = (SELECT ssn …) writes too.
      return isObject(node.onConflictClause) ? union(inserted, this.generic(node.onConflictClause, scope)) : inserted;
    }
    if (tag === 'UpdateStmt') return union(...list(node.targetList).map((target) => this.expr((target as { ResTarget?: Node }).ResTarget?.val, scope)));
    if (tag === 'MergeStmt') return this.generic({ clauses: node.mergeWhenClauses }, scope);
    return NONE;
  }

  private execute(node: Node): Item[] | undefined {
    this.cacheable = false;
    const text = this.options.preparedStatements?.get(str(node.name) ?? '');
    if (text === undefined || this.depth >= MAX_EXECUTE_DEPTH) return undefined;
    let tree: { stmts?: { stmt?: Node }[] };
    try {
      tree = parseText(text);
    } catch {
      return undefined;
    }
    const first = tree.stmts?.[0]?.stmt;
    const prepared = (first as { PrepareStmt?: Node } | undefined)?.PrepareStmt;
    const inner = new LineageWalk(this.schemas, this.options, this.depth + 1);
    return inner.statement(prepared ? prepared.query : first);
  }

  /** The columns an expression's value carries. */
  expr(value: unknown, scope: Scope): Sources {
    if (Array.isArray(value)) return union(...value.map((item) => this.expr(item, scope)));
    const wrapped = unwrap(value);
    if (!wrapped) return isObject(value) ? this.generic(value, scope) : NONE;
    const [tag, node] = wrapped;
    switch (tag) {
      case 'ColumnRef':
        return this.columnRef(names(node.fields), list(node.fields), scope);
      case 'A_Const':
      case 'ParamRef':
      case 'SQLValueFunction':
      case 'BoolExpr':
      case 'NullTest':
      case 'BooleanTest':
      case 'GroupingFunc':
      case 'SetToDefault':
        return NONE;
      case 'CollateClause':
        return this.expr(node.arg, scope);
      case 'TypeCast': {
        // A cast to a type outside pg_catalog may run a user's cast or input function.
        const type = names((node.typeName as Node | undefined)?.names);
        const builtin = type.length === 0 || isBuiltinType(type, this.options.searchPath);
        return builtin ? this.expr(node.arg, scope) : union(this.expr(node.arg, scope), ANY_COLUMN);
      }
      case 'FuncCall':
        return this.funcCall(node, scope);
      case 'A_Expr':
        return this.operator(node, scope);
      case 'CaseExpr':
        // WHEN conditions choose a branch; the results are what comes back.
        return union(
          ...list(node.args).map((when) => this.expr((when as { CaseWhen?: Node }).CaseWhen?.result, scope)),
          this.expr(node.defresult, scope),
        );
      case 'CoalesceExpr':
      case 'MinMaxExpr':
      case 'RowExpr':
      case 'XmlExpr':
        return union(this.expr(node.args, scope), this.expr(node.named_args, scope));
      case 'A_ArrayExpr':
        return this.expr(node.elements, scope);
      case 'A_Indirection':
        return this.indirection(node, scope);
      case 'SubLink': {
        const type = str(node.subLinkType);
        if (type !== 'EXPR_SUBLINK' && type !== 'ARRAY_SUBLINK' && type !== 'MULTIEXPR_SUBLINK') return NONE;
        const query = unwrap(node.subselect);
        if (query?.[0] !== 'SelectStmt') return NONE;
        return allSources(this.select(query[1], scope));
      }
      default:
        return this.generic(node, scope);
    }
  }

  /**
   * A function's result carries its arguments (FILTER, ORDER BY within the aggregate and OVER
   * choose rows and are not returned), and any column at all when the function is not a pure
   * built-in: it may read tables by itself.
   */
  private funcCall(node: Node, scope: Scope): Sources {
    const parts = names(node.funcname);
    // The parser's grammar is newer than the server's: PostgreSQL 15 has no SYSTEM_USER keyword,
    // so there the bare word is a column (`FROM people AS p(a, b, "system_user")`). Both count.
    if (isPostgres15Identifier(node, parts)) return union(scope.column(SYSTEM_USER), this.expr(node.args, scope));
    const pure = isPureFunction(parts, this.options.searchPath);
    const name = parts.at(-1) ?? '';
    const args = list(node.args);
    // A count of rows, or a row's position, is as many as the rows: what generated them is carried.
    const rows = COUNTS_ROWS.has(name) ? union(...scope.rowSources) : NONE;
    if (pure && (node.agg_star === true || args.length === 0) && REVEALS_NOTHING_WITHOUT_ARGUMENTS.has(name)) return rows;
    if (pure && COUNTS_NULLS.has(name) && node.agg_within_group !== true) return rows;
    // An ordered-set aggregate returns a value of its WITHIN GROUP ordering: mode() and
    // percentile_disc(0.5) WITHIN GROUP (ORDER BY ssn) are an SSN.
    const ordered = node.agg_within_group === true ? this.expr(node.agg_order, scope) : NONE;
    const carried = union(this.expr(args, scope), ordered, memberSources(functionMemberKeys(parts, args)));
    if (pure) return carried;
    // Catalog look-ups (format_type, pg_get_viewdef) read definitions, never a user table's rows.
    return isCataloguedFunction(parts, this.options.searchPath) ? carried : union(carried, ANY_COLUMN);
  }

  /** Operators: a boolean comparison reveals nothing of its operands; anything else carries them. */
  private operator(node: Node, scope: Scope): Sources {
    const kind = str(node.kind) ?? '';
    if (kind === 'AEXPR_NULLIF') return this.expr(node.lexpr, scope);
    if (BOOLEAN_EXPR_KINDS.has(kind)) return NONE;
    const operator = names(node.name);
    const builtin = isBuiltinOperator(operator, this.options.searchPath);
    const binary = node.lexpr !== undefined && node.rexpr !== undefined;
    if (kind === 'AEXPR_OP' && builtin && binary && BOOLEAN_BINARY_OPERATORS.has(operator.at(-1)!)) return NONE;
    const carried = union(this.expr(node.lexpr, scope), this.expr(node.rexpr, scope), memberSources(operatorMemberKeys(node)));
    return builtin ? carried : union(carried, ANY_COLUMN);
  }

  /** Any other node: everything its sub-expressions carry (a wider answer is the safe one). */
  private generic(node: Node, scope: Scope): Sources {
    const parts: Sources[] = [];
    for (const key in node) {
      const value = node[key];
      if (isObject(value)) parts.push(this.expr(value, scope));
    }
    return union(...parts);
  }

  private columnRef(parts: readonly string[], fields: readonly unknown[], scope: Scope): Sources {
    const last = fields.at(-1);
    if (isObject(last) && 'A_Star' in last) {
      // `rel.*` inside an expression (row_to_json(p.*)): whatever its named columns carry.
      const qualifier = parts.slice(0, -1);
      return allSources(this.starItems(qualifier, scope));
    }
    const column = parts.at(-1) ?? '';
    if (parts.length === 1) {
      // A bare name may also be a whole-row reference to a relation (SELECT p FROM people p).
      // PostgreSQL tries a column first; where a table may have it we cannot tell, so both count.
      const relation = scope.relation(column);
      return relation ? union(scope.column(column), allSources(relation.items())) : scope.column(column);
    }
    const relation = scope.relation(parts.at(-2)!);
    // A qualifier or column the walk cannot place: fail closed, as for a bare name.
    const named = relation?.column(column) ?? ANY_COLUMN;
    // `p.concat` is concat(p) unless people has a column named concat: the whole row.
    return relation && mayBeRowFunction(column) ? union(named, allSources(relation.items())) : named;
  }

  /** `(p).ssn`, `(rec).field`, `arr[1]`: field selection names a column; subscripts keep the value. */
  private indirection(node: Node, scope: Scope): Sources {
    const first = list(node.indirection)[0];
    const field = str((first as { String?: { sval?: unknown } } | undefined)?.String?.sval);
    const arg = (node.arg as { ColumnRef?: Node } | undefined)?.ColumnRef;
    if (field && arg) {
      const parts = names(arg.fields);
      const relation = parts.length === 1 ? scope.relation(parts[0]!) : undefined;
      if (relation && mayBeRowFunction(field)) return union(relation.column(field) ?? ANY_COLUMN, allSources(relation.items()));
      if (relation) return relation.column(field) ?? ANY_COLUMN;
    }
    return union(this.expr(node.arg, scope), memberSources(subscriptMemberKeys(list(node.indirection))));
  }
}

/** Schemas of the search path that may hold user tables; `public` when none is given. */
const schemasOf = (searchPath: readonly string[] | undefined): string[] => {
  const schemas: string[] = [];
  for (const entry of searchPath ?? []) {
    const schema = entry.trim().replace(/^"(.*)"$/, '$1');
    // `$user` names a schema we cannot know here; pg_temp and pg_catalog hold no user tables.
    if (schema && schema !== '$user' && !schema.startsWith('pg_temp') && schema !== 'pg_catalog' && !schemas.includes(schema)) schemas.push(schema);
    if (schemas.length === MAX_SCHEMAS) break;
  }
  return schemas.length > 0 ? schemas : ['public'];
};

const toStatementLineage = (items: readonly Item[], stmt: unknown): StatementLineage => {
  const first = items.findIndex((item) => item.kind === 'star');
  const column = (item: Item): ColumnLineage => (item.kind === 'column' ? item.sources : NONE);
  const wrapped = unwrap(stmt);
  const copy = wrapped?.[0] === 'CopyStmt' ? copyFormat(wrapped[1]) : undefined;
  if (first < 0) return { head: items.map(column), tail: [], open: false, ...(copy ? { copy } : {}) };
  const last = items.findLastIndex((item) => item.kind === 'star');
  const stars = items.slice(first, last + 1);
  // COPY lines name no column and an unknown cursor's result may come from anywhere: the middle carries what the stars may.
  const fill = copy || wrapped?.[0] === 'FetchStmt' ? allSources(stars) : undefined;
  const opaque = stars.filter((item): item is Extract<Item, { kind: 'star' }> => item.kind === 'star' && item.opaque === true);
  const byName = opaque.length > 0 ? (name: string): ColumnLineage => union(...opaque.map((star) => star.resolve(name))) : undefined;
  return {
    head: items.slice(0, first).map(column),
    tail: items.slice(last + 1).map(column),
    open: true,
    ...(fill ? { fill } : {}),
    ...(byName ? { byName } : {}),
    ...(copy ? { copy } : {}),
  };
};

/**
 * The lineage of the result columns of every statement in a SQL text, from the PostgreSQL parse
 * tree: for each output column, the table columns its value derives from, through functions,
 * operators, casts, CASE results, COALESCE, subqueries, CTEs (recursive ones too), set operations
 * and RETURNING. Columns named only in WHERE, JOIN … ON, GROUP BY, ORDER BY, FILTER or a CASE
 * condition do not count: they choose rows, they are not returned. Views are not expanded (their
 * columns count as the view's own). Undefined when the text does not parse or the parser is not
 * loaded; never throws.
 */
export const resultLineage = (text: string, options: LineageOptions = {}): SqlLineage | undefined => {
  if (!isSqlClassifierLoaded() || text.trim() === '') return undefined;
  try {
    const tree = parseText(text) as { stmts?: { stmt?: Node }[] };
    const schemas = schemasOf(options.searchPath);
    let cacheable = true;
    const statements = (tree.stmts ?? []).map((raw) => {
      const walk = new LineageWalk(schemas, options, 0);
      const items = walk.statement(raw.stmt);
      cacheable &&= walk.cacheable;
      return items ? toStatementLineage(items, raw.stmt) : undefined;
    });
    return { statements, cacheable };
  } catch {
    return undefined;
  }
};

/**
 * The lineage of each of a result's `count` columns (as the RowDescription lists them); undefined
 * for a column whose lineage the text cannot tell (inside a `*` of unknown width, or a width
 * that does not match).
 */
export const columnLineages = (statement: StatementLineage | undefined, count: number, columnNames?: readonly string[]): (ColumnLineage | undefined)[] => {
  const out = new Array<ColumnLineage | undefined>(count).fill(undefined);
  if (!statement) return out;
  // A width the text did not foresee: every column may carry anything the statement returns (fail closed).
  const everything = (): (ColumnLineage | undefined)[] => out.fill(union(...statement.head, ...statement.tail, statement.fill ?? NONE));
  if (!statement.open) {
    if (statement.head.length !== count) return everything();
    return statement.head.slice();
  }
  if (statement.head.length + statement.tail.length > count) return everything();
  if (statement.fill) out.fill(statement.fill);
  const byName = statement.byName;
  if (byName && columnNames) {
    for (let index = statement.head.length; index < count - statement.tail.length; index++) {
      out[index] = union(out[index] ?? NONE, byName(columnNames[index] ?? ''));
    }
  }
  statement.head.forEach((lineage, index) => (out[index] = lineage));
  statement.tail.forEach((lineage, index) => (out[count - statement.tail.length + index] = lineage));
  return out;
};

