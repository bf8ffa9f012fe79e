import { isBuiltinOperator, isBuiltinType, isCataloguedFunction, isPureFunction, mayBeRowFunction } from './catalogue.js';
import { functionMemberKeys, operatorMemberKeys, subscriptMemberKeys, type MemberKeys } from './json-members.js';
import { allSources, ANY_COLUMN, isPostgres15Identifier, NONE, SYSTEM_USER, union, type Item, type Sources } from './lineage-relations.js';
import type { Scope } from './lineage-scope.js';
import { isObject, list, names, str, unwrap, type Node } from './parse-tree.js';

/**
 * Masking fails closed: an expression carries every column under it unless the step is listed
 * here as revealing nothing of its arguments' values. The list is decided on the result type:
 * a count of rows, a row's position, a boolean. (A boolean, like a WHERE clause, still answers one
 * yes/no question about a value: inference through predicates is out of scope, see the README.)
 * Lengths, hashes, sums and ranks with arguments are not here: `length(repeat('x', ascii(ssn)))`
 * is the value's first character, an unkeyed hash of an SSN is reversed by enumeration.
 */
const REVEALS_NOTHING_WITHOUT_ARGUMENTS: ReadonlySet<string> = new Set(['count', 'row_number', 'rank', 'dense_rank', 'percent_rank', 'cume_dist']);
/** count(x) and num_nulls say how many values are null, never what they are. */
const COUNTS_NULLS: ReadonlySet<string> = new Set(['count', 'num_nulls', 'num_nonnulls']);
/** Of those, the ones that count rows: their result is as many as the rows (see Scope.rowSources). */
const COUNTS_ROWS: ReadonlySet<string> = new Set(['count', 'row_number', 'rank', 'dense_rank', 'percent_rank', 'cume_dist']);
/**
 * Built-in set-returning functions: in a select list they return as many rows as their arguments
 * say (`generate_series(1, split_part(ssn, '-', 3)::int)` is 5678 rows), so a count of those rows
 * is the value. A function off the catalogue may return a set too: it counts as one.
 */
export const SET_RETURNING: ReadonlySet<string> = new Set([
  'generate_series', 'generate_subscripts', 'unnest', 'regexp_matches', 'regexp_split_to_table', 'string_to_table',
  'json_array_elements', 'jsonb_array_elements', 'json_array_elements_text', 'jsonb_array_elements_text', 'json_each',
  'jsonb_each', 'json_each_text', 'jsonb_each_text', 'json_object_keys', 'jsonb_object_keys', 'jsonb_path_query',
  'jsonb_path_query_tz', 'json_populate_recordset', 'jsonb_populate_recordset', 'json_to_recordset', 'jsonb_to_recordset',
]);

/**
 * Binary operators of the built-in types whose result is a boolean. Prefix forms are not: `~x`
 * is a bitwise NOT, and `&&` is not here because `tsquery && tsquery` is a tsquery.
 */
const BOOLEAN_BINARY_OPERATORS: ReadonlySet<string> = new Set([
  '=', '<>', '!=', '<', '>', '<=', '>=',
  '~', '~*', '!~', '!~*', '~~', '~~*', '!~~', '!~~*',
]);
/** A_Expr kinds whose result is a boolean whatever the operands (IN, LIKE, BETWEEN, IS DISTINCT FROM, op ANY). */
const BOOLEAN_EXPR_KINDS: ReadonlySet<string> = new Set([
  'AEXPR_OP_ANY', 'AEXPR_OP_ALL', 'AEXPR_DISTINCT', 'AEXPR_NOT_DISTINCT', 'AEXPR_IN', 'AEXPR_LIKE', 'AEXPR_ILIKE',
  'AEXPR_SIMILAR', 'AEXPR_BETWEEN', 'AEXPR_NOT_BETWEEN', 'AEXPR_BETWEEN_SYM', 'AEXPR_NOT_BETWEEN_SYM',
]);

/** JSON members read by key carry a column of that name; by a key known only at run time, any column. */
export const memberSources = (keys: MemberKeys): Sources => (keys === undefined ? NONE : keys === 'unknown' ? ANY_COLUMN : keys.map((column) => ({ column })));

