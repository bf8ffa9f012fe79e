import { randomUUID } from 'node:crypto';
import { Agent } from 'node:http';
import { connect, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { encodeQuery } from '@sluice/codec-pg';
import { encodeCommand } from '@sluice/codec-resp';
import type { HttpResourceConfig, PostgresResourceConfig, RuleConfig } from '@sluice/config';
import { createPolicy } from '@sluice/policy-engine';
import { loadSqlClassifier } from '@sluice/sql-classifier';
import { connectBus, decodeEvents, ensureEventStream, EventPublisher, type NatsConnection } from '@sluice/event-bus';
import type { CloudEvent } from '@sluice/contracts';
import { createAuditPort, type RecordingAuditPort } from '../services/proxy/src/audit-port.js';
import { createHttpAdapter } from '../services/proxy/src/http/adapter.js';
import { createPostgresAdapter, type PostgresAdapter } from '../services/proxy/src/postgres/adapter.js';
import { createRedisAdapter } from '../services/proxy/src/redis/adapter.js';
import { compilePiiMasking, createEnginePorts, listenOnLoopback } from './support/engine-ports.js';
import { startTestIssuer, type TestIssuer } from './support/oidc.js';
import { call, startRecordingTarget } from './support/http-proxy-harness.js';
import { createPostgresPorts, enginePolicyPort, listenPostgresProxy, RawPostgresSession } from './support/postgres-proxy-harness.js';
import { rawRespSocket, showResp } from './support/raw-socket.js';
import { loopbackRedisResource } from './support/redis-proxy-harness.js';

/**
 * One agent that floods its own pub/sub subscription makes an event per pushed message, faster
 * than the bus acknowledges them. The publisher's queue is shared by every session of the proxy
 * and, past its limit, every session fails closed: the flooding agent must be slowed on its own
 * (its target no longer read), while another agent's commands go on, and every pushed message
 * is still recorded.
 */
const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const run = randomUUID().slice(0, 8);
const prefix = `sluice-fair:${run}`;
const stream = `SLUICE_FAIR_${run}`;
const subjectPrefix = `fair.${run}.events`;
const MESSAGES = 40_000;
const STATEMENTS = 20_000;
/** Small, so that the flood passes it within a fraction of a second. */
const MAX_QUEUED_EVENTS = 8_000;

const rules = [{ name: 'agents', effect: 'allow', subjects: { groups: ['agents'] }, actions: ['read', 'write'], keys: [`${prefix}:*`] }] as RuleConfig[];
const recording = { maxRows: 100, maxBytes: 65_536, maxRowBytes: 16_384, maxCommandBytes: 16_384, maxEventBytes: 262_144 };

/** Every event of the stream, in order. */
const storedEvents = async (nc: NatsConnection): Promise<CloudEvent[]> => {
  const info = await (await jetstreamManager(nc)).streams.info(stream);
  const consumer = await jetstream(nc).consumers.get(stream);
  const events: CloudEvent[] = [];
  let seen = 0;
  while (seen < info.state.messages) {
    const messages = await consumer.fetch({ max_messages: Math.min(1_000, info.state.messages - seen), expires: 2_000 });
    for await (const message of messages) {
      events.push(...decodeEvents(message.data));
      seen += 1;
    }
  }
  return events;
};

describe('one agent flooding the audit does not make it fail for the others', () => {
  let nc: NatsConnection;
  let idp: TestIssuer;
  let server: Server;
  let port: number;
  let publisher: EventPublisher;
  let audit: RecordingAuditPort;
  const sockets: Socket[] = [];
  const servers: Server[] = [];
  let postgres: PostgresAdapter | undefined;

  beforeAll(async () => {
    nc = await connectBus(NATS_URL, 'test');
    await ensureEventStream(nc, { stream, subjectPrefix, duplicateWindowMs: 120_000 });
    idp = await startTestIssuer();
    // Small batches, one at a time: the bus acknowledges far slower than the flood comes.
    publisher = new EventPublisher(nc, { source: 'proxy', subjectPrefix, maxQueuedEvents: MAX_QUEUED_EVENTS, maxBatchEvents: 20, maxInFlight: 1 });
    const resource = loopbackRedisResource();
    const engine = createEnginePorts({ idp, rules, resource, masking: compilePiiMasking('fair-share'), maxRecordedBytes: 65_536 });
    audit = createAuditPort(publisher, { source: 'sluice/proxy', recording });
    ({ server, port } = await listenOnLoopback(createRedisAdapter(resource, { secretsDir: process.cwd() }), { ...engine, audit }));
    servers.push(server);
  });

  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await postgres?.close();
    for (const open of servers) await new Promise((resolve) => open.close(resolve));
    await publisher?.close();
    await (await jetstreamManager(nc)).streams.delete(stream).catch(() => undefined);
    await nc?.drain();
    await idp?.close();
  });

  const agent = async (sub: string) => {
    const client = await rawRespSocket(port);
    sockets.push(client.socket);
    client.send('AUTH', await idp.mint({ sub, groups: ['agents'] }));
    expect(showResp(await client.read())).toBe('OK');
    return client;
  };

  it("keeps answering agent B's GETs while agent A floods its subscription, and records every message A received", async () => {
    const flooder = await agent('flooder');
    const bystander = await agent('bystander');
    const channel = `${prefix}:flood`;
    flooder.send('SUBSCRIBE', channel);
    expect(showResp(await flooder.read())).toEqual(['subscribe', channel, 1]);

    // The flood, straight to Redis: every message is pushed to A through the proxy.
    const direct = connect(6379, '127.0.0.1');
    sockets.push(direct);
    direct.on('data', () => undefined);
    const publish = encodeCommand(['PUBLISH', channel, 'x'.repeat(40)]);
    direct.write(Buffer.concat(Array.from({ length: MESSAGES }, () => publish)));

    let pushedToA = 0;
    const receiving = (async () => {
      for (; pushedToA < MESSAGES; pushedToA++) expect(showResp(await flooder.read())).toEqual(['message', channel, 'x'.repeat(40)]);
    })();
    // B's plain reads while A is flooded: each must be answered, none refused.
    const answers: unknown[] = [];
    while (pushedToA < MESSAGES || answers.length < 20) {
      bystander.send('GET', `${prefix}:plain`);
      answers.push(showResp(await bystander.read()));
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    await receiving;
    expect(answers.filter((answer) => answer !== null)).toEqual([]);

    await publisher.flush();
    const ofFlooder = eventsOf(await storedEvents(nc), 'flooder');
    const pushes = ofFlooder.filter((event) => event.type.includes('result.returned') && (event.data as { commandId: string }).commandId === 'push');
    // Every message A received is recorded (and the subscribe's confirmation), and A's sequence has no gap.
    expect(pushes.length).toBe(MESSAGES + 1);
    expectGapless(ofFlooder);
  }, 90_000);

  it("keeps answering agent B's GETs while agent A pipelines thousands of refused commands, and records every refusal", async () => {
    const flooder = await agent('refused-flooder');
    const bystander = await agent('refused-bystander');
    // Outside the agents' keys: each is refused by the proxy, the target never asked.
    const refused = encodeCommand(['GET', `elsewhere:${run}`]);
    flooder.write(Buffer.concat(Array.from({ length: MESSAGES }, () => refused)));
    let refusalsToA = 0;
    const receiving = (async () => {
      for (; refusalsToA < MESSAGES; refusalsToA++) expect(String(showResp(await flooder.read()))).toMatch(/^NOPERM|^ERR/);
    })();
    const answers: unknown[] = [];
    while (refusalsToA < MESSAGES || answers.length < 20) {
      bystander.send('GET', `${prefix}:plain`);
      answers.push(showResp(await bystander.read()));
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    await receiving;
    expect(answers.filter((answer) => answer !== null)).toEqual([]);

    await publisher.flush();
    const ofFlooder = eventsOf(await storedEvents(nc), 'refused-flooder');
    const refusals = ofFlooder.filter((event) => event.type.includes('command.decided') && (event.data as { decision: string }).decision === 'deny');
    expect(refusals.length).toBe(MESSAGES);
    expectGapless(ofFlooder);
  }, 90_000);

  it("keeps answering agent B's SELECTs while agent A pipelines thousands of statements, and records every one of A's", async () => {
    await loadSqlClassifier();
    const resource: PostgresResourceConfig = {
      name: 'db',
      type: 'postgres',
      listen: '127.0.0.1:0',
      target: { host: '127.0.0.1', port: 5432, database: 'postgres', ssl: false },
      credentials: { username: 'postgres' },
    };
    const policy = createPolicy([{ name: 'agents-read', effect: 'allow', subjects: { groups: ['agents'] }, actions: ['read'] }] as RuleConfig[], [resource], { approvalTimeoutMs: 60_000 });
    postgres = createPostgresAdapter(resource, { secretsDir: process.cwd() });
    const ports = { ...createPostgresPorts({ issuer: idp, policy: enginePolicyPort(policy), record: () => undefined, maxRows: 100 }), audit };
    const { server: pgServer, port: pgPort } = await listenPostgresProxy(postgres, ports);
    servers.push(pgServer);

    const flooder = await RawPostgresSession.open(pgPort, 'db', () => idp.mint({ sub: 'pg-flooder', groups: ['agents'] }), (raw) => sockets.push(raw.socket));
    const bystander = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'agent', database: 'db', password: await idp.mint({ sub: 'pg-bystander', groups: ['agents'] }) });
    await bystander.connect();
    try {
      const query = encodeQuery('SELECT 1 AS flood');
      flooder.send(Buffer.concat(Array.from({ length: STATEMENTS }, () => query)));
      let answered = 0;
      const failures: string[] = [];
      // B's statements while A's pipeline runs: each answered, none refused.
      while (flooder.count('ReadyForQuery') < STATEMENTS + 1 || answered < 20) {
        await bystander.query('SELECT 2 AS plain').then(
          () => (answered += 1),
          (error: Error) => failures.push(error.message),
        );
        if (failures.length > 0) break;
      }
      expect(failures).toEqual([]);
      expect(flooder.errors()).toEqual([]);
    } finally {
      await bystander.end();
    }

    await publisher.flush();
    const ofFlooder = eventsOf(await storedEvents(nc), 'pg-flooder');
    const commands = new Set(ofFlooder.filter((event) => /command\.(executed|decided)/.test(event.type)).map((event) => (event.data as { commandId: string }).commandId));
    expect(commands.size).toBe(STATEMENTS);
    expectGapless(ofFlooder);
  }, 120_000);
});


