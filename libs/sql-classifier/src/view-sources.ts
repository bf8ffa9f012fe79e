import type { ColumnLineage, StatementLineage } from './lineage.js';
import { ANY_COLUMN, union } from './lineage-relations.js';

/** What the columns of one view derive from, views under it expanded to their base columns. */
export interface ViewSources {
  /** Column name -> the columns its value derives from (the views it reads and their base columns). */
  readonly columns: ReadonlyMap<string, ColumnLineage>;
  /** Every source of every column: what a whole-row reference to the view carries. */
  readonly all: ColumnLineage;
}

/** `schema.view` -> its columns' sources (TargetCatalogFacts.views). */
export type ViewColumns = ReadonlyMap<string, ViewSources>;

/** The schema name a session's own temporary relations go by (viewColumns keys every `pg_temp_<n>` view by it too). */
export const TEMPORARY_SCHEMA = 'pg_temp';

const relnameIndexes = new WeakMap<ViewColumns, ReadonlyMap<string, readonly string[]>>();

/**
 * The `schema.view` names of every view called `relname`, in whichever schema: what an
 * unqualified `relname` may mean beyond the schemas its session's path is known to hold (its
 * temp schema, which comes first; the schemas past the ones lineage keeps of a long path).
 * Built once per views map; a database without views pays nothing.
 */
export const viewsCalled = (views: ViewColumns | undefined, relname: string): readonly string[] => {
  if (!views || views.size === 0) return [];
  let index = relnameIndexes.get(views);
  if (!index) {
    const built = new Map<string, string[]>();
    // A quoted schema or view name may hold a dot: every dot may be the one after the schema.
    for (const name of views.keys()) for (let dot = name.indexOf('.'); dot >= 0; dot = name.indexOf('.', dot + 1)) built.set(name.slice(dot + 1), [...(built.get(name.slice(dot + 1)) ?? []), name]);
    relnameIndexes.set(views, (index = built));
  }
  return index.get(relname) ?? [];
};

/**
 * `sources` with, for each that is a column of a view (or a whole row of one), the columns that
 * view column derives from. The same array when none is: a database without views pays nothing.
 */
export const throughViews = (sources: ColumnLineage, views: ViewColumns | undefined): ColumnLineage => {
  if (!views || views.size === 0) return sources;
  let added: ColumnLineage[] | undefined;
  for (const source of sources) {
    const view = source.table === undefined ? undefined : views.get(source.table);
    if (!view) continue;
    (added ??= [sources]).push(source.anyColumn ? view.all : (view.columns.get(source.column) ?? ANY_COLUMN));
  }
  return added ? union(...added) : sources;
};

/** A statement's lineage with every source followed through the views (see throughViews). */
export const statementThroughViews = (statement: StatementLineage, views: ViewColumns): StatementLineage => {
  const { byName, fill } = statement;
  return {
    ...statement,
    head: statement.head.map((sources) => throughViews(sources, views)),
    tail: statement.tail.map((sources) => throughViews(sources, views)),
    ...(fill ? { fill: throughViews(fill, views) } : {}),
    ...(byName ? { byName: (column: string) => throughViews(byName(column), views) } : {}),
  };
};
