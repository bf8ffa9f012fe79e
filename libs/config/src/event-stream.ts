import type { SluiceConfig } from './schema.js';

/** The events stream as the config describes it (what ensureEventStream in @sluice/event-bus takes). */
export interface EventStreamConfig {
  readonly stream: string;
  readonly subjectPrefix: string;
  readonly duplicateWindowMs: number;
  readonly maxAgeMs?: number;
  readonly replicas: number;
}

export const eventStreamConfig = (config: SluiceConfig): EventStreamConfig => ({
  stream: config.bus.stream,
  subjectPrefix: config.bus.subjectPrefix,
  duplicateWindowMs: config.audit.stream.duplicateWindow,
  ...(config.audit.stream.maxAge === undefined ? {} : { maxAgeMs: config.audit.stream.maxAge }),
  replicas: config.audit.stream.replicas,
});
