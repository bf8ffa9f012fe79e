import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RuleConfig } from '@sluice/config';
import { compilePiiMasking, UNDETECTABLE_SSN as SSN, type RecordedEvent } from './support/engine-ports.js';
import { call, forgetTargetTraffic, startHttpFrontDoor, type HttpFrontDoor, type RecordingTarget, type TargetRoutes } from './support/http-proxy-harness.js';
import type { TestIssuer } from './support/oidc.js';
import { rawExchange } from './support/raw-socket.js';

/**
 * The second red team on the HTTP front door (after issue #10's fixes): an agent with a valid
 * read-only token and a masking profile with a column rule, raw sockets and node:http against a
 * real target on port 0 that records what it sees. Each probe is refused (never reaching the
 * target) or masked.
 */
const rules: RuleConfig[] = [
  { name: 'no-admin-paths', effect: 'deny', resources: ['billing-api'], paths: ['/admin/**'] },
  { name: 'no-geheim-paths', effect: 'deny', resources: ['billing-api'], paths: ['/geheim-ü/**'] },
  { name: 'support-read', effect: 'allow', subjects: { groups: ['support-agents'] }, actions: ['read'], mask: 'pii' },
  { name: 'unmasked-read', effect: 'allow', subjects: { groups: ['unmasked-agents'] }, actions: ['read'] },
] as RuleConfig[];

const masking = compilePiiMasking('http-redteam');

/** The target's own credential, which the agent must never see. */
const TARGET_TOKEN = 'target-cred-5be1c0ffee5be1';

/** The target's answers beyond the recording target's own: bodies and headers with covered fields in every format. */
const redTeamRoutes: TargetRoutes = (req, res) => {
  const users = (count: number) => Array.from({ length: count }, (_, id) => ({ id, name: `User ${id}`, ssn: SSN }));
  if (req.url === '/users/many') {
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(JSON.stringify(users(400)));
  }
  if (req.url === '/users/as-text') {
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
    return res.end(JSON.stringify(users(2)));
  }
  if (req.url === '/users/ndjson') {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    return res.end(users(3).map((user) => JSON.stringify(user)).join('\n'));
  }
  if (req.url === '/users/gzip') {
    res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
    return res.end(gzipSync(JSON.stringify({ email: 'alice@example.com', ssn: SSN })));
  }
  if (req.url === '/users/trailer') {
    res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-user-ssn' });
    res.write('body');
    res.addTrailers({ 'x-user-ssn': SSN, 'x-user-email': 'alice@example.com' });
    return res.end();
  }
  if (req.url === '/echo-headers') {
    res.writeHead(200, { 'content-type': 'application/json', 'x-seen-auth': String(req.headers.authorization) });
    return res.end(JSON.stringify({ headers: req.headers }));
  }
  if (req.url === '/echo-headers-text') {
    res.writeHead(200, { 'content-type': 'text/html' });
    return res.end(`<pre>authorization: ${req.headers.authorization}</pre>`);
  }
  const named: Record<string, [string, string]> = {
    '/users/xml': ['application/xml', `<?xml version="1.0"?><users><user id="1"><name>User 1</name><ssn>${SSN}</ssn><p:SSN xmlns:p="urn:x">${SSN}</p:SSN></user><user ssn="${SSN}"/></users>`],
    '/users/form': ['application/x-www-form-urlencoded', `name=User+1&ssn=${SSN}&next=1`],
    '/users/yaml': ['text/yaml', `- name: User 1\n  ssn: ${SSN}\n  note: "ssn=${SSN}"\n`],
    '/users/nested': ['application/json', JSON.stringify({ payload: JSON.stringify({ ssn: SSN, name: 'User 1' }), log: `ssn=${SSN}` })],
    '/users/log': ['text/plain', `GET /users/1 200 name=User1 ssn=${SSN} took=3ms\nuser "ssn": "${SSN}", "name": "User 1"\n`],
  };
  const namedBody = named[req.url ?? ''];
  if (namedBody) {
    res.writeHead(200, { 'content-type': namedBody[0] });
    return res.end(namedBody[1]);
  }
  if (req.url === '/events') {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    return res.end(`event: user\ndata: ${JSON.stringify({ id: 1, ssn: SSN })}\n\nevent: note\ndata: plain words\n\n`);
  }
  if (req.url === '/cookies') {
    res.writeHead(303, {
      'content-type': 'text/plain',
      'set-cookie': [`ssn=${SSN}; Path=/; HttpOnly`, 'theme=dark; Path=/'],
      location: `/next?user=7&ssn=${SSN}`,
    });
    return res.end('see other');
  }
  if (req.url === '/echo-gzip') {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-encoding': 'gzip' });
    return res.end(gzipSync(`auth=${req.headers.authorization}`));
  }
  if (req.url === '/users/bom') {
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' });
    return res.end(`\uFEFF${JSON.stringify(users(2))}`);
  }
  return undefined;
};

