import { generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import forge from 'node-forge';
import { GRPC_PEERS, GRPC_TLS_DIR, type GrpcPeer } from '@sluice/config';

const DAY_MS = 24 * 60 * 60 * 1000;
const CA_VALIDITY_DAYS = 3650;
const LEAF_VALIDITY_DAYS = 397;
/** A certificate closer than this to its end is made anew by `sluice up`, before it can lapse in use. */
const RENEW_BEFORE_DAYS = 30;

export interface PemPair {
  readonly certPem: string;
  readonly keyPem: string;
}

/** RSA keys come from node:crypto (fast, native); node-forge only writes and signs the X.509 structure. */
const newRsaKey = (): { forgeKey: forge.pki.rsa.PrivateKey; publicKey: forge.pki.rsa.PublicKey; keyPem: string } => {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
  const forgeKey = forge.pki.privateKeyFromPem(keyPem);
  return { forgeKey, publicKey: forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e), keyPem };
};

/**
 * Serial numbers are positive and random (RFC 5280 §4.1.2.2). The first byte is kept within
 * 0x40-0x7f: positive, and never zero, because node-forge writes the hex as the INTEGER's bytes
 * and drops only one leading zero, and OpenSSL refuses a certificate whose serial keeps a
 * redundant one ("illegal padding": one serial in 32,768 began with two zero bytes).
 */
export const serialNumber = (random: (size: number) => Buffer = randomBytes): string => {
  const bytes = random(16);
  bytes[0] = (bytes[0]! & 0x3f) | 0x40;
  return bytes.toString('hex');
};

const validity = (certificate: forge.pki.Certificate, days: number, now: Date): void => {
  // Backdated a little: clocks of the machines in one deployment are never exactly equal.
  certificate.validity.notBefore = new Date(now.getTime() - 5 * 60 * 1000);
  certificate.validity.notAfter = new Date(now.getTime() + days * DAY_MS);
};

/** A deployment's own CA: it signs only that deployment's gRPC certificates, so trusting it trusts nothing else. */
export const createDeploymentCa = (deployment: string, now = new Date(), serial = serialNumber()): PemPair => {
  const { forgeKey, publicKey, keyPem } = newRsaKey();
  const certificate = forge.pki.createCertificate();
  certificate.publicKey = publicKey;
  certificate.serialNumber = serial;
  validity(certificate, CA_VALIDITY_DAYS, now);
  const name = [
    { name: 'commonName', value: `Sluice deployment CA ${deployment}` },
    { name: 'organizationName', value: 'Sluice' },
  ];
  certificate.setSubject(name);
  certificate.setIssuer(name);
  certificate.setExtensions([
    { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  certificate.sign(forgeKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(certificate), keyPem };
};

/**
 * A peer's certificate, signed by the CA: its DNS name is the peer's name (checked by clients in
 * place of the address), and it serves as both a server and a client certificate.
 */
export const createPeerCertificate = (ca: PemPair, peer: GrpcPeer, now = new Date(), serial = serialNumber()): PemPair => {
  const caCertificate = forge.pki.certificateFromPem(ca.certPem);
  const caKey = forge.pki.privateKeyFromPem(ca.keyPem);
  const { publicKey, keyPem } = newRsaKey();
  const certificate = forge.pki.createCertificate();
  certificate.publicKey = publicKey;
  certificate.serialNumber = serial;
  validity(certificate, LEAF_VALIDITY_DAYS, now);
  certificate.setSubject([
    { name: 'commonName', value: peer },
    { name: 'organizationName', value: 'Sluice' },
  ]);
  certificate.setIssuer(caCertificate.subject.attributes);
  certificate.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
    { name: 'subjectAltName', altNames: [{ type: 2, value: peer }] },
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: caCertificate.generateSubjectKeyIdentifier().getBytes() },
  ]);
  certificate.sign(caKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(certificate), keyPem };
};

