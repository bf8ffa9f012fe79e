import { encodeError, encodeSimple } from '@sluice/codec-resp';
import { SluiceErrorCode, type SubjectRef } from '@sluice/contracts';
import { admitSession, type Admission } from '../governance/admission.js';
import { Governor, subjectRefOf } from '../governance/governor.js';
import type { GovernancePorts } from '../ports.js';
import type { HelloArgs } from './commands.js';
import type { CommandDispatch } from './command-dispatch.js';
import type { ConnectionState } from './connection-state.js';
import { elapsedMs, type SessionState } from './entries.js';
import { connectTarget } from './target.js';
import type { UpstreamReplies } from './upstream-replies.js';

const WRONGPASS = 'WRONGPASS invalid username-password pair or user is disabled.';

/**
 * Logins on the Redis front door: `AUTH <token>` or `HELLO 3 AUTH <user> <token>` verified,
 * the subject admitted and counted, the target connection opened with the resource's own
 * credentials; a later AUTH switches the identity on the same target connection.
 */
export class RedisLogin {
  /** Gives back this connection's place among its subject's (limits.maxConnectionsPerSubject). */
  releaseSubject: (() => void) | undefined;

  constructor(
    private readonly state: ConnectionState,
    private readonly dispatch: CommandDispatch,
    private readonly replies: UpstreamReplies,
  ) {}

