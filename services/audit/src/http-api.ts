import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parsePointInTime } from '@sluice/config';
import { SluiceError, SluiceErrorCode, TokenInvalidError } from '@sluice/contracts';
import type { EventStore } from '@sluice/event-store';
import type { TokenVerifier } from '@sluice/identity';
import { createApiServer, type ApiTlsMaterial } from '@sluice/service-runtime';
import type { ConsumerState } from './consumer.js';
import { isAuditReader, NotAnAuditReaderError, type AuditReaders } from './readers.js';

export interface AuditApiDeps {
  readonly store: EventStore;
  readonly consumers: () => readonly ConsumerState[];
  /** Checks bearer tokens against the configured issuers. */
  readonly verifier: TokenVerifier;
  /** `audit.readers`: the only subjects the data endpoints answer. */
  readonly readers: AuditReaders;
}

class BadRequest extends SluiceError {
  readonly code = SluiceErrorCode.BadRequest;
  override readonly expose = true;
}

const send = (response: ServerResponse, status: number, body: unknown, type = 'application/json'): void => {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  response.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  response.end(text);
};

const problem = (response: ServerResponse, status: number, title: string, code: string, detail?: string): void =>
  send(response, status, { type: 'about:blank', title, status, code, ...(detail ? { detail } : {}) }, 'application/problem+json');

/** `2026-01-01T00:00:00Z`, epoch milliseconds, or a look-back such as `1h`, `30m`, `7d`. */
export const parseTimeBound = (text: string, now = Date.now()): Date => {
  const date = parsePointInTime(text, now);
  if (date === undefined) throw new BadRequest(`not a time: ${text}`);
  return date;
};

const optional = (params: URLSearchParams, key: string): string | undefined => {
  const value = params.get(key);
  return value === null || value === '' ? undefined : value;
};

const bearerToken = (request: IncomingMessage): string => {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '');
  if (!match) throw new TokenInvalidError('a bearer token is required');
  return match[1]!;
};

/** Only the token's own problem reaches the caller; anything else about the token stays in the log. */
const refuse = (response: ServerResponse, error: SluiceError): void => {
  if (error.code === SluiceErrorCode.NotAnAuditReader) return problem(response, 403, 'Forbidden', error.code, error.message);
  response.setHeader('www-authenticate', 'Bearer realm="sluice-audit"');
  problem(response, 401, 'Unauthorized', error.code, error.expose ? error.message : 'token rejected');
};

const SESSION_PATH = /^\/v1\/sessions\/([^/]+)\/(events|verify)$/;
/** Events in one answer of /v1/sessions/{id}/events at most; `next` names the page after. */
export const MAX_EVENTS_PAGE = 5_000;

