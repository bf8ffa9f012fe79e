import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateSigningKeyPair } from '@sluice/event-bus';

/** How `provenance.signers` names one service's key files (relative to the config's folder). */
export interface SignerKeyFiles {
  publicKey: { file: string };
  privateKey: { file: string };
}

/**
 * A fresh signing key pair per service, written as `<name>.key` and `<name>.pub` in `dir`: the
 * `provenance.signers` section that names them, and each private key (PEM) for test signers.
 */
export const writeSigningKeys = (dir: string, names: readonly string[] = ['proxy', 'approval', 'policy', 'audit']) => {
  const signers: Record<string, SignerKeyFiles> = {};
  const privateKeys: Record<string, string> = {};
  for (const name of names) {
    const pair = generateSigningKeyPair();
    writeFileSync(join(dir, `${name}.key`), pair.privateKeyPem);
    writeFileSync(join(dir, `${name}.pub`), pair.publicKeyPem);
    signers[name] = { publicKey: { file: `${name}.pub` }, privateKey: { file: `${name}.key` } };
    privateKeys[name] = pair.privateKeyPem;
  }
  return { signers, privateKeys };
};
