import { buildEvent, EVENT_TYPE_PREFIX, type CloudEvent } from '@sluice/contracts';
import type { RejectedRecord } from '@sluice/event-store';

/** Alerts raised per batch at most; the rest are in the store and the log. */
const MAX_ALERTS_PER_BATCH = 100;

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
          reason: record.reason,
          natsSubject: record.natsSubject,
          streamSeq: record.streamSeq,
          ...(record.claimedSigner === undefined ? {} : { claimedSigner: record.claimedSigner }),
          ...(record.eventId === undefined ? {} : { eventId: record.eventId }),
          ...(record.eventType === undefined ? {} : { eventType: record.eventType }),
          ...(record.sessionId === undefined ? {} : { sessionId: record.sessionId }),
        },
      }),
    );
