import { decodeFrontend, encodeDescribe, TransactionStatus, type Frame } from '@sluice/codec-pg';
import { maskProfileOf, ProtocolMalformedError, SluiceErrorCode, withholdsServerTexts } from '@sluice/contracts';
import type { Decision } from '../ports.js';
import type { Expect, Portal, Refusal, Statement } from './expectations.js';
import { CANCELLED, denial } from './refusals.js';
import type { SessionCore } from './session-core.js';
import type { SessionDecisions } from './session-decisions.js';
import { SYNC } from './session-state.js';
import { SqlState } from './sqlstate.js';

/** The widest batch of extended-protocol messages held before deciding without a Sync. */
const MAX_BATCH_MESSAGES = 1000;
const MAX_BATCH_BYTES = 4 << 20;

const quoteIdent = (name: string): string => `"${name.replaceAll('"', '""')}"`;

const paramText = (formats: readonly number[], params: readonly (Buffer | null)[]): (string | null)[] =>
  params.map((value, i) => {
    if (value === null) return null;
    const format = formats.length === 0 ? 0 : formats.length === 1 ? formats[0] : formats[i];
    return format === 1 ? `\\x${value.toString('hex')}` : value.toString('utf8');
  });

/**
 * The extended protocol's messages (Parse, Bind, Describe, Execute, Close) gathered up to a
 * Sync, a Flush, or as many as the client has sent, then decided together: every statement
 * before it is sent, every portal and statement name resolved to what was allowed.
 * @see https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-EXT-QUERY
 */
export class ExtendedBatch {
  /** Messages received since the last batch was decided. */
  #frames: Frame[] = [];
  #bytes = 0;

  constructor(
    private readonly session: SessionCore,
    private readonly decisions: SessionDecisions,
  ) {}

  /** Messages wait to be decided. */
  get pending(): boolean {
    return this.#frames.length > 0;
  }

