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
  /**
   * Names of functions and operators outside pg_catalog (and information_schema) that pg_catalog
   * has too: PostgreSQL picks among all of a name's overloads on the path by argument types, so
   * an unqualified `upper(x)` or `a = b` may run the user's code, not the built-in.
   */
  readonly overloadedBuiltins: ReadonlySet<string>;
  /** `schema.relation` of views and of relations whose rules or INSTEAD OF triggers rewrite writes. */
  readonly rewritingRelations: ReadonlySet<string>;
  /**
   * `schema.relation` of tables with a trigger of the user's own (not a constraint's): a write may
   * run its function, which may change search_path (a foreign key's cascade fires the other
   * table's). Read by the proxy only; undefined where not read (every write may then fire one).
   */
  readonly triggeredRelations?: ReadonlySet<string>;
  /**
   * `schema.relation` -> the tables whose foreign keys onto it act on a DELETE or UPDATE of its
   * rows (ON DELETE/UPDATE CASCADE, SET NULL, SET DEFAULT): such a write changes their rows too,
   * without naming them. Undefined where not read.
   */
  readonly foreignKeyDependents?: ReadonlyMap<string, readonly string[]>;
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

/** One agent command as the policy decides it, whichever front door it came through. */
export type GovernedCommand =
  | {
      readonly kind: 'sql';
      readonly text: string;
      readonly searchPath?: readonly string[];
      /** The session's PREPAREd statements, name -> SQL text. */
      readonly preparedStatements?: ReadonlyMap<string, string>;
      /** What the target's catalog says (see TargetCatalogFacts); part of the decision cache key. */
      readonly catalog?: TargetCatalogFacts;
    }
  | { readonly kind: 'redis'; readonly args: readonly (Buffer | string)[] }
  | { readonly kind: 'http'; readonly method: string; readonly path: string };
