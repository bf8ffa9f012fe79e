import { ANY_COLUMN, union, type Item, type Relation, type Sources } from './lineage-relations.js';

/** One level of name resolution: a query's FROM items and CTEs, under its enclosing query's. */
export class Scope {
  readonly relations: Relation[] = [];
  /** FROM items in order, for an unqualified `*`. */
  readonly fromItems: Relation[] = [];
  readonly ctes = new Map<string, Item[]>();
  /**
   * What decides how many rows this query has beyond its tables' rows: the arguments of a
   * set-returning function in FROM or in a select list, here or in a subquery. A count of rows
   * carries them (`SELECT count(*) FROM generate_series(1, <covered value>)` is the value).
   */
  readonly rowSources: Sources[] = [];

  constructor(readonly parent: Scope | undefined) {}

  cte(name: string): Item[] | undefined {
    for (let scope: Scope | undefined = this; scope; scope = scope.parent) {
      const items = scope.ctes.get(name);
      if (items) return items;
    }
    return undefined;
  }

  relation(name: string): Relation | undefined {
    for (let scope: Scope | undefined = this; scope; scope = scope.parent) {
      const found = scope.relations.filter((relation) => relation.name === name);
      if (found.length > 0) return found.at(-1);
    }
    return undefined;
  }

  /** An unqualified column: the nearest level where some relation may have it (all of those there). */
  column(name: string): Sources {
    for (let scope: Scope | undefined = this; scope; scope = scope.parent) {
      let found: Sources[] | undefined;
      for (const relation of scope.relations) {
        const sources = relation.column(name);
        if (sources) (found ??= []).push(sources);
      }
      if (found) return union(...found);
    }
    // No relation in scope can have it, yet the server found it: something the walk does not
    // model (a new clause, an added column) put it there, so it may carry any column.
    return ANY_COLUMN;
  }
}
