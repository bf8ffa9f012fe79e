import { BackendCode, decodeBackend, decodeNoticeFields, encodeNoticeFields, type FieldDescription, type Frame } from '@sluice/codec-pg';
import type { ColumnSource, ProfileMasker } from '@sluice/masking-engine';
import type { SqlLineage, TargetCatalogFacts } from '@sluice/sql-classifier';
import type { GovernancePorts } from '../ports.js';
import type { TableCatalog } from './catalog.js';
import type { Command, Expect } from './expectations.js';
import { copyColumns, derivedColumns, LineageCache, resultColumnSources, touchesCoveredColumn, withUncommittedChanges } from './lineage.js';
import type { Outbox } from './outbox.js';
import { CopyOutSet, ResultColumnsCache, ResultSet } from './results.js';
import { maskServerFields, withholdServerFields } from './server-texts.js';
import type { SessionAudit } from './session-audit.js';
import type { SessionProfiles } from './session-profiles.js';
import type { StatementRegistry } from './statement-registry.js';

/** What the session knows of its transaction that applies to server texts (SessionCore's fields). */
export interface TransactionTexts {
  readonly lastMasker: ProfileMasker | undefined;
  readonly coveredInTransaction: boolean;
  readonly withheldInTransaction: boolean;
}

type RunningHead = Extract<Expect, { kind: 'query' | 'execute' }>;

/**
 * What a command returns on its way to the agent: result sets and COPY data masked with the
 * command's profile (column rules following derived columns), its errors and notices masked too,
 * and its result.returned records.
 */
export class ResultRelay {
  readonly #recording: GovernancePorts['recording'];
  readonly #catalog: TableCatalog;
  readonly #registry: StatementRegistry;
  readonly #profiles: SessionProfiles;
  readonly #audit: SessionAudit;
  readonly #lineage = new LineageCache();
  readonly #columns = new ResultColumnsCache();

  constructor(recording: GovernancePorts['recording'], catalog: TableCatalog, registry: StatementRegistry, profiles: SessionProfiles, audit: SessionAudit) {
    this.#recording = recording;
    this.#catalog = catalog;
    this.#registry = registry;
    this.#profiles = profiles;
    this.#audit = audit;
  }

  /**
   * A simple query's RowDescription (its body): its n-th statement ends with its n-th
   * CommandComplete, so the tags so far count them. The same description of the same shape's
   * statement reuses its columns (see ResultColumnsCache).
   */
  queryResult(command: Command, description: Buffer): ResultSet {
    const statement = command.tags.length;
    const lineage = command.masker && command.masker.columnRuleCount !== 0 ? this.#lineageOf(command) : undefined;
    const facts = this.#factsOf(command);
    const columns = this.#columns.of(description, command.masker, lineage, facts, statement, this.#qualify, (fields, qualified) => this.#derivedFrom(command, facts, statement, fields, qualified));
    return new ResultSet(columns, command.masker, this.#recording);
  }

  /** A CopyOutResponse: the COPY TO's lines, masked field by field where the profile has column rules. */
  copyOut(command: Command, frame: Frame): CopyOutSet {
    const message = decodeBackend(frame) as { format: number };
    const columns = command.masker && command.masker.columnRuleCount !== 0 ? this.#copyColumns(command, frame) : undefined;
    return new CopyOutSet(message.format === 1, command.masker, this.#recording, columns);
  }

  /** The text's result-column lineage, computed once per command (null: unknown). */
  #lineageOf(command: Command): SqlLineage | null {
    if (command.lineage === undefined) command.lineage = this.#lineage.lineage(command.sql, command.searchPath, this.#registry.prepared, this.#profiles.cursorTexts(command.declares), command.catalog) ?? null;
    return command.lineage;
  }

  readonly #qualify = (tableOid: number, attnum: number): string | undefined => this.#catalog.qualifiedName(tableOid, attnum);

  /**
   * The facts a command's results are masked with: those it was decided with while they are
   * current (TableCatalog.factsCurrent), else the same marked as after an uncommitted schema
   * change, so every column counts as any column: the statement may have read a view replaced
   * since, and its columns derive from a definition the facts do not hold.
   */
  #factsOf(command: Command): TargetCatalogFacts | undefined {
    const facts = command.catalog;
    if (!facts || facts.uncommittedChanges || this.#catalog.factsCurrent(command.factsEpoch)) return facts;
    return withUncommittedChanges(facts);
  }

  /**
   * The source columns of each column of the `statement`-th result of a command, so column rules
   * follow derived columns and views (see resultColumnSources). Only for a profile with column
   * rules: otherwise nothing is parsed.
   */
  #derivedFrom(
    command: Command,
    facts: TargetCatalogFacts | undefined,
    statement: number,
    fields: readonly FieldDescription[],
    qualified: readonly (string | undefined)[],
  ): (readonly ColumnSource[] | undefined)[] | undefined {
    const count = fields.length;
    if (!command.masker || command.masker.columnRuleCount === 0 || count === 0) return undefined;
    this.#lineageOf(command);
    return resultColumnSources(derivedColumns(command.lineage ?? undefined, statement, count, fields.map((field) => field.name)), qualified, facts);
  }

