import type { NatsConnection } from '@nats-io/transport-node';
import { DeliverPolicy, jetstream, ReplayPolicy } from '@nats-io/jetstream';
import { kindOfType, subjectForKind } from '@sluice/contracts';
import { decodeEvents, type ProvenanceVerifier } from '@sluice/event-bus';

export interface PolicyChangeFollower {
  stop(): Promise<void>;
}

/**
 * Hands `onVersion` the version of the last `policy.changed` on the stream, then of each new one,
 * whichever policy instance published it: that is how a reload on one instance reaches all. With
 * `provenance`, only what the policy service signed counts. An ordered consumer: ephemeral,
 * nothing left on the server, recreated by the client after a reconnect to another node.
 */
export const followPolicyChanges = async (
  nc: NatsConnection,
  settings: { readonly stream: string; readonly subjectPrefix: string; readonly provenance?: ProvenanceVerifier },
  onVersion: (version: number) => void,
  onRefused: (reason: string) => void,
): Promise<PolicyChangeFollower> => {
  const consumer = await jetstream(nc).consumers.get(settings.stream, {
    filter_subjects: subjectForKind('policy.changed', settings.subjectPrefix),
    deliver_policy: DeliverPolicy.Last,
    replay_policy: ReplayPolicy.Instant,
  });
  const messages = await consumer.consume({ max_messages: 16 });
  const loop = (async () => {
    for await (const message of messages) {
      const origin = settings.provenance?.checkMessage(message.data, message.headers);
      if (origin !== undefined && (!origin.genuine || origin.signer !== 'policy')) {
        onRefused(origin.genuine ? `signed by ${origin.signer}` : origin.reason);
        continue;
      }
      try {
        for (const event of decodeEvents(message.data)) {
          const version = (event.data as { version?: unknown } | undefined)?.version;
          if (kindOfType(event.type) === 'policy.changed' && typeof version === 'number' && Number.isSafeInteger(version)) onVersion(version);
        }
      } catch (error) {
        onRefused(error instanceof Error ? error.message : String(error));
      }
    }
  })();
  return {
    async stop() {
      await messages.close();
      await loop.catch(() => undefined);
    },
  };
};
