import type { NatsConnection } from '@nats-io/transport-node';
import { DeliverPolicy, jetstream, jetstreamManager, ReplayPolicy, type JsMsg } from '@nats-io/jetstream';
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

export interface ApprovalFollower {
  /** Messages read until the replay caught up with what the stream held at the start. */
  readonly replayed: number;
  stop(): Promise<void>;
}

/**
 * Feeds every stored approval event (`<prefix>.approval.>`) from the start of the stream to
 * `onEvent`, in order, resolves once the events that existed when it began are all read, and
 * then keeps feeding each new one (whichever instance stored it) until `stop`. An ordered
 * consumer: ephemeral, no acks, nothing left behind on the server, recreated by the client
 * where it left off after a reconnect to another node.
 */
export const followApprovalEvents = async (
  nc: NatsConnection,
  settings: ReplaySettings,
  onEvent: (event: CloudEvent) => void,
): Promise<ApprovalFollower> => {
  const filter = `${settings.subjectPrefix}.approval.>`;
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(settings.stream, { subjects_filter: filter });
  const stored = Object.values(info.state.subjects ?? {}).reduce((sum, count) => sum + count, 0);

  const consumer = await jetstream(nc).consumers.get(settings.stream, {
    // One subject as a string: NATS before 2.10 knows no filter_subjects list.
    filter_subjects: filter,
    deliver_policy: DeliverPolicy.All,
    replay_policy: ReplayPolicy.Instant,
  });
  const messages = await consumer.consume({ max_messages: 512 });
  const idleTimeoutMs = settings.idleTimeoutMs ?? 10_000;
  let count = 0;
  let replayed = stored === 0 ? 0 : undefined;
  let caughtUp!: () => void;
  const replayDone = new Promise<void>((resolve) => (caughtUp = resolve));
  if (replayed !== undefined) caughtUp();
  let idle: NodeJS.Timeout | undefined;
  const armIdle = (): void => {
    clearTimeout(idle);
    if (replayed === undefined) idle = setTimeout(() => void messages.close().then(caughtUp), idleTimeoutMs);
  };
  armIdle();
  const handle = (message: JsMsg): void => {
    const origin = settings.provenance?.checkMessage(message.data, message.headers);
    if (origin !== undefined && (!origin.genuine || origin.signer !== 'approval')) {
      settings.onRefused?.(origin.genuine ? `signed by ${origin.signer}` : origin.reason, message.seq);
      return;
    }
    for (const event of decodeEvents(message.data)) {
      const refused = origin?.genuine ? settings.provenance!.refuseEvent(origin.signer, event) : undefined;
      if (refused === undefined) onEvent(event);
      else settings.onRefused?.(refused, message.seq);
    }
  };
  const loop = (async () => {
    for await (const message of messages) {
      armIdle();
      try {
        handle(message);
      } catch (error) {
        settings.onRefused?.(`could not be read: ${error instanceof Error ? error.message : String(error)}`, message.seq);
      }
      count += 1;
      // pending counts what the stream held beyond this message when it was delivered.
      if (replayed === undefined && message.info.pending === 0) {
        replayed = count;
        clearTimeout(idle);
        caughtUp();
      }
    }
  })();
  await replayDone;
  if (replayed === undefined) {
    await loop.catch(() => undefined);
    throw new Error(`replay of ${filter} from ${settings.stream} stalled after ${count} of ${stored} messages`);
  }
  return {
    replayed,
    async stop() {
      await messages.close();
      await loop.catch(() => undefined);
    },
  };
};
