import { GUARDED_SETTINGS } from './functions.js';

/**
 * Settings that change how the server tokenises SQL text. The classifier parses with
 * libpg-query's defaults (standard_conforming_strings on, backslash_quote safe_encoding, UTF-8):
 * once the server lexes differently, `'x\''; DELETE …` is one string to the classifier and a
 * DELETE to the server. Changing them is never an agent's business.
 * @see https://www.postgresql.org/docs/current/runtime-config-compatible.html
 */
const LEXER_SETTINGS: ReadonlySet<string> = new Set(['standard_conforming_strings', 'backslash_quote']);

/**
 * Client encodings the proxy reads text in. Anything else is refused: in SJIS, BIG5, GBK,
 * GB18030, UHC or JOHAB an ASCII byte such as `\` can be the trail byte of a multi-byte
 * character, so the server and the classifier would split the same bytes differently.
 */
const READABLE_ENCODINGS: ReadonlySet<string> = new Set(['utf8', 'unicode']);

/** PostgreSQL's encoding-name lookup ignores case and punctuation (`UTF-8` = `utf8`). */
const encodingKey = (name: string): string => name.toLowerCase().replace(/[^a-z0-9]/g, '');

/**
 * Why changing `name` (to `value`, when known as a constant) is an admin act, or undefined when
 * it is not. `value` undefined means unknown (RESET, DEFAULT, an expression): treated as unsafe
 * for the settings whose value matters.
 */
export const guardedSettingReason = (name: string, value: string | undefined): string | undefined => {
  const setting = name.toLowerCase();
  if (GUARDED_SETTINGS.has(setting)) return `${setting} changes the session's identity or read-only mode`;
  if (LEXER_SETTINGS.has(setting)) return `${setting} changes how the server reads string literals`;
  if (setting === 'client_encoding' && (value === undefined || !READABLE_ENCODINGS.has(encodingKey(value)))) {
    return 'client_encoding other than UTF8 changes how the server splits the text into characters';
  }
  return undefined;
};
