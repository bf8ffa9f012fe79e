import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { decodeCommand, decodeReply, encodeCommand, encodeError, encodeSimple, encodeValue, RespFramer } from '@sluice/codec-resp';
import { resourceLimits, type RedisResourceConfig } from '@sluice/config';
import { maskProfileOf, SluiceErrorCode, type ApproveDecision, type DenyDecision, type SubjectRef } from '@sluice/contracts';
import type { GovernancePorts, ProtocolAdapter } from '../ports.js';
import { commandHash } from '../governance/approval-hold.js';
import { admitSession, type Admission } from '../governance/admission.js';
import { Governor, subjectRefOf, type RecordedCommand, type Verdict } from '../governance/governor.js';
import { PendingJustification } from '../justification.js';
import { authToken, describeCommand, parseHello, PRE_AUTH_COMMANDS, refusalOf, UNMASKABLE_REPLIES, type HelloArgs } from './commands.js';
import { decodeAndMask, errorCodeOf, errorTextOf, maskPushed, recordResult, type MaskedReply } from './reply-results.js';
import { confirmationOf, ReplyStream } from './reply-stream.js';
import { newEntry, type Entry, type SessionState } from './entries.js';
import { connectTarget } from './target.js';
import { WriteBatch } from './write-batch.js';

export interface RedisAdapterOptions {
  /** Base directory of `{ file: … }` secrets (the config file's directory). */
  readonly secretsDir: string;
  /** Milliseconds to wait for the target's connection and handshake. */
  readonly connectTimeoutMs?: number;
}

type ClientSocket = Duplex & { remoteAddress?: string; remotePort?: number; setNoDelay?: (noDelay?: boolean) => unknown };

const NOAUTH = 'NOAUTH Authentication required.';
const WRONGPASS = 'WRONGPASS invalid username-password pair or user is disabled.';
const HELLO_NOAUTH =
  'NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time';
const WITHHELD = 'ERR result withheld: masking unavailable';
/** The first byte of a multibulk command (`*`); anything else is an inline command. */
const RESP_ARRAY = 0x2a;
const EXECABORT = 'EXECABORT Transaction discarded because of previous errors.';
/** Bytes an unauthenticated client may buffer: nobody gets to make Sluice hold a 512 MiB bulk before logging in. */
const PRE_AUTH_BUFFER_LIMIT = 64 * 1024;
/** Commands queued before Sluice stops reading from the client (backpressure). */
const MAX_QUEUED = 4096;



/**
 * The Redis front door: agents log in with `AUTH <token>` / `HELLO 3 AUTH <user> <token>`,
 * every command is decided before a byte of it goes upstream, replies are masked, and every
 * action is recorded. One upstream connection per agent connection, authenticated with the
 * resource's own credentials, which the agent never sees.
 */
export const createRedisAdapter = (resource: RedisResourceConfig, options: RedisAdapterOptions): ProtocolAdapter => ({
  handleConnection: (socket, ports) =>
    new Promise<void>((resolve) => {
      const connection = new RedisConnection(resource, options, socket, ports, resolve);
      connection.start();
    }),
});

class RedisConnection {
  private readonly framer = new RespFramer('command');
  /** Gives back this connection's place among its subject's (limits.maxConnectionsPerSubject). */
  private releaseSubject: (() => void) | undefined;
  private readonly upstreamFramer = new RespFramer('reply');
  private readonly client: string;
  private session: SessionState | undefined;
  private upstream: Socket | undefined;
  private protocol: 2 | 3 = 2;
  private closed = false;

  /** Frames waiting for the intake loop (it pauses while AUTH is verified). */
  private readonly inbox: Buffer[] = [];
  private intakeBusy = false;
  /** Every entry not yet answered, in arrival order. */
  private readonly pending: Entry[] = [];
  /** Entries not yet sent upstream (or answered locally), in order. */
  private readonly toDispatch: Entry[] = [];
  /** Entries sent upstream, waiting for their reply frame. */
  private readonly inflight: Entry[] = [];
  private holding = false;
  /** A HELLO that switches the protocol is in flight: dispatch waits for its reply. */
  private protocolPending = false;
  private readonly holdAbort = new AbortController();
  private readonly justification = new PendingJustification();

