import type { ColumnInfo, ColumnSource, ProfileMasker } from '@sluice/masking-engine';
import {
  columnLineages,
  coveredFlows,
  isSqlClassifierLoaded,
  referencedColumns,
  resultLineage,
  searchPathKey,
  type ColumnLineage,
  type CopyFormat,
  type SqlLineage,
  type TargetCatalogFacts,
  type ViewColumns,
} from '@sluice/sql-classifier';
import { StatementAnswers, UNKNOWN } from './statement-answers.js';

/** Statement texts whose lineage a session keeps; agents repeat a small set of statements. */
const MAX_ENTRIES = 256;
/** Longer texts are not kept (256 statements of megabytes each would be the session's memory). */
const MAX_CACHED_TEXT_CHARS = 64 * 1024;

/** The context last handed out by contextOf, with the parts it was written from. */
let lastContext = { version: '', pathKey: '', text: '\u0000' };

/**
 * `<catalog version>\0<search path key>`, what an answer about a text depends on besides it. The
 * same string comes back while its parts repeat (each command asks three caches, and sessions
 * mostly share a path and a catalog): a cache then finds it by the hash kept with it instead of
 * a new string built and hashed per question.
 */
const contextOf = (version: string, searchPath: readonly string[] | undefined): string => {
  const pathKey = searchPathKey(searchPath);
  if (version !== lastContext.version || pathKey !== lastContext.pathKey) lastContext = { version, pathKey, text: `${version}\u0000${pathKey}` };
  return lastContext.text;
};

/**
 * The result-column lineage of a session's statement texts, computed once per text (or shape) and
 * search path (a parse and a walk of the tree, tens of microseconds), never per row.
 */
export class LineageCache {
  readonly #answers = new StatementAnswers<SqlLineage | null>(MAX_ENTRIES);

  /** Undefined when unknown (parser not loaded, text does not parse): the result is masked without it. */
  lineage(
    text: string,
    searchPath: readonly string[] | undefined,
    preparedStatements: ReadonlyMap<string, string>,
    cursors?: ReadonlyMap<string, string>,
    catalog?: TargetCatalogFacts,
  ): SqlLineage | undefined {
    const overloadedBuiltins = catalog && catalog.overloadedBuiltins.size > 0 ? catalog.overloadedBuiltins : undefined;
    const views = catalog?.views && catalog.views.size > 0 ? catalog.views : undefined;
    // Only facts with overloads or views change an answer: a database with neither keeps one entry per text.
    const context = contextOf(overloadedBuiltins || views ? catalog!.version : '', searchPath);
    const known = this.#answers.get(context, text);
    if (known !== UNKNOWN) return known ?? undefined;
    const lineage = resultLineage(text, {
      ...(searchPath ? { searchPath } : {}),
      preparedStatements,
      ...(cursors ? { cursors } : {}),
      ...(overloadedBuiltins ? { overloadedBuiltins } : {}),
      ...(views ? { views } : {}),
    });
    // Not cached: an answer that depends on the prepared statements, or one the parser could not give yet.
    if (text.length <= MAX_CACHED_TEXT_CHARS && (lineage ? lineage.cacheable : isSqlClassifierLoaded())) this.#answers.set(context, text, lineage ?? null);
    return lineage;
  }
}

/** Lineage sources as the masking engine takes them. */
const toColumnSources = (sources: ColumnLineage): ColumnSource[] =>
  sources.map((source): ColumnSource => {
    if (source.anyColumn) return { name: source.column, anyColumn: true, ...(source.table ? { table: source.table } : {}) };
    return source.table ? { name: source.column, qualifiedName: `${source.table}.${source.column}` } : { name: source.column };
  });

/** Any column of any table: what a text that does not parse may name. */
const ANY_COLUMN: readonly ColumnSource[] = [{ name: '*', anyColumn: true }];

/**
 * The sources of a result column the wire names `schema.table.column` when that table is one of
 * the target's views: the columns the view column shows. Undefined when it is not a view's.
 */
export const viewColumnSources = (qualifiedName: string | undefined, views: ViewColumns | undefined): readonly ColumnSource[] | undefined => {
  if (qualifiedName === undefined || !views || views.size === 0) return undefined;
  // Quoted names may hold dots: every dot is tried as the one before the column, the last first.
  for (let dot = qualifiedName.lastIndexOf('.'); dot > 0; dot = qualifiedName.lastIndexOf('.', dot - 1)) {
    const view = views.get(qualifiedName.slice(0, dot));
    if (!view) continue;
    const sources = view.columns.get(qualifiedName.slice(dot + 1));
    return sources ? toColumnSources(sources) : ANY_COLUMN;
  }
  return undefined;
};

