import { randomUUID } from 'node:crypto';
import { Agent } from 'node:http';
import { connect, type Server, type Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { jetstreamManager } from '@nats-io/jetstream';
import { encodeQuery } from '@sluice/codec-pg';
import { encodeCommand } from '@sluice/codec-resp';
import type { HttpResourceConfig, PostgresResourceConfig, RuleConfig } from '@sluice/config';
import { createPolicy } from '@sluice/policy-engine';
import { loadSqlClassifier } from '@sluice/sql-classifier';
import { connectBus, ensureEventStream, EventPublisher, type NatsConnection, type PublisherSettings } from '@sluice/event-bus';
import { createAuditPort, type RecordingAuditPort } from '../services/proxy/src/audit-port.js';
import { createHttpAdapter } from '../services/proxy/src/http/adapter.js';
import { BACKLOG_WAIT_MS } from '../services/proxy/src/http/backlog.js';
import { createPostgresAdapter, type PostgresAdapter } from '../services/proxy/src/postgres/adapter.js';
import { createRedisAdapter } from '../services/proxy/src/redis/adapter.js';
import { compilePiiMasking, createEnginePorts, listenOnLoopback } from './support/engine-ports.js';
import { startTestIssuer, type TestIssuer } from './support/oidc.js';
import { call, startRecordingTarget } from './support/http-proxy-harness.js';
import { createPostgresPorts, enginePolicyPort, listenPostgresProxy, RawPostgresSession } from './support/postgres-proxy-harness.js';
import { rawRespSocket, showResp, type RawRespSocket } from './support/raw-socket.js';
import { loopbackRedisResource } from './support/redis-proxy-harness.js';

/**
 * Red team of the audit queue's fair share (test/audit-fair-share.int.spec.ts has what it
 * promises): an agent must not get past its share and make the queue fill for everyone (many
 * sessions at once, agents arriving one after another), and an agent paused for its backlog must
 * not be left waiting when the bus goes away: its commands are refused (fail closed), as everyone's are.
 */
const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const run = randomUUID().slice(0, 8);
const prefix = `sluice-fair-rt:${run}`;
const rules = [{ name: 'agents', effect: 'allow', subjects: { groups: ['agents'] }, actions: ['read', 'write'], keys: [`${prefix}:*`] }] as RuleConfig[];
const recording = { maxRows: 100, maxBytes: 65_536, maxRowBytes: 16_384, maxCommandBytes: 16_384, maxEventBytes: 262_144 };

let nc: NatsConnection;
let idp: TestIssuer;
const streams: string[] = [];
const sockets: Socket[] = [];
const servers: Server[] = [];
const publishers: EventPublisher[] = [];
const cleanups: Array<() => Promise<void>> = [];

beforeAll(async () => {
  nc = await connectBus(NATS_URL, 'test');
  idp = await startTestIssuer();
  await loadSqlClassifier();
});

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  for (const cleanup of cleanups.splice(0)) await cleanup();
  for (const server of servers.splice(0)) await new Promise((resolve) => server.close(resolve));
  // Publishers whose stream went away retry for ever: closed without waiting for them.
  for (const publisher of publishers.splice(0)) await publisher.close(100);
});

afterAll(async () => {
  const manager = await jetstreamManager(nc);
  for (const stream of streams) await manager.streams.delete(stream).catch(() => undefined);
  await nc?.drain();
  await idp?.close();
});

/** A stream of its own and a publisher to it; `outage` deletes the stream: from then on every publish fails and is retried (the bus is away). */
const bus = async (settings: Partial<PublisherSettings>, bounds = recording, mergeWindowMs?: number) => {
  const id = randomUUID().slice(0, 8);
  const stream = `SLUICE_FAIR_RT_${id}`;
  const subjectPrefix = `fairrt.${id}.events`;
  streams.push(stream);
  await ensureEventStream(nc, { stream, subjectPrefix, duplicateWindowMs: 120_000 });
  const publisher = new EventPublisher(nc, { source: 'proxy', subjectPrefix, ...settings });
  publishers.push(publisher);
  const audit = createAuditPort(publisher, { source: 'sluice/proxy', recording: bounds, mergeWindowMs });
  const outage = async () => {
    await (await jetstreamManager(nc)).streams.delete(stream);
  };
  return { publisher, audit, outage };
};