  /** Transactions, subscriber mode and MONITOR: how upstream frames pair with commands. */
  private readonly stream = new ReplyStream();

  private readonly out: WriteBatch;

  constructor(
    private readonly resource: RedisResourceConfig,
    private readonly options: RedisAdapterOptions,
    private readonly socket: ClientSocket,
    private readonly ports: GovernancePorts,
    private readonly done: () => void,
  ) {
    this.client = `${socket.remoteAddress ?? 'unknown'}:${socket.remotePort ?? 0}`;
    this.out = new WriteBatch(socket, () => this.upstream);
  }

  start(): void {
    this.socket.setNoDelay?.(true);
    this.socket.on('data', (chunk: Buffer) => this.onClientData(chunk));
    this.socket.on('error', () => this.close('client error'));
    this.socket.on('close', () => this.close('client closed'));
    this.socket.on('end', () => this.close('client closed'));
  }

  // ---- client side -------------------------------------------------------------------------

  private onClientData(chunk: Buffer): void {
    if (this.closed) return;
    let frames: Buffer[];
    try {
      frames = this.framer.push(chunk);
      if (!this.session && this.framer.buffered > PRE_AUTH_BUFFER_LIMIT) throw new Error('unauthenticated client sent too much');
    } catch {
      this.protocolError();
      return;
    }
    // limits.maxMessageBytes: one command (all its arguments) at most; checked while it still
    // arrives, so a larger one is never buffered whole. Like Redis past proto-max-bulk-len, the
    // connection ends (the rest of the command cannot be told from the next one).
    const limit = resourceLimits(this.resource).maxMessageBytes;
    if (this.framer.buffered > limit || frames.some((frame) => frame.length > limit)) {
      this.writeClient(encodeError(`ERR Protocol error: command larger than this resource's limit of ${limit} bytes`));
      this.flush();
      this.close('command too large');
      return;
    }
    for (const frame of frames) this.inbox.push(frame);
    if (this.pending.length > MAX_QUEUED) this.socket.pause();
    void this.intake();
  }

  /** A malformed frame closes this connection only; it is audited first. */
  private protocolError(): void {
    if (!this.session) {
      this.ports.audit.record(this.ports.newId(), 'session.rejected', {
        resource: this.resource.name,
        protocol: 'redis',
        client: this.client,
        reason: 'malformed RESP frame',
        code: SluiceErrorCode.ProtocolMalformed,
      });
    }
    this.writeClient(encodeError('ERR Protocol error: malformed request'));
    this.flush();
    this.close('protocol error: malformed frame');
  }

  /** Takes frames in order; only authentication makes it wait (later commands need the new subject). */
  private async intake(): Promise<void> {
    if (this.intakeBusy) return;
    this.intakeBusy = true;
    try {
      while (this.inbox.length > 0 && !this.closed) {
        const frame = this.inbox.shift()!;
        let args: Buffer[];
        try {
          args = decodeCommand(frame);
        } catch {
          this.protocolError();
          return;
        }
        if (args.length === 0) continue;
        const name = args[0]!.toString('latin1').toUpperCase();
        if (!this.session) await this.beforeLogin(name, args);
        // An inline command goes upstream re-encoded from the arguments it was decided on,
        // never as the raw line, so the target cannot read it any other way.
        else {
          // Only re-authentication makes the loop wait: any other command is taken at once.
          const pending = this.afterLogin(name, args, frame[0] === RESP_ARRAY ? frame : encodeCommand(args));
          if (pending) await pending;
        }
      }
    } finally {
      this.intakeBusy = false;
    }
  }

  private async beforeLogin(name: string, args: Buffer[]): Promise<void> {
    if (!PRE_AUTH_COMMANDS.has(name)) return this.writeClient(encodeError(NOAUTH));
    switch (name) {
      case 'PING':
        return this.writeClient(args.length > 1 ? encodeValue({ type: 'bulk', value: args[1]! }) : encodeSimple('PONG'));
      case 'QUIT':
        this.writeClient(encodeSimple('OK'));
        this.flush();
        return this.close('client quit');
      case 'AUTH': {
        const token = authToken(args);
        if (token === undefined) return this.writeClient(encodeError("ERR wrong number of arguments for 'auth' command"));
        return this.login(token, undefined);
      }
      default: {
        const hello = parseHello(args);
        if ('error' in hello) return this.writeClient(encodeError(hello.error));
        if (!hello.auth) return this.writeClient(encodeError(HELLO_NOAUTH));
        return this.login(hello.auth.password, hello);
      }
    }
  }

