import type { IncomingHttpHeaders } from 'node:http';
import { boundJustification, MAX_JUSTIFICATION_CHARS } from '@sluice/contracts';

/**
 * How an agent says why it needs a command that is held for approval, per protocol (README,
 * "Approvals"). Each reader only looks at text the agent sent anyway; none changes the command,
 * its hash or its decision. The adapters call these with one line each; `shownJustification`
 * bounds and masks what they found before it goes to the approval service.
 *
 * - PostgreSQL: a leading block comment `/* justification: … *\/` (other leading comments may
 *   come before it). A comment is sent to the server as part of the statement by every client,
 *   psql included, and PostgreSQL ignores it.
 * - HTTP: the request header `Sluice-Justification` (UTF-8, percent-encoded where not ASCII);
 *   Sluice owns it and does not forward it.
 * - Redis: `ECHO "justification: …"` sent on the same connection before the held command. Redis
 *   has no comments, and ECHO is harmless: the agent gets its text back. It applies to the next
 *   command held on that connection only.
 */

const LABEL = /^\s*justification\s*:/i;

/**
 * How much of a justification is masked: its beginning only (masking a 12 MB text would hold every
 * session), four times what is shown, so a value split where this cut falls stays out of view
 * unless masking shortened the text before it that much.
 */
const MASKED_PREFIX_CHARS = MAX_JUSTIFICATION_CHARS * 4;

/** The justification label's text, or undefined when `text` does not start with the label. */
const labelled = (text: string): string | undefined => {
  const match = LABEL.exec(text);
  return match ? text.slice(match[0].length) : undefined;
};

/**
 * The end of a PostgreSQL block comment opened at `start` (index after its `*\/`), or -1 when it
 * is not closed. PostgreSQL's block comments nest.
 */
const blockCommentEnd = (sql: string, start: number): number => {
  let depth = 0;
  for (let index = start; index < sql.length - 1; index += 1) {
    const pair = sql.slice(index, index + 2);
    if (pair === '/*') {
      depth += 1;
      index += 1;
    } else if (pair === '*/') {
      depth -= 1;
      index += 1;
      if (depth === 0) return index + 1;
    }
  }
  return -1;
};

/** PostgreSQL: the text of the first `/* justification: … *\/` among the comments that lead the statement. */
export const sqlJustification = (sql: string): string | undefined => {
  let index = 0;
  // The statement's own text is never read: only comments before its first token.
  for (;;) {
    while (index < sql.length && /\s/.test(sql[index]!)) index += 1;
    if (sql.startsWith('--', index)) {
      const newline = sql.indexOf('\n', index);
      if (newline === -1) return undefined;
      index = newline + 1;
      continue;
    }
    if (!sql.startsWith('/*', index)) return undefined;
    const end = blockCommentEnd(sql, index);
    if (end === -1) return undefined;
    const text = labelled(sql.slice(index + 2, end - 2));
    if (text !== undefined) return text;
    index = end;
  }
};

export const JUSTIFICATION_HEADER = 'sluice-justification';

/** HTTP: the `Sluice-Justification` header, percent-decoded when it is valid percent-encoding. */
export const httpJustification = (headers: IncomingHttpHeaders): string | undefined => {
  const value = headers[JUSTIFICATION_HEADER];
  const raw = Array.isArray(value) ? value.join(' ') : value;
  if (raw === undefined) return undefined;
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
};

/** Redis: the text of `ECHO "justification: …"`, given the command's arguments (name first). */
export const redisJustification = (args: readonly Buffer[]): string | undefined => {
  if (args.length !== 2 || args[0]!.toString('latin1').toUpperCase() !== 'ECHO') return undefined;
  // Only the start is read (at most 4 UTF-8 bytes a character): the bound cuts the rest anyway.
  return labelled(args[1]!.subarray(0, MASKED_PREFIX_CHARS * 4 + 64).toString('utf8'));
};

/**
 * What approvers see: made one line, masked with the command's masking profile as the command text
 * is, then cut to the bound. Masked before the cut: a value the cut splits (a card number short of
 * its last digits, an e-mail short of its domain) no longer matches its detector and would be
 * shown as it is. When masking fails the justification is left out (fail closed), the approval
 * goes ahead.
 */
export const shownJustification = (raw: string | undefined, mask: (text: string) => string): string | undefined => {
  const line = boundJustification(raw?.slice(0, MASKED_PREFIX_CHARS * 2), MASKED_PREFIX_CHARS);
  if (line === undefined) return undefined;
  try {
    return boundJustification(mask(line));
  } catch {
    return undefined;
  }
};

/**
 * Redis: the last `ECHO "justification: …"` of a session, until the next held command takes it.
 * Tied to the session it was sent in, so an AUTH that switches identity does not carry it over.
 */
export class PendingJustification {
  #text: string | undefined;
  #session: object | undefined;

  note(session: object, args: readonly Buffer[]): void {
    const text = redisJustification(args);
    if (text === undefined) return;
    this.#text = text;
    this.#session = session;
  }

  take(session: object): string | undefined {
    const text = this.#session === session ? this.#text : undefined;
    this.#text = undefined;
    this.#session = undefined;
    return text;
  }
}
