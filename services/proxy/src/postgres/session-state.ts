import { FrontendCode } from '@sluice/codec-pg';
import { isReadableClientEncoding, isSqlClassifierLoaded, pgCatalogSearchedFirst, sessionStateEffects, type SessionStateEffects } from '@sluice/sql-classifier';
import { StatementAnswers, UNKNOWN } from './statement-answers.js';

/*
 * The parts of a PostgreSQL session's state that the proxy reads from the server rather than
 * from the agent's text: the effective search_path and the settings that decide how the server
 * tokenises SQL.
 */

/**
 * The search path as the server resolves it, one schema a row in search order: `$user` only
 * where that schema exists, schemas the session may not use left out, implicit pg_catalog and
 * pg_temp included where they are searched.
 * @see https://www.postgresql.org/docs/current/functions-info.html#FUNCTIONS-INFO-SESSION-TABLE
 */
export const SEARCH_PATH_QUERY = 'select s from pg_catalog.unnest(pg_catalog.current_schemas(true)) with ordinality as t(s, n) order by n';

/**
 * The first read of search_path, before the client's first command, runs without the client's
 * statement_timeout: a driver may ask for a few milliseconds at startup (node-postgres's suite asks
 * for 10), which the first query of a fresh backend does not always meet, and the session would be
 * refused. RESET then gives the session back the value its startup packet (or role) set. The SET
 * itself runs under the client's timeout (PostgreSQL times each statement of a Query), so a
 * cancelled start query is sent again (connectUpstream).
 */
export const SESSION_START_QUERY = `set statement_timeout = 0; ${SEARCH_PATH_QUERY}; reset statement_timeout`;

export const schemasOf = (rows: readonly (readonly (string | null)[])[]): string[] =>
  rows.flatMap((row) => (typeof row[0] === 'string' ? [row[0]] : []));

/**
 * Why a parameter the server reports makes the session unreadable to the proxy, or undefined.
 * The classifier lexes with standard_conforming_strings on and reads UTF-8; once the server
 * does otherwise, the same bytes mean different statements to the two.
 */
export const unreadableParameter = (name: string, value: string, serverEncoding: string | undefined): string | undefined => {
  const key = name.toLowerCase();
  if (key === 'standard_conforming_strings' && value.toLowerCase() !== 'on') return 'standard_conforming_strings is off on the target';
  if (key === 'client_encoding' && !isReadableClientEncoding(value, serverEncoding ?? '')) {
    return `client_encoding ${value} is not supported through sluice (UTF8, or SQL_ASCII over a UTF8 database)`;
  }
  return undefined;
};

/** Flush: asks the server to send what it has buffered (harmless anywhere, ignored during COPY IN). */
export const FLUSH = Buffer.from([FrontendCode.Flush, 0, 0, 0, 4]);
/** Sync: ends an extended-protocol sequence; the server answers ReadyForQuery. */
export const SYNC = Buffer.from([FrontendCode.Sync, 0, 0, 0, 4]);

/** Statement texts whose session effects a session keeps; agents repeat a small set of statements. */
const MAX_EFFECTS_ENTRIES = 256;

/**
 * What each text may do to the session state, parsed once per text (tens of microseconds), not per
 * decision. The effects never read a constant (statement kinds, names, whether a function is
 * called), so texts that differ only in constants share one answer: it is kept under the text's
 * shape, and a new literal in every statement costs no parse. Given the search path the command
 * runs under, a call of a built-in function without arguments does not count as changing it.
 */
export class SessionEffectsCache {
  readonly #answers = new StatementAnswers<SessionStateEffects>(MAX_EFFECTS_ENTRIES, false);
  // A command's text is asked about several times in a row (intake, decision, command, search_path).
  #lastText: string | undefined;
  #lastPath = '';
  #lastEffects: SessionStateEffects | undefined;
  #keyedPath: readonly string[] | undefined;
  #keyedPathKey = '';

  of(text: string, searchPath?: readonly string[]): SessionStateEffects {
    const path = this.#pathKey(searchPath);
    if (text === this.#lastText && path === this.#lastPath) return this.#lastEffects!;
    const known = this.#answers.get(path, text);
    if (known !== UNKNOWN) return this.#remember(text, path, known);
    const effects = sessionStateEffects(text, searchPath);
    // Before the parser is loaded every text counts as changing everything: not worth keeping.
    if (!isSqlClassifierLoaded()) return effects;
    this.#answers.set(path, text, effects);
    return this.#remember(text, path, effects);
  }

  /** Only whether pg_catalog is searched first changes the answer; a path read from the server is one array until the next read. */
  #pathKey(searchPath: readonly string[] | undefined): string {
    if (searchPath === undefined) return '\u0003';
    if (searchPath !== this.#keyedPath) {
      this.#keyedPath = searchPath;
      this.#keyedPathKey = pgCatalogSearchedFirst(searchPath) ? '\u0001' : '\u0002';
    }
    return this.#keyedPathKey;
  }

  #remember(text: string, path: string, effects: SessionStateEffects): SessionStateEffects {
    this.#lastText = text;
    this.#lastPath = path;
    this.#lastEffects = effects;
    return effects;
  }
}
