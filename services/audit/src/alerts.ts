import { buildEvent, EVENT_TYPE_PREFIX, type CloudEvent } from '@sluice/contracts';
import type { RejectedRecord } from '@sluice/event-store';

/** Alerts raised per batch at most; the rest are in the store and the log. */
const MAX_ALERTS_PER_BATCH = 100;
/** The refused record's fields are the forger's: an alert carries only so much of each. */
const MAX_FIELD = 256;
const short = (text: string): string => (text.length > MAX_FIELD ? `${text.slice(0, MAX_FIELD)}…` : text);

/**
 * One `event.rejected` alert per refused record, with an id derived from the record's key so a
 * retried batch raises it once. A refused alert raises none: otherwise an audit service without
 * its key would alert about its own alerts forever.
 */
export const alertsFor = (records: readonly RejectedRecord[], now: Date): CloudEvent<'event.rejected'>[] =>
  records
    .filter((record) => record.eventType !== `${EVENT_TYPE_PREFIX}event.rejected.v1` && record.eventType !== `${EVENT_TYPE_PREFIX}event.rejected`)
    .slice(0, MAX_ALERTS_PER_BATCH)
    .map((record) =>
      buildEvent('event.rejected', {
        id: `rejected:${record.key}`,
        source: 'sluice/audit',
        subject: 'audit',
        time: now,
        data: {
          reason: short(record.reason),
          natsSubject: short(record.natsSubject),
          streamSeq: record.streamSeq,
          ...(record.claimedSigner === undefined ? {} : { claimedSigner: short(record.claimedSigner) }),
          ...(record.eventId === undefined ? {} : { eventId: short(record.eventId) }),
          ...(record.eventType === undefined ? {} : { eventType: short(record.eventType) }),
          ...(record.sessionId === undefined ? {} : { sessionId: short(record.sessionId) }),
        },
      }),
    );
