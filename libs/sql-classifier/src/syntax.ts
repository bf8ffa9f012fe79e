import { parseSync } from 'libpg-query';
import { isSqlClassifierLoaded } from './classify.js';

/** A syntax error as PostgreSQL reports it: its message, and the 1-based character position it points at. */
export interface SqlSyntaxError {
  readonly message: string;
  readonly position: number | undefined;
}

/**
 * The error PostgreSQL's own parser gives for a text, or undefined when it parses (or the parser
 * is not loaded). The parser is the server's grammar, so the message is the one the server would
 * send for the same text.
 * @see https://www.postgresql.org/docs/current/protocol-error-fields.html (field P)
 */
export const sqlSyntaxError = (text: string): SqlSyntaxError | undefined => {
  if (!isSqlClassifierLoaded() || text.trim() === '') return undefined;
  try {
    parseSync(text);
    return undefined;
  } catch (error) {
    const details = (error as { sqlDetails?: { message?: string; cursorPosition?: number } }).sqlDetails;
    const message = details?.message ?? (error instanceof Error ? error.message : undefined);
    if (!message) return undefined;
    // libpg_query counts from 0; the protocol's Position field counts characters from 1.
    const position = typeof details?.cursorPosition === 'number' ? details.cursorPosition + 1 : undefined;
    return { message, position };
  }
};