/** Every audit event the adapter recorded, in order. */
const recorded: RecordedEvent[] = [];

describe('HTTP front door against a second red team', () => {
  let door: HttpFrontDoor;
  let idp: TestIssuer;
  let target: RecordingTarget;
  let port: number;
  let token: string;
  let unmaskedToken: string;

  beforeAll(async () => {
    process.env.REDTEAM_TARGET_TOKEN = TARGET_TOKEN;
    door = await startHttpFrontDoor({
      rules,
      masking,
      recorded,
      routes: redTeamRoutes,
      credentials: { headers: { Authorization: { env: 'REDTEAM_TARGET_TOKEN', prefix: 'Bearer ' } } },
      // A small whole-JSON limit stands for a listing larger than the default 8 MiB.
      adapterOptions: { maxJsonBytes: 4096 },
    });
    ({ idp, target, port } = door);
    token = await idp.mint({ sub: 'support-bot', groups: ['support-agents'] });
    unmaskedToken = await idp.mint({ sub: 'plain-bot', groups: ['unmasked-agents'] });
  });

  afterAll(async () => {
    await door.close();
  });

  beforeEach(() => forgetTargetTraffic(target));

  describe('masking of what the target answers', () => {
    it('never streams a JSON body too large to walk with its column-covered fields in clear', async () => {
      const reply = await call(port, '/users/many', { token });
      expect(reply.body).not.toContain(SSN);
    });

    it('walks a JSON body the target labels text/plain, so column rules apply', async () => {
      const reply = await call(port, '/users/as-text', { token });
      expect(reply.status).toBe(200);
      expect(reply.body).not.toContain(SSN);
      expect(reply.body).toContain('User 1');
    });

    it('walks each line of an NDJSON body, so column rules apply', async () => {
      const reply = await call(port, '/users/ndjson', { token });
      expect(reply.status).toBe(200);
      expect(reply.body).not.toContain(SSN);
      expect(reply.body).toContain('User 2');
    });

    it('never shows the target its own credential back, when the target echoes request headers', async () => {
      for (const path of ['/echo-headers', '/echo-headers-text']) {
        const reply = await call(port, path, { token });
        expect(reply.status).toBe(200);
        expect(JSON.stringify(reply.headers) + reply.body).not.toContain(TARGET_TOKEN);
      }
      expect(target.seen[0]!.headers.authorization).toBe(`Bearer ${TARGET_TOKEN}`);
    });

    it('never shows the target its own credential back under a rule without masking (plain and gzip bodies, headers)', async () => {
      for (const path of ['/echo-headers', '/echo-headers-text', '/echo-gzip']) {
        const reply = await call(port, path, { token: unmaskedToken });
        expect(reply.status).toBe(200);
        expect(JSON.stringify(reply.headers) + reply.body).not.toContain(TARGET_TOKEN);
        expect(reply.body).toContain('[REDACTED:credential]');
      }
    });

    it.each(['/users/xml', '/users/form', '/users/yaml', '/users/log', '/users/nested'])('masks values named like a column rule in a text body (%s)', async (path) => {
      const reply = await call(port, path, { token });
      expect(reply.status).toBe(200);
      expect(reply.body).not.toContain(SSN);
      expect(reply.body).toMatch(/User.?1/);
    });

    it('walks the JSON data lines of server-sent events, so column rules apply', async () => {
      const reply = await call(port, '/events', { token });
      expect(reply.status).toBe(200);
      expect(reply.body).not.toContain(SSN);
      expect(reply.body).toContain('data: plain words');
      expect(reply.body).toMatch(/^event: user\ndata: \{"id":1,"ssn":"\[REDACTED\]"\}\n/);
    });

    it('masks a cookie and a Location query parameter named like a column rule', async () => {
      const reply = await call(port, '/cookies', { token });
      expect(reply.status).toBe(303);
      expect(JSON.stringify(reply.headers)).not.toContain(SSN);
      expect(reply.headers['set-cookie']).toEqual([expect.stringMatching(/^ssn=.+; Path=\/; HttpOnly$/), 'theme=dark; Path=/']);
      expect(reply.headers.location).toMatch(/^\/next\?user=7&ssn=/);
    });

    it('walks a JSON body that starts with a byte-order mark, so column rules apply', async () => {
      const reply = await call(port, '/users/bom', { token });
      expect(reply.body).not.toContain(SSN);
    });

    it('decodes a gzip JSON body and masks it (detectors and column rules)', async () => {
      const reply = await call(port, '/users/gzip', { token });
      expect(reply.status).toBe(200);
      expect(reply.headers['content-encoding']).toBeUndefined();
      expect(reply.body).not.toContain(SSN);
      expect(reply.body).not.toContain('alice@example.com');
    });

    it('never passes the target response trailers on', async () => {
      const answer = await rawExchange(port, `GET /users/trailer HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${token}\r\nTE: trailers\r\nConnection: close\r\n\r\n`);
      expect(answer).toMatch(/^HTTP\/1\.1 200/);
      expect(answer).not.toContain(SSN);
      expect(answer).not.toContain('alice@example.com');
    });
  });

  describe('who a request is decided for', () => {
    it('decides each request for its own token: a later token of the same sub without the group gets no access from the earlier one', async () => {
      const revoked = await idp.mint({ sub: 'support-bot', groups: [] });
      const first = `GET /items/1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${token}\r\n\r\n`;
      const second = `GET /items/2 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${revoked}\r\nConnection: close\r\n\r\n`;
      const answer = await rawExchange(port, first + second);
      const statuses = [...answer.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((match) => match[1]);
      expect(statuses).toEqual(['200', '403']);
      expect(target.seen.map((seen) => seen.url)).toEqual(['/items/1']);
    });
  });

  describe('what the target sees against what was decided', () => {
    it.each(['/items/1?%5Fmethod=DELETE', '/items/1?%5fmethod=DELETE', '/items/1?a=1;_method=DELETE', '/items/1?_METHOD=DELETE', '/items/1?x=1&_method%3DDELETE=1'])(
      'refuses a method override hidden in the query (%s)',
      async (path) => {
        const reply = await call(port, path, { token });
        expect(reply.status).toBe(400);
        expect(target.seen).toHaveLength(0);
      },
    );

    it.each(['/geheim-%C3%BC/x', '/geheim-%c3%bc/x', '/GEHEIM-%C3%BC/x', '/GEHEIM-%C3%9C/x'])('matches a rule naming a non-ASCII path against its percent-encoded form (%s)', async (path) => {
      const reply = await call(port, path, { token });
      expect(reply.status).toBe(403);
      expect(target.seen).toHaveLength(0);
    });

    it('refuses or denies a non-ASCII path sent as raw UTF-8 bytes, never reaching the target', async () => {
      const answer = await rawExchange(port, `GET /geheim-ü/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`);
      expect(answer).toMatch(/^HTTP\/1\.1 (400|403)/);
      expect(target.seen).toHaveLength(0);
    });

    it('answers two pipelined requests in one packet each on its own: the denied second never reaches the target', async () => {
      const auth = `Authorization: Bearer ${token}\r\n`;
      const answer = await rawExchange(port, `GET /items/1 HTTP/1.1\r\nHost: a\r\n${auth}\r\nGET /admin/users HTTP/1.1\r\nHost: a\r\n${auth}Connection: close\r\n\r\n`);
      const statuses = [...answer.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((match) => match[1]);
      expect(statuses).toEqual(['200', '403']);
      expect(target.seen.map((seen) => seen.url)).toEqual(['/items/1']);
    });

    it('drops a method override sent as a chunked trailer', async () => {
      const auth = `Authorization: Bearer ${token}\r\n`;
      const answer = await rawExchange(
        port,
        `GET /items/1 HTTP/1.1\r\nHost: a\r\n${auth}Transfer-Encoding: chunked\r\nTrailer: X-HTTP-Method-Override\r\nConnection: close\r\n\r\n1;ext=1\r\na\r\n0\r\nX-HTTP-Method-Override: DELETE\r\n\r\n`,
      );
      expect(answer).toMatch(/^HTTP\/1\.1 200/);
      expect(target.seen).toHaveLength(1);
      expect(target.seen[0]!.method).toBe('GET');
      expect(target.seen[0]!.headers['x-http-method-override']).toBeUndefined();
      expect(target.seen[0]!.trailers['x-http-method-override']).toBeUndefined();
    });

    it.each([
      ['a lowercase method', 'get /items/1 HTTP/1.1'],
      ['CONNECT', 'CONNECT 127.0.0.1:6379 HTTP/1.1'],
      ['TRACE', 'TRACE /items/1 HTTP/1.1'],
      ['an unknown method', 'PURGE /items/1 HTTP/1.1'],
      ['a backslash', 'GET /admin\\users HTTP/1.1'],
      ['a double-encoded dot segment', 'GET /x/%252e%252e/admin/users HTTP/1.1'],
      ['an overlong UTF-8 slash', 'GET /x%C0%AF..%C0%AFadmin/users HTTP/1.1'],
    ])('refuses %s, never reaching the target', async (_name, line) => {
      const answer = await rawExchange(port, `${line}\r\nHost: a\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`);
      expect(answer).not.toMatch(/^HTTP\/1\.1 200/);
      expect(target.seen.filter((seen) => /admin|items/i.test(seen.url) && seen.method !== 'GET')).toHaveLength(0);
      expect(target.seen.filter((seen) => /admin/i.test(seen.url))).toHaveLength(0);
    });

    it('forwards a request line with a fragment as the path before it, which is what was decided', async () => {
      const answer = await rawExchange(port, `GET /items/1#/../../admin/users HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`);
      expect(answer).toMatch(/^HTTP\/1\.1 200/);
      expect(target.seen.map((seen) => seen.url)).toEqual(['/items/1']);
    });

    it.each([
      ['Transfer-Encoding with Content-Length (refused by node:http)', 'POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
      ['an absolute-form target (refused by Sluice)', 'GET http://evil.example/admin/users HTTP/1.1\r\nHost: a\r\n\r\n'],
    ])('audits a refused smuggling attempt: %s', async (_name, bytes) => {
      const before = recorded.length;
      const answer = await rawExchange(port, bytes);
      expect(answer.split('\r\n', 1)[0]).toBe('HTTP/1.1 400 Bad Request');
      const rejected = recorded.slice(before).filter((event) => event.type === 'session.rejected');
      expect(rejected).toHaveLength(1);
      expect(rejected[0]!.data).toMatchObject({ protocol: 'http', code: 'ERR_PROTOCOL_MALFORMED' });
      expect(target.seen).toHaveLength(0);
    });

    it('records a path refused as unsafe (matrix parameter, escaped slash) as a denial', async () => {
      const before = recorded.length;
      for (const path of ['/admin;x/users', '/admin%2Fusers']) expect((await call(port, path, { token })).status).toBe(400);
      const decided = recorded.slice(before).filter((event) => event.type === 'command.decided');
      expect(decided.map((event) => [event.data.command, event.data.decision])).toEqual([
        ['GET /admin;x/users', 'deny'],
        ['GET /admin%2Fusers', 'deny'],
      ]);
      expect(recorded.slice(before).filter((event) => event.type === 'command.completed')).toHaveLength(2);
      expect(target.seen).toHaveLength(0);
    });

    it('decides an Upgrade request like any other: denied on a denied path, and the target never sees the Upgrade', async () => {
      const auth = `Authorization: Bearer ${token}\r\n`;
      const denied = await rawExchange(port, `GET /admin/ws HTTP/1.1\r\nHost: a\r\n${auth}Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n`);
      expect(denied).not.toMatch(/^HTTP\/1\.1 (101|200)/);
      const allowed = await rawExchange(port, `GET /items/ws HTTP/1.1\r\nHost: a\r\n${auth}Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n`);
      expect(allowed).not.toMatch(/^HTTP\/1\.1 101/);
      expect(target.seen.filter((seen) => /admin/.test(seen.url))).toHaveLength(0);
      for (const seen of target.seen) expect(seen.headers.upgrade).toBeUndefined();
    });

    it('serves a GET with a body and Expect: 100-continue without passing Expect on', async () => {
      const auth = `Authorization: Bearer ${token}\r\n`;
      const answer = await rawExchange(port, `GET /items/1 HTTP/1.1\r\nHost: a\r\n${auth}Content-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\nab`);
      expect(answer).toMatch(/HTTP\/1\.1 200/);
      expect(target.seen).toHaveLength(1);
      expect(target.seen[0]!.headers.expect).toBeUndefined();
    });

    it.each(['/items/./1', '//items//1', '/%69tems/1', '/x/../items/1'])('forwards %s as the normal form it was decided on', async (path) => {
      const reply = await call(port, path, { token });
      expect(reply.status).toBe(200);
      expect(target.seen.map((seen) => seen.url)).toEqual(['/items/1']);
    });
  });
});
