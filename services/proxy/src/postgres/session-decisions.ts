import { RECORDING_DEFAULTS } from '@sluice/config';
import { failClosedDecision, maskProfileOf } from '@sluice/contracts';
import type { ProfileMasker } from '@sluice/masking-engine';
import { unqualifiedRelations, type TargetCatalogFacts } from '@sluice/sql-classifier';
import { commandHash } from '../governance/approval-hold.js';
import { Governor } from '../governance/governor.js';
import { sqlJustification } from '../justification.js';
import type { Decision, GovernedCommand, MaskingPort } from '../ports.js';
import { normaliseSql } from './approval-text.js';
import { changesPreparedStatements, type Refusal } from './expectations.js';
import { coveredValueEscape } from './lineage.js';
import { approvalRefusal, denialMessage } from './refusals.js';
import type { SessionCore } from './session-core.js';
import { SqlState } from './sqlstate.js';

/**
 * Masked beyond audit.recording.maxCommandBytes, so that a value the cut falls inside is still
 * found whole by the detectors (none is this long).
 */
const MASKED_MARGIN_CHARS = 64 * 1024;
const DEFAULT_MAX_COMMAND_BYTES = RECORDING_DEFAULTS.maxCommandBytes;

/** A text as the record keeps it (a command's, or one quoting the agent's packet): masked, or withheld when masking fails. */
export const maskedForRecord = (masking: Pick<MaskingPort, 'maskCommandText'>, text: string, profile: string | undefined): string => {
  try {
    return masking.maskCommandText(text, profile);
  } catch {
    return '[withheld: masking unavailable]';
  }
};

/** A decision and the path it was made on, when that is not the session's (see decideOnUnknownPath). */
export interface PathDecision {
  readonly decision: Decision;
  /** The schemas unqualified names were resolved against: masking follows the same ones. */
  readonly searchPath?: readonly string[];
}

/**
 * One PostgreSQL session's use of the protocol-neutral governance core (../governance/governor.ts):
 * a SQL text decided with what the session knows (search_path, prepared statements, catalog
 * facts), recorded, held for approval, and given its masker; what the front door cannot know
 * yet is refused (fail closed), never guessed.
 */
export class SessionDecisions {
  readonly #session: SessionCore;
  readonly #maskedPrefixChars: number;
  #governorOf: Governor | undefined;

  constructor(session: SessionCore) {
    this.#session = session;
    this.#maskedPrefixChars = (session.ports.recording.maxCommandBytes ?? DEFAULT_MAX_COMMAND_BYTES) + MASKED_MARGIN_CHARS;
  }

