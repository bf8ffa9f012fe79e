import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RuleConfig } from '@sluice/config';
import { compilePiiMasking } from './support/engine-ports.js';
import { call, forgetTargetTraffic, startHttpFrontDoor, type HttpFrontDoor, type RecordingTarget } from './support/http-proxy-harness.js';
import { rawExchange } from './support/raw-socket.js';

/**
 * Red-team probes of the HTTP front door (issue #10), with the real policy and masking engines
 * and a real target on port 0 that records every request it sees: each probe is refused
 * (never reaching the target) or masked.
 */
const rules: RuleConfig[] = [
  { name: 'no-admin-paths', effect: 'deny', resources: ['billing-api'], paths: ['/admin/**'] },
  { name: 'support-read', effect: 'allow', subjects: { groups: ['support-agents'] }, actions: ['read'], mask: 'pii' },
] as RuleConfig[];

const masking = compilePiiMasking('http-bypass');

describe('HTTP front door against a red team', () => {
  let door: HttpFrontDoor;
  let target: RecordingTarget;
  let port: number;
  let token: string;

  beforeAll(async () => {
    door = await startHttpFrontDoor({ rules, masking });
    ({ target, port } = door);
    token = await door.idp.mint({ sub: 'support-bot', groups: ['support-agents'] });
  });

  afterAll(async () => {
    await door.close();
  });

  beforeEach(() => forgetTargetTraffic(target));

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
