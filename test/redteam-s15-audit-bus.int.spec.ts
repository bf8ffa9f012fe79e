import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nanos } from '@nats-io/transport-node';
import { AckPolicy, DeliverPolicy, jetstreamManager } from '@nats-io/jetstream';
import { buildEvent, type CloudEvent } from '@sluice/contracts';
import { eventStreamConfig, parseConfig, type LoadedConfig } from '@sluice/config';
import { connectBus, createMessageSigner, ensureEventStream, EventPublisher, type NatsConnection } from '@sluice/event-bus';
import { startAuditService, STORE_CONSUMER, type AuditService } from '@sluice/audit';
import { freePort } from './support/ports.js';
import { writeSigningKeys } from './support/signing-keys.js';
import { waitUntil } from './support/wait.js';

/*
 * Red team (session 15) of the audit path as scaled out: two audit instances share the durable
 * consumer and the store, and take the events of the same sessions interleaved, while one is
 * stopped and started again mid-load and the store's connections are terminated. Every event
 * published must be stored exactly once, every chain must verify, and nothing may stay unacked.
 */

const RUN = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
const DATABASE = `sluice_rt15_bus_${RUN}`;
const DB_URL = `postgres://postgres@127.0.0.1:5432/${DATABASE}`;
const STREAM = `RT15_AUDIT_BUS_${RUN}`;
const PREFIX = `rt15bus.${RUN}.events`;
const SESSIONS = 5;

const decided = (phase: string, index: number): CloudEvent =>
  buildEvent('command.decided', {
    id: `${RUN}-${phase}-${index}`,
    source: 'proxy',
    subject: `${RUN}-s${index % SESSIONS}`,
    time: new Date(),
    sessionseq: index,
    data: { commandId: `c${phase}${index}`, resource: 'shop-db', protocol: 'postgres', command: `SELECT ${index}`, action: 'read', risk: 'low', decision: 'allow', rule: 'r', reason: 'ok' },
  });

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('red team s15: two audit instances on one stream and one store', () => {
  let dir: string;
  const configs: LoadedConfig[] = [];
  let nc: NatsConnection;
  let publisher: EventPublisher;
  const services: (AuditService | undefined)[] = [undefined, undefined];
  let db: pg.Client;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-rt15-bus-'));
    const { signers, privateKeys } = writeSigningKeys(dir);
    for (let instance = 0; instance < 2; instance++) {
      const config = parseConfig({
        bus: { url: 'nats://127.0.0.1:4222', stream: STREAM, subjectPrefix: PREFIX },
        services: { audit: { http: `127.0.0.1:${await freePort()}` } },
        provenance: { signers },
      });
      configs.push({ config: { ...config, eventStore: { url: DB_URL } }, path: join(dir, 'sluice.yaml'), dir });
    }
    nc = await connectBus('nats://127.0.0.1:4222', 'rt15-bus');
    await ensureEventStream(nc, eventStreamConfig(configs[0]!.config));
    // Redelivery after 1 s rather than 30 s: a batch taken by an instance that stopped comes back soon.
    await (await jetstreamManager(nc)).consumers.add(STREAM, { durable_name: STORE_CONSUMER, ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, ack_wait: nanos(1_000) });
    publisher = new EventPublisher(nc, { source: 'proxy', subjectPrefix: PREFIX, maxBatchEvents: 25, signer: createMessageSigner('proxy', privateKeys.proxy!) });
    for (let instance = 0; instance < 2; instance++) services[instance] = await startAuditService({ loaded: configs[instance]!, logger: pino({ level: 'silent' }) });
    db = new pg.Client({ connectionString: DB_URL });
    await db.connect();
  });

  afterAll(async () => {
    for (const service of services) await service?.stop();
    await publisher?.close();
    await db?.end();
    await (await jetstreamManager(nc)).streams.delete(STREAM).catch(() => undefined);
    await nc?.drain();
    const admin = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres' });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`);
    await admin.end();
    rmSync(dir, { recursive: true, force: true });
  });

  it('stores every event once, every chain whole, through a restart of one instance and terminated store connections', async () => {
    const events = Array.from({ length: 3_000 }, (_, index) => decided('load', index));
    let kills = 0;
    for (let part = 0; part < 30; part++) {
      for (const event of events.slice(part * 100, (part + 1) * 100)) publisher.publish(event);
      await publisher.flush();
      if (part === 8) {
        // One instance stops mid-load (what it took and did not ack comes back) and starts again.
        await services[0]!.stop();
        services[0] = undefined;
      }
      if (part === 14) services[0] = await startAuditService({ loaded: configs[0]!, logger: pino({ level: 'silent' }) });
      if (part % 6 === 3) {
        const killed = await db.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [DATABASE]);
        kills += killed.rowCount ?? 0;
      }
      await sleep(15);
    }
    expect(kills).toBeGreaterThan(0);
    const stored = async () => Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM sluice.events WHERE id LIKE $1', [`${RUN}-load-%`])).rows[0]!.n);
    await waitUntil(async () => (await stored()) >= events.length, 60_000, 'every event stored');
    await waitUntil(() => services.every((service) => !service || service.consumers().every((consumer) => consumer.pending === 0)), 30_000, 'every message acknowledged');
    // Both instances stored some: the sessions' chains were appended to by both.
    const { rows } = await db.query<{ id: string; n: string }>('SELECT id, count(*) AS n FROM sluice.events WHERE id LIKE $1 GROUP BY id HAVING count(*) > 1', [`${RUN}-load-%`]);
    expect(rows).toEqual([]);
    expect(await stored()).toBe(events.length);
    expect(await services[1]!.store.verify()).toMatchObject({ ok: true, events: events.length, sessions: SESSIONS });
    const ids = (await db.query<{ id: string }>('SELECT id FROM sluice.events')).rows.map((row) => row.id).sort();
    expect(ids).toEqual(events.map((event) => event.id).sort());
  });
});