  private rejectLogin(reason: string, code: string, reply: string, subject?: SubjectRef): void {
    this.ports.audit.record(this.ports.newId(), 'session.rejected', {
      resource: this.resource.name,
      protocol: 'redis',
      client: this.client,
      reason,
      code,
      ...(subject ? { subject } : {}),
    });
    this.writeClient(encodeError(reply));
  }

  private noAccess(admission: Extract<Admission, { admitted: false }>, sub: string): string {
    return admission.code === SluiceErrorCode.PolicyDenied ? `NOPERM no rule lets ${sub} use ${this.resource.name}` : 'NOPERM policy unavailable';
  }

  /** Verifies the agent's token, then opens and authenticates the upstream connection. */
  private async login(token: string, hello: HelloArgs | undefined): Promise<void> {
    const verified = await this.verify(token);
    if (!verified) return;
    if (!this.ports.audit.healthy) return this.rejectLogin('audit unavailable', SluiceErrorCode.AuditUnavailable, 'ERR audit unavailable');
    const subject = { sub: verified.subject.sub, groups: verified.subject.groups, issuer: verified.subject.issuer };
    const admission = await admitSession(this.ports.policy, verified.subject, this.resource.name);
    if (!admission.admitted) return this.rejectLogin(admission.reason, admission.code, this.noAccess(admission, verified.subject.sub), subject);
    // limits.maxConnectionsPerSubject, counted per connection for the subject it first logs in as.
    const limiter = this.ports.connectionLimits?.get(this.resource.name);
    if (limiter && !this.session && !this.releaseSubject) {
      const release = limiter.acquireSubject(subject.sub);
      if (!release) {
        const limit = limiter.limits.maxConnectionsPerSubject;
        return this.rejectLogin('too many connections of this subject', SluiceErrorCode.TooManyConnections, `ERR max number of clients reached for ${subject.sub} (${limit})`, subject);
      }
      this.releaseSubject = release;
    }
    let helloReply: Buffer | undefined;
    try {
      const target = await connectTarget(this.resource, this.options, hello, this.upstreamFramer, (socket) => (this.upstream = socket));
      this.attachUpstream(target.socket);
      helloReply = target.helloReply;
    } catch (error) {
      this.rejectLogin(`target unavailable: ${(error as Error).message}`, SluiceErrorCode.UpstreamFailed, 'ERR target unavailable', subject);
      this.flush();
      return this.close('target unavailable');
    }
    if (this.closed) return;
    if (hello?.protocol) this.protocol = hello.protocol;
    this.startSession(verified, admission.readOnly);
    this.writeClient(helloReply ?? encodeSimple('OK'));
  }

  private async verify(token: string): Promise<Awaited<ReturnType<GovernancePorts['identity']['verify']>> | undefined> {
    try {
      return await this.ports.identity.verify(token);
    } catch (error) {
      const code = (error as { code?: string }).code ?? SluiceErrorCode.TokenInvalid;
      if (this.session) {
        // A failed re-authentication keeps the current identity, as Redis does.
        this.ports.audit.record(this.session.id, 'session.rejected', {
          resource: this.resource.name,
          protocol: 'redis',
          client: this.client,
          reason: 'token rejected on re-authentication',
          code,
        });
        this.pushLocal('AUTH', [], encodeError(WRONGPASS));
      } else {
        this.rejectLogin('token rejected', code, WRONGPASS);
      }
      return undefined;
    }
  }

  private startSession(verified: Awaited<ReturnType<GovernancePorts['identity']['verify']>>, readOnly: boolean): void {
    const id = this.ports.newId();
    const session: SessionState = {
      id,
      governor: new Governor(this.ports, { id, resource: this.resource.name, subject: verified.subject, protocol: 'redis' }),
      resource: this.resource,
      subject: verified.subject,
      client: this.client,
      startedAt: this.ports.now(),
      commands: 0,
      expiryTimer: undefined,
    };
    if (verified.expiresAt) {
      // The session ends with its token.
      const delay = Math.max(0, verified.expiresAt.getTime() - Date.now());
      session.expiryTimer = setTimeout(() => this.close('token expired'), Math.min(delay, 2 ** 31 - 1));
      session.expiryTimer.unref();
    }
    this.session = session;
    this.ports.audit.record(session.id, 'session.started', {
      resource: this.resource.name,
      protocol: 'redis',
      subject: subjectRefOf(session.subject),
      client: this.client,
      readOnly,
    });
  }

