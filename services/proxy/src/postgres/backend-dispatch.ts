import { BackendCode, decodeBackend, decodeDataRow, decodeNoticeFields, decodeRowDescription, encodeErrorResponse, rowDescriptionTableOids, TransactionStatus, type Frame } from '@sluice/codec-pg';
import { ResultWithheldError } from '@sluice/contracts';
import { EncodingConversionError } from './client-encoding.js';
import { ClientEdge } from './client-encoding-frames.js';
import { reportingClientEncoding, type EncodingSwitch } from './client-encoding-session.js';
import { endsTargetSkip, stopsSkipping, type Command, type Expect } from './expectations.js';
import type { Outbox } from './outbox.js';
import { maskNotification } from './server-texts.js';
import type { SessionCore } from './session-core.js';
import { unreadableParameter } from './session-state.js';
import { SqlState } from './sqlstate.js';
import { UpstreamError } from './upstream.js';

/** An ErrorResponse whose severity ends the session (FATAL, PANIC). */
const isFatal = (frame: Frame): boolean => {
  const fields = decodeNoticeFields(frame.body, 'ErrorResponse');
  const severity = fields.V ?? fields.S;
  return severity === 'FATAL' || severity === 'PANIC';
};

/**
 * The target's messages, target -> client: each paired with the head of what the session
 * expects (a query's rows, a Describe's columns, a refusal's stand-in error), rows and notices
 * masked, internal answers (search_path reads, extra Describes) kept from the agent, and the
 * mirrored session state (transaction status, prepared statements, cursors) updated as the
 * server confirms it.
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html
 */
export class BackendDispatch {
  /** Upstream frames held while the catalog resolves table columns for a RowDescription. */
  #upstreamBacklog: Frame[] | undefined;

  /** A result was withheld: the target's messages up to its ReadyForQuery are dropped. */
  #dropUntilReady = false;

  constructor(
    private readonly session: SessionCore,
  ) {}

  readonly onUpstreamData = (chunk: Buffer): void => {
    if (this.session.closed) return;
    let frames: Frame[];
    try {
      frames = this.session.upstreamReader!.push(chunk);
    } catch {
      this.session.close('upstream_malformed', { code: SqlState.ConnectionFailure, message: 'the target sent an invalid message' });
      return;
    }
    this.handleUpstreamFrames(frames);
  };

