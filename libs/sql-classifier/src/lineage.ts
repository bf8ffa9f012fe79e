import { parseText } from './statement-shape.js';
import { copyFormat, type CopyFormat } from './copy-format.js';
import { unwrap, type Node } from './parse-tree.js';
import { allSources, NONE, union, type Item } from './lineage-relations.js';
import { LineageWalk } from './lineage-walk.js';
import { isSqlClassifierLoaded } from './classify.js';
import { statementThroughViews, type ViewColumns } from './view-sources.js';

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
  /**
   * TargetCatalogFacts.overloadedBuiltins: an unqualified call of one of these names may run a
   * user's overload, whose result may carry any column.
   */
  readonly overloadedBuiltins?: ReadonlySet<string>;
  /**
   * Relations (`schema.name`) whose column names are not their columns' own: views
   * (TargetCatalogFacts.rewritingRelations). referencedColumns counts a read of one as any column.
   */
  readonly renamingRelations?: ReadonlySet<string>;
  /**
   * The target's views (TargetCatalogFacts.views): a source that is a view's column also derives
   * from the columns that view column shows. referencedColumns resolves a name against every
   * view read that is not one of renamingRelations.
   */
  readonly views?: ViewColumns;
}

const MAX_SCHEMAS = 8;

/**
 * Schemas of the search path that may hold user tables, at most MAX_SCHEMAS of them; `public`
 * when none is given. `cut`: the path has more, which an unqualified table may then be in.
 */
const schemasOf = (searchPath: readonly string[] | undefined): { schemas: string[]; cut: boolean } => {
  const schemas: string[] = [];
  for (const entry of searchPath ?? []) {
    const schema = entry.trim().replace(/^"(.*)"$/, '$1');
    // `$user` names a schema we cannot know here; pg_temp and pg_catalog hold no user tables.
    if (schema && schema !== '$user' && !schema.startsWith('pg_temp') && schema !== 'pg_catalog' && !schemas.includes(schema)) {
      if (schemas.length === MAX_SCHEMAS) return { schemas, cut: true };
      schemas.push(schema);
    }
  }
  return { schemas: schemas.length > 0 ? schemas : ['public'], cut: false };
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
 * condition do not count: they choose rows, they are not returned. A view's column derives from
 * the view's column and, given options.views, from the columns it shows. Undefined when the text
 * does not parse or the parser is not loaded; never throws.
 */
export const resultLineage = (text: string, options: LineageOptions = {}): SqlLineage | undefined => {
  if (!isSqlClassifierLoaded() || text.trim() === '') return undefined;
  try {
    const tree = parseText(text) as { stmts?: { stmt?: Node }[] };
    const { schemas, cut } = schemasOf(options.searchPath);
    const views = options.views && options.views.size > 0 ? options.views : undefined;
    let cacheable = true;
    const statements = (tree.stmts ?? []).map((raw) => {
      const walk = new LineageWalk(schemas, options, 0, cut);
      const items = walk.statement(raw.stmt);
      cacheable &&= walk.cacheable;
      if (!items) return undefined;
      const statement = toStatementLineage(items, raw.stmt);
      return views ? statementThroughViews(statement, views) : statement;
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


