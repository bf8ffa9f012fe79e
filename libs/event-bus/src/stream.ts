import { nanos, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager, RetentionPolicy, StorageType, DiscardPolicy, type StreamConfig } from '@nats-io/jetstream';
import { subjectWildcard } from '@sluice/contracts';
import { isJetStreamApiError, JetStreamErrorCode } from './jetstream-errors.js';

export interface EventStreamSettings {
  readonly stream: string;
  readonly subjectPrefix: string;
  readonly duplicateWindowMs: number;
  readonly maxAgeMs?: number;
  /** Copies on a NATS cluster; 1 when absent. */
  readonly replicas?: number;
}

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
    await jsm.streams.add({ name: settings.stream, ...wanted });
  }
};

const isStreamNotFound = (error: unknown): boolean => isJetStreamApiError(error, JetStreamErrorCode.StreamNotFound);
