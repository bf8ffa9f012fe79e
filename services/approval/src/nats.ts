import type { NatsConnection } from '@nats-io/transport-node';
import { DeliverPolicy, jetstream, jetstreamManager, ReplayPolicy } from '@nats-io/jetstream';
import { decodeEvents, type ProvenanceVerifier } from '@sluice/event-bus';
import type { CloudEvent } from '@sluice/contracts';

export interface ReplaySettings {
  readonly stream: string;
  readonly subjectPrefix: string;
  /** Gives up when the stream does not deliver for this long (a broken bus fails the start). */
  readonly idleTimeoutMs?: number;
  /** When given, a message not signed by the approval service (or an event it may not vouch for) is skipped. */
  readonly provenance?: ProvenanceVerifier;
  readonly onRefused?: (reason: string, seq: number) => void;
}

/**
 * Feeds every stored approval event (`<prefix>.approval.>`) from the start of the stream to
 * `onEvent`, in order, and resolves once the events that existed when it began are all read.
 * An ordered consumer: ephemeral, no acks, nothing left behind on the server.
 */
export const replayApprovalEvents = async (
  nc: NatsConnection,
  settings: ReplaySettings,
  onEvent: (event: CloudEvent) => void,
): Promise<number> => {
  const filter = `${settings.subjectPrefix}.approval.>`;
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(settings.stream, { subjects_filter: filter });
  const stored = Object.values(info.state.subjects ?? {}).reduce((sum, count) => sum + count, 0);
  if (stored === 0) return 0;

  const consumer = await jetstream(nc).consumers.get(settings.stream, {
    // One subject as a string: NATS before 2.10 knows no filter_subjects list.
    filter_subjects: filter,
    deliver_policy: DeliverPolicy.All,
    replay_policy: ReplayPolicy.Instant,
  });
  const messages = await consumer.consume({ max_messages: 512 });
  const idleTimeoutMs = settings.idleTimeoutMs ?? 10_000;
  let idle: NodeJS.Timeout | undefined;
  const armIdle = (): void => {
    clearTimeout(idle);
    idle = setTimeout(() => void messages.close(), idleTimeoutMs);
  };
  let count = 0;
  let caughtUp = false;
  armIdle();
  try {
    for await (const message of messages) {
      armIdle();
      const origin = settings.provenance?.checkMessage(message.data, message.headers);
      if (origin !== undefined && (!origin.genuine || origin.signer !== 'approval')) {
        settings.onRefused?.(origin.genuine ? `signed by ${origin.signer}` : origin.reason, message.seq);
      } else {
        for (const event of decodeEvents(message.data)) {
          const refused = origin?.genuine ? settings.provenance!.refuseEvent(origin.signer, event) : undefined;
          if (refused === undefined) onEvent(event);
          else settings.onRefused?.(refused, message.seq);
        }
      }
      count += 1;
      // pending counts what the stream held beyond this message when it was delivered.
      if (message.info.pending === 0) {
        caughtUp = true;
        break;
      }
    }
  } finally {
    clearTimeout(idle);
    await messages.close();
  }
  if (!caughtUp) throw new Error(`replay of ${filter} from ${settings.stream} stalled after ${count} of ${stored} messages`);
  return count;
};
