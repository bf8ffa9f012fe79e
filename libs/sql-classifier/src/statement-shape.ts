import { parseSync } from 'libpg-query';
import { isSqlClassifierLoaded, normalizeSql } from './parser.js';
import { isObject, list, names, str, unwrap, type Node } from './parse-tree.js';

/*
 * One parse per statement text, and answers shared by statements of the same shape.
 *
 * Under a load such as pgbench -S every statement carries a new literal: a proxy that parsed each
 * text once per question (session effects, lineage, covered-value checks) spent most of its time in
 * the parser. The parse of a text is kept for the few questions asked about it in a row, and a
 * text's shape (its normalised form, constants as `$n`) lets an answer that cannot depend on the
 * constants' values serve the next text of that shape without a parse at all.
 */

/** Parse trees kept: the questions about one text come in a burst, within one command. */
const MAX_TREES = 8;
/** Longer texts are neither kept nor shared: their memory is not worth it. */
const MAX_KEPT_TEXT_CHARS = 8 * 1024;

export interface ParsedText {
  readonly stmts?: { stmt?: Node; stmt_location?: number; stmt_len?: number }[];
}

const trees = new Map<string, ParsedText | Error>();


/**
 * The parse tree of a text, as libpg-query's parseSync gives it; throws as parseSync does. The
 * tree is shared by every caller: read it, never change it.
 */
export const parseText = (text: string): ParsedText => {
  let tree = trees.get(text);
  if (tree === undefined) {
    try {
      tree = parseSync(text);
    } catch (error) {
      tree = error instanceof Error ? error : new Error(String(error));
    }
    if (text.length <= MAX_KEPT_TEXT_CHARS) {
      if (trees.size >= MAX_TREES) trees.delete(trees.keys().next().value!);
      trees.set(text, tree);
    }
  }
  if (tree instanceof Error) throw tree;
  return tree;
};

/** The parse tree of a text; undefined when the parser is not loaded or the text does not parse. */
export const parsedOrUndefined = (text: string): ParsedText | undefined => {
  if (!isSqlClassifierLoaded()) return undefined;
  try {
    return parseText(text);
  } catch {
    return undefined;
  }
};

/**
 * The shape of a text (its normalised form) when it has constants, else undefined. Texts of one
 * shape differ only in their constants: an answer that reads no constant is the same for all of
 * them.
 */
export const statementShape = (text: string): string | undefined => {
  if (!isSqlClassifierLoaded() || text.length > MAX_KEPT_TEXT_CHARS) return undefined;
  const normalized = normalizeSql(text);
  return normalized !== undefined && normalized !== text ? normalized : undefined;
};

/** Comparison operators: their constant operand only chooses rows, it names nothing. */
const COMPARISONS: ReadonlySet<string> = new Set(['=', '<>', '!=', '<', '>', '<=', '>=', 'BETWEEN', 'NOT BETWEEN']);
const COMPARISON_KINDS: ReadonlySet<string> = new Set(['AEXPR_OP', 'AEXPR_IN', 'AEXPR_BETWEEN', 'AEXPR_NOT_BETWEEN']);

/** A constant, or a list of them, as the compared operand of a comparison (`= 5`, `IN (1, 2)`, `::int`). */
const isInertOperand = (value: unknown): boolean => {
  if (Array.isArray(value)) return value.every(isInertOperand);
  const wrapped = unwrap(value);
  if (!wrapped) return false;
  const [tag, node] = wrapped;
  if (tag === 'A_Const') return true;
  if (tag === 'List') return list(node.items).every(isInertOperand);
  // The type is part of the shape; only a reg* type reads its constant as a name.
  if (tag === 'TypeCast') return !(names((node.typeName as Node | undefined)?.names).at(-1) ?? '').startsWith('reg') && isInertOperand(node.arg);
  return false;
};

