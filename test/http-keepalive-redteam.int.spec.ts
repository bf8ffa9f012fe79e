import type { Server } from 'node:net';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { HttpResourceConfig, RuleConfig } from '@sluice/config';
import { ConnectionLimiter } from '../services/proxy/src/connection-limits.js';
import { createHttpAdapter } from '../services/proxy/src/http/adapter.js';
import { compilePiiMasking, createEnginePorts, listenOnLoopback, type RecordedEvent } from './support/engine-ports.js';
import { call, forgetTargetTraffic, startHttpFrontDoor, startRecordingTarget, type HttpFrontDoor, type RecordingTarget, type TargetRoutes } from './support/http-proxy-harness.js';
import { startTestIssuer, type TestIssuer } from './support/oidc.js';
import { waitUntil } from './support/wait.js';

/*
 * Red team of the HTTP keep-alive token reuse (97d6b88, 598b0ab): a request whose Authorization
 * header equals the connection's last accepted one takes its verified token, and the session is
 * taken from the connection's map without sessionFor. An agent pipelines raw requests on one
 * socket, switching tokens (allowed, refused by policy, forged, expired, not yet valid) and
 * header forms (case, spacing, duplicates, a second token), so a stale `lastBearer` or session
 * would show as a request answered for the wrong token.
 */

const rules: RuleConfig[] = [
  { name: 'no-admin-paths', effect: 'deny', resources: ['billing-api'], paths: ['/admin/**'] },
  { name: 'support-read', effect: 'allow', subjects: { groups: ['support-agents'] }, actions: ['read'], mask: 'pii' },
] as RuleConfig[];

const recorded: RecordedEvent[] = [];

/** Sensitive values right after, and amid, text the masking feature scan skips over at once (a21f7ac). */
const CARD = '4111 1111 1111 1111';
const EMAIL = 'ada.lovelace@example.com';
const beyondAscii = [`${'é'.repeat(200)}${CARD}`, `漢字\u200b${EMAIL}`, `שלום\u200f${CARD}\u202e`, `😀😀${EMAIL}😀`, `Zoë\u0301 ${CARD} \u3000`, `\u0301${EMAIL}`];
const routes: TargetRoutes = (req, res) => {
  if (req.url !== '/notes') return undefined;
  res.writeHead(200, { 'content-type': 'application/json' });
  return res.end(JSON.stringify({ notes: beyondAscii }));
};

/** One raw request; `authorization` lines are written exactly as given. */
const request = (path: string, authorization: readonly string[]): string =>
  `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${authorization.map((line) => `${line}\r\n`).join('')}\r\n`;

/** Writes every request at once on one connection and returns the response statuses, in order. */
const pipeline = async (port: number, requests: readonly string[]): Promise<number[]> => {
  const { statuses, socket } = await pipelineOpen(port, requests);
  socket.destroy();
  return statuses;
};

/** As pipeline, the connection left open (it keeps its sessions and their places). */
const pipelineOpen = (port: number, requests: readonly string[]): Promise<{ statuses: number[]; socket: Socket }> =>
  new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let received = '';
    const statuses = () => [...received.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((match) => Number(match[1]));
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`only ${statuses().length} of ${requests.length} responses: ${JSON.stringify(received.slice(-700))}`));
    }, 8_000);
    socket.on('connect', () => socket.write(requests.join('')));
    socket.on('data', (chunk) => {
      received += chunk.toString('latin1');
      if (statuses().length >= requests.length) {
        clearTimeout(timer);
        resolve({ statuses: statuses(), socket });
      }
    });
    socket.on('error', reject);
  });

