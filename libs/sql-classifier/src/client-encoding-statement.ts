import { pgCatalogSearchedFirst } from './catalogue.js';
import { isObject, list, names, walkTree, type Node } from './parse-tree.js';
import { constantText } from './statement-parts.js';
import { parsedOrUndefined } from './statement-shape.js';

/**
 * A statement's effect on client_encoding: `set` with the encoding named (`SET client_encoding`,
 * `SET NAMES`), `reset` back to the session's startup value (`RESET client_encoding`, `SET … TO
 * DEFAULT`, `RESET ALL`, `DISCARD ALL`). `local`: SET LOCAL, which ends with the transaction.
 * @see https://www.postgresql.org/docs/current/sql-set.html
 */
export type ClientEncodingEffect =
  | { readonly change: 'set'; readonly encoding: string; readonly local: boolean }
  | { readonly change: 'reset'; readonly local: boolean }
  /** A value that is not one constant (a list): the server refuses it. */
  | { readonly change: 'unknown'; readonly local: boolean };

/** The effect on client_encoding of one parsed statement (`{ VariableSetStmt: … }`), or undefined. */
export const changesClientEncoding = (stmt: Record<string, unknown>): ClientEncodingEffect | undefined => {
  const discard = stmt.DiscardStmt as { target?: string } | undefined;
  if (discard?.target === 'DISCARD_ALL') return { change: 'reset', local: false };
  const set = stmt.VariableSetStmt as { kind?: string; name?: string; args?: unknown[]; is_local?: boolean } | undefined;
  if (!set) return undefined;
  const local = set.is_local === true;
  if (set.kind === 'VAR_RESET_ALL') return { change: 'reset', local };
  if ((set.name ?? '').toLowerCase() !== 'client_encoding') return undefined;
  if (set.kind === 'VAR_RESET' || set.kind === 'VAR_SET_DEFAULT') return { change: 'reset', local };
  const args = Array.isArray(set.args) ? set.args : [];
  const encoding = args.length === 1 ? constantText(args[0]) : undefined;
  return encoding === undefined ? { change: 'unknown', local } : { change: 'set', encoding, local };
};

/**
 * What a text does to client_encoding: the effect of each of its statements that touches it, in
 * order, and whether the text has other statements too; undefined when none does (or it does not
 * parse). Every effect counts: `RESET client_encoding; SET NAMES 'LATIN1'` ends in LATIN1 however
 * harmless its first statement is.
 */
export const clientEncodingStatement = (text: string): { readonly effects: readonly ClientEncodingEffect[]; readonly alone: boolean } | undefined => {
  const tree = parsedOrUndefined(text);
  if (!tree) return undefined;
  const statements = tree.stmts ?? [];
  const effects = statements.map((raw) => changesClientEncoding(raw.stmt ?? {})).filter((effect) => effect !== undefined);
  return effects.length > 0 ? { effects, alone: statements.length === 1 } : undefined;
};

/**
 * A text that is one `SHOW client_encoding` (`setting`) or one `SHOW ALL` (`all`), else undefined.
 * The target session stays in UTF8 while the proxy converts for the agent, so the proxy puts the
 * agent's own encoding in such a result, as the server reports the session's.
 */
export const showsClientEncoding = (text: string): 'setting' | 'all' | undefined => {
  if (!/show/i.test(text)) return undefined;
  const tree = parsedOrUndefined(text);
  if (!tree) return undefined;
  const statements = tree.stmts ?? [];
  if (statements.length !== 1) return undefined;
  const show = statements[0]!.stmt?.VariableShowStmt as { name?: string } | undefined;
  const name = (show?.name ?? '').toLowerCase();
  return name === 'client_encoding' ? 'setting' : name === 'all' ? 'all' : undefined;
};

/**
 * Where a text's result reports client_encoding, so the proxy can put the agent's encoding there
 * (the target session stays in UTF8): `show` for one SHOW client_encoding / SHOW ALL;
 * `currentSetting`, the output columns of one SELECT that are `current_setting('client_encoding')`
 * itself (pg_catalog's, with or without missing_ok); `settings` when the SELECT reads
 * pg_catalog.pg_settings and nothing else (`onlyClientEncoding`: its WHERE keeps that row alone).
 * Undefined when the text reports it nowhere the proxy can tell; a value computed from it
 * (`lower(current_setting(…))`) keeps the target's UTF8.
 */
