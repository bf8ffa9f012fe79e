import { randomUUID } from 'node:crypto';
import fs, { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, createServer as createHttpServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Server } from 'node:net';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { HttpResourceConfig } from '@sluice/config';
import { DependencyUnavailableError, SluiceErrorCode, type SluiceEventKind } from '@sluice/contracts';
import { createTokenVerifier } from '@sluice/identity';
import { createHttpAdapter } from '../services/proxy/src/http/adapter.js';
import type { ApprovalOutcome, ApprovalRequest, GovernancePorts } from '../services/proxy/src/ports.js';
import { createStubMasker, deferred, stubDecision, stubMaskText } from './support/stub-ports.js';
import { listenOnLoopback } from './support/engine-ports.js';
import { call, type Reply } from './support/http-proxy-harness.js';
import { startTestIssuer, type TestIssuer } from './support/oidc.js';

// ---- test ports (a small masker, a policy that allows reads, an audit sink, an approval port) ---

const masker = createStubMasker();

const decision = stubDecision;

interface Recorded {
  sessionId: string;
  kind: SluiceEventKind;
  data: Record<string, unknown>;
}

const createPorts = (idp: TestIssuer) => {
  const events: Recorded[] = [];
  const verifier = createTokenVerifier([{ issuer: idp.issuer, audience: idp.audience, clockTolerance: 5_000 }]);
  const state = { policyDown: false, maskingDown: false, decided: [] as string[] };
  const approvalRequests: (ApprovalRequest & { id: string })[] = [];
  const outcomes = new Map<string, ReturnType<typeof deferred<ApprovalOutcome>>>();
  const outcome = (id: string) => {
    if (!outcomes.has(id)) outcomes.set(id, deferred<ApprovalOutcome>());
    return outcomes.get(id)!;
  };
  const ports: GovernancePorts = {
    identity: { verify: (token) => verifier.verify(token) },
    policy: {
      describeSession: async () => ({ mayConnect: true, readOnly: false }),
      decide: async (_subject, _resource, command) => {
        if (command.kind !== 'http') throw new Error('unexpected command kind');
        state.decided.push(`${command.method} ${command.path}`);
        if (state.policyDown) throw new DependencyUnavailableError(SluiceErrorCode.PolicyUnavailable, 'down');
        if (command.path === '/admin' || command.path.startsWith('/admin/')) return decision('deny', 'no-admin-paths', { action: 'admin' });
        if (command.method === 'PUT' && command.path === '/held') return decision('approve', 'needs-human', { action: 'write', risk: 'high' });
        if (['GET', 'HEAD', 'OPTIONS'].includes(command.method)) return decision('allow', 'support-read');
        return decision('deny', 'support-read-only', { action: 'write' });
      },
    },
    masking: {
      masker: (profile) => {
        if (state.maskingDown) throw new DependencyUnavailableError(SluiceErrorCode.MaskingUnavailable, 'down');
        return profile === 'pii' ? masker : undefined;
      },
      maskCommandText: (text) => stubMaskText(text, {}),
    },
    approvals: {
      request: async (request) => {
        const id = `ap-${approvalRequests.length + 1}`;
        approvalRequests.push({ ...request, id });
        return { approvalId: id, expiresAt: new Date(Date.now() + 60_000) };
      },
      awaitDecision: (id) => outcome(id).promise,
      consume: async () => true,
    },
    audit: {
      record: (sessionId, kind, data) => void events.push({ sessionId, kind, data: data as unknown as Record<string, unknown> }),
      healthy: true,
    },
    recording: { maxRows: 100, maxBytes: 4096 },
    newId: randomUUID,
    now: () => new Date(),
  };
  return { ports, events, state, approvalRequests, decide: (id: string, result: ApprovalOutcome) => outcome(id).resolve(result) };
};

// ---- the target API -----------------------------------------------------------------------------

const customer = { id: 7, name: 'Ann Lee', email: 'ann@example.com', card: '4111 1111 1111 1111', total: 12345678901234567890n };
const customerJson = JSON.stringify(customer, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)).replace(
  '"12345678901234567890"',
  '12345678901234567890',
);
const BIG_LINE = 'order 1001 shipped to Ann Lee, amount 42.00\n';

