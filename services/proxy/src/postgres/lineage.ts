import type { ColumnSource } from '@sluice/masking-engine';
import { columnLineages, isSqlClassifierLoaded, resultLineage, type SqlLineage } from '@sluice/sql-classifier';

/** Statement texts whose lineage a session keeps; agents repeat a small set of statements. */
const MAX_ENTRIES = 256;
/** Longer texts are not kept (256 statements of megabytes each would be the session's memory). */
const MAX_CACHED_TEXT_CHARS = 64 * 1024;

/**
 * The result-column lineage of a session's statement texts, computed once per text and search
 * path (a parse and a walk of the tree, tens of microseconds), never per row.
 */
export class LineageCache {
  readonly #entries = new Map<string, SqlLineage | null>();

  /** Undefined when unknown (parser not loaded, text does not parse): the result is masked without it. */
  lineage(text: string, searchPath: readonly string[] | undefined, preparedStatements: ReadonlyMap<string, string>): SqlLineage | undefined {
    const key = `${searchPath?.join(',') ?? ''}\u0000${text}`;
    const cached = this.#entries.get(key);
    if (cached !== undefined) return cached ?? undefined;
    const lineage = resultLineage(text, { ...(searchPath ? { searchPath } : {}), preparedStatements });
    // Not cached: an answer that depends on the prepared statements, or one the parser could not give yet.
    if (text.length <= MAX_CACHED_TEXT_CHARS && (lineage ? lineage.cacheable : isSqlClassifierLoaded())) {
      if (this.#entries.size >= MAX_ENTRIES) this.#entries.delete(this.#entries.keys().next().value!);
      this.#entries.set(key, lineage ?? null);
    }
    return lineage;
  }
}

/**
 * The `derivedFrom` of each column of the `statement`-th result of a text with `count` columns;
 * undefined when nothing is known.
 */
export const derivedColumns = (lineage: SqlLineage | undefined, statement: number, count: number): (readonly ColumnSource[] | undefined)[] | undefined => {
  const lineages = columnLineages(lineage?.statements[statement], count);
  let known = false;
  const out = lineages.map((sources) => {
    if (!sources || sources.length === 0) return undefined;
    known = true;
    return sources.map((source): ColumnSource => (source.table ? { name: source.column, qualifiedName: `${source.table}.${source.column}` } : { name: source.column }));
  });
  return known ? out : undefined;
};