/** A session's events on the stream, by the agent (sub) that opened it. */
const eventsOf = (events: readonly CloudEvent[], sub: string): CloudEvent[] => {
  const started = events.find((event) => event.type.includes('session.started') && (event.data as { subject: { sub: string } }).subject.sub === sub)!;
  return events.filter((event) => event.subject === started.subject);
};

/** Sequences 1..n, each once: nothing of the session lost or doubled. */
const expectGapless = (events: readonly CloudEvent[]): void => {
  const sequences = events.map((event) => (event as CloudEvent & { sessionseq: number }).sessionseq).sort((a, b) => a - b);
  expect(sequences).toEqual(Array.from({ length: sequences.length }, (_, index) => index + 1));
};

describe('one agent flooding the audit over HTTP does not make it fail for the others', () => {
  const httpRun = randomUUID().slice(0, 8);
  const httpStream = `SLUICE_FAIR_HTTP_${httpRun}`;
  const httpPrefix = `fairhttp.${httpRun}.events`;
  let nc: NatsConnection;
  let idp: TestIssuer;

  beforeAll(async () => {
    nc = await connectBus(NATS_URL, 'test');
    await ensureEventStream(nc, { stream: httpStream, subjectPrefix: httpPrefix, duplicateWindowMs: 120_000 });
    idp = await startTestIssuer();
  });

  afterAll(async () => {
    await (await jetstreamManager(nc)).streams.delete(httpStream).catch(() => undefined);
    await nc?.drain();
    await idp?.close();
  });

  it("answers agent B's requests while agent A sends hundreds at once", async () => {
    // One event per NATS message, one message at a time: slow enough for a few hundred requests to outrun it.
    const publisher = new EventPublisher(nc, { source: 'proxy', subjectPrefix: httpPrefix, maxQueuedEvents: 300, maxBatchEvents: 1, maxInFlight: 1 });
    const target = await startRecordingTarget();
    const resource = { name: 'api', type: 'http', listen: '127.0.0.1:0', target: { url: target.url }, credentials: { headers: {} } } as HttpResourceConfig;
    const engine = createEnginePorts({
      idp,
      rules: [{ name: 'agents-read', effect: 'allow', subjects: { groups: ['agents'] }, actions: ['read'] }] as RuleConfig[],
      resource,
      masking: compilePiiMasking('fair-share-http'),
      maxRecordedBytes: 4096,
    });
    const adapter = createHttpAdapter(resource, { secretsDir: process.cwd() });
    const { server: listener, port: httpPort } = await listenOnLoopback(adapter, { ...engine, audit: createAuditPort(publisher, { source: 'sluice/proxy', recording }) });
    const flooding = new Agent({ keepAlive: true, maxSockets: 50 });
    try {
      const [flooder, bystander] = await Promise.all([idp.mint({ sub: 'http-flooder', groups: ['agents'] }), idp.mint({ sub: 'http-bystander', groups: ['agents'] })]);
      let floodDone = false;
      const flood = Promise.all(Array.from({ length: 2_000 }, (_, index) => call(httpPort, `/flood/${index}`, { token: flooder, agent: flooding }))).finally(() => (floodDone = true));
      const statuses: number[] = [];
      while (!floodDone || statuses.length < 10) statuses.push((await call(httpPort, '/plain', { token: bystander })).status);
      const flooded = await flood;
      expect(statuses.filter((status) => status !== 200)).toEqual([]);
      expect(flooded.filter((reply) => reply.status !== 200).map((reply) => reply.status)).toEqual([]);
      await publisher.flush();
    } finally {
      flooding.destroy();
      await adapter.close();
      listener.close();
      target.server.close();
      // The sessions end (and are recorded) as their sockets close.
      await new Promise((resolve) => setTimeout(resolve, 500));
      await publisher.close();
    }
  }, 120_000);
});
