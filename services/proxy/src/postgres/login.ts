/**
 * The login of an agent on the PostgreSQL front door, after the startup negotiation: its token
 * as password, its connection limit, its session policy, the startup parameters it may set, and
 * the target session opened with the resource's credentials. Every refusal is a FATAL the
 * caller sends; nothing here writes to the agent but the password request.
 * @see https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP
 */
import { decodeBackend, decodePassword, encodeAuthenticationCleartextPassword, FrontendCode } from '@sluice/codec-pg';
import { readSecret } from '@sluice/config';
import { SluiceErrorCode, type Subject } from '@sluice/contracts';
import { ClientEdge } from './client-encoding-frames.js';
import { encodingSwitch, SessionClientEncoding } from './client-encoding-session.js';
import type { SocketFrames } from './frame-source.js';
import type { SessionContext } from './session.js';
import { maskedForRecord } from './session-decisions.js';
import { schemasOf, SESSION_START_QUERY, unreadableParameter } from './session-state.js';
import { SqlState } from './sqlstate.js';
import type { ClientSocket } from './startup-negotiation.js';
import { readStartupParameters, requestedClientEncoding, sessionSettings, settingRefusedByTarget, StartupParameterRefusal, type StartupRequest } from './startup-parameters.js';
import { connectUpstream, UpstreamError, type UpstreamConnection } from './upstream.js';

/** Refuses the connection: FATAL with `sqlstate` and `message` to the agent, session.rejected to the audit. */
export type RejectLogin = (reason: string, code: string, sqlstate: string, message: string, subject?: Subject) => void;

/** An agent logged in and its target session open, not yet announced to the agent. */
export interface Login {
  readonly subject: Subject;
  readonly expiresAt: Date | undefined;
  readonly readOnly: boolean;
  readonly request: StartupRequest;
  readonly upstream: UpstreamConnection;
  /** The target's search_path, read by the session's first query. */
  readonly searchPath: string[];
  readonly serverEncoding: string | undefined;
  readonly clientEncoding: SessionClientEncoding;
  /** Converts to and from the agent's client encoding when that is not UTF8. */
  readonly edge: ClientEdge | undefined;
}

/**
 * Logs the agent in. Undefined once `reject` has been called; throws what reading the agent
 * throws (a malformed message), with the target session, if any, already destroyed.
 */