  private endSession(reason: string): void {
    const session = this.session;
    if (!session) return;
    this.session = undefined;
    if (session.expiryTimer) clearTimeout(session.expiryTimer);
    this.ports.audit.record(session.id, 'session.ended', {
      resource: this.resource.name,
      reason,
      commands: session.commands,
      durationMs: this.ports.now().getTime() - session.startedAt.getTime(),
    });
  }

  private afterLogin(name: string, args: Buffer[], frame: Buffer): Promise<void> | undefined {
    switch (name) {
      case 'AUTH': {
        const token = authToken(args);
        if (token === undefined) return void this.pushLocal(name, args, encodeError("ERR wrong number of arguments for 'auth' command"));
        return this.reauthenticate(token, undefined);
      }
      case 'HELLO': {
        const hello = parseHello(args);
        if ('error' in hello) return void this.pushLocal(name, args, encodeError(hello.error));
        if (hello.auth) return this.reauthenticate(hello.auth.password, hello);
        return void this.pushHello(hello);
      }
      case 'QUIT': {
        return void this.pushLocal(name, args, encodeSimple('OK'), true);
      }
      default: {
        const refusal = refusalOf(name, args);
        if (refusal) {
          this.markDirty();
          const entry = this.pushLocal(name, args, encodeError(`NOPERM ${refusal}`));
          // Refused whatever the policy says, and recorded like a denial: attempts leave a trace.
          this.recordRefusal(entry, refusal);
          return undefined;
        }
        this.pushCommand(name, args, frame);
        return undefined;
      }
    }
  }

  /** AUTH after login switches the agent's identity; the upstream connection stays as it is. */
  private async reauthenticate(token: string, hello: HelloArgs | undefined): Promise<void> {
    const verified = await this.verify(token);
    if (!verified || this.closed) return;
    const admission = await admitSession(this.ports.policy, verified.subject, this.resource.name);
    if (!admission.admitted) return void this.pushLocal('AUTH', [], encodeError(this.noAccess(admission, verified.subject.sub)));
    this.endSession('re-authenticated');
    this.startSession(verified, admission.readOnly);
    if (hello?.protocol) this.pushHello(hello);
    else this.pushLocal('AUTH', [], encodeSimple('OK'));
  }

  /**
   * HELLO without AUTH after login: decided and recorded like any command (SETNAME changes the
   * connection's name on the target), then answered by the target, which switches protocol.
   */
  private pushHello(hello: HelloArgs): void {
    const args = ['HELLO', ...(hello.protocol ? [String(hello.protocol)] : []), ...(hello.setName ? ['SETNAME', hello.setName] : [])].map((arg) => Buffer.from(arg));
    const entry = this.pushCommand('HELLO', args, encodeCommand(args));
    // The protocol changes with the reply to this HELLO; replies before it keep the old one.
    if (hello.protocol) this.protocolSwitches.set(entry, hello.protocol);
  }

  private readonly protocolSwitches = new Map<Entry, 2 | 3>();

  private enqueue(entry: Entry): void {
    this.pending.push(entry);
    this.toDispatch.push(entry);
  }

  /** An answer of Sluice's own, kept in order with the replies before it. */
  private pushLocal(name: string, args: readonly Buffer[], reply: Buffer, closeAfter = false): Entry {
    const entry = newEntry(this.ports.newId(), this.session, name, args, reply, 'local');
    entry.closeAfter = closeAfter;
    entry.settled = true;
    entry.status = 'done';
    entry.reply = reply;
    this.enqueue(entry);
    this.pump();
    return entry;
  }

  private pushCommand(name: string, args: Buffer[], frame: Buffer): Entry {
    const entry = newEntry(this.ports.newId(), this.session, name, args, frame, 'command');
    this.enqueue(entry);
    const session = this.session!;
    session.commands++;
    const command = { kind: 'redis', args } as const;
    const cached = session.governor.cachedVerdict(command);
    if (cached) {
      entry.verdict = cached;
      entry.settled = true;
      this.pump();
      return entry;
    }
    void session.governor.decide(command).then((verdict) => {
      entry.verdict = verdict;
      entry.settled = true;
      this.pump();
    });
    return entry;
  }

