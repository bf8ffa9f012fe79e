import { createUser, fromSeed } from '@nats-io/nkeys';
import { inboxPrefixFor } from './connection.js';

/** A new NATS user nkey seed (`SU…`): the secret a service logs in with. */
export const generateBusUserSeed = (): string => new TextDecoder().decode(createUser().getSeed());

/** The public nkey (`U…`) of a seed: what the server's configuration names. */
export const busUserPublicKey = (seed: string): string => fromSeed(new TextEncoder().encode(seed.trim())).getPublicKey();

/** Who logs in to NATS: the four services that use the bus, and a read-only SIEM reader. */
export const BUS_ROLES = ['proxy', 'approval', 'policy', 'audit', 'siem'] as const;
export type BusRole = (typeof BUS_ROLES)[number];

export interface BusPermissions {
  readonly publish: { readonly allow: readonly string[]; readonly deny?: readonly string[] };
  readonly subscribe: { readonly allow: readonly string[] };
}

/**
 * The subjects each role may publish and subscribe to: a service publishes only its own events
 * (`<prefix>.<its aggregates>.>` and its own batch subject), reads only replies to itself (its own
 * inbox prefix), and touches JetStream only as far as its job needs. Only the audit service
 * creates or changes the stream and its durable consumers; the SIEM reader may read the stream
 * through consumers of its own but never publish an event or take the audit service's messages.
 * @see https://docs.nats.io/running-a-nats-service/configuration/securing_nats/authorization
 */
export const busPermissions = (role: BusRole, stream: string, prefix: string): BusPermissions => {
  const inbox = [`${inboxPrefixFor(role)}.>`];
  const lookAtStream = ['$JS.API.INFO', `$JS.API.STREAM.INFO.${stream}`];
  const readConsumers = [
    `$JS.API.CONSUMER.*.${stream}`,
    `$JS.API.CONSUMER.*.${stream}.>`,
    `$JS.API.CONSUMER.DURABLE.CREATE.${stream}.>`,
    `$JS.API.CONSUMER.MSG.NEXT.${stream}.>`,
    `$JS.ACK.${stream}.>`,
  ];
  switch (role) {
    case 'proxy':
      return {
        publish: { allow: [...lookAtStream, `${prefix}.batch.proxy`, `${prefix}.session.>`, `${prefix}.command.>`, `${prefix}.result.>`] },
        subscribe: { allow: inbox },
      };
    case 'policy':
      return { publish: { allow: [...lookAtStream, `${prefix}.batch.policy`, `${prefix}.policy.>`] }, subscribe: { allow: inbox } };
    case 'approval':
      return {
        publish: {
          allow: [
            ...lookAtStream,
            `${prefix}.batch.approval`,
            `${prefix}.approval.>`,
            // Rebuilding approvals on start: an ephemeral consumer filtered to approval events.
            `$JS.API.CONSUMER.CREATE.${stream}.*.${prefix}.approval.>`,
            `$JS.API.CONSUMER.MSG.NEXT.${stream}.*`,
            `$JS.API.CONSUMER.INFO.${stream}.*`,
            `$JS.API.CONSUMER.DELETE.${stream}.*`,
          ],
        },
        subscribe: { allow: inbox },
      };
    case 'audit':
      return {
        publish: {
          allow: [
            ...lookAtStream,
            `$JS.API.STREAM.CREATE.${stream}`,
            `$JS.API.STREAM.UPDATE.${stream}`,
            ...readConsumers,
            `${prefix}.batch.audit`,
            `${prefix}.event.>`,
          ],
        },
        subscribe: { allow: inbox },
      };
    case 'siem':
      return {
        publish: {
          allow: [...lookAtStream, ...readConsumers],
          // Reading is all: never delete a consumer, never pull or ack the audit store's messages.
          deny: [
            `$JS.API.CONSUMER.DELETE.${stream}.>`,
            `$JS.API.CONSUMER.*.${stream}.audit-store`,
            `$JS.API.CONSUMER.*.${stream}.audit-store.>`,
            `$JS.API.CONSUMER.DURABLE.CREATE.${stream}.audit-store`,
            `$JS.API.CONSUMER.MSG.NEXT.${stream}.audit-store`,
            `$JS.ACK.${stream}.audit-store.>`,
          ],
        },
        subscribe: { allow: [...inbox, `${prefix}.>`] },
      };
    default: {
      const unreachable: never = role;
      throw new Error(`unknown bus role ${String(unreachable)}`);
    }
  }
};

export type BusUser = { readonly role: BusRole; readonly nkey: string } | { readonly role: BusRole; readonly user: string; readonly password: string };

const quote = (text: string): string => JSON.stringify(text);
const list = (items: readonly string[]): string => `[${items.map(quote).join(', ')}]`;

/**
 * The `authorization` block of a nats-server configuration giving each user its role's
 * permissions. With no anonymous user in it, a client without credentials cannot connect.
 */
export const natsAuthorizationConfig = (users: readonly BusUser[], stream: string, prefix: string): string => {
  const lines = ['authorization {', '  users = ['];
  for (const user of users) {
    const permissions = busPermissions(user.role, stream, prefix);
    const login = 'nkey' in user ? `nkey: ${quote(user.nkey)}` : `user: ${quote(user.user)}, password: ${quote(user.password)}`;
    const deny = permissions.publish.deny ? `, deny: ${list(permissions.publish.deny)}` : '';
    lines.push(`    # ${user.role}`);
    lines.push(`    { ${login}, permissions: { publish: { allow: ${list(permissions.publish.allow)}${deny} }, subscribe: { allow: ${list(permissions.subscribe.allow)} } } }`);
  }
  lines.push('  ]', '}');
  return `${lines.join('\n')}\n`;
};
