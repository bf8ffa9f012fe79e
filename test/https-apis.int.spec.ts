import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstreamManager } from '@nats-io/jetstream';
import { startApprovalService, type RunningApprovalService } from '@sluice/approval';
import { startAuditService, type AuditService } from '@sluice/audit';
import { parseConfig, type LoadedConfig } from '@sluice/config';
import { startConsoleService, type RunningConsole } from '@sluice/console';
import { connectBus, type NatsConnection } from '@sluice/event-bus';
import { createLogger } from '@sluice/service-runtime';
import { startTestIssuer, type TestIssuer } from './support/oidc.js';
import { startOidcProvider, type RealIdp } from './support/oidc-provider.js';
import { freePort } from './support/ports.js';
import { createTestCertificates, writeServerPair, type TestCertificates } from './support/tls-certificates.js';

const RUN = randomBytes(4).toString('hex');
const STREAM = `HTTPS_APIS_${RUN}`;
const PREFIX = `test.https${RUN}.events`;
const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const logger = createLogger('https-apis-test');

interface Answer {
  readonly status: number;
  readonly body: string;
  readonly headers?: Record<string, string | string[] | undefined>;
}

/** GET over HTTPS trusting only `ca` (the test CA, not the system store). */
const httpsGet = (url: string, ca: string, token?: string): Promise<Answer> =>
  new Promise((resolve, reject) => {
    const request = httpsRequest(url, { ca, headers: token ? { authorization: `Bearer ${token}` } : {} }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body, headers: response.headers }));
    });
    request.on('error', reject);
    request.end();
  });

/** Plain HTTP to the same address: a TLS-only API never answers it as HTTP. */
const plainGet = (url: string): Promise<Answer> =>
  new Promise((resolve, reject) => {
    const request = httpRequest(url, { timeout: 10_000 }, (response) => {
      let body = '';
      response.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
    });
    request.on('timeout', () => request.destroy(new Error('timed out')));
    request.on('error', reject);
    request.end();
  });

