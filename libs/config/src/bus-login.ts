import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LoadedConfig } from './load.js';
import { KEYS_DIR_ENV } from './provenance.js';
import { requireSecret } from './secret.js';

/** What one service presents to NATS, its secrets read. */
export interface BusLogin {
  readonly credential?: { readonly nkeySeed: string } | { readonly user: string; readonly password: string };
  readonly tls?: { readonly ca?: string; readonly cert?: string; readonly key?: string };
}

const seedInKeysDir = (service: string, env: NodeJS.ProcessEnv): string | undefined => {
  const dir = env[KEYS_DIR_ENV];
  if (!dir) return undefined;
  try {
    return readFileSync(join(dir, `${service}.nk`), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
};

/**
 * The NATS login of `service` from `bus.credentials` and `bus.tls`; without a credential there,
 * the nkey seed `<service>.nk` in $SLUICE_KEYS_DIR when present (what `sluice up` generates). A
 * credential named in the config and missing fails the start: connecting anonymously instead
 * would hide the mistake. `siem` is the read-only role the console listens as: it has no entry
 * in `bus.credentials`, only the generated seed.
 */
export const resolveBusLogin = (loaded: LoadedConfig, service: 'proxy' | 'approval' | 'policy' | 'audit' | 'siem', env: NodeJS.ProcessEnv = process.env): BusLogin => {
  const { credentials, tls } = loaded.config.bus;
  const own = service === 'siem' ? undefined : credentials[service];
  const generated = own === undefined ? seedInKeysDir(service, env) : undefined;
  const credential =
    own === undefined
      ? generated === undefined
        ? undefined
        : { nkeySeed: generated }
      : 'nkey' in own
        ? { nkeySeed: requireSecret(own.nkey, loaded.dir).trim() }
        : { user: own.user, password: requireSecret(own.password, loaded.dir) };
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