  /**
   * Relays the target's frames to the agent. The agent's answer is written before its events are
   * recorded (they only queue for the bus); the agent's share of the queue is judged after them.
   */
  handleUpstreamFrames(frames: readonly Frame[]): void {
    this.session.relayingAudit.relaying(
      () => this.#relayFrames(frames),
      () => this.session.close('proxy_error', { code: SqlState.SystemError, message: 'internal proxy error' }),
    );
    if (!this.session.closed && !this.#upstreamBacklog) this.session.pauseWhileBacklogged(true);
  }

  #relayFrames(frames: readonly Frame[]): void {
    if (this.#upstreamBacklog) {
      for (const frame of frames) this.#upstreamBacklog.push(frame);
      return;
    }
    const out = this.session.toClient;
    for (let i = 0; i < frames.length && !this.session.closed; i++) {
      const frame = frames[i]!;
      if (frame.code === BackendCode.RowDescription && this.#holdForCatalog(frames, i, out)) return;
      try {
        this.#handleBackend(frame, out);
      } catch (error) {
        if (error instanceof ResultWithheldError || error instanceof EncodingConversionError || (error as { code?: string }).code === 'ERR_PROTOCOL_MALFORMED') {
          // Never a raw row: what is left of this response is replaced by an error. The frames
          // after it in this chunk (its ReadyForQuery, the next commands' answers) still go
          // through, or the session would wait forever and later answers pair with wrong commands.
          this.#withhold(out, error as Error);
        } else {
          this.session.close('proxy_error', { code: SqlState.SystemError, message: 'internal proxy error' });
          return;
        }
      }
    }
    if (this.session.closed) return;
    this.session.wakeIfSettled();
    if (!out.flush(this.session.client) && !this.session.clientBlocked) {
      // The agent reads slower than the target answers: stop reading the target until it drains.
      const upstream = this.session.upstream!;
      this.session.clientBlocked = true;
      upstream.pause();
      this.session.client.once('drain', () => {
        this.session.clientBlocked = false;
        if (!this.session.targetHeldForAudit && !this.session.upstreamHeldForCatalog) upstream.resume();
      });
    }
  }

  /**
   * A RowDescription of a masked result whose tables' columns are not known yet: holds this and
   * the following frames until the catalog has them, so `schema.table.column` rules apply from
   * the first row. Returns true when it held.
   */
  #holdForCatalog(frames: readonly Frame[], index: number, out: Outbox): boolean {
    if (this.#dropUntilReady) return false;
    const head = this.session.expects[0];
    const masker =
      head?.kind === 'query' ? head.command.masker
      : head?.kind === 'describePortal' ? head.portal.statement.masker
      : head?.kind === 'describeStatement' ? head.statement.masker
      : undefined;
    if (!masker) return false;
    const missing = this.session.ctx.catalog.missing(rowDescriptionTableOids(frames[index]!.body));
    if (missing.length === 0) return false;
    const upstream = this.session.upstream!;
    this.#upstreamBacklog = frames.slice(index);
    out.flush(this.session.client);
    upstream.pause();
    this.session.upstreamHeldForCatalog = true;
    const resume = (failed: boolean): void => {
      const backlog = this.#upstreamBacklog ?? [];
      this.#upstreamBacklog = undefined;
      this.session.upstreamHeldForCatalog = false;
      if (this.session.closed) return;
      try {
        if (failed) {
          // Column rules cannot be matched without the catalog: the result is withheld, not sent raw.
          this.#withhold(this.session.toClient, new ResultWithheldError('the target catalog could not be read'));
        }
        this.handleUpstreamFrames(backlog);
        if (!this.session.clientBlocked && !this.session.targetHeldForAudit) upstream.resume();
      } catch {
        this.session.close('proxy_error', { code: SqlState.SystemError, message: 'internal proxy error' });
      }
    };
    this.session.ctx.catalog.resolve(missing).then(
      () => resume(false),
      () => resume(true),
    );
    return true;
  }

  /** A SET/RESET of client_encoding completed: the agent's messages are converted with it from here. */
  #switchClientEncoding(to: EncodingSwitch, out: Outbox): void {
    this.session.toClient.edge = to.encoding ? new ClientEdge(to.encoding) : undefined;
    const status = this.session.clientEncoding?.switched(to);
    if (status) out.push(status);
  }

