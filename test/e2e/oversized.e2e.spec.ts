import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createClient } from 'redis';
import type { TestIssuer } from '../support/oidc.js';
import { asSeparateEvents } from '../support/command-events.js';
import { runCommand } from '../support/run.js';
import type { RunningSluice } from '../support/sluice.js';
import { startThreeProtocolDeployment, type ThreeProtocolDeployment } from '../support/three-protocol-deployment.js';

const MB = 1024 * 1024;
/** Other agents must be served this soon after one agent's oversized command. */
const SERVED_WITHIN_MS = 10_000;

interface StoredEvent {
  readonly type: string;
  readonly session_id: string;
  readonly data: Record<string, unknown>;
  readonly size: number;
}

/**
 * One agent's oversized statement, result row, COPY, Redis value or HTTP body must stop nobody
 * else: the whole deployment (`sluice up`, real NATS with its default max_payload, real PostgreSQL,
 * Redis and an HTTP target), each case followed at once by other agents' sessions.
 */
describe('one agent cannot stop Sluice for everyone with oversized statements, results and bodies', () => {
  let deployment: ThreeProtocolDeployment;
  let keyPrefix: string;
  let storeDb: string;
  let idp: TestIssuer;
  let sluice: RunningSluice;
  let pgPort: number;
  let redisPort: number;
  let httpPort: number;

  beforeAll(async () => {
    deployment = await startThreeProtocolDeployment({
      tag: 'big',
      targetSetupSql: 'CREATE TABLE uploads (line text)',
      // The HTTP target: counts what it is sent, and sends 50 MB in 1 MB chunks.
      api: (request, response) => {
        if (request.method === 'POST') {
          let received = 0;
          request.on('data', (chunk: Buffer) => (received += chunk.length));
          request.on('end', () => response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ received })));
          return;
        }
        if (request.url === '/download') {
          response.writeHead(200, { 'content-type': 'application/octet-stream' });
          const chunk = Buffer.alloc(MB, 'a');
          let sent = 0;
          const pump = (): void => {
            while (sent < 50) {
              sent++;
              if (!response.write(chunk)) return void response.once('drain', pump);
            }
            response.end();
          };
          pump();
          return;
        }
        response.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
      },
    });
    ({ storeDb, idp, sluice, pgPort, redisPort, httpPort } = deployment);
    keyPrefix = `e2e-big-${deployment.run}:`;
  });

  afterAll(async () => {
    await deployment?.stop();
    const redis = createClient({ url: 'redis://127.0.0.1:6379' });
    await redis.connect();
    for (const key of await redis.keys(`${keyPrefix}*`)) await redis.del(key);
    await redis.quit();
  });

  const pgAgent = (sub: string): Promise<pg.Client> => deployment.pgAgent(sub);

  /** Other agents, on every protocol, are served at once. */
  const othersAreServed = async (label: string): Promise<void> => {
    const started = Date.now();
    const client = await pgAgent(`bystander-${randomUUID().slice(0, 6)}`);
    expect((await client.query('SELECT 1 AS alive')).rows[0].alive, label).toBe(1);
    await client.end();
    const redis = createClient({ url: `redis://127.0.0.1:${redisPort}`, password: await idp.mint({ sub: 'bystander-kv', groups: ['agents'] }) });
    await redis.connect();
    expect(await redis.get(`${keyPrefix}missing`), label).toBeNull();
    await redis.quit();
    const response = await fetch(`http://127.0.0.1:${httpPort}/health`, { headers: { authorization: `Bearer ${await idp.mint({ sub: 'bystander-api', groups: ['agents'] })}` } });
    expect(response.status, label).toBe(200);
    await response.arrayBuffer();
    expect(Date.now() - started, label).toBeLessThan(SERVED_WITHIN_MS);
  };

  it('answers 3 MB and 12 MB result rows and a 3 MB statement, and serves the others at once', async () => {
    const agent = await pgAgent('big-rows');
    const three = await agent.query(`SELECT repeat('x', ${3 * MB}) AS big`);
    expect(three.rows[0].big.length).toBe(3 * MB);
    await othersAreServed('after a 3 MB row');

    const twelve = await agent.query(`SELECT repeat('y', ${12 * MB}) AS big`);
    expect(twelve.rows[0].big.length).toBe(12 * MB);
    await othersAreServed('after a 12 MB row');

    const statement = `SELECT length('${'z'.repeat(3 * MB)}') AS n`;
    expect((await agent.query(statement)).rows[0].n).toBe(3 * MB);
    await othersAreServed('after a 3 MB statement');
    // The agent's own session goes on too.
    expect((await agent.query('SELECT 2 AS still')).rows[0].still).toBe(2);
    await agent.end();
  });

  it('takes a 3 MB COPY FROM through psql and serves the others at once', async () => {
    const file = join(sluice.dir, 'upload.txt');
    writeFileSync(file, `${'w'.repeat(3 * MB)}\n`);
    const result = await runCommand('psql', ['-h', '127.0.0.1', '-p', String(pgPort), '-U', 'copier', '-d', 'db', '-v', 'ON_ERROR_STOP=1', '-c', `\\copy uploads FROM '${file}'`], {
      env: { ...process.env, PGPASSWORD: await idp.mint({ sub: 'copier', groups: ['agents'] }) },
    });
    expect(result.stderr).toBe('');
    expect(result.stdout).toContain('COPY 1');
    await othersAreServed('after a 3 MB COPY FROM');
  });

  it('sets and gets a 50 MB Redis value and serves the others at once', async () => {
    const redis = createClient({ url: `redis://127.0.0.1:${redisPort}`, password: await idp.mint({ sub: 'big-kv', groups: ['agents'] }) });
    await redis.connect();
    const value = 'v'.repeat(50 * MB);
    expect(await redis.set(`${keyPrefix}big`, value)).toBe('OK');
    await othersAreServed('after a 50 MB SET');
    expect((await redis.get(`${keyPrefix}big`))?.length).toBe(50 * MB);
    await othersAreServed('after a 50 MB GET');
    expect(await redis.ping()).toBe('PONG');
    await redis.quit();
  });

  it('streams a 50 MB request body and a 50 MB response body and serves the others at once', async () => {
    const authorization = `Bearer ${await idp.mint({ sub: 'big-api', groups: ['agents'] })}`;
    const upload = await fetch(`http://127.0.0.1:${httpPort}/upload`, {
      method: 'POST',
      headers: { authorization, 'content-type': 'application/octet-stream' },
      body: Buffer.alloc(50 * MB, 'u'),
    });
    expect(upload.status).toBe(200);
    expect(await upload.json()).toEqual({ received: 50 * MB });
    await othersAreServed('after a 50 MB request body');

    const download = await fetch(`http://127.0.0.1:${httpPort}/download`, { headers: { authorization } });
    expect(download.status).toBe(200);
    let received = 0;
    for await (const chunk of download.body as unknown as AsyncIterable<Uint8Array>) received += chunk.length;
    expect(received).toBe(50 * MB);
    await othersAreServed('after a 50 MB response body');
  });

  it('keeps a truncated record of each in the audit store, no event larger than the bus takes', async () => {
    const store = new pg.Client({ host: '127.0.0.1', user: 'postgres', database: storeDb });
    await store.connect();
    const load = async (): Promise<StoredEvent[]> =>
      (await store.query<StoredEvent>(`SELECT type, session_id, data, octet_length(data::text) AS size FROM sluice.events ORDER BY seq`)).rows;
    // A command that ran without a hold may be one command.executed: found as its three parts.
    const found = (stored: StoredEvent[]) => {
      const events = asSeparateEvents(stored);
      return {
        statement: events.find((e) => e.type.startsWith('sluice.command.decided') && e.data.truncated === true && Number(e.data.commandBytes) > 3 * MB),
        rowOf3: events.find((e) => e.type.startsWith('sluice.result.returned') && e.data.truncated === true && Number(e.data.bytes) > 3 * MB && Number(e.data.bytes) < 4 * MB),
        rowOf12: events.find((e) => e.type.startsWith('sluice.result.returned') && e.data.truncated === true && Number(e.data.bytes) > 12 * MB),
        copy: events.find((e) => e.type.startsWith('sluice.command.completed') && e.data.outcome === 'COPY 1'),
        redisSet: events.find((e) => e.type.startsWith('sluice.command.decided') && e.data.protocol === 'redis' && e.data.truncated === true && Number(e.data.commandBytes) > 50 * MB),
        redisGet: events.find((e) => e.type.startsWith('sluice.result.returned') && e.data.truncated === true && (e.data.columns as string[])[0] === 'value'),
        httpDownload: events.find((e) => e.type.startsWith('sluice.result.returned') && e.data.truncated === true && Number(e.data.bytes) >= 50 * MB),
        bystanders: events.filter((e) => e.type.startsWith('sluice.session.started') && String((e.data.subject as { sub: string }).sub).startsWith('bystander-')),
      };
    };
    let events = await load();
    const deadline = Date.now() + 30_000;
    while (Object.values(found(events)).some((value) => value === undefined || (Array.isArray(value) && value.length < 7)) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      events = await load();
    }
    await store.end();
    const records = found(events);
    expect(records.statement, 'the 3 MB statement').toBeDefined();
    expect(records.rowOf3, 'the 3 MB row').toBeDefined();
    expect(records.rowOf12, 'the 12 MB row').toBeDefined();
    expect(records.copy, 'the 3 MB COPY').toBeDefined();
    expect(records.redisSet, 'the 50 MB Redis SET').toBeDefined();
    expect(records.redisGet, 'the 50 MB Redis GET').toBeDefined();
    expect(records.httpDownload, 'the 50 MB HTTP response').toBeDefined();
    expect(records.bystanders.length).toBeGreaterThanOrEqual(7);
    // Cut to audit.recording (defaults): command texts to 16 KiB, results to 64 KiB.
    expect(Buffer.byteLength(String(records.statement!.data.command))).toBeLessThanOrEqual(16 * 1024);
    expect(JSON.stringify(records.rowOf12!.data.rows).length).toBeLessThanOrEqual(70 * 1024);
    expect(Math.max(...events.map((e) => e.size))).toBeLessThan(256 * 1024);
    expect((await sluice.cli(['audit', 'verify'])).status).toBe(0);
  });
});