  // ---- dispatch: decisions in order, before anything goes upstream ------------------------

  private pump(): void {
    while (!this.closed && !this.holding && !this.protocolPending && this.toDispatch.length > 0) {
      const entry = this.toDispatch[0]!;
      if (!entry.settled) break;
      this.toDispatch.shift();
      if (entry.kind === 'local') continue;
      this.dispatch(entry);
    }
    this.emit();
  }

  private dispatch(entry: Entry): void {
    const session = entry.session!;
    if (!this.ports.audit.healthy) return this.answer(entry, encodeError('ERR audit unavailable'), SluiceErrorCode.AuditUnavailable);
    const verdict = entry.verdict!;
    const recorded = this.recorded(entry, session, verdict);
    if (verdict.unavailable) {
      session.governor.recordDecided(recorded, verdict.decision);
      this.markDirty();
      return this.answer(entry, encodeError('NOPERM policy unavailable'), SluiceErrorCode.PolicyUnavailable);
    }
    let decision = verdict.decision;
    const unmaskable = UNMASKABLE_REPLIES.get(entry.name);
    const profile = maskProfileOf(decision);
    if (unmaskable && profile !== undefined) {
      const { rule, action, risk, tables, prepares } = decision;
      decision = { rule, action, risk, tables, prepares, effect: 'deny', reason: `${entry.name} ${unmaskable}, which masking profile '${profile}' cannot cover` } satisfies DenyDecision;
    }
    session.governor.recordDecided(recorded, decision);
    switch (decision.effect) {
      case 'deny': {
        this.markDirty();
        const why = decision.rule ? `denied by rule '${decision.rule}'` : 'denied: no rule allows it (default deny)';
        return this.answer(entry, encodeError(`NOPERM ${why}${decision.reason ? `: ${decision.reason}` : ''}`), SluiceErrorCode.PolicyDenied);
      }
      case 'approve':
        this.justification.note(session, entry.args);
        return this.hold(entry, decision, session, recorded.command);
      case 'allow':
        this.justification.note(session, entry.args);
        if (this.resource.audit?.wait === 'ack') return this.afterAcknowledged(entry, session, decision.maskProfile);
        return this.send(entry, decision.maskProfile);
    }
  }

  /** The command as recorded: masked (its name only if masking fails), cut to its first bytes. */
  private recorded(entry: Entry, session: SessionState, verdict: Verdict | undefined): RecordedCommand {
    const described = describeCommand(entry.args);
    return {
      commandId: entry.id,
      command: session.governor.maskedCommand(described.text, verdict?.unavailable === false ? verdict.decision : undefined, entry.name),
      ...(described.truncated ? { commandBytes: described.bytes } : {}),
    };
  }

  /** `audit.wait: ack`: the command goes to the target only once the bus has its record; later ones wait behind it. */
  private afterAcknowledged(entry: Entry, session: SessionState, maskProfile: string | undefined): void {
    this.holding = true;
    void session.governor.acknowledged().then((acknowledged) => {
      this.holding = false;
      if (this.closed) return;
      if (acknowledged) this.send(entry, maskProfile);
      else {
        this.markDirty();
        this.answer(entry, encodeError('ERR audit unavailable'), SluiceErrorCode.AuditUnavailable);
      }
      this.pump();
    });
  }

  private recordRefusal(entry: Entry, reason: string): void {
    const session = entry.session;
    if (!session) return;
    session.commands++;
    session.governor.recordRefusedBeforeRule(this.recorded(entry, session, undefined), reason);
    session.governor.recordRefused(entry.id, { outcome: 'error', code: SluiceErrorCode.PolicyDenied, message: `NOPERM ${reason}`, durationMs: performance.now() - entry.started });
  }

  /** A command refused inside MULTI makes EXEC abort, as a queueing error does in Redis. */
  private markDirty(): void {
    this.stream.markDirty();
  }

