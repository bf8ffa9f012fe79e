import { DiscardPolicy, jetstream, jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { nanos, type NatsConnection } from '@nats-io/transport-node';
import { buildEvent, leaseStreamName, leaseSubjectRoot, type SluiceEventDataByKind, type SluiceEventKind } from '@sluice/contracts';
import { timeOrderedId, type EventPublisher } from '@sluice/event-bus';
import type { Logger } from '@sluice/service-runtime';
import type { AuditPort, BacklogHold } from './ports.js';

/**
 * Proxy leases: each proxy renews `leases.<prefix>.<proxyId>.alive` every `renewMs` and keeps a
 * marker per open session (`leases.<prefix>.<proxyId>.session.<sessionId>`, emptied when the session
 * ends) in a small JetStream stream holding the last message of each subject. Every proxy looks
 * at the others' leases every `sweepMs`; one not renewed for `lapseMs` (by the server's clock) is
 * claimed by exactly one proxy (a publish that expects the lease's last sequence), which then
 * records `session.ended` with reason "proxy lost" for each session still marked open. So a proxy
 * killed with SIGKILL has its sessions closed in the record within lapseMs + sweepMs (13 s by
 * default), provided another proxy of the deployment runs (or this one is restarted).
 */
export interface LeaseSettings {
  readonly stream: string;
  readonly subjectPrefix: string;
  readonly replicas: number;
  readonly renewMs?: number;
  readonly lapseMs?: number;
  readonly sweepMs?: number;
}

export const LEASE_DEFAULTS = { renewMs: 2_000, lapseMs: 10_000, sweepMs: 3_000 };

/** Open sessions older than this lose their marker (the stream's max_age); a week. */
const MARKER_MAX_AGE_MS = 7 * 24 * 3_600_000;
const LOST = 'lost';

interface SessionMarker {
  readonly resource: string;
  readonly startedAt: string;
}

export interface ProxyLease {
  readonly proxyId: string;
  /** The audit port with session starts and ends marked in the lease. */
  wrap(audit: AuditPort): AuditPort;
  stop(): Promise<void>;
}

export const startProxyLease = async (nc: NatsConnection, publisher: EventPublisher, logger: Logger, settings: LeaseSettings): Promise<ProxyLease> => {
  const { renewMs, lapseMs, sweepMs } = { ...LEASE_DEFAULTS, ...settings };
  const proxyId = timeOrderedId();
  const name = leaseStreamName(settings.stream);
  const root = leaseSubjectRoot(settings.subjectPrefix);
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  try {
    await jsm.streams.info(name);
  } catch {
    await jsm.streams
      .add({
        name,
        subjects: [`${root}.>`],
        storage: StorageType.File,
        retention: RetentionPolicy.Limits,
        discard: DiscardPolicy.Old,
        max_msgs_per_subject: 1,
        max_age: nanos(MARKER_MAX_AGE_MS),
        num_replicas: settings.replicas,
      })
      .catch((error: unknown) => {
        // Another proxy made it meanwhile.
        if (!/already in use/i.test(String(error))) throw error;
      });
  }
  const encode = (value: unknown): Uint8Array => new TextEncoder().encode(value === undefined ? '' : JSON.stringify(value));
  const mark = (subject: string, value: unknown): void => {
    js.publish(subject, encode(value)).catch((error: unknown) => logger.warn({ err: error, subject }, 'proxy lease not updated'));
  };
  const renew = (): void => mark(`${root}.${proxyId}.alive`, { at: new Date().toISOString() });
  renew();
  const renewal = setInterval(renew, renewMs);
  renewal.unref();

  const subjectsMatching = async (filter: string): Promise<string[]> => {
    const info = await jsm.streams.info(name, { subjects_filter: filter });
    return Object.keys(info.state.subjects ?? {});
  };

  /** Records session.ended for every session the lost proxy left open, then empties its markers. */
  const closeSessionsOf = async (lostId: string): Promise<number> => {
    let closed = 0;
    for (const subject of await subjectsMatching(`${root}.${lostId}.session.*`)) {
      const message = await jsm.streams.getMessage(name, { last_by_subj: subject }).catch(() => null);
      if (!message || message.data.length === 0) continue;
      const marker = message.json<SessionMarker>();
      const sessionId = subject.slice(subject.lastIndexOf('.') + 1);
      const now = new Date();
      publisher.publish(
        buildEvent('session.ended', {
          id: timeOrderedId(),
          source: 'sluice/proxy',
          subject: sessionId,
          time: now,
          data: {
            resource: marker.resource,
            reason: `proxy lost: proxy ${lostId} stopped renewing its lease; commands are counted from the session's command events`,
            commands: 0,
            durationMs: Math.max(0, now.getTime() - Date.parse(marker.startedAt)),
          },
        }),
      );
      closed += 1;
      await publisher.flush();
      await js.publish(subject, new Uint8Array());
    }
    return closed;
  };

  const sweep = async (): Promise<void> => {
    for (const subject of await subjectsMatching(`${root}.*.alive`)) {
      const otherId = subject.slice(root.length + 1, -'.alive'.length);
      if (otherId === proxyId) continue;
      const lease = await jsm.streams.getMessage(name, { last_by_subj: subject }).catch(() => null);
      if (!lease || lease.string() === LOST || Date.now() - lease.time.getTime() < lapseMs) continue;
      // One claimant: the publish holds only while the lease is still the one we saw.
      const claimed = await js.publish(subject, new TextEncoder().encode(LOST), { expect: { lastSubjectSequence: lease.seq } }).then(
        () => true,
        () => false,
      );
      if (!claimed) continue;
      const closed = await closeSessionsOf(otherId);
      logger.warn({ lostProxy: otherId, sessions: closed }, 'a proxy stopped renewing its lease; its open sessions are recorded as ended');
    }
  };
  let sweeping: Promise<void> = Promise.resolve();
  const sweeper = setInterval(() => {
    sweeping = sweeping.then(sweep).catch((error: unknown) => logger.warn({ err: error }, 'proxy lease sweep failed; retrying'));
  }, sweepMs);
  sweeper.unref();

  return {
    proxyId,
    wrap(audit) {
      return {
        record<K extends SluiceEventKind>(sessionId: string, kind: K, data: SluiceEventDataByKind[K]): void {
          if (kind === 'session.started') {
            mark(`${root}.${proxyId}.session.${sessionId}`, { resource: (data as SluiceEventDataByKind['session.started']).resource, startedAt: new Date().toISOString() } satisfies SessionMarker);
            audit.record(sessionId, kind, data);
          } else if (kind === 'session.ended') {
            audit.record(sessionId, kind, data);
            // Unmarked only once the bus has the session.ended: killed before, the session is
            // closed by another proxy (a second session.ended at worst, never none).
            void publisher.flush().then(() => mark(`${root}.${proxyId}.session.${sessionId}`, undefined));
          } else audit.record(sessionId, kind, data);
        },
        get healthy() {
          return audit.healthy;
        },
        // A resource with audit.wait ack waits through the lease's port too.
        ...(audit.acknowledged ? { acknowledged: (sessionId: string) => audit.acknowledged!(sessionId) } : {}),
        ...(audit.backlogged ? { backlogged: (sessionId: string, resume: (outage: boolean) => void, hold?: BacklogHold) => audit.backlogged!(sessionId, resume, hold) } : {}),
        ...(audit.coming ? { coming: (sessionId: string, events: number) => audit.coming!(sessionId, events) } : {}),
      };
    },
    /** After the sessions ended (and were recorded): gone on purpose, nothing for others to close. */
    async stop() {
      clearInterval(renewal);
      clearInterval(sweeper);
      await sweeping;
      await js.publish(`${root}.${proxyId}.alive`, new TextEncoder().encode(LOST)).catch(() => undefined);
    },
  };
};