export const login = async (client: ClientSocket, frames: SocketFrames, parameters: ReadonlyMap<string, Buffer>, ctx: SessionContext, reject: RejectLogin): Promise<Login | undefined> => {
  const { ports, resource } = ctx;
  /**
   * The agent hung up while its login waited (checked after each step that waits): recorded
   * once, its place given back, nothing more done for it (no target session opened for an agent that is gone).
   */
  const left = (subject: Subject, release?: () => void): undefined => {
    release?.();
    reject('client closed during login', SluiceErrorCode.ConnectionClosed, SqlState.ConnectionFailure, 'the client closed the connection during login', subject);
    return undefined;
  };
  client.write(encodeAuthenticationCleartextPassword());
  const passwordFrame = await frames.next();
  if (passwordFrame.code !== FrontendCode.Password) {
    reject('protocol_malformed', 'ERR_PROTOCOL_MALFORMED', SqlState.ProtocolViolation, 'expected a password message');
    return undefined;
  }
  const token = decodePassword(passwordFrame.body);
  let verified;
  try {
    verified = await ports.identity.verify(token);
  } catch (error) {
    const code = (error as { code?: string }).code ?? 'ERR_TOKEN_INVALID';
    const expired = code === 'ERR_TOKEN_EXPIRED';
    reject(expired ? 'token expired' : 'token invalid', code, SqlState.InvalidPassword, expired ? 'token expired' : 'password authentication failed: the token is not valid');
    return undefined;
  }
  const subject = verified.subject;
  if (client.destroyed) return left(subject);
  // limits.maxConnectionsPerSubject: the place is given back when the connection closes, or
  // at once when the agent is found gone (its close came already, and would not come again).
  const limiter = ports.connectionLimits?.get(resource.name);
  let release: (() => void) | undefined;
  if (limiter) {
    release = limiter.acquireSubject(subject);
    if (!release) {
      const message = `too many connections for ${subject.sub}: at most ${limiter.limits.maxConnectionsPerSubject} at once`;
      reject('too many connections of this subject', 'ERR_TOO_MANY_CONNECTIONS', SqlState.TooManyConnections, message, subject);
      return undefined;
    }
    client.once('close', release);
  }
  let sessionPolicy;
  try {
    sessionPolicy = await ports.policy.describeSession(subject, resource.name);
  } catch {
    if (client.destroyed) return left(subject, release);
    reject('policy unavailable', 'ERR_POLICY_UNAVAILABLE', SqlState.CannotConnectNow, 'the policy service is unavailable', subject);
    return undefined;
  }
  if (client.destroyed) return left(subject, release);
  // A subject no rule allows anything here still gets a session: each command is then
  // refused with 42501 naming the default deny (and audited), as the contract's denial says;
  // the target side runs read-only so nothing could change even through a policy bug.
  const readOnly = sessionPolicy.readOnly || !sessionPolicy.mayConnect;
  let request: StartupRequest;
  try {
    request = readStartupParameters(parameters, { resourceName: resource.name, database: resource.target.database });
  } catch (error) {
    if (!(error instanceof StartupParameterRefusal)) throw error;
    // The message quotes what the agent sent (a setting's name, a whole `-c` word): masked for the record as a command text is.
    reject(`startup parameter refused: ${maskedForRecord(ctx.ports.masking, error.message, undefined)}`, error.code, error.sqlstate, error.message, subject);
    return undefined;
  }
  const forwarded = sessionSettings(request);
  // Enforced on the target too, so a function whose body writes still cannot change anything;
  // switching it off is an admin statement the policy refuses.
  if (readOnly) forwarded.push(['options', '-c default_transaction_read_only=on']);
  let upstream: UpstreamConnection;
  try {
    const target = resource.target;
    upstream = await connectUpstream({
      host: target.host,
      port: target.port,
      ssl: target.ssl,
      database: target.database,
      user: resource.credentials.username,
      password: readSecret(resource.credentials.password, ctx.secretsDir),
      parameters: forwarded,
      timeoutMs: ctx.startupTimeoutMs,
      initialQuery: SESSION_START_QUERY,
    });
  } catch (error) {
    if (client.destroyed) return left(subject, release);
    // The target's words may quote a value the agent sent (`invalid value for parameter "DateStyle": "…"`): masked for the record.
    const detail = maskedForRecord(ctx.ports.masking, error instanceof UpstreamError ? error.detail : String(error), undefined);
    const refusedSetting = error instanceof UpstreamError ? settingRefusedByTarget(error) : undefined;
    if (refusedSetting) {
      reject(`target refused a startup setting: ${detail}`, 'ERR_UPSTREAM_FAILED', refusedSetting.sqlstate, refusedSetting.message, subject);
      return undefined;
    }
    reject(`target unavailable: ${detail}`, 'ERR_UPSTREAM_FAILED', SqlState.ConnectionFailure, `the target database of ${resource.name} is unavailable`, subject);
    return undefined;
  }
  if (client.destroyed) {
    upstream.socket.destroy();
    return left(subject, release);
  }
  try {
    const searchPath = schemasOf(upstream.initialRows);
    const statuses = upstream.parameterStatus.map((raw) => decodeBackend({ code: raw[0]!, body: raw.subarray(5), raw }) as { name: string; value: string });
    const serverEncoding = statuses.find((status) => status.name === 'server_encoding')?.value;
    const unreadable = statuses.map((status) => unreadableParameter(status.name, status.value, serverEncoding)).find((why) => why !== undefined);
    // Validated with the other startup parameters: the agent's encoding is converted at the edge.
    const startupEncoding = encodingSwitch(requestedClientEncoding(request) ?? 'UTF8');
    const clientEncoding = new SessionClientEncoding(startupEncoding, serverEncoding);
    const edge = startupEncoding.encoding ? new ClientEdge(startupEncoding.encoding) : undefined;
    if (unreadable) {
      upstream.socket.destroy();
      reject(unreadable, 'ERR_UPSTREAM_FAILED', SqlState.FeatureNotSupported, `${unreadable}: sluice cannot read commands as the target would`, subject);
      return undefined;
    }
    return { subject, expiresAt: verified.expiresAt, readOnly, request, upstream, searchPath, serverEncoding, clientEncoding, edge };
  } catch (error) {
    upstream.socket.destroy();
    throw error;
  }
};
