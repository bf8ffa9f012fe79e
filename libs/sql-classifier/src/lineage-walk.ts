import { isCataloguedFunction, STATISTICS_RELATIONS, STATISTICS_VALUE_COLUMN } from './catalogue.js';
import { ExpressionLineage, memberSources, SET_RETURNING, type QueryWalk } from './lineage-expressions.js';
import {
  allSources,
  ANY_COLUMN,
  derived,
  mergePositional,
  NONE,
  renamed,
  union,
  withSearchAndCycleColumns,
  type Item,
  type Relation,
  type Sources,
} from './lineage-relations.js';
import type { LineageOptions } from './lineage.js';
import { Scope } from './lineage-scope.js';
import { isObject, list, names, str, unwrap, type Node } from './parse-tree.js';
import { parseText } from './statement-shape.js';
import { viewsCalled } from './view-sources.js';

const MAX_EXECUTE_DEPTH = 3;
const MAX_RECURSIVE_ROUNDS = 4;

/** The lineage walk of one statement. */
export class LineageWalk implements QueryWalk {
  cacheable = true;
  private readonly expressions: ExpressionLineage;

  constructor(
    private readonly schemas: readonly string[],
    private readonly options: LineageOptions,
    private readonly depth: number,
    /** The search path had more schemas than `schemas` keeps: an unqualified table may be one past them. */
    private readonly pathCut = false,
  ) {
    this.expressions = new ExpressionLineage(this, options.searchPath, options.overloadedBuiltins);
  }

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
    const table = this.table(this.tableNames(str(target.schemaname), str(target.relname) ?? ''), undefined, this.pastKept(str(target.schemaname)));
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
    return new LineageWalk(this.schemas, this.options, this.depth + 1, this.pathCut).statement(declared.query) ?? unknown;
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
      if (parts.length === 1 && this.options.overloadedBuiltins?.has(parts[0]!)) return true;
    }
    // A subquery's own rows are counted in its own scope.
    if (isObject(value.SubLink)) return false;
    for (const key in value) if (this.mayReturnSet(value[key])) return true;
    return false;
  }

  /** `*` or `rel.*` in a target list: the columns it expands to. */
  starItems(qualifier: readonly string[], scope: Scope): Item[] {
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
          relation = this.table(this.tableNames(schema, relname), aliasName ?? relname, this.pastKept(schema));
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
        const sources = this.expressions.generic(node, scope);
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
  private table(tables: readonly string[], name: string | undefined, pastKept = false): Relation {
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
    // Past the schemas kept, the table read may be any schema's: any column, beside the ones named.
    const beyond: Sources = pastKept ? ANY_COLUMN : [];
    const sources = (column: string): Sources => [...tables.map((table) => ({ table, column })), ...beyond];
    const whole: Sources = [...tables.map((table) => ({ table, column: '*', anyColumn: true }) as const), ...beyond];
    return { name, items: () => [{ kind: 'star', resolve: sources, whole }], column: sources };
  }

  /** A table named without its schema on a path longer than the schemas this walk keeps. */
  private pastKept(schema: string | undefined): boolean {
    return this.pathCut && schema === undefined;
  }

  /**
   * `schema.table` names an unqualified table may stand for: one per schema of the search path,
   * since which of them holds the table is the catalog's knowledge, not the text's.
   */
  private tableNames(schema: string | undefined, relname: string): string[] {
    if (schema) return [`${schema}.${relname}`];
    const names = this.schemas.map((candidate) => `${candidate}.${relname}`);
    // A view of that name elsewhere may be the one the server finds (a temp view, a long path): it counts too.
    for (const view of viewsCalled(this.options.views, relname)) if (!names.includes(view)) names.push(view);
    return names;
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
      const table = this.table(this.tableNames(schema, relname), aliasName ?? relname, this.pastKept(schema));
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
      const inserted = query?.[0] === 'SelectStmt' ? allSources(this.select(query[1], scope)) : this.expressions.generic(query?.[1] ?? {}, scope);
      // ON CONFLICT DO UPDATE SET item = (SELECT ssn …) writes too.
      return isObject(node.onConflictClause) ? union(inserted, this.expressions.generic(node.onConflictClause, scope)) : inserted;
    }
    if (tag === 'UpdateStmt') return union(...list(node.targetList).map((target) => this.expr((target as { ResTarget?: Node }).ResTarget?.val, scope)));
    if (tag === 'MergeStmt') return this.expressions.generic({ clauses: node.mergeWhenClauses }, scope);
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
    const inner = new LineageWalk(this.schemas, this.options, this.depth + 1, this.pathCut);
    return inner.statement(prepared ? prepared.query : first);
  }

  /** The columns an expression's value carries. */
  expr(value: unknown, scope: Scope): Sources {
    return this.expressions.expr(value, scope);
  }
}
