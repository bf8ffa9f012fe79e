import { createUser, fromSeed } from '@nats-io/nkeys';
import { leaseStreamName, leaseSubjectRoot } from '@sluice/contracts';
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
/** The audit service's durable consumer that feeds one SIEM exporter (NATS durable names allow [A-Za-z0-9_-]). */
export const exporterDurableName = (exporter: { readonly name?: string | undefined }, index: number): string =>
  `audit-export-${(exporter.name ?? String(index)).replace(/[^A-Za-z0-9_-]/g, '_')}`;

/** Every durable consumer the audit service reads through: the store's and one per exporter. */
export const auditDurableNames = (exporters: readonly { readonly name?: string | undefined }[]): string[] => [
  'audit-store',
  ...exporters.map(exporterDurableName),
];

export const busPermissions = (role: BusRole, stream: string, prefix: string, auditDurables: readonly string[] = ['audit-store']): BusPermissions => {
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
        publish: {
          allow: [
            ...lookAtStream,
            `${prefix}.batch.proxy`,
            `${prefix}.session.>`,
            `${prefix}.command.>`,
            `${prefix}.result.>`,
            // Proxy leases: renew its own, mark its sessions, look at and claim the others'.
            `${leaseSubjectRoot(prefix)}.>`,
            `$JS.API.STREAM.INFO.${leaseStreamName(stream)}`,
            `$JS.API.STREAM.CREATE.${leaseStreamName(stream)}`,
            `$JS.API.STREAM.MSG.GET.${leaseStreamName(stream)}`,
          ],
        },
        subscribe: { allow: inbox },
      };
    case 'policy':
      return {
        publish: {
          allow: [
            ...lookAtStream,
            `${prefix}.batch.policy`,
            `${prefix}.policy.>`,
            // Following policy.changed (a reload on another instance): an ephemeral consumer filtered to it.
            `$JS.API.CONSUMER.CREATE.${stream}.*.${prefix}.policy.changed`,
            `$JS.API.CONSUMER.MSG.NEXT.${stream}.*`,
            `$JS.API.CONSUMER.INFO.${stream}.*`,
            `$JS.API.CONSUMER.DELETE.${stream}.*`,
          ],
        },
        subscribe: { allow: inbox },
      };
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
          // Every audit durable, not only the store's: a reader pulling and acking an exporter's
          // messages (or creating its consumer first, with a filter of its choosing) would keep
          // events from that SIEM. NATS wildcards match whole tokens, so each name is listed.
          deny: [
            `$JS.API.CONSUMER.DELETE.${stream}.>`,
            ...auditDurables.flatMap((durable) => [
              `$JS.API.CONSUMER.*.${stream}.${durable}`,
              `$JS.API.CONSUMER.*.${stream}.${durable}.>`,
              `$JS.API.CONSUMER.DURABLE.CREATE.${stream}.${durable}`,
              `$JS.API.CONSUMER.MSG.NEXT.${stream}.${durable}`,
              `$JS.ACK.${stream}.${durable}.>`,
            ]),
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
export const natsAuthorizationConfig = (users: readonly BusUser[], stream: string, prefix: string, auditDurables?: readonly string[]): string => {
  const lines = ['authorization {', '  users = ['];
  for (const user of users) {
    const permissions = busPermissions(user.role, stream, prefix, auditDurables);
    const login = 'nkey' in user ? `nkey: ${quote(user.nkey)}` : `user: ${quote(user.user)}, password: ${quote(user.password)}`;
    const deny = permissions.publish.deny ? `, deny: ${list(permissions.publish.deny)}` : '';
    lines.push(`    # ${user.role}`);
    lines.push(`    { ${login}, permissions: { publish: { allow: ${list(permissions.publish.allow)}${deny} }, subscribe: { allow: ${list(permissions.subscribe.allow)} } } }`);
  }
  lines.push('  ]', '}');
  return `${lines.join('\n')}\n`;
};
