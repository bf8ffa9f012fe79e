import { randomUUID } from 'node:crypto';
import { buildEvent, type SluiceEventDataByKind, type SluiceEventKind } from '@sluice/contracts';
import type { EventPublisher } from '@sluice/event-bus';
import type { AuditPort } from './ports.js';
import { boundEventData, type RecordingBounds } from './recording.js';

/**
 * Turns session actions into CloudEvents with a per-session sequence and hands them to the
 * batching publisher; nothing here waits for the bus. What an agent controls (command texts,
 * results) is cut to the recording bounds first, so one agent's large statement or row makes a
 * truncated record, never an event the bus refuses.
 */
export const createAuditPort = (
  publisher: EventPublisher,
  options: { source: string; recording: RecordingBounds; now?: () => Date },
): AuditPort => {
  const sequences = new Map<string, number>();
  const now = options.now ?? (() => new Date());
  return {
    record<K extends SluiceEventKind>(sessionId: string, kind: K, data: SluiceEventDataByKind[K]): void {
      const sessionseq = (sequences.get(sessionId) ?? 0) + 1;
      if (kind === 'session.ended' || kind === 'session.rejected') sequences.delete(sessionId);
      else sequences.set(sessionId, sessionseq);
      const bounded = boundEventData(kind, data, options.recording);
      publisher.publish(buildEvent(kind, { id: randomUUID(), source: options.source, subject: sessionId, time: now(), sessionseq, data: bounded }));
    },
    get healthy() {
      return publisher.healthy;
    },
  };
};