describe('approval and audit HTTP APIs with tls configured', () => {
  let dir: string;
  let certificates: TestCertificates;
  /** `tls` naming the server pair as files beside the config. */
  let tls: ReturnType<typeof writeServerPair>;
  let issuer: TestIssuer;
  let nc: NatsConnection;
  let approval: RunningApprovalService | undefined;
  let audit: AuditService | undefined;
  let consoleService: RunningConsole | undefined;
  let people: RealIdp | undefined;

  const loadedWith = (services: Record<string, unknown>, extra: Record<string, unknown> = {}): LoadedConfig => ({
    path: join(dir, 'sluice.yaml'),
    dir,
    config: parseConfig({
      bus: { url: NATS_URL, stream: STREAM, subjectPrefix: PREFIX },
      identity: { oidc: [{ issuer: issuer.issuer, audience: issuer.audience }] },
      services,
      ...extra,
    }),
  });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-https-apis-'));
    certificates = createTestCertificates();
    tls = writeServerPair(dir, certificates);
    issuer = await startTestIssuer();
    nc = await connectBus(NATS_URL, 'https-apis-test');
  });

  afterAll(async () => {
    await approval?.stop();
    await audit?.stop();
    await consoleService?.stop();
    await people?.close();
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(STREAM).catch(() => undefined);
    await nc?.drain();
    await issuer?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the approval API serves HTTPS with the configured certificate, and refuses plain HTTP', async () => {
    approval = await startApprovalService({
      loaded: loadedWith({ approval: { grpc: `127.0.0.1:${await freePort()}`, http: `127.0.0.1:${await freePort()}`, tls } }),
      logger,
    });
    const base = `https://${approval.httpAddress}`;
    expect(await httpsGet(`${base}/healthz`, certificates.caPem)).toMatchObject({ status: 200 });
    const listed = await httpsGet(`${base}/v1/approvals`, certificates.caPem, await issuer.mint({ sub: 'dba-alice', groups: ['dba'] }));
    expect(listed.status).toBe(200);
    expect(JSON.parse(listed.body)).toEqual({ approvals: [] });
    await expect(plainGet(`http://${approval.httpAddress}/healthz`)).rejects.toThrow();
    // A client that does not trust the CA is refused at the handshake.
    await expect(httpsGet(`${base}/healthz`, createTestCertificates().caPem)).rejects.toThrow(/certificate/);
  });

  it('the audit API serves HTTPS with the configured certificate, and refuses plain HTTP', async () => {
    process.env[`SLUICE_TEST_AUDIT_CERT_${RUN}`] = certificates.certPem;
    process.env[`SLUICE_TEST_AUDIT_KEY_${RUN}`] = certificates.keyPem;
    try {
      const loaded = loadedWith(
        { audit: { http: `127.0.0.1:${await freePort()}`, tls: { cert: { env: `SLUICE_TEST_AUDIT_CERT_${RUN}` }, key: { env: `SLUICE_TEST_AUDIT_KEY_${RUN}` } } } },
        { eventStore: { path: join(dir, 'events') }, audit: { readers: { groups: ['compliance'] } } },
      );
      audit = await startAuditService({ loaded, logger });
    } finally {
      delete process.env[`SLUICE_TEST_AUDIT_CERT_${RUN}`];
      delete process.env[`SLUICE_TEST_AUDIT_KEY_${RUN}`];
    }
    const base = `https://${audit.httpAddress}`;
    expect(await httpsGet(`${base}/healthz`, certificates.caPem)).toMatchObject({ status: 200 });
    const sessions = await httpsGet(`${base}/v1/sessions`, certificates.caPem, await issuer.mint({ sub: 'carol', groups: ['compliance'] }));
    expect(sessions.status).toBe(200);
    await expect(plainGet(`http://${audit.httpAddress}/healthz`)).rejects.toThrow();
  });

  it('the console serves HTTPS, its default publicUrl says https and its cookies are Secure', async () => {
    const consolePort = await freePort();
    people = await startOidcProvider([], 'sluice', { clientId: 'sluice-console', secret: 'unused', redirectUri: `https://127.0.0.1:${consolePort}/callback` });
    const loaded = loadedWith(
      { console: { http: `127.0.0.1:${consolePort}`, tls, oidc: { issuer: people.issuer, clientId: 'sluice-console' } } },
      { identity: { oidc: [{ issuer: people.issuer, audience: 'sluice' }] } },
    );
    consoleService = await startConsoleService({ loaded, logger });
    const signIn = await httpsGet(`https://127.0.0.1:${consolePort}/login`, certificates.caPem);
    expect(signIn.status).toBe(303);
    expect(new URL(String(signIn.headers?.location)).searchParams.get('redirect_uri')).toBe(`https://127.0.0.1:${consolePort}/callback`);
    expect(String(signIn.headers?.['set-cookie'])).toMatch(/HttpOnly; SameSite=Lax; Max-Age=600; Secure$/);
    await expect(plainGet(`http://127.0.0.1:${consolePort}/login`)).rejects.toThrow();
  });

  it('a tls setting that cannot be read or is not a certificate and its key refuses to start, naming the key', async () => {
    const http = `127.0.0.1:${await freePort()}`;
    const grpc = `127.0.0.1:${await freePort()}`;
    await expect(startApprovalService({ loaded: loadedWith({ approval: { grpc, http, tls: { cert: { file: 'missing.crt' }, key: { file: 'tls.key' } } } }), logger })).rejects.toThrow(
      /^services\.approval\.tls\.cert: a readable PEM certificate \(file missing\.crt cannot be read\)/,
    );
    writeFileSync(join(dir, 'not-a.crt'), 'not a certificate');
    await expect(startApprovalService({ loaded: loadedWith({ approval: { grpc, http, tls: { cert: { file: 'not-a.crt' }, key: { file: 'tls.key' } } } }), logger })).rejects.toThrow(
      /^services\.approval\.tls: a PEM certificate and its private key/,
    );
    // A key that is not the certificate's own.
    writeFileSync(join(dir, 'other.key'), createTestCertificates().keyPem);
    await expect(startApprovalService({ loaded: loadedWith({ approval: { grpc, http, tls: { cert: { file: 'tls.crt' }, key: { file: 'other.key' } } } }), logger })).rejects.toThrow(
      /^services\.approval\.tls: a PEM certificate and its private key/,
    );
  });
});
