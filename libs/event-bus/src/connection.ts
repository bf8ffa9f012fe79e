import { connect, nkeyAuthenticator, usernamePasswordAuthenticator, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import { DependencyUnavailableError, SluiceErrorCode } from '@sluice/contracts';

export type { NatsConnection } from '@nats-io/transport-node';

/** A service's NATS login (see resolveBusLogin in @sluice/config). */
export interface BusAuth {
  readonly credential?: { readonly nkeySeed: string } | { readonly user: string; readonly password: string };
  /** PEM texts; present means TLS. */
  readonly tls?: { readonly ca?: string; readonly cert?: string; readonly key?: string };
}

/**
 * Replies to this connection's requests (JetStream acks, pulled messages) arrive under its own
 * inbox prefix, so the NATS permissions can give each service its own inboxes and nobody else's:
 * `_INBOX_<name>.>`.
 */
export const inboxPrefixFor = (name: string): string => `_INBOX_${name.replace(/[^A-Za-z0-9_-]/g, '_')}`;

/**
 * Connects to NATS and keeps reconnecting forever: a bus outage must not end a service.
 * `noAsyncTraces`: otherwise every request (each JetStream publish) builds an Error up front
 * for its stack, which showed in the proxy's CPU profile.
 */
export const connectBus = (url: string, name: string, auth: BusAuth = {}): Promise<NatsConnection> => {
  const credential = auth.credential;
  const options: ConnectionOptions = {
    servers: url.split(','),
    name: `sluice-${name}`,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    timeout: 5_000,
    noAsyncTraces: true,
    inboxPrefix: inboxPrefixFor(name),
    ...(credential === undefined
      ? {}
      : 'nkeySeed' in credential
        ? { authenticator: nkeyAuthenticator(new TextEncoder().encode(credential.nkeySeed)) }
        : { authenticator: usernamePasswordAuthenticator(credential.user, credential.password) }),
    ...(auth.tls === undefined ? {} : { tls: { ...auth.tls } }),
  };
  // The client's own message ("connection refused") names neither NATS nor the address: the first
  // thing a person without a bus sees, five times over, from every service.
  return connect(options).catch((error: unknown) => {
    const reason = error instanceof Error ? error.message : String(error);
    throw new DependencyUnavailableError(SluiceErrorCode.AuditUnavailable, `cannot connect to NATS at ${url} (bus.url, or NATS_URL): ${reason}`, { cause: error });
  });
};