  /**
   * The decision at once when nothing must be waited for and every answer is cached (catalog
   * facts, the policy's decision, also by the text's shape): a statement with a new literal is
   * then decided and sent in the turn its bytes arrived, without a promise or a span. Undefined
   * when decide must be awaited, which also gives every fail-closed answer.
   */
  decideNow(text: string, path?: readonly string[]): Decision | undefined {
    const searchPath = path ?? this.#session.searchPath;
    if (this.#session.closed || !this.#session.searchPath || !searchPath || this.#session.searchPathRefresh || text.includes('\\')) return undefined;
    const effects = this.#session.effectsOf(text);
    // A later statement's unqualified name after hidden code is refused by decide, not here.
    if (this.#session.expects.some(changesPreparedStatements) || effects.unqualifiedAfterPathChange || effects.unqualifiedAfterFirstStatement) return undefined;
    const catalog = this.#session.ctx.catalog.cachedFacts();
    if (!catalog) return undefined;
    const verdict = this.governor().cachedVerdict(this.#sqlCommand(text, searchPath, catalog));
    if (!verdict) return undefined;
    this.#session.decidedWith = catalog;
    this.#session.decidedAtEpoch = this.#session.ctx.catalog.schemaEpoch;
    return this.#noteDecision(verdict.decision);
  }

  /**
   * What decide answers without waiting, when it can (see decideNow), else undefined: a batch of
   * extended-protocol messages then goes on in the same turn instead of a turn per Parse.
   */
  decidedAtOnce(text: string, afterPathSet = false, path?: readonly string[]): Decision | undefined {
    if (afterPathSet && this.#session.effectsOf(text).namesUnqualifiedTable) {
      return failClosedDecision('a statement after an Execute that changes search_path in the same pipeline names a table without its schema; send a Sync first');
    }
    return this.decideNow(text, path);
  }

  #sqlCommand(text: string, searchPath: readonly string[], catalog: TargetCatalogFacts): GovernedCommand {
    return { kind: 'sql', text, searchPath, preparedStatements: this.#session.registry.prepared, catalog: this.#session.schemaChanged ? { ...catalog, uncommittedChanges: true } : catalog };
  }

  #noteDecision(decision: Decision): Decision {
    if (decision.effect !== 'deny' && (decision.action === 'ddl' || decision.action === 'admin')) this.#session.beginSchemaChange();
    return decision;
  }

  /**
   * `afterExecute`: an Execute earlier in the batch being decided runs before this text is read.
   * `afterPathSet`: one of those sets search_path, so a table named without its schema resolves
   * against a path not read yet (the one the proxy knows is the old one): refused.
   * `path`: the schemas to resolve unqualified names against instead of the session's path.
   */
  async decide(text: string, afterExecute = false, afterPathSet = false, path?: readonly string[]): Promise<Decision> {
    const now = this.decidedAtOnce(text, afterPathSet, path);
    if (now) return now;
    // Only a backslash reads differently with standard_conforming_strings off (or in a multi-byte
    // encoding): such text is decided once every earlier command has been answered, so a
    // ParameterStatus that changed the lexer state has been seen (and closed the session).
    const backslash = text.includes('\\');
    if (backslash) await this.#session.settled();
    // Every decision sees the session's prepared statements (EXECUTE, Bind): with a Parse, Close,
    // PREPARE or DEALLOCATE still in flight, it waits for the server to say what each name holds.
    if (this.#session.expects.some(changesPreparedStatements)) await this.#session.settled();
    if (this.#session.searchPathRefresh) await this.#session.searchPathRefresh;
    if (this.#session.closed) return failClosedDecision('the session is closed');
    if (backslash && (this.#session.executedSinceSync || afterExecute)) {
      return failClosedDecision('a statement with a backslash must wait for a Sync after an Execute (the target reports setting changes only then)');
    }
    // Where the proxy cannot know which schema an unqualified name reads, it refuses.
    if (!this.#session.searchPath) return failClosedDecision('the session search_path is not known yet; send a Sync and retry');
    if (this.#session.effectsOf(text).unqualifiedAfterPathChange) {
      return failClosedDecision('a statement after a search_path change in the same message names a table without its schema; send them separately');
    }
    let catalog: TargetCatalogFacts;
    // Before the read: a schema change that begins or ends while it is under way makes these facts not current.
    const epoch = this.#session.ctx.catalog.schemaEpoch;
    try {
      catalog = await this.#session.ctx.catalog.facts();
      this.#session.decidedWith = catalog;
      this.#session.decidedAtEpoch = epoch;
    } catch {
      return failClosedDecision('the target catalog (functions, views, inheritance) could not be read');
    }
    // A policy that cannot answer denies (fail closed): the governor's verdict.
    const { decision } = await this.governor().decide(this.#sqlCommand(text, path ?? this.#session.searchPath, catalog));
    // The path is read again only after the whole message: a later statement's unqualified name
    // would be decided on the path from before the code an earlier one runs unseen.
    if (decision.effect !== 'deny' && this.#session.hiddenCodeBeforeUnqualified(text, decision)) {
      return failClosedDecision('a statement after a write, a COPY FROM, a FETCH or a view read in the same message names a table without its schema (a trigger or function may change search_path in between); send them separately');
    }
    return this.#noteDecision(decision);
  }

  /**
   * `text` decided where the session's search_path may have changed unseen since it was read: an
   * earlier Execute of the pipeline, not yet followed by a Sync, ran code its text does not show
   * (a trigger, a view's function) that may have set it. Each unqualified relation name then
   * counts as every schema that holds a relation of that name (every schema when none does; see
   * TableCatalog.schemasHolding): a deny on any of them denies, an allow-list must cover them
   * all, and masking follows all of them; after a schema change of this session not committed,
   * every name counts as every schema. Where that cannot be told (the catalog unreadable) it is
   * refused; past the schemas lineage follows, an unqualified name masks as any column.
   */
  async decideOnUnknownPath(text: string, afterExecute = false, afterPathSet = false): Promise<PathDecision> {
    const relnames = unqualifiedRelations(text);
    // Nothing resolved through the path (functions and types are the classifier's business, as on any path).
    if (relnames?.length === 0) return { decision: await this.decide(text, afterExecute, afterPathSet) };
    let path: string[];
    try {
      // A relation this session made, not committed, is not seen by the catalog's own connection.
      path = await this.#session.ctx.catalog.schemasHolding(relnames, this.#session.schemaChanged);
    } catch {
      return { decision: failClosedDecision('the target catalog (which schemas hold a relation name) could not be read') };
    }
    return { decision: await this.decide(text, afterExecute, afterPathSet, path), searchPath: path };
  }

  /** The protocol-neutral governance of this session's commands (decide, record, hold, mask). */
  governor(): Governor {
    // Built for the logged-in subject (never one cached before login).
    const current = this.#governorOf;
    if (current && current.session.subject === this.#session.subject) return current;
    const governor = new Governor(this.#session.ports, { id: this.#session.id, resource: this.#session.resource.name, subject: this.#session.subject!, protocol: 'postgres' });
    this.#governorOf = governor;
    return governor;
  }

  /**
   * Masks what is recorded (and shown to approvers) of a command: its beginning only, past which
   * nothing is kept anyway; masking a PII-dense 12 MB text whole held every session for seconds.
   */
  maskedText(text: string, profile: string | undefined): string {
    return maskedForRecord(this.#session.ports.masking, text.length > this.#maskedPrefixChars ? text.slice(0, this.#maskedPrefixChars) : text, profile);
  }

  recordDecided(commandId: string, text: string, decision: Decision, recorded?: string): void {
    this.#session.commands++;
    this.governor().recordDecided(
      {
        commandId,
        command: recorded ?? this.maskedText(text, maskProfileOf(decision)),
        ...(text.length > this.#maskedPrefixChars ? { commandBytes: Buffer.byteLength(text, 'utf8') } : {}),
      },
      decision,
    );
  }

  /** A refusal of the proxy's own before any rule (a client_encoding change it cannot carry out): on the record as every refusal. */
  recordRefusedBeforeRule(text: string, refusal: Refusal): Refusal {
    const commandId = this.#session.ports.newId();
    this.#session.commands++;
    this.governor().recordRefusedBeforeRule({ commandId, command: this.maskedText(text, undefined) }, refusal.message);
    this.recordRefused(commandId, refusal);
    return refusal;
  }

  recordRefused(commandId: string, refusal: Refusal): void {
    this.governor().recordRefused(commandId, { outcome: 'REFUSED', code: refusal.code, message: refusal.message, durationMs: 0 });
  }

  /**
   * A statement or cursor named by a Bind, Describe or Execute whose text the policy did not allow
   * now: on the record as decided and refused, answered 42501 with the denial.
   */
  refuseByName(text: string, decision: Decision): Refusal {
    const commandId = this.#session.ports.newId();
    const refusal = { code: SqlState.InsufficientPrivilege, message: denialMessage(decision, this.#session.resource.name) };
    this.recordDecided(commandId, text, decision);
    this.recordRefused(commandId, refusal);
    return refusal;
  }

  /** The masker of an allowed `text`, or a refusal when masking is unavailable or the text would carry a covered value past it. */
  maskerFor(decision: Decision, text: string, path?: readonly string[]): { masker: ProfileMasker | undefined } | Refusal {
    const choice = this.governor().maskerFor(decision);
    if (!choice.ok) return { code: SqlState.SystemError, message: 'result withheld: masking is unavailable' };
    const escape = coveredValueEscape(choice.masker, text, path ?? this.#session.searchPath, this.#session.registry.prepared, this.#session.decidedWith);
    return escape ? { code: SqlState.InsufficientPrivilege, message: `permission denied: ${escape}` } : { masker: choice.masker };
  }

  auditRefusal(): Refusal | undefined {
    if (this.#session.ports.audit.healthy) return undefined;
    return { code: SqlState.SystemError, message: 'command refused: the audit trail is unavailable' };
  }

  /** `audit.wait: ack`: the command goes to the target only once the bus has its record. */
  async unacknowledged(): Promise<Refusal | undefined> {
    if (await this.governor().acknowledged()) return undefined;
    return { code: SqlState.SystemError, message: 'command refused: its audit record was not acknowledged' };
  }

  /**
   * A SQL text over the resource's maxStatementBytes is refused (54000) before any decision; the
   * session stays usable. Recorded with a masked beginning of the text and its full size.
   */
  statementTooLong(commandId: string, text: string): Refusal | undefined {
    const limit = this.#session.ctx.maxStatementBytes;
    if (text.length * 3 <= limit) return undefined;
    const bytes = Buffer.byteLength(text, 'utf8');
    if (bytes <= limit) return undefined;
    const refusal = { code: SqlState.ProgramLimitExceeded, message: `statement of ${bytes} bytes exceeds this resource's limit of ${limit} bytes` };
    this.#session.commands++;
    // Masked as any recorded text, but only its beginning: the audit port cuts it further.
    this.governor().recordRefusedBeforeRule({ commandId, command: this.maskedText(text, undefined), commandBytes: bytes }, 'statement too long');
    this.recordRefused(commandId, refusal);
    return refusal;
  }

  /** Holds a command for a human; resolves to undefined when granted and consumed, else the refusal. */
  async approve(commandId: string, text: string, params: readonly (string | null)[], decision: Decision): Promise<Refusal | undefined> {
    if (decision.effect !== 'approve') return undefined;
    const hash = commandHash([this.#session.resource.name, this.#session.subject!.sub, normaliseSql(text), params]);
    const hold = new AbortController();
    this.#session.holds.add(hold);
    try {
      const result = await this.governor().hold(
        { commandId, command: this.maskedText(text, maskProfileOf(decision)), commandHash: hash, decision, justification: sqlJustification(text) },
        hold.signal,
      );
      return approvalRefusal(result);
    } finally {
      this.#session.holds.delete(hold);
    }
  }
}