  #rejectLogin(reason: string, code: string, reply: string, subject?: SubjectRef): void {
    this.state.ports.audit.record(this.state.ports.newId(), 'session.rejected', {
      resource: this.state.resource.name,
      protocol: 'redis',
      client: this.state.client,
      reason,
      code,
      ...(subject ? { subject } : {}),
    });
    this.state.writeClient(encodeError(reply));
  }

  /** An agent whose token was good but who hung up before its session started: on the record all the same. */
  #leftDuringLogin(subject: SubjectRef): void {
    this.state.ports.audit.record(this.state.ports.newId(), 'session.rejected', {
      resource: this.state.resource.name,
      protocol: 'redis',
      client: this.state.client,
      reason: 'client closed during login',
      code: SluiceErrorCode.ConnectionClosed,
      subject,
    });
  }

  #noAccess(admission: Extract<Admission, { admitted: false }>, sub: string): string {
    return admission.code === SluiceErrorCode.PolicyDenied ? `NOPERM no rule lets ${sub} use ${this.state.resource.name}` : 'NOPERM policy unavailable';
  }

  /** Verifies the agent's token, then opens and authenticates the upstream connection. */
  async login(token: string, hello: HelloArgs | undefined): Promise<void> {
    const verified = await this.#verify(token);
    if (!verified) return;
    const subject = { sub: verified.subject.sub, groups: verified.subject.groups, issuer: verified.subject.issuer };
    if (this.state.closed) return this.#leftDuringLogin(subject);
    if (!this.state.ports.audit.healthy) return this.#rejectLogin('audit unavailable', SluiceErrorCode.AuditUnavailable, 'ERR audit unavailable');
    const admission = await admitSession(this.state.ports.policy, verified.subject, this.state.resource.name);
    if (this.state.closed) return this.#leftDuringLogin(subject);
    if (!admission.admitted) return this.#rejectLogin(admission.reason, admission.code, this.#noAccess(admission, verified.subject.sub), subject);
    // limits.maxConnectionsPerSubject, counted per connection for the subject it first logs in as.
    const limiter = this.state.ports.connectionLimits?.get(this.state.resource.name);
    if (limiter && !this.state.session && !this.releaseSubject) {
      const release = limiter.acquireSubject(subject);
      if (!release) {
        const limit = limiter.limits.maxConnectionsPerSubject;
        return this.#rejectLogin('too many connections of this subject', SluiceErrorCode.TooManyConnections, `ERR max number of clients reached for ${subject.sub} (${limit})`, subject);
      }
      this.releaseSubject = release;
    }
    let helloReply: Buffer | undefined;
    try {
      const target = await connectTarget(this.state.resource, this.state.options, hello, this.state.upstreamFramer, (socket) => (this.state.upstream = socket));
      this.replies.attachUpstream(target.socket);
      helloReply = target.helloReply;
    } catch (error) {
      if (this.state.closed) return this.#leftDuringLogin(subject);
      this.#rejectLogin(`target unavailable: ${(error as Error).message}`, SluiceErrorCode.UpstreamFailed, 'ERR target unavailable', subject);
      this.state.flush();
      return this.state.close('target unavailable');
    }
    if (this.state.closed) {
      // The connection's close came before its target: nothing else would close this one.
      this.state.upstream?.destroy();
      return this.#leftDuringLogin(subject);
    }
    if (hello?.protocol) this.state.protocol = hello.protocol;
    this.#startSession(verified, admission.readOnly);
    this.state.writeClient(helloReply ?? encodeSimple('OK'));
  }

  async #verify(token: string): Promise<Awaited<ReturnType<GovernancePorts['identity']['verify']>> | undefined> {
    try {
      return await this.state.ports.identity.verify(token);
    } catch (error) {
      const code = (error as { code?: string }).code ?? SluiceErrorCode.TokenInvalid;
      if (this.state.session) {
        // A failed re-authentication keeps the current identity, as Redis does.
        this.state.ports.audit.record(this.state.session.id, 'session.rejected', {
          resource: this.state.resource.name,
          protocol: 'redis',
          client: this.state.client,
          reason: 'token rejected on re-authentication',
          code,
        });
        this.dispatch.pushLocal('AUTH', [], encodeError(WRONGPASS));
      } else {
        this.#rejectLogin('token rejected', code, WRONGPASS);
      }
      return undefined;
    }
  }

  #startSession(verified: Awaited<ReturnType<GovernancePorts['identity']['verify']>>, readOnly: boolean): void {
    const id = this.state.ports.newId();
    const session: SessionState = {
      id,
      governor: new Governor(this.state.ports, { id, resource: this.state.resource.name, subject: verified.subject, protocol: 'redis' }),
      resource: this.state.resource,
      subject: verified.subject,
      client: this.state.client,
      startedAt: this.state.ports.now(),
      commands: 0,
      expiryTimer: undefined,
    };
    if (verified.expiresAt) {
      // The session ends with its token.
      const delay = Math.max(0, verified.expiresAt.getTime() - Date.now());
      session.expiryTimer = setTimeout(() => this.state.close('token expired'), Math.min(delay, 2 ** 31 - 1));
      session.expiryTimer.unref();
    }
    this.state.session = session;
    this.state.ports.audit.record(session.id, 'session.started', {
      resource: this.state.resource.name,
      protocol: 'redis',
      subject: subjectRefOf(session.subject),
      client: this.state.client,
      readOnly,
    });
  }

  /**
   * A re-authentication refused before its token is looked at, answered and recorded under the
   * current session like a command Sluice refuses whatever the policy says (its token is not
   * recorded); inside MULTI it makes EXEC abort, as a queueing error does in Redis.
   */
  #refuseReauthentication(name: string, reply: string): void {
    const session = this.state.session!;
    this.state.markDirty();
    const entry = this.dispatch.pushLocal(name, [], encodeError(reply));
    session.commands++;
    session.governor.recordRefusedBeforeRule({ commandId: entry.id, command: name }, reply.slice('ERR '.length));
    session.governor.recordRefused(entry.id, { outcome: 'error', code: SluiceErrorCode.PolicyDenied, message: reply, durationMs: elapsedMs(entry) });
  }

  endSession(reason: string): void {
    const session = this.state.session;
    if (!session) return;
    this.state.session = undefined;
    if (session.expiryTimer) clearTimeout(session.expiryTimer);
    this.state.ports.audit.record(session.id, 'session.ended', {
      resource: this.state.resource.name,
      reason,
      commands: session.commands,
      durationMs: this.state.ports.now().getTime() - session.startedAt.getTime(),
    });
  }

  /**
   * AUTH after login switches the agent's identity; the upstream connection stays as it is. It
   * waits for the commands taken before it to be answered, as Redis does: their events are their
   * session's, which must not end before them (after its end, the audit port would number them
   * from 1 again, outside their agent's share). An agent that hangs up meanwhile is recorded
   * as the other logins are, and starts no session the closed connection would never end.
   */
  async reauthenticate(token: string, hello: HelloArgs | undefined): Promise<void> {
    await this.state.allAnswered();
    if (this.state.closed) return;
    const name = hello ? 'HELLO' : 'AUTH';
    const locked = this.state.stream.identityLocked(name);
    if (locked) return this.#refuseReauthentication(name, locked);
    const verified = await this.#verify(token);
    if (!verified) return;
    const subject = { sub: verified.subject.sub, groups: verified.subject.groups, issuer: verified.subject.issuer };
    if (this.state.closed) return this.#leftDuringLogin(subject);
    const admission = await admitSession(this.state.ports.policy, verified.subject, this.state.resource.name);
    if (this.state.closed) return this.#leftDuringLogin(subject);
    if (!admission.admitted) return void this.dispatch.pushLocal('AUTH', [], encodeError(this.#noAccess(admission, verified.subject.sub)));
    this.endSession('re-authenticated');
    this.#startSession(verified, admission.readOnly);
    if (hello?.protocol) this.dispatch.pushHello(hello);
    else this.dispatch.pushLocal('AUTH', [], encodeSimple('OK'));
  }
}
