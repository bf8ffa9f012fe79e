import type { SluiceEventKind } from './events.js';

/** JetStream stream holding every Sluice event (configurable as `bus.stream`). */
export const DEFAULT_EVENTS_STREAM = 'SLUICE_EVENTS';
/** Subject prefix of every event (configurable as `bus.subjectPrefix`). */
export const DEFAULT_EVENTS_SUBJECT_PREFIX = 'sluice.events';

export const subjectWildcard = (prefix = DEFAULT_EVENTS_SUBJECT_PREFIX): string => `${prefix}.>`;

/** `<prefix>.<aggregate>.<verb>` for a single event. */
export const subjectForKind = (kind: SluiceEventKind, prefix = DEFAULT_EVENTS_SUBJECT_PREFIX): string => `${prefix}.${kind}`;

/**
 * Batches (a CloudEvents JSON array) from one publisher go on `<prefix>.batch.<source>`;
 * the source is a token such as `proxy`.
 */
export const subjectForBatch = (source: string, prefix = DEFAULT_EVENTS_SUBJECT_PREFIX): string => `${prefix}.batch.${source}`;

/** The stream of proxy leases (one message per subject), beside the events stream `stream`. */
export const leaseStreamName = (stream: string): string => `${stream}_LEASES`;
/** Proxy lease subjects: `<root>.<proxyId>.alive` and `<root>.<proxyId>.session.<sessionId>`. */
export const leaseSubjectRoot = (subjectPrefix: string): string => `leases.${subjectPrefix}`;
