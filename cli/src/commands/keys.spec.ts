import { createPrivateKey, X509Certificate } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createSecureContext } from 'node:tls';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { GRPC_PEERS, parseConfig } from '@sluice/config';
import { busUserPublicKey, createMessageSigner, createProvenanceVerifier } from '@sluice/event-bus';
import { createDeploymentCa, createPeerCertificate, serialNumber } from './deployment-ca.js';
import { run, writeBusKeys, writeGrpcCertificates, writeSigningKeys } from './keys.js';

describe('sluice keys', () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-keys-'));
    dirs.push(dir);
    return dir;
  };
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('writes a working Ed25519 pair per signer, the private key readable by its owner only', () => {
    const dir = tempDir();
    expect(writeSigningKeys(dir)).toEqual(['proxy', 'approval', 'policy', 'audit']);
    expect(statSync(join(dir, 'proxy.key')).mode & 0o777).toBe(0o600);
    const payload = Buffer.from('[{"id":"e1"}]');
    const headers = createMessageSigner('proxy', readFileSync(join(dir, 'proxy.key'), 'utf8')).headersFor(payload);
    const verifier = createProvenanceVerifier({ proxy: readFileSync(join(dir, 'proxy.pub'), 'utf8') });
    expect(verifier.checkMessage(payload, headers)).toEqual({ genuine: true, signer: 'proxy' });
    expect(verifier.checkMessage(Buffer.from('[{"id":"e2"}]'), headers)).toMatchObject({ genuine: false, claimedSigner: 'proxy' });
  });

  it('keeps existing keys unless forced', () => {
    const dir = tempDir();
    writeSigningKeys(dir);
    const before = readFileSync(join(dir, 'audit.key'), 'utf8');
    expect(writeSigningKeys(dir)).toEqual([]);
    expect(readFileSync(join(dir, 'audit.key'), 'utf8')).toBe(before);
    expect(writeSigningKeys(dir, true)).toHaveLength(4);
    expect(readFileSync(join(dir, 'audit.key'), 'utf8')).not.toBe(before);
  });

  it('prints provenance and bus credential sections the config accepts', () => {
    const dir = tempDir();
    let out = '';
    expect(run(['--out', dir], { out: (text) => (out += text), err: () => undefined })).toBe(0);
    const config = parseConfig(parse(out));
    expect(config.provenance?.signers.approval).toEqual({ publicKey: { file: join(dir, 'approval.pub') }, privateKey: { file: join(dir, 'approval.key') } });
    expect(config.bus.credentials.proxy).toEqual({ nkey: { file: join(dir, 'proxy.nk') } });
  });

  it('writes a NATS seed per role, keeps them, and names their public keys in the nats-server authorization block', () => {
    const dir = tempDir();
    expect(writeBusKeys(dir, { stream: 'S1', prefix: 'p1.events' })).toEqual(['proxy', 'approval', 'policy', 'audit', 'siem']);
    expect(statSync(join(dir, 'siem.nk')).mode & 0o777).toBe(0o600);
    const seed = readFileSync(join(dir, 'proxy.nk'), 'utf8');
    expect(writeBusKeys(dir, { stream: 'S1', prefix: 'p1.events' })).toEqual([]);
    expect(readFileSync(join(dir, 'proxy.nk'), 'utf8')).toBe(seed);
    const auth = readFileSync(join(dir, 'nats-auth.conf'), 'utf8');
    expect(auth).toContain(busUserPublicKey(seed));
    expect(auth).toContain('"p1.events.batch.proxy"');
    // A seed is SU and 56 base32 characters; a public key may hold "SU" inside it.
    expect(auth).not.toMatch(/\bSU[A-Z2-7]{20,}/);
  });
});

describe('sluice keys: the deployment CA for gRPC', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
  const tempDir = () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-ca-'));
    dirs.push(dir);
    return dir;
  };

  it('writes a CA and a certificate per peer that the CA signed, naming the peer, keys readable by the owner only', () => {
    const dir = tempDir();
    expect(writeGrpcCertificates(dir)).toEqual(['tls/ca.crt', ...GRPC_PEERS.map((peer) => `tls/${peer}.crt`)]);
    const ca = new X509Certificate(readFileSync(join(dir, 'tls', 'ca.crt')));
    expect(ca.ca).toBe(true);
    expect(statSync(join(dir, 'tls', 'ca.key')).mode & 0o777).toBe(0o600);
    for (const peer of GRPC_PEERS) {
      const certificate = new X509Certificate(readFileSync(join(dir, 'tls', `${peer}.crt`)));
      expect(certificate.ca).toBe(false);
      expect(certificate.checkIssued(ca) && certificate.verify(ca.publicKey)).toBe(true);
      expect(certificate.checkHost(peer)).toBe(peer);
      expect(certificate.checkPrivateKey(createPrivateKey(readFileSync(join(dir, 'tls', `${peer}.key`))))).toBe(true);
      expect(statSync(join(dir, 'tls', `${peer}.key`)).mode & 0o777).toBe(0o600);
    }
  });

  it("keeps them unless forced, and remakes a certificate another CA signed", () => {
    const dir = tempDir();
    writeGrpcCertificates(dir);
    const before = readFileSync(join(dir, 'tls', 'proxy.crt'), 'utf8');
    expect(writeGrpcCertificates(dir)).toEqual([]);
    const other = tempDir();
    writeGrpcCertificates(other);
    copyFileSync(join(other, 'tls', 'masking.crt'), join(dir, 'tls', 'masking.crt'));
    expect(writeGrpcCertificates(dir)).toEqual(['tls/masking.crt']);
    expect(writeGrpcCertificates(dir, true)).toHaveLength(GRPC_PEERS.length + 1);
    expect(readFileSync(join(dir, 'tls', 'proxy.crt'), 'utf8')).not.toBe(before);
  });

  it('makes certificates OpenSSL accepts whatever the random serial, leading zero bytes included', () => {
    const zeros = (size: number) => Buffer.alloc(size);
    const serial = serialNumber(zeros);
    expect(serial).toMatch(/^[4-7][0-9a-f]/);
    const ca = createDeploymentCa('zero', new Date(), serial);
    const peer = createPeerCertificate(ca, 'approval', new Date(), serialNumber((size) => Buffer.alloc(size, 0xff)));
    for (const pair of [ca, peer]) {
      expect(() => createSecureContext({ cert: pair.certPem, key: pair.keyPem, ca: ca.certPem })).not.toThrow();
      expect(new X509Certificate(pair.certPem).serialNumber).toMatch(/^[4-7]/);
    }
  });

  it('prints a services.tls section the config accepts', () => {
    const dir = tempDir();
    let out = '';
    expect(run(['--out', dir], { out: (text) => (out += text), err: () => undefined })).toBe(0);
    const config = parseConfig(parse(out));
    expect(config.services.tls?.ca).toEqual({ file: join(dir, 'tls', 'ca.crt') });
    expect(config.services.tls?.peers.masking).toEqual({ cert: { file: join(dir, 'tls', 'masking.crt') }, key: { file: join(dir, 'tls', 'masking.key') } });
  });
});