  /** Adds a message; true when the batch is as wide as one is let grow before it is decided. */
  add(frame: Frame): boolean {
    this.#frames.push(frame);
    this.#bytes += frame.raw.length;
    return this.#frames.length >= MAX_BATCH_MESSAGES || this.#bytes >= MAX_BATCH_BYTES;
  }
  /** A statement a Bind or Describe names that was not Parse'd in this batch: decided again now. */
  async #lookupStatement(name: string, batch: Map<string, Statement>, pathUnknown: boolean): Promise<Statement | Refusal> {
    const inBatch = batch.get(name);
    if (inBatch) return pathUnknown && !inBatch.unknownPath ? this.#onUnknownPath(inBatch, batch) : inBatch;
    // A Parse or Close of this name still unanswered: the server decides what the name holds.
    const changing = this.session.expects.some((e) => (e.kind === 'parse' && e.statement.name === name) || (e.kind === 'close' && e.target === 'S' && e.name === name));
    if (changing) await this.session.settled();
    const known = this.session.registry.statement(name);
    const text = known?.text ?? this.session.registry.prepared.get(name);
    if (text === undefined) {
      return { code: SqlState.InsufficientPrivilege, message: `permission denied: prepared statement ${quoteIdent(name)} was not allowed` };
    }
    // A statement PREPAREd in SQL is decided as the EXECUTE of it, which carries its action.
    const decided = known ? text : `EXECUTE ${quoteIdent(name)}`;
    const { decision, unknownPath } = await this.#decideStatement(decided, pathUnknown);
    if (decision.effect === 'deny') {
      return this.decisions.refuseByName(decided, decision);
    }
    const masking = this.decisions.maskerFor(decision, text, unknownPath);
    if ('code' in masking) return masking;
    const statement: Statement = {
      name,
      text,
      decision,
      masker: masking.masker,
      ...(unknownPath ? { unknownPath } : {}),
      ...(known?.description ? { description: known.description } : {}),
      ...(known?.recorded !== undefined && maskProfileOf(known.decision) === maskProfileOf(decision) ? { recorded: known.recorded } : {}),
    };
    batch.set(name, statement);
    return statement;
  }

  /**
   * A statement's decision: on the session's path, or, where code an earlier Execute of the
   * pipeline ran unseen may have changed it, on every schema an unqualified name may then read.
   */
  async #decideStatement(text: string, pathUnknown: boolean, afterExecute = false, afterPathSet = false): Promise<{ decision: Decision; unknownPath?: readonly string[] }> {
    if (!pathUnknown) return { decision: this.decisions.decidedAtOnce(text, afterPathSet) ?? (await this.decisions.decide(text, afterExecute, afterPathSet)) };
    const { decision, searchPath } = await this.decisions.decideOnUnknownPath(text, afterExecute, afterPathSet);
    return { decision, unknownPath: searchPath ?? this.session.searchPath ?? [] };
  }

  /**
   * A statement Parse'd before code an Execute ran unseen, bound after it: PostgreSQL plans it again
   * at the Bind when search_path has changed since, so it may read another schema's relation than
   * the one it was decided on. Decided again as a Parse after that code would be; kept for the
   * rest of the pipeline.
   */
  async #onUnknownPath(statement: Statement, batch: Map<string, Statement>): Promise<Statement | Refusal> {
    const { decision, unknownPath } = await this.#decideStatement(statement.text, true, true);
    if (decision.effect === 'deny') return this.decisions.refuseByName(statement.text, decision);
    const masking = this.decisions.maskerFor(decision, statement.text, unknownPath);
    if ('code' in masking) return masking;
    const again: Statement = {
      name: statement.name,
      text: statement.text,
      decision,
      masker: masking.masker,
      ...(unknownPath ? { unknownPath } : {}),
      ...(statement.description ? { description: statement.description } : {}),
      ...(statement.recorded !== undefined && maskProfileOf(statement.decision) === maskProfileOf(decision) ? { recorded: statement.recorded } : {}),
    };
    batch.set(statement.name, again);
    return again;
  }

  /**
   * The extended-protocol messages received so far (up to a Sync, a Flush, or all the client has
   * sent): every Parse is decided and every Bind, Describe and Execute must name an allowed
   * statement before it is sent. A refusal answers as the server's own error would: the messages
   * before it go (a transaction then rolls them back as the server's error would), the refused one
   * and the rest up to the Sync do not; ErrorResponse, then ReadyForQuery at the Sync.
   */
  async process(end: 'sync' | 'flush' | 'implicit'): Promise<void> {
    const frames = this.#frames;
    this.#frames = [];
    this.#bytes = 0;
    if (this.session.discardUntilSync) {
      this.#skipToSync(end);
      return;
    }
    const messages = frames.map((frame) => decodeFrontend(frame));
    const { statements, portals, described } = this.session.pipeline;
    let parsesUnnamed = false;
    let bindsUnnamed = false;
    const forward: Buffer[] = [];
    const expects: Expect[] = [];
    const approvals: { statement: Statement; params: (string | null)[]; commandId: string }[] = [];
    let refusal: Refusal | undefined = this.decisions.auditRefusal();
    /** An Execute earlier in this batch runs before a later Parse is lexed: it may change the lexer state. */
    let executes = false;
    let changesSearchPath = false;
    /** An Execute of this batch runs code its text does not show (a trigger, a view's function). */
    let runsHiddenCode = false;
    /** An Execute of COPY FROM STDIN: the target reads only copy data until the client ends it. */
    let copiesFromClient = false;
    /** An Execute earlier in this batch sets search_path for what follows it (SET, set_config, a transaction's end). */
    let setsSearchPath = false;
    /** Cursors DECLAREd by an Execute earlier in this batch: the server runs it before a later message names them. */
    const declaredHere = new Set<string>();

    for (let i = 0; i < messages.length && !refusal; i++) {
      const message = messages[i]!;
      const raw = frames[i]!.raw;
      switch (message.type) {
        case 'Parse': {
          refusal = this.decisions.statementTooLong(this.session.ports.newId(), message.text);
          if (refusal) break;
          if (this.session.effectsOf(message.text).clientEncoding) {
            const encodingRefusal = this.session.clientEncoding?.extendedRefusal(message.text, this.session.transactionStatus !== TransactionStatus.Idle);
            if (encodingRefusal) refusal = this.decisions.recordRefusedBeforeRule(message.text, encodingRefusal);
            if (refusal) break;
          }
          const pathUnknown = runsHiddenCode || changesSearchPath || this.session.searchPathDue;
          // Without a promise when the decision is at hand (most Parses): the batch goes on in this turn.
          const now = pathUnknown ? undefined : this.decisions.decidedAtOnce(message.text, setsSearchPath);
          const { decision, unknownPath } = now ? { decision: now, unknownPath: undefined } : await this.#decideStatement(message.text, pathUnknown, executes, setsSearchPath);
          if (decision.effect === 'deny') {
            const commandId = this.session.ports.newId();
            this.decisions.recordDecided(commandId, message.text, decision);
            refusal = denial(decision, message.text, this.session.resource.name);
            this.decisions.recordRefused(commandId, refusal);
            break;
          }
          const masking = this.decisions.maskerFor(decision, message.text, unknownPath);
          if ('code' in masking) {
            refusal = masking;
            break;
          }
          // Preparing runs nothing: a statement held for approval is held at its Bind, with its
          // parameters. The Parse is on the record all the same.
          if (decision.effect === 'approve') this.decisions.recordDecided(this.session.ports.newId(), message.text, decision);
          const statement: Statement = { name: message.name, text: message.text, decision, masker: masking.masker, ...(unknownPath ? { unknownPath } : {}) };
          // A driver that Parses the same text again for every execution (pgbench -M extended,
          // node-postgres's unnamed statements): its recorded text is the one masked before, with
          // the same masker (one compiled masking version and profile: the same masked text).
          const previous = statements.get(message.name) ?? this.session.registry.statement(message.name);
          if (previous?.recorded !== undefined && masking.masker !== undefined && previous.masker === masking.masker && previous.text === message.text) {
            statement.recorded = previous.recorded;
          }
          statements.set(message.name, statement);
          if (message.name === '') parsesUnnamed = true;
          forward.push(raw);
          expects.push({ kind: 'parse', masker: masking.masker, statement });
          break;
        }
        case 'Bind': {
          // A statement of this batch without a promise: most Binds name the Parse just before them.
          // PostgreSQL plans a statement again at its Bind when search_path changed since its Parse.
          const pathUnknown = runsHiddenCode || changesSearchPath || this.session.searchPathDue;
          const inBatch = statements.get(message.statement);
          const statement = inBatch && (!pathUnknown || inBatch.unknownPath) ? inBatch : await this.#lookupStatement(message.statement, statements, pathUnknown);
          if ('code' in statement) {
            refusal = statement;
            break;
          }
          // Parameter values are only read as text when an approval must be bound to them.
          const heldCommandId = statement.decision.effect === 'approve' ? this.session.ports.newId() : undefined;
          if (heldCommandId) approvals.push({ statement, params: paramText(message.paramFormats, message.params), commandId: heldCommandId });
          const formats = message.resultFormats;
          const description = statement.description?.map((f, c) => ({
            ...f,
            format: formats.length === 0 ? 0 : formats.length === 1 ? formats[0]! : (formats[c] ?? 0),
          }));
          const portal: Portal = { name: message.portal, statement, ...(description ? { description } : {}), ...(heldCommandId ? { commandId: heldCommandId } : {}) };
          portals.set(message.portal, portal);
          if (message.portal === '') bindsUnnamed = true;
          described.delete(message.portal);
          forward.push(raw);
          expects.push({ kind: 'bind', masker: statement.masker, portal });
          break;
        }
        case 'Describe': {
          if (message.target === 'S') {
            const statement = await this.#lookupStatement(message.name, statements, runsHiddenCode || changesSearchPath || this.session.searchPathDue);
            if ('code' in statement) {
              refusal = statement;
              break;
            }
            expects.push({ kind: 'describeStatement', statement });
          } else {
            const portal = portals.get(message.name) ?? (await this.#confirmedPortal(message.name, portals, declaredHere));
            if (!portal || 'code' in portal) {
              refusal = portal ?? { code: SqlState.InsufficientPrivilege, message: `permission denied: portal ${quoteIdent(message.name)} was not allowed` };
              break;
            }
            described.add(message.name);
            expects.push({ kind: 'describePortal', portal, internal: false });
          }
          forward.push(raw);
          break;
        }
        case 'Execute': {
          const portal = portals.get(message.portal) ?? (await this.#confirmedPortal(message.portal, portals, declaredHere));
          if (!portal || 'code' in portal) {
            refusal = portal ?? { code: SqlState.InsufficientPrivilege, message: `permission denied: portal ${quoteIdent(message.portal)} was not allowed` };
            break;
          }
          if (portal.cursor || (!portal.description && !described.has(message.portal))) {
            // Rows cannot be masked without their columns: ask the server, and keep its answer to ourselves.
            forward.push(encodeDescribe('P', message.portal));
            expects.push({ kind: 'describePortal', portal, internal: true });
            described.add(message.portal);
          }
          const commandId = portal.commandId ?? this.session.ports.newId();
          const statement = portal.statement;
          statement.recorded ??= this.decisions.maskedText(statement.text, maskProfileOf(statement.decision));
          this.decisions.recordDecided(commandId, statement.text, statement.decision, statement.recorded);
          forward.push(raw);
          const command = this.session.newCommand(commandId, portal.statement.masker, statement.text, {
            withholdsServerTexts: withholdsServerTexts(statement.decision),
            ...(statement.unknownPath ? { searchPath: statement.unknownPath } : {}),
          });
          for (const [cursor] of command.declares) declaredHere.add(cursor);
          expects.push({ kind: 'execute', command, portal, result: undefined, copy: undefined });
          executes = true;
          let effects = this.session.effectsOf(statement.text);
          // Under the path it was decided on, a built-in call without arguments (`count(*)`) cannot
          // change the path (as for a simple query); decided on an unknown path, every call may.
          if (effects.searchPath && !statement.unknownPath && this.session.searchPath) effects = this.session.effectsOf(statement.text, this.session.searchPath);
          if (effects.copiesFromClient) copiesFromClient = true;
          if (effects.searchPath) changesSearchPath = true;
          // Code the text does not show: read at the Sync. Until then every later statement of the
          // pipeline is decided as if the path were unknown (decideOnUnknownPath): refusing every
          // Parse after each write would break every driver that pipelines writes.
          else if (this.session.runsHiddenCode(statement.text, statement.decision)) runsHiddenCode = true;
          if (effects.setsPathForLater) setsSearchPath = true;
          break;
        }
        case 'Close':
          forward.push(raw);
          expects.push({ kind: 'close', target: message.target, name: message.name });
          break;
        case 'Sync':
          forward.push(raw);
          expects.push({ kind: 'sync', copyEnds: this.session.copyEndsSent });
          break;
        case 'Flush':
          forward.push(raw);
          break;
        default:
          throw new ProtocolMalformedError(`unexpected ${message.type} in a batch`);
      }
    }

    // Messages held for approval (and those after them) wait for it, decided or not; a refusal
    // among them sends none of this batch.
    const sendsBefore = refusal !== undefined && approvals.length === 0;
    for (const { statement, params, commandId } of approvals) {
      if (refusal || this.session.closed) break;
      refusal = await this.decisions.approve(commandId, statement.text, params, statement.decision);
    }
    if (!refusal && executes && !this.session.closed && this.session.resource.audit?.wait === 'ack') refusal = await this.decisions.unacknowledged();
    if (this.session.closed) {
      // Decided and on the record, never sent (the agent hung up during a hold): each ends there as not run.
      for (const expect of expects) {
        if (expect.kind !== 'execute') continue;
        expect.command.error ??= { code: SluiceErrorCode.ConnectionClosed, message: 'the session ended before the command was sent: it did not run' };
        this.session.audit.completed(expect.command, false);
      }
      return;
    }
    if (executes && this.session.cancelHeld && (!refusal || approvals.length > 0)) {
      refusal = CANCELLED;
      for (const expect of expects) if (expect.kind === 'execute') this.decisions.recordRefused(expect.command.id, refusal);
    }
    this.session.cancelHeld = false;
    if (this.session.discardUntilSync) {
      // The target failed an earlier message of this pipeline meanwhile: it ignores these. Their
      // Executes are on the record as decided: they end there as not run.
      for (const expect of expects) if (expect.kind === 'execute') this.session.audit.completed(expect.command, false);
      this.#skipToSync(end);
      return;
    }
    if (refusal && !sendsBefore) {
      this.session.refuseOnTarget(refusal, end === 'sync');
      if (end === 'sync') this.#refusedBatchSynced();
      else this.session.discardUntilSync = true;
      return;
    }
    // The server drops its unnamed statement and portal as soon as a Parse or Bind of them arrives.
    this.session.registry.replaceUnnamed(parsesUnnamed, bindsUnnamed);
    for (const expect of expects) this.session.expects.push(expect);
    for (const buffer of forward) this.session.toUpstream.push(buffer);
    if (end === 'sync') this.session.executedSinceSync = false;
    else if (executes) this.session.executedSinceSync = true;
    if (runsHiddenCode) this.session.searchPathDue = true;
    if (changesSearchPath) {
      this.session.searchPathDue = true;
      // Until it is read again (a simple query is only valid after the Sync), nothing is decided on a guess.
      if (end !== 'sync') this.session.searchPath = undefined;
    }
    if (refusal) {
      // The allowed messages before the refused one went first, as the server would have run them.
      this.session.refuseOnTarget(refusal, end === 'sync');
      if (end === 'sync') this.#refusedBatchSynced();
      else this.session.discardUntilSync = true;
      return;
    }
    if (copiesFromClient && this.session.searchPathDue) {
      // A read sent now would reach the target in COPY mode: it is read at the Sync after the
      // COPY's end instead, and until then nothing is decided on a guess (not even a Parse sent
      // after the CopyDone, before that Sync: the COPY's triggers have run by then).
      this.session.searchPath = undefined;
      return;
    }
    if (end === 'sync' && this.session.searchPathDue) {
      this.session.searchPathDue = false;
      this.session.refreshSearchPath();
    }
  }

  /** Messages the target ignores (it skips to the Sync after an error): only the Sync goes. */
  #skipToSync(end: 'sync' | 'flush' | 'implicit'): void {
    if (end !== 'sync') return;
    // The target skips to this Sync since the error: it answers ReadyForQuery.
    this.session.discardUntilSync = false;
    this.session.expects.push({ kind: 'sync', copyEnds: this.session.copyEndsSent });
    this.session.toUpstream.push(SYNC);
    this.#refusedBatchSynced();
  }

  /**
   * A refused batch still reaches the target as the refusal and its Sync: an earlier Execute may
   * have changed search_path, so it is read again, or every later batch would be refused on an
   * unknown path.
   */
  #refusedBatchSynced(): void {
    this.session.executedSinceSync = false;
    if (!this.session.searchPathDue) return;
    this.session.searchPathDue = false;
    this.session.refreshSearchPath();
  }

  /**
   * A portal named in an earlier batch, once the server has answered its Bind (and any Close of
   * it), a SQL cursor the server confirmed, or one an allowed DECLARE earlier in this batch makes.
   * Undefined: no such portal was allowed.
   */
  async #confirmedPortal(name: string, pipeline: Map<string, Portal>, declaredHere: ReadonlySet<string>): Promise<Portal | Refusal | undefined> {
    // The server runs that DECLARE first and skips this message if it fails: the name is the cursor,
    // decided as a FETCH from it and masked with its DECLAREs' profiles, as a confirmed one is.
    if (declaredHere.has(name)) return this.#pipelineCursor(name, pipeline);
    const changing = this.session.expects.some(
      (e) =>
        (e.kind === 'bind' && e.portal.name === name) ||
        (e.kind === 'close' && e.target === 'P' && e.name === name) ||
        ((e.kind === 'query' || e.kind === 'execute') && e.command.declares.some(([cursor]) => cursor === name)),
    );
    if (changing) await this.session.settled();
    const bound = this.session.registry.portal(name);
    if (bound || !this.session.profiles.hasCursor(name)) return bound;
    return this.#pipelineCursor(name, pipeline);
  }

  /** The cursor portal of the name, kept for the rest of the pipeline once allowed. */
  async #pipelineCursor(name: string, pipeline: Map<string, Portal>): Promise<Portal | Refusal> {
    const portal = await this.#cursorPortal(name);
    if (!('code' in portal)) pipeline.set(name, portal);
    return portal;
  }

  /**
   * A SQL cursor used as a protocol portal (Describe, Execute of its name, as psycopg's and JDBC's
   * named cursors do): an Execute of it is a `FETCH … FROM` it, decided as that statement and
   * masked, as any FETCH, with the profiles its DECLAREs were allowed under.
   */
  async #cursorPortal(name: string): Promise<Portal | Refusal> {
    const text = `FETCH FORWARD ALL FROM ${quoteIdent(name)}`;
    const decision = await this.decisions.decide(text);
    if (decision.effect !== 'allow') {
      return this.decisions.refuseByName(text, decision);
    }
    const masking = this.decisions.maskerFor(decision, text);
    if ('code' in masking) return masking;
    // Its rows are the DECLARE's: the masker is already the union with the cursor's profiles.
    const { masker } = this.session.profiles.command(text, masking.masker, this.session.decidedAtEpoch);
    return { name, statement: { name: '', text, decision, masker }, cursor: true };
  }
}