/** Serves the audit API on host:port; with `tls`, HTTPS only. */
export const startAuditApi = async (deps: AuditApiDeps, host: string, port: number, tls?: ApiTlsMaterial): Promise<{ server: Server; address: AddressInfo }> => {
  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const url = new URL(request.url ?? '/', 'http://audit');
    if (request.method !== 'GET' && request.method !== 'HEAD') return problem(response, 405, 'Method Not Allowed', 'ERR_METHOD');
    if (url.pathname === '/healthz') {
      const consumers = deps.consumers();
      return send(response, 200, { ok: true, backend: deps.store.backend, consumers });
    }
    if (url.pathname === '/metrics') {
      const lines = ['# HELP sluice_audit_consumer_pending Stream messages a consumer has not acknowledged yet (exporter lag).', '# TYPE sluice_audit_consumer_pending gauge'];
      for (const state of deps.consumers()) lines.push(`sluice_audit_consumer_pending{consumer="${state.durable}"} ${state.pending}`);
      lines.push('# HELP sluice_audit_consumer_events_total Events a consumer handled since start.', '# TYPE sluice_audit_consumer_events_total counter');
      for (const state of deps.consumers()) lines.push(`sluice_audit_consumer_events_total{consumer="${state.durable}"} ${state.handledEvents}`);
      lines.push('# HELP sluice_audit_consumer_refused_total Events a consumer refused as not genuine (unsigned, bad signature, wrong signer) since start.', '# TYPE sluice_audit_consumer_refused_total counter');
      for (const state of deps.consumers()) lines.push(`sluice_audit_consumer_refused_total{consumer="${state.durable}"} ${state.refusedEvents}`);
      return send(response, 200, `${lines.join('\n')}\n`, 'text/plain; version=0.0.4');
    }
    // Everything past here is the trail itself: a reader's token, checked before the path is even
    // looked at, so an unknown path tells an outsider nothing either.
    const { subject } = await deps.verifier.verify(bearerToken(request));
    if (!isAuditReader(subject, deps.readers)) throw new NotAnAuditReaderError(subject.sub);
    if (url.pathname === '/v1/sessions') {
      const params = url.searchParams;
      const limit = optional(params, 'limit');
      if (limit !== undefined && !/^\d+$/.test(limit)) throw new BadRequest('limit must be a positive integer');
      const from = optional(params, 'from') ?? optional(params, 'since');
      const to = optional(params, 'to') ?? optional(params, 'until');
      const page = await deps.store.listSessions({
        subject: optional(params, 'subject'),
        resource: optional(params, 'resource'),
        decision: optional(params, 'decision'),
        from: from === undefined ? undefined : parseTimeBound(from),
        to: to === undefined ? undefined : parseTimeBound(to),
        limit: limit === undefined ? 50 : Number(limit),
        cursor: optional(params, 'cursor'),
      });
      return send(response, 200, page);
    }
    if (url.pathname === '/v1/verify') {
      return send(response, 200, await deps.store.verify());
    }
    const match = SESSION_PATH.exec(url.pathname);
    if (match) {
      let sessionId: string;
      try {
        sessionId = decodeURIComponent(match[1]!);
      } catch {
        // A malformed escape is the caller's mistake: answering 503 would page someone about the store.
        throw new BadRequest('the session id is not valid percent-encoding');
      }
      if (match[2] === 'verify') return send(response, 200, await deps.store.verify({ sessionId }));
      const limit = optional(url.searchParams, 'limit');
      if (limit !== undefined && !/^[1-9]\d*$/.test(limit)) throw new BadRequest('limit must be a positive integer');
      const after = optional(url.searchParams, 'after');
      if (after !== undefined && !/^\d+$/.test(after)) throw new BadRequest('after must be the seq of an event (the previous page\'s next)');
      // An agent makes a session as long as it likes: one answer holds at most a page of it.
      const pageSize = Math.min(limit === undefined ? MAX_EVENTS_PAGE : Number(limit), MAX_EVENTS_PAGE);
      const events = await deps.store.sessionEvents(sessionId, { limit: pageSize + 1, ...(after === undefined ? {} : { afterSeq: Number(after) }) });
      if (events.length === 0 && after === undefined) return problem(response, 404, 'Not Found', 'ERR_NOT_FOUND', `no events for session ${sessionId}`);
      const page = events.slice(0, pageSize);
      return send(response, 200, { session_id: sessionId, events: page, ...(events.length > pageSize ? { next: String(page[page.length - 1]!.seq) } : {}) });
    }
    return problem(response, 404, 'Not Found', 'ERR_NOT_FOUND');
  };

  const server = createApiServer(tls, (request, response) => {
    handle(request, response).catch((error: unknown) => {
      if (error instanceof BadRequest) problem(response, 400, 'Bad Request', error.code, error.message);
      else if (error instanceof SluiceError && (error.code === SluiceErrorCode.TokenInvalid || error.code === SluiceErrorCode.TokenExpired || error.code === SluiceErrorCode.NotAnAuditReader)) refuse(response, error);
      else if (!response.headersSent) problem(response, 503, 'Event store unavailable', 'ERR_AUDIT_UNAVAILABLE');
    });
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolveListen());
  });
  return { server, address: server.address() as AddressInfo };
};
