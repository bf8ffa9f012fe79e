import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nanos } from '@nats-io/transport-node';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { buildEvent, type CloudEvent } from '@sluice/contracts';
import { eventStreamConfig, parseConfig, type LoadedConfig } from '@sluice/config';
import { connectBus, createMessageSigner, decodeEvents, ensureEventStream, EventPublisher, type NatsConnection } from '@sluice/event-bus';
import { openEventStore } from '@sluice/event-store';
import { startAuditService, STORE_CONSUMER, type AuditService } from '@sluice/audit';
import { freePort } from './support/ports.js';
import { writeSigningKeys } from './support/signing-keys.js';
import { waitUntil } from './support/wait.js';

const RUN = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
const DATABASE = `sluice_redelivery_it_${RUN}`;
const DB_URL = `postgres://postgres@127.0.0.1:5432/${DATABASE}`;
const STREAM = `AUDIT_REDELIVERY_IT_${RUN}`;
const PREFIX = `redelivery.${RUN}.events`;

const decided = (session: string, index: number): CloudEvent =>
  buildEvent('command.decided', {
    id: `${RUN}-${session}-${index}`,
    source: 'proxy',
    subject: `${RUN}-${session}`,
    time: new Date(),
    sessionseq: index,
    data: { commandId: `c${index}`, resource: 'shop-db', protocol: 'postgres', command: 'SELECT 1', action: 'read', risk: 'low', decision: 'allow', rule: 'r', reason: 'ok' },
  });

const batchOf = (phase: string, count: number): CloudEvent[] => Array.from({ length: count }, (_, index) => decided(`s${index % 7}`, index)).map((event) => ({ ...event, id: `${event.id}-${phase}` }));

describe('audit store when messages are redelivered', () => {
  let dir: string;
  let loaded: LoadedConfig;
  let nc: NatsConnection;
  let publisher: EventPublisher;
  let service: AuditService | undefined;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-redelivery-it-'));
    const { signers, privateKeys } = writeSigningKeys(dir);
    const document = {
      bus: { url: 'nats://127.0.0.1:4222', stream: STREAM, subjectPrefix: PREFIX },
      services: { audit: { http: `127.0.0.1:${await freePort()}` } },
      provenance: { signers },
    };
    const config = parseConfig(document);
    loaded = { config: { ...config, eventStore: { url: DB_URL } }, path: join(dir, 'sluice.yaml'), dir };
    nc = await connectBus('nats://127.0.0.1:4222', 'redelivery-it');
    await ensureEventStream(nc, eventStreamConfig(loaded.config));
    // The audit service keeps a durable that exists: this one redelivers after 1 s, not 30 s.
    await (await jetstreamManager(nc)).consumers.add(STREAM, {
      durable_name: STORE_CONSUMER,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: nanos(1_000),
    });
    publisher = new EventPublisher(nc, { source: 'proxy', subjectPrefix: PREFIX, maxBatchEvents: 40, signer: createMessageSigner('proxy', privateKeys.proxy!) });
  });

  afterAll(async () => {
    await service?.stop();
    await publisher?.close();
    await (await jetstreamManager(nc)).streams.delete(STREAM).catch(() => undefined);
    await nc?.drain();
    const admin = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres' });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`);
    await admin.end();
    rmSync(dir, { recursive: true, force: true });
  });

  it('stores nothing twice and keeps storing when an instance committed a batch and died before acking it', async () => {
    const first = batchOf('first', 200);
    for (const event of first) publisher.publish(event);
    await publisher.flush();

    // An audit instance that takes every message, commits its events, and dies before the acks.
    const crashed = await openEventStore({ url: DB_URL });
    const consumer = await jetstream(nc).consumers.get(STREAM, STORE_CONSUMER);
    const taken: CloudEvent[] = [];
    const messages = await consumer.fetch({ max_messages: 100, expires: 2_000 });
    for await (const message of messages) {
      taken.push(...decodeEvents(message.data));
      if (taken.length >= first.length) break;
    }
    expect(taken.map((event) => event.id).sort()).toEqual(first.map((event) => event.id).sort());
    expect(await crashed.append(await crashed.prepare(taken, () => 'proxy'))).toEqual({ stored: first.length, duplicates: 0 });
    await crashed.close();

    // The next instance gets every message again (ack_wait passed): each event is stored already.
    service = await startAuditService({ loaded, logger: pino({ level: 'silent' }) });
    await waitUntil(() => service!.consumers()[0]!.handledEvents >= first.length, 20_000, 'the redelivered batch to be handled');
    expect(await service.store.countEvents()).toBe(first.length);

    // The connection that found only stored events is back in the pool, outside any transaction.
    const second = batchOf('second', 60);
    for (const event of second) publisher.publish(event);
    await publisher.flush();
    await waitUntil(async () => (await service!.store.countEvents()) >= first.length + second.length, 20_000, 'the next events');
    await waitUntil(() => service!.consumers()[0]!.pending === 0, 20_000, 'every message acknowledged');
    expect(await service.store.countEvents()).toBe(first.length + second.length);
    expect(await service.store.verify()).toMatchObject({ ok: true, events: first.length + second.length, sessions: 7 });
  });

  it('stores the messages a publisher sends a few milliseconds apart in one transaction (storeGatherMs)', async () => {
    await service?.stop();
    service = await startAuditService({ loaded, logger: pino({ level: 'silent' }), storeGatherMs: 1_000 });
    const stored = await service.store.countEvents();
    // Four NATS messages (one per flush), 20 ms apart, as a publisher's gathering windows send them.
    const gathered = batchOf('gathered', 4 * 30);
    for (let message = 0; message < 4; message += 1) {
      for (const event of gathered.slice(message * 30, (message + 1) * 30)) publisher.publish(event);
      await publisher.flush();
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await waitUntil(async () => (await service!.store.countEvents()) >= stored + gathered.length, 20_000, 'the gathered events');
    const db = new pg.Client({ connectionString: DB_URL });
    await db.connect();
    try {
      // Each row's xmin is the transaction that wrote it.
      const { rows } = await db.query<{ transactions: string }>('SELECT count(DISTINCT xmin::text) AS transactions FROM sluice.events WHERE id = ANY($1)', [gathered.map((event) => event.id)]);
      expect(Number(rows[0]!.transactions)).toBe(1);
    } finally {
      await db.end();
    }
    expect(await service.store.verify()).toMatchObject({ ok: true });
  });
});