/** A Redis front door; `accepted` gets the proxy's side of each client connection. */
const redisProxy = async (audit: RecordingAuditPort, accepted?: (socket: Socket) => void) => {
  const resource = loopbackRedisResource();
  const engine = createEnginePorts({ idp, rules, resource, masking: compilePiiMasking('fair-share-rt'), maxRecordedBytes: 65_536 });
  const adapter = createRedisAdapter(resource, { secretsDir: process.cwd() });
  const { server, port } = await listenOnLoopback({ handleConnection: (socket, ports) => (accepted?.(socket as Socket), adapter.handleConnection(socket, ports)) }, { ...engine, audit });
  servers.push(server);
  return port;
};

const redisAgent = async (port: number, sub: string): Promise<RawRespSocket> => {
  const client = await rawRespSocket(port);
  sockets.push(client.socket);
  client.send('AUTH', await idp.mint({ sub, groups: ['agents'] }));
  expect(showResp(await client.read())).toBe('OK');
  return client;
};

/** Reads `count` replies: a flooder is slowed, so one reply may take longer than the socket's own 5 s bound; all of them within `ms`. */
const readAll = async (client: RawRespSocket, count: number, ms = 90_000): Promise<unknown[]> => {
  const deadline = performance.now() + ms;
  const replies: unknown[] = [];
  while (replies.length < count) {
    try {
      replies.push(showResp(await client.read()));
    } catch (error) {
      if (client.closed || performance.now() > deadline) throw error;
    }
  }
  return replies;
};

/** Resolves with `promise`, or rejects once `ms` have passed: a wait that must end, named. */
const within = <T>(promise: Promise<T>, ms: number, what: string): Promise<T> =>
  Promise.race([promise, new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error(`${what}: still waiting after ${ms} ms`)), ms).unref())]);