/** No constant and no parameter anywhere under the value. */
const constantFree = (value: unknown): boolean => {
  if (Array.isArray(value)) return value.every(constantFree);
  if (!isObject(value)) return true;
  if ('A_Const' in value || 'ParamRef' in value) return false;
  for (const key in value) if (!constantFree(value[key])) return false;
  return true;
};

/** A WHERE whose constants are only compared: AND/OR/NOT of comparisons and constant-free conditions. */
const inertCondition = (value: unknown): boolean => {
  if (constantFree(value)) return true;
  const wrapped = unwrap(value);
  if (!wrapped) return false;
  const [tag, node] = wrapped;
  if (tag === 'BoolExpr') return list(node.args).every(inertCondition);
  if (tag !== 'A_Expr' || !COMPARISON_KINDS.has(str(node.kind) ?? 'AEXPR_OP')) return false;
  const operator = names(node.name);
  if (!COMPARISONS.has(operator.at(-1) ?? '') || (operator.length > 1 && operator[0] !== 'pg_catalog')) return false;
  const sides = [node.lexpr, node.rexpr];
  // One side may hold the constants, the other must hold none (a column, an expression of columns).
  return sides.every((side) => constantFree(side) || isInertOperand(side)) && sides.some(constantFree);
};

/**
 * A target-list entry whose value is a bare constant (`7 AS n`, `'x@example.com' AS email`): the
 * constant is only a value sent back, and what the proxy derives about that output column (no
 * source column; its name is the alias or `?column?`, both part of the shape) is the same for
 * every value. The value itself goes through the profile's detectors with the rows, as any value.
 * A cast is not bare (`'t'::regclass` reads a name, a user's type runs its input function), nor a
 * constant under an operator, a function, an array or a row.
 */
const isBareConstantTarget = (value: unknown): boolean => {
  const target = unwrap(value);
  if (target?.[0] !== 'ResTarget') return false;
  for (const key in target[1]) {
    const part = target[1][key];
    if (key === 'val') {
      if (unwrap(part)?.[0] !== 'A_Const' && !constantFree(part)) return false;
    } else if (!constantFree(part)) return false;
  }
  return true;
};

/** Arithmetic, whose constant operand is only a value combined with another: `abalance + 17`. */
const ARITHMETIC: ReadonlySet<string> = new Set(['+', '-', '*', '/']);

/** A constant as a whole value (`7`, `'x'`, `NULL`): no cast (`'t'::regclass` reads a name, a user's type runs its input function). */
const isBareConstant = (value: unknown): boolean => unwrap(value)?.[0] === 'A_Const';

/**
 * A value written by an INSERT or UPDATE whose constants are only values: a whole constant, one
 * combined by arithmetic with a constant-free operand (`abalance + 17`), or no constant at all.
 * Only `+ - * /` (the JSON member operators `->`, `#>` read their constant as a key).
 */
const isWrittenValue = (value: unknown): boolean => {
  if (constantFree(value) || isBareConstant(value)) return true;
  const wrapped = unwrap(value);
  if (wrapped?.[0] !== 'A_Expr' || (str(wrapped[1].kind) ?? 'AEXPR_OP') !== 'AEXPR_OP') return false;
  const operator = names(wrapped[1].name);
  if (!ARITHMETIC.has(operator.at(-1) ?? '') || (operator.length > 1 && operator[0] !== 'pg_catalog')) return false;
  const sides = [wrapped[1].lexpr, wrapped[1].rexpr];
  return sides.every((side) => constantFree(side) || isBareConstant(side)) && sides.some(constantFree);
};

const CATALOG_SCHEMAS: ReadonlySet<string> = new Set(['pg_catalog', 'information_schema', 'pg_toast']);

/**
 * The table an INSERT, UPDATE or DELETE writes, when it is not one of the server's catalogs:
 * writing those can change the session (`UPDATE pg_settings SET setting = … WHERE name = …` is a
 * SET), and whose name an unqualified `pg_` reaches depends on the search path.
 */
