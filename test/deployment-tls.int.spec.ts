import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { credentials, status, type ChannelCredentials, type ChannelOptions } from '@grpc/grpc-js';
import { loadConfig, readGeneratedServiceTls, requireServiceTls, resolveServiceTls, type GrpcPeer, type ServiceTls } from '@sluice/config';
import { startMaskingService, type RunningMaskingService } from '@sluice/masking';
import { requestPolicyReload, startPolicyService, type RunningPolicyService } from '@sluice/policy';
import { masking, policy as policyProto } from '@sluice/proto';
import { createLogger, grpcClientChannelOptions, grpcClientCredentials } from '@sluice/service-runtime';
import { writeGrpcCertificates } from '../cli/src/commands/keys.js';
import { createMaskingPort } from '../services/proxy/src/ports/masking-client.js';
import { deleteStreams } from './support/databases.js';
import { freePort } from './support/ports.js';
import { SLUICE_BIN } from './support/sluice.js';

const logger = createLogger('deployment-tls-test');

/** Whether a channel to `address` with `channelCredentials` gets through the TLS handshake in time. */
const handshakeSucceeds = (address: string, channelCredentials: ChannelCredentials, channelOptions: ChannelOptions = {}, timeoutMs = 3_000): Promise<boolean> => {
  const client = new masking.MaskingServiceClient(address, channelCredentials, channelOptions);
  return new Promise((resolve) =>
    client.waitForReady(new Date(Date.now() + timeoutMs), (error) => {
      client.close();
      resolve(error === undefined || error === null);
    }),
  );
};

/**
 * Two deployments on one host, each with the CA and certificates `sluice keys` makes: deployment
 * A's services run; whatever holds deployment B's certificates is refused by them at the TLS
 * handshake, and refuses them in turn.
 */
