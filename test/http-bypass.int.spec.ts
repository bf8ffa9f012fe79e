import { randomUUID } from 'node:crypto';
import { createServer as createHttpServer, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { HttpResourceConfig, RuleConfig } from '@sluice/config';
import { createTokenVerifier } from '@sluice/identity';
import { compileMasking } from '@sluice/masking-engine';
import { createPolicy } from '../services/policy/src/policy.js';
import { createHttpAdapter } from '../services/proxy/src/http/adapter.js';
import type { GovernancePorts } from '../services/proxy/src/ports.js';
import { startTestIssuer, type TestIssuer } from './support/oidc.js';

/**
 * Red-team probes of the HTTP front door (issue #10), with the real policy and masking engines
 * and a real target on port 0 that records every request it sees: each probe is refused
 * (never reaching the target) or masked.
 */
const rules: RuleConfig[] = [
  { name: 'no-admin-paths', effect: 'deny', resources: ['billing-api'], paths: ['/admin/**'] },
  { name: 'support-read', effect: 'allow', subjects: { groups: ['support-agents'] }, actions: ['read'], mask: 'pii' },
] as RuleConfig[];

const masking = compileMasking(
  {
    defaultRegion: 'US',
    detectors: [],
    profiles: { pii: { detectors: ['email', 'us_ssn', 'credit_card'], strategy: 'partial', columns: [{ match: '(?i)ssn', strategy: 'redact' }] } },
  },
  { hashKey: 'http-bypass' },
);

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

const startTarget = async () => {
  const seen: Seen[] = [];
  const errors: string[] = [];
  const server = createHttpServer((req, res) => {
    seen.push({ method: req.method!, url: req.url!, headers: req.headers });
    req.resume();
    req.on('end', () => {
      if (req.url === '/headers') {
        res.writeHead(302, {
          'content-type': 'text/plain',
          location: '/users/alice@example.com',
          'x-user-email': 'alice@example.com',
          'x-user-ssn': 'ZQ-NOT-A-FORMAT',
          'x-trace': 'plain-trace-id',
        });
        return res.end('moved');
      }
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`${req.method} ${req.url}`);
    });
  });
  server.on('clientError', (error: Error & { code?: string }, socket) => {
    errors.push(error.code ?? error.message);
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, seen, errors, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
};

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

const call = (port: number, path: string, options: { method?: string; token?: string; headers?: Record<string, string> } = {}) =>
  new Promise<Reply>((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        path,
        method: options.method ?? 'GET',
        headers: { ...(options.token ? { authorization: `Bearer ${options.token}` } : {}), ...options.headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });

/** Sends raw bytes and collects whatever comes back until the proxy closes or goes quiet. */
const rawExchange = (port: number, bytes: string) =>
  new Promise<string>((resolve) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(bytes));
    let received = '';
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(received);
    };
    const timer = setTimeout(done, 1_500);
    socket.on('data', (chunk) => (received += chunk.toString('latin1')));
    socket.on('close', done);
    socket.on('error', done);
  });

