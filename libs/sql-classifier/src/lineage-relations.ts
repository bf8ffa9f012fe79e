import { isObject, str, type Node } from './parse-tree.js';
import type { ColumnLineage, LineageSource } from './lineage.js';

/**
 * The relations and output columns the lineage walk builds (lineage.ts), and the operations on
 * them that do not need the walk: unions of sources, renaming by alias lists, set operations.
 */

export type Sources = LineageSource[];

/** An output column of a relation, or a `*` of unknown width whose columns are looked up by name. */
export type Item =
  | { readonly kind: 'column'; readonly name: string | undefined; readonly sources: Sources }
  | {
      readonly kind: 'star';
      readonly resolve: (column: string) => Sources;
      /** What the columns it expands to may carry, all together (a whole-row reference to it). */
      readonly whole: Sources;
      /**
       * Its columns are not named by a table OID on the wire (a function's, a UNION's, a statistics
       * view's): the result's lineage resolves them by the names the RowDescription gives.
       */
      readonly opaque?: true;
    };

export interface Relation {
  /** The name the query refers to it by (alias, table or CTE name). */
  readonly name: string | undefined;
  readonly items: () => Item[];
  /** The sources of a column; undefined when the relation certainly has no such column. */
  readonly column: (name: string) => Sources | undefined;
}

export const NONE: Sources = [];

/** Any column of any table: what an unknown function's result may carry. */
export const ANY_COLUMN: Sources = [{ column: '*', anyColumn: true }];

const sourceKey = (source: LineageSource): string => `${source.table ?? ''}\u0000${source.column}`;

export const union = (...parts: readonly ColumnLineage[]): Sources => {
  const nonEmpty = parts.filter((part) => part.length > 0);
  // Never mutated: a readonly part may be handed back as it is.
  if (nonEmpty.length <= 1) return (nonEmpty[0] as Sources | undefined) ?? NONE;
  const seen = new Map<string, LineageSource>();
  for (const part of nonEmpty) for (const source of part) seen.set(sourceKey(source), source);
  return [...seen.values()];
};

/** Every source an item list can carry (a `*` of unknown width contributes nothing it can name). */
export const allSources = (items: readonly Item[]): Sources => union(...items.map((item) => (item.kind === 'column' ? item.sources : item.whole)));

export const derived = (name: string | undefined, items: Item[]): Relation => ({
  name,
  items: () => items,
  column: (column) => {
    const found = items.filter((item) => item.kind === 'column' && item.name === column) as Extract<Item, { kind: 'column' }>[];
    if (found.length > 0) return union(...found.map((item) => item.sources));
    const stars = items.filter((item): item is Extract<Item, { kind: 'star' }> => item.kind === 'star');
    return stars.length > 0 ? union(...stars.map((star) => star.resolve(column))) : undefined;
  },
});

/**
 * Renames the leading columns (`AS alias(a, b)`). Names left over when a `*` of unknown width is
 * met rename columns only the catalog can tell (`people AS p(a, b, c)`: `c` is the table's third
 * column, `ssn`): each of them may carry anything from that `*` on, so a rule on the real name
 * still applies.
 */
export const renamed = (items: Item[], columnNames: readonly string[]): Item[] => {
  if (columnNames.length === 0) return items;
  const out = items.slice();
  for (let index = 0; index < columnNames.length && index < out.length; index++) {
    const item = out[index]!;
    if (item.kind !== 'column') {
      const renamedBeyond = new Set(columnNames.slice(index));
      const carried = allSources(out.slice(index));
      for (let at = index; at < out.length; at++) {
        const later = out[at]!;
        if (later.kind === 'star') out[at] = { ...later, resolve: (column) => (renamedBeyond.has(column) ? carried : later.resolve(column)) };
      }
      break;
    }
    out[index] = { kind: 'column', name: columnNames[index], sources: item.sources };
  }
  return out;
};

/** Two branches of a UNION/INTERSECT/EXCEPT: column n of the result is column n of either. */
export const mergePositional = (left: Item[], right: Item[]): Item[] => {
  const leftStar = left.findIndex((item) => item.kind === 'star');
  const rightStar = right.findIndex((item) => item.kind === 'star');
  const at = (items: Item[], index: number): Sources => {
    const item = items[index];
    return item?.kind === 'column' ? item.sources : NONE;
  };
  const name = (item: Item | undefined): string | undefined => (item?.kind === 'column' ? item.name : undefined);
  if (leftStar < 0 && rightStar < 0) {
    return left.map((item, index) => ({ kind: 'column', name: name(item), sources: union(at(left, index), at(right, index)) }));
  }
  // Widths unknown: only the aligned ends can be merged; the middle is a `*` of both.
  const head = Math.min(leftStar < 0 ? left.length : leftStar, rightStar < 0 ? right.length : rightStar);
  const leftTail = left.length - 1 - left.findLastIndex((item) => item.kind === 'star');
  const rightTail = right.length - 1 - right.findLastIndex((item) => item.kind === 'star');
  const tail = Math.min(leftStar < 0 ? left.length : leftTail, rightStar < 0 ? right.length : rightTail);
  const out: Item[] = [];
  for (let index = 0; index < head; index++) out.push({ kind: 'column', name: name(left[index]), sources: union(at(left, index), at(right, index)) });
  const leftRelation = derived(undefined, left);
  const rightRelation = derived(undefined, right);
  out.push({
    kind: 'star',
    resolve: (column) => union(leftRelation.column(column) ?? NONE, rightRelation.column(column) ?? NONE),
    whole: union(allSources(left), allSources(right)),
    // A set operation's output columns have no table OID on the wire.
    opaque: true,
  });
  for (let back = tail; back >= 1; back--) {
    const l = left.length - back;
    const r = right.length - back;
    out.push({ kind: 'column', name: name(left[l]), sources: union(at(left, l), at(right, r)) });
  }
  return out;
};

/**
 * A recursive CTE's SEARCH … SET and CYCLE … SET … USING add columns after its own: the sequence
 * and the path are arrays of the rows' values (`{(912-34-5678)}`), the mark a value of the
 * query's choosing. Each carries everything the CTE's columns carry.
 */
export const withSearchAndCycleColumns = (cte: Node, items: Item[]): Item[] => {
  const search = isObject(cte.search_clause) ? cte.search_clause : undefined;
  const cycle = isObject(cte.cycle_clause) ? cte.cycle_clause : undefined;
  const added = [str(search?.search_seq_column), str(cycle?.cycle_mark_column), str(cycle?.cycle_path_column)].filter((name): name is string => name !== undefined);
  if (added.length === 0) return items;
  const sources = allSources(items);
  return [...items, ...added.map((name): Item => ({ kind: 'column', name, sources }))];
};

export const SYSTEM_USER = 'system_user';

/** `SYSTEM_USER` as the newer grammar reads it (a function of SQL syntax), an identifier to PostgreSQL 15. */
export const isPostgres15Identifier = (call: Node, parts: readonly string[]): boolean =>
  call.funcformat === 'COERCE_SQL_SYNTAX' && parts.at(-1) === SYSTEM_USER;
