import type { Server } from 'node:http';
import { eventStreamConfig, formatAddress, parseAddress, resolveBusLogin, resolveProvenanceKeys, type LoadedConfig } from '@sluice/config';
import { connectBus, createMessageSigner, createProvenanceVerifier, ensureEventStream, EventPublisher, exporterDurableName, type NatsConnection } from '@sluice/event-bus';
import { openEventStore, readWrittenEvents, type EventStore } from '@sluice/event-store';
import { createTokenVerifier, type TokenVerifier } from '@sluice/identity';
import { readApiTls } from '@sluice/service-runtime';
import { alertsFor } from './alerts.js';
import { DurableConsumer, type ConsumerLogger, type ConsumerState } from './consumer.js';
import { createExporter, type Exporter } from './exporters.js';
import { startAuditApi } from './http-api.js';

export interface AuditServiceLogger extends ConsumerLogger {
  child?(bindings: object): AuditServiceLogger;
}

export interface AuditServiceOptions {
  readonly loaded: LoadedConfig;
  readonly logger: AuditServiceLogger;
  /** Messages per stored batch (each may hold a batch of events). */
  readonly batchMessages?: number;
  /** How long a stored batch may wait for more messages (see DurableConsumerSettings.gatherMs). */
  readonly storeGatherMs?: number;
  /** Verifies the audit API's bearer tokens; by default against `identity.oidc`. */
  readonly identity?: TokenVerifier;
}

export interface AuditService {
  /** Where the HTTP API listens (the real port when the config said 0). */
  readonly httpAddress: string;
  readonly store: EventStore;
  /** Messages not yet handled, per consumer (`audit-store`, `audit-export-…`): exporter lag. */
  lag(): Record<string, number>;
  consumers(): readonly ConsumerState[];
  stop(): Promise<void>;
}

export const STORE_CONSUMER = 'audit-store';

/**
 * A publisher sends one message per gathering window (the proxy's 25 ms): a store transaction
 * waits up to this long for the next few, so it carries several, not one. Its fixed cost (locks,
 * chain heads, the COPY's setup, the commit's WAL flush: ~1 ms of the database's CPU and as much
 * of the audit service's) is then shared by a few hundred events rather than a few dozen.
 */
export const STORE_GATHER_MS = 100;

/**
 * The audit service: keeps the event stream, stores every event once (hash-chained) through the
 * `audit-store` durable consumer, feeds each SIEM exporter from its own durable consumer, and
 * serves the audit HTTP API.
 */
export const startAuditService = async ({ loaded, logger, batchMessages = 200, storeGatherMs = STORE_GATHER_MS, identity }: AuditServiceOptions): Promise<AuditService> => {
  const { config } = loaded;
  const cleanup: Array<() => Promise<unknown>> = [];
  const unwind = async (): Promise<void> => {
    for (const step of cleanup.reverse()) await step().catch(() => undefined);
  };
  // Read before anything opens: a bad certificate is a config error, never a plain-HTTP fallback.
  const httpTls = readApiTls(config.services.audit.tls, loaded.dir, 'services.audit.tls');
  try {
    const store = await openEventStore({ url: config.eventStore.url, path: config.eventStore.path, logger });
    cleanup.push(() => store.close());
    const nc: NatsConnection = await connectBus(config.bus.url, 'audit', resolveBusLogin(loaded, 'audit'));
    cleanup.push(() => nc.drain());
    await ensureEventStream(nc, eventStreamConfig(config));

    // Provenance: only what a Sluice service provably signed is stored as genuine (and only the
    // kinds that service may publish); the rest is kept apart as rejected, with an alert event.
    const keys = resolveProvenanceKeys(loaded, 'audit');
    if (Object.keys(keys.publicKeysPem).length === 0) logger.warn({}, 'no provenance keys configured: every event is refused as unsigned');
    const provenance = createProvenanceVerifier(keys.publicKeysPem);
    const alerts = new EventPublisher(nc, {
      source: 'audit',
      subjectPrefix: config.bus.subjectPrefix,
      ...(keys.privateKeyPem === undefined ? {} : { signer: createMessageSigner('audit', keys.privateKeyPem) }),
    });
    cleanup.push(() => alerts.close());

    const consumers: Array<Pick<DurableConsumer<unknown>, 'state'>> = [];
    const storeConsumer = new DurableConsumer(nc, {
      stream: config.bus.stream,
      durable: STORE_CONSUMER,
      batchMessages,
      gatherMs: storeGatherMs,
      logger,
      provenance,
      // Events as Sluice's publishers write them are stored from their bytes, not parsed and written again.
      readWritten: readWrittenEvents,
      // Normalising and canonicalising the next batch overlaps the INSERT of this one.
      prepare: (events, signerOf) => store.prepare(events, signerOf),
      // An event PostgreSQL refuses on its own is refused like the events the consumer refuses,
      // not retried with its batch for ever (which stored nothing behind it).
      handle: async (batch) => ({ refused: (await store.appendStorable(batch)).refused }),
      onRejected: async (records) => {
        await store.reject(records);
        for (const alert of alertsFor(records, new Date())) await alerts.publishNow(alert);
        const { key, reason, claimedSigner, eventId, natsSubject } = records[0]!;
        logger.error({ rejected: records.length, first: { key, reason, claimedSigner, eventId, natsSubject } }, 'events refused; kept in sluice.rejected_events');
      },
    });
    await storeConsumer.start();
    consumers.push(storeConsumer);
    cleanup.push(() => storeConsumer.stop());

    const exporters: Exporter[] = config.audit.exporters.map((exporter, index) => createExporter(exporter, index, loaded.dir));
    for (const [index, exporter] of exporters.entries()) {
      const settings = config.audit.exporters[index]!;
      const consumer = new DurableConsumer(nc, {
        stream: config.bus.stream,
        // The same name `sluice keys` keeps the SIEM reader's login away from.
        durable: exporterDurableName(settings, index),
        // One message may hold hundreds of events; keep SIEM posts reasonably small.
        batchMessages: Math.max(1, Math.ceil(settings.batchSize / 50)),
        logger,
        // A SIEM gets only genuine events too; the refused ones reach it as the audit service's alerts.
        provenance,
        handle: (events) => exporter.send(events),
      });
      await consumer.start();
      consumers.push(consumer);
      cleanup.push(async () => {
        await consumer.stop();
        await exporter.close();
      });
    }

    const listen = parseAddress(config.services.audit.http)!;
    const verifier = identity ?? createTokenVerifier(config.identity.oidc);
    const readers = config.audit.readers;
    if (readers.groups.length === 0 && readers.subs.length === 0) logger.warn({}, 'audit.readers is empty: the audit API refuses everyone');
    const { server, address } = await startAuditApi(
      { store, consumers: () => consumers.map((consumer) => consumer.state()), verifier, readers },
      listen.host,
      listen.port,
      httpTls,
    );
    cleanup.push(() => closeServer(server));
    const httpAddress = formatAddress({ host: address.address, port: address.port });
    logger.info({ http: httpAddress, tls: httpTls !== undefined, exporters: exporters.map((exporter) => exporter.name) }, 'audit service listening');

    return {
      httpAddress,
      store,
      consumers: () => consumers.map((consumer) => consumer.state()),
      lag: () => Object.fromEntries(consumers.map((consumer) => [consumer.state().durable, consumer.state().pending])),
      stop: unwind,
    };
  } catch (error) {
    await unwind();
    throw error;
  }
};

const closeServer = (server: Server): Promise<void> =>
  new Promise((resolveClose) => {
    server.close(() => resolveClose());
    server.closeIdleConnections();
  });
