import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SIGNER_NAMES, type SignerName } from '@sluice/contracts';
import type { LoadedConfig } from './load.js';
import { requireSecret } from './secret.js';

/**
 * Folder of generated keys that `sluice up` (or a container deployment) hands its services:
 * `<signer>.key`/`<signer>.pub` (provenance) and `<role>.nk` (NATS user seeds), as `sluice keys` writes them.
 */
export const KEYS_DIR_ENV = 'SLUICE_KEYS_DIR';

export interface ProvenanceKeys {
  /** This service's private key (PEM), when it signs. */
  readonly privateKeyPem?: string;
  /** Every signer's public key (PEM) that is known. */
  readonly publicKeysPem: Partial<Record<SignerName, string>>;
  /** `config` (provenance.signers), `generated` (SLUICE_KEYS_DIR) or `none`. */
  readonly source: 'config' | 'generated' | 'none';
}

const readKeyFile = (path: string): string | undefined => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
};

/**
 * The provenance keys `self` works with: from `provenance.signers` when configured (a key named
 * there and missing fails the start), else from the generated folder, else none.
 */
export const resolveProvenanceKeys = (loaded: LoadedConfig, self?: SignerName, env: NodeJS.ProcessEnv = process.env): ProvenanceKeys => {
  const signers = loaded.config.provenance?.signers;
  if (signers !== undefined) {
    const publicKeysPem: Partial<Record<SignerName, string>> = {};
    for (const name of SIGNER_NAMES) {
      const keys = signers[name];
      if (keys) publicKeysPem[name] = requireSecret(keys.publicKey, loaded.dir);
    }
    const own = self === undefined ? undefined : signers[self]?.privateKey;
    return { publicKeysPem, source: 'config', ...(own ? { privateKeyPem: requireSecret(own, loaded.dir) } : {}) };
  }
  const dir = env[KEYS_DIR_ENV];
  if (dir) {
    const publicKeysPem: Partial<Record<SignerName, string>> = {};
    for (const name of SIGNER_NAMES) {
      const pem = readKeyFile(join(dir, `${name}.pub`));
      if (pem !== undefined) publicKeysPem[name] = pem;
    }
    const privateKeyPem = self === undefined ? undefined : readKeyFile(join(dir, `${self}.key`));
    return { publicKeysPem, source: 'generated', ...(privateKeyPem ? { privateKeyPem } : {}) };
  }
  return { publicKeysPem: {}, source: 'none' };
};