const uncommittedFacts = new WeakMap<TargetCatalogFacts, TargetCatalogFacts>();

/**
 * The facts as masking reads them while the session has changed the schema in a transaction not
 * yet committed (or earlier in the same text): a relation they do not show (a view created in that
 * transaction, which the catalog connection cannot see) may show any column, so every result
 * column counts as any column. One object per facts object: caches keyed by it keep working.
 */
export const withUncommittedChanges = (facts: TargetCatalogFacts): TargetCatalogFacts => {
  let marked = uncommittedFacts.get(facts);
  if (!marked) uncommittedFacts.set(facts, (marked = { ...facts, uncommittedChanges: true }));
  return marked;
};

/**
 * The sources of each of a result's columns as masking takes them: `derived` (the text's lineage)
 * with, for a column the wire names as a view's (`qualified`), the columns it shows, and any column
 * for every column after an uncommitted schema change (see withUncommittedChanges).
 */
export const resultColumnSources = (
  derived: (readonly ColumnSource[] | undefined)[] | undefined,
  qualified: readonly (string | undefined)[],
  catalog: TargetCatalogFacts | undefined,
): (readonly ColumnSource[] | undefined)[] | undefined => {
  if (catalog?.uncommittedChanges) return qualified.map((_, index) => [...(derived?.[index] ?? []), ...ANY_COLUMN]);
  const views = catalog?.views;
  if (!views || views.size === 0) return derived;
  let withViews: (readonly ColumnSource[] | undefined)[] | undefined;
  qualified.forEach((name, index) => {
    const shown = viewColumnSources(name, views);
    if (!shown) return;
    withViews ??= derived ? derived.slice() : new Array<readonly ColumnSource[] | undefined>(qualified.length).fill(undefined);
    withViews[index] = [...(withViews[index] ?? []), ...shown];
  });
  return withViews ?? derived;
};

/**
 * True when a statement names, anywhere, a column one of the profile's column rules covers (or
 * something that may carry any column): the server's error and notice texts about it may quote
 * a covered value.
 */
export const touchesCoveredColumn = (
  masker: ProfileMasker,
  text: string,
  searchPath: readonly string[] | undefined,
  preparedStatements: ReadonlyMap<string, string>,
  catalog: TargetCatalogFacts | undefined,
): boolean => {
  if (masker.columnRuleCount === 0) return false;
  if (catalog?.uncommittedChanges) return true;
  // A statement can raise many notices (RAISE in a loop): parse it once per profile and text,
  // or once per shape (every command asks: a new literal in each must not cost a parse each).
  let answers = touchedByMasker.get(masker);
  if (!answers) touchedByMasker.set(masker, (answers = new StatementAnswers<boolean>(MAX_ENTRIES)));
  // The catalog's views: a view's column may be a covered one renamed.
  const context = contextOf(catalog?.version ?? '', searchPath);
  const known = answers.get(context, text);
  if (known !== UNKNOWN) return known;
  // A read of a view or materialized view (both have rules) counts as any column: besides the
  // columns it shows, an error in its definition's WHERE may quote any column it reads.
  const sources = referencedColumns(text, { ...(searchPath ? { searchPath } : {}), preparedStatements, ...(catalog ? { renamingRelations: catalog.rewritingRelations } : {}) });
  const derivedFrom = sources ? toColumnSources(sources) : ANY_COLUMN;
  const touches = derivedFrom.length > 0 && masker.hasColumnRule({ name: '', derivedFrom });
  // Before the parser is loaded every text touches everything: kept by its exact text only.
  answers.set(context, text, touches, sources !== undefined);
  return touches;
};

const touchedByMasker = new WeakMap<ProfileMasker, StatementAnswers<boolean>>();

/**
 * Why a statement allowed under a profile with column rules must still be refused, when it is:
 * it writes a value a column rule covers into a column no rule covers (a later SELECT of that
 * column would show it in clear), or it compares a covered column with a generated series or a
 * VALUES list in WHERE/ON/HAVING (the rows kept give the value away). Undefined when neither.
 */
