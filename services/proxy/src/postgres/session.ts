import type { Socket } from 'node:net';
import type { SecureContext } from 'node:tls';
import {
  BackendCode,
  decodeBackend,
  decodeDataRow,
  decodeFrontend,
  decodeNoticeFields,
  decodePassword,
  decodeRowDescription,
  rowDescriptionTableOids,
  encodeAuthenticationCleartextPassword,
  encodeAuthenticationOk,
  encodeBackendKeyData,
  encodeDescribe,
  encodeErrorResponse,
  encodeQuery,
  encodeReadyForQuery,
  encodeTerminate,
  FrameReader,
  FrontendCode,
  TransactionStatus,
  type Frame,
  type FrontendMessage,
  MessageTooLongError,
} from '@sluice/codec-pg';
import { readSecret, RECORDING_DEFAULTS, type PostgresResourceConfig } from '@sluice/config';
import { ConnectionClosedError, failClosedDecision, maskProfileOf, ProtocolMalformedError, ResultWithheldError, type Subject } from '@sluice/contracts';
import type { ProfileMasker } from '@sluice/masking-engine';
import type { SessionStateEffects, TargetCatalogFacts } from '@sluice/sql-classifier';
import { sqlJustification } from '../justification.js';
import type { Decision, GovernancePorts, GovernedCommand } from '../ports.js';
import { commandHash } from '../governance/approval-hold.js';
import { Governor } from '../governance/governor.js';
import type { CancelKeys } from './cancel.js';
import type { TableCatalog } from './catalog.js';
import { changesPreparedStatements, endsTargetSkip, newPipeline, stopsSkipping, type Command, type Expect, type Portal, type Refusal, type Statement } from './expectations.js';
import { SocketFrames } from './frame-source.js';
import { negotiateStartup, type ClientSocket } from './startup-negotiation.js';
import { Outbox } from './outbox.js';
import { coveredValueEscape, touchesCoveredColumn } from './lineage.js';
import { approvalRefusal, denial, denialMessage, refusalMessage, TARGET_REFUSAL } from './refusals.js';
import { SessionAudit } from './session-audit.js';
import { StatementRegistry } from './statement-registry.js';
import { SessionProfiles } from './session-profiles.js';
import { maskNotification } from './server-texts.js';
import { ResultRelay } from './result-relay.js';
import { EncodingConversionError } from './client-encoding.js';
import { ClientEdge, ClientOutbox } from './client-encoding-frames.js';
import { encodingSwitch, SessionClientEncoding, type EncodingPlan, type EncodingSwitch } from './client-encoding-session.js';
import { normaliseSql } from './approval-text.js';
import { FLUSH, SYNC, schemasOf, SEARCH_PATH_QUERY, SESSION_START_QUERY, SessionEffectsCache, unreadableParameter } from './session-state.js';
import { SqlState } from './sqlstate.js';
import { readStartupParameters, requestedClientEncoding, sessionSettings, settingRefusedByTarget, startedParameters, StartupParameterRefusal, type StartupRequest } from './startup-parameters.js';
import { connectUpstream, UpstreamError, type UpstreamConnection } from './upstream.js';

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

/** The widest batch of extended-protocol messages held before deciding without a Sync. */
const MAX_BATCH_MESSAGES = 1000;
const MAX_BATCH_BYTES = 4 << 20;
/** Client bytes queued while a command is held (approval) before the socket is paused. */
const MAX_QUEUED_BYTES = 16 << 20;
/** setTimeout's ceiling; longer token lifetimes re-arm. */
const MAX_TIMER_MS = 0x7fffffff;

/** An ErrorResponse whose severity ends the session (FATAL, PANIC). */
const isFatal = (frame: Frame): boolean => {
  const fields = decodeNoticeFields(frame.body, 'ErrorResponse');
  const severity = fields.V ?? fields.S;
  return severity === 'FATAL' || severity === 'PANIC';
};

/**
 * Masked beyond audit.recording.maxCommandBytes, so that a value the cut falls inside is still
 * found whole by the detectors (none is this long).
 */
const MASKED_MARGIN_CHARS = 64 * 1024;
const DEFAULT_MAX_COMMAND_BYTES = RECORDING_DEFAULTS.maxCommandBytes;

/** A simple Query on its way: decided, maybe held, then forwarded or refused. */
interface DecidedQuery {
  readonly frame: Frame;
  readonly commandId: string;
  readonly text: string;
  /** A SET/RESET of client_encoding, carried out by the proxy. */
  readonly encodingPlan: EncodingPlan | undefined;
}

const quoteIdent = (name: string): string => `"${name.replaceAll('"', '""')}"`;

const paramText = (formats: readonly number[], params: readonly (Buffer | null)[]): (string | null)[] =>
  params.map((value, i) => {
    if (value === null) return null;
    const format = formats.length === 0 ? 0 : formats.length === 1 ? formats[0] : formats[i];
    return format === 1 ? `\\x${value.toString('hex')}` : value.toString('utf8');
  });

/**
 * One agent connection: authenticates the agent with its token, opens the target session with
 * the resource's credentials, then decides every command before any of its bytes go upstream and
 * masks every row on the way back.
 */
export class PostgresSession {
  readonly id: string;
  /** The agent's socket; replaced by its TLS wrapper when the agent asks for TLS. */
  #client: ClientSocket;
  readonly #ctx: SessionContext;
  readonly #ports: GovernancePorts;
  readonly #resource: PostgresResourceConfig;
  readonly #audit: SessionAudit;
  readonly #startedAt = Date.now();

  #subject: Subject | undefined;
  #upstream: Socket | undefined;
  #upstreamReader: FrameReader | undefined;
  #clientReader: FrameReader | undefined;
  #cancelKey: { processId: number; secretKey: number } | undefined;
  #transactionStatus: number = TransactionStatus.Idle;
  #commands = 0;
  #closed = false;
  #started = false;
  /** The target sent a FATAL (e.g. pg_terminate_backend's 57P01): its close is the end the agent was told of. */
  #targetEnded = false;
  #expiryTimer: NodeJS.Timeout | undefined;
  readonly #holds = new Set<AbortController>();

  // client -> proxy
  readonly #queue: Frame[] = [];
  #queueHead = 0;
  #queuedBytes = 0;
  #pumping = false;
  #upstreamBlocked = false;
  #clientBlocked = false;
  #batch: Frame[] = [];
  #batchBytes = 0;
  #pipeline = newPipeline();
  #discardUntilSync = false;
  readonly #toUpstream = new Outbox();

  // session state
  readonly #registry = new StatementRegistry();
  #searchPath: string[] | undefined;
  /** The database's encoding (server_encoding at startup): what SQL_ASCII passes through unconverted. */
  #serverEncoding: string | undefined;
  /** The profile of the latest allowed command: applied to target messages not tied to one (async notices). */
  #lastMasker: ProfileMasker | undefined;
  /**
   * A command of the current transaction named a covered column. Errors raised at its end (a
   * WITH HOLD cursor materialised at COMMIT or Sync, a deferred constraint) quote those values
   * under a COMMIT that names none: they get the strictest column rule too.
   */
  #coveredInTransaction = false;
  /** CopyDone and CopyFail messages the client has sent (see #copyInStarted). */
  #copyEndsSent = 0;
  /** Set while the proxy re-reads search_path: decisions wait for it. */
  #searchPathRefresh: Promise<void> | undefined;
  /** An extended-protocol statement ran that may have changed search_path: read it at the Sync. */
  #searchPathDue = false;
  /** Decisions waiting until the target has answered everything sent to it. */
  #settleWaiters: (() => void)[] = [];
  /**
   * An Execute went upstream with no Sync after it yet. PostgreSQL reports changed settings
   * (ParameterStatus) only with ReadyForQuery, so until then a change it made is not visible.
   */
  #executedSinceSync = false;
  readonly #effects = new SessionEffectsCache();
  /** A DDL or admin statement was let through since the last ReadyForQuery outside a transaction. */
  #schemaChanged = false;
  /** The catalog facts of the latest decision, for the masking checks that follow it. */
  #decidedWith: TargetCatalogFacts | undefined;
  readonly #profiles = new SessionProfiles((profile) => this.#ports.masking.masker(profile));
  readonly #results: ResultRelay;
  /** Upstream frames held while the catalog resolves table columns for a RowDescription. */
  #upstreamBacklog: Frame[] | undefined;