/** What an expression's lineage needs of the statement walk: subqueries and `rel.*`. */
export interface QueryWalk {
  select(node: Node, parent: Scope): Item[];
  starItems(qualifier: readonly string[], scope: Scope): Item[];
}

/**
 * The columns an expression's value carries: through functions, operators, casts, CASE results,
 * COALESCE and subqueries; anything the catalogue does not vouch for carries any column.
 */
export class ExpressionLineage {
  constructor(
    private readonly walk: QueryWalk,
    private readonly searchPath: readonly string[] | undefined,
    private readonly overloads: ReadonlySet<string> | undefined,
  ) {}

  /** An unqualified name the target overloads outside pg_catalog: the user's code may run instead. */
  private overloaded(parts: readonly string[]): boolean {
    return parts.length === 1 && this.overloads?.has(parts[0]!) === true;
  }

  /** The columns an expression's value carries. */
  expr(value: unknown, scope: Scope): Sources {
    if (Array.isArray(value)) return union(...value.map((item) => this.expr(item, scope)));
    const wrapped = unwrap(value);
    if (!wrapped) return isObject(value) ? this.generic(value, scope) : NONE;
    const [tag, node] = wrapped;
    switch (tag) {
      case 'ColumnRef':
        return this.columnRef(names(node.fields), list(node.fields), scope);
      case 'A_Const':
      case 'ParamRef':
      case 'SQLValueFunction':
      case 'BoolExpr':
      case 'NullTest':
      case 'BooleanTest':
      case 'GroupingFunc':
      case 'SetToDefault':
        return NONE;
      case 'CollateClause':
        return this.expr(node.arg, scope);
      case 'TypeCast': {
        // A cast to a type outside pg_catalog may run a user's cast or input function.
        const type = names((node.typeName as Node | undefined)?.names);
        const builtin = type.length === 0 || isBuiltinType(type, this.searchPath);
        return builtin ? this.expr(node.arg, scope) : union(this.expr(node.arg, scope), ANY_COLUMN);
      }
      case 'FuncCall':
        return this.funcCall(node, scope);
      case 'A_Expr':
        return this.operator(node, scope);
      case 'CaseExpr':
        // WHEN conditions choose a branch; the results are what comes back.
        return union(
          ...list(node.args).map((when) => this.expr((when as { CaseWhen?: Node }).CaseWhen?.result, scope)),
          this.expr(node.defresult, scope),
        );
      case 'CoalesceExpr':
      case 'MinMaxExpr':
      case 'RowExpr':
      case 'XmlExpr':
        return union(this.expr(node.args, scope), this.expr(node.named_args, scope));
      case 'A_ArrayExpr':
        return this.expr(node.elements, scope);
      case 'A_Indirection':
        return this.indirection(node, scope);
      case 'SubLink': {
        const type = str(node.subLinkType);
        if (type !== 'EXPR_SUBLINK' && type !== 'ARRAY_SUBLINK' && type !== 'MULTIEXPR_SUBLINK') return NONE;
        const query = unwrap(node.subselect);
        if (query?.[0] !== 'SelectStmt') return NONE;
        return allSources(this.walk.select(query[1], scope));
      }
      default:
        return this.generic(node, scope);
    }
  }

  /**
   * A function's result carries its arguments (FILTER, ORDER BY within the aggregate and OVER
   * choose rows and are not returned), and any column at all when the function is not a pure
   * built-in: it may read tables by itself.
   */
  private funcCall(node: Node, scope: Scope): Sources {
    const parts = names(node.funcname);
    // The parser's grammar is newer than the server's: PostgreSQL 15 has no SYSTEM_USER keyword,
    // so there the bare word is a column (`FROM people AS p(a, b, "system_user")`). Both count.
    if (isPostgres15Identifier(node, parts)) return union(scope.column(SYSTEM_USER), this.expr(node.args, scope));
    const overloaded = this.overloaded(parts);
    const pure = !overloaded && isPureFunction(parts, this.searchPath);
    const name = parts.at(-1) ?? '';
    const args = list(node.args);
    // A count of rows, or a row's position, is as many as the rows: what generated them is carried.
    const rows = COUNTS_ROWS.has(name) ? union(...scope.rowSources) : NONE;
    if (pure && (node.agg_star === true || args.length === 0) && REVEALS_NOTHING_WITHOUT_ARGUMENTS.has(name)) return rows;
    if (pure && COUNTS_NULLS.has(name) && node.agg_within_group !== true) return rows;
    // An ordered-set aggregate returns a value of its WITHIN GROUP ordering: mode() and
    // percentile_disc(0.5) WITHIN GROUP (ORDER BY ssn) are an SSN.
    const ordered = node.agg_within_group === true ? this.expr(node.agg_order, scope) : NONE;
    const carried = union(this.expr(args, scope), ordered, memberSources(functionMemberKeys(parts, args)));
    if (pure) return carried;
    // Catalog look-ups (format_type, pg_get_viewdef) read definitions, never a user table's rows.
    return !overloaded && isCataloguedFunction(parts, this.searchPath) ? carried : union(carried, ANY_COLUMN);
  }

