import type { Socket } from 'node:net';
import type { SecureContext } from 'node:tls';
import { encodeAuthenticationOk, encodeBackendKeyData, encodeErrorResponse, encodeReadyForQuery, encodeTerminate, FrameReader, type Frame } from '@sluice/codec-pg';
import type { PostgresResourceConfig } from '@sluice/config';
import { SluiceErrorCode, type Subject } from '@sluice/contracts';
import type { GovernancePorts } from '../ports.js';
import { BackendDispatch } from './backend-dispatch.js';
import type { CancelKeys } from './cancel.js';
import type { TableCatalog } from './catalog.js';
import { ClientIntake } from './client-intake.js';
import { ExtendedBatch } from './extended-batch.js';
import { SocketFrames } from './frame-source.js';
import { login } from './login.js';
import { SessionCore } from './session-core.js';
import { SessionDecisions } from './session-decisions.js';
import { SqlState } from './sqlstate.js';
import { negotiateStartup, PRE_LOGIN_BUFFER_LIMIT, type ClientSocket } from './startup-negotiation.js';
import { startedParameters } from './startup-parameters.js';
import type { UpstreamConnection } from './upstream.js';

export interface SessionContext {
  readonly resource: PostgresResourceConfig;
  readonly ports: GovernancePorts;
  readonly cancelKeys: CancelKeys;
  readonly catalog: TableCatalog;
  readonly secretsDir: string;
  /** The listener's certificate: agents that ask for TLS get it. */
  readonly tls: SecureContext | undefined;
  /** Longest client message accepted (bytes). */
  readonly maxMessageLength: number;
  /** Longest SQL text decided and run (bytes); a longer one is refused with 54000. */
  readonly maxStatementBytes: number;
  /** Time a client gets to authenticate, and the target to accept the session. */
  readonly startupTimeoutMs: number;
  /** Live sessions, so the adapter can close them on shutdown. */
  readonly sessions: Set<PostgresSession>;
}

/** setTimeout's ceiling; longer token lifetimes re-arm. */
const MAX_TIMER_MS = 0x7fffffff;
/** How long a closed session's end waits for the decisions of messages it had taken (see #close). */
const END_WAITS_FOR_DECISIONS_MS = 10_000;

/**
 * One agent connection: authenticates the agent with its token, opens the target session with
 * the resource's credentials, then decides every command before any of its bytes go upstream and
 * masks every row on the way back.
 *
 * The parts, in the order a command meets them:
 * - login.ts: token, connection limit, session policy, startup parameters, the target session;
 * - client-intake.ts: the agent's messages queued in order, simple Query decided and sent;
 * - extended-batch.ts: Parse/Bind/Describe/Execute up to a Sync, each decided before it goes;
 * - session-decisions.ts: this session's use of the governance core (decide, record, hold, mask);
 * - backend-dispatch.ts: the target's answers paired with what was sent, rows masked;
 * - session-core.ts: what they share (the expected answers, the mirrored session state).
 */
export class PostgresSession {
  readonly id: string;
  readonly #core: SessionCore;
  readonly #intake: ClientIntake;
  readonly #backend: BackendDispatch;
  readonly #decisions: SessionDecisions;
  readonly #startedAt = Date.now();
  #cancelKey: { processId: number; secretKey: number } | undefined;
  #started = false;
  #expiryTimer: NodeJS.Timeout | undefined;

