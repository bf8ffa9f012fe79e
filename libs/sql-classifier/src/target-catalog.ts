/**
 * What the target's catalog says that the SQL text cannot: which names in attribute notation call
 * a user's function, which relations rewrite a write, and which tables inherit from which. The
 * proxy reads it from the target (services/proxy/src/postgres/catalog.ts) and sends it with each
 * decision; without it the classifier decides from the text alone.
 */
export interface TargetCatalogFacts {
  /**
   * Names (as PostgreSQL folds them) of the target's functions outside pg_catalog that take one
   * argument of a composite type: `t.name` and `(t).name` call `name(t)` when t has no such column.
   */
  readonly rowFunctions: ReadonlySet<string>;
  /** `schema.relation` of views and of relations whose rules or INSTEAD OF triggers rewrite writes. */
  readonly rewritingRelations: ReadonlySet<string>;
  /** `schema.relation` -> its direct inheritance children and partitions (`schema.relation`). */
  readonly children: ReadonlyMap<string, readonly string[]>;
  /** `schema.relation` -> its direct inheritance parents. */
  readonly parents: ReadonlyMap<string, readonly string[]>;
  /** Changes whenever any of the above does: part of every cached decision's key. */
  readonly version: string;
  /**
   * The session changed the schema in a transaction not yet committed (or earlier in the same
   * text): the catalog read elsewhere may not show it, so every `x.name` may be a function call
   * and every write may be rewritten.
   */
  readonly uncommittedChanges?: boolean;
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

/** Builds the facts from the catalog's rows; `inheritance` is `[child, parent]` pairs. */
export const targetCatalogFacts = (input: {
  readonly rowFunctions: Iterable<string>;
  readonly rewritingRelations: Iterable<string>;
  readonly inheritance: Iterable<readonly [string, string]>;
  readonly version: string;
}): TargetCatalogFacts => {
  const children = new Map<string, string[]>();
  const parents = new Map<string, string[]>();
  for (const [child, parent] of input.inheritance) {
    children.set(parent, [...(children.get(parent) ?? []), child]);
    parents.set(child, [...(parents.get(child) ?? []), parent]);
  }
  return { rowFunctions: new Set(input.rowFunctions), rewritingRelations: new Set(input.rewritingRelations), children, parents, version: input.version };
};