export const coveredValueEscape = (
  masker: ProfileMasker | undefined,
  text: string,
  searchPath: readonly string[] | undefined,
  preparedStatements: ReadonlyMap<string, string>,
  catalog: TargetCatalogFacts | undefined,
): string | undefined => {
  if (!masker || masker.columnRuleCount === 0) return undefined;
  // Agents repeat a small set of statements: one parse per profile and text (an EXECUTE's answer
  // depends on the prepared statement, so it is not kept).
  let answers = escapesByMasker.get(masker);
  if (!answers) escapesByMasker.set(masker, (answers = new StatementAnswers<string | null>(MAX_ENTRIES)));
  const context = contextOf(catalog?.version ?? '', searchPath);
  const known = answers.get(context, text);
  if (known !== UNKNOWN) return known ?? undefined;
  const escape = escapeOf(masker, text, searchPath, preparedStatements, catalog);
  if (text.length <= MAX_CACHED_TEXT_CHARS && !/execute/i.test(text)) answers.set(context, text, escape ?? null);
  return escape;
};

const escapesByMasker = new WeakMap<ProfileMasker, StatementAnswers<string | null>>();

const escapeOf = (
  masker: ProfileMasker,
  text: string,
  searchPath: readonly string[] | undefined,
  preparedStatements: ReadonlyMap<string, string>,
  catalog: TargetCatalogFacts | undefined,
): string | undefined => {
  // A view's columns count with the columns they show: `insert into t select tax_id from v` writes `ssn`.
  const flows = coveredFlows(text, {
    ...(searchPath ? { searchPath } : {}),
    preparedStatements,
    ...(catalog ? { rowFunctions: catalog.rowFunctions } : {}),
    ...(catalog?.views ? { views: catalog.views } : {}),
  });
  if (!flows) return undefined;
  const call = flows.attributeCalls[0];
  if (call !== undefined) {
    return `.${call} calls the target's function ${call}() in attribute notation, whose result column rules cannot follow; call it as ${call}(…), which is masked as any column`;
  }
  const covers = (sources: ColumnLineage): boolean => sources.length > 0 && masker.hasColumnRule({ name: '', derivedFrom: toColumnSources(sources) });
  for (const flow of flows.writes) {
    if (!covers(flow.sources)) continue;
    const target = flow.target;
    const targetCovered = target !== undefined && target.tables.every((table) => masker.hasColumnRule({ name: target.column, qualifiedName: `${table}.${target.column}` }));
    if (targetCovered) continue;
    const where = target ? `column ${target.column}, which no column rule covers` : 'a column the statement does not name';
    return `the statement writes a value a column rule covers into ${where}: it would be read back later unmasked`;
  }
  if (covers(flows.seriesPredicates)) {
    return 'a WHERE, ON or HAVING compares a column a column rule covers while a set-returning function, VALUES or WITH query is in FROM: the rows it keeps would give the value away';
  }
  return undefined;
};

/** The masking columns of a COPY TO's lines, when the statement's lineage gives them. */
export const copyColumns = (
  lineage: SqlLineage | undefined,
  statement: number,
  count: number,
  catalog?: TargetCatalogFacts,
): { readonly columns: readonly ColumnInfo[]; readonly format: CopyFormat } | undefined => {
  const format = lineage?.statements[statement]?.copy;
  if (!format) return undefined;
  const lineages = columnLineages(lineage.statements[statement], count);
  const columns = lineages.map((sources, index): ColumnInfo => ({
    name: `column${index + 1}`,
    // Unknown, or after an uncommitted schema change: any column (a COPY line names none, so no table OID will).
    derivedFrom: sources && !catalog?.uncommittedChanges ? toColumnSources(sources) : ANY_COLUMN,
  }));
  return { columns, format };
};

/**
 * The `derivedFrom` of each column of the `statement`-th result of a text with `count` columns;
 * undefined when nothing is known.
 */
export const derivedColumns = (
  lineage: SqlLineage | undefined,
  statement: number,
  count: number,
  columnNames?: readonly string[],
): (readonly ColumnSource[] | undefined)[] | undefined => {
  const lineages = columnLineages(lineage?.statements[statement], count, columnNames);
  let known = false;
  const out = lineages.map((sources) => {
    if (!sources || sources.length === 0) return undefined;
    known = true;
    return toColumnSources(sources);
  });
  return known ? out : undefined;
};
