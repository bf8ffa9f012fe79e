import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { SIGNER_NAMES } from '@sluice/contracts';
import { generateSigningKeyPair } from '@sluice/event-bus';

interface Output {
  out(text: string): void;
  err(text: string): void;
}

const stdio: Output = { out: (text) => void process.stdout.write(text), err: (text) => void process.stderr.write(text) };

/**
 * Writes an Ed25519 key pair per signing service (`<name>.key` readable by the owner only,
 * `<name>.pub`) into `dir`; a pair already there is kept unless `force`. Returns the names written.
 */
export const writeSigningKeys = (dir: string, force = false): string[] => {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const written: string[] = [];
  for (const name of SIGNER_NAMES) {
    const keyPath = join(dir, `${name}.key`);
    const pubPath = join(dir, `${name}.pub`);
    if (!force && existsSync(keyPath) && existsSync(pubPath)) continue;
    const { privateKeyPem, publicKeyPem } = generateSigningKeyPair();
    writeFileSync(keyPath, privateKeyPem, { mode: 0o600 });
    writeFileSync(pubPath, publicKeyPem, { mode: 0o644 });
    written.push(name);
  }
  return written;
};

const USAGE = `usage: sluice keys [--out DIR] [--force]
  writes an Ed25519 signing key pair per publishing service (${SIGNER_NAMES.join(', ')}) into DIR
  (default ./sluice-keys) and prints the provenance section of the config that uses them
`;

/** `sluice keys`: makes the provenance keys a deployment's config names. */
export const run = (argv: readonly string[], io: Output = stdio): number => {
  let values: { out?: string | undefined; force?: boolean | undefined; help?: boolean | undefined };
  try {
    ({ values } = parseArgs({ args: [...argv], options: { out: { type: 'string', short: 'o' }, force: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, allowPositionals: false }));
  } catch (error) {
    io.err(`sluice keys: ${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    io.out(USAGE);
    return 0;
  }
  const dir = resolve(values.out ?? 'sluice-keys');
  const written = writeSigningKeys(dir, values.force ?? false);
  io.err(written.length > 0 ? `sluice keys: wrote ${written.join(', ')} into ${dir}\n` : `sluice keys: every key already exists in ${dir} (--force replaces them)\n`);
  const lines = ['provenance:', '  signers:'];
  for (const name of SIGNER_NAMES) lines.push(`    ${name}: { publicKey: { file: ${join(dir, `${name}.pub`)} }, privateKey: { file: ${join(dir, `${name}.key`)} } }`);
  io.out(`${lines.join('\n')}\n`);
  return 0;
};
