import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import forge from 'node-forge';

export interface TestCertificates {
  /** The test CA's certificate: what a client trusts. */
  readonly caPem: string;
  /** A server certificate for 127.0.0.1 and localhost, signed by the CA. */
  readonly certPem: string;
  readonly keyPem: string;
}

const newKey = (): { forgeKey: forge.pki.rsa.PrivateKey; publicKey: forge.pki.rsa.PublicKey; keyPem: string } => {
  const keyPem = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
  const forgeKey = forge.pki.privateKeyFromPem(keyPem);
  return { forgeKey, publicKey: forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e), keyPem };
};

const certificateFor = (publicKey: forge.pki.rsa.PublicKey, subject: string): forge.pki.Certificate => {
  const certificate = forge.pki.createCertificate();
  certificate.publicKey = publicKey;
  certificate.serialNumber = `01${randomBytes(8).toString('hex')}`;
  certificate.validity.notBefore = new Date(Date.now() - 60 * 60 * 1000);
  certificate.validity.notAfter = new Date(Date.now() + 24 * 60 * 60 * 1000);
  certificate.setSubject([{ name: 'commonName', value: subject }]);
  return certificate;
};

/** A throwaway CA and a loopback server certificate it signed, for HTTPS tests. */
export const createTestCertificates = (): TestCertificates => {
  const ca = newKey();
  const caCertificate = certificateFor(ca.publicKey, 'Sluice test CA');
  caCertificate.setIssuer(caCertificate.subject.attributes);
  caCertificate.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
  ]);
  caCertificate.sign(ca.forgeKey, forge.md.sha256.create());

  const leaf = newKey();
  const leafCertificate = certificateFor(leaf.publicKey, 'localhost');
  leafCertificate.setIssuer(caCertificate.subject.attributes);
  leafCertificate.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }, { type: 2, value: 'localhost' }] },
  ]);
  leafCertificate.sign(ca.forgeKey, forge.md.sha256.create());
  return { caPem: forge.pki.certificateToPem(caCertificate), certPem: forge.pki.certificateToPem(leafCertificate), keyPem: leaf.keyPem };
};

/** Writes the server pair into `dir` as tls.crt / tls.key: what a config's `tls: { cert: { file }, key: { file } }` names. */
export const writeServerPair = (dir: string, certificates: TestCertificates): { cert: { file: string }; key: { file: string } } => {
  writeFileSync(join(dir, 'tls.crt'), certificates.certPem);
  writeFileSync(join(dir, 'tls.key'), certificates.keyPem, { mode: 0o600 });
  return { cert: { file: 'tls.crt' }, key: { file: 'tls.key' } };
};
