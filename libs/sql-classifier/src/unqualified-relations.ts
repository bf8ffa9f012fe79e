import { isObject, str } from './parse-tree.js';
import { parsedOrUndefined } from './statement-shape.js';

/**
 * The relation names a text writes without their schema (`t` in `SELECT v FROM t`, `INSERT INTO
 * log`, `COPY t`), each once, in order: the names whose schema the search_path picks. Undefined
 * when that cannot be told from the text alone: it does not parse, or it EXECUTEs a prepared
 * statement (whose text names relations of its own). A CTE's name counts too: telling a
 * reference to it from one to a table of that name takes the classifier's scopes, and counting
 * it can only widen what the name may read.
 */
export const unqualifiedRelations = (text: string): string[] | undefined => {
  const tree = parsedOrUndefined(text);
  if (!tree) return undefined;
  const found = new Set<string>();
  let executes = false;
  // A RangeVar is wrapped in some places (FROM) and a bare struct in others (INSERT's relation):
  // any object with a relname is one.
  const visit = (value: unknown): void => {
    if (Array.isArray(value)) {
      for (const item of value) visit(item);
      return;
    }
    if (!isObject(value)) return;
    if ('ExecuteStmt' in value) executes = true;
    const relname = str(value.relname);
    if (relname !== undefined && str(value.schemaname) === undefined) found.add(relname);
    for (const key in value) visit(value[key]);
  };
  visit(tree);
  return executes ? undefined : [...found];
};