const startTarget = async () => {
  const seen: { method: string; url: string; headers: IncomingHttpHeaders; body: string }[] = [];
  const serve = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    seen.push({ method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks).toString() });
    switch (req.url!.split('?', 1)[0]) {
      case '/customers/7':
        res.writeHead(200, { 'content-type': 'application/json' });
        return res.end(customerJson);
      case '/accented':
        // Masked text beyond ASCII: sent and recorded as UTF-8 (a long one past the recording bounds).
        res.writeHead(200, { 'content-type': 'application/json' });
        return res.end(JSON.stringify({ name: 'Zoë Ødegård 😀', email: 'zoe@example.com', notes: req.url!.endsWith('?long') ? 'é'.repeat(3000) : '' }));
      case '/echo-credential-json': {
        // The credential echoed in a JSON body: declared whole (content-length), or chunked with
        // the secret split across two writes.
        const padding = req.url!.includes('padded') ? { padding: 'p'.repeat(200) } : {};
        const echoed = JSON.stringify({ ...padding, seen: req.headers.authorization ?? '', bare: (req.headers.authorization ?? '').replace(/^Bearer /, '') });
        if (!req.url!.includes('chunked')) {
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(echoed) });
          return res.end(echoed);
        }
        res.writeHead(200, { 'content-type': 'application/json' });
        const split = echoed.indexOf('secret') + 3;
        res.write(echoed.slice(0, split));
        await new Promise((resolve) => setTimeout(resolve, 5));
        return res.end(echoed.slice(split));
      }
      case '/plain':
        res.writeHead(200, { 'content-type': 'application/json' });
        return res.end('{"id":1,"big":12345678901234567890}');
      case '/gzip':
        res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-encoding': 'gzip' });
        return res.end(gzipSync(customerJson));
      case '/brotli-text':
        res.writeHead(200, { 'content-type': 'text/plain', 'content-encoding': 'br' });
        return res.end(brotliCompressSync('mail ann@example.com now'));
      case '/image':
        res.writeHead(200, { 'content-type': 'image/png' });
        return res.end(Buffer.from([0x89, 0x50, 0x4e, 0x47]));
      case '/big': {
        res.writeHead(200, { 'content-type': 'text/plain' });
        // 4 MiB of text with an email and a card split across separate writes.
        const filler = BIG_LINE.repeat(1000);
        for (let i = 0; i < 95; i++) {
          res.write(filler);
          if (i === 40) res.write('contact: ann@exam');
          if (i === 40) await new Promise((resolve) => setTimeout(resolve, 5));
          if (i === 40) res.write('ple.com card 4111 1111 ');
          if (i === 40) await new Promise((resolve) => setTimeout(resolve, 5));
          if (i === 40) res.write('1111 1111 end\n');
        }
        return res.end();
      }
      case '/echo-credential':
        res.writeHead(200, { 'content-type': 'text/plain', 'x-echo': req.headers.authorization ?? '' });
        return res.end(`got ${req.headers.authorization}`);
      case '/garbage-head':
        // Ambiguous framing (response splitting material): the proxy must not pass any of it on.
        return void res.socket!.end('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 11\r\ntransfer-encoding: chunked\r\n\r\n123-45-6789');
      case '/garbage-body':
        // A valid head, then a chunk that breaks the framing.
        return void res.socket!.end('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n9\r\n{"ssn":"1\r\nzz\r\n23-45-6789"}\r\n0\r\n\r\n');
      default:
        res.writeHead(200, { 'content-type': 'text/plain' });
        return res.end(`path ${req.url}`);
    }
  };
  const server = createHttpServer((req, res) => {
    // A request the client aborts mid-body rejects serve(): drop that socket rather than leave the rejection unhandled.
    serve(req, res).catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, seen, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
};

describe('HTTP adapter', () => {
  let idp: TestIssuer;
  let target: Awaited<ReturnType<typeof startTarget>>;
  let harness: ReturnType<typeof createPorts>;
  let listener: Server;
  let adapter: ReturnType<typeof createHttpAdapter>;
  let port: number;
  let token: string;

  beforeAll(async () => {
    idp = await startTestIssuer();
    target = await startTarget();
    token = await idp.mint({ sub: 'support-bot', groups: ['support-agents'] });
    process.env.SLUICE_TEST_BILLING_TOKEN = 'target-secret-123';
  });

  afterAll(async () => {
    target.server.close();
    await idp.close();
  });

  beforeEach(async () => {
    harness = createPorts(idp);
    target.seen.length = 0;
    const resource: HttpResourceConfig = {
      name: 'billing-api',
      type: 'http',
      listen: '127.0.0.1:0',
      target: { url: target.url },
      credentials: { headers: { Authorization: { env: 'SLUICE_TEST_BILLING_TOKEN', prefix: 'Bearer ' } } },
    };
    adapter = createHttpAdapter(resource, { secretsDir: process.cwd() });
    ({ server: listener, port } = await listenOnLoopback(adapter, harness.ports));
  });

  afterEach(async () => {
    await adapter.close();
    listener.close();
  });

  const problem = (reply: Reply) => {
    expect(reply.headers['content-type']).toBe('application/problem+json');
    return JSON.parse(reply.body) as { type: string; title: string; status: number; detail: string; code: string; rule?: string; requestId: string; approvalId?: string };
  };

  it('answers 401 problem+json with WWW-Authenticate to a missing, malformed or bad token, and sends nothing upstream', async () => {
    for (const reply of [
      await call(port, '/customers/7'),
      await call(port, '/customers/7', { headers: { authorization: 'Basic abc' } }),
      await call(port, '/customers/7', { token: 'not-a-token' }),
      await call(port, '/customers/7', { token: await idp.mint({ sub: 'x', expiresIn: -300 }) }),
    ]) {
      expect(reply.status).toBe(401);
      expect(reply.headers['www-authenticate']).toMatch(/^Bearer/);
      expect(problem(reply).status).toBe(401);
    }
    expect(target.seen).toHaveLength(0);
    expect(harness.events.filter((event) => event.kind === 'session.rejected').map((event) => event.data.code)).toEqual([
      SluiceErrorCode.TokenInvalid,
      SluiceErrorCode.TokenExpired,
    ]);
  });

  it('forwards an allowed GET with the agent token removed and the credential header injected, JSON masked', async () => {
    const reply = await call(port, '/customers/7?expand=orders', { token });
    expect(reply.status).toBe(200);
    expect(JSON.parse(reply.body)).toEqual({ id: 7, name: 'Ann Lee', email: '***@example.com', card: '****1111', total: 12345678901234567000 });
    const seen = target.seen[0]!;
    expect(seen.url).toBe('/customers/7?expand=orders');
    expect(seen.headers.authorization).toBe('Bearer target-secret-123');
    expect(JSON.stringify(seen.headers)).not.toContain(token);
    const kinds = harness.events.map((event) => event.kind);
    expect(kinds).toEqual(['session.started', 'command.decided', 'command.completed', 'result.returned']);
    const result = harness.events.find((event) => event.kind === 'result.returned')!;
    expect(result.data.maskedCounts).toEqual({ email: 1, credit_card: 1 });
    expect(JSON.stringify(harness.events)).not.toContain('ann@example.com');
    expect(harness.events.find((event) => event.kind === 'command.decided')!.data.command).toBe('GET /customers/7?expand=orders');
  });

  it('sends a JSON body nothing in it needs masking byte for byte (no precision lost)', async () => {
    const reply = await call(port, '/plain', { token });
    expect(reply.body).toBe('{"id":1,"big":12345678901234567890}');
  });

  it('answers 502 to a target that sends malformed framing, passes none of it on, and serves the next request', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const head = await call(port, '/garbage-head', { token, agent });
    expect(head.status).toBe(502);
    expect(problem(head)).toMatchObject({ status: 502, code: SluiceErrorCode.UpstreamFailed });
    expect(head.body).not.toContain('123-45-6789');
    const body = await call(port, '/garbage-body', { token, agent }).catch((error: Error) => ({ status: 0, headers: {}, body: error.message }));
    expect(body.status).not.toBe(200);
    expect(body.body).not.toContain('ssn');
    expect(body.body).not.toContain('6789');
    const failed = harness.events.filter((event) => event.kind === 'command.completed');
    expect(failed.map((event) => event.data.ok)).toEqual([false, false]);
    expect(harness.events.some((event) => event.kind === 'result.returned' && JSON.stringify(event.data).includes('6789'))).toBe(false);
    expect((await call(port, '/plain', { token, agent })).body).toBe('{"id":1,"big":12345678901234567890}');
    agent.destroy();
  });

  it('scrubs an echoed credential after the secret rotates, in headers and body', async () => {
    const first = await call(port, '/echo-credential', { token });
    expect(first.body).toBe('got [REDACTED:credential]');
    process.env.SLUICE_TEST_BILLING_TOKEN = 'target-secret-456';
    try {
      const rotated = await call(port, '/echo-credential', { token });
      expect(target.seen.at(-1)!.headers.authorization).toBe('Bearer target-secret-456');
      expect(rotated.body).toBe('got [REDACTED:credential]');
      expect(rotated.headers['x-echo']).toBe('[REDACTED:credential]');
      expect(JSON.stringify(harness.events)).not.toContain('target-secret');
    } finally {
      process.env.SLUICE_TEST_BILLING_TOKEN = 'target-secret-123';
    }
  });

  it('scrubs an echoed credential from a JSON body, declared whole or chunked with the secret split across writes', async () => {
    for (const path of ['/echo-credential-json', '/echo-credential-json?chunked']) {
      const reply = await call(port, path, { token });
      expect(reply.status).toBe(200);
      expect(target.seen.at(-1)!.headers.authorization).toBe('Bearer target-secret-123');
      expect(JSON.parse(reply.body)).toEqual({ seen: '[REDACTED:credential]', bare: '[REDACTED:credential]' });
      expect(Number(reply.headers['content-length'])).toBe(Buffer.byteLength(reply.body));
    }
    expect(JSON.stringify(harness.events)).not.toContain('target-secret');
  });

  it('scrubs a credential split across the cut of a JSON body too large to walk, streamed as text', async () => {
    // The first write (past the 64-byte limit) ends inside the secret; the rest follows it.
    const small = createHttpAdapter(
      { name: 'billing-api', type: 'http', listen: '127.0.0.1:0', target: { url: target.url }, credentials: { headers: { Authorization: { env: 'SLUICE_TEST_BILLING_TOKEN', prefix: 'Bearer ' } } } },
      { secretsDir: process.cwd(), maxJsonBytes: 64 },
    );
    // A profile without column rules: a JSON body too large to walk is streamed as text, not withheld.
    const noColumnRules = { ...masker, columnRuleCount: 0 };
    const ports = { ...harness.ports, masking: { ...harness.ports.masking, masker: (profile: string) => (harness.ports.masking.masker(profile) ? noColumnRules : undefined) } };
    const { server, port: smallPort } = await listenOnLoopback(small, ports);
    try {
      const reply = await call(smallPort, '/echo-credential-json?chunked&padded', { token });
      expect(reply.status).toBe(200);
      expect(reply.body).not.toContain('secret');
      expect(JSON.parse(reply.body)).toMatchObject({ seen: '[REDACTED:credential]', bare: '[REDACTED:credential]' });
    } finally {
      await small.close();
      server.close();
    }
  });

  it('reads a file credential once per request: the value injected is the one scrubbed, and a rotated file is used next', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-http-secret-'));
    const secretFile = join(dir, 'billing-token');
    writeFileSync(secretFile, 'file-secret-123\n');
    const fileAdapter = createHttpAdapter(
      { name: 'billing-api', type: 'http', listen: '127.0.0.1:0', target: { url: target.url }, credentials: { headers: { Authorization: { file: secretFile, prefix: 'Bearer ' } } } },
      { secretsDir: dir },
    );
    const { server, port: filePort } = await listenOnLoopback(fileAdapter, harness.ports);
    // Every module's readFileSync (node:fs's named export included) is counted for the secret's path.
    const readFileSync = fs.readFileSync;
    let reads = 0;
    fs.readFileSync = ((path: Parameters<typeof readFileSync>[0], ...rest: unknown[]) => {
      if (String(path) === secretFile) reads++;
      return (readFileSync as (...args: unknown[]) => unknown)(path, ...rest);
    }) as typeof readFileSync;
    syncBuiltinESMExports();
    try {
      const first = await call(filePort, '/echo-credential', { token });
      expect(target.seen.at(-1)!.headers.authorization).toBe('Bearer file-secret-123');
      expect(first.body).toBe('got [REDACTED:credential]');
      expect(reads).toBe(1);
      writeFileSync(secretFile, 'file-secret-456\n');
      const rotated = await call(filePort, '/echo-credential', { token });
      expect(target.seen.at(-1)!.headers.authorization).toBe('Bearer file-secret-456');
      expect(rotated.body).toBe('got [REDACTED:credential]');
      expect(rotated.headers['x-echo']).toBe('[REDACTED:credential]');
      expect(reads).toBe(2);
    } finally {
      fs.readFileSync = readFileSync;
      syncBuiltinESMExports();
      await fileAdapter.close();
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('denies POST with 403 problem+json naming the rule, before anything reaches the target', async () => {
    const reply = await call(port, '/customers', { token, method: 'POST', body: '{"name":"x"}', headers: { 'content-type': 'application/json' } });
    expect(reply.status).toBe(403);
    const body = problem(reply);
    expect(body).toMatchObject({ status: 403, rule: 'support-read-only', code: SluiceErrorCode.PolicyDenied });
    expect(body.detail).toContain('support-read-only');
    expect(body.requestId).toBeTruthy();
    expect(target.seen).toHaveLength(0);
  });

  it('decides and forwards the normalised path: /admin/../x goes to /x, /x/../admin/y is denied, %2F is refused', async () => {
    const up = await call(port, '/admin/../x', { token });
    expect(up.status).toBe(200);
    expect(up.body).toBe('path /x');
    const sneaky = await call(port, '/x/..//%61dmin/y', { token });
    expect(sneaky.status).toBe(403);
    expect(problem(sneaky).rule).toBe('no-admin-paths');
    const escaped = await call(port, '/admin%2Fy', { token });
    expect(escaped.status).toBe(400);
    expect(target.seen.map((seen) => seen.url)).toEqual(['/x']);
    expect(harness.state.decided).toEqual(['GET /x', 'GET /admin/y']);
  });

  it('sends and records a masked JSON body as its UTF-8: its length in bytes, the text whole, or cut within the bounds', async () => {
    const short = await call(port, '/accented', { token });
    expect(short.status).toBe(200);
    expect(Number(short.headers['content-length'])).toBe(Buffer.byteLength(short.body));
    expect(JSON.parse(short.body)).toEqual({ name: 'Zoë Ødegård 😀', email: '***@example.com', notes: '' });
    const shortResult = harness.events.find((event) => event.kind === 'result.returned')!;
    expect(shortResult.data).toMatchObject({ rows: [[short.body]], bytes: Buffer.byteLength(short.body), truncated: false, maskedCounts: { email: 1 } });

    harness.events.length = 0;
    const long = await call(port, '/accented?long', { token });
    expect(Number(long.headers['content-length'])).toBe(Buffer.byteLength(long.body));
    expect(JSON.parse(long.body).email).toBe('***@example.com');
    const longResult = harness.events.find((event) => event.kind === 'result.returned')!;
    expect(longResult.data).toMatchObject({ bytes: Buffer.byteLength(long.body), truncated: true });
    const recorded = (longResult.data.rows as string[][])[0]![0]!;
    // Cut at 4096 bytes, perhaps within a character (decoded as U+FFFD).
    expect(Buffer.byteLength(recorded.replace(/\uFFFD$/, ''))).toBeLessThanOrEqual(4096);
    expect(long.body.startsWith(recorded.replace(/\uFFFD$/, ''))).toBe(true);
    expect(recorded.length).toBeGreaterThan(2000);
  });

  it('decodes gzip and brotli bodies, masks them and sends them uncompressed', async () => {
    const gzip = await call(port, '/gzip', { token, headers: { 'accept-encoding': 'gzip' } });
    expect(gzip.headers['content-encoding']).toBeUndefined();
    expect(Number(gzip.headers['content-length'])).toBe(Buffer.byteLength(gzip.body));
    expect(JSON.parse(gzip.body).email).toBe('***@example.com');
    const brotli = await call(port, '/brotli-text', { token });
    expect(brotli.body).toBe('mail ***@example.com now');
  });

  it('streams a large body with a value split across chunks, masked, within a bounded window', async () => {
    const reply = await call(port, '/big', { token });
    expect(reply.status).toBe(200);
    expect(reply.body).toContain('contact: ***@example.com card ****1111 end');
    expect(reply.body).not.toContain('ann@example.com');
    expect(reply.body.length).toBeGreaterThan(4_000_000);
    const result = harness.events.find((event) => event.kind === 'result.returned')!;
    expect(result.data).toMatchObject({ truncated: true, maskedCounts: { email: 1, credit_card: 1 } });
    expect(String((result.data.rows as string[][])[0]![0]).length).toBeLessThanOrEqual(4096);
  });

  it('withholds a body that cannot be masked when a profile applies', async () => {
    const reply = await call(port, '/image', { token });
    expect(reply.status).toBe(403);
    expect(problem(reply).code).toBe(SluiceErrorCode.MaskingUnavailable);
  });

  it('holds a request for approval, then runs it once when granted, or answers 403 naming the approval', async () => {
    const justification = encodeURIComponent('rotate the key – ask ops@example.com\nnow');
    const granted = call(port, '/held', { token, method: 'PUT', body: 'new value', headers: { 'sluice-justification': justification } });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(target.seen).toHaveLength(0);
    const first = harness.approvalRequests[0]!;
    expect(first.command).toBe('PUT /held');
    // The agent's reason reaches the approvers decoded, on one line and masked; the target never sees the header.
    expect(first.justification).toBe('rotate the key – ask ***@example.com now');
    harness.decide(first.id, { outcome: 'granted', approvers: ['dba-1'], reason: 'fine' });
    const ok = await granted;
    expect(ok.status).toBe(200);
    expect(target.seen.map((seen) => [seen.method, seen.url, seen.body])).toEqual([['PUT', '/held', 'new value']]);
    expect(target.seen[0]!.headers['sluice-justification']).toBeUndefined();

    const refused = call(port, '/held', { token, method: 'PUT', body: 'other' });
    await new Promise((resolve) => setTimeout(resolve, 100));
    const second = harness.approvalRequests[1]!;
    expect(second.commandHash).not.toBe(first.commandHash);
    expect(second.justification).toBeUndefined();
    harness.decide(second.id, { outcome: 'expired', approvers: [], reason: '' });
    const reply = await refused;
    expect(reply.status).toBe(403);
    expect(problem(reply)).toMatchObject({ approvalId: second.id, code: SluiceErrorCode.ApprovalExpired });
    expect(problem(reply).detail).toContain(second.id);
    expect(target.seen).toHaveLength(1);
  });

  it('fails closed with 503 problems when policy or masking is unavailable', async () => {
    harness.state.policyDown = true;
    const policy = await call(port, '/customers/7', { token });
    expect(policy.status).toBe(503);
    expect(problem(policy).code).toBe(SluiceErrorCode.PolicyUnavailable);
    harness.state.policyDown = false;
    harness.state.maskingDown = true;
    const masking = await call(port, '/customers/7', { token });
    expect(masking.status).toBe(503);
    expect(problem(masking).code).toBe(SluiceErrorCode.MaskingUnavailable);
    expect(target.seen).toHaveLength(0);
  });

  it('refuses the next request of a kept-alive connection once its token has expired, the same header accepted before', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const shortLived = await idp.mint({ sub: 'agent-1', expiresIn: 2 });
    try {
      const first = await call(port, '/customers/7', { token: shortLived, agent });
      expect(first.status).toBe(200);
      // `exp` is in whole seconds: past it whatever fraction of a second the token was minted at.
      await new Promise((resolve) => setTimeout(resolve, 3_100));
      const second = await call(port, '/customers/7', { token: shortLived, agent });
      expect(second.status).toBe(401);
      expect(problem(second).code).toBe(SluiceErrorCode.TokenExpired);
    } finally {
      agent.destroy();
    }
    expect(target.seen).toHaveLength(1);
  }, 10_000);

  it('keeps one session per connection and subject and ends it when the connection closes', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    await call(port, '/x', { token, agent });
    await call(port, '/customers/7', { token, agent });
    expect(harness.events.filter((event) => event.kind === 'session.ended')).toHaveLength(0);
    agent.destroy();
    await new Promise((resolve) => setTimeout(resolve, 100));
    const started = harness.events.filter((event) => event.kind === 'session.started');
    const ended = harness.events.filter((event) => event.kind === 'session.ended');
    expect(started).toHaveLength(1);
    expect(ended).toHaveLength(1);
    expect(ended[0]!.sessionId).toBe(started[0]!.sessionId);
    expect(ended[0]!.data.commands).toBe(2);
  });
});