describe('an agent cannot get past its share of the audit queue', () => {
  it('many sessions of one agent, each pipelining at once, do not fill the queue for another agent', async () => {
    // The bus takes one event at a time; the whole queue is 2,000 events.
    const { publisher, audit } = await bus({ maxQueuedEvents: 2_000, maxBatchEvents: 1, maxInFlight: 1 });
    const port = await redisProxy(audit);
    const bystander = await redisAgent(port, 'many-bystander');
    const sessions = await Promise.all(Array.from({ length: 30 }, () => redisAgent(port, 'many-flooder')));
    const PER_SESSION = 1_500;
    const get = encodeCommand(['GET', `${prefix}:many`]);
    // Every session's pipeline arrives in the same turn: each session alone is far under the agent's share.
    for (const session of sessions) session.write(Buffer.concat(Array.from({ length: PER_SESSION }, () => get)));
    let flooding = true;
    const flood = Promise.all(sessions.map((session) => readAll(session, PER_SESSION))).finally(() => (flooding = false));
    const answers: unknown[] = [];
    let unhealthy = 0;
    let slowest = 0;
    while (flooding || answers.length < 20) {
      if (!publisher.healthy) unhealthy += 1;
      const sent = performance.now();
      bystander.send('GET', `${prefix}:plain`);
      answers.push(showResp(await bystander.read()));
      slowest = Math.max(slowest, performance.now() - sent);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    const replies = (await flood).flat();
    console.log('many sessions: bystander answers', answers.length, 'slowest', Math.round(slowest), 'ms, queue max seen', publisher.pending);
    expect(answers.filter((answer) => answer !== null)).toEqual([]);
    expect(unhealthy).toBe(0);
    // The flooder is slowed, never refused.
    expect(replies.filter((reply) => reply !== null)).toEqual([]);
  }, 120_000);

  it('a read of a thousand small pushed messages does not take a subscriber past its share: the rest wait, in order', async () => {
    const { publisher, audit } = await bus({ maxQueuedEvents: 300, maxBatchEvents: 1, maxInFlight: 1 });
    const port = await redisProxy(audit);
    const bystander = await redisAgent(port, 'push-bystander');
    const subscriber = await redisAgent(port, 'push-subscriber');
    const channel = `${prefix}:small`;
    subscriber.send('SUBSCRIBE', channel);
    expect(showResp(await subscriber.read())).toEqual(['subscribe', channel, 1]);
    const direct = connect(6379, '127.0.0.1');
    sockets.push(direct);
    direct.on('data', () => undefined);
    const MESSAGES = 20_000;
    // One byte each: a 64 KB read from the target holds over a thousand of them.
    direct.write(Buffer.concat(Array.from({ length: MESSAGES }, (_, index) => encodeCommand(['PUBLISH', channel, String(index % 10)]))));
    let receiving = true;
    const received = readAll(subscriber, MESSAGES).finally(() => (receiving = false));
    let unhealthy = 0;
    const answers: unknown[] = [];
    while (receiving || answers.length < 20) {
      if (!publisher.healthy) unhealthy += 1;
      bystander.send('GET', `${prefix}:plain`);
      answers.push(showResp(await bystander.read()));
    }
    expect(answers.filter((answer) => answer !== null)).toEqual([]);
    expect(unhealthy).toBe(0);
    expect(await received).toEqual(Array.from({ length: MESSAGES }, (_, index) => ['message', channel, String(index % 10)]));
  }, 120_000);

  it('agents that arrive one after another do not together fill the queue for the next one', async () => {
    const { publisher, audit } = await bus({ maxQueuedEvents: 3_000, maxBatchEvents: 1, maxInFlight: 1 });
    const port = await redisProxy(audit);
    const bystander = await redisAgent(port, 'late-bystander');
    const refused = encodeCommand(['GET', `elsewhere:${run}`]);
    const COMMANDS = 12_000;
    const floods: Array<Promise<unknown[]>> = [];
    let unhealthy = 0;
    // Each flooder takes its share while fewer agents have events queued, and keeps it.
    for (const sub of ['first-flooder', 'second-flooder', 'third-flooder', 'fourth-flooder']) {
      const flooder = await redisAgent(port, sub);
      flooder.write(Buffer.concat(Array.from({ length: COMMANDS }, () => refused)));
      floods.push(readAll(flooder, COMMANDS));
      for (let waited = 0; waited < 20; waited++) {
        if (!publisher.healthy) unhealthy += 1;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }
    let flooding = true;
    const all = Promise.all(floods).finally(() => (flooding = false));
    const answers: unknown[] = [];
    while (flooding || answers.length < 20) {
      if (!publisher.healthy) unhealthy += 1;
      bystander.send('GET', `${prefix}:plain`);
      answers.push(showResp(await bystander.read()));
    }
    const replies = (await all).flat();
    expect(answers.filter((answer) => answer !== null)).toEqual([]);
    expect(unhealthy).toBe(0);
    expect(replies.filter((reply) => !/^NOPERM|^ERR.*denied/i.test(String(reply)))).toEqual([]);
  }, 120_000);
});

describe('an agent cannot get one request past its share per open HTTP connection', () => {
  it('many connections of one agent, their requests resumed together, stay within the queue', async () => {
    const QUEUE = 200;
    const CONNECTIONS = 100;
    // A decision waits up to 2 s for its outcome: each request then makes one event, counted
    // from its decision on (kept back), so what is left uncounted is what this is about.
    const { publisher, audit } = await bus({ maxQueuedEvents: QUEUE, maxBatchEvents: 1, maxInFlight: 1 }, recording, 2_000);
    // The most events seen queued, after each one queued.
    let most = 0;
    const publish = publisher.publish.bind(publisher);
    const publishWritten = publisher.publishWritten.bind(publisher);
    publisher.publish = (...args) => {
      publish(...args);
      most = Math.max(most, publisher.pending);
    };
    publisher.publishWritten = (...args) => {
      publishWritten(...args);
      most = Math.max(most, publisher.pending);
    };
    const { port, close } = await httpProxy(audit);
    cleanups.push(close);
    const connections = new Agent({ keepAlive: true, maxSockets: CONNECTIONS });
    cleanups.push(async () => connections.destroy());
    const token = await idp.mint({ sub: 'http-many-connections', groups: ['agents'] });
    // Every connection opened (its session.started is no request's to hold back), then the queue drained.
    await Promise.all(Array.from({ length: CONNECTIONS }, (_, index) => call(port, `/open/${index}`, { token, agent: connections })));
    await publisher.flush();
    most = 0;
    let unhealthy = 0;
    let flooding = true;
    // A few requests per connection: enough for each connection to have one waiting at every resume.
    const flood = Promise.all(Array.from({ length: CONNECTIONS * 4 }, (_, index) => call(port, `/flood/${index}`, { token, agent: connections }))).finally(() => (flooding = false));
    while (flooding) {
      if (!publisher.healthy) unhealthy += 1;
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const replies = await flood;
    console.log('many HTTP connections: most events queued', most, 'of', QUEUE);
    expect(replies.filter((reply) => reply.status !== 200).map((reply) => `${reply.status} ${reply.body}`)).toEqual([]);
    expect(unhealthy).toBe(0);
    // The agent's share is half the queue (one agent): not one request more per connection.
    expect(most).toBeLessThan(QUEUE / 2 + CONNECTIONS / 4);
  }, 60_000);
});

describe('an agent paused for its backlog when the bus goes away is refused, not left waiting', () => {
  it('Redis: its connection ends with "audit unavailable" after the replies already due', async () => {
    const { publisher, audit, outage } = await bus({ maxQueuedEvents: 200, maxBatchEvents: 1, maxInFlight: 1 });
    const port = await redisProxy(audit);
    const flooder = await redisAgent(port, 'redis-outage');
    const COMMANDS = 20_000;
    const refused = encodeCommand(['GET', `elsewhere:${run}`]);
    flooder.write(Buffer.concat(Array.from({ length: COMMANDS }, () => refused)));
    // Its first replies came: it is past its share and slowed by now.
    expect(String(showResp(await flooder.read()))).toMatch(/^NOPERM/);
    await outage();
    const replies: string[] = [];
    await within(
      (async () => {
        while (!flooder.closed || replies.length < COMMANDS) {
          try {
            replies.push(String(showResp(await flooder.read())));
          } catch {
            break;
          }
        }
      })(),
      30_000,
      'the paused pipeline',
    );
    expect(flooder.closed).toBe(true);
    expect(replies.at(-1)).toMatch(/^ERR audit unavailable: this agent's earlier commands cannot be recorded/);
    // Before it, each command taken was answered (refused by the policy, or as audit unavailable once the bus was away).
    expect(replies.slice(0, -1).filter((reply) => !/^NOPERM|^ERR audit unavailable$/.test(reply))).toEqual([]);
    // The refusals the outage left unrecorded are bounded by the agent's share, not by the pipeline.
    expect(publisher.pending).toBeLessThan(400);
  }, 60_000);

  it('PostgreSQL: its session ends with a FATAL 58000 (audit unavailable)', async () => {
    const { audit, outage } = await bus({ maxQueuedEvents: 200, maxBatchEvents: 1, maxInFlight: 1 });
    const resource: PostgresResourceConfig = {
      name: 'db',
      type: 'postgres',
      listen: '127.0.0.1:0',
      target: { host: '127.0.0.1', port: 5432, database: 'postgres', ssl: false },
      credentials: { username: 'postgres' },
    };
    const policy = createPolicy([{ name: 'agents-read', effect: 'allow', subjects: { groups: ['agents'] }, actions: ['read'] }] as RuleConfig[], [resource], { approvalTimeoutMs: 60_000 });
    const postgres: PostgresAdapter = createPostgresAdapter(resource, { secretsDir: process.cwd() });
    cleanups.push(() => postgres.close());
    const ports = { ...createPostgresPorts({ issuer: idp, policy: enginePolicyPort(policy), record: () => undefined, maxRows: 100 }), audit };
    const { server, port } = await listenPostgresProxy(postgres, ports);
    servers.push(server);
    const flooder = await RawPostgresSession.open(port, 'db', () => idp.mint({ sub: 'pg-outage', groups: ['agents'] }), (raw) => sockets.push(raw.socket));
    const STATEMENTS = 5_000;
    const query = encodeQuery('SELECT 1 AS flood');
    flooder.send(Buffer.concat(Array.from({ length: STATEMENTS }, () => query)));
    await flooder.readyCount(20);
    await outage();
    await within(
      (async () => {
        while (!flooder.closed) await new Promise((resolve) => setTimeout(resolve, 20));
      })(),
      30_000,
      'the paused session',
    );
    expect(flooder.count('ReadyForQuery')).toBeLessThan(STATEMENTS + 1);
    expect(flooder.errors().at(-1)).toMatchObject({ S: 'FATAL', C: '58000', M: expect.stringMatching(/^audit unavailable/) });
    expect(flooder.errors().filter((error) => error.C !== '58000')).toEqual([]);
  }, 60_000);

  it('HTTP: its waiting requests are answered 503 (audit unavailable), none left hanging', async () => {
    const { audit, outage } = await bus({ maxQueuedEvents: 40, maxBatchEvents: 1, maxInFlight: 1 });
    const { port, close } = await httpProxy(audit);
    cleanups.push(close);
    const flooding = new Agent({ keepAlive: true, maxSockets: 100 });
    cleanups.push(async () => flooding.destroy());
    const token = await idp.mint({ sub: 'http-outage', groups: ['agents'] });
    let answered = 0;
    const flood = Promise.all(Array.from({ length: 600 }, (_, index) => call(port, `/flood/${index}`, { token, agent: flooding }).finally(() => (answered += 1))));
    while (answered < 20) await new Promise((resolve) => setTimeout(resolve, 5));
    await outage();
    const statuses = (await within(flood, 15_000, 'the waiting requests')).map((reply) => reply.status);
    expect(statuses.filter((status) => status === 503).length).toBeGreaterThan(0);
    expect(statuses.filter((status) => status !== 200 && status !== 503)).toEqual([]);
  }, 60_000);

  it(`HTTP: a request whose agent's backlog does not drain is refused after ${BACKLOG_WAIT_MS} ms with a clear error`, async () => {
    const { audit } = await bus({});
    // The agent stays past its share and the bus stays up: nothing would ever resume it.
    const stuck: RecordingAuditPort = { ...audit, backlogged: () => true };
    const { port, close } = await httpProxy(stuck);
    cleanups.push(close);
    const started = performance.now();
    const reply = await within(call(port, '/stuck', { token: await idp.mint({ sub: 'http-stuck', groups: ['agents'] }) }), BACKLOG_WAIT_MS + 5_000, 'the request');
    expect(reply.status).toBe(503);
    expect(JSON.parse(reply.body)).toMatchObject({ code: 'ERR_AUDIT_UNAVAILABLE', title: 'Audit backlogged' });
    expect(performance.now() - started).toBeGreaterThanOrEqual(BACKLOG_WAIT_MS - 50);
  }, 30_000);
});

const httpProxy = async (audit: RecordingAuditPort) => {
  const target = await startRecordingTarget();
  const resource = { name: 'api', type: 'http', listen: '127.0.0.1:0', target: { url: target.url }, credentials: { headers: {} } } as HttpResourceConfig;
  const engine = createEnginePorts({
    idp,
    rules: [{ name: 'agents-read', effect: 'allow', subjects: { groups: ['agents'] }, actions: ['read'] }] as RuleConfig[],
    resource,
    masking: compilePiiMasking('fair-share-rt-http'),
    maxRecordedBytes: 4096,
  });
  const adapter = createHttpAdapter(resource, { secretsDir: process.cwd() });
  const { server, port } = await listenOnLoopback(adapter, { ...engine, audit });
  const close = async () => {
    await adapter.close();
    server.close();
    target.server.close();
  };
  return { port, close };
};

describe('the proxy does not buffer without bound for a client that does not read', () => {
  it('a subscriber that never reads: the target is no longer read past the client socket\'s buffer', async () => {
    const { audit } = await bus({}, { ...recording, maxBytes: 512, maxRowBytes: 512 });
    const proxySides: Socket[] = [];
    const port = await redisProxy(audit, (socket) => proxySides.push(socket));
    const subscriber = await redisAgent(port, 'never-reads');
    const channel = `${prefix}:unread`;
    subscriber.send('SUBSCRIBE', channel);
    expect(showResp(await subscriber.read())).toEqual(['subscribe', channel, 1]);
    subscriber.socket.pause();
    const direct = connect(6379, '127.0.0.1');
    sockets.push(direct);
    direct.on('data', () => undefined);
    const MESSAGE = 'm'.repeat(64 * 1024);
    const publish = encodeCommand(['PUBLISH', channel, MESSAGE]);
    let buffered = 0;
    for (let round = 0; round < 40; round++) {
      direct.write(Buffer.concat(Array.from({ length: 25 }, () => publish)));
      await new Promise((resolve) => setTimeout(resolve, 25));
      buffered = Math.max(buffered, ...proxySides.map((socket) => socket.writableLength));
    }
    // 64 MB were published to it; the proxy holds a few reads' worth at most (Redis holds, or drops, the rest).
    expect(buffered).toBeLessThan(8 * 1024 * 1024);
  }, 60_000);

  it('a pipeline of large replies left unread: the same', async () => {
    const { audit } = await bus({}, { ...recording, maxBytes: 512, maxRowBytes: 512 });
    const proxySides: Socket[] = [];
    const port = await redisProxy(audit, (socket) => proxySides.push(socket));
    const direct = connect(6379, '127.0.0.1');
    sockets.push(direct);
    direct.on('data', () => undefined);
    direct.write(encodeCommand(['SET', `${prefix}:large`, 'v'.repeat(1024 * 1024)]));
    const reader = await redisAgent(port, 'reads-nothing');
    reader.socket.pause();
    const get = encodeCommand(['GET', `${prefix}:large`]);
    let buffered = 0;
    for (let round = 0; round < 40; round++) {
      reader.write(Buffer.concat(Array.from({ length: 4 }, () => get)));
      await new Promise((resolve) => setTimeout(resolve, 25));
      buffered = Math.max(buffered, ...proxySides.map((socket) => socket.writableLength));
    }
    // 160 replies of 1 MB were asked for.
    expect(buffered).toBeLessThan(8 * 1024 * 1024);
  }, 60_000);
});