  private hold(entry: Entry, decision: ApproveDecision, session: SessionState, text: string): void {
    this.holding = true;
    const hash = commandHash([this.resource.name, session.subject.sub, entry.args.map((arg) => arg.toString('utf8'))]);
    void session.governor.hold({ commandId: entry.id, command: text, commandHash: hash, decision, justification: this.justification.take(session) }, this.holdAbort.signal).then((result) => {
      this.holding = false;
      if (this.closed) return;
      // Under audit.wait: ack a granted command waits for its record like an allowed one (PostgreSQL does too).
      if (result.granted) {
        if (this.resource.audit?.wait === 'ack') this.afterAcknowledged(entry, session, decision.maskProfile);
        else this.send(entry, decision.maskProfile);
      } else {
        this.markDirty();
        const id = result.approvalId ?? '-';
        this.answer(entry, encodeError(`NOPERM approval ${id} ${result.outcome}: ${result.reason || 'no reason given'}`), result.code);
      }
      this.pump();
    });
  }

  /** Answers a command without the target; records its completion. */
  private answer(entry: Entry, reply: Buffer, code: string): void {
    // A HELLO answered here never switches the protocol.
    this.protocolSwitches.delete(entry);
    entry.status = 'done';
    entry.reply = reply;
    entry.session?.governor.recordRefused(entry.id, { outcome: 'error', code, message: reply.toString('utf8', 1, reply.length - 2), durationMs: performance.now() - entry.started });
  }

  private send(entry: Entry, maskProfile: string | undefined): void {
    const refusal = this.stream.refusal(entry.name, entry.args, this.protocol);
    if (refusal) {
      // Inside MULTI, Redis aborts EXEC after a command it refused to queue: so does Sluice.
      this.markDirty();
      return this.answer(entry, encodeError(refusal), SluiceErrorCode.PolicyDenied);
    }
    const unsubscribed = this.stream.unsubscribedReplies(entry.name, entry.args, this.protocol);
    if (unsubscribed) {
      entry.status = 'done';
      entry.reply = unsubscribed;
      this.recordStreamed(entry, 'array');
      return;
    }
    const dispatch = this.stream.dispatch(entry.name, entry.args, maskProfile, this.protocol);
    entry.queued = dispatch.queued;
    if (dispatch.execQueue) entry.txQueued = [...dispatch.execQueue];
    entry.execAbort = dispatch.execAbort;
    entry.maskProfile = maskProfile;
    this.writeUpstream(dispatch.execAbort ? encodeCommand(['DISCARD']) : entry.frame);
    if (dispatch.expectsReply) {
      entry.status = 'sent';
      entry.confirmations = dispatch.confirmations;
      this.inflight.push(entry);
      // Until HELLO's reply, the protocol of later replies is unknown: nothing more is sent.
      if (this.protocolSwitches.has(entry)) this.protocolPending = true;
      return;
    }
    entry.status = 'done';
    entry.reply = Buffer.alloc(0);
    this.recordStreamed(entry, 'stream');
  }

  private recordStreamed(entry: Entry, outcome: string): void {
    if (!entry.session) return;
    this.ports.audit.record(entry.session.id, 'command.completed', { commandId: entry.id, outcome, ok: true, durationMs: performance.now() - entry.started });
  }

  // ---- upstream side -------------------------------------------------------------------------

  private onUpstreamFrame(frame: Buffer): void {
    const head = this.inflight[0];
    // RESP3 pushes (pub/sub messages, invalidations) are out of band, except the confirmations
    // that answer a subscribe: the subscribe is answered once all of them came.
    if (frame[0] === 0x3e) {
      if (head && head.confirmations > 0 && this.confirms(head, frame)) {
        this.forwardStreamed(frame);
        if (--head.confirmations === 0) {
          this.inflight.shift();
          this.stream.subscribeSettled();
          head.status = 'done';
          head.reply = Buffer.alloc(0);
          this.recordStreamed(head, 'stream');
          this.emit();
        }
        return;
      }
      return this.forwardStreamed(frame);
    }
    const entry = this.inflight.shift();
    if (!entry) return this.forwardStreamed(frame);
    // A subscribe answered by a plain frame (an error: arity, ACL) was not confirmed at all.
    if (entry.confirmations > 0) {
      entry.confirmations = 0;
      this.stream.subscribeSettled();
    }
    this.complete(entry, frame);
    this.emit();
  }

