import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Pool } from 'undici';
import { readSecret, resourceLimits, type HttpResourceConfig } from '@sluice/config';
import { normalizeHttpPath, SluiceErrorCode, type Subject } from '@sluice/contracts';
import type { MaskCounts, ProfileMasker } from '@sluice/masking-engine';
import { UNDECIDED_COMMAND_EVENTS, type GovernancePorts, type ProtocolAdapter, type Session, type VerifiedToken } from '../ports.js';
import { BACKLOG_WAIT_MS, backlogDrained } from './backlog.js';
import { commandHash } from '../governance/approval-hold.js';
import { admitSession } from '../governance/admission.js';
import { Governor, subjectRefOf, type RecordedCommand, type Verdict } from '../governance/governor.js';
import { millisecondsSince } from '../recording.js';
import { httpJustification } from '../justification.js';
import { BodyLimit } from './body-limit.js';
import { ambiguityOf, HOP_BY_HOP, METHOD_OVERRIDE_HEADERS, PATH_OVERRIDE_HEADERS } from './request-guards.js';
import { Problem, sendProblem } from './problem.js';
import { maskResponseHeaders } from './response-headers.js';
import { callUpstream, type UpstreamResponse } from './upstream-call.js';
import { credentialPattern, CredentialScrubStream, scrubCredentials, scrubText, type CredentialPattern } from './credential-scrub.js';
import { byteLengthOf, maskJsonText, maskTextBody, opensLikeJson, prepend, readMore, readStart, readUpTo, type BodyRead } from './json-body.js';
import {
  BodyRecording,
  bodyKind,
  decoderFor,
  DEFAULT_MASK_WINDOW,
  DEFAULT_MAX_JSON_BYTES,
  RecordingTap,
  TextMaskStream,
} from './body-masking.js';

export interface HttpAdapterOptions {
  /** Base directory of `{ file: … }` secrets (the config file's directory). */
  readonly secretsDir: string;
  /** Characters held back while streaming text masking (see body-masking.ts). */
  readonly maskWindow?: number;
  /** Largest JSON body parsed whole; larger ones are masked as streamed text. */
  readonly maxJsonBytes?: number;
  /** Largest request body buffered for a held (approval) request; its hash binds the approval. */
  readonly maxHeldBodyBytes?: number;
}

type ClientSocket = Parameters<ProtocolAdapter['handleConnection']>[0];

interface SessionState extends Session {
  readonly governor: Governor;
  commands: number;
}

interface ConnectionState {
  readonly ports: GovernancePorts;
  readonly client: string;
  /** By subject (issuer, sub, groups): see sessionKey. */
  readonly sessions: Map<string, SessionState>;
  /** Verified tokens of this connection, so keep-alive requests do not re-verify each time. */
  readonly tokens: Map<string, VerifiedToken>;
  /** The Authorization header of the last request whose token was accepted, and that token. */
  lastBearer: { readonly header: string; readonly verified: VerifiedToken } | undefined;
  /** Places among each subject's connections (limits.maxConnectionsPerSubject), given back on close. */
  readonly releases: Array<() => void>;
  /** Requests being handled: a session ends in the record only after their completions. */
  readonly handling: Set<Promise<void>>;
  /** The connection closed: its sessions were ended, and its places given back. */
  closed: boolean;
}


/** Issuer, sub and groups: everything a decision reads from the subject. */
const sessionKey = (subject: Subject): string => {
  // Worked out once per verified token (its subject object), not per request.
  let key = sessionKeys.get(subject);
  if (key === undefined) {
    key = JSON.stringify([subject.issuer, subject.sub, [...subject.groups].sort()]);
    sessionKeys.set(subject, key);
  }
  return key;
};
const sessionKeys = new WeakMap<Subject, string>();

/**
 * The HTTP front door: a node:http server fed with the listener's sockets. Every request
 * carries `Authorization: Bearer <token>` (removed before the target), is decided on its
 * normalised path before anything goes upstream, is forwarded with the resource's own
 * credential headers through a keep-alive undici Pool (its `dispatch`: see upstream-call.ts),
 * and its response body is masked.
 */
