import type { Socket } from 'node:net';
import { encodeQuery, type FrameReader, TransactionStatus } from '@sluice/codec-pg';
import type { PostgresResourceConfig } from '@sluice/config';
import type { Subject } from '@sluice/contracts';
import type { ProfileMasker } from '@sluice/masking-engine';
import type { SessionStateEffects, TargetCatalogFacts } from '@sluice/sql-classifier';
import type { Decision, GovernancePorts } from '../ports.js';
import { ClientOutbox } from './client-encoding-frames.js';
import type { EncodingSwitch, SessionClientEncoding } from './client-encoding-session.js';
import { newPipeline, type Command, type Expect, type Refusal } from './expectations.js';
import { touchesCoveredColumn, withUncommittedChanges } from './lineage.js';
import { Outbox } from './outbox.js';
import { refusalMessage, TARGET_REFUSAL } from './refusals.js';
import { ResultRelay } from './result-relay.js';
import type { SessionContext } from './session.js';
import { RelayingAudit, SessionAudit } from './session-audit.js';
import { SessionProfiles } from './session-profiles.js';
import { SqlState } from './sqlstate.js';
import { FLUSH, schemasOf, SEARCH_PATH_QUERY, SessionEffectsCache, SYNC } from './session-state.js';
import type { ClientSocket } from './startup-negotiation.js';
import { StatementRegistry } from './statement-registry.js';

/** What a command takes from its decision and its text beyond its profile. */
export interface CommandOptions {
  /** A SET of client_encoding: the agent's conversion switches at its CommandComplete. */
  readonly encoding?: EncodingSwitch | undefined;
  /** The decision's withholdServerTexts. */
  readonly withholdsServerTexts?: boolean;
  /** The schemas its unqualified names were decided on, when not the session's path (Statement.unknownPath). */
  readonly searchPath?: readonly string[] | undefined;
}

/** Client bytes queued while a command is held (approval) before the socket is paused. */
const MAX_QUEUED_BYTES = 16 << 20;

/**
 * What the parts of one PostgreSQL session share: the two sockets, the answers the target owes
 * (`expects`), and the session state the proxy mirrors from the server (transaction status,
 * search_path, prepared statements, cursors) to decide and mask as the server will run.
 * Internal to the PostgreSQL front door: ClientIntake, ExtendedBatch, SessionDecisions and
 * BackendDispatch each read and change it, in the one event-loop turn they run in.
 */
export class SessionCore {
  readonly id: string;
  /** The agent's socket; replaced by its TLS wrapper when the agent asks for TLS. */
  client: ClientSocket;
  readonly ctx: SessionContext;
  readonly ports: GovernancePorts;
  /** The session's audit port (in `ports`): its records of the target's answers wait for their write to the agent. */
  readonly relayingAudit: RelayingAudit;
  readonly resource: PostgresResourceConfig;
  readonly audit: SessionAudit;
  subject: Subject | undefined;
  upstream: Socket | undefined;
  upstreamReader: FrameReader | undefined;
  clientReader: FrameReader | undefined;
  transactionStatus: number = TransactionStatus.Idle;
  commands = 0;
  closed = false;
  /** The target sent a FATAL (e.g. pg_terminate_backend's 57P01): its close is the end the agent was told of. */
  targetEnded = false;
  /** Commands held for approval: aborted when the session ends. */
  readonly holds = new Set<AbortController>();
  /** The agent cancelled while its next statement was held by the proxy: that statement is answered as cancelled. */
  cancelHeld = false;

  // client -> proxy
  /** Client bytes read but not handled yet (ClientIntake's queue): past a bound the socket is paused. */
  queuedBytes = 0;
  #upstreamBlocked = false;
  clientBlocked = false;
  /**
   * The agent's events wait for the bus beyond its share of the queue: its client is not read,
   * nor its queued statements decided, until they are acknowledged.
   */
  auditBlocked = false;
  /** As auditBlocked, for the target's messages: set when they were what made the events (results). */
  targetHeldForAudit = false;
  /** The target's messages are held while the catalog resolves (BackendDispatch): not resumed under it. */
  upstreamHeldForCatalog = false;
  /** The intake, waiting while auditBlocked. */
  backlogWaiters: Array<() => void> = [];
  pipeline = newPipeline();
  discardUntilSync = false;
  readonly toUpstream = new Outbox();