describe('HTTP keep-alive token reuse red team', () => {
  let door: HttpFrontDoor;
  let allowed: string;
  let refused: string;
  let notYet: string;

  beforeAll(async () => {
    door = await startHttpFrontDoor({ rules, masking: compilePiiMasking('http-keepalive-redteam'), recorded, routes });
    allowed = await door.idp.mint({ sub: 'support-bot', groups: ['support-agents'] });
    refused = await door.idp.mint({ sub: 'nobody-bot', groups: ['nobody'] });
    notYet = await door.idp.mint({ sub: 'support-bot', groups: ['support-agents'], notBefore: 120 });
  });

  afterAll(async () => {
    await door?.close();
  });

  beforeEach(() => {
    forgetTargetTraffic(door.target);
    recorded.length = 0;
  });

  it('answers each pipelined request for its own Authorization header, whatever was accepted before it on the connection', async () => {
    const forged = `${allowed.slice(0, -4)}${allowed.endsWith('AAAA') ? 'BBBB' : 'AAAA'}`;
    const probes: Array<[string, readonly string[], number]> = [
      ['/x', [`Authorization: Bearer ${allowed}`], 200],
      ['/x', [`Authorization: Bearer ${refused}`], 403],
      ['/x', [`Authorization: Bearer ${allowed}`], 200],
      ['/x', [`Authorization: Bearer ${forged}`], 401],
      ['/x', [`Authorization: Bearer ${allowed}`], 200],
      ['/x', [], 401],
      ['/x', [`Authorization: Bearer ${allowed}`], 200],
      ['/x', [`Authorization: Bearer ${allowed}x`], 401],
      ['/x', [`Authorization: Bearer ${allowed} ${allowed}`], 401],
      ['/x', [`Authorization: Basic ${allowed}`], 401],
      ['/x', [`Authorization: Bearer ${notYet}`], 401],
      ['/x', [`authorization: bearer ${allowed}`], 200],
      ['/x', [`Authorization:    Bearer   ${allowed}   `], 200],
      ['/x', [`Authorization: Bearer ${refused}`, `Authorization: Bearer ${allowed}`], 403],
      ['/x', [`Authorization: Bearer ${allowed}`, `Authorization: Bearer ${refused}`], 200],
      ['/admin/x', [`Authorization: Bearer ${allowed}`], 403],
      ['/x', [`Authorization: Bearer ${allowed}`], 200],
      ['/x', [`Authorization: Bearer ${refused}`], 403],
    ];
    const statuses = await pipeline(
      door.port,
      probes.map(([path, authorization]) => request(path, authorization)),
    );
    expect(statuses).toEqual(probes.map(([, , status]) => status));
    // Only the allowed ones went upstream, and never with the agent's token.
    expect(door.target.seen).toHaveLength(probes.filter(([, , status]) => status === 200).length);
    for (const seen of door.target.seen) expect(JSON.stringify(seen)).not.toContain(allowed.slice(-20));
    // Each token that failed verification left its trace: the forged, the extended, the not yet valid.
    expect(recorded.filter((event) => event.type === 'session.rejected' && event.data.reason === 'token rejected')).toHaveLength(3);
  });

  it('never lets a token refused after an accepted one on the same connection reach the target, asked one at a time', async () => {
    const statuses: number[] = [];
    for (const token of [allowed, refused, refused, allowed, 'not-a-jwt', 'not-a-jwt', allowed]) {
      statuses.push(...(await pipeline(door.port, [request('/x', [`Authorization: Bearer ${token}`]), request('/x', [`Authorization: Bearer ${allowed}`])])));
    }
    expect(statuses).toEqual([200, 200, 403, 200, 403, 200, 200, 200, 401, 200, 401, 200, 200, 200]);
  });

  it('masks a card or an address right after runs of non-ASCII letters, marks and invisibles in a JSON body', async () => {
    const reply = await call(door.port, '/notes', { token: allowed });
    expect(reply.status).toBe(200);
    expect(reply.body).not.toContain(CARD);
    expect(reply.body).not.toContain('lovelace@');
    expect((JSON.parse(reply.body) as { notes: string[] }).notes).toHaveLength(beyondAscii.length);
  });
});

describe('HTTP keep-alive token reuse against maxConnectionsPerSubject', () => {
  let idp: TestIssuer;
  let target: RecordingTarget;
  let listener: Server;
  let port: number;
  let close: () => Promise<void>;

  beforeAll(async () => {
    idp = await startTestIssuer();
    target = await startRecordingTarget();
    const resource = {
      name: 'billing-api',
      type: 'http',
      listen: '127.0.0.1:0',
      target: { url: target.url },
      credentials: { headers: {} },
      limits: { maxConnections: 10, maxConnectionsPerSubject: 1 },
    } as HttpResourceConfig;
    const engine = createEnginePorts({ idp, rules, resource, masking: compilePiiMasking('http-keepalive-limits'), maxRecordedBytes: 4096 });
    const ports = { ...engine, connectionLimits: new Map([[resource.name, new ConnectionLimiter({ maxConnections: 10, maxConnectionsPerSubject: 1 })]]) };
    const adapter = createHttpAdapter(resource, { secretsDir: process.cwd() });
    ({ server: listener, port } = await listenOnLoopback(adapter, ports));
    close = async () => {
      await adapter.close();
      listener.close();
      target.server.close();
      await idp.close();
    };
  });

  afterAll(async () => {
    await close?.();
  });

  it('refuses a subject at its limit on every request of a second connection, before and after another subject is accepted there', async () => {
    const first = await idp.mint({ sub: 'limited-bot', groups: ['support-agents'] });
    const other = await idp.mint({ sub: 'other-bot', groups: ['support-agents'] });
    const bearer = (token: string) => request('/x', [`Authorization: Bearer ${token}`]);
    const holder = await pipelineOpen(port, [bearer(first)]);
    expect(holder.statuses).toEqual([200]);
    try {
      expect(await pipeline(port, [bearer(first), bearer(other), bearer(first), bearer(other), bearer(first)])).toEqual([429, 200, 429, 200, 429]);
    } finally {
      holder.socket.destroy();
    }
    // The place is given back when the holder's connection closes.
    let statuses: number[] = [];
    await waitUntil(async () => {
      statuses = await pipeline(port, [bearer(first), bearer(first)]);
      return statuses[0] === 200;
    });
    expect(statuses).toEqual([200, 200]);
  });
});
