import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { EventStore } from '@sluice/event-store';
import type { ConsumerState } from './consumer.js';

export interface AuditApiDeps {
  readonly store: EventStore;
  readonly consumers: () => readonly ConsumerState[];
}

class BadRequest extends Error {
  readonly code = 'ERR_BAD_REQUEST';
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
  const relative = /^(\d+)\s*(ms|s|m|h|d|w)$/.exec(text.trim());
  if (relative) {
    const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[relative[2] as 'ms'];
    return new Date(now - Number(relative[1]) * unit);
  }
  const date = /^\d+$/.test(text) ? new Date(Number(text)) : new Date(text);
  if (Number.isNaN(date.getTime())) throw new BadRequest(`not a time: ${text}`);
  return date;
};

const optional = (params: URLSearchParams, key: string): string | undefined => {
  const value = params.get(key);
  return value === null || value === '' ? undefined : value;
};

const SESSION_PATH = /^\/v1\/sessions\/([^/]+)\/(events|verify)$/;

export const startAuditApi = async (deps: AuditApiDeps, host: string, port: number): Promise<{ server: Server; address: AddressInfo }> => {
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
      return send(response, 200, `${lines.join('\n')}\n`, 'text/plain; version=0.0.4');
    }
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
      const sessionId = decodeURIComponent(match[1]!);
      if (match[2] === 'verify') return send(response, 200, await deps.store.verify({ sessionId }));
      const events = await deps.store.sessionEvents(sessionId);
      if (events.length === 0) return problem(response, 404, 'Not Found', 'ERR_NOT_FOUND', `no events for session ${sessionId}`);
      return send(response, 200, { session_id: sessionId, events });
    }
    return problem(response, 404, 'Not Found', 'ERR_NOT_FOUND');
  };

  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      if (error instanceof BadRequest) problem(response, 400, 'Bad Request', error.code, error.message);
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