  /** Is this push a confirmation of the subscribe command waiting for its answer? */
  private confirms(entry: Entry, frame: Buffer): boolean {
    try {
      return confirmationOf(decodeReply(frame))?.kind === entry.name.toLowerCase();
    } catch {
      return false;
    }
  }

  /** A frame that answers no queued command: masked with the subscription's profile and sent on. */
  private forwardStreamed(frame: Buffer): void {
    this.emit();
    let shown: MaskedReply | undefined;
    try {
      const value = decodeReply(frame);
      shown = maskPushed(value, frame, this.ports.masking.masker(this.stream.profile), this.protocol, this.stream.mode === 'monitor');
      this.stream.streamed(value);
    } catch {
      shown = undefined;
    }
    // Pushed messages and confirmations are data the agent receives: each is recorded, as it was
    // sent (masked), as a result of the session (no command id of its own).
    if (this.session && shown) recordResult(this.ports.audit, this.ports.recording, this.session.id, 'push', shown);
    this.writeClient(shown ? shown.bytes : encodeError(WITHHELD));
  }

  private complete(entry: Entry, frame: Buffer): void {
    entry.status = 'done';
    const switchTo = this.protocolSwitches.get(entry);
    if (switchTo) {
      // A HELLO the target refused (a bad SETNAME, say) leaves the protocol as it was.
      if (frame[0] !== 0x2d && frame[0] !== 0x21) this.protocol = switchTo;
      this.protocolSwitches.delete(entry);
    }
    if (this.protocolPending && this.protocolSwitches.size === 0) {
      this.protocolPending = false;
      queueMicrotask(() => this.pump());
    }
    const session = entry.session!;
    let reply: MaskedReply;
    try {
      reply = decodeAndMask(frame, entry, this.protocol, (profile) => this.ports.masking.masker(profile), entry.execAbort ? { type: 'error', value: EXECABORT } : undefined);
    } catch {
      entry.reply = encodeError(WITHHELD);
      session.governor.recordRefused(entry.id, {
        outcome: 'error',
        code: SluiceErrorCode.MaskingUnavailable,
        message: 'result withheld: masking unavailable',
        durationMs: performance.now() - entry.started,
      });
      return;
    }
    entry.reply = reply.bytes;
    const errorText = errorTextOf(reply.value);
    const isError = errorText !== undefined;
    this.ports.audit.record(session.id, 'command.completed', {
      commandId: entry.id,
      outcome: reply.value.type,
      ok: !isError,
      ...(isError ? { error: { code: errorCodeOf(reply.value), message: errorText } } : {}),
      durationMs: performance.now() - entry.started,
    });
    if (!isError) recordResult(this.ports.audit, this.ports.recording, session.id, entry.id, reply);
  }

  /** Writes finished replies to the client in arrival order. */
  private emit(): void {
    while (this.pending.length > 0 && this.pending[0]!.status === 'done') {
      const entry = this.pending.shift()!;
      if (entry.reply && entry.reply.length > 0) this.writeClient(entry.reply);
      if (entry.closeAfter) {
        this.flush();
        this.close('client quit');
        return;
      }
    }
    if (this.pending.length <= MAX_QUEUED / 2 && this.socket.isPaused()) this.socket.resume();
  }

  private attachUpstream(upstream: Socket): void {
    upstream.on('data', (chunk: Buffer) => {
      let frames: Buffer[];
      try {
        frames = this.upstreamFramer.push(chunk);
      } catch {
        this.close('target sent a malformed reply');
        return;
      }
      for (const frame of frames) this.onUpstreamFrame(frame);
    });
    upstream.on('drain', () => this.socket.resume());
    upstream.on('error', () => this.close('target error'));
    upstream.on('close', () => this.close('target closed the connection'));
  }

  private writeClient(bytes: Buffer): void {
    this.out.toClient(bytes);
  }

  private writeUpstream(bytes: Buffer): void {
    this.out.toTarget(bytes);
  }

  private flush(): void {
    this.out.flush();
  }

  private close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.releaseSubject?.();
    this.holdAbort.abort();
    this.endSession(reason);
    this.upstream?.destroy();
    // Let buffered replies (e.g. QUIT's +OK, a protocol error) reach the client first.
    if (this.out.clientPending && !this.socket.destroyed) this.flush();
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1_000).unref();
    this.done();
  }
}
