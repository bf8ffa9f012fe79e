import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigInvalidError } from '@sluice/contracts';
import type { LoadedConfig } from './load.js';
import { KEYS_DIR_ENV } from './provenance.js';
import { requireSecret } from './secret.js';

/**
 * Who takes part in the deployment's gRPC: the three services that serve it, the proxy that calls
 * them, and `operator` (the CLI asking the policy service to reload). Each generated certificate
 * names its peer as its DNS name, and a client checks that name, not the address it dialled.
 */
export const GRPC_PEERS = ['proxy', 'policy', 'masking', 'approval', 'operator'] as const;
export type GrpcPeer = (typeof GRPC_PEERS)[number];

/** Folder under the keys folder holding the generated CA and certificates (`sluice keys`). */
export const GRPC_TLS_DIR = 'tls';

export interface ServiceTls {
  /** PEM of the CA every peer's certificate must chain to: the only one trusted. */
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
  /** `config` (services.tls) or `generated` (the keys folder). */
  readonly source: 'config' | 'generated';
}

/** The generated material of `self` in the keys folder `dir` (`tls/`); a missing file is a config error. */
export const readGeneratedServiceTls = (dir: string, self: GrpcPeer): ServiceTls => {
  const folder = join(dir, GRPC_TLS_DIR);
  const read = (file: string): string => {
    try {
      return readFileSync(join(folder, file), 'utf8');
    } catch {
      throw new ConfigInvalidError('services.tls', `a CA and a certificate for ${self} (${join(folder, file)} is missing: \`sluice keys\` or \`sluice up\` makes them)`);
    }
  };
  return { ca: read('ca.crt'), cert: read(`${self}.crt`), key: read(`${self}.key`), source: 'generated' };
};

/**
 * The TLS material `self` uses on the deployment's gRPC: from `services.tls` when configured
 * (its `peers.<self>` pair, else the default pair), else from `tls/` in $SLUICE_KEYS_DIR (what
 * `sluice up` generates). Undefined when neither exists: only code embedding a service in-process
 * gets there; the service processes require it (requireServiceTls).
 */
export const resolveServiceTls = (loaded: LoadedConfig, self: GrpcPeer, env: NodeJS.ProcessEnv = process.env): ServiceTls | undefined => {
  const configured = loaded.config.services.tls;
  if (configured !== undefined) {
    const own = configured.peers[self];
    const cert = own?.cert ?? configured.cert;
    const key = own?.key ?? configured.key;
    if (cert === undefined || key === undefined) {
      throw new ConfigInvalidError(`services.tls.peers.${self}`, `a certificate and key for ${self} (or services.tls.cert and services.tls.key)`);
    }
    return { ca: requireSecret(configured.ca, loaded.dir), cert: requireSecret(cert, loaded.dir), key: requireSecret(key, loaded.dir), source: 'config' };
  }
  const dir = env[KEYS_DIR_ENV];
  return dir ? readGeneratedServiceTls(dir, self) : undefined;
};

/**
 * Like resolveServiceTls, but without material it refuses: a service process never serves or
 * calls gRPC in plain text, where anyone on the network could answer as another deployment.
 */
export const requireServiceTls = (loaded: LoadedConfig, self: GrpcPeer, env: NodeJS.ProcessEnv = process.env): ServiceTls => {
  const tls = resolveServiceTls(loaded, self, env);
  if (tls === undefined) {
    throw new ConfigInvalidError('services.tls', `the deployment's CA and certificates (configure services.tls, or set ${KEYS_DIR_ENV} to a folder \`sluice keys\` made; \`sluice up\` does it for you)`);
  }
  return tls;
};