const isPlainTable = (relation: unknown): boolean => {
  if (!isObject(relation) || !constantFree(relation)) return false;
  const schema = str(relation.schemaname);
  const name = str(relation.relname) ?? '';
  return !(schema !== undefined && CATALOG_SCHEMAS.has(schema.toLowerCase())) && !name.toLowerCase().startsWith('pg_');
};

/** A SET list entry: a column (no subscript or field: a constant there is a position) given a written value. */
const isInertAssignment = (value: unknown): boolean => {
  const target = unwrap(value);
  return target?.[0] === 'ResTarget' && partsAreInert(target[1], { val: isWrittenValue });
};

/** One VALUES row, each of its values a written one. */
const isInertRow = (row: unknown): boolean => {
  const wrapped = unwrap(row);
  return wrapped?.[0] === 'List' && list(wrapped[1].items).every(isWrittenValue);
};

/** An INSERT's VALUES rows (and nothing else of a SELECT), each value a written one. */
const isInertValues = (value: unknown): boolean => {
  const wrapped = unwrap(value);
  return wrapped?.[0] === 'SelectStmt' && wrapped[1].valuesLists !== undefined && partsAreInert(wrapped[1], { valuesLists: (rows) => list(rows).every(isInertRow) });
};

/** Each part of a statement: `inert` decides the parts it names, the rest must hold no constant. */
const partsAreInert = (statement: Node, inert: Readonly<Record<string, (part: unknown) => boolean>>): boolean => {
  for (const key in statement) {
    const part = statement[key];
    const check = inert[key];
    if (check ? !check(part) : !constantFree(part)) return false;
  }
  return true;
};

/** A LIMIT or OFFSET: a count, constant or not. */
const isInertCount = (part: unknown): boolean => constantFree(part) || isInertOperand(part);

const INERT_SELECT = {
  whereClause: inertCondition,
  limitCount: isInertCount,
  limitOffset: isInertCount,
  targetList: (part: unknown) => list(part).every(isBareConstantTarget),
};
const INERT_INSERT = { relation: isPlainTable, selectStmt: isInertValues };
const INERT_UPDATE = { relation: isPlainTable, targetList: (part: unknown) => list(part).every(isInertAssignment), whereClause: inertCondition };
const INERT_DELETE = { relation: isPlainTable, whereClause: inertCondition };

/**
 * True when no answer the proxy derives from this text (session effects, result lineage, covered
 * value flows) can depend on the values of its constants, so that it may be shared by every text
 * of its shape. One statement, no parameters, and every constant either compared in WHERE (`aid =
 * 42`, `id IN (1, 2)`), a LIMIT/OFFSET count, a whole target of a SELECT list (`SELECT 7 AS n`),
 * or a value an INSERT's VALUES or an UPDATE's SET writes into a table that is not a catalog
 * (`VALUES (8, 'x')`, `SET abalance = abalance + 17`: a value written carries no column's value
 * and names nothing). A constant anywhere else may be read as a name (a JSON member `doc->'ssn'`,
 * `'t'::regclass`, a setting, a function's text argument, a format string) or as a position
 * (`ORDER BY 1`, `GROUP BY 2`, a subscript): such a text is answered from its exact text only.
 * False when the text does not parse.
 */
export const constantsAreInert = (text: string): boolean => {
  let tree: ParsedText;
  try {
    tree = parseText(text);
  } catch {
    return false;
  }
  const stmts = tree.stmts ?? [];
  if (stmts.length !== 1) return false;
  const wrapped = unwrap(stmts[0]!.stmt);
  switch (wrapped?.[0]) {
    case 'SelectStmt':
      return partsAreInert(wrapped[1], INERT_SELECT);
    case 'InsertStmt':
      return partsAreInert(wrapped[1], INERT_INSERT);
    case 'UpdateStmt':
      return partsAreInert(wrapped[1], INERT_UPDATE);
    case 'DeleteStmt':
      return partsAreInert(wrapped[1], INERT_DELETE);
    default:
      return false;
  }
};
