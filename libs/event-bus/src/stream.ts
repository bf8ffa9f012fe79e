import { setTimeout as sleep } from 'node:timers/promises';
import { nanos, PermissionViolationError, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager, RetentionPolicy, StorageType, DiscardPolicy, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream';
import { DependencyUnavailableError, SluiceErrorCode, subjectWildcard } from '@sluice/contracts';
import { isJetStreamApiError, JetStreamErrorCode } from './jetstream-errors.js';

export interface EventStreamSettings {
  readonly stream: string;
  readonly subjectPrefix: string;
  readonly duplicateWindowMs: number;
  readonly maxAgeMs?: number;
  /** Copies on a NATS cluster; 1 when absent. */
  readonly replicas?: number;
}

/** How long a service that may not create the stream waits for the one that may (the audit service). */
const STREAM_WAIT_MS = 60_000;
const STREAM_POLL_MS = 500;

/**
 * Creates the events stream, or brings an existing one to these settings. A stream already so
 * is left alone: only the audit service's NATS user may create or update it, the publishers'
 * users may only look at it.
 */
export const ensureEventStream = async (nc: NatsConnection, settings: EventStreamSettings): Promise<void> => {
  const jsm = await jetstreamManager(nc);
  const wanted: Partial<StreamConfig> = {
    subjects: [subjectWildcard(settings.subjectPrefix)],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    duplicate_window: nanos(settings.duplicateWindowMs),
    max_age: settings.maxAgeMs ? nanos(settings.maxAgeMs) : 0,
    num_replicas: settings.replicas ?? 1,
  };
  try {
    const info = await jsm.streams.info(settings.stream);
    const current = info.config as unknown as Record<string, unknown>;
    const differs = Object.entries(wanted).some(([key, value]) => JSON.stringify(current[key] ?? 0) !== JSON.stringify(value ?? 0));
    if (differs) await jsm.streams.update(settings.stream, { ...info.config, ...wanted });
  } catch (error) {
    if (!isStreamNotFound(error)) throw error;
    try {
      await jsm.streams.add({ name: settings.stream, ...wanted });
    } catch (refused) {
      // A publisher's NATS user may only look at the stream: started before the audit service,
      // it waits for the stream rather than failing (and being restarted over and over).
      if (!isPermissionViolation(refused)) throw refused;
      await awaitStream(jsm, settings.stream, refused);
    }
  }
};

const awaitStream = async (jsm: JetStreamManager, stream: string, refused: Error): Promise<void> => {
  const deadline = Date.now() + STREAM_WAIT_MS;
  while (Date.now() < deadline) {
    await sleep(STREAM_POLL_MS);
    try {
      await jsm.streams.info(stream);
      return;
    } catch (error) {
      if (!isStreamNotFound(error)) throw error;
    }
  }
  throw new DependencyUnavailableError(SluiceErrorCode.AuditUnavailable, `stream ${stream} does not exist and this NATS user may not create it (the audit service creates it): ${refused.message}`, { cause: refused });
};

/** NATS reports a refused request as a RequestError caused by the PermissionViolationError. */
const isPermissionViolation = (error: unknown): error is Error =>
  error instanceof PermissionViolationError || (error instanceof Error && error.cause instanceof PermissionViolationError);

const isStreamNotFound = (error: unknown): boolean => isJetStreamApiError(error, JetStreamErrorCode.StreamNotFound);