  constructor(client: ClientSocket, ctx: SessionContext) {
    this.#core = new SessionCore(client, ctx, (reason, fatal) => this.#close(reason, fatal));
    this.id = this.#core.id;
    const decisions = new SessionDecisions(this.#core);
    this.#decisions = decisions;
    this.#intake = new ClientIntake(this.#core, decisions, new ExtendedBatch(this.#core, decisions));
    this.#backend = new BackendDispatch(this.#core);
  }

  // ---------------------------------------------------------------- startup

  /** Runs the connection to its end. Never rejects for anything the peers do. */
  async run(): Promise<void> {
    const core = this.#core;
    const ctx = core.ctx;
    (core.client as Partial<Socket>).setNoDelay?.(true);
    core.client.on('error', () => this.#close('client_error'));
    let frames = new SocketFrames(core.client, new FrameReader({ phase: 'startup', maxLength: ctx.maxMessageLength }), PRE_LOGIN_BUFFER_LIMIT);
    const timer = setTimeout(() => core.client.destroy(), ctx.startupTimeoutMs);
    let upstream: UpstreamConnection | undefined;
    let pending: Frame[];
    try {
      const startup = await negotiateStartup(core.client, frames, {
        tls: ctx.tls,
        maxMessageLength: ctx.maxMessageLength,
        cancelKeys: ctx.cancelKeys,
        secured: (secure) => {
          secure.on('error', () => this.#close('client_error'));
          core.client = secure;
        },
        abandon: (reason) => this.#abandon(reason),
      });
      if (!startup) return;
      frames = startup.frames;
      const loggedIn = await login(core.client, frames, startup.parameters, ctx, (...refusal) => this.#reject(...refusal));
      if (!loggedIn) return;
      upstream = loggedIn.upstream;
      core.subject = loggedIn.subject;
      core.searchPath = loggedIn.searchPath;
      core.serverEncoding = loggedIn.serverEncoding;
      core.clientEncoding = loggedIn.clientEncoding;
      const edge = loggedIn.edge;
      core.toClient.edge = edge;
      pending = frames.detach();
      core.clientReader = frames.reader;
      // An agent that hung up while its login was checked was found gone by login (recorded, its place given back).

      // The agent gets the target's parameters, its pid and a secret of the proxy's own (CancelRequest maps it).
      core.upstream = upstream.socket;
      core.upstreamReader = upstream.reader;
      core.transactionStatus = upstream.transactionStatus;
      this.#cancelKey = ctx.cancelKeys.issue({
        host: core.resource.target.host,
        port: core.resource.target.port,
        processId: upstream.processId,
        secretKey: upstream.secretKey,
      }, () => this.#intake.cancelRequested());
      this.#started = true;
      ctx.sessions.add(this);
      core.audit.started(loggedIn.subject, loggedIn.readOnly, startedParameters(loggedIn.request, (text) => this.#decisions.maskedText(text, undefined)));
      core.client.write(
        Buffer.concat([
          encodeAuthenticationOk(),
          ...(edge ? upstream.parameterStatus.map((status) => edge.toClient(status, undefined)) : upstream.parameterStatus),
          encodeBackendKeyData(this.#cancelKey.processId, this.#cancelKey.secretKey),
          encodeReadyForQuery(upstream.transactionStatus),
        ]),
      );
      this.#armExpiry(loggedIn.expiresAt);
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === 'ERR_PROTOCOL_MALFORMED') {
        this.#reject('protocol_malformed', code, SqlState.ProtocolViolation, 'invalid startup packet');
      } else {
        core.client.destroy();
        upstream?.socket.destroy();
      }
      return;
    } finally {
      clearTimeout(timer);
    }

    const up = upstream.socket;
    up.on('data', this.#backend.onUpstreamData);
    // After the target's own FATAL the agent has its reason: no second one of the proxy's.
    up.on('close', () =>
      core.targetEnded ? this.#close('target_ended_session') : this.#close('upstream_closed', { code: SqlState.ConnectionFailure, message: 'the connection to the target was lost' }),
    );
    up.on('error', () =>
      core.targetEnded ? this.#close('target_ended_session') : this.#close('upstream_error', { code: SqlState.ConnectionFailure, message: 'the connection to the target failed' }),
    );
    core.client.on('data', this.#intake.onClientData);
    core.client.on('end', () => this.#close('client_closed'));
    core.client.on('close', () => this.#close('client_closed'));
    // What the agent sent while the session was being set up but could not be read (a malformed
    // message, a close): the socket's own event is gone, so it is handled here.
    if (frames.failure) {
      this.#intake.clientReadFailed(frames.failure);
      return;
    }
    if (upstream.pending.length > 0) this.#backend.handleUpstreamFrames(upstream.pending);
    if (pending.length > 0) this.#intake.enqueue(pending);
    const rest = core.clientReader.takeLeftover();
    if (rest.length > 0) this.#intake.onClientData(rest);
  }

  /** Drops the connection during startup without an answer; session.rejected to the audit. */
  #abandon(reason: string): void {
    this.#core.closed = true;
    this.#core.audit.rejected(reason, 'ERR_PROTOCOL_MALFORMED');
    this.#core.client.destroy();
  }

  /** Refuses the connection during startup: FATAL to the client, session.rejected to the audit. */
  #reject(reason: string, code: string, sqlstate: string, message: string, subject?: Subject): void {
    this.#core.closed = true;
    this.#core.audit.rejected(reason, code, subject);
    this.#core.client.end(encodeErrorResponse({ severity: 'FATAL', code: sqlstate, message }));
    setTimeout(() => this.#core.client.destroy(), 1000).unref();
  }

  #armExpiry(expiresAt: Date | undefined): void {
    if (!expiresAt) return;
    const delay = expiresAt.getTime() - this.#core.ports.now().getTime();
    this.#expiryTimer = setTimeout(
      () => {
        if (delay > MAX_TIMER_MS) this.#armExpiry(expiresAt);
        else this.#close('token_expired', { code: SqlState.InvalidPassword, message: 'token expired' });
      },
      Math.max(0, Math.min(delay, MAX_TIMER_MS)),
    );
    this.#expiryTimer.unref();
  }

  /** Ends the session once: tells the client why (FATAL) when there is a reason to. */
  #close(reason: string, fatal?: { code: string; message: string }): void {
    if (this.#core.closed) return;
    this.#core.closed = true;
    clearTimeout(this.#expiryTimer);
    for (const hold of this.#core.holds) hold.abort();
    this.#core.holds.clear();
    for (const expect of this.#core.expects) if (expect.kind === 'internal') expect.done(undefined);
    // Waiting decisions wake up, see the session closed and refuse.
    for (const wake of this.#core.settleWaiters.splice(0)) wake();
    for (const wake of this.#core.backlogWaiters.splice(0)) wake();
    // A COMMIT may have reached the target before the connection went: the facts are read again.
    this.#core.endSchemaChange();
    if (this.#cancelKey) this.#core.ctx.cancelKeys.release(this.#cancelKey.processId, this.#cancelKey.secretKey);
    this.#core.ctx.sessions.delete(this);
    const client = this.#core.client;
    if (fatal && client.writable) {
      client.end(encodeErrorResponse({ severity: 'FATAL', ...fatal }));
      setTimeout(() => client.destroy(), 1000).unref();
    } else if (this.#core.targetEnded && client.writable) {
      // Let the target's FATAL, already written, reach the agent before the socket goes.
      client.end();
      setTimeout(() => client.destroy(), 1000).unref();
    } else client.destroy();
    const upstream = this.#core.upstream;
    if (upstream && !upstream.destroyed) {
      if (upstream.writable) upstream.end(encodeTerminate());
      setTimeout(() => upstream.destroy(), 1000).unref();
    }
    if (!this.#started) return;
    const durationMs = Date.now() - this.#startedAt;
    const recordEnd = (): void => {
      this.#recordUnanswered(reason);
      this.#core.audit.ended(reason, this.#core.commands, durationMs);
    };
    if (!this.#intake.busy) return recordEnd();
    // A message being decided when the session closed (a pipeline the agent hung up on) is
    // recorded when its decision comes, refused as the session is closed: the end waits for it,
    // so that it stays the session's last event (after it, the audit port numbers the session's
    // events from 1 again). Its wait is bounded: a decision that never comes cannot cost the end.
    let timer: NodeJS.Timeout | undefined;
    const bounded = new Promise<void>((resolve) => (timer = setTimeout(resolve, END_WAITS_FOR_DECISIONS_MS)));
    void Promise.race([this.#intake.idle(), bounded]).then(() => {
      clearTimeout(timer);
      try {
        recordEnd();
      } catch {
        // The publisher closed meanwhile (shutdown): it refuses every event from then on.
      }
    });
  }

  /**
   * Commands sent to the target whose answer had not come when the session ended (the agent hung
   * up mid-statement, the target went away): each gets its completion, marked as unknown, so no
   * decided command is left without an outcome in the record. The target may well have run it.
   * What was relayed of its result is recorded first (result.returned of the rows sent).
   */
  #recordUnanswered(reason: string): void {
    for (const expect of this.#core.expects) {
      if ((expect.kind !== 'query' && expect.kind !== 'execute') || expect.command.done) continue;
      // Rows (or COPY data) already relayed to the agent left the proxy: on the record as the
      // result so far, masked as they were sent, before the command's unknown end.
      if (expect.result || expect.copy) this.#core.results.finish(expect);
      expect.command.error ??= { code: SluiceErrorCode.ConnectionClosed, message: `the session ended (${reason}) before the target answered: the command may have run` };
      this.#core.audit.completed(expect.command, false);
    }
  }

  /** Closes the session from outside (shutdown). */
  shutdown(): void {
    this.#close('proxy_shutdown', { code: '57P01', message: 'the proxy is shutting down' });
  }
}
