import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from './approvals.js';

interface Seen {
  readonly method: string;
  readonly url: string;
  readonly authorization: string | undefined;
  readonly client: string | undefined;
  readonly body: string;
}

const approval = {
  id: 'a-1',
  status: 'pending',
  resource: 'shop-db',
  subject: 'ops-agent-1',
  requester: { sub: 'ops-agent-1', groups: ['ops-agents'], issuer: 'http://127.0.0.1:9000' },
  command: 'DELETE FROM orders',
  commandHash: 'abcdef0123456789',
  risk: 'high',
  rule: 'risky-needs-dba',
  expiresAt: '2026-01-01T00:02:00.000Z',
  decisions: [],
  justification: 'ticket 42: test orders',
};

// What an agent (command, justification) and another approver (reason) can put in front of a terminal.
const ESC = '\u001b';
const hostile = {
  ...approval,
  id: 'evil',
  subject: `agent${ESC}[2K`,
  command: `SET k "${ESC}[1A${ESC}[2K${ESC}]52;c;cm0gLXJmIH4=\u0007SELECT 1\u009b2J\u202e"`,
  justification: 'fine',
  decisions: [{ approver: 'dba-bob', decision: 'approve', reason: `ok${ESC}[8m hidden` }],
};

describe('sluice approvals', () => {
  let server: Server;
  let url: string;
  const seen: Seen[] = [];

  const capture = async (io = { out: '', err: '' }, argv: string[]) => {
    const code = await run(argv, { out: (text) => (io.out += text), err: (text) => (io.err += text) });
    return { code, ...io };
  };

  beforeAll(async () => {
    // Stands in for the approval service's decision API (same routes, same answers).
    server = createServer((request: IncomingMessage, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        seen.push({ method: request.method!, url: request.url!, authorization: request.headers.authorization, client: request.headers['x-sluice-client'] as string, body });
        const send = (status: number, payload: unknown, type = 'application/json') => {
          response.writeHead(status, { 'content-type': type }).end(JSON.stringify(payload));
        };
        if (request.headers.authorization !== 'Bearer good-token') return send(401, { title: 'bad token', status: 401, code: 'ERR_TOKEN_INVALID' }, 'application/problem+json');
        if (request.url === '/v1/approvals?status=pending') return send(200, { approvals: [approval] });
        if (request.url === '/v1/approvals?status=hostile') return send(200, { approvals: [hostile] });
        if (request.url === '/v1/approvals/evil/decision') return send(200, hostile);
        if (request.url === '/v1/approvals/a-1/decision') {
          const decision = (JSON.parse(body) as { decision: string }).decision;
          return send(200, { ...approval, status: decision === 'approve' ? 'granted' : 'denied', decisions: [{ approver: 'dba-alice', decision, reason: 'ok' }] });
        }
        if (request.url === '/v1/approvals/mine/decision') return send(403, { title: 'self', status: 403, code: 'ERR_SELF_APPROVAL' }, 'application/problem+json');
        send(404, { title: 'no approval', status: 404, code: 'ERR_NOT_FOUND' }, 'application/problem+json');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('lists pending approvals with their hash and command when given a token', async () => {
    const result = await capture(undefined, ['approvals', 'list', '--url', url, '--token', 'good-token']);
    expect(result.code).toBe(0);
    expect(result.out).toContain('a-1');
    expect(result.out).toContain('DELETE FROM orders');
    expect(result.out).toContain('abcdef012345');
    expect(seen.at(-1)).toMatchObject({ method: 'GET', url: '/v1/approvals?status=pending', authorization: 'Bearer good-token' });
  });

  it('approves with the reason given and the token from SLUICE_TOKEN', async () => {
    process.env.SLUICE_TOKEN = 'good-token';
    try {
      const result = await capture(undefined, ['approve', 'a-1', '--reason', 'checked the row count', '--url', url]);
      expect(result.code).toBe(0);
      expect(result.out).toContain('granted');
      expect(result.out).toContain("agent's justification: ticket 42: test orders");
      expect(seen.at(-1)).toMatchObject({ method: 'POST', url: '/v1/approvals/a-1/decision', client: 'cli' });
      expect(JSON.parse(seen.at(-1)!.body)).toEqual({ decision: 'approve', reason: 'checked the row count' });
    } finally {
      delete process.env.SLUICE_TOKEN;
    }
  });

  it('prints every detail of the decided approval indented under its heading', async () => {
    const result = await capture(undefined, ['deny', 'a-1', '--url', url, '--token', 'good-token']);
    expect(result.code).toBe(0);
    expect(result.out).toBe(
      [
        'approval a-1: denied',
        '  ops-agent-1 (from http://127.0.0.1:9000) on shop-db, high risk, rule risky-needs-dba',
        '  command: DELETE FROM orders',
        "  agent's justification: ticket 42: test orders",
        '  hash:    abcdef0123456789',
        '  deny by dba-alice (ok)',
        '',
      ].join('\n'),
    );
  });

  it('prints no terminal controls from the command, the agent or another approver (list, approve, -q)', async () => {
    const printed = [
      await capture(undefined, ['approvals', 'list', '--status', 'hostile', '--url', url, '--token', 'good-token']),
      await capture(undefined, ['approvals', 'list', '--status', 'hostile', '-q', '--url', url, '--token', 'good-token']),
      await capture(undefined, ['approve', 'evil', '--url', url, '--token', 'good-token']),
    ];
    for (const result of printed) {
      expect(result.code).toBe(0);
      // eslint-disable-next-line no-control-regex -- looking for control characters is the point
      expect(result.out.replace(/\n/g, '')).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/);
    }
    // Shown, not dropped: the approver sees that the command carries escapes.
    expect(printed[2]!.out).toContain('\\u{1b}[1A');
    expect(printed[2]!.out).toContain('SELECT 1\\u{9b}2J');
  });

  it('denies an approval', async () => {
    const result = await capture(undefined, ['deny', 'a-1', '--url', url, '--token', 'good-token']);
    expect(result.code).toBe(0);
    expect(JSON.parse(seen.at(-1)!.body)).toMatchObject({ decision: 'deny' });
  });

  it('exits 1 naming the error code when the service refuses the decision', async () => {
    const result = await capture(undefined, ['approve', 'mine', '--url', url, '--token', 'good-token']);
    expect(result.code).toBe(1);
    expect(result.err).toContain('ERR_SELF_APPROVAL');
    expect((await capture(undefined, ['approve', 'a-1', '--url', url, '--token', 'bad'])).err).toContain('ERR_TOKEN_INVALID');
  });

  it('refuses two ids in one argument (approvals list -q with two pending) before asking the service', async () => {
    const before = seen.length;
    const result = await capture(undefined, ['approve', 'a-1\nb-2', '--url', url, '--token', 'good-token']);
    expect(result.code).toBe(2);
    expect(result.err).toBe('sluice: approve takes one approval id, got 2: a-1, b-2 (sluice approvals list shows which is which)\n');
    expect(seen.length).toBe(before);
  });

  it('exits 2 without a token or without an approval id', async () => {
    delete process.env.SLUICE_TOKEN;
    expect((await capture(undefined, ['approvals', 'list', '--url', url])).code).toBe(2);
    expect((await capture(undefined, ['approve', '--url', url, '--token', 'good-token'])).code).toBe(2);
  });

  it('exits 1 when the approval service cannot be reached', async () => {
    const result = await capture(undefined, ['approvals', 'list', '--url', 'http://127.0.0.1:1', '--token', 'good-token']);
    expect(result.code).toBe(1);
    expect(result.err).toContain('cannot be reached');
  });
});
