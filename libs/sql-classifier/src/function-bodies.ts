import { parseSync } from 'libpg-query';
import { isObject, list, names, str, unwrap, type Node } from './parse-tree.js';

/**
 * What a CREATE FUNCTION/PROCEDURE will run when called: the statements of a SQL-language body
 * (which the grammar parses), or why it cannot be known (plpgsql and other languages run code
 * whose statements the parser cannot fully see).
 */
export type FunctionBody = { readonly statements: readonly unknown[] } | { readonly opaque: string };

export const functionBody = (n: Node): FunctionBody => {
  // BEGIN ATOMIC … END and RETURN expr: the body is already in the tree.
  if (n.sql_body !== undefined) return { statements: [n.sql_body] };
  let language: string | undefined;
  let source: string[] = [];
  for (const item of list(n.options)) {
    const def = (item as { DefElem?: { defname?: string; arg?: Node } }).DefElem;
    if (def?.defname === 'language') language = str((def.arg as { String?: { sval?: unknown } } | undefined)?.String?.sval)?.toLowerCase();
    if (def?.defname === 'as') source = names(isObject(def.arg) && isObject(def.arg.List) ? def.arg.List.items : [def.arg]);
  }
  if (language !== 'sql') return { opaque: `a ${language ?? 'unknown'}-language function body cannot be classified` };
  if (source.length !== 1) return { opaque: 'a SQL function body given as object file and symbol cannot be classified' };
  try {
    const tree = parseSync(source[0]!) as { stmts?: { stmt?: unknown }[] };
    return { statements: (tree.stmts ?? []).map((raw) => raw.stmt) };
  } catch {
    return { opaque: 'the SQL function body does not parse' };
  }
};

/** DefineStmt options that name a function (CREATE OPERATOR, AGGREGATE, TYPE). */
const FUNCTION_OPTIONS: ReadonlySet<string> = new Set([
  'function', 'procedure', 'restrict', 'join', 'sfunc', 'finalfunc', 'combinefunc', 'serialfunc', 'deserialfunc', 'msfunc', 'minvfunc',
  'mfinalfunc', 'input', 'output', 'receive', 'send', 'typmod_in', 'typmod_out', 'analyze', 'subscript', 'canonical', 'subtype_diff',
]);

/**
 * The functions a CREATE TRIGGER, OPERATOR, AGGREGATE, TYPE, CAST, TRANSFORM or OPERATOR CLASS
 * makes the server call later (on an INSERT, an operator, a cast), as written.
 */
export const namedFunctions = (tag: string, n: Node): string[][] => {
  const found: string[][] = [];
  if (tag === 'CreateTrigStmt') found.push(names(n.funcname));
  if (tag === 'DefineStmt') {
    for (const item of list(n.definition)) {
      const def = (item as { DefElem?: { defname?: string; arg?: unknown } }).DefElem;
      if (!def?.defname || !FUNCTION_OPTIONS.has(def.defname.toLowerCase())) continue;
      const arg = def.arg as { TypeName?: { names?: unknown }; List?: { items?: unknown }; String?: { sval?: unknown } } | undefined;
      const parts = arg?.TypeName ? names(arg.TypeName.names) : arg?.List ? names(arg.List.items) : arg?.String ? [str(arg.String.sval) ?? ''] : [];
      // An option whose value is not a name is refused as a function the catalogue cannot vouch for.
      found.push(parts.length > 0 ? parts : ['?']);
    }
  }
  // CREATE CAST … WITH FUNCTION, CREATE TRANSFORM, CREATE OPERATOR CLASS/FAMILY … FUNCTION n f().
  const walk = (value: unknown): void => {
    if (Array.isArray(value)) return value.forEach(walk);
    const wrapped = unwrap(value);
    const node = wrapped ? wrapped[1] : isObject(value) ? value : undefined;
    if (!node) return;
    if (wrapped?.[0] === 'ObjectWithArgs' || (!wrapped && Array.isArray(node.objname))) found.push(names(node.objname));
    for (const key in node) walk(node[key]);
  };
  if (tag === 'CreateCastStmt' || tag === 'CreateTransformStmt' || tag === 'CreateOpClassStmt' || tag === 'AlterOpFamilyStmt') walk(n);
  return found;
};
