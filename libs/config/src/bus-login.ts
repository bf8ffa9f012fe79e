import type { LoadedConfig } from './load.js';
import { requireSecret } from './secret.js';

/** What one service presents to NATS, its secrets read. */
export interface BusLogin {
  readonly credential?: { readonly nkeySeed: string } | { readonly user: string; readonly password: string };
  readonly tls?: { readonly ca?: string; readonly cert?: string; readonly key?: string };
}

/**
 * The NATS login of `service` from `bus.credentials` and `bus.tls`. A credential named in the
 * config and missing fails the start: connecting anonymously instead would hide the mistake.
 */
export const resolveBusLogin = (loaded: LoadedConfig, service: 'proxy' | 'approval' | 'policy' | 'audit'): BusLogin => {
  const { credentials, tls } = loaded.config.bus;
  const own = credentials[service];
  const credential =
    own === undefined ? undefined : 'nkey' in own ? { nkeySeed: requireSecret(own.nkey, loaded.dir).trim() } : { user: own.user, password: requireSecret(own.password, loaded.dir) };
  const tlsFiles =
    tls === undefined
      ? undefined
      : {
          ...(tls.ca ? { ca: requireSecret(tls.ca, loaded.dir) } : {}),
          ...(tls.cert ? { cert: requireSecret(tls.cert, loaded.dir) } : {}),
          ...(tls.key ? { key: requireSecret(tls.key, loaded.dir) } : {}),
        };
  return { ...(credential ? { credential } : {}), ...(tlsFiles ? { tls: tlsFiles } : {}) };
};