describe('gRPC trusts only its own deployment', () => {
  const run = randomUUID().slice(0, 8);
  const stream = `SLUICE_TLS_${run}`;
  let root: string;
  let keysA: string;
  let keysB: string;
  let tlsOf: (keys: string, peer: GrpcPeer) => ServiceTls;
  let maskingA: RunningMaskingService;
  let policyA: RunningPolicyService;
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'sluice-tls-'));
    keysA = join(root, 'keys-a');
    keysB = join(root, 'keys-b');
    writeGrpcCertificates(keysA);
    writeGrpcCertificates(keysB);
    tlsOf = (keys, peer) => readGeneratedServiceTls(keys, peer);
    const configPath = join(root, 'a.yaml');
    writeFileSync(
      configPath,
      stringify({
        bus: { url: 'nats://127.0.0.1:4222', stream, subjectPrefix: `tls.${run}.events` },
        services: { policy: { grpc: '127.0.0.1:0' }, masking: { grpc: '127.0.0.1:0' } },
        masking: { profiles: { pii: { detectors: ['email'], strategy: 'redact' } } },
        rules: [{ name: 'read', effect: 'allow', actions: ['read'], mask: 'pii' }],
      }),
    );
    const loaded = loadConfig(configPath);
    maskingA = await startMaskingService({ loaded, logger, listen: '127.0.0.1:0', tls: tlsOf(keysA, 'masking') });
    policyA = await startPolicyService({ loaded, config: loaded.config, logger, listen: '127.0.0.1:0', tls: tlsOf(keysA, 'policy') });
  });

  afterAll(async () => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    await maskingA?.stop();
    await policyA?.stop();
    await deleteStreams([stream]);
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('lets a proxy holding its own deployment certificate through the handshake and streams it the profiles', async () => {
    expect(await handshakeSucceeds(maskingA.address, grpcClientCredentials(tlsOf(keysA, 'proxy'), 'masking'), grpcClientChannelOptions(tlsOf(keysA, 'proxy'), 'masking'))).toBe(true);
    const port = createMaskingPort(maskingA.address, { logger, credentials: grpcClientCredentials(tlsOf(keysA, 'proxy'), 'masking'), channelOptions: grpcClientChannelOptions(tlsOf(keysA, 'proxy'), 'masking') });
    try {
      await port.ready;
      expect(port.live).toBe(true);
    } finally {
      port.close();
    }
  });

  it("refuses at the handshake a proxy of another deployment, and that proxy never gets the other deployment's profiles", async () => {
    expect(await handshakeSucceeds(maskingA.address, grpcClientCredentials(tlsOf(keysB, 'proxy'), 'masking'), grpcClientChannelOptions(tlsOf(keysB, 'proxy'), 'masking'))).toBe(false);
    const port = createMaskingPort(maskingA.address, { logger, credentials: grpcClientCredentials(tlsOf(keysB, 'proxy'), 'masking'), channelOptions: grpcClientChannelOptions(tlsOf(keysB, 'proxy'), 'masking') });
    try {
      const arrived = await Promise.race([port.ready.then(() => true), new Promise((resolve) => setTimeout(() => resolve(false), 3_000))]);
      expect(arrived).toBe(false);
      expect(port.live).toBe(false);
      expect(() => port.masker('pii')).toThrow(expect.objectContaining({ code: 'ERR_MASKING_UNAVAILABLE' }));
    } finally {
      port.close();
    }
  });

  it("refuses a client that trusts this deployment's CA but presents another deployment's certificate, or none", async () => {
    const a = tlsOf(keysA, 'proxy');
    const b = tlsOf(keysB, 'proxy');
    const checkNothing = { checkServerIdentity: () => undefined };
    expect(await handshakeSucceeds(maskingA.address, credentials.createSsl(Buffer.from(a.ca), Buffer.from(b.key), Buffer.from(b.cert), checkNothing))).toBe(false);
    expect(await handshakeSucceeds(maskingA.address, credentials.createSsl(Buffer.from(a.ca), null, null, checkNothing))).toBe(false);
    expect(await handshakeSucceeds(maskingA.address, credentials.createInsecure())).toBe(false);
  });

  it("refuses a server that is not the service the client meant, even one of its own deployment", async () => {
    // The policy service's certificate names `policy`: it cannot answer for masking.
    expect(await handshakeSucceeds(policyA.address, grpcClientCredentials(tlsOf(keysA, 'proxy'), 'masking'), grpcClientChannelOptions(tlsOf(keysA, 'proxy'), 'masking'))).toBe(false);
    expect(await handshakeSucceeds(policyA.address, grpcClientCredentials(tlsOf(keysA, 'proxy'), 'policy'), grpcClientChannelOptions(tlsOf(keysA, 'proxy'), 'policy'))).toBe(true);
  });

  it('lets each peer of the deployment call only what its role needs: the operator reloads, the proxy decides', async () => {
    const as = (peer: GrpcPeer, service: GrpcPeer) => ({ credentials: grpcClientCredentials(tlsOf(keysA, peer), service), channelOptions: grpcClientChannelOptions(tlsOf(keysA, peer), service) });
    expect((await requestPolicyReload(policyA.address, as('operator', 'policy'))).ok).toBe(true);
    await expect(requestPolicyReload(policyA.address, as('proxy', 'policy'))).rejects.toMatchObject({ code: status.PERMISSION_DENIED });
    const watchAs = (peer: GrpcPeer) =>
      new Promise<number>((resolve) => {
        const { credentials: channelCredentials, channelOptions } = as(peer, 'policy');
        const client = new policyProto.PolicyServiceClient(policyA.address, channelCredentials, channelOptions);
        const call = client.watchPolicy({});
        call.on('data', () => {
          call.cancel();
          client.close();
          resolve(status.OK);
        });
        call.on('error', (error: { code: number }) => {
          client.close();
          resolve(error.code);
        });
      });
    expect(await watchAs('proxy')).toBe(status.OK);
    expect(await watchAs('operator')).toBe(status.PERMISSION_DENIED);
    expect(await watchAs('masking')).toBe(status.PERMISSION_DENIED);
  });

  it('takes the certificates from services.tls when configured, a pair per peer or the default one', async () => {
    const configPath = join(root, 'configured.yaml');
    writeFileSync(
      configPath,
      stringify({
        services: {
          tls: {
            ca: { file: join(keysA, 'tls', 'ca.crt') },
            cert: { file: join(keysA, 'tls', 'operator.crt') },
            key: { file: join(keysA, 'tls', 'operator.key') },
            peers: { proxy: { cert: { file: join(keysA, 'tls', 'proxy.crt') }, key: { file: join(keysA, 'tls', 'proxy.key') } } },
          },
        },
      }),
    );
    const loaded = loadConfig(configPath);
    // The configured material wins over a keys folder of another deployment.
    const proxy = resolveServiceTls(loaded, 'proxy', { SLUICE_KEYS_DIR: keysB })!;
    expect(proxy.source).toBe('config');
    expect(await handshakeSucceeds(maskingA.address, grpcClientCredentials(proxy, 'masking'), grpcClientChannelOptions(proxy, 'masking'))).toBe(true);
    expect(resolveServiceTls(loaded, 'policy', {})!.cert.trim()).toBe(tlsOf(keysA, 'operator').cert.trim());
  });

  it('refuses to run a service without TLS material, and with a keys folder that lacks it', () => {
    const loaded = loadConfig(join(root, 'a.yaml'));
    expect(() => requireServiceTls(loaded, 'proxy', {})).toThrow(expect.objectContaining({ code: 'ERR_CONFIG_INVALID', path: 'services.tls' }));
    expect(() => requireServiceTls(loaded, 'proxy', { SLUICE_KEYS_DIR: join(root, 'empty') })).toThrow(expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }));
  });

  /**
   * The reported case: a fresh deployment's proxy pointed (by port clash or mistake) at another
   * deployment's services. It runs as `sluice proxy` does, with the keys its own folder generates.
   */
  const startProxy = async (folder: string, env: Record<string, string>): Promise<{ child: ChildProcess; output: () => string; readyz: () => Promise<number> }> => {
    const healthPort = await freePort();
    mkdirSync(folder, { recursive: true });
    writeFileSync(
      join(folder, 'sluice.yaml'),
      stringify({
        bus: { url: 'nats://127.0.0.1:4222', stream, subjectPrefix: `tls.${run}.events` },
        services: { policy: { grpc: policyA.address }, masking: { grpc: maskingA.address }, approval: { grpc: '127.0.0.1:1', http: '127.0.0.1:0' } },
        rules: [{ name: 'read', effect: 'allow', actions: ['read'] }],
      }),
    );
    let output = '';
    const child = spawn(process.execPath, [SLUICE_BIN, 'proxy', '--config', 'sluice.yaml'], {
      cwd: folder,
      env: { ...process.env, LOG_LEVEL: 'info', NATS_URL: '', DATABASE_URL: '', SLUICE_KEYS_DIR: '', SLUICE_HEALTH_LISTEN: `127.0.0.1:${healthPort}`, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    children.push(child);
    const readyz = async (): Promise<number> => {
      try {
        return (await fetch(`http://127.0.0.1:${healthPort}/readyz`)).status;
      } catch {
        return 0;
      }
    };
    return { child, output: () => output, readyz };
  };
  const reportedReady = (output: string): boolean => output.split('\n').some((line) => line.includes('"msg":"ready"'));

  it("a proxy with its own generated keys never reports ready against another deployment's services, and says why", async () => {
    const proxy = await startProxy(join(root, 'deployment-b'), {});
    const deadline = Date.now() + 30_000;
    while (!proxy.output().includes('not ready') && Date.now() < deadline && proxy.child.exitCode === null) await new Promise((resolve) => setTimeout(resolve, 200));
    expect(proxy.child.exitCode).toBeNull();
    expect(proxy.output()).toMatch(/not ready: no answer yet from this deployment's policy and masking service/);
    expect(proxy.output()).toContain('masking profiles not received yet');
    expect(reportedReady(proxy.output())).toBe(false);
    expect(await proxy.readyz()).toBe(503);
    proxy.child.kill('SIGTERM');
  });

  it('the same proxy holding the deployment keys of those services reports ready', async () => {
    const proxy = await startProxy(join(root, 'deployment-a'), { SLUICE_KEYS_DIR: keysA });
    const deadline = Date.now() + 30_000;
    while (!reportedReady(proxy.output()) && Date.now() < deadline && proxy.child.exitCode === null) await new Promise((resolve) => setTimeout(resolve, 200));
    expect(reportedReady(proxy.output())).toBe(true);
    expect(await proxy.readyz()).toBe(200);
    proxy.child.kill('SIGTERM');
  });
});
