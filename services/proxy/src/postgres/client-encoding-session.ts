/**
 * A session's client_encoding as the agent sees it. The target session stays in UTF8 (or SQL_ASCII,
 * which passes bytes through unconverted over a UTF8 database); the agent's own encoding is the
 * proxy's to convert, so a statement that sets or resets client_encoding is handled here: it
 * reaches the target rewritten to keep UTF8, and the conversion switches once it has completed
 * (its CommandComplete), as the server's does, with the ParameterStatus the server would send.
 * @see https://www.postgresql.org/docs/current/multibyte.html#MULTIBYTE-AUTOMATIC-CONVERSION
 */
import { decodeDataRow, encodeDataRow, encodeParameterStatus } from '@sluice/codec-pg';
import { clientEncodingStatement, showsClientEncoding, type ClientEncodingEffect } from '@sluice/sql-classifier';
import { ClientEncoding, EncodingConversionError, pgEncodingName } from './client-encoding.js';
import type { Command } from './expectations.js';

/** The encoding the agent gets after a statement completes: undefined conversion for UTF8 and SQL_ASCII. */
export interface EncodingSwitch {
  readonly encoding: ClientEncoding | undefined;
  /** The name the server reports (ParameterStatus client_encoding). */
  readonly name: string;
}

/** How a statement that touches client_encoding goes: the text the target gets, and the switch at its completion. */
export interface EncodingPlan {
  /** The text sent upstream in place of the agent's; undefined: the agent's own. */
  readonly upstreamText: string | undefined;
  readonly switchTo: EncodingSwitch | undefined;
}

/** A statement the proxy answers with an error of the server's kind instead of running it. */
export interface EncodingRefusal {
  readonly code: string;
  readonly message: string;
}

const UNCONVERTED: ReadonlySet<string> = new Set(['UTF8', 'SQL_ASCII']);

/** The switch to the encoding an agent named (throws the server's 22023, or 0A000 for one the proxy cannot convert). */
export const encodingSwitch = (requested: string): EncodingSwitch => {
  const encoding = ClientEncoding.named(requested);
  return { encoding, name: encoding?.name ?? pgEncodingName(requested)! };
};

export class SessionClientEncoding {
  readonly #startup: EncodingSwitch;
  readonly #serverEncoding: string | undefined;
  /** The client_encoding the agent was last told of. */
  reported: string;

  constructor(startup: EncodingSwitch, serverEncoding: string | undefined) {
    this.#startup = startup;
    this.#serverEncoding = serverEncoding;
    this.reported = startup.name;
  }

  get startup(): EncodingSwitch {
    return this.#startup;
  }

  /**
   * The plan for a simple query that sets or resets client_encoding, or a refusal: the change must
   * come alone, outside a transaction block (the proxy does not undo it at a rollback as the server
   * would), and name an encoding the proxy converts.
   */
  plan(text: string, inTransaction: boolean): EncodingPlan | EncodingRefusal | undefined {
    const statement = clientEncodingStatement(text);
    if (!statement) return undefined;
    const { effects, alone } = statement;
    if (!alone) {
      // The target runs every statement of the text: none may leave UTF8 or change what the agent
      // was told, not even between two that undo each other (the rows in between would be misread).
      const changing = effects.some((effect) => {
        if (effect.change === 'unknown') return true;
        const target = this.#target(effect);
        return 'code' in target || target.name !== this.reported || (effect.change === 'set' && !UNCONVERTED.has(target.name));
      });
      if (changing) return { code: '0A000', message: 'client_encoding can be changed through sluice only by a statement sent on its own' };
    }
    const effect = effects[0]!;
    if (effect.change === 'unknown') return undefined;
    const target = this.#target(effect);
    if ('code' in target) return target;
    // A named converted encoding never reaches the target: it keeps UTF8, the proxy converts.
    const upstreamText = effect.change === 'set' && !UNCONVERTED.has(target.name) ? `SET ${effect.local ? 'LOCAL ' : ''}client_encoding TO 'UTF8'` : undefined;
    const changes = target.name !== this.reported;
    if (inTransaction && changes) {
      return { code: '0A000', message: 'client_encoding cannot be changed through sluice inside a transaction block' };
    }
    // SET LOCAL outside a transaction block changes nothing (the server warns).
    return { upstreamText, switchTo: effect.local ? undefined : target };
  }

  /** The encoding one SET or RESET leaves in force, or the refusal of an encoding the proxy does not convert. */
  #target(effect: Exclude<ClientEncodingEffect, { change: 'unknown' }>): EncodingSwitch | EncodingRefusal {
    let target: EncodingSwitch;
    if (effect.change === 'reset') target = this.#startup;
    else {
      try {
        target = encodingSwitch(effect.encoding);
      } catch (error) {
        if (error instanceof EncodingConversionError) return { code: error.sqlstate, message: error.message };
        throw error;
      }
    }
    if (target.name === 'SQL_ASCII' && this.#serverEncoding !== undefined && pgEncodingName(this.#serverEncoding) !== 'UTF8') {
      return { code: '0A000', message: `client_encoding SQL_ASCII is not supported through sluice over a ${this.#serverEncoding} database: name the client's encoding` };
    }
    return target;
  }

  /**
   * A refusal for an extended-protocol statement that would change client_encoding (only a simple
   * query is carried out); undefined when it changes nothing (RESET ALL back to the same encoding).
   */
  extendedRefusal(text: string, inTransaction: boolean): EncodingRefusal | undefined {
    const plan = this.plan(text, inTransaction);
    if (!plan || 'code' in plan) return plan;
    if (plan.upstreamText === undefined && (plan.switchTo === undefined || plan.switchTo.name === this.reported)) return undefined;
    return { code: '0A000', message: 'client_encoding can be changed through sluice only by a simple query' };
  }

  /** The ParameterStatus the agent gets when the switch changes what it was told, else undefined. */
  switched(to: EncodingSwitch): Buffer | undefined {
    if (to.name === this.reported) return undefined;
    this.reported = to.name;
    return encodeParameterStatus('client_encoding', to.name);
  }
}

/**
 * A DataRow (UTF-8, as the target sent it) of `SHOW client_encoding` or of `SHOW ALL`'s
 * client_encoding row, given the agent's encoding as the server would report it for the agent's
 * session; any other row as it came. The target's own setting is the proxy's UTF8.
 */
export const showingClientEncoding = (head: { readonly command: Command }, row: Buffer, encodingName: string): Buffer => {
  const command = head.command;
  command.showsEncoding ??= showsClientEncoding(command.sql) ?? null;
  if (!command.showsEncoding) return row;
  const values = decodeDataRow(row.subarray(5));
  if (command.showsEncoding === 'setting' && values.length === 1 && values[0] !== null) return encodeDataRow([encodingName]);
  if (command.showsEncoding === 'all' && values.length >= 2 && values[0]?.toString() === 'client_encoding') {
    return encodeDataRow(values.map((value, i) => (i === 1 ? encodingName : value)));
  }
  return row;
};
