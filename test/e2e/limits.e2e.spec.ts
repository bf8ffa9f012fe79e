import { request as httpRequest } from 'node:http';
import { connect as connectTcp } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { createClient } from 'redis';
import { stringify } from 'yaml';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestIssuer } from '../support/oidc.js';
import { runCommand } from '../support/run.js';
import { allocateServicePorts, servicesSection, SLUICE_BIN } from '../support/sluice.js';
import { startThreeProtocolDeployment, type ThreeProtocolDeployment } from '../support/three-protocol-deployment.js';

const KB = 1024;

/** Each limit a user sets is refused in the protocol's own form, and only for whoever passed it. */
describe('limits a user sets on a listener', () => {
  const limits = { maxStatementBytes: 4 * KB, maxMessageBytes: 64 * KB, maxConnections: 4, maxConnectionsPerSubject: 2 };
  // fetch keeps idle connections open: the HTTP listener has room for them besides the test's own.
  const httpLimits = { ...limits, maxConnections: 8 };
  let deployment: ThreeProtocolDeployment;
  let run: string;
  let storeDb: string;
  let stream: string;
  let idp: TestIssuer;
  let redisPort: number;
  let httpPort: number;

  beforeAll(async () => {
    deployment = await startThreeProtocolDeployment({
      tag: 'lim',
      api: (request, response) => {
        let received = 0;
        request.on('data', (chunk: Buffer) => (received += chunk.length));
        request.on('end', () => response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ received })));
      },
      limits: { postgres: limits, redis: limits, http: httpLimits },
    });
    ({ run, storeDb, stream, idp, redisPort, httpPort } = deployment);
  });

  afterAll(async () => {
    await deployment?.stop();
  });

  const pgAgent = (sub: string): Promise<pg.Client> => deployment.pgAgent(sub, { ignoreErrors: true });

  it('refuses a statement over maxStatementBytes with 54000 and keeps the session usable (simple and extended)', async () => {
    const client = await pgAgent('long-sql');
    const long = `SELECT '${'a'.repeat(5 * KB)}'`;
    await expect(client.query(long)).rejects.toMatchObject({ code: '54000' });
    expect((await client.query('SELECT 1 AS alive')).rows[0].alive).toBe(1);
    await expect(client.query({ text: `${long} || $1::text`, values: ['x'] })).rejects.toMatchObject({ code: '54000' });
    expect((await client.query({ text: 'SELECT $1::int AS n', values: [2] })).rows[0].n).toBe(2);
    await client.end();
  });

  it('ends a session whose message is over maxMessageBytes with FATAL 54000; the others go on', async () => {
    const client = await pgAgent('huge-message');
    await expect(client.query(`SELECT '${'b'.repeat(100 * KB)}'`)).rejects.toMatchObject({ code: '54000' });
    const other = await pgAgent('bystander-msg');
    expect((await other.query('SELECT 1 AS alive')).rows[0].alive).toBe(1);
    await other.end();
  });

  it('refuses a Redis command over maxMessageBytes with -ERR; the others go on', async () => {
    const redis = createClient({ url: `redis://127.0.0.1:${redisPort}`, password: await idp.mint({ sub: 'kv-big', groups: ['agents'] }) });
    redis.on('error', () => undefined);
    await redis.connect();
    await expect(redis.set(`e2e-lim-${run}`, 'v'.repeat(100 * KB))).rejects.toThrow(/ERR.*limit/);
    const other = createClient({ url: `redis://127.0.0.1:${redisPort}`, password: await idp.mint({ sub: 'kv-other', groups: ['agents'] }) });
    await other.connect();
    expect(await other.ping()).toBe('PONG');
    await other.quit();
    await redis.disconnect().catch(() => undefined);
  });

  it('answers 413 problem+json to an HTTP body over maxMessageBytes, with or without Content-Length', async () => {
    const authorization = `Bearer ${await idp.mint({ sub: 'api-big', groups: ['agents'] })}`;
    const declared = await fetch(`http://127.0.0.1:${httpPort}/upload`, { method: 'POST', headers: { authorization }, body: Buffer.alloc(100 * KB, 'x') });
    expect(declared.status).toBe(413);
    expect(declared.headers.get('content-type')).toContain('application/problem+json');
    expect(((await declared.json()) as { code: string }).code).toBe('ERR_LIMIT_EXCEEDED');
    const chunked = await new Promise<number>((resolve, reject) => {
      const request = httpRequest({ host: '127.0.0.1', port: httpPort, path: '/upload', method: 'POST', headers: { authorization, 'transfer-encoding': 'chunked' } }, (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      });
      request.on('error', reject);
      for (let i = 0; i < 10; i++) request.write(Buffer.alloc(16 * KB, 'y'));
      request.end();
    });
    expect(chunked).toBe(413);
    const small = await fetch(`http://127.0.0.1:${httpPort}/upload`, { method: 'POST', headers: { authorization }, body: 'ok' });
    expect(await small.json()).toEqual({ received: 2 });
  });

  it('refuses a subject past maxConnectionsPerSubject (53300) while another subject still connects', async () => {
    const first = await pgAgent('greedy');
    const second = await pgAgent('greedy');
    await expect(pgAgent('greedy')).rejects.toMatchObject({ code: '53300' });
    const other = await pgAgent('modest');
    expect((await other.query('SELECT 1 AS alive')).rows[0].alive).toBe(1);
    await Promise.all([first.end(), second.end(), other.end()]);
    // Places come back when connections close.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const again = await pgAgent('greedy');
    await again.end();
  });

  it('answers 429 to a subject past maxConnectionsPerSubject over HTTP while its open connections go on', async () => {
    const token = await idp.mint({ sub: 'api-greedy', groups: ['agents'] });
    const sockets: ReturnType<typeof connectTcp>[] = [];
    /** One keep-alive request on a fresh connection, left open; resolves to the status line. */
    const requestOnNewConnection = () =>
      new Promise<string>((resolve) => {
        const socket = connectTcp(httpPort, '127.0.0.1', () =>
          socket.write(`POST /upload HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${token}\r\ncontent-length: 1\r\n\r\nx`),
        );
        sockets.push(socket);
        socket.once('data', (chunk: Buffer) => resolve(chunk.toString().split('\r\n')[0]!));
      });
    expect(await requestOnNewConnection()).toMatch(/ 200 /);
    expect(await requestOnNewConnection()).toMatch(/ 200 /);
    expect(await requestOnNewConnection()).toMatch(/ 429 /);
    for (const socket of sockets) socket.destroy();
  });

  it('refuses connections past maxConnections (HTTP: 503 problem+json) and takes them again once places free up', async () => {
    // Raw sockets hold the listener's places without logging in.
    const holders = await Promise.all(
      Array.from({ length: httpLimits.maxConnections }, () => new Promise<ReturnType<typeof connectTcp>>((resolve) => {
        const socket = connectTcp(httpPort, '127.0.0.1', () => resolve(socket));
      })),
    );
    const reply = await new Promise<string>((resolve) => {
      const socket = connectTcp(httpPort, '127.0.0.1');
      let text = '';
      socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
      socket.on('close', () => resolve(text));
      socket.on('error', () => resolve(text));
    });
    expect(reply).toMatch(/^HTTP\/1\.1 503/);
    expect(reply).toContain('ERR_TOO_MANY_CONNECTIONS');
    for (const socket of holders) socket.destroy();
    await new Promise((resolve) => setTimeout(resolve, 200));
    const authorization = `Bearer ${await idp.mint({ sub: 'api-after', groups: ['agents'] })}`;
    expect((await fetch(`http://127.0.0.1:${httpPort}/upload`, { method: 'POST', headers: { authorization }, body: 'x' })).status).toBe(200);
  });

  it('refuses to start when audit.recording does not fit the bus, naming the key in one line', async () => {
    const ports = await allocateServicePorts();
    const dir = mkdtempSync(join(tmpdir(), 'sluice-e2e-lim-'));
    try {
      const configPath = join(dir, 'sluice.yaml');
      writeFileSync(
        configPath,
        stringify({
          admin: { listen: `127.0.0.1:${ports.admin}` },
          services: servicesSection(ports),
          eventStore: { url: `postgres://postgres@127.0.0.1:5432/${storeDb}` },
          bus: { url: 'nats://127.0.0.1:4222', stream, subjectPrefix: `e2elim.${run}.events` },
          audit: { recording: { maxEventBytes: 64 * 1024 * 1024 } },
        }),
      );
      const result = await runCommand(process.execPath, [SLUICE_BIN, 'up', '--config', configPath], { cwd: dir, timeoutMs: 60_000 });
      expect(result.status).not.toBe(0);
      expect(`${result.stdout}${result.stderr}`).toMatch(/audit\.recording\.maxEventBytes.*max_payload/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