  /**
   * Sends an ErrorResponse / NoticeResponse on, with the command's profile applied to its texts:
   * a constraint violation's detail or a RAISE NOTICE can carry row values. Where the command (or
   * an earlier one of the transaction) writes a table whose reads are guarded, its data texts are
   * withheld first. Returns the fields as sent.
   */
  maskNotice(frame: Frame, head: Expect | undefined, out: Outbox, transaction: TransactionTexts): Readonly<Record<string, string>> {
    const received = decodeNoticeFields(frame.body, frame.code === BackendCode.ErrorResponse ? 'ErrorResponse' : 'NoticeResponse');
    const command = head?.kind === 'query' || head?.kind === 'execute' ? head.command : undefined;
    const masker = command ? command.masker : head?.kind === 'parse' || head?.kind === 'bind' ? head.masker : transaction.lastMasker;
    const withheld = transaction.withheldInTransaction || command?.withholdsServerTexts === true;
    const fields = withheld ? withholdServerFields(received) : received;
    const covered = masker !== undefined && (transaction.coveredInTransaction || (command !== undefined && touchesCoveredColumn(masker, command.sql, command.searchPath, this.#registry.prepared, this.#factsOf(command))));
    const sent = masker ? maskServerFields(fields, masker, covered, {}) : fields;
    const changed = withheld || Object.keys(received).some((type) => sent[type] !== received[type]);
    out.push(changed ? encodeNoticeFields(frame.code as typeof BackendCode.ErrorResponse, sent) : frame.raw);
    return sent;
  }

  /** The columns of a COPY TO's lines (the `statement`-th of a simple query), so column rules apply to its fields. */
  #copyColumns(command: Command, frame: Frame): ReturnType<typeof copyColumns> {
    const message = decodeBackend(frame) as { columnFormats: readonly number[] };
    this.#lineageOf(command);
    return copyColumns(command.lineage ?? undefined, command.tags.length, message.columnFormats.length, this.#factsOf(command));
  }

  /** The result set the head's rows go through; an Execute's is built from its portal's description. */
  resultOf(head: RunningHead): ResultSet | undefined {
    if (head.kind === 'execute' && !head.result && head.portal.description) {
      const command = head.command;
      const lineage = command.masker && command.masker.columnRuleCount !== 0 ? this.#lineageOf(command) : undefined;
      const facts = this.#factsOf(command);
      const columns = this.#columns.ofFields(head.portal.description, command.masker, lineage, facts, 0, this.#qualify, (fields, qualified) => this.#derivedFrom(command, facts, 0, fields, qualified));
      head.result = new ResultSet(columns, command.masker, this.#recording);
    }
    return head.result;
  }

  /** The head's result set or COPY is complete: on the record as result.returned. */
  finish(head: RunningHead): void {
    const result = head.kind === 'execute' && !head.result && head.portal.description?.length ? this.resultOf(head) : head.result;
    if (result) this.#audit.returned(result.toEvent(head.command.id));
    if (head.copy) this.#audit.returned(head.copy.toEvent(head.command.id));
    head.result = undefined;
    head.copy = undefined;
  }
}
