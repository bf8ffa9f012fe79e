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