  /** Operators: a boolean comparison reveals nothing of its operands; anything else carries them. */
  private operator(node: Node, scope: Scope): Sources {
    const kind = str(node.kind) ?? '';
    const operator = names(node.name);
    // A user's overload returns what its function does, boolean or not.
    const run = kind.includes('BETWEEN') ? [['>='], ['<=']] : [operator];
    if (run.some((op) => this.overloaded(op))) return union(this.expr(node.lexpr, scope), this.expr(node.rexpr, scope), ANY_COLUMN);
    if (kind === 'AEXPR_NULLIF') return this.expr(node.lexpr, scope);
    if (BOOLEAN_EXPR_KINDS.has(kind)) return NONE;
    const builtin = isBuiltinOperator(operator, this.searchPath);
    const binary = node.lexpr !== undefined && node.rexpr !== undefined;
    if (kind === 'AEXPR_OP' && builtin && binary && BOOLEAN_BINARY_OPERATORS.has(operator.at(-1)!)) return NONE;
    const carried = union(this.expr(node.lexpr, scope), this.expr(node.rexpr, scope), memberSources(operatorMemberKeys(node)));
    return builtin ? carried : union(carried, ANY_COLUMN);
  }

  /** Any other node: everything its sub-expressions carry (a wider answer is the safe one). */
  generic(node: Node, scope: Scope): Sources {
    const parts: Sources[] = [];
    for (const key in node) {
      const value = node[key];
      if (isObject(value)) parts.push(this.expr(value, scope));
    }
    return union(...parts);
  }

  private columnRef(parts: readonly string[], fields: readonly unknown[], scope: Scope): Sources {
    const last = fields.at(-1);
    if (isObject(last) && 'A_Star' in last) {
      // `rel.*` inside an expression (row_to_json(p.*)): whatever its named columns carry.
      const qualifier = parts.slice(0, -1);
      return allSources(this.walk.starItems(qualifier, scope));
    }
    const column = parts.at(-1) ?? '';
    if (parts.length === 1) {
      // A bare name may also be a whole-row reference to a relation (SELECT p FROM people p).
      // PostgreSQL tries a column first; where a table may have it we cannot tell, so both count.
      const relation = scope.relation(column);
      return relation ? union(scope.column(column), allSources(relation.items())) : scope.column(column);
    }
    const relation = scope.relation(parts.at(-2)!);
    // A qualifier or column the walk cannot place: fail closed, as for a bare name.
    const named = relation?.column(column) ?? ANY_COLUMN;
    // `p.concat` is concat(p) unless people has a column named concat: the whole row.
    return relation && mayBeRowFunction(column) ? union(named, allSources(relation.items())) : named;
  }

  /** `(p).ssn`, `(rec).field`, `arr[1]`: field selection names a column; subscripts keep the value. */
  private indirection(node: Node, scope: Scope): Sources {
    const first = list(node.indirection)[0];
    const field = str((first as { String?: { sval?: unknown } } | undefined)?.String?.sval);
    const arg = (node.arg as { ColumnRef?: Node } | undefined)?.ColumnRef;
    if (field && arg) {
      const parts = names(arg.fields);
      const relation = parts.length === 1 ? scope.relation(parts[0]!) : undefined;
      if (relation && mayBeRowFunction(field)) return union(relation.column(field) ?? ANY_COLUMN, allSources(relation.items()));
      if (relation) return relation.column(field) ?? ANY_COLUMN;
    }
    return union(this.expr(node.arg, scope), memberSources(subscriptMemberKeys(list(node.indirection))));
  }
}