  // session state
  readonly registry = new StatementRegistry();
  searchPath: string[] | undefined;
  /** The database's encoding (server_encoding at startup): what SQL_ASCII passes through unconverted. */
  serverEncoding: string | undefined;
  /** The profile of the latest allowed command: applied to target messages not tied to one (async notices). */
  lastMasker: ProfileMasker | undefined;
  /**
   * A command of the current transaction named a covered column. Errors raised at its end (a
   * WITH HOLD cursor materialised at COMMIT or Sync, a deferred constraint) quote those values
   * under a COMMIT that names none: they get the strictest column rule too.
   */
  coveredInTransaction = false;
  /**
   * A command of the current transaction writes a table whose reads are guarded: every server
   * text until the transaction ends is withheld (a deferred constraint fails at COMMIT, quoting
   * the row).
   */
  withheldInTransaction = false;
  /** CopyDone and CopyFail messages the client has sent (see BackendDispatch's copyInStarted). */
  copyEndsSent = 0;
  /** Set while the proxy re-reads search_path: decisions wait for it. */
  searchPathRefresh: Promise<void> | undefined;
  /** An extended-protocol statement ran that may have changed search_path: read it at the Sync. */
  searchPathDue = false;
  /** Decisions waiting until the target has answered everything sent to it. */
  settleWaiters: (() => void)[] = [];
  /**
   * An Execute went upstream with no Sync after it yet. PostgreSQL reports changed settings
   * (ParameterStatus) only with ReadyForQuery, so until then a change it made is not visible.
   */
  executedSinceSync = false;
  readonly #effects = new SessionEffectsCache();
  /** A DDL or admin statement was let through since the last ReadyForQuery outside a transaction. */
  schemaChanged = false;
  /** The catalog facts of the latest decision, for the masking checks that follow it. */
  decidedWith: TargetCatalogFacts | undefined;
  /** The catalog's schemaEpoch taken before decidedWith was (see TableCatalog.factsCurrent). */
  decidedAtEpoch = 0;
  readonly profiles = new SessionProfiles((profile) => this.ports.masking.masker(profile));
  readonly results: ResultRelay;

  // proxy -> client
  /** What the target owes an answer to, in order: each backend message is paired with the head. */
  readonly expects: Expect[] = [];
  /** Converts into the agent's client encoding when that is not UTF8 (no edge otherwise). */
  readonly toClient = new ClientOutbox();
  clientEncoding: SessionClientEncoding | undefined;

  constructor(
    client: ClientSocket,
    ctx: SessionContext,
    /** Ends the session once (PostgresSession's close): tells the client why when there is a reason to. */
    readonly close: (reason: string, fatal?: { code: string; message: string }) => void,
  ) {
    this.client = client;
    this.ctx = ctx;
    this.relayingAudit = new RelayingAudit(ctx.ports.audit);
    this.ports = { ...ctx.ports, audit: this.relayingAudit };
    this.resource = ctx.resource;
    this.id = ctx.ports.newId();
    this.audit = new SessionAudit(this.relayingAudit, this.id, ctx.resource.name, `${client.remoteAddress ?? 'unknown'}:${client.remotePort ?? 0}`);
    this.results = new ResultRelay(ctx.ports.recording, ctx.catalog, this.registry, this.profiles, this.audit);
  }

  flushUpstream(): void {
    const upstream = this.upstream;
    if (!upstream || this.toUpstream.empty || this.closed) return;
    if (!this.toUpstream.flush(upstream) && !this.#upstreamBlocked) {
      this.#upstreamBlocked = true;
      this.updateClientFlow();
      upstream.once('drain', () => {
        this.#upstreamBlocked = false;
        this.updateClientFlow();
      });
    }
  }