export const createHttpAdapter = (
  resource: HttpResourceConfig,
  options: HttpAdapterOptions,
): ProtocolAdapter & { close(): Promise<void> } => {
  const target = new URL(resource.target.url);
  const basePath = target.pathname.replace(/\/+$/, '');
  const pool = new Pool(target.origin, { keepAliveTimeout: 10_000, connections: 256 });
  const connections = new WeakMap<object, ConnectionState>();
  let closed = false;
  const maskWindow = options.maskWindow ?? DEFAULT_MASK_WINDOW;
  const maxJsonBytes = options.maxJsonBytes ?? DEFAULT_MAX_JSON_BYTES;
  const maxHeldBodyBytes = options.maxHeldBodyBytes ?? 1024 * 1024;
  const maxBodyBytes = resourceLimits(resource).maxMessageBytes;

  const server = createServer({ keepAliveTimeout: 30_000, requestTimeout: 0 }, (req, res) => {
    const state = connections.get(req.socket);
    if (!state) {
      res.destroy();
      return;
    }
    const handling = handle(state, req, res);
    state.handling.add(handling);
    void handling.finally(() => state.handling.delete(handling));
  });
  server.on('clientError', (error: Error & { code?: string }, socket) => {
    // Bytes node:http cannot parse (smuggling attempts among them) are audited, then refused.
    const state = connections.get(socket);
    state?.ports.audit.record(state.ports.newId(), 'session.rejected', {
      resource: resource.name,
      protocol: 'http',
      client: state.client,
      reason: `malformed HTTP request: ${error.code ?? 'parse error'}`,
      code: SluiceErrorCode.ProtocolMalformed,
    });
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
  });

  /**
   * Keep-alive requests repeat the header verbatim: the same text is the same token, so the parse,
   * the lookup by a long token and a promise are skipped; its expiry is still checked each time.
   */
  const repeatedBearer = (state: ConnectionState, req: IncomingMessage): VerifiedToken | undefined => {
    const last = state.lastBearer;
    if (!last || req.headers.authorization !== last.header) return undefined;
    const { expiresAt } = last.verified;
    return !expiresAt || expiresAt.getTime() > Date.now() ? last.verified : undefined;
  };

  const authenticate = async (state: ConnectionState, req: IncomingMessage): Promise<VerifiedToken | Problem> => {
    const header = req.headers.authorization;
    const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    if (!match) {
      return new Problem(401, SluiceErrorCode.TokenInvalid, 'Unauthorized', 'a bearer token is required', {}, {
        'www-authenticate': 'Bearer realm="sluice"',
      });
    }
    const token = match[1]!;
    const cached = state.tokens.get(token);
    if (cached && (!cached.expiresAt || cached.expiresAt.getTime() > Date.now())) {
      state.lastBearer = { header: header!, verified: cached };
      return cached;
    }
    state.lastBearer = undefined;
    try {
      const verified = await state.ports.identity.verify(token);
      if (state.tokens.size > 16) state.tokens.clear();
      state.tokens.set(token, verified);
      state.lastBearer = { header: header!, verified };
      return verified;
    } catch (error) {
      const code = (error as { code?: string }).code === SluiceErrorCode.TokenExpired ? SluiceErrorCode.TokenExpired : SluiceErrorCode.TokenInvalid;
      state.ports.audit.record(state.ports.newId(), 'session.rejected', {
        resource: resource.name,
        protocol: 'http',
        client: state.client,
        reason: 'token rejected',
        code,
      });
      return new Problem(401, code, 'Unauthorized', 'the bearer token was not accepted', {}, {
        'www-authenticate': `Bearer realm="sluice", error="invalid_token"`,
      });
    }
  };

  /**
   * Admits the session of a subject the connection has none for yet (`key`: its sessionKey). A
   * session is one subject exactly as its token states it: another token with the same `sub` but
   * other groups (revoked, or from another issuer) is decided for what it says, not for what an
   * earlier token on this connection said.
   */
  const admitNewSession = async (state: ConnectionState, verified: VerifiedToken, key: string): Promise<SessionState | Problem> => {
    const admission = await admitSession(state.ports.policy, verified.subject, resource.name);
    if (!admission.admitted) {
      return admission.code === SluiceErrorCode.PolicyDenied
        ? new Problem(403, admission.code, 'Forbidden', `no rule lets ${verified.subject.sub} use ${resource.name}`)
        : new Problem(503, admission.code, 'Policy unavailable', 'the policy service cannot answer; nothing was sent');
    }
    const { readOnly } = admission;
    if (state.closed) {
      // The agent hung up while its token or its admission was checked: the connection's sessions
      // were ended and its places given back already; a session made now would never end, and
      // its place would never be given back.
      state.ports.audit.record(state.ports.newId(), 'session.rejected', {
        resource: resource.name,
        protocol: 'http',
        client: state.client,
        reason: 'client closed during login',
        code: SluiceErrorCode.ConnectionClosed,
        subject: subjectRefOf(verified.subject),
      });
      return new Problem(400, SluiceErrorCode.ConnectionClosed, 'Client closed', 'the connection closed during login');
    }
    const again = state.sessions.get(key);
    if (again) return again;
    // limits.maxConnectionsPerSubject: the place is held while this connection is open.
    const limiter = state.ports.connectionLimits?.get(resource.name);
    if (limiter) {
      const release = limiter.acquireSubject(verified.subject);
      if (!release) {
        const limit = limiter.limits.maxConnectionsPerSubject;
        state.ports.audit.record(state.ports.newId(), 'session.rejected', {
          resource: resource.name,
          protocol: 'http',
          client: state.client,
          reason: 'too many connections of this subject',
          code: SluiceErrorCode.TooManyConnections,
          subject: subjectRefOf(verified.subject),
        });
        return new Problem(429, SluiceErrorCode.TooManyConnections, 'Too many connections', `${verified.subject.sub} may hold at most ${limit} connections at once`, {}, { 'retry-after': '1' });
      }
      state.releases.push(release);
    }
    const id = state.ports.newId();
    const session: SessionState = {
      id,
      governor: new Governor(state.ports, { id, resource: resource.name, subject: verified.subject, protocol: 'http' }),
      resource,
      subject: verified.subject,
      client: state.client,
      startedAt: state.ports.now(),
      commands: 0,
    };
    state.sessions.set(key, session);
    state.ports.audit.record(session.id, 'session.started', {
      resource: resource.name,
      protocol: 'http',
      subject: subjectRefOf(verified.subject),
      client: state.client,
      readOnly,
    });
    return session;
  };

  /** Header names the resource's credentials take: an agent's header of such a name never reaches the target. */
  const injected = new Set(Object.keys(resource.credentials.headers).map((name) => name.toLowerCase()));

  /** Request headers for the target: no hop-by-hop, no agent token, the resource's credentials. */
  const upstreamHeaders = (req: IncomingMessage, masking: boolean, credentials: Credentials): Record<string, string | string[]> => {
    const connection = req.headers.connection;
    const connectionTokens =
      connection === undefined
        ? NO_TOKENS
        : new Set(
            connection
              .split(',')
              .map((token) => token.trim().toLowerCase())
              .filter(Boolean),
          );
    const headers: Record<string, string | string[]> = {};
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const name = req.rawHeaders[i]!.toLowerCase();
      const value = req.rawHeaders[i + 1]!;
      if (HOP_BY_HOP.has(name) || connectionTokens.has(name) || name === 'authorization' || injected.has(name)) continue;
      if (METHOD_OVERRIDE_HEADERS.has(name) || PATH_OVERRIDE_HEADERS.has(name)) continue;
      if (masking && name === 'accept-encoding') continue;
      const existing = headers[name];
      headers[name] = existing === undefined ? value : Array.isArray(existing) ? [...existing, value] : [existing, value];
    }
    // Only encodings Sluice can decode, so the body can be masked.
    if (masking) headers['accept-encoding'] = 'gzip, deflate, br';
    // An unset secret was reported when the proxy started; the target then answers for itself.
    for (const [name, value] of credentials.headers) headers[name] = value;
    return headers;
  };

  const readBody = async (req: IncomingMessage): Promise<Buffer | Problem> => {
    const parts: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > maxHeldBodyBytes) {
        return new Problem(413, SluiceErrorCode.ApprovalUnavailable, 'Payload too large', `a request held for approval may carry at most ${maxHeldBodyBytes} bytes`);
      }
      parts.push(chunk);
    }
    return Buffer.concat(parts);
  };

  const hasBody = (req: IncomingMessage): boolean =>
    req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');

  const handle = async (state: ConnectionState, req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const { ports } = state;
    const requestId = ports.newId();
    const started = performance.now();
    const fail = (problem: Problem, session?: SessionState, commandId?: string) => {
      req.resume();
      if (session && commandId) {
        ports.audit.record(session.id, 'command.completed', {
          commandId,
          outcome: String(problem.status),
          ok: false,
          error: { code: problem.code, message: problem.detail },
          durationMs: millisecondsSince(started),
        });
      }
      sendProblem(res, problem, requestId);
    };

    const ambiguity = ambiguityOf(req);
    if (ambiguity) {
      ports.audit.record(ports.newId(), 'session.rejected', {
        resource: resource.name,
        protocol: 'http',
        client: state.client,
        reason: `ambiguous request: ${ambiguity}`,
        code: SluiceErrorCode.ProtocolMalformed,
      });
      // The rest of the connection's bytes cannot be trusted to frame the next request either.
      res.shouldKeepAlive = false;
      return fail(new Problem(400, SluiceErrorCode.ProtocolMalformed, 'Bad request', `refused: ${ambiguity}`, {}, { connection: 'close' }));
    }
    // Cached answers are taken without a promise: most requests of a connection repeat its first.
    const verified = repeatedBearer(state, req) ?? (await authenticate(state, req));
    if (verified instanceof Problem) return fail(verified);
    const key = sessionKey(verified.subject);
    const session = state.sessions.get(key) ?? (await admitNewSession(state, verified, key));
    if (session instanceof Problem) return fail(session);

    const rawUrl = req.url ?? '/';
    const path = normalizeHttpPath(rawUrl);
    // The query ends at a fragment, and a `?` within the fragment starts none (a client never sends
    // a fragment: what follows `#` is not the target's to see).
    const pathEnd = rawUrl.search(/[?#]/);
    const query = pathEnd === -1 || rawUrl[pathEnd] === '#' ? '' : rawUrl.slice(pathEnd).split('#', 1)[0]!;
    const method = (req.method ?? 'GET').toUpperCase();
    if (path === undefined) {
      // A path trick (`;`, `%2F`, `%25`, `\\`…) is refused without a rule, and recorded as a denial.
      session.commands++;
      session.governor.recordRefusedBeforeRule(recordedRequest(session.governor, requestId, method, rawUrl.split(/[?#]/, 1)[0] ?? '', undefined), 'the request path cannot be normalised safely');
      return fail(new Problem(400, SluiceErrorCode.ProtocolMalformed, 'Bad request', 'the request path cannot be normalised safely'), session, requestId);
    }
    // An agent past its share of the audit queue waits here (its requests are delayed), for a bounded time.
    const backlog = await backlogDrained(ports.audit, session.id);
    if (backlog === 'late') {
      return fail(new Problem(503, SluiceErrorCode.AuditUnavailable, 'Audit backlogged', `this agent's earlier events were not acknowledged by the audit within ${BACKLOG_WAIT_MS} ms; nothing was sent`));
    }
    if (backlog === 'gone') return fail(new Problem(503, SluiceErrorCode.AuditUnavailable, 'Audit unavailable', 'events cannot be recorded; nothing was sent'));
    let verdict: Verdict;
    let recorded: RecordedCommand;
    try {
      if (!ports.audit.healthy) return fail(new Problem(503, SluiceErrorCode.AuditUnavailable, 'Audit unavailable', 'events cannot be recorded; nothing was sent'));
      session.commands++;
      const command = { kind: 'http', method, path } as const;
      verdict = session.governor.cachedVerdict(command) ?? (await session.governor.decide(command));
      recorded = recordedRequest(session.governor, requestId, method, `${path}${query}`, verdict.unavailable ? undefined : verdict.decision);
      session.governor.recordDecided(recorded, verdict.decision);
    } finally {
      // Its decision is recorded (or it was refused before one): no longer to come (see backlogDrained).
      ports.audit.coming?.(session.id, -UNDECIDED_COMMAND_EVENTS);
    }
    const decision = verdict.decision;
    if (verdict.unavailable) {
      return fail(new Problem(503, SluiceErrorCode.PolicyUnavailable, 'Policy unavailable', 'the policy service cannot answer; nothing was sent'), session, requestId);
    }
    if (decision.effect === 'deny') {
      const detail = decision.rule
        ? `denied by rule '${decision.rule}'${decision.reason ? `: ${decision.reason}` : ''}`
        : 'denied: no rule allows this request (default deny)';
      return fail(new Problem(403, SluiceErrorCode.PolicyDenied, 'Forbidden', detail, { rule: decision.rule }), session, requestId);
    }

    const masking = session.governor.maskerFor(decision);
    if (!masking.ok) {
      return fail(new Problem(503, masking.code, 'Masking unavailable', 'the result cannot be masked; nothing was sent'), session, requestId);
    }
    const masker = masking.masker;
    if (resource.audit?.wait === 'ack') {
      // The request goes to the target only once the bus has its record.
      if (!(await session.governor.acknowledged())) return fail(new Problem(503, SluiceErrorCode.AuditUnavailable, 'Audit unavailable', 'the request\'s audit record was not acknowledged; nothing was sent'), session, requestId);
    }

    let body: Buffer | Readable | undefined = hasBody(req) ? req : undefined;
    // limits.maxMessageBytes: a declared length is refused before anything is sent; a chunked
    // body is cut where it passes the limit (the target's request then fails, the agent gets 413).
    const declared = Number(req.headers['content-length']);
    const tooLarge = () =>
      new Problem(413, SluiceErrorCode.LimitExceeded, 'Content too large', `the request body exceeds this resource's limit of ${maxBodyBytes} bytes`);
    if (declared > maxBodyBytes) return fail(tooLarge(), session, requestId);
    let bodyLimit: BodyLimit | undefined;
    if (body && !(declared >= 0)) {
      bodyLimit = new BodyLimit(maxBodyBytes);
      body = req.pipe(bodyLimit);
      req.once('error', (error) => bodyLimit!.destroy(error));
    }
    if (decision.effect === 'approve') {
      // The held request's body is part of what the approver approves.
      const buffered = body ? await readBody(req) : Buffer.alloc(0);
      if (buffered instanceof Problem) return fail(buffered, session, requestId);
      body = body ? buffered : undefined;
      const hash = commandHash([resource.name, session.subject.sub, method, `${path}${query}`, commandHash([buffered.toString('base64')])]);
      const abort = new AbortController();
      const onClose = () => {
        if (!res.writableFinished) abort.abort();
      };
      res.once('close', onClose);
      const justification = httpJustification(req.headers);
      const result = await session.governor.hold({ commandId: requestId, command: recorded.command, commandHash: hash, decision, justification }, abort.signal);
      res.off('close', onClose);
      if (!result.granted) {
        const id = result.approvalId ?? '-';
        return fail(
          new Problem(403, result.code, 'Forbidden', `approval ${id} ${result.outcome}${result.reason ? `: ${result.reason}` : ''}`, {
            rule: decision.rule,
            approvalId: result.approvalId,
          }),
          session,
          requestId,
        );
      }
    }

    const credentials = credentialsNow();
    let headers: Record<string, string | string[]>;
    try {
      headers = upstreamHeaders(req, masker !== undefined || credentials.echoed !== undefined, credentials);
    } catch (problem) {
      return fail(problem as Problem, session, requestId);
    }
    const call = callUpstream(pool, { method, path: `${basePath}${path}${query}`, headers, body: body ?? null });
    // An agent gone before the answer is complete: the call to the target is aborted.
    res.once('close', () => {
      if (!res.writableFinished) call.abort(new Error('the agent closed the connection'));
    });
    let upstream: UpstreamResponse;
    try {
      upstream = await call.response;
    } catch {
      if (bodyLimit?.exceeded) return fail(tooLarge(), session, requestId);
      return fail(new Problem(502, SluiceErrorCode.UpstreamFailed, 'Bad gateway', 'the target did not answer'), session, requestId);
    }

    await respond(state, session, requestId, started, method, upstream, masker, credentials.echoed, res);
  };

  /**
   * The credential headers Sluice injects and every form a target could echo them in (with and
   * without their prefix): read once per request, so a rotated secret is covered, and the value
   * injected is the one scrubbed from the answer.
   */
  const credentialsNow = (): Credentials => {
    if (injected.size === 0) return NO_CREDENTIALS;
    const headers: (readonly [string, string])[] = [];
    const values: string[] = [];
    for (const [name, ref] of Object.entries(resource.credentials.headers)) {
      const full = readSecret(ref, options.secretsDir);
      if (full === undefined) continue;
      headers.push([name.toLowerCase(), full]);
      values.push(full, full.slice(ref.prefix?.length ?? 0));
    }
    // A value injected before a secret was rotated stays scrubbed: a target may still echo it
    // (a cached answer, a slow request that carried it).
    for (const value of values) {
      if (injectedBefore.has(value)) continue;
      injectedBefore.add(value);
      if (injectedBefore.size > MAX_REMEMBERED_CREDENTIALS) injectedBefore.delete(injectedBefore.values().next().value!);
    }
    // Built again only when a value changed (the key is every value, JSON-encoded: no two lists share it).
    const key = JSON.stringify([...injectedBefore]);
    if (lastPattern?.key !== key) lastPattern = { key, echoed: credentialPattern([...injectedBefore]) };
    return { headers, echoed: lastPattern.echoed };
  };
  const injectedBefore = new Set<string>();
  let lastPattern: { readonly key: string; readonly echoed: CredentialPattern | undefined } | undefined;

  const respond = async (
    state: ConnectionState,
    session: SessionState,
    requestId: string,
    started: number,
    method: string,
    upstream: UpstreamResponse,
    masker: ProfileMasker | undefined,
    echoed: CredentialPattern | undefined,
    res: ServerResponse,
  ): Promise<void> => {
    const { ports } = state;
    const status = upstream.statusCode;
    const responseHeaders: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(upstream.headers)) {
      if (value === undefined || HOP_BY_HOP.has(name)) continue;
      responseHeaders[name] = value;
    }
    const counts: MaskCounts = {};
    const contentType = headerValue(upstream.headers['content-type']);
    // Every Content-Encoding header, as the agent's client would apply them: one not decoded is refused.
    const encoding = allValues(upstream.headers['content-encoding']);
    const bodyless = method === 'HEAD' || status === 204 || status === 304 || headerValue(upstream.headers['content-length']) === '0';
    const recording = new BodyRecording(ports.recording.maxBytes);
    const record = (ok: boolean, error?: { code: string; message: string }) => {
      ports.audit.record(session.id, 'command.completed', {
        commandId: requestId,
        outcome: String(status),
        ok: ok && status < 400,
        ...(error ? { error } : {}),
        durationMs: millisecondsSince(started),
      });
      if (ok) {
        ports.audit.record(session.id, 'result.returned', {
          commandId: requestId,
          columns: ['body'],
          rows: recording.total > 0 && ports.recording.maxRows > 0 ? [[recording.recorded]] : [],
          rowCount: recording.total > 0 ? 1 : 0,
          bytes: recording.total,
          truncated: recording.truncated,
          maskedCounts: counts,
        });
      }
    };

    /** Answers 403 in place of a result Sluice cannot make safe to show; the audit record says why. */
    const withhold = (reason: string, detail: string) => {
      record(false, { code: SluiceErrorCode.MaskingUnavailable, message: `result withheld: ${reason}` });
      sendProblem(res, new Problem(403, SluiceErrorCode.MaskingUnavailable, 'Result withheld', detail), requestId);
    };

    // The agent never sees the target's credentials, even echoed back (CONTRACT §3), masked or not.
    for (const [name, value] of Object.entries(responseHeaders)) {
      responseHeaders[name] = Array.isArray(value) ? value.map((one) => scrubText(one, echoed)) : scrubText(value, echoed);
    }

    if (masker) {
      try {
        maskResponseHeaders(responseHeaders, masker, counts);
      } catch {
        upstream.body.resume();
        record(false, { code: SluiceErrorCode.MaskingUnavailable, message: 'result withheld: masking failed' });
        sendProblem(res, new Problem(503, SluiceErrorCode.MaskingUnavailable, 'Masking unavailable', 'the result cannot be masked'), requestId);
        return;
      }
    }

    if (!masker || bodyless) {
      const scrubbing = !bodyless && echoed !== undefined;
      const decoder = scrubbing ? decoderFor(encoding) : null;
      if (decoder === undefined) {
        upstream.body.resume();
        withhold('the body cannot be checked for credentials', 'the response body is encoded in a way Sluice cannot check, so it was withheld');
        return;
      }
      if (scrubbing) {
        delete responseHeaders['content-length'];
        if (decoder) {
          delete responseHeaders['content-encoding'];
          delete responseHeaders['etag'];
          delete responseHeaders['content-md5'];
        }
      }
      res.writeHead(status, responseHeaders);
      try {
        const stages: NodeJS.ReadWriteStream[] = [];
        if (decoder) stages.push(decoder());
        if (scrubbing) stages.push(new CredentialScrubStream(echoed));
        await pipeline([upstream.body, ...stages, new RecordingTap(recording), res]);
        record(true);
      } catch {
        record(false, { code: SluiceErrorCode.UpstreamFailed, message: 'the response stream failed' });
        res.destroy();
      }
      return;
    }

    const kind = bodyKind(contentType);
    const decoder = decoderFor(encoding);
    if (kind === 'opaque' || decoder === undefined) {
      upstream.body.resume();
      withhold('the body cannot be masked', 'the response body cannot be masked (content type or encoding), so it was withheld');
      return;
    }
    delete responseHeaders['content-encoding'];
    delete responseHeaders['content-length'];
    // The body changes: validators of the original bytes no longer hold.
    delete responseHeaders['etag'];
    delete responseHeaders['content-md5'];
    // A body that needs no decoding is read as it comes, without a stream, when it is read whole
    // (echoed credentials are then scrubbed from all its bytes at once); the stream stages are
    // made only for a body that needs them or goes on past what is read whole.
    const direct = !decoder;
    let decodedStream: Readable | undefined;
    const decodedBody = (): Readable => {
      if (decodedStream) return decodedStream;
      const unpacked: Readable = decoder ? upstream.body.pipe(decoder()) : upstream.body;
      if (decoder) upstream.body.on('error', (error) => unpacked.destroy(error));
      return (decodedStream = scrubbed(unpacked));
    };
    const scrubbed = (unpacked: Readable): Readable => {
      if (!echoed) return unpacked;
      const decoded = unpacked.pipe(new CredentialScrubStream(echoed));
      unpacked.on('error', (error) => decoded.destroy(error));
      return decoded;
    };
    /** The body read directly, to its end or past `maxJsonBytes`, with echoed credentials scrubbed. */
    const readDirectly = async (): Promise<BodyRead> => {
      const read = await upstream.readUpTo(maxJsonBytes);
      if (!echoed) return read;
      if (read.complete) return { bytes: scrubCredentials(read.bytes, echoed), complete: true };
      // Past what is read whole: what was read goes back before the rest, and both are scrubbed
      // as one stream, so a credential across the cut is still found.
      decodedStream = scrubbed(Readable.from(prepend(read.bytes, (upstream.body as AsyncIterable<Buffer>)[Symbol.asyncIterator]())));
      return readUpTo(decodedStream, maxJsonBytes);
    };

    try {
      // What a whole read leaves is read through an iterator, made only when needed.
      let chunks: AsyncIterator<Buffer> | undefined;
      const rest = (): AsyncIterator<Buffer> => (chunks ??= (decodedBody() as AsyncIterable<Buffer>)[Symbol.asyncIterator]());
      const columnRules = masker.columnRuleCount !== 0;
      // Column rules apply to JSON members by name: a JSON body, or a text body that opens like
      // JSON (a mislabelled document, NDJSON), is read whole to be walked.
      let whole: BodyRead;
      if (kind === 'json') whole = direct ? await readDirectly() : await readUpTo(decodedBody(), maxJsonBytes);
      else {
        const start = await readStart(rest(), maxJsonBytes);
        if (!columnRules || !opensLikeJson(start.bytes)) {
          res.writeHead(status, responseHeaders);
          await pipeline(Readable.from(prepend(start.bytes, rest())), new TextMaskStream(masker, counts, maskWindow), new RecordingTap(recording), res);
          record(true);
          return;
        }
        whole = start.complete ? start : await readMore(start.bytes, rest(), maxJsonBytes);
      }
      if (whole.complete) {
        const masked = kind === 'json' ? maskJsonText(whole.bytes, masker, counts) : maskTextBody(whole.bytes, masker, counts);
        // Written whole, no stream pipeline (its per-response cost was most of the proxy's); a text
        // is written with the headers in one string, as node:http does for a text body.
        const length = byteLengthOf(masked);
        recording.keepWhole(masked, length);
        responseHeaders['content-length'] = String(length);
        res.writeHead(status, responseHeaders);
        res.end(masked);
        record(true);
        return;
      }
      if (columnRules) {
        // Streamed text masking cannot tell which member a value belongs to: withheld rather than shown.
        decodedStream?.destroy();
        upstream.body.destroy();
        withhold('JSON body too large to mask by column', `the JSON body is larger than ${maxJsonBytes} bytes and the masking profile has column rules, so it was withheld`);
        return;
      }
      // Too large to parse, and no column rules: scan what was read and the rest as streamed text.
      res.writeHead(status, responseHeaders);
      await pipeline(Readable.from(prepend(whole.bytes, rest())), new TextMaskStream(masker, counts, maskWindow), new RecordingTap(recording), res);
      record(true);
    } catch {
      // A masker or stream failure mid-body: cut the response rather than send raw data.
      record(false, { code: SluiceErrorCode.MaskingUnavailable, message: 'result withheld: masking failed' });
      if (!res.headersSent) {
        sendProblem(res, new Problem(503, SluiceErrorCode.MaskingUnavailable, 'Masking unavailable', 'the result cannot be masked'), requestId);
      } else res.destroy();
    }
  };

  return {
    handleConnection: (socket: ClientSocket, ports: GovernancePorts) =>
      new Promise<void>((resolve) => {
        const state: ConnectionState = {
          ports,
          client: `${socket.remoteAddress ?? 'unknown'}:${socket.remotePort ?? 0}`,
          sessions: new Map(),
          tokens: new Map(),
          lastBearer: undefined,
          releases: [],
          handling: new Set(),
          closed: false,
        };
        (socket as Partial<Socket>).setNoDelay?.(true);
        connections.set(socket, state);
        socket.once('close', () => {
          state.closed = true;
          const sessions = [...state.sessions.values()];
          state.sessions.clear();
          for (const release of state.releases) release();
          const recordEnded = (): void => {
            for (const session of sessions) {
              ports.audit.record(session.id, 'session.ended', {
                resource: resource.name,
                reason: 'connection closed',
                commands: session.commands,
                durationMs: ports.now().getTime() - session.startedAt.getTime(),
              });
            }
          };
          if (state.handling.size === 0) recordEnded();
          else {
            // A request the agent hung up on completes (502) once its upstream call is aborted:
            // its completion must not come after its session's end in the record.
            void Promise.allSettled([...state.handling]).then(() => {
              try {
                recordEnded();
              } catch {
                // The publisher closed meanwhile (shutdown): it refuses every event from then on.
              }
            });
          }
          resolve();
        });
        server.emit('connection', socket);
      }),
    close: async () => {
      if (closed) return;
      closed = true;
      server.closeAllConnections();
      await pool.close();
    },
  };
};

/** The credentials of one request: the headers injected, and what is scrubbed from the answer. */
interface Credentials {
  readonly headers: readonly (readonly [string, string])[];
  /** What is scrubbed from the answer: every value injected, recently rotated ones too. */
  readonly echoed: CredentialPattern | undefined;
}

const NO_CREDENTIALS: Credentials = { headers: [], echoed: undefined };

/** Credential values remembered after a rotation, so an answer that echoes an old one is still scrubbed. */
const MAX_REMEMBERED_CREDENTIALS = 16;

const NO_TOKENS: ReadonlySet<string> = new Set();

const headerValue = (value: string | string[] | undefined): string | undefined => (Array.isArray(value) ? value[0] : value);

const allValues = (value: string | string[] | undefined): string | undefined => (Array.isArray(value) ? value.join(', ') : value);

/** A request as recorded: its method and path (query included), masked; the method alone if masking fails. */
const recordedRequest = (governor: Governor, commandId: string, method: string, target: string, decision: Parameters<Governor['maskedCommand']>[1]): RecordedCommand => ({
  commandId,
  command: governor.maskedCommand(`${method} ${target}`, decision, method),
});