describe('HTTP front door against a red team', () => {
  let idp: TestIssuer;
  let target: Awaited<ReturnType<typeof startTarget>>;
  let listener: Server;
  let adapter: ReturnType<typeof createHttpAdapter>;
  let port: number;
  let token: string;

  beforeAll(async () => {
    idp = await startTestIssuer();
    target = await startTarget();
    token = await idp.mint({ sub: 'support-bot', groups: ['support-agents'] });
    const resource: HttpResourceConfig = { name: 'billing-api', type: 'http', listen: '127.0.0.1:0', target: { url: target.url }, credentials: { headers: {} } };
    const verifier = createTokenVerifier([{ issuer: idp.issuer, audience: idp.audience, clockTolerance: 5_000 }]);
    const policy = createPolicy(rules, [resource], { approvalTimeoutMs: 60_000 });
    const ports: GovernancePorts = {
      identity: { verify: (value) => verifier.verify(value) },
      policy: {
        describeSession: async (subject) => policy.describeSession(subject, resource.name),
        decide: async (subject, name, command) => policy.decide(subject, name, command),
      },
      masking: { masker: (profile) => (profile ? masking.profile(profile) : undefined), maskCommandText: (text) => text },
      approvals: {
        request: async () => {
          throw new Error('no approvals in this test');
        },
        awaitDecision: async () => {
          throw new Error('no approvals in this test');
        },
        consume: async () => false,
      },
      audit: { record: () => {}, healthy: true },
      recording: { maxRows: 100, maxBytes: 4096 },
      newId: randomUUID,
      now: () => new Date(),
    };
    adapter = createHttpAdapter(resource, { secretsDir: process.cwd() });
    listener = createServer((socket) => void adapter.handleConnection(socket, ports));
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    port = (listener.address() as AddressInfo).port;
  });

  afterAll(async () => {
    await adapter.close();
    listener.close();
    target.server.close();
    await idp.close();
  });

  beforeEach(() => {
    target.seen.length = 0;
    target.errors.length = 0;
  });

  it('finding 6: masks response header values (Location with an email, x-user-email, x-user-ssn) and keeps reviewed ones', async () => {
    const reply = await call(port, '/headers', { token });
    expect(reply.status).toBe(302);
    const shown = JSON.stringify(reply.headers);
    expect(shown).not.toContain('alice@example.com');
    expect(shown).not.toContain('ZQ-NOT-A-FORMAT');
    expect(reply.headers['x-user-ssn']).toBe('[REDACTED]');
    expect(reply.headers.location).toMatch(/^\/users\/.*@example\.com$/);
    expect(reply.headers['x-trace']).toBe('plain-trace-id');
    expect(reply.headers['content-type']).toBe('text/plain');
  });

  it.each(['/admin;x/users', '/ADMIN/users', '/Admin/users', '/admin%3Bx/users', '/admin%3bx/users', '/%61dmin/users', '/admin/%2e%2e/admin/users', '/admin%252Fusers', '/x;/../admin/users'])(
    'finding 7: %s neither passes the /admin/** deny rule nor reaches the target',
    async (path) => {
      const reply = await call(port, path, { token });
      expect([400, 403]).toContain(reply.status);
      expect(target.seen).toHaveLength(0);
    },
  );

  it('finding 7: a path that only looks like the rule passes, case kept as sent', async () => {
    const reply = await call(port, '/Administrator/ok', { token });
    expect(reply.status).toBe(200);
    expect(target.seen.map((seen) => seen.url)).toEqual(['/Administrator/ok']);
  });

  it('finding 8: method- and path-override headers never reach the target, a _method query is refused', async () => {
    const reply = await call(port, '/items/1', {
      token,
      headers: { 'X-HTTP-Method-Override': 'DELETE', 'X-Method-Override': 'DELETE', 'X-HTTP-Method': 'DELETE' },
    });
    expect(reply.status).toBe(200);
    expect(target.seen).toHaveLength(1);
    const headers = target.seen[0]!.headers;
    expect(headers['x-http-method-override']).toBeUndefined();
    expect(headers['x-method-override']).toBeUndefined();
    expect(headers['x-http-method']).toBeUndefined();
    const rewrite = await call(port, '/items/2', { token, headers: { 'X-Original-URL': '/admin/users', 'X-Rewrite-URL': '/admin/users' } });
    expect(rewrite.status).toBe(200);
    expect(target.seen[1]!.headers['x-original-url']).toBeUndefined();
    expect(target.seen[1]!.headers['x-rewrite-url']).toBeUndefined();
    target.seen.length = 1;
    const query = await call(port, '/items/1?_method=DELETE', { token });
    expect(query.status).toBe(400);
    expect(target.seen).toHaveLength(1);
  });

  describe('finding 9: ambiguous requests are 400 and never seen by the target', () => {
    const auth = () => `Authorization: Bearer ${token}\r\n`;
    const probes: [string, () => string][] = [
      ['Transfer-Encoding with Content-Length', () => `POST /x HTTP/1.1\r\nHost: a\r\n${auth()}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin/users HTTP/1.1\r\nHost: a\r\n\r\n`],
      ['obs-fold', () => `GET /x HTTP/1.1\r\nHost: a\r\n${auth()}X-Folded: a\r\n b\r\n\r\n`],
      ['duplicate Content-Length', () => `POST /x HTTP/1.1\r\nHost: a\r\n${auth()}Content-Length: 1\r\nContent-Length: 2\r\n\r\nab`],
      ['Content-Length list', () => `POST /x HTTP/1.1\r\nHost: a\r\n${auth()}Content-Length: 1, 1\r\n\r\na`],
      ['Transfer-Encoding other than chunked', () => `POST /x HTTP/1.1\r\nHost: a\r\n${auth()}Transfer-Encoding: gzip\r\n\r\n`],
      ['absolute-form target', () => `GET http://evil.example/admin/users HTTP/1.1\r\nHost: a\r\n${auth()}\r\n`],
      ['asterisk-form target', () => `OPTIONS * HTTP/1.1\r\nHost: a\r\n${auth()}\r\n`],
      ['two Host headers', () => `GET /x HTTP/1.1\r\nHost: a\r\nHost: evil.example\r\n${auth()}\r\n`],
      ['Host with a path', () => `GET /x HTTP/1.1\r\nHost: a/admin\r\n${auth()}\r\n`],
      ['HTTP/1.0 keep-alive', () => `GET /x HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n${auth()}\r\n`],
      ['HTTP/1.0 with Transfer-Encoding', () => `POST /x HTTP/1.0\r\nHost: a\r\n${auth()}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n`],
      ['oversized headers', () => `GET /x HTTP/1.1\r\nHost: a\r\n${auth()}X-Big: ${'a'.repeat(20_000)}\r\n\r\n`],
    ];
    it.each(probes)('%s', async (_name, bytes) => {
      const answer = await rawExchange(port, bytes());
      expect(answer.split('\r\n', 1)[0]).toBe('HTTP/1.1 400 Bad Request');
      expect(answer).not.toMatch(/HTTP\/1\.1 200/);
      expect(target.seen).toHaveLength(0);
      expect(target.errors).toHaveLength(0);
    });

    it('a well-formed raw request on the same path still goes through', async () => {
      const answer = await rawExchange(port, `GET /x HTTP/1.1\r\nHost: a\r\n${auth()}Connection: close\r\n\r\n`);
      expect(answer.split('\r\n', 1)[0]).toBe('HTTP/1.1 200 OK');
      expect(target.seen.map((seen) => seen.url)).toEqual(['/x']);
    });
  });
});