export interface ClientEncodingReport {
  readonly show?: 'setting' | 'all';
  readonly currentSetting?: readonly number[];
  readonly settings?: { readonly onlyClientEncoding: boolean };
}

const CLIENT_ENCODING = 'client_encoding';

/** `current_setting('client_encoding'[, missing_ok])` resolving to pg_catalog's function. */
const isClientEncodingSetting = (node: unknown, searchPath: readonly string[] | undefined): boolean => {
  const call = isObject(node) && isObject(node.FuncCall) ? node.FuncCall : undefined;
  if (!call) return false;
  const name = names(call.funcname);
  const builtin = name.length === 2 ? name[0] === 'pg_catalog' && name[1] === 'current_setting' : name.length === 1 && name[0] === 'current_setting' && pgCatalogSearchedFirst(searchPath);
  const args = list(call.args);
  return builtin && args.length >= 1 && args.length <= 2 && constantText(args[0])?.toLowerCase() === CLIENT_ENCODING && call.agg_star !== true && call.over === undefined;
};

/** The one relation a SELECT reads, when that is pg_catalog's pg_settings (pg_catalog searched first for an unqualified name). */
const readsOnlySettings = (select: Node, searchPath: readonly string[] | undefined): boolean => {
  const ranges: Node[] = [];
  let other = false;
  walkTree(select, (tag, node) => {
    if (tag === 'RangeVar') ranges.push(node);
    else if (tag === 'RangeFunction' || tag === 'RangeSubselect' || tag === 'SubLink' || tag === 'CommonTableExpr' || tag === 'RangeTableFunc') other = true;
    return true;
  });
  if (other || ranges.length !== 1) return false;
  const range = ranges[0]!;
  if (range.relname !== 'pg_settings') return false;
  // Relations are searched in pg_temp before pg_catalog unless the path says otherwise.
  return range.schemaname === 'pg_catalog' || (range.schemaname === undefined && (searchPath ?? [])[0] === 'pg_catalog');
};

/** A WHERE with a top-level conjunct `name = 'client_encoding'`. */
const keepsOnlyClientEncoding = (where: unknown): boolean => {
  if (!isObject(where)) return false;
  const bool = isObject(where.BoolExpr) ? where.BoolExpr : undefined;
  if (bool) return bool.boolop === 'AND_EXPR' && list(bool.args).some(keepsOnlyClientEncoding);
  const expr = isObject(where.A_Expr) ? where.A_Expr : undefined;
  if (!expr || expr.kind !== 'AEXPR_OP' || names(expr.name).join('.') !== '=') return false;
  const column = (side: unknown): string | undefined => {
    const ref = isObject(side) && isObject(side.ColumnRef) ? side.ColumnRef : undefined;
    const fields = ref ? names(ref.fields) : [];
    return fields.at(-1);
  };
  const sides: [unknown, unknown][] = [[expr.lexpr, expr.rexpr], [expr.rexpr, expr.lexpr]];
  return sides.some(([a, b]) => column(a) === 'name' && constantText(b) === CLIENT_ENCODING);
};

export const clientEncodingReport = (text: string, searchPath: readonly string[] | undefined): ClientEncodingReport | undefined => {
  if (!/show|client_encoding|pg_settings/i.test(text)) return undefined;
  const show = showsClientEncoding(text);
  if (show) return { show };
  const tree = parsedOrUndefined(text);
  const statements = tree?.stmts ?? [];
  if (statements.length !== 1) return undefined;
  const select = statements[0]!.stmt?.SelectStmt as Node | undefined;
  // One plain SELECT: no set operation, whose columns would mix.
  if (!select || select.op !== undefined && select.op !== 'SETOP_NONE') return undefined;
  const targets = list(select.targetList).map((item) => (isObject(item) && isObject(item.ResTarget) ? item.ResTarget.val : undefined));
  // A * stands for columns the text does not list: positions after it are not known.
  const starred = targets.some((value) => isObject(value) && isObject(value.ColumnRef) && list(value.ColumnRef.fields).some((field) => isObject(field) && 'A_Star' in field));
  const currentSetting = starred ? [] : targets.flatMap((value, index) => (isClientEncodingSetting(value, searchPath) ? [index] : []));
  const settings = readsOnlySettings(select, searchPath) ? { onlyClientEncoding: keepsOnlyClientEncoding(select.whereClause) } : undefined;
  if (currentSetting.length === 0 && !settings) return undefined;
  return { ...(currentSetting.length > 0 ? { currentSetting } : {}), ...(settings ? { settings } : {}) };
};