  // proxy -> client
  readonly #expects: Expect[] = [];
  #dropUntilReady = false;
  /** Converts into the agent's client encoding when that is not UTF8 (no edge otherwise). */
  readonly #toClient = new ClientOutbox();
  #clientEncoding: SessionClientEncoding | undefined;
  readonly #maskedPrefixChars: number;

  constructor(client: ClientSocket, ctx: SessionContext) {
    this.#client = client;
    this.#ctx = ctx;
    this.#ports = ctx.ports;
    this.#resource = ctx.resource;
    this.id = ctx.ports.newId();
    this.#maskedPrefixChars = (ctx.ports.recording.maxCommandBytes ?? DEFAULT_MAX_COMMAND_BYTES) + MASKED_MARGIN_CHARS;
    this.#audit = new SessionAudit(ctx.ports.audit, this.id, ctx.resource.name, `${client.remoteAddress ?? 'unknown'}:${client.remotePort ?? 0}`);
    this.#results = new ResultRelay(ctx.ports.recording, ctx.catalog, this.#registry, this.#profiles, this.#audit);
  }

  // ---------------------------------------------------------------- startup

  /** Runs the connection to its end. Never rejects for anything the peers do. */
  async run(): Promise<void> {
    (this.#client as Partial<Socket>).setNoDelay?.(true);
    this.#client.on('error', () => this.#close('client_error'));
    let frames = new SocketFrames(this.#client, new FrameReader({ phase: 'startup', maxLength: this.#ctx.maxMessageLength }));
    const timer = setTimeout(() => this.#client.destroy(), this.#ctx.startupTimeoutMs);
    let upstream: UpstreamConnection | undefined;
    let pending: Frame[];
    try {
      const startup = await negotiateStartup(this.#client, frames, {
        tls: this.#ctx.tls,
        maxMessageLength: this.#ctx.maxMessageLength,
        cancelKeys: this.#ctx.cancelKeys,
        secured: (secure) => {
          secure.on('error', () => this.#close('client_error'));
          this.#client = secure;
        },
        abandon: (reason) => this.#abandon(reason),
      });
      if (!startup) return;
      frames = startup.frames;
      const parameters = startup.parameters;
      this.#client.write(encodeAuthenticationCleartextPassword());
      const passwordFrame = await frames.next();
      if (passwordFrame.code !== FrontendCode.Password) {
        this.#reject('protocol_malformed', 'ERR_PROTOCOL_MALFORMED', SqlState.ProtocolViolation, 'expected a password message');
        return;
      }
      const token = decodePassword(passwordFrame.body);
      let verified;
      try {
        verified = await this.#ports.identity.verify(token);
      } catch (error) {
        const code = (error as { code?: string }).code ?? 'ERR_TOKEN_INVALID';
        const expired = code === 'ERR_TOKEN_EXPIRED';
        this.#reject(expired ? 'token expired' : 'token invalid', code, SqlState.InvalidPassword, expired ? 'token expired' : 'password authentication failed: the token is not valid');
        return;
      }
      const subject = verified.subject;
      this.#subject = subject;
      // limits.maxConnectionsPerSubject: the place is given back when the connection closes.
      const limiter = this.#ports.connectionLimits?.get(this.#resource.name);
      if (limiter) {
        const release = limiter.acquireSubject(subject.sub);
        if (!release) {
          const message = `too many connections for ${subject.sub}: at most ${limiter.limits.maxConnectionsPerSubject} at once`;
          this.#reject('too many connections of this subject', 'ERR_TOO_MANY_CONNECTIONS', SqlState.TooManyConnections, message, subject);
          return;
        }
        this.#client.once('close', release);
      }
      let sessionPolicy;
      try {
        sessionPolicy = await this.#ports.policy.describeSession(subject, this.#resource.name);
      } catch {
        this.#reject('policy unavailable', 'ERR_POLICY_UNAVAILABLE', SqlState.CannotConnectNow, 'the policy service is unavailable', subject);
        return;
      }
      // A subject no rule allows anything here still gets a session: each command is then
      // refused with 42501 naming the default deny (and audited), as the contract's denial says;
      // the target side runs read-only so nothing could change even through a policy bug.
      const readOnly = sessionPolicy.readOnly || !sessionPolicy.mayConnect;
      let request: StartupRequest;
      try {
        request = readStartupParameters(parameters, { resourceName: this.#resource.name, database: this.#resource.target.database });
      } catch (error) {
        if (!(error instanceof StartupParameterRefusal)) throw error;
        this.#reject(`startup parameter refused: ${error.message}`, error.code, error.sqlstate, error.message, subject);
        return;
      }
      const forwarded = sessionSettings(request);
      // Enforced on the target too, so a function whose body writes still cannot change anything;
      // switching it off is an admin statement the policy refuses.
      if (readOnly) forwarded.push(['options', '-c default_transaction_read_only=on']);
      try {
        const target = this.#resource.target;
        upstream = await connectUpstream({
          host: target.host,
          port: target.port,
          ssl: target.ssl,
          database: target.database,
          user: this.#resource.credentials.username,
          password: readSecret(this.#resource.credentials.password, this.#ctx.secretsDir),
          parameters: forwarded,
          timeoutMs: this.#ctx.startupTimeoutMs,
          initialQuery: SESSION_START_QUERY,
        });
        this.#searchPath = schemasOf(upstream.initialRows);
      } catch (error) {
        const detail = error instanceof UpstreamError ? error.detail : String(error);
        const refusedSetting = error instanceof UpstreamError ? settingRefusedByTarget(error) : undefined;
        if (refusedSetting) {
          this.#reject(`target refused a startup setting: ${detail}`, 'ERR_UPSTREAM_FAILED', refusedSetting.sqlstate, refusedSetting.message, subject);
          return;
        }
        this.#reject(`target unavailable: ${detail}`, 'ERR_UPSTREAM_FAILED', SqlState.ConnectionFailure, `the target database of ${this.#resource.name} is unavailable`, subject);
        return;
      }
      const statuses = upstream.parameterStatus.map((raw) => decodeBackend({ code: raw[0]!, body: raw.subarray(5), raw }) as { name: string; value: string });
      this.#serverEncoding = statuses.find((status) => status.name === 'server_encoding')?.value;
      const unreadable = statuses.map((status) => unreadableParameter(status.name, status.value, this.#serverEncoding)).find((why) => why !== undefined);
      // Validated with the other startup parameters: the agent's encoding is converted at the edge.
      const startupEncoding = encodingSwitch(requestedClientEncoding(request) ?? 'UTF8');
      this.#clientEncoding = new SessionClientEncoding(startupEncoding, this.#serverEncoding);
      const edge = startupEncoding.encoding ? new ClientEdge(startupEncoding.encoding) : undefined;
      this.#toClient.edge = edge;
      if (unreadable) {
        upstream.socket.destroy();
        this.#reject(unreadable, 'ERR_UPSTREAM_FAILED', SqlState.FeatureNotSupported, `${unreadable}: sluice cannot read commands as the target would`, subject);
        return;
      }
      pending = frames.detach();
      this.#clientReader = frames.reader;
      if (this.#closed || this.#client.destroyed) {
        upstream.socket.destroy();
        return;
      }

      // The agent gets the target's parameters, its pid and a secret of the proxy's own (CancelRequest maps it).
      this.#upstream = upstream.socket;
      this.#upstreamReader = upstream.reader;
      this.#transactionStatus = upstream.transactionStatus;
      this.#cancelKey = this.#ctx.cancelKeys.issue({
        host: this.#resource.target.host,
        port: this.#resource.target.port,
        processId: upstream.processId,
        secretKey: upstream.secretKey,
      });
      this.#started = true;
      this.#ctx.sessions.add(this);
      this.#audit.started(subject, readOnly, startedParameters(request));
      this.#client.write(
        Buffer.concat([
          encodeAuthenticationOk(),
          ...(edge ? upstream.parameterStatus.map((status) => edge.toClient(status, undefined)) : upstream.parameterStatus),
          encodeBackendKeyData(this.#cancelKey.processId, this.#cancelKey.secretKey),
          encodeReadyForQuery(upstream.transactionStatus),
        ]),
      );
      this.#armExpiry(verified.expiresAt);
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === 'ERR_PROTOCOL_MALFORMED') {
        this.#reject('protocol_malformed', code, SqlState.ProtocolViolation, 'invalid startup packet');
      } else {
        this.#client.destroy();
        upstream?.socket.destroy();
      }
      return;
    } finally {
      clearTimeout(timer);
    }

    const up = upstream.socket;
    up.on('data', this.#onUpstreamData);
    // After the target's own FATAL the agent has its reason: no second one of the proxy's.
    up.on('close', () =>
      this.#targetEnded ? this.#close('target_ended_session') : this.#close('upstream_closed', { code: SqlState.ConnectionFailure, message: 'the connection to the target was lost' }),
    );
    up.on('error', () =>
      this.#targetEnded ? this.#close('target_ended_session') : this.#close('upstream_error', { code: SqlState.ConnectionFailure, message: 'the connection to the target failed' }),
    );
    this.#client.on('data', this.#onClientData);
    this.#client.on('end', () => this.#close('client_closed'));
    this.#client.on('close', () => this.#close('client_closed'));
    // What the agent sent while the session was being set up but could not be read (a malformed
    // message, a close): the socket's own event is gone, so it is handled here.
    if (frames.failure) {
      this.#clientReadFailed(frames.failure);
      return;
    }
    if (upstream.pending.length > 0) this.#handleUpstreamFrames(upstream.pending);
    if (pending.length > 0) this.#enqueue(pending);
    const rest = this.#clientReader.takeLeftover();
    if (rest.length > 0) this.#onClientData(rest);
  }

  /** Drops the connection during startup without an answer; session.rejected to the audit. */
  #abandon(reason: string): void {
    this.#closed = true;
    this.#audit.rejected(reason, 'ERR_PROTOCOL_MALFORMED');
    this.#client.destroy();
  }

  /** Refuses the connection during startup: FATAL to the client, session.rejected to the audit. */
  #reject(reason: string, code: string, sqlstate: string, message: string, subject?: Subject): void {
    this.#closed = true;
    this.#audit.rejected(reason, code, subject);
    this.#client.end(encodeErrorResponse({ severity: 'FATAL', code: sqlstate, message }));
    setTimeout(() => this.#client.destroy(), 1000).unref();
  }

  #armExpiry(expiresAt: Date | undefined): void {
    if (!expiresAt) return;
    const delay = expiresAt.getTime() - this.#ports.now().getTime();
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
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#expiryTimer);
    for (const hold of this.#holds) hold.abort();
    this.#holds.clear();
    for (const expect of this.#expects) if (expect.kind === 'internal') expect.done(undefined);
    // Waiting decisions wake up, see the session closed and refuse.
    for (const wake of this.#settleWaiters.splice(0)) wake();
    if (this.#cancelKey) this.#ctx.cancelKeys.release(this.#cancelKey.processId, this.#cancelKey.secretKey);
    this.#ctx.sessions.delete(this);
    const client = this.#client;
    if (fatal && client.writable) {
      client.end(encodeErrorResponse({ severity: 'FATAL', ...fatal }));
      setTimeout(() => client.destroy(), 1000).unref();
    } else if (this.#targetEnded && client.writable) {
      // Let the target's FATAL, already written, reach the agent before the socket goes.
      client.end();
      setTimeout(() => client.destroy(), 1000).unref();
    } else client.destroy();
    const upstream = this.#upstream;
    if (upstream && !upstream.destroyed) {
      if (upstream.writable) upstream.end(encodeTerminate());
      setTimeout(() => upstream.destroy(), 1000).unref();
    }
    if (this.#started) {
      this.#audit.ended(reason, this.#commands, Date.now() - this.#startedAt);
    }
  }

  /** Closes the session from outside (shutdown). */
  shutdown(): void {
    this.#close('proxy_shutdown', { code: '57P01', message: 'the proxy is shutting down' });
  }

  // ---------------------------------------------------------------- client -> target

  readonly #onClientData = (chunk: Buffer): void => {
    if (this.#closed) return;
    let frames: Frame[];
    try {
      frames = this.#clientReader!.push(chunk);
    } catch (error) {
      this.#clientReadFailed(error as Error);
      return;
    }
    if (frames.length > 0) this.#enqueue(frames);
  };

  #clientReadFailed(error: Error): void {
    // Refused before a byte of it is buffered; the rest of it cannot be skipped safely.
    if (error instanceof MessageTooLongError) {
      this.#close('message_too_long', { code: SqlState.ProgramLimitExceeded, message: `message of ${error.length} bytes exceeds this resource's limit of ${error.limit} bytes` });
    } else if (error instanceof ConnectionClosedError) this.#close('client_closed');
    else this.#malformed();
  }

  #malformed(): void {
    this.#close('protocol_malformed', { code: SqlState.ProtocolViolation, message: 'invalid frontend message' });
  }

  #enqueue(frames: Frame[]): void {
    for (const frame of frames) {
      this.#queue.push(frame);
      this.#queuedBytes += frame.raw.length;
    }
    this.#updateClientFlow();
    if (!this.#pumping) void this.#pump();
  }

  async #pump(): Promise<void> {
    this.#pumping = true;
    try {
      while (!this.#closed) {
        if (this.#queueHead >= this.#queue.length) {
          if (this.#batch.length === 0) break;
          // Everything the client has sent so far is decided and forwarded without waiting for its
          // Sync: a client that pipelines and then waits gets its answers (and errors) as direct.
          this.#queue.length = 0;
          this.#queueHead = 0;
          await this.#processBatch('implicit');
          this.#flushUpstream();
          continue;
        }
        const frame = this.#queue[this.#queueHead]!;
        this.#queue[this.#queueHead++] = undefined as unknown as Frame;
        this.#queuedBytes -= frame.raw.length;
        const edge = this.#toClient.edge;
        const pending = edge ? this.#handleInClientEncoding(edge, frame) : this.#handleClientFrame(frame);
        if (pending) {
          this.#flushUpstream();
          await pending;
        }
      }
      this.#queue.length = 0;
      this.#queueHead = 0;
      this.#flushUpstream();
      this.#updateClientFlow();
    } catch (error) {
      if ((error as { code?: string }).code === 'ERR_PROTOCOL_MALFORMED') this.#malformed();
      else this.#close('proxy_error', { code: SqlState.SystemError, message: 'internal proxy error' });
    } finally {
      this.#pumping = false;
    }
  }

  #flushUpstream(): void {
    const upstream = this.#upstream;
    if (!upstream || this.#toUpstream.empty || this.#closed) return;
    if (!this.#toUpstream.flush(upstream) && !this.#upstreamBlocked) {
      this.#upstreamBlocked = true;
      this.#updateClientFlow();
      upstream.once('drain', () => {
        this.#upstreamBlocked = false;
        this.#updateClientFlow();
      });
    }
  }

  /** Reads from the client only while the target keeps up and the held queue is bounded. */
  #updateClientFlow(): void {
    if (this.#closed) return;
    const hold = this.#upstreamBlocked || this.#queuedBytes > MAX_QUEUED_BYTES;
    if (hold && !this.#client.isPaused()) this.#client.pause();
    else if (!hold && this.#client.isPaused()) this.#client.resume();
  }

  /** Returns a promise only when the frame needs an asynchronous step (a decision, an approval). */
  #handleClientFrame(frame: Frame): Promise<void> | undefined {
    switch (frame.code) {
      case FrontendCode.Query:
        if (this.#batch.length > 0) return this.#processBatch('implicit').then(() => this.#query(frame));
        return this.#query(frame);
      case FrontendCode.Parse:
      case FrontendCode.Bind:
      case FrontendCode.Describe:
      case FrontendCode.Execute:
      case FrontendCode.Close:
        this.#batch.push(frame);
        this.#batchBytes += frame.raw.length;
        if (this.#batch.length >= MAX_BATCH_MESSAGES || this.#batchBytes >= MAX_BATCH_BYTES) return this.#processBatch('implicit');
        return undefined;
      case FrontendCode.Sync:
      case FrontendCode.Flush:
        this.#batch.push(frame);
        if (frame.code === FrontendCode.Flush) return this.#processBatch('flush');
        // A Sync ends the pipeline: from here a name means what the server answered for it.
        return this.#processBatch('sync').then(() => void (this.#pipeline = newPipeline()));
      case FrontendCode.CopyData:
      case FrontendCode.CopyDone:
      case FrontendCode.CopyFail:
        // COPY FROM STDIN data of a statement already decided; the server ignores it otherwise.
        if (frame.code !== FrontendCode.CopyData) this.#copyEndsSent++;
        this.#toUpstream.push(frame.raw);
        return undefined;
      case FrontendCode.Terminate:
        this.#toUpstream.push(frame.raw);
        this.#flushUpstream();
        this.#close('client_terminated');
        return undefined;
      case FrontendCode.FunctionCall:
        this.#refuseOnTarget({ code: SqlState.InsufficientPrivilege, message: 'permission denied: the fast-path function call interface is not allowed' }, true);
        return undefined;
      default:
        // A password message now, or an unknown code: not a well-formed session.
        decodeFrontend(frame);
        throw new ProtocolMalformedError('unexpected frontend message');
    }
  }

  /**
   * A message of an agent whose client encoding is not UTF8: decoded into UTF-8 with the encoding
   * in force now (after every earlier message, a SET client_encoding included), then handled as
   * any. Bytes not valid in that encoding are answered as the server would (22021), never passed on.
   */
  #handleInClientEncoding(edge: ClientEdge, frame: Frame): Promise<void> | undefined {
    let converted: Frame | undefined;
    try {
      converted = edge.fromClient(frame);
    } catch (error) {
      if (!(error instanceof EncodingConversionError)) throw error;
      const refusal = { code: error.sqlstate, message: error.message };
      // On the record as a command refused before any rule: its text cannot be read to be recorded.
      const commandId = this.#ports.newId();
      this.#commands++;
      this.#governor().recordRefusedBeforeRule({ commandId, command: `[not valid in client_encoding ${edge.encoding.name}]` }, error.message);
      this.#recordRefused(commandId, refusal);
      // A simple query's error ends with ReadyForQuery; an extended-protocol one skips to the Sync.
      const simple = frame.code === FrontendCode.Query;
      const refuse = (): void => {
        if (this.#discardUntilSync) return;
        this.#refuseOnTarget(refusal, simple);
        if (!simple) this.#discardUntilSync = true;
      };
      return this.#batch.length > 0 ? this.#processBatch('implicit').then(refuse) : void refuse();
    }
    return converted ? this.#handleClientFrame(converted) : undefined;
  }

  /**
   * Answers a refused command and leaves the target's transaction as an error of the server's
   * own would: aborted inside a transaction block (a later COMMIT rolls back), untouched outside
   * one. The proxy's status byte alone would not do: the target would still commit.
   * @see https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-EXT-QUERY
   */
  #refuseOnTarget(refusal: Refusal, sync: boolean): void {
    this.#expects.push({ kind: 'refused', message: refusalMessage(refusal), sync });
    this.#toUpstream.push(TARGET_REFUSAL);
    this.#toUpstream.push(sync ? SYNC : FLUSH);
  }

  /**
   * Resolves once the target has answered everything sent to it so far, so the session state
   * the proxy mirrors (lexer settings, statements, search_path) is the server's, not a guess.
   */
  #settled(): Promise<void> {
    if (this.#expects.length === 0 || this.#closed) return Promise.resolve();
    // The server holds back extended-protocol answers until a Sync or Flush: ask for them.
    this.#toUpstream.push(FLUSH);
    this.#flushUpstream();
    return new Promise((resolve) => this.#settleWaiters.push(resolve));
  }

  #wakeIfSettled(): void {
    if (this.#expects.length === 0) for (const wake of this.#settleWaiters.splice(0)) wake();
  }

  /**
   * The decision at once when nothing must be waited for and every answer is cached (catalog
   * facts, the policy's decision, also by the text's shape): a statement with a new literal is
   * then decided and sent in the turn its bytes arrived, without a promise or a span. Undefined
   * when #decide must be awaited, which also gives every fail-closed answer.
   */
  #decideNow(text: string): Decision | undefined {
    if (this.#closed || !this.#searchPath || this.#searchPathRefresh || text.includes('\\')) return undefined;
    if (this.#expects.some(changesPreparedStatements) || this.#effectsOf(text).unqualifiedAfterPathChange) return undefined;
    const catalog = this.#ctx.catalog.cachedFacts();
    if (!catalog) return undefined;
    const verdict = this.#governor().cachedVerdict(this.#sqlCommand(text, this.#searchPath, catalog));
    if (!verdict) return undefined;
    this.#decidedWith = catalog;
    return this.#noteDecision(verdict.decision);
  }

  #sqlCommand(text: string, searchPath: readonly string[], catalog: TargetCatalogFacts): GovernedCommand {
    return { kind: 'sql', text, searchPath, preparedStatements: this.#registry.prepared, catalog: this.#schemaChanged ? { ...catalog, uncommittedChanges: true } : catalog };
  }

  #noteDecision(decision: Decision): Decision {
    if (decision.effect !== 'deny' && (decision.action === 'ddl' || decision.action === 'admin')) this.#schemaChanged = true;
    return decision;
  }

  /**
   * `afterExecute`: an Execute earlier in the batch being decided runs before this text is read.
   * `afterPathSet`: one of those sets search_path, so a table named without its schema resolves
   * against a path not read yet (the one the proxy knows is the old one): refused.
   */
  async #decide(text: string, afterExecute = false, afterPathSet = false): Promise<Decision> {
    if (afterPathSet && this.#effectsOf(text).namesUnqualifiedTable) {
      return failClosedDecision('a statement after an Execute that changes search_path in the same pipeline names a table without its schema; send a Sync first');
    }
    const now = this.#decideNow(text);
    if (now) return now;
    // Only a backslash reads differently with standard_conforming_strings off (or in a multi-byte
    // encoding): such text is decided once every earlier command has been answered, so a
    // ParameterStatus that changed the lexer state has been seen (and closed the session).
    const backslash = text.includes('\\');
    if (backslash) await this.#settled();
    // Every decision sees the session's prepared statements (EXECUTE, Bind): with a Parse, Close,
    // PREPARE or DEALLOCATE still in flight, it waits for the server to say what each name holds.
    if (this.#expects.some(changesPreparedStatements)) await this.#settled();
    if (this.#searchPathRefresh) await this.#searchPathRefresh;
    if (this.#closed) return failClosedDecision('the session is closed');
    if (backslash && (this.#executedSinceSync || afterExecute)) {
      return failClosedDecision('a statement with a backslash must wait for a Sync after an Execute (the target reports setting changes only then)');
    }
    // Where the proxy cannot know which schema an unqualified name reads, it refuses.
    if (!this.#searchPath) return failClosedDecision('the session search_path is not known yet; send a Sync and retry');
    if (this.#effectsOf(text).unqualifiedAfterPathChange) {
      return failClosedDecision('a statement after a search_path change in the same message names a table without its schema; send them separately');
    }
    let catalog: TargetCatalogFacts;
    try {
      catalog = await this.#ctx.catalog.facts();
      this.#decidedWith = catalog;
    } catch {
      return failClosedDecision('the target catalog (functions, views, inheritance) could not be read');
    }
    // A policy that cannot answer denies (fail closed): the governor's verdict.
    const { decision } = await this.#governor().decide(this.#sqlCommand(text, this.#searchPath, catalog));
    return this.#noteDecision(decision);
  }

  /** The protocol-neutral governance of this session's commands (decide, record, hold, mask). */
  #governor(): Governor {
    // Built for the logged-in subject (never one cached before login).
    const current = this.#governorOf;
    if (current && current.session.subject === this.#subject) return current;
    const governor = new Governor(this.#ports, { id: this.id, resource: this.#resource.name, subject: this.#subject!, protocol: 'postgres' });
    this.#governorOf = governor;
    return governor;
  }
  #governorOf: Governor | undefined;

  /**
   * Portals end with their transaction; a schema change this session made is committed or gone,
   * so the catalog facts are read again and decisions stop assuming uncommitted changes.
   */
  #transactionEnded(): void {
    this.#registry.forgetPortals();
    if (!this.#schemaChanged) return;
    this.#schemaChanged = false;
    this.#ctx.catalog.invalidateFacts();
  }

  /**
   * Masks what is recorded (and shown to approvers) of a command: its beginning only, past which
   * nothing is kept anyway; masking a PII-dense 12 MB text whole held every session for seconds.
   */
  #maskedText(text: string, profile: string | undefined): string {
    try {
      return this.#ports.masking.maskCommandText(text.length > this.#maskedPrefixChars ? text.slice(0, this.#maskedPrefixChars) : text, profile);
    } catch {
      return '[withheld: masking unavailable]';
    }
  }

  #recordDecided(commandId: string, text: string, decision: Decision, recorded?: string): void {
    this.#commands++;
    this.#governor().recordDecided(
      {
        commandId,
        command: recorded ?? this.#maskedText(text, maskProfileOf(decision)),
        ...(text.length > this.#maskedPrefixChars ? { commandBytes: Buffer.byteLength(text, 'utf8') } : {}),
      },
      decision,
    );
  }

  #recordRefused(commandId: string, refusal: Refusal): void {
    this.#governor().recordRefused(commandId, { outcome: 'REFUSED', code: refusal.code, message: refusal.message, durationMs: 0 });
  }

  /** The masker of an allowed `text`, or a refusal when masking is unavailable or the text would carry a covered value past it. */
  #maskerFor(decision: Decision, text: string): { masker: ProfileMasker | undefined } | Refusal {
    const choice = this.#governor().maskerFor(decision);
    if (!choice.ok) return { code: SqlState.SystemError, message: 'result withheld: masking is unavailable' };
    const escape = coveredValueEscape(choice.masker, text, this.#searchPath, this.#registry.prepared, this.#decidedWith);
    return escape ? { code: SqlState.InsufficientPrivilege, message: `permission denied: ${escape}` } : { masker: choice.masker };
  }

  #auditRefusal(): Refusal | undefined {
    if (this.#ports.audit.healthy) return undefined;
    return { code: SqlState.SystemError, message: 'command refused: the audit trail is unavailable' };
  }

  /** `audit.wait: ack`: the command goes to the target only once the bus has its record. */
  async #unacknowledged(): Promise<Refusal | undefined> {
    if (await this.#governor().acknowledged()) return undefined;
    return { code: SqlState.SystemError, message: 'command refused: its audit record was not acknowledged' };
  }

  /**
   * A SQL text over the resource's maxStatementBytes is refused (54000) before any decision; the
   * session stays usable. Recorded with a masked beginning of the text and its full size.
   */
  #statementTooLong(commandId: string, text: string): Refusal | undefined {
    const limit = this.#ctx.maxStatementBytes;
    if (text.length * 3 <= limit) return undefined;
    const bytes = Buffer.byteLength(text, 'utf8');
    if (bytes <= limit) return undefined;
    const refusal = { code: SqlState.ProgramLimitExceeded, message: `statement of ${bytes} bytes exceeds this resource's limit of ${limit} bytes` };
    this.#commands++;
    // Masked as any recorded text, but only its beginning: the audit port cuts it further.
    this.#governor().recordRefusedBeforeRule({ commandId, command: this.#maskedText(text, undefined), commandBytes: bytes }, 'statement too long');
    this.#recordRefused(commandId, refusal);
    return refusal;
  }

  /** Holds a command for a human; resolves to undefined when granted and consumed, else the refusal. */
  async #approve(commandId: string, text: string, params: readonly (string | null)[], decision: Decision): Promise<Refusal | undefined> {
    if (decision.effect !== 'approve') return undefined;
    const hash = commandHash([this.#resource.name, this.#subject!.sub, normaliseSql(text), params]);
    const hold = new AbortController();
    this.#holds.add(hold);
    try {
      const result = await this.#governor().hold(
        { commandId, command: this.#maskedText(text, maskProfileOf(decision)), commandHash: hash, decision, justification: sqlJustification(text) },
        hold.signal,
      );
      return approvalRefusal(result);
    } finally {
      this.#holds.delete(hold);
    }
  }

  /**
   * A simple Query: the whole text is one command, decided before a byte goes upstream. A promise
   * only when something must be waited for (a decision not cached, an approval, an audit ack):
   * otherwise it is forwarded in the turn its bytes arrived.
   */
  #query(frame: Frame): Promise<void> | undefined {
    // The target skips to the pipeline's Sync since an error: it ignores this query, so does the proxy.
    if (this.#discardUntilSync) return undefined;
    const message = decodeFrontend(frame) as Extract<FrontendMessage, { type: 'Query' }>;
    const text = message.text;
    // SET/RESET client_encoding: the proxy's own to carry out (the target stays in UTF8). Decided
    // on the transaction status the commands before it leave (a pipelined BEGIN not yet answered
    // would let it through, and the ROLLBACK that undoes it on the server would not undo it here).
    const touchesEncoding = this.#effectsOf(text).clientEncoding;
    if (touchesEncoding && this.#expects.length > 0 && !this.#closed) return this.#settled().then(() => this.#query(frame));
    const encodingPlan = touchesEncoding ? this.#clientEncoding?.plan(text, this.#transactionStatus !== TransactionStatus.Idle) : undefined;
    if (encodingPlan && 'code' in encodingPlan) {
      this.#refuseOnTarget(encodingPlan, true);
      return undefined;
    }
    const commandId = this.#ports.newId();
    const auditRefusal = this.#auditRefusal();
    if (auditRefusal) {
      this.#refuseOnTarget(auditRefusal, true);
      return undefined;
    }
    const tooLong = this.#statementTooLong(commandId, text);
    if (tooLong) {
      this.#refuseOnTarget(tooLong, true);
      return undefined;
    }
    // Between batches a simple query may read an unknown search_path first.
    if (!this.#searchPath && !this.#searchPathRefresh) this.#refreshSearchPath();
    const query: DecidedQuery = { frame, commandId, text, encodingPlan };
    const decided = this.#decideNow(text);
    if (decided) return this.#decidedQuery(query, decided);
    return this.#decide(text).then((decision) => this.#decidedQuery(query, decision));
  }

  #decidedQuery(query: DecidedQuery, decision: Decision): Promise<void> | undefined {
    if (this.#closed) return undefined;
    const { commandId, text } = query;
    this.#recordDecided(commandId, text, decision);
    if (decision.effect === 'approve') return this.#approve(commandId, text, [], decision).then((refusal) => this.#sendQuery(query, decision, refusal));
    return this.#sendQuery(query, decision, decision.effect === 'deny' ? denial(decision, text, this.#resource.name) : undefined);
  }

  /** `acked`: the bus has acknowledged its record (or the resource does not wait for that). */
  #sendQuery(query: DecidedQuery, decision: Decision, refusal: Refusal | undefined, acked = false): Promise<void> | undefined {
    if (this.#closed) return undefined;
    const { frame, commandId, text, encodingPlan } = query;
    const masking = refusal ? undefined : this.#maskerFor(decision, text);
    if (masking && 'code' in masking) refusal = masking;
    if (!refusal && !acked && this.#resource.audit?.wait === 'ack') {
      return this.#unacknowledged().then((unacked) => this.#sendQuery(query, decision, unacked, true));
    }
    if (this.#discardUntilSync) {
      // An earlier message of the pipeline failed on the target meanwhile: it ignores this query.
      this.#recordRefused(commandId, { code: SqlState.ProtocolViolation, message: 'not run: the target ignores every message up to the Sync of a pipeline that failed' });
      return undefined;
    }
    if (refusal || !masking || 'code' in masking) {
      refusal ??= { code: SqlState.SystemError, message: 'command refused' };
      this.#recordRefused(commandId, refusal);
      this.#refuseOnTarget(refusal, true);
      return undefined;
    }
    this.#expects.push({ kind: 'query', command: { ...this.#newCommand(commandId, masking.masker, text), encoding: encodingPlan?.switchTo } });
    this.#toUpstream.push(encodingPlan?.upstreamText !== undefined ? encodeQuery(encodingPlan.upstreamText) : frame.raw);
    // A simple query ends with ReadyForQuery, which carries any setting an earlier Execute changed.
    this.#executedSinceSync = false;
    // The path the text was decided under is the one it runs under: a built-in call without
    // arguments (`count(*)`, `now()`) then cannot change it, and costs no re-read.
    if (this.#effectsOf(text, this.#searchPath).searchPath) this.#refreshSearchPath();
    // The agent's next message is read in the encoding this one leaves in force.
    return encodingPlan ? this.#settled() : undefined;
  }

  #effectsOf(text: string, searchPath?: readonly string[]): SessionStateEffects {
    return this.#effects.of(text, searchPath);
  }

  /**
   * Reads search_path from the server again after a command that may have changed it; the next
   * decision waits for it. A failed read leaves it unknown (decisions refuse) unless the
   * transaction is aborted: then nothing but its end runs, and that end reads it again.
   */
  #refreshSearchPath(): void {
    let done!: (rows: (string | null)[][] | undefined) => void;
    const refresh = new Promise<void>((resolve) => {
      done = (rows) => {
        if (rows) this.#searchPath = schemasOf(rows);
        else if (this.#transactionStatus !== TransactionStatus.Failed) this.#searchPath = undefined;
        if (this.#searchPathRefresh === refresh) this.#searchPathRefresh = undefined;
        resolve();
      };
    });
    this.#searchPathRefresh = refresh;
    this.#expects.push({ kind: 'internal', rows: [], done });
    this.#toUpstream.push(encodeQuery(SEARCH_PATH_QUERY));
    this.#flushUpstream();
  }

  #newCommand(id: string, masker: ProfileMasker | undefined, sql: string): Command {
    const { masker: effective, declares } = this.#profiles.command(sql, masker);
    // A later message of the pipeline that names one of these cursors means the cursor.
    for (const [name] of declares) this.#pipeline.portals.delete(name);
    this.#lastMasker = effective;
    if (effective && touchesCoveredColumn(effective, sql, this.#searchPath, this.#registry.prepared)) this.#coveredInTransaction = true;
    const preparedChanges = [...this.#effectsOf(sql).preparedStatements];
    return { id, masker: effective, sql, searchPath: this.#searchPath, started: performance.now(), tags: [], preparedChanges, declares, cursorsConfirmed: 0, copyEnds: this.#copyEndsSent, copyIns: 0, done: false };
  }

  /** A statement a Bind or Describe names that was not Parse'd in this batch: decided again now. */
  async #lookupStatement(name: string, batch: Map<string, Statement>): Promise<Statement | Refusal> {
    const inBatch = batch.get(name);
    if (inBatch) return inBatch;
    // A Parse or Close of this name still unanswered: the server decides what the name holds.
    const changing = this.#expects.some((e) => (e.kind === 'parse' && e.statement.name === name) || (e.kind === 'close' && e.target === 'S' && e.name === name));
    if (changing) await this.#settled();
    const known = this.#registry.statement(name);
    const text = known?.text ?? this.#registry.prepared.get(name);
    if (text === undefined) {
      return { code: SqlState.InsufficientPrivilege, message: `permission denied: prepared statement ${quoteIdent(name)} was not allowed` };
    }
    // A statement PREPAREd in SQL is decided as the EXECUTE of it, which carries its action.
    const decided = known ? text : `EXECUTE ${quoteIdent(name)}`;
    const decision = await this.#decide(decided);
    if (decision.effect === 'deny') {
      const commandId = this.#ports.newId();
      const refusal = { code: SqlState.InsufficientPrivilege, message: denialMessage(decision, this.#resource.name) };
      this.#recordDecided(commandId, decided, decision);
      this.#recordRefused(commandId, refusal);
      return refusal;
    }
    const masking = this.#maskerFor(decision, text);
    if ('code' in masking) return masking;
    const statement: Statement = {
      name,
      text,
      decision,
      masker: masking.masker,
      ...(known?.description ? { description: known.description } : {}),
      ...(known?.recorded !== undefined && maskProfileOf(known.decision) === maskProfileOf(decision) ? { recorded: known.recorded } : {}),
    };
    batch.set(name, statement);
    return statement;
  }

  /**
   * The extended-protocol messages received so far (up to a Sync, a Flush, or all the client has
   * sent): every Parse is decided and every Bind, Describe and Execute must name an allowed
   * statement before it is sent. A refusal answers as the server's own error would: the messages
   * before it go (a transaction then rolls them back as the server's error would), the refused one
   * and the rest up to the Sync do not; ErrorResponse, then ReadyForQuery at the Sync.
   */
  async #processBatch(end: 'sync' | 'flush' | 'implicit'): Promise<void> {
    const frames = this.#batch;
    this.#batch = [];
    this.#batchBytes = 0;
    if (this.#discardUntilSync) {
      this.#skipToSync(end);
      return;
    }
    const messages = frames.map((frame) => decodeFrontend(frame));
    const { statements, portals, described } = this.#pipeline;
    let parsesUnnamed = false;
    let bindsUnnamed = false;
    const forward: Buffer[] = [];
    const expects: Expect[] = [];
    const approvals: { statement: Statement; params: (string | null)[]; commandId: string }[] = [];
    let refusal: Refusal | undefined = this.#auditRefusal();
    /** An Execute earlier in this batch runs before a later Parse is lexed: it may change the lexer state. */
    let executes = false;
    let changesSearchPath = false;
    /** An Execute earlier in this batch sets search_path for what follows it (SET, set_config, a transaction's end). */
    let setsSearchPath = false;
    /** Cursors DECLAREd by an Execute earlier in this batch: the server runs it before a later message names them. */
    const declaredHere = new Set<string>();

    for (let i = 0; i < messages.length && !refusal; i++) {
      const message = messages[i]!;
      const raw = frames[i]!.raw;
      switch (message.type) {
        case 'Parse': {
          refusal = this.#statementTooLong(this.#ports.newId(), message.text);
          if (refusal) break;
          if (this.#effectsOf(message.text).clientEncoding) {
            refusal = this.#clientEncoding?.extendedRefusal(message.text, this.#transactionStatus !== TransactionStatus.Idle);
            if (refusal) break;
          }
          const decision = await this.#decide(message.text, executes, setsSearchPath);
          if (decision.effect === 'deny') {
            const commandId = this.#ports.newId();
            this.#recordDecided(commandId, message.text, decision);
            refusal = denial(decision, message.text, this.#resource.name);
            this.#recordRefused(commandId, refusal);
            break;
          }
          const masking = this.#maskerFor(decision, message.text);
          if ('code' in masking) {
            refusal = masking;
            break;
          }
          // Preparing runs nothing: a statement held for approval is held at its Bind, with its
          // parameters. The Parse is on the record all the same.
          if (decision.effect === 'approve') this.#recordDecided(this.#ports.newId(), message.text, decision);
          const statement: Statement = { name: message.name, text: message.text, decision, masker: masking.masker };
          statements.set(message.name, statement);
          if (message.name === '') parsesUnnamed = true;
          forward.push(raw);
          expects.push({ kind: 'parse', masker: masking.masker, statement });
          break;
        }
        case 'Bind': {
          const statement = await this.#lookupStatement(message.statement, statements);
          if ('code' in statement) {
            refusal = statement;
            break;
          }
          // Parameter values are only read as text when an approval must be bound to them.
          const heldCommandId = statement.decision.effect === 'approve' ? this.#ports.newId() : undefined;
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
            const statement = await this.#lookupStatement(message.name, statements);
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
          const commandId = portal.commandId ?? this.#ports.newId();
          const statement = portal.statement;
          statement.recorded ??= this.#maskedText(statement.text, maskProfileOf(statement.decision));
          this.#recordDecided(commandId, statement.text, statement.decision, statement.recorded);
          forward.push(raw);
          const command = this.#newCommand(commandId, portal.statement.masker, statement.text);
          for (const [cursor] of command.declares) declaredHere.add(cursor);
          expects.push({ kind: 'execute', command, portal });
          executes = true;
          const effects = this.#effectsOf(statement.text);
          if (effects.searchPath) changesSearchPath = true;
          if (effects.setsPathForLater) setsSearchPath = true;
          break;
        }
        case 'Close':
          forward.push(raw);
          expects.push({ kind: 'close', target: message.target, name: message.name });
          break;
        case 'Sync':
          forward.push(raw);
          expects.push({ kind: 'sync', copyEnds: this.#copyEndsSent });
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
      if (refusal || this.#closed) break;
      refusal = await this.#approve(commandId, statement.text, params, statement.decision);
    }
    if (!refusal && executes && !this.#closed && this.#resource.audit?.wait === 'ack') refusal = await this.#unacknowledged();
    if (this.#closed) return;
    if (this.#discardUntilSync) {
      // The target failed an earlier message of this pipeline meanwhile: it ignores these. Their
      // Executes are on the record as decided: they end there as not run.
      for (const expect of expects) if (expect.kind === 'execute') this.#audit.completed(expect.command, false);
      this.#skipToSync(end);
      return;
    }
    if (refusal && !sendsBefore) {
      this.#refuseOnTarget(refusal, end === 'sync');
      if (end === 'sync') this.#refusedBatchSynced();
      else this.#discardUntilSync = true;
      return;
    }
    // The server drops its unnamed statement and portal as soon as a Parse or Bind of them arrives.
    this.#registry.replaceUnnamed(parsesUnnamed, bindsUnnamed);
    for (const expect of expects) this.#expects.push(expect);
    for (const buffer of forward) this.#toUpstream.push(buffer);
    if (end === 'sync') this.#executedSinceSync = false;
    else if (executes) this.#executedSinceSync = true;
    if (changesSearchPath) {
      this.#searchPathDue = true;
      // Until it is read again (a simple query is only valid after the Sync), nothing is decided on a guess.
      if (end !== 'sync') this.#searchPath = undefined;
    }
    if (refusal) {
      // The allowed messages before the refused one went first, as the server would have run them.
      this.#refuseOnTarget(refusal, end === 'sync');
      if (end === 'sync') this.#refusedBatchSynced();
      else this.#discardUntilSync = true;
      return;
    }
    if (end === 'sync' && this.#searchPathDue) {
      this.#searchPathDue = false;
      this.#refreshSearchPath();
    }
  }

  /** Messages the target ignores (it skips to the Sync after an error): only the Sync goes. */
  #skipToSync(end: 'sync' | 'flush' | 'implicit'): void {
    if (end !== 'sync') return;
    // The target skips to this Sync since the error: it answers ReadyForQuery.
    this.#discardUntilSync = false;
    this.#expects.push({ kind: 'sync', copyEnds: this.#copyEndsSent });
    this.#toUpstream.push(SYNC);
    this.#refusedBatchSynced();
  }

  /**
   * A refused batch still reaches the target as the refusal and its Sync: an earlier Execute may
   * have changed search_path, so it is read again, or every later batch would be refused on an
   * unknown path.
   */
  #refusedBatchSynced(): void {
    this.#executedSinceSync = false;
    if (!this.#searchPathDue) return;
    this.#searchPathDue = false;
    this.#refreshSearchPath();
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
    const changing = this.#expects.some(
      (e) =>
        (e.kind === 'bind' && e.portal.name === name) ||
        (e.kind === 'close' && e.target === 'P' && e.name === name) ||
        ((e.kind === 'query' || e.kind === 'execute') && e.command.declares.some(([cursor]) => cursor === name)),
    );
    if (changing) await this.#settled();
    const bound = this.#registry.portal(name);
    if (bound || !this.#profiles.hasCursor(name)) return bound;
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
    const decision = await this.#decide(text);
    if (decision.effect !== 'allow') {
      const commandId = this.#ports.newId();
      const refusal = { code: SqlState.InsufficientPrivilege, message: denialMessage(decision, this.#resource.name) };
      this.#recordDecided(commandId, text, decision);
      this.#recordRefused(commandId, refusal);
      return refusal;
    }
    const masking = this.#maskerFor(decision, text);
    if ('code' in masking) return masking;
    // Its rows are the DECLARE's: the masker is already the union with the cursor's profiles.
    const { masker } = this.#profiles.command(text, masking.masker);
    return { name, statement: { name: '', text, decision, masker }, cursor: true };
  }

  // ---------------------------------------------------------------- target -> client

  readonly #onUpstreamData = (chunk: Buffer): void => {
    if (this.#closed) return;
    let frames: Frame[];
    try {
      frames = this.#upstreamReader!.push(chunk);
    } catch {
      this.#close('upstream_malformed', { code: SqlState.ConnectionFailure, message: 'the target sent an invalid message' });
      return;
    }
    this.#handleUpstreamFrames(frames);
  };

  #handleUpstreamFrames(frames: readonly Frame[]): void {
    if (this.#upstreamBacklog) {
      for (const frame of frames) this.#upstreamBacklog.push(frame);
      return;
    }
    const out = this.#toClient;
    for (let i = 0; i < frames.length && !this.#closed; i++) {
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
          this.#close('proxy_error', { code: SqlState.SystemError, message: 'internal proxy error' });
          return;
        }
      }
    }
    if (this.#closed) return;
    this.#wakeIfSettled();
    if (!out.flush(this.#client) && !this.#clientBlocked) {
      // The agent reads slower than the target answers: stop reading the target until it drains.
      const upstream = this.#upstream!;
      this.#clientBlocked = true;
      upstream.pause();
      this.#client.once('drain', () => {
        this.#clientBlocked = false;
        upstream.resume();
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
    const head = this.#expects[0];
    const masker =
      head?.kind === 'query' ? head.command.masker
      : head?.kind === 'describePortal' ? head.portal.statement.masker
      : head?.kind === 'describeStatement' ? head.statement.masker
      : undefined;
    if (!masker) return false;
    const missing = this.#ctx.catalog.missing(rowDescriptionTableOids(frames[index]!.body));
    if (missing.length === 0) return false;
    const upstream = this.#upstream!;
    this.#upstreamBacklog = frames.slice(index);
    out.flush(this.#client);
    upstream.pause();
    const resume = (failed: boolean): void => {
      const backlog = this.#upstreamBacklog ?? [];
      this.#upstreamBacklog = undefined;
      if (this.#closed) return;
      try {
        if (failed) {
          // Column rules cannot be matched without the catalog: the result is withheld, not sent raw.
          this.#withhold(this.#toClient, new ResultWithheldError('the target catalog could not be read'));
        }
        this.#handleUpstreamFrames(backlog);
        if (!this.#clientBlocked) upstream.resume();
      } catch {
        this.#close('proxy_error', { code: SqlState.SystemError, message: 'internal proxy error' });
      }
    };
    this.#ctx.catalog.resolve(missing).then(
      () => resume(false),
      () => resume(true),
    );
    return true;
  }

  /** A SET/RESET of client_encoding completed: the agent's messages are converted with it from here. */
  #switchClientEncoding(to: EncodingSwitch, out: Outbox): void {
    this.#toClient.edge = to.encoding ? new ClientEdge(to.encoding) : undefined;
    const status = this.#clientEncoding?.switched(to);
    if (status) out.push(status);
  }

  #withhold(out: Outbox, error: Error): void {
    const head = this.#expects[0];
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
    this.#expects.shift();
    this.#wakeIfSettled();
  }

  #handleBackend(frame: Frame, out: Outbox): void {
    const code = frame.code;
    const head = this.#expects[0];
    // A FATAL ends the target session whatever was due: it always reaches the agent.
    const fatal = code === BackendCode.ErrorResponse && isFatal(frame);
    if (fatal) this.#targetEnded = true;
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
          this.#transactionStatus = frame.body[0] ?? TransactionStatus.Idle;
          if (this.#transactionStatus === TransactionStatus.Idle) this.#transactionEnded();
          this.#expects.shift();
          head.done(head.failed ? undefined : head.rows);
          this.#wakeIfSettled();
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
        this.#expects.shift();
        if (!head.sync) {
          // The target was already skipping to a Sync when the refusal went up: this is that Sync's.
          this.#handleBackend(frame, out);
          return;
        }
        this.#transactionStatus = frame.body[0] ?? TransactionStatus.Idle;
        if (this.#transactionStatus === TransactionStatus.Idle) this.#transactionEnded();
        out.push(frame.raw);
        this.#wakeIfSettled();
        return;
      }
    }
    if (this.#dropUntilReady && !fatal) {
      if (code !== BackendCode.ReadyForQuery) return;
      this.#dropUntilReady = false;
      // Everything due before this ReadyForQuery was swallowed with the withheld result.
      while (this.#expects[0] && !stopsSkipping(this.#expects[0])) {
        const dropped = this.#expects.shift()!;
        if (dropped.kind === 'execute') this.#audit.completed(dropped.command, false);
      }
    }
    switch (code) {
      case BackendCode.DataRow: {
        const result = head?.kind === 'query' || head?.kind === 'execute' ? this.#results.resultOf(head) : undefined;
        if (!result) {
          throw new ResultWithheldError('a row arrived without its description');
        }
        if (this.#toClient.edge) this.#toClient.rowFields = result.fields;
        out.push(result.row(frame.body) ?? frame.raw);
        return;
      }
      case BackendCode.RowDescription: {
        if (head?.kind === 'query') {
          head.result = this.#results.queryResult(head.command, frame.body);
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
          this.#results.finish(head);
          if (head.kind === 'execute') {
            this.#audit.completed(head.command, true);
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
          this.#results.finish(head);
          this.#audit.completed(head.command, true);
          this.#shift();
        }
        return;
      case BackendCode.CopyOutResponse: {
        if (head?.kind === 'query' || head?.kind === 'execute') {
          head.copy = this.#results.copyOut(head.command, frame);
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
        const fields = this.#results.maskNotice(frame, head, out, this.#lastMasker, this.#coveredInTransaction);
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
        while (this.#expects[0] && !endsTargetSkip(this.#expects[0])) {
          const dropped = this.#expects.shift()!;
          if (dropped.kind === 'execute') {
            if (!marked) dropped.command.error = error;
            marked = true;
            this.#audit.completed(dropped.command, false);
          } else if (dropped.kind === 'query') this.#audit.completed(dropped.command, false);
          else if (dropped.kind === 'internal') dropped.done(undefined);
        }
        // No Sync sent yet (a pipeline forwarded as it came): what the client sends up to its
        // Sync the server ignores, so the proxy does not wait for answers to it either.
        if (head && !fatal && this.#expects.length === 0) this.#discardUntilSync = true;
        return;
      }
      case BackendCode.ReadyForQuery: {
        this.#transactionStatus = frame.body[0] ?? TransactionStatus.Idle;
        // Protocol portals live until their transaction ends; a name reused later (a SQL cursor
        // shares the namespace) must not inherit an old portal's decision.
        if (this.#transactionStatus === TransactionStatus.Idle) this.#transactionEnded();
        out.push(frame.raw);
        if (head?.kind === 'query') {
          this.#results.finish(head);
          this.#audit.completed(head.command, head.command.error === undefined);
          this.#shift();
        } else if (head?.kind === 'sync') this.#shift();
        // Commands already sent behind this one belong to the next transaction: keep it strict for them.
        if (this.#transactionStatus === TransactionStatus.Idle && !this.#expects.some((e) => e.kind === 'query' || e.kind === 'execute')) {
          this.#coveredInTransaction = false;
        }
        return;
      }
      case BackendCode.NoticeResponse:
        this.#results.maskNotice(frame, head, out, this.#lastMasker, this.#coveredInTransaction);
        return;
      case BackendCode.NotificationResponse:
        out.push(maskNotification(frame, this.#profiles.notifications) ?? frame.raw);
        return;
      case BackendCode.ParameterStatus: {
        const message = decodeBackend(frame) as { name: string; value: string };
        if (message.name !== 'client_encoding' || !this.#clientEncoding) out.push(frame.raw);
        else {
          // The agent is told of its own encoding, once: the target's UTF8 is the proxy's business.
          const shown = this.#toClient.edge?.encoding.name ?? message.value;
          if (shown !== this.#clientEncoding.reported) {
            this.#clientEncoding.reported = shown;
            out.push(frame.raw);
          }
        }
        // Reported unexpanded (`$user`) by PostgreSQL 18+: a sign it changed, not the schemas
        // it resolves to. Unknown until the refresh that follows the command (or the next one).
        if (message.name === 'search_path' && !this.#searchPathRefresh) this.#searchPath = undefined;
        const unreadable = unreadableParameter(message.name, message.value, this.#serverEncoding);
        if (unreadable) {
          // From here the proxy cannot read text as the server will (masking reads UTF-8 too):
          // the session ends before another command is decided on a misreading.
          this.#close('lexer_state_changed', { code: SqlState.FeatureNotSupported, message: `${unreadable}: sluice cannot read commands as the target would` });
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
    if (!this.#expects.some(ignored)) return;
    const kept = this.#expects.filter((e) => !ignored(e));
    this.#expects.length = 0;
    this.#expects.push(...kept);
  }

  /** ParseComplete, BindComplete, CloseComplete: the server now holds what the message asked. */
  #confirm(head: Expect): void {
    this.#registry.confirm(head);
    if (head.kind === 'bind') this.#profiles.forgetCursor(head.portal.name);
  }

  /** A statement's CommandComplete: what it did to the prepared statements is now true on the server. */
  #applyTag(command: Command, tag: string): void {
    if (tag === 'PREPARE' || tag === 'DEALLOCATE' || tag === 'DEALLOCATE ALL') {
      const change = command.preparedChanges.shift();
      if (change) this.#registry.applyPreparedChange(change, command.sql);
    } else if (tag === 'DECLARE CURSOR') {
      const declared = command.declares[command.cursorsConfirmed++];
      if (declared) {
        this.#profiles.confirmCursor(declared);
        // The name is free only once its old portal was closed (SQL CLOSE closes protocol portals
        // too): from here it is this cursor, never the old portal's decision and columns.
        this.#registry.forgetPortal(declared[0]);
      }
    } else if (tag === 'COMMIT' || tag === 'ROLLBACK') {
      // COMMIT AND CHAIN ends the transaction without the session going idle: the schema change
      // is committed now, and other sessions must decide with it.
      this.#transactionEnded();
    } else if (tag === 'DISCARD ALL') {
      this.#registry.discardAll();
    }
  }

}

