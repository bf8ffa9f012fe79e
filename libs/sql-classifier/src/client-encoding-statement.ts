import { constantText } from './statement-parts.js';
import { parseText } from './statement-shape.js';

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
 * What a text does to client_encoding: its one statement's effect and whether the text has other
 * statements too; undefined when no statement of it touches client_encoding (or it does not parse).
 */
export const clientEncodingStatement = (text: string): { readonly effect: ClientEncodingEffect; readonly alone: boolean } | undefined => {
  let tree: { stmts?: { stmt?: Record<string, unknown> }[] };
  try {
    tree = parseText(text);
  } catch {
    return undefined;
  }
  const statements = tree.stmts ?? [];
  for (const raw of statements) {
    const effect = changesClientEncoding(raw.stmt ?? {});
    if (effect) return { effect, alone: statements.length === 1 };
  }
  return undefined;
};
