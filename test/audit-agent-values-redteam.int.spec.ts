import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstreamManager } from '@nats-io/jetstream';
import { encodeCommand } from '@sluice/codec-resp';
import { parseConfig, type HttpResourceConfig, type LoadedConfig, type RuleConfig } from '@sluice/config';
import { connectBus, createMessageSigner, EventPublisher, type NatsConnection } from '@sluice/event-bus';
import { openEventStore } from '@sluice/event-store';
import { startAuditService, type AuditService } from '@sluice/audit';
import { createAuditPort, type RecordingAuditPort } from '../services/proxy/src/audit-port.js';
import { createHttpAdapter } from '../services/proxy/src/http/adapter.js';
import { createRedisAdapter } from '../services/proxy/src/redis/adapter.js';
import { dropDatabases } from './support/databases.js';
import { compilePiiMasking, createEnginePorts, listenOnLoopback } from './support/engine-ports.js';
import { call, startRecordingTarget } from './support/http-proxy-harness.js';
import { startTestIssuer, type TestIssuer } from './support/oidc.js';
import { rawRespSocket, showResp } from './support/raw-socket.js';
import { loopbackRedisResource } from './support/redis-proxy-harness.js';
import { writeSigningKeys } from './support/signing-keys.js';
import { waitUntil } from './support/wait.js';

/**
 * An agent with a read-only grant must not get an event of its own refused by the store (into
 * sluice.rejected_events, out of its session's hash chain) with values it or a target chooses:
 * NUL bytes, bytes that are not UTF-8, surrogates written as UTF-8, huge numbers, deep nesting,
 * long texts. End to end: real proxy adapters, NATS, the audit service and PostgreSQL; every
 * event of the agent's sessions is stored, in a gapless chain that verifies, and nothing is refused.
 */
const run = randomUUID().slice(0, 8);
const storeDb = `sluice_rt_values_${run}`;
const stream = `RT_VALUES_${run}`;
const subjectPrefix = `rtvalues.${run}.events`;
const keyPrefix = `sluice-rt-values:${run}`;
const logger = pino({ level: process.env.TEST_LOG ?? 'silent' });
const recording = { maxRows: 100, maxBytes: 65_536, maxRowBytes: 16_384, maxCommandBytes: 16_384, maxEventBytes: 262_144 };

const query = async <R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> => {
  const client = new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database: storeDb });
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end();
  }
};

/** Crafted bytes: NUL, not UTF-8, a lone surrogate and a pair written as UTF-8 (CESU), an overlong NUL, U+FFFF, a line separator. */
const CRAFTED = [
  Buffer.from('nul\u0000inside', 'utf8'),
  Buffer.from([0x61, 0xff, 0xfe, 0x62]),
  Buffer.from([0xed, 0xa0, 0x80]),
  Buffer.from([0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80]),
  Buffer.from([0xc0, 0x80]),
  Buffer.from('\uffff\u2028\u0085', 'utf8'),
  Buffer.from('\\u0000 \\ud800 \\\\N', 'utf8'),
];
const NUMBERS = ['1e400', '-1e400', '123456789012345678901234567890123456789', '-0', 'NaN', '0x7fffffffffffffff', '1e-400'];

