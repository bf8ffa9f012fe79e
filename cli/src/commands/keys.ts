import { randomBytes } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { GRPC_PEERS, KEYS_DIR_ENV, type SluiceConfig } from '@sluice/config';
import { DEFAULT_EVENTS_STREAM, DEFAULT_EVENTS_SUBJECT_PREFIX, SIGNER_NAMES } from '@sluice/contracts';
import { auditDurableNames, BUS_ROLES, busUserPublicKey, generateBusUserSeed, generateSigningKeyPair, natsAuthorizationConfig, publicKeyPemOf } from '@sluice/event-bus';
import { writeDeploymentCertificates } from './deployment-ca.js';

interface Output {
  out(text: string): void;
  err(text: string): void;
}

const stdio: Output = { out: (text) => void process.stdout.write(text), err: (text) => void process.stderr.write(text) };

/**
 * Creates `path` holding `content` unless it exists (or `force`), atomically: processes making
 * keys in one folder at once (services started one by one) end up agreeing on a single key.
 */
const createExclusive = (path: string, content: string, mode: number, force: boolean): boolean => {
  const temporary = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(temporary, content, { mode });
  try {
    if (force) renameSync(temporary, path);
    else linkSync(temporary, path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    rmSync(temporary, { force: true });
  }
};

/** Replaces `path` atomically when its content differs; a folder mounted read-only with it right is left alone. */
const replaceIfChanged = (path: string, content: string, mode: number): void => {
  if (existsSync(path) && readFileSync(path, 'utf8') === content) return;
  const temporary = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(temporary, content, { mode });
  renameSync(temporary, path);
};

/**
 * Writes an Ed25519 key pair per signing service (`<name>.key` readable by the owner only,
 * `<name>.pub` derived from it) into `dir`; a key already there is kept unless `force`. Returns
 * the names whose key was written.
 */
export const writeSigningKeys = (dir: string, force = false): string[] => {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const written: string[] = [];
  for (const name of SIGNER_NAMES) {
    const keyPath = join(dir, `${name}.key`);
    if ((force || !existsSync(keyPath)) && createExclusive(keyPath, generateSigningKeyPair().privateKeyPem, 0o600, force)) written.push(name);
    replaceIfChanged(join(dir, `${name}.pub`), publicKeyPemOf(readFileSync(keyPath, 'utf8')), 0o644);
  }
  return written;
};

/** The file nats-server includes for the users and their permissions. */
export const NATS_AUTH_FILE = 'nats-auth.conf';

/**
 * Writes a NATS user nkey seed per bus role (`<role>.nk`, owner-only; `siem.nk` for a SIEM
 * reader) into `dir`, keeping seeds already there unless `force`, then (re)writes
 * `nats-auth.conf`, the nats-server `authorization` block naming their public keys with each
 * role's permissions on `stream`/`prefix`. Returns the roles whose seed was written.
 */
export const writeBusKeys = (dir: string, options: { stream?: string; prefix?: string; force?: boolean; auditDurables?: readonly string[] } = {}): string[] => {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const written: string[] = [];
  const users = BUS_ROLES.map((role) => {
    const seedPath = join(dir, `${role}.nk`);
    const force = options.force ?? false;
    if ((force || !existsSync(seedPath)) && createExclusive(seedPath, `${generateBusUserSeed()}\n`, 0o600, force)) written.push(role);
    return { role, nkey: busUserPublicKey(readFileSync(seedPath, 'utf8')) };
  });
  replaceIfChanged(join(dir, NATS_AUTH_FILE), natsAuthorizationConfig(users, options.stream ?? DEFAULT_EVENTS_STREAM, options.prefix ?? DEFAULT_EVENTS_SUBJECT_PREFIX, options.auditDurables), 0o644);
  return written;
};

/** The deployment's gRPC CA and a certificate per peer under `dir/tls` (see writeDeploymentCertificates). */
export const writeGrpcCertificates = (dir: string, force = false): string[] =>
  writeDeploymentCertificates(dir, { createExclusive, replace: replaceIfChanged }, force);

/**
 * The keys of a deployment run from this folder, in $SLUICE_KEYS_DIR or ./.sluice/keys: made
 * once (provenance signing keys unless the config names its own, NATS user seeds and the
 * nats-server authorization block for the config's stream, the gRPC CA and certificates unless
 * the config names services.tls), then kept. The services take from
 * there whatever the config does not give them.
 */
export const provideDeploymentKeys = (config: SluiceConfig, env: NodeJS.ProcessEnv = process.env): { dir: string; written: string[] } => {
  const dir = resolve(env[KEYS_DIR_ENV] || join('.sluice', 'keys'));
  const written = [
    ...(config.provenance === undefined ? writeSigningKeys(dir) : []),
    ...writeBusKeys(dir, { stream: config.bus.stream, prefix: config.bus.subjectPrefix, auditDurables: auditDurableNames(config.audit.exporters) }).map((role) => `${role}.nk`),
    ...(config.services.tls === undefined ? writeGrpcCertificates(dir) : []),
  ];
  return { dir, written };
};

const USAGE = `usage: sluice keys [--out DIR] [--force] [--stream NAME] [--prefix SUBJECT-PREFIX]
  writes into DIR (default ./sluice-keys):
    <service>.key, <service>.pub  an Ed25519 pair per publishing service (${SIGNER_NAMES.join(', ')})
    <role>.nk                     a NATS user nkey seed per bus role (${BUS_ROLES.join(', ')})
    ${NATS_AUTH_FILE}               the nats-server authorization block for them (include it)
    tls/ca.crt, tls/ca.key        the deployment's own CA for gRPC mutual TLS
    tls/<peer>.crt, tls/<peer>.key a certificate per peer (${GRPC_PEERS.join(', ')}), named for it
  and prints the provenance, bus.credentials and services.tls sections of the config that use them.
  Existing keys are kept unless --force.
`;

/** `sluice keys`: makes the provenance keys a deployment's config names. */
export const run = (argv: readonly string[], io: Output = stdio): number => {
  let values: { out?: string | undefined; force?: boolean | undefined; help?: boolean | undefined; stream?: string | undefined; prefix?: string | undefined };
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: { out: { type: 'string', short: 'o' }, force: { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, stream: { type: 'string' }, prefix: { type: 'string' } },
      allowPositionals: false,
    }));
  } catch (error) {
    io.err(`sluice keys: ${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    io.out(USAGE);
    return 0;
  }
  const dir = resolve(values.out ?? 'sluice-keys');
  const written = [
    ...writeSigningKeys(dir, values.force ?? false),
    ...writeBusKeys(dir, { force: values.force ?? false, ...(values.stream ? { stream: values.stream } : {}), ...(values.prefix ? { prefix: values.prefix } : {}) }).map((role) => `${role}.nk`),
    ...writeGrpcCertificates(dir, values.force ?? false),
  ];
  io.err(
    `${written.length > 0 ? `sluice keys: wrote ${written.join(', ')} into ${dir}` : `sluice keys: every key already exists in ${dir} (--force replaces them)`}; ` +
      `nats-server: include ${join(dir, NATS_AUTH_FILE)}; a SIEM reads with ${join(dir, 'siem.nk')}\n`,
  );
  const lines = ['provenance:', '  signers:'];
  for (const name of SIGNER_NAMES) lines.push(`    ${name}: { publicKey: { file: ${join(dir, `${name}.pub`)} }, privateKey: { file: ${join(dir, `${name}.key`)} } }`);
  lines.push('bus:', '  credentials:');
  for (const role of BUS_ROLES) if (role !== 'siem') lines.push(`    ${role}: { nkey: { file: ${join(dir, `${role}.nk`)} } }`);
  lines.push('services:', '  tls:', `    ca: { file: ${join(dir, 'tls', 'ca.crt')} }`, '    peers:');
  for (const peer of GRPC_PEERS) lines.push(`      ${peer}: { cert: { file: ${join(dir, 'tls', `${peer}.crt`)} }, key: { file: ${join(dir, 'tls', `${peer}.key`)} } }`);
  io.out(`${lines.join('\n')}\n`);
  return 0;
};
