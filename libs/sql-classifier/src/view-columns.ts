import { columnLineages, resultLineage, type ColumnLineage, type LineageSource } from './lineage.js';
import { ANY_COLUMN, union } from './lineage-relations.js';
import { TEMPORARY_SCHEMA, type ViewColumns, type ViewSources } from './view-sources.js';

/** One view or materialized view of the target as its catalog describes it. */
export interface ViewDefinition {
  /** `schema.view`. */
  readonly name: string;
  /** Its columns' names, in order (pg_attribute). */
  readonly columns: readonly string[];
  /**
   * `pg_get_viewdef(oid)` read with search_path `pg_catalog`, so every relation outside
   * pg_catalog is printed with its schema and the view owner's path does not matter.
   */
  readonly definition: string;
}

/** Views over views deeper than this are cut: their columns count as any column. */
const MAX_VIEW_DEPTH = 16;

/**
 * The lineage of every view's columns from its definition, views over views expanded. Fails
 * closed: a definition that does not parse, whose width differs from its columns, or that takes
 * part in a cycle or a chain deeper than MAX_VIEW_DEPTH, makes its columns any column. Parses each
 * definition once; the proxy builds this once per catalog facts version.
 */
export const viewColumns = (definitions: Iterable<ViewDefinition>): ViewColumns => {
  const direct = new Map<string, { readonly names: readonly string[]; readonly lineages: readonly ColumnLineage[] }>();
  // `"a.b".c` and `a."b.c"` are both `a.b.c`, as a lineage source names them: which one a source
  // means is not known, so the columns of neither are told apart.
  const ambiguous = new Set<string>();
  for (const view of definitions) {
    if (direct.has(view.name)) ambiguous.add(view.name);
    direct.set(view.name, { names: view.columns, lineages: directLineages(view) });
  }
  // `height`: how many views deep the view's chain goes (Infinity: cut, or in a cycle).
  const expanded = new Map<string, { readonly sources: ViewSources; readonly height: number }>();
  const expanding = new Set<string>();
  const expand = (name: string, depth: number): { readonly sources: ViewSources; readonly height: number } => {
    const known = expanded.get(name);
    if (known) return known;
    const view = direct.get(name)!;
    if (ambiguous.has(name)) return { sources: anyColumnView(view.names), height: 1 };
    // A cycle (a bad catalog answer) or a chain too deep: nothing under it can be told apart.
    if (expanding.has(name) || depth > MAX_VIEW_DEPTH) return { sources: anyColumnView(view.names), height: Infinity };
    expanding.add(name);
    let below = 0;
    const sourcesOf = (source: LineageSource): ColumnLineage => {
      if (source.table === undefined || !direct.has(source.table)) return [source];
      const under = expand(source.table, depth + 1);
      below = Math.max(below, under.height);
      return union([source], source.anyColumn ? under.sources.all : (under.sources.columns.get(source.column) ?? ANY_COLUMN));
    };
    const lineages = view.lineages.map((lineage) => union(...lineage.map(sourcesOf)));
    expanding.delete(name);
    const height = below + 1;
    const result =
      height > MAX_VIEW_DEPTH
        ? { sources: anyColumnView(view.names), height: Infinity }
        : { sources: { columns: new Map(view.names.map((column, index) => [column, lineages[index] ?? ANY_COLUMN])), all: lineages.length === 0 ? ANY_COLUMN : union(...lineages) }, height };
    expanded.set(name, result);
    return result;
  };
  const views = new Map([...direct.keys()].map((name) => [name, expand(name, 0).sources]));
  // A temporary view is `pg_temp_<n>.name`, but its session names it `name` or `pg_temp.name`,
  // and which session's temp schema is which is not known here: every one of that name counts.
  const temporary = new Map<string, ViewSources[]>();
  for (const [name, sources] of views) {
    const match = TEMPORARY_VIEW.exec(name);
    if (match) temporary.set(match[1]!, [...(temporary.get(match[1]!) ?? []), sources]);
  }
  for (const [relname, all] of temporary) views.set(`${TEMPORARY_SCHEMA}.${relname}`, unionOfViews(all));
  return views;
};

const TEMPORARY_VIEW = /^pg_temp_\d+\.(.*)$/s;

/** Sources that are every one of `views`': a column of one name derives from that column of each. */
const unionOfViews = (views: readonly ViewSources[]): ViewSources => {
  if (views.length === 1) return views[0]!;
  const columns = new Map<string, ColumnLineage>();
  for (const view of views) for (const [column, sources] of view.columns) columns.set(column, union(columns.get(column) ?? [], sources));
  return { columns, all: union(...views.map((view) => view.all)) };
};
/** The lineage of each of a view's columns from its definition alone; any column where unknown. */
const directLineages = (view: ViewDefinition): ColumnLineage[] => {
  // Every relation outside pg_catalog is printed qualified: an unqualified one is pg_catalog's.
  const statements = resultLineage(view.definition, { searchPath: ['pg_catalog'] })?.statements;
  const statement = statements?.length === 1 ? statements[0] : undefined;
  // Unknown is any column, never none: a column rule over a base column must reach the view. A
  // `*` (pg_get_viewdef spells columns out) or a width other than the view's is not understood.
  if (!statement || statement.open || statement.head.length !== view.columns.length) return view.columns.map(() => ANY_COLUMN);
  return columnLineages(statement, view.columns.length).map((lineage) => lineage ?? ANY_COLUMN);
};

const anyColumnView = (names: readonly string[]): ViewSources => ({ columns: new Map(names.map((column) => [column, ANY_COLUMN])), all: ANY_COLUMN });