const needsRenewal = (certPem: string, caPem: string, now: Date): boolean => {
  try {
    const certificate = new X509Certificate(certPem);
    const ca = new X509Certificate(caPem);
    return !certificate.checkIssued(ca) || !certificate.verify(ca.publicKey) || new Date(certificate.validTo).getTime() - now.getTime() < RENEW_BEFORE_DAYS * DAY_MS;
  } catch {
    return true;
  }
};

/**
 * Processes started one by one from one folder make keys at once: the one that lost the race for
 * a key waits (briefly) for the winner's certificate rather than reading a half-made pair.
 */
const readWhenPresent = (path: string, timeoutMs = 5_000): string => {
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(path) && Date.now() < deadline) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  return readFileSync(path, 'utf8');
};

const READ_ONLY_CODES = new Set(['EROFS', 'EACCES', 'EPERM']);

export interface CertificateWriter {
  /** Writes `path` holding `content` unless it exists (or force); true when it wrote. */
  createExclusive(path: string, content: string, mode: number, force: boolean): boolean;
  replace(path: string, content: string, mode: number): void;
}

/**
 * Writes the deployment's CA (`tls/ca.crt`, `tls/ca.key`) and a certificate per gRPC peer
 * (`tls/<peer>.crt`, `tls/<peer>.key`) into `dir`. Kept when there unless `force`; a certificate
 * that the CA did not sign, or that ends within 30 days, is made anew. Returns what it wrote.
 */
export const writeDeploymentCertificates = (dir: string, writer: CertificateWriter, force = false, now = new Date()): string[] => {
  const folder = join(dir, GRPC_TLS_DIR);
  mkdirSync(folder, { recursive: true, mode: 0o700 });
  const written: string[] = [];
  const caCertPath = join(folder, 'ca.crt');
  const caKeyPath = join(folder, 'ca.key');
  if (force || !existsSync(caKeyPath)) {
    const ca = createDeploymentCa(randomBytes(4).toString('hex'), now);
    // The key is the one that decides: whoever links it first wins, and its certificate goes with
    // it; the others wait for that certificate below.
    if (writer.createExclusive(caKeyPath, ca.keyPem, 0o600, force)) {
      writer.replace(caCertPath, ca.certPem, 0o644);
      written.push(`${GRPC_TLS_DIR}/ca.crt`);
    }
  }
  let caCertPem: string;
  try {
    caCertPem = readWhenPresent(caCertPath);
  } catch {
    throw new Error(`${caCertPath} is missing beside its key ${caKeyPath}: remove the key (or run \`sluice keys --force\`) to make a new CA`);
  }
  const ca: PemPair = { certPem: caCertPem, keyPem: readFileSync(caKeyPath, 'utf8') };
  for (const peer of GRPC_PEERS) {
    const certPath = join(folder, `${peer}.crt`);
    const keyPath = join(folder, `${peer}.key`);
    // Whether a pair is there is read once, before the new one is made: read again after, it saw
    // the key another process had just linked, and replaced it while that process wrote its
    // certificate beside it (a key of one and a certificate of the other).
    const present = existsSync(keyPath);
    if (!force && present) {
      if (!needsRenewal(readWhenPresent(certPath), ca.certPem, now)) continue;
    }
    const pair = createPeerCertificate(ca, peer, now);
    const renewing = force || present;
    try {
      // A new key is linked exclusively (one writer wins, the others wait for its certificate); a
      // renewed one replaces the old pair, key first.
      if (!writer.createExclusive(keyPath, pair.keyPem, 0o600, renewing)) continue;
      writer.replace(certPath, pair.certPem, 0o644);
      written.push(`${GRPC_TLS_DIR}/${peer}.crt`);
    } catch (error) {
      // Keys mounted read-only (a Kubernetes Secret) are renewed by whoever owns them; the
      // certificate in place serves until then, and a handshake says so once it has lapsed.
      if (!renewing || !READ_ONLY_CODES.has((error as NodeJS.ErrnoException).code ?? '')) throw error;
    }
  }
  return written;
};
