/**
 * A session's client_encoding as the agent sees it. The target session stays in UTF8 (or SQL_ASCII,
 * which passes bytes through unconverted over a UTF8 database); the agent's own encoding is the
 * proxy's to convert, so a statement that sets or resets client_encoding is handled here: it
 * reaches the target rewritten to keep UTF8, and the conversion switches once it has completed
 * (its CommandComplete), as the server's does, with the ParameterStatus the server would send.
 * @see https://www.postgresql.org/docs/current/multibyte.html#MULTIBYTE-AUTOMATIC-CONVERSION
 */
import { decodeDataRow, encodeDataRow, encodeParameterStatus, type FieldDescription } from '@sluice/codec-pg';
import { clientEncodingReport, clientEncodingStatement, type ClientEncodingEffect } from '@sluice/sql-classifier';
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

/** The client_encoding the target session runs in whenever the proxy converts for the agent. */
const TARGET_ENCODING = 'UTF8';

/** pg_settings' columns by attribute number (the same in every PostgreSQL since 9.5). */
const SETTINGS_NAME = 1;
const SETTINGS_SETTING = 2;
const SETTINGS_RESET_VAL = 14;

/** What the agent's session reports as its client_encoding: now, and at its start (RESET's value). */
export interface ReportedEncoding {
  readonly current: string;
  readonly startup: string;
}

/**
 * A DataRow (UTF-8, as the target sent it) with the agent's encoding wherever the server would
 * report it for the agent's session and the target reported its own UTF8: `SHOW client_encoding`,
 * `SHOW ALL`'s row, a `current_setting('client_encoding')` column, pg_settings' client_encoding
 * row (setting, and reset_val as the session started). Any other row as it came. Only a value
 * that is the target's own UTF8 is replaced, so a masked value stays masked.
 */
export const reportingClientEncoding = (head: { readonly command: Command }, fields: readonly FieldDescription[], row: Buffer, encoding: ReportedEncoding): Buffer => {
  const command = head.command;
  command.encodingReport ??= clientEncodingReport(command.sql, command.searchPath) ?? null;
  const report = command.encodingReport;
  if (!report) return row;
  const values: (Buffer | string | null)[] = decodeDataRow(row.subarray(5));
  let changed = false;
  const replace = (index: number, value: string): void => {
    if (values[index]?.toString() !== TARGET_ENCODING) return;
    values[index] = value;
    changed = true;
  };
  if (report.show === 'setting' && values.length === 1) replace(0, encoding.current);
  if (report.show === 'all' && values.length >= 2 && values[0]?.toString() === 'client_encoding') replace(1, encoding.current);
  for (const index of report.currentSetting ?? []) if (index < values.length) replace(index, encoding.current);
  if (report.settings && fields.length === values.length) {
    // The SELECT reads pg_settings alone: every column with a table is one of its.
    const attnums = fields.map((field) => (field.tableOid !== 0 ? field.attnum : 0));
    const nameAt = attnums.indexOf(SETTINGS_NAME);
    const isClientEncoding = nameAt >= 0 ? values[nameAt]?.toString() === 'client_encoding' : report.settings.onlyClientEncoding;
    if (isClientEncoding) {
      attnums.forEach((attnum, index) => {
        if (attnum === SETTINGS_SETTING) replace(index, encoding.current);
        if (attnum === SETTINGS_RESET_VAL) replace(index, encoding.startup);
      });
    }
  }
  return changed ? encodeDataRow(values) : row;
};
