import type { TargetCatalogFacts as PolicyCatalogFacts } from '@sluice/contracts';
import { viewColumns, type ViewDefinition } from './view-columns.js';
import type { ViewColumns } from './view-sources.js';

/**
 * The contract's facts (what a policy decision depends on) and what masking needs besides: the
 * lineage of the target's views, which never goes to the policy service.
 */
export interface TargetCatalogFacts extends PolicyCatalogFacts {
  /**
   * `schema.view` of every view and materialized view -> its columns' base sources, so column
   * rules follow a view column to the column it shows. Undefined where not read.
   */
  readonly views?: ViewColumns;
}

/** Catalogs deeper than this are cut (a cycle cannot occur, but a bad answer must not loop). */
const MAX_DEPTH = 32;

const closure = (start: string, edges: ReadonlyMap<string, readonly string[]>): string[] => {
  const seen = new Set<string>();
  let frontier = [start];
  for (let depth = 0; depth < MAX_DEPTH && frontier.length > 0; depth++) {
    const next: string[] = [];
    for (const name of frontier) {
      for (const other of edges.get(name) ?? []) {
        if (other === start || seen.has(other)) continue;
        seen.add(other);
        next.push(other);
      }
    }
    frontier = next;
  }
  return [...seen];
};

/** Every table that reading `relation` (without ONLY) reads too: its children, theirs, and so on. */
export const descendantsOf = (facts: TargetCatalogFacts | undefined, relation: string): string[] => (facts ? closure(relation, facts.children) : []);

/** Every table `relation` inherits from or is a partition of: a rule on any of them covers it. */
export const ancestorsOf = (facts: TargetCatalogFacts | undefined, relation: string): string[] => (facts ? closure(relation, facts.parents) : []);

/** Every table a DELETE or UPDATE of `relation`'s rows may change through foreign-key actions, and theirs in turn. */
export const foreignKeyReachOf = (facts: TargetCatalogFacts | undefined, relation: string): string[] =>
  facts?.foreignKeyDependents ? closure(relation, facts.foreignKeyDependents) : [];

/**
 * Builds the facts from the catalog's rows; `inheritance` is `[child, parent]` pairs,
 * `foreignKeyActions` `[referencing, referenced]` pairs of foreign keys that act on the referencing table.
 */
export const targetCatalogFacts = (input: {
  readonly rowFunctions: Iterable<string>;
  /** See TargetCatalogFacts.overloadedBuiltins; none when the catalog was read without them. */
  readonly overloadedBuiltins?: Iterable<string>;
  readonly rewritingRelations: Iterable<string>;
  /** See TargetCatalogFacts.triggeredRelations. */
  readonly triggeredRelations?: Iterable<string>;
  readonly inheritance: Iterable<readonly [string, string]>;
  /** See TargetCatalogFacts.foreignKeyDependents; none when the catalog was read without them. */
  readonly foreignKeyActions?: Iterable<readonly [string, string]>;
  /** Every view and materialized view, as pg_get_viewdef prints it; none when the catalog was read without them. */
  readonly views?: Iterable<ViewDefinition>;
  /** Must change whenever any of the above does, view definitions included. */
  readonly version: string;
}): TargetCatalogFacts => {
  const children = new Map<string, string[]>();
  const parents = new Map<string, string[]>();
  for (const [child, parent] of input.inheritance) {
    children.set(parent, [...(children.get(parent) ?? []), child]);
    parents.set(child, [...(parents.get(child) ?? []), parent]);
  }
  const dependents = new Map<string, string[]>();
  for (const [referencing, referenced] of input.foreignKeyActions ?? []) dependents.set(referenced, [...(dependents.get(referenced) ?? []), referencing]);
  const views = input.views ? viewColumns(input.views) : undefined;
  return {
    rowFunctions: new Set(input.rowFunctions),
    overloadedBuiltins: new Set(input.overloadedBuiltins ?? []),
    rewritingRelations: new Set(input.rewritingRelations),
    ...(views ? { views } : {}),
    ...(input.triggeredRelations ? { triggeredRelations: new Set(input.triggeredRelations) } : {}),
    ...(input.foreignKeyActions ? { foreignKeyDependents: dependents } : {}),
    children, parents, version: input.version };
};