  #withhold(out: Outbox, error: Error): void {
    const head = this.session.expects[0];
    if (head && (head.kind === 'query' || head.kind === 'execute')) {
      head.command.error = { code: SqlState.SystemError, message: error.message };
      head.result = undefined;
      head.copy = undefined;
    }
    // A value the agent's encoding cannot hold is the server's own error (22P05), not a masking failure.
    const conversion = error instanceof EncodingConversionError ? { code: error.sqlstate, message: error.message } : undefined;
    out.push(encodeErrorResponse({ severity: 'ERROR', ...(conversion ?? { code: SqlState.SystemError, message: 'result withheld: masking is unavailable' }) }));
    this.#dropUntilReady = true;
  }

  #shift(): void {
    this.session.expects.shift();
    this.session.wakeIfSettled();
  }

  #handleBackend(frame: Frame, out: Outbox): void {
    const code = frame.code;
    const head = this.session.expects[0];
    // A FATAL ends the target session whatever was due: it always reaches the agent.
    const fatal = code === BackendCode.ErrorResponse && isFatal(frame);
    if (fatal) this.session.targetEnded = true;
    if (head?.kind === 'internal' && !this.#dropUntilReady && !fatal) {
      switch (code) {
        case BackendCode.DataRow:
          head.rows.push(decodeDataRow(frame.body).map((v) => (v === null ? null : v.toString('utf8'))));
          return;
        case BackendCode.RowDescription:
        case BackendCode.CommandComplete:
        case BackendCode.EmptyQueryResponse:
          return;
        case BackendCode.ErrorResponse:
          head.failed = true;
          return;
        case BackendCode.ReadyForQuery:
          this.session.transactionStatus = frame.body[0] ?? TransactionStatus.Idle;
          if (this.session.transactionStatus === TransactionStatus.Idle) this.session.transactionEnded();
          this.session.expects.shift();
          head.done(head.failed ? undefined : head.rows);
          this.session.wakeIfSettled();
          return;
        default:
          break;
      }
    }
    if (head?.kind === 'refused' && !this.#dropUntilReady && !fatal) {
      if (code === BackendCode.ErrorResponse) {
        // The target's error for the statement sent in the refused command's place: ours instead.
        if (!head.sync) {
          out.push(head.message);
          this.#shift();
        }
        return;
      }
      if (code === BackendCode.ReadyForQuery) {
        out.push(head.message);
        this.session.expects.shift();
        if (!head.sync) {
          // The target was already skipping to a Sync when the refusal went up: this is that Sync's.
          this.#handleBackend(frame, out);
          return;
        }
        this.session.transactionStatus = frame.body[0] ?? TransactionStatus.Idle;
        if (this.session.transactionStatus === TransactionStatus.Idle) this.session.transactionEnded();
        out.push(frame.raw);
        this.session.wakeIfSettled();
        return;
      }
    }
    if (this.#dropUntilReady && !fatal) {
      if (code !== BackendCode.ReadyForQuery) return;
      this.#dropUntilReady = false;
      // Everything due before this ReadyForQuery was swallowed with the withheld result.
      while (this.session.expects[0] && !stopsSkipping(this.session.expects[0])) {
        const dropped = this.session.expects.shift()!;
        if (dropped.kind === 'execute') this.session.audit.completed(dropped.command, false);
      }
    }
    switch (code) {
      case BackendCode.DataRow: {
        const result = head?.kind === 'query' || head?.kind === 'execute' ? this.session.results.resultOf(head) : undefined;
        if (!result) {
          throw new ResultWithheldError('a row arrived without its description');
        }
        const edge = this.session.toClient.edge;
        if (!edge) {
          out.push(result.row(frame.body) ?? frame.raw);
          return;
        }
        this.session.toClient.rowFields = result.fields;
        const reported = { current: edge.encoding.name, startup: this.session.clientEncoding?.startup.name ?? edge.encoding.name };
        out.push(reportingClientEncoding(head as { command: Command }, result.fields, result.row(frame.body) ?? frame.raw, reported));
        return;
      }
      case BackendCode.RowDescription: {
        if (head?.kind === 'query') {
          head.result = this.session.results.queryResult(head.command, frame.body);
          out.push(frame.raw);
        } else if (head?.kind === 'describeStatement') {
          head.statement.description = decodeRowDescription(frame.body);
          out.push(frame.raw);
          this.#shift();
        } else if (head?.kind === 'describePortal') {
          head.portal.description = decodeRowDescription(frame.body);
          if (!head.internal) out.push(frame.raw);
          this.#shift();
        } else out.push(frame.raw);
        return;
      }
      case BackendCode.NoData:
        if (head?.kind === 'describeStatement') head.statement.description = [];
        if (head?.kind === 'describePortal') head.portal.description = [];
        if (head?.kind !== 'describePortal' || !head.internal) out.push(frame.raw);
        if (head?.kind === 'describeStatement' || head?.kind === 'describePortal') this.#shift();
        return;
      case BackendCode.ParseComplete:
      case BackendCode.BindComplete:
      case BackendCode.CloseComplete:
        out.push(frame.raw);
        if (head) this.#confirm(head);
        if (head && head.kind !== 'query') this.#shift();
        return;
      case BackendCode.CommandComplete: {
        out.push(frame.raw);
        if (head?.kind === 'query' || head?.kind === 'execute') {
          const tag = frame.body.toString('utf8', 0, Math.max(0, frame.body.length - 1));
          head.command.tags.push(tag);
          this.#applyTag(head.command, tag);
          if (head.command.encoding) this.#switchClientEncoding(head.command.encoding, out);
          this.session.results.finish(head);
          if (head.kind === 'execute') {
            this.session.audit.completed(head.command, true);
            this.#shift();
          }
        }
        return;
      }
      case BackendCode.EmptyQueryResponse:
      case BackendCode.PortalSuspended:
        out.push(frame.raw);
        if (head?.kind === 'execute') {
          head.command.tags.push(code === BackendCode.PortalSuspended ? 'SUSPENDED' : 'EMPTY');
          this.session.results.finish(head);
          this.session.audit.completed(head.command, true);
          this.#shift();
        }
        return;
      case BackendCode.CopyOutResponse: {
        if (head?.kind === 'query' || head?.kind === 'execute') {
          head.copy = this.session.results.copyOut(head.command, frame);
        }
        out.push(frame.raw);
        return;
      }
      case BackendCode.CopyData: {
        const copy = head?.kind === 'query' || head?.kind === 'execute' ? head.copy : undefined;
        if (!copy) throw new ResultWithheldError('COPY data without a COPY');
        out.push(copy.data(frame.body) ?? frame.raw);
        return;
      }
      case BackendCode.ErrorResponse: {
        const fields = this.session.results.maskNotice(frame, head, out, this.session);
        const error = { code: fields.C ?? 'XX000', message: fields.M ?? '' };
        if (head?.kind === 'query') {
          head.command.error = error;
          head.result = undefined;
          head.copy = undefined;
          return;
        }
        // Extended protocol: the server skips everything up to the Sync (a simple query sent
        // before it included: it never runs, and its answer must not be taken from a later one).
        let marked = false;
        while (this.session.expects[0] && !endsTargetSkip(this.session.expects[0])) {
          const dropped = this.session.expects.shift()!;
          if (dropped.kind === 'execute') {
            if (!marked) dropped.command.error = error;
            marked = true;
            this.session.audit.completed(dropped.command, false);
          } else if (dropped.kind === 'query') this.session.audit.completed(dropped.command, false);
          else if (dropped.kind === 'internal') dropped.done(undefined);
        }
        // No Sync sent yet (a pipeline forwarded as it came): what the client sends up to its
        // Sync the server ignores, so the proxy does not wait for answers to it either.
        if (head && !fatal && this.session.expects.length === 0) this.session.discardUntilSync = true;
        return;
      }
      case BackendCode.ReadyForQuery: {
        this.session.transactionStatus = frame.body[0] ?? TransactionStatus.Idle;
        // Protocol portals live until their transaction ends; a name reused later (a SQL cursor
        // shares the namespace) must not inherit an old portal's decision.
        if (this.session.transactionStatus === TransactionStatus.Idle) this.session.transactionEnded();
        out.push(frame.raw);
        if (head?.kind === 'query') {
          this.session.results.finish(head);
          this.session.audit.completed(head.command, head.command.error === undefined);
          this.#shift();
        } else if (head?.kind === 'sync') this.#shift();
        // Commands already sent behind this one belong to the next transaction: keep it strict for them.
        if (this.session.transactionStatus === TransactionStatus.Idle && !this.session.expects.some((e) => e.kind === 'query' || e.kind === 'execute')) {
          this.session.coveredInTransaction = false;
          this.session.withheldInTransaction = false;
        }
        return;
      }
      case BackendCode.NoticeResponse:
        this.session.results.maskNotice(frame, head, out, this.session);
        return;
      case BackendCode.NotificationResponse:
        out.push(maskNotification(frame, this.session.profiles.notifications) ?? frame.raw);
        return;
      case BackendCode.ParameterStatus: {
        const message = decodeBackend(frame) as { name: string; value: string };
        if (message.name !== 'client_encoding' || !this.session.clientEncoding) out.push(frame.raw);
        else {
          // The agent is told of its own encoding, once: the target's UTF8 is the proxy's business.
          const shown = this.session.toClient.edge?.encoding.name ?? message.value;
          if (shown !== this.session.clientEncoding.reported) {
            this.session.clientEncoding.reported = shown;
            out.push(frame.raw);
          }
        }
        // Reported unexpanded (`$user`) by PostgreSQL 18+: a sign it changed, not the schemas
        // it resolves to. Unknown until the refresh that follows the command (or the next one).
        if (message.name === 'search_path' && !this.session.searchPathRefresh) this.session.searchPath = undefined;
        const unreadable = unreadableParameter(message.name, message.value, this.session.serverEncoding);
        if (unreadable) {
          // From here the proxy cannot read text as the server will (masking reads UTF-8 too):
          // the session ends before another command is decided on a misreading.
          this.session.close('lexer_state_changed', { code: SqlState.FeatureNotSupported, message: `${unreadable}: sluice cannot read commands as the target would` });
        }
        return;
      }
      case BackendCode.Authentication:
      case BackendCode.BackendKeyData:
        // Re-authentication or a new key mid-session is not something a target does: never relayed.
        throw new UpstreamError('unexpected authentication message from the target');
      case BackendCode.CopyInResponse:
        out.push(frame.raw);
        if (head?.kind === 'query' || head?.kind === 'execute') this.#copyInStarted(head.command);
        return;
      default:
        out.push(frame.raw);
    }
  }

  /**
   * The target is in COPY FROM STDIN until the client's next CopyDone or CopyFail, and ignores a
   * Sync (or Flush) meanwhile: the Syncs the client sent before that end get no ReadyForQuery, so
   * none is waited for (else every later answer would be taken for the one before it).
   */
  #copyInStarted(command: Command): void {
    // The n-th COPY FROM STDIN of the command ends at the n-th CopyDone/CopyFail sent after it.
    const endsAt = command.copyEnds + ++command.copyIns;
    const ignored = (e: Expect): boolean => e.kind === 'sync' && e.copyEnds < endsAt;
    if (!this.session.expects.some(ignored)) return;
    const kept = this.session.expects.filter((e) => !ignored(e));
    this.session.expects.length = 0;
    this.session.expects.push(...kept);
  }

  /** ParseComplete, BindComplete, CloseComplete: the server now holds what the message asked. */
  #confirm(head: Expect): void {
    this.session.registry.confirm(head);
    if (head.kind === 'bind') this.session.profiles.forgetCursor(head.portal.name);
  }

  /** A statement's CommandComplete: what it did to the prepared statements is now true on the server. */
  #applyTag(command: Command, tag: string): void {
    if (tag === 'PREPARE' || tag === 'DEALLOCATE' || tag === 'DEALLOCATE ALL') {
      const change = command.preparedChanges.shift();
      if (change) this.session.registry.applyPreparedChange(change, command.sql);
    } else if (tag === 'DECLARE CURSOR') {
      const declared = command.declares[command.cursorsConfirmed++];
      if (declared) {
        this.session.profiles.confirmCursor(declared);
        // The name is free only once its old portal was closed (SQL CLOSE closes protocol portals
        // too): from here it is this cursor, never the old portal's decision and columns.
        this.session.registry.forgetPortal(declared[0]);
      }
    } else if (tag === 'COMMIT' || tag === 'ROLLBACK') {
      // COMMIT AND CHAIN ends the transaction without the session going idle: the schema change
      // is committed now, and other sessions must decide with it.
      this.session.transactionEnded();
    } else if (tag === 'DISCARD ALL') {
      this.session.registry.discardAll();
    }
  }
}