  /**
   * Pauses the session while its agent is past its share of the audit queue (AuditPort.backlogged):
   * one agent that makes events faster than the bus takes them (a pipeline of thousands of
   * statements, a stream of results) is slowed on its own, and every other session goes on.
   */
  pauseWhileBacklogged(holdTarget: boolean): void {
    if (this.closed || !this.ports.audit.backlogged) return;
    if (!this.auditBlocked) {
      if (!this.ports.audit.backlogged(this.id, (outage) => (outage ? this.#auditGone() : this.#backlogDrained()))) return;
      this.auditBlocked = true;
      this.updateClientFlow();
    }
    // The target is read on while only the agent's statements make the events: their answers
    // are what lets the backlog (decisions kept for their outcome) turn into fewer events.
    if (holdTarget && !this.targetHeldForAudit) {
      this.targetHeldForAudit = true;
      this.upstream?.pause();
    }
  }

  #backlogDrained(): void {
    this.auditBlocked = false;
    if (this.targetHeldForAudit) {
      this.targetHeldForAudit = false;
      if (!this.closed && !this.clientBlocked && !this.upstreamHeldForCatalog) this.upstream?.resume();
    }
    this.updateClientFlow();
    for (const resume of this.backlogWaiters.splice(0)) resume();
  }

  /** The bus went away while the session was paused: nothing would resume it, and it ends as audit unavailable. */
  #auditGone(): void {
    this.close('audit unavailable', { code: SqlState.SystemError, message: "audit unavailable: this agent's earlier statements cannot be recorded" });
  }

  /** Resolves once the session is no longer paused for its agent's audit backlog (or it closed). */
  backlogDrained(): Promise<void> {
    if (!this.auditBlocked || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.backlogWaiters.push(resolve));
  }

  /** Reads from the client only while the target keeps up, the held queue is bounded and the audit keeps up with the agent. */
  updateClientFlow(): void {
    if (this.closed) return;
    const hold = this.#upstreamBlocked || this.queuedBytes > MAX_QUEUED_BYTES || this.auditBlocked;
    if (hold && !this.client.isPaused()) this.client.pause();
    else if (!hold && this.client.isPaused()) this.client.resume();
  }

  /**
   * Answers a refused command and leaves the target's transaction as an error of the server's
   * own would: aborted inside a transaction block (a later COMMIT rolls back), untouched outside
   * one. The proxy's status byte alone would not do: the target would still commit.
   * @see https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-EXT-QUERY
   */
  refuseOnTarget(refusal: Refusal, sync: boolean): void {
    this.expects.push({ kind: 'refused', message: refusalMessage(refusal), sync });
    this.toUpstream.push(TARGET_REFUSAL);
    this.toUpstream.push(sync ? SYNC : FLUSH);
  }

  /**
   * Resolves once the target has answered everything sent to it so far, so the session state
   * the proxy mirrors (lexer settings, statements, search_path) is the server's, not a guess.
   */
  settled(): Promise<void> {
    if (this.expects.length === 0 || this.closed) return Promise.resolve();
    // The server holds back extended-protocol answers until a Sync or Flush: ask for them.
    this.toUpstream.push(FLUSH);
    this.flushUpstream();
    return new Promise((resolve) => this.settleWaiters.push(resolve));
  }

  wakeIfSettled(): void {
    if (this.expects.length === 0) for (const wake of this.settleWaiters.splice(0)) wake();
  }

  /**
   * Portals end with their transaction; a schema change this session made is committed or gone,
   * so the catalog facts are read again and decisions stop assuming uncommitted changes.
   */
  transactionEnded(): void {
    this.registry.forgetPortals();
    this.endSchemaChange();
  }

  /** A DDL or admin statement was let through: every session's facts are in doubt until its transaction ends. */
  beginSchemaChange(): void {
    if (this.schemaChanged) return;
    this.schemaChanged = true;
    this.ctx.catalog.schemaChangeBegan();
  }

  /** The transaction of a schema change ended, or the session did (its COMMIT may have gone through). */
  endSchemaChange(): void {
    if (!this.schemaChanged) return;
    this.schemaChanged = false;
    this.ctx.catalog.schemaChangeEnded();
  }

  effectsOf(text: string, searchPath?: readonly string[]): SessionStateEffects {
    return this.#effects.of(text, searchPath);
  }

  /**
   * Whether running `text`, decided as `decision`, runs code its text does not show, which may
   * change search_path: a cursor's query (FETCH, MOVE), a write while the database has a trigger
   * of the user's anywhere (a foreign key's cascade fires another table's), a read of a view or of
   * a relation whose rules rewrite it. Unknown catalog facts count as all of these, as do facts
   * read before a schema change of this session not yet committed (a trigger it created).
   */
  runsHiddenCode(text: string, decision: Decision): boolean {
    const effects = this.effectsOf(text);
    if (effects.runsCursorQuery) return true;
    const facts = this.schemaChanged ? undefined : this.decidedWith;
    if (effects.writes && (!facts?.triggeredRelations || facts.triggeredRelations.size > 0)) return true;
    return decision.tables.some((table) => !facts || facts.rewritingRelations.has(table));
  }

  /**
   * Whether code a statement of the message runs unseen (as runsHiddenCode counts it) comes before
   * a later statement's name without a schema: the path is read again only after the message, so
   * that name would be decided on the path from before the code.
   */
  hiddenCodeBeforeUnqualified(text: string, decision: Decision): boolean {
    const effects = this.effectsOf(text);
    if (effects.unqualifiedAfterCursorQuery) return true;
    const facts = this.schemaChanged ? undefined : this.decidedWith;
    if (effects.unqualifiedAfterWrite && (!facts?.triggeredRelations || facts.triggeredRelations.size > 0)) return true;
    // Which statement reads a view is not told apart: any view read with a later unqualified name counts.
    return effects.unqualifiedAfterFirstStatement && decision.tables.some((table) => !facts || facts.rewritingRelations.has(table));
  }

  /**
   * Reads search_path from the server again after a command that may have changed it; the next
   * decision waits for it. A failed read leaves it unknown (decisions refuse) unless the
   * transaction is aborted: then nothing but its end runs, and that end reads it again.
   */
  refreshSearchPath(): void {
    let done!: (rows: (string | null)[][] | undefined) => void;
    const refresh = new Promise<void>((resolve) => {
      done = (rows) => {
        if (rows) this.searchPath = schemasOf(rows);
        else if (this.transactionStatus !== TransactionStatus.Failed) this.searchPath = undefined;
        if (this.searchPathRefresh === refresh) this.searchPathRefresh = undefined;
        resolve();
      };
    });
    this.searchPathRefresh = refresh;
    this.expects.push({ kind: 'internal', rows: [], done });
    this.toUpstream.push(encodeQuery(SEARCH_PATH_QUERY));
    this.flushUpstream();
  }

  /**
   * Every field a command gets later is set here, so that all commands share one object shape
   * (a property added afterwards, or a copy spread with one more, gives V8 a new shape per command).
   */
  newCommand(id: string, masker: ProfileMasker | undefined, sql: string, { encoding, withholdsServerTexts = false, searchPath = this.searchPath }: CommandOptions = {}): Command {
    const { masker: effective, declares, factsEpoch } = this.profiles.command(sql, masker, this.decidedAtEpoch);
    if (withholdsServerTexts) this.withheldInTransaction = true;
    // A later message of the pipeline that names one of these cursors means the cursor.
    for (const [name] of declares) this.pipeline.portals.delete(name);
    this.lastMasker = effective;
    const catalog = this.schemaChanged && this.decidedWith ? withUncommittedChanges(this.decidedWith) : this.decidedWith;
    if (effective && touchesCoveredColumn(effective, sql, searchPath, this.registry.prepared, catalog)) this.coveredInTransaction = true;
    const preparedChanges = [...this.effectsOf(sql).preparedStatements];
    return {
      id,
      masker: effective,
      withholdsServerTexts,
      sql,
      searchPath,
      catalog,
      factsEpoch,
      lineage: undefined,
      started: performance.now(),
      tags: [],
      preparedChanges,
      declares,
      copyEnds: this.copyEndsSent,
      copyIns: 0,
      cursorsConfirmed: 0,
      error: undefined,
      done: false,
      encoding,
      encodingReport: undefined,
    };
  }
}