describe("an agent's values never take its events out of the chain", () => {
  let dir: string;
  let nc: NatsConnection;
  let idp: TestIssuer;
  let service: AuditService;
  let publisher: EventPublisher;
  let audit: RecordingAuditPort;
  const servers: Server[] = [];
  const sockets: Socket[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-rt-values-'));
    const { signers, privateKeys } = writeSigningKeys(dir);
    const config = parseConfig({ bus: { url: 'nats://127.0.0.1:4222', stream, subjectPrefix }, provenance: { signers }, services: { audit: { http: '127.0.0.1:0' } } });
    const loaded: LoadedConfig = { config: { ...config, eventStore: { url: `postgres://postgres@127.0.0.1:5432/${storeDb}` } }, path: join(dir, 'sluice.yaml'), dir };
    service = await startAuditService({ loaded, logger });
    nc = await connectBus('nats://127.0.0.1:4222', 'rt-values');
    idp = await startTestIssuer();
    publisher = new EventPublisher(nc, { source: 'proxy', subjectPrefix, signer: createMessageSigner('proxy', privateKeys.proxy!) });
    audit = createAuditPort(publisher, { source: 'sluice/proxy', recording });
  }, 90_000);

  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    for (const server of servers) await new Promise((resolve) => server.close(resolve));
    await publisher?.close();
    await service?.stop();
    await (await jetstreamManager(nc)).streams.delete(stream).catch(() => undefined);
    await nc?.drain();
    await idp?.close();
    await dropDatabases([storeDb]);
    rmSync(dir, { recursive: true, force: true });
  });

  /** The agent's session (by its sub) once its last event is stored: its sequences, and what the store refused. */
  const storedSession = async (sub: string) => {
    let sessionId = '';
    await waitUntil(
      async () => {
        const [started] = await query<{ session_id: string }>("SELECT session_id FROM sluice.events WHERE subject_sub = $1 AND kind = 'session.started'", [sub]);
        if (!started) return false;
        sessionId = started.session_id;
        return (await query("SELECT 1 FROM sluice.events WHERE session_id = $1 AND kind = 'session.ended'", [sessionId])).length === 1;
      },
      60_000,
      `the session of ${sub} stored to its end`,
    );
    const sequences = (await query<{ session_seq: number }>('SELECT session_seq FROM sluice.events WHERE session_id = $1 ORDER BY session_seq', [sessionId])).map((row) => row.session_seq);
    return { sessionId, sequences };
  };

  const expectWholeChain = async (sequences: readonly number[], atLeast: number): Promise<void> => {
    expect(sequences.length).toBeGreaterThanOrEqual(atLeast);
    expect(sequences).toEqual(Array.from({ length: sequences.length }, (_, index) => index + 1));
    expect(await query('SELECT reason FROM sluice.rejected_events')).toEqual([]);
    const store = await openEventStore({ url: `postgres://postgres@127.0.0.1:5432/${storeDb}` });
    try {
      expect(await store.verify()).toMatchObject({ ok: true });
    } finally {
      await store.close();
    }
  };

  it('Redis: crafted keys, arguments and stored values, read and listed', async () => {
    const resource = loopbackRedisResource();
    const rules = [{ name: 'readers', effect: 'allow', subjects: { groups: ['readers'] }, actions: ['read'], keys: [`${keyPrefix}:*`] }] as RuleConfig[];
    const engine = createEnginePorts({ idp, rules, resource, masking: compilePiiMasking('rt-values'), maxRecordedBytes: 65_536 });
    const { server, port } = await listenOnLoopback(createRedisAdapter(resource, { secretsDir: process.cwd() }), { ...engine, audit });
    servers.push(server);

    // What others wrote, straight to Redis: values and field names of those bytes, numbers, a deep text.
    const direct = connect(6379, '127.0.0.1');
    sockets.push(direct);
    direct.on('data', () => undefined);
    const key = (suffix: Buffer | string) => Buffer.concat([Buffer.from(`${keyPrefix}:`), Buffer.from(suffix)]);
    const writes: Buffer[] = [];
    CRAFTED.forEach((bytes, index) => writes.push(encodeCommand([Buffer.from('SET'), key(`v${index}`), bytes])));
    writes.push(encodeCommand([Buffer.from('HSET'), key('hash'), ...CRAFTED.flatMap((bytes) => [bytes, bytes])]));
    writes.push(encodeCommand(['SET', `${keyPrefix}:deep`, `${'['.repeat(5_000)}${']'.repeat(5_000)}`]));
    writes.push(encodeCommand(['SET', `${keyPrefix}:long`, 'L'.repeat(3_000_000)]));
    NUMBERS.forEach((number, index) => writes.push(encodeCommand(['SET', `${keyPrefix}:n${index}`, number])));
    direct.write(Buffer.concat(writes));

    const sub = `values-redis-${run}`;
    const agent = await rawRespSocket(port);
    sockets.push(agent.socket);
    agent.send('AUTH', await idp.mint({ sub, groups: ['readers'] }));
    expect(showResp(await agent.read())).toBe('OK');
    const commands: Buffer[] = [
      ...CRAFTED.map((_bytes, index) => encodeCommand(['GET', `${keyPrefix}:v${index}`])),
      ...CRAFTED.map((bytes) => encodeCommand([Buffer.from('GET'), key(bytes)])),
      ...CRAFTED.map((bytes) => encodeCommand([Buffer.from('HGET'), key('hash'), bytes])),
      encodeCommand(['HGETALL', `${keyPrefix}:hash`]),
      encodeCommand(['GET', `${keyPrefix}:deep`]),
      encodeCommand(['GET', `${keyPrefix}:long`]),
      encodeCommand(['GET', `${keyPrefix}:${'k'.repeat(100_000)}`]),
      ...NUMBERS.map((_number, index) => encodeCommand(['GET', `${keyPrefix}:n${index}`])),
      ...NUMBERS.map((number) => encodeCommand(['GETRANGE', `${keyPrefix}:long`, number, number])),
      // Refused ones too (outside its keys, a write): their records carry the same values.
      ...CRAFTED.map((bytes) => encodeCommand([Buffer.from('GET'), bytes])),
      ...CRAFTED.map((bytes) => encodeCommand([Buffer.from('SET'), key(bytes), bytes])),
      // A command name of those bytes.
      ...CRAFTED.map((bytes) => encodeCommand([bytes])),
    ];
    agent.write(Buffer.concat(commands));
    for (let index = 0; index < commands.length; index++) await agent.read();
    agent.socket.end();
    const { sequences } = await storedSession(sub);
    await expectWholeChain(sequences, commands.length + 2);
  }, 120_000);

  it('HTTP: crafted paths, queries and answers (escaped NUL and surrogates, huge numbers, deep nesting)', async () => {
    const deep = (levels: number): string => `${'{"a":'.repeat(levels)}1${'}'.repeat(levels)}`;
    const bodies: Record<string, string> = {
      escapes: '{"nul":"\\u0000","lone":"\\ud800","low":"\\udc00 x","pair":"\\ud83d\\ude00","ffff":"\\uffff","keys":{"\\u0000":1,"\\ud800":2}}',
      numbers: '{"big":1e400,"small":-1e400,"tiny":1e-400,"long":123456789012345678901234567890123456789012345678901234567890,"neg":-0}',
      deep: deep(250),
      deeper: deep(5_000),
      array: `${'['.repeat(5_000)}${']'.repeat(5_000)}`,
      text: '"\\u0000\\ud800"',
    };
    const target = await startRecordingTarget((req, res) => {
      const name = (req.url ?? '').split('/')[2]?.split('?')[0] ?? '';
      const body = bodies[name];
      if (body === undefined) return undefined;
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(body);
    });
    const resource = { name: 'api', type: 'http', listen: '127.0.0.1:0', target: { url: target.url }, credentials: { headers: {} } } as HttpResourceConfig;
    const rules = [{ name: 'readers', effect: 'allow', subjects: { groups: ['readers'] }, actions: ['read'] }] as RuleConfig[];
    const engine = createEnginePorts({ idp, rules, resource, masking: compilePiiMasking('rt-values-http'), maxRecordedBytes: 65_536 });
    const adapter = createHttpAdapter(resource, { secretsDir: process.cwd() });
    const { server, port } = await listenOnLoopback(adapter, { ...engine, audit });
    servers.push(server);
    const sub = `values-http-${run}`;
    const token = await idp.mint({ sub, groups: ['readers'] });
    const paths = [
      ...Object.keys(bodies).map((name) => `/json/${name}`),
      '/q?nul=%00&lone=%ED%A0%80&ff=%FF&pair=%ED%A0%BD%ED%B8%80&over=%C0%80',
      '/%00/%ED%A0%80/%FF',
      `/long/${'p'.repeat(6_000)}`,
      `/json/numbers?${'n=1e400&'.repeat(500)}`,
    ];
    for (const path of paths) await call(port, path, { token });
    await call(port, '/json/escapes', { token, method: 'POST', body: bodies.escapes!, headers: { 'content-type': 'application/json' } });
    await adapter.close();
    target.server.close();
    const { sequences } = await storedSession(sub);
    await expectWholeChain(sequences, paths.length + 2);
  }, 120_000);
});
