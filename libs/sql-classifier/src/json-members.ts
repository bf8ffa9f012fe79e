import { isObject, list, names, str, type Node } from './parse-tree.js';

/**
 * JSON member access names a member by key: `profile ->> 'ssn'` returns the value a column rule
 * for `ssn` covers inside the document, though the result column is not called `ssn` and the
 * value left its document (no key around it for the masking engine to see). The key becomes a
 * source named like a column, so column rules by name apply to the result.
 * @see https://www.postgresql.org/docs/current/functions-json.html
 */

/** Operators whose right operand is a key (text) or a path of keys (text[]). */
const MEMBER_OPERATORS: ReadonlySet<string> = new Set(['->', '->>', '#>', '#>>']);
/** Functions whose arguments after the document are keys. */
const PATH_FUNCTIONS: ReadonlySet<string> = new Set(['json_extract_path', 'jsonb_extract_path', 'json_extract_path_text', 'jsonb_extract_path_text']);

/** The keys named, `unknown` when one is not a constant (a parameter, a column), or undefined for no member access. */
export type MemberKeys = readonly string[] | 'unknown' | undefined;

const constant = (node: unknown): { text?: string; integer?: boolean } | undefined => {
  const aConst = isObject(node) ? (node.A_Const as Node | undefined) : undefined;
  if (!aConst) return undefined;
  if (isObject(aConst.sval)) return { text: str(aConst.sval.sval) ?? '' };
  if (isObject(aConst.ival)) return { integer: true };
  return aConst.isnull === true ? { integer: true } : undefined;
};

/** A key operand: a string constant (a path literal `{a,b}` gives each element), an integer index, or unknown. */
const keysOf = (node: unknown, path: boolean): string[] | 'unknown' => {
  let operand = node;
  // `'{a,b}'::text[]`, `'ssn'::text`: the literal under the cast.
  while (isObject(operand) && isObject(operand.TypeCast)) operand = (operand.TypeCast).arg;
  if (isObject(operand) && isObject(operand.A_ArrayExpr)) {
    const keys: string[] = [];
    for (const element of list((operand.A_ArrayExpr).elements)) {
      const found = keysOf(element, false);
      if (found === 'unknown') return found;
      keys.push(...found);
    }
    return keys;
  }
  const value = constant(operand);
  if (!value) return 'unknown';
  if (value.text === undefined) return [];
  if (!path) return [value.text];
  // Array literal syntax: braces, commas, optional double quotes (backslash escapes inside them).
  const inner = value.text.trim().replace(/^\{|\}$/g, '');
  return inner === '' ? [] : inner.split(',').map((part) => part.trim().replace(/^"(.*)"$/s, '$1').replace(/\\(.)/gs, '$1'));
};

/** The keys an A_Expr reads a member by. */
export const operatorMemberKeys = (node: Node): MemberKeys => {
  const operator = names(node.name).at(-1);
  if (str(node.kind) !== 'AEXPR_OP' || operator === undefined || !MEMBER_OPERATORS.has(operator) || node.lexpr === undefined) return undefined;
  return keysOf(node.rexpr, operator.startsWith('#'));
};

/** The keys a json(b)_extract_path(_text), jsonpath or each call reads a member by. */
export const functionMemberKeys = (funcname: readonly string[], args: readonly unknown[]): MemberKeys => {
  const name = funcname.at(-1);
  if (name === undefined) return undefined;
  if (EVERY_MEMBER_FUNCTIONS.has(name)) return 'unknown';
  if (JSONPATH_FUNCTIONS.has(name)) return jsonpathKeys(args[1]);
  if (!PATH_FUNCTIONS.has(name)) return undefined;
  const keys: string[] = [];
  for (const arg of args.slice(1)) {
    const found = keysOf(arg, false);
    if (found === 'unknown') return found;
    keys.push(...found);
  }
  return keys;
};

/** Functions that return every member's value with its key in another column (or a record): any member. */
const EVERY_MEMBER_FUNCTIONS: ReadonlySet<string> = new Set(['json_each', 'jsonb_each', 'json_each_text', 'jsonb_each_text']);
/** Functions that return what a jsonpath (their second argument) selects. */
const JSONPATH_FUNCTIONS: ReadonlySet<string> = new Set([
  'jsonb_path_query', 'jsonb_path_query_array', 'jsonb_path_query_first',
  'jsonb_path_query_tz', 'jsonb_path_query_array_tz', 'jsonb_path_query_first_tz',
]);

/**
 * The keys a constant jsonpath may select: every name in it (over-approximate: a method such as
 * `size()` counts too). A wildcard (`.*`, `.**`, `[*]` over objects) or a path known only at run
 * time may select any member.
 * @see https://www.postgresql.org/docs/current/datatype-json.html#DATATYPE-JSONPATH
 */
const jsonpathKeys = (node: unknown): string[] | 'unknown' => {
  let operand = node;
  while (isObject(operand) && isObject(operand.TypeCast)) operand = (operand.TypeCast).arg;
  const path = constant(operand)?.text;
  // keyvalue() turns members into {key, value} objects: the value leaves its key. A backslash
  // starts an escape, quoted or not (`$.s\u0073n`, `$."\x73sn"`, `$.s\sn` are all `$.ssn`): the
  // names below would not be the keys PostgreSQL reads, so any member may be selected.
  if (path === undefined || /\.\s*\*|keyvalue|\\/.test(path)) return 'unknown';
  const keys: string[] = [];
  for (const match of path.matchAll(/"([^"]*)"|([A-Za-z_][A-Za-z0-9_]*)/g)) keys.push(match[1] ?? match[2]!);
  return keys;
};

/** The keys subscripts read a member by (`doc['ssn']`, `doc['a']['b']`); integer subscripts name none. */
export const subscriptMemberKeys = (indirection: readonly unknown[]): MemberKeys => {
  const keys: string[] = [];
  let subscripted = false;
  for (const step of indirection) {
    const indices = isObject(step) ? (step.A_Indices as Node | undefined) : undefined;
    if (!indices) continue;
    subscripted = true;
    // A slice `[a:b]` is arrays only; its bounds are integers.
    if (indices.is_slice === true) continue;
    const found = keysOf(indices.uidx, false);
    if (found === 'unknown') return found;
    keys.push(...found);
  }
  return subscripted ? keys : undefined;
};
