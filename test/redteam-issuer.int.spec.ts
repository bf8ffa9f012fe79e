import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { startApprovalService, type RunningApprovalService } from '@sluice/approval';
import { parseConfig, type LoadedConfig } from '@sluice/config';
import { SluiceErrorCode, type Subject } from '@sluice/contracts';
import { createTokenVerifier, type IssuerSettings } from '@sluice/identity';
import { approval as proto } from '@sluice/proto';
import { createLogger } from '@sluice/service-runtime';
import { startTestIssuer, type TestIssuer } from './support/oidc.js';
import { useTestPolicyService } from './support/policy-service.js';
import { freePort } from './support/ports.js';
import { buttonPress, signedSlackInteraction, startSlackServer, type SlackTestServer } from './support/slack-server.js';

/**
 * Red team of issuer scoping: an attacker holds a valid token from one configured issuer (or a
 * second, less trusted one) and tries to be taken for an identity of the other.
 */

const NATS_URL = process.env.NATS_URL || 'nats://127.0.0.1:4222';
const run = randomBytes(4).toString('hex');
const logger = createLogger('redteam-issuer-test');

/**
 * An issuer whose tokens the test writes claim by claim (iss missing, an array, another issuer's
 * name), signed with its own ES256 key published as a JWKS (no discovery: `jwksUri`). Every one
 * uses the key id `k1`, so two of them collide on it.
 */
interface RawIssuer {
  readonly issuer: string;
  readonly jwksUri: string;
  readonly publicJwk: JWK;
  sign(payload: JWTPayload, header?: Record<string, unknown>): Promise<string>;
  close(): Promise<void>;
}

const startRawIssuer = async (path = ''): Promise<RawIssuer> => {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
  const server: Server = createServer((_request, response) => {
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ keys: [publicJwk] }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const issuer = `${origin}${path}`;
  const key: CryptoKey = privateKey;
  return {
    issuer,
    jwksUri: `${origin}/jwks`,
    publicJwk,
    sign: (payload, header = {}) => new SignJWT(payload).setProtectedHeader({ alg: 'ES256', kid: 'k1', ...header }).sign(key),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
};

const now = (): number => Math.floor(Date.now() / 1000);
const claims = (iss: unknown, overrides: JWTPayload = {}): JWTPayload => ({ iss: iss as string, sub: 'agent-1', aud: 'sluice', groups: ['agents'], iat: now(), exp: now() + 300, ...overrides });
const codeOf = async (promise: Promise<unknown>): Promise<string | undefined> =>
  promise.then(
    () => undefined,
    (error: unknown) => (error as { code?: string }).code,
  );

describe('tokens from two configured issuers', () => {
  let company: RawIssuer;
  let ci: RawIssuer;
  let settings: IssuerSettings[];

  beforeAll(async () => {
    [company, ci] = await Promise.all([startRawIssuer(), startRawIssuer('/ci')]);
    settings = [
      { issuer: company.issuer, jwksUri: company.jwksUri, audience: 'sluice', clockTolerance: 0 },
      { issuer: ci.issuer, jwksUri: ci.jwksUri, audience: 'sluice-ci', clockTolerance: 0 },
    ];
  });
  afterAll(async () => {
    await Promise.all([company?.close(), ci?.close()]);
  });

  it("refuses a token the second issuer signed under the first one's name, though both publish key id k1", async () => {
    const verifier = createTokenVerifier(settings);
    // The company's keys are fetched and cached first: the forged token meets them, not the CI's.
    expect((await verifier.verify(await company.sign(claims(company.issuer)))).subject.issuer).toBe(company.issuer);
    expect(await codeOf(verifier.verify(await ci.sign(claims(company.issuer))))).toBe(SluiceErrorCode.TokenInvalid);
    // Its own token, with its own k1, is the CI's identity.
    expect((await verifier.verify(await ci.sign(claims(ci.issuer, { aud: 'sluice-ci' })))).subject).toEqual({ sub: 'agent-1', groups: ['agents'], issuer: ci.issuer });
  });

  it("refuses one issuer's token addressed to the other's audience", async () => {
    const verifier = createTokenVerifier(settings);
    expect(await codeOf(verifier.verify(await ci.sign(claims(ci.issuer, { aud: 'sluice' }))))).toBe(SluiceErrorCode.TokenInvalid);
    expect(await codeOf(verifier.verify(await company.sign(claims(company.issuer, { aud: 'sluice-ci' }))))).toBe(SluiceErrorCode.TokenInvalid);
    expect(await codeOf(verifier.verify(await ci.sign(claims(ci.issuer, { aud: ['sluice-ci', 'sluice'] }))))).toBeUndefined();
  });

  it('refuses iss missing, empty, an array, a number, or spelled differently (trailing slash, case, path)', async () => {
    const verifier = createTokenVerifier(settings);
    const upper = company.issuer.replace('http://', 'HTTP://');
    for (const iss of [undefined, '', [company.issuer], [company.issuer, ci.issuer], 42, `${company.issuer}/`, upper, `${company.issuer}/ci/`, `${ci.issuer}/`]) {
      const token = await company.sign(claims(iss));
      expect({ iss, code: await codeOf(verifier.verify(token)) }).toEqual({ iss, code: SluiceErrorCode.TokenInvalid });
    }
  });

  it("checks a token against its own issuer's keys when another issuer differs only by a trailing slash", async () => {
    // Another IdP (its own keys) configured as the company's name plus "/", and listed first.
    const other = await startRawIssuer();
    const slashed = `${company.issuer}/`;
    try {
      const verifier = createTokenVerifier([
        { issuer: slashed, jwksUri: other.jwksUri, audience: 'sluice', clockTolerance: 0 },
        { issuer: company.issuer, jwksUri: company.jwksUri, audience: 'sluice', clockTolerance: 0 },
      ]);
      expect((await verifier.verify(await company.sign(claims(company.issuer)))).subject.issuer).toBe(company.issuer);
      expect((await verifier.verify(await other.sign(claims(slashed)))).subject.issuer).toBe(slashed);
      // Neither's key passes for the other's name.
      expect(await codeOf(verifier.verify(await other.sign(claims(company.issuer))))).toBe(SluiceErrorCode.TokenInvalid);
      expect(await codeOf(verifier.verify(await company.sign(claims(slashed))))).toBe(SluiceErrorCode.TokenInvalid);
    } finally {
      await other.close();
    }
  });

  it('refuses alg none, HS256 keyed with the published public key, and an unknown key id, each under a trusted iss', async () => {
    const verifier = createTokenVerifier(settings);
    const encode = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url');
    const unsigned = `${encode({ alg: 'none', typ: 'JWT' })}.${encode(claims(company.issuer))}.`;
    expect(await codeOf(verifier.verify(unsigned))).toBe(SluiceErrorCode.TokenInvalid);
    const hmac = await new SignJWT(claims(company.issuer)).setProtectedHeader({ alg: 'HS256', kid: 'k1' }).sign(new TextEncoder().encode(JSON.stringify(company.publicJwk)));
    expect(await codeOf(verifier.verify(hmac))).toBe(SluiceErrorCode.TokenInvalid);
    expect(await codeOf(verifier.verify(await ci.sign(claims(company.issuer), { kid: 'ci-only' })))).toBe(SluiceErrorCode.TokenInvalid);
  });

  it('refuses a token without exp or sub, expired, or not yet valid (no clock tolerance configured)', async () => {
    const verifier = createTokenVerifier(settings);
    const withoutExp = claims(company.issuer);
    delete withoutExp.exp;
    expect(await codeOf(verifier.verify(await company.sign(withoutExp)))).toBe(SluiceErrorCode.TokenInvalid);
    expect(await codeOf(verifier.verify(await company.sign(claims(company.issuer, { sub: '' }))))).toBe(SluiceErrorCode.TokenInvalid);
    expect(await codeOf(verifier.verify(await company.sign(claims(company.issuer, { exp: now() - 5 }))))).toBe(SluiceErrorCode.TokenExpired);
    expect(await codeOf(verifier.verify(await company.sign(claims(company.issuer, { nbf: now() + 60 }))))).toBe(SluiceErrorCode.TokenInvalid);
  });
});

describe("the proxy's decision cache, keyed by principal", () => {
  const companyIssuer = 'https://idp.example.com';
  const ciIssuer = 'https://ci.example.com';
  const policy = useTestPolicyService('rt-issuer', {
    identity: { oidc: [{ issuer: companyIssuer, audience: 'sluice' }, { issuer: `${companyIssuer}/`, audience: 'sluice' }, { issuer: ciIssuer, audience: 'sluice' }] },
    resources: [{ name: 'db', type: 'postgres', listen: '127.0.0.1:1', target: { host: '127.0.0.1', database: 'db' }, credentials: { username: 'u' } }],
    rules: [
      { name: 'company-agents-read', effect: 'allow', subjects: { groups: ['agents'], issuer: companyIssuer }, actions: ['read'] },
      { name: 'ci-auditors-read', effect: 'allow', subjects: { groups: ['auditors'], issuer: ciIssuer }, actions: ['read'] },
      { name: 'everyone-reads-public', effect: 'allow', actions: ['read'], tables: ['public.items'] },
      { name: 'ci-never-reads-secrets', effect: 'deny', subjects: { issuer: ciIssuer }, tables: ['public.secrets'] },
    ],
  });

  const decide = (subject: Subject, text: string) => policy.port.decide(subject, 'db', { kind: 'sql', text });

  it('does not answer a subject whose group names hold the old separator with the decision cached for the groups they spell', async () => {
    const auditor = { issuer: ciIssuer, sub: 'ci-9', groups: ['auditors', 'x'] };
    expect((await decide(auditor, 'SELECT * FROM ledger')).effect).toBe('allow');
    expect((await decide(auditor, 'SELECT * FROM ledger')).effect).toBe('allow');
    const hits = policy.port.stats().hits;
    expect(hits).toBeGreaterThan(0);
    // One group named "auditors\u0002x": not an auditor.
    expect((await decide({ ...auditor, groups: ['auditors\u0002x'] }, 'SELECT * FROM ledger')).effect).toBe('deny');
    // Nor a sub that runs into the groups.
    expect((await decide({ ...auditor, sub: 'ci-9\u0001auditors', groups: ['x'] }, 'SELECT * FROM ledger')).effect).toBe('deny');
  });

  it('keeps apart the same sub and groups from issuers that differ only by a trailing slash or another issuer', async () => {
    const agent = { issuer: companyIssuer, sub: 'agent-1', groups: ['agents'] };
    expect((await decide(agent, 'SELECT * FROM ledger')).effect).toBe('allow');
    expect((await decide(agent, 'SELECT * FROM ledger')).effect).toBe('allow');
    expect((await decide({ ...agent, issuer: `${companyIssuer}/` }, 'SELECT * FROM ledger')).effect).toBe('deny');
    expect((await decide({ ...agent, issuer: ciIssuer }, 'SELECT * FROM ledger')).effect).toBe('deny');
  });

  it("applies a deny scoped to an issuer when the caller names none, after the same command was allowed to another's identity", async () => {
    const stranger = { issuer: companyIssuer, sub: 'stranger', groups: [] };
    expect((await decide(stranger, 'SELECT * FROM secrets JOIN items ON true')).effect).toBe('deny');
    expect((await decide(stranger, 'SELECT * FROM items')).effect).toBe('allow');
    expect((await decide({ ...stranger, issuer: ciIssuer }, 'SELECT * FROM items')).effect).toBe('allow');
    expect((await decide({ ...stranger, issuer: ciIssuer, groups: ['auditors'] }, 'SELECT * FROM secrets')).effect).toBe('deny');
    // No issuer at all (a caller that sent none): the CI's deny still guards, no allow scoped to an issuer grants.
    expect(await decide({ ...stranger, issuer: '', groups: ['auditors'] }, 'SELECT * FROM secrets')).toMatchObject({ effect: 'deny', rule: 'ci-never-reads-secrets' });
    expect((await decide({ ...stranger, issuer: '', groups: ['agents'] }, 'SELECT * FROM ledger')).effect).toBe('deny');
  });
});

type ApprovalClient = InstanceType<typeof proto.ApprovalServiceClient>;

describe('deciding a held command as an identity of the wrong issuer', () => {
  const stream = `RT_ISSUER_APPROVAL_${run}`;
  const prefix = `rtissuer.${run}.approval.events`;
  const signingSecret = `slack-signing-${run}`;
  const env = { bot: `SLUICE_RT_ISSUER_SLACK_BOT_${run}`, signing: `SLUICE_RT_ISSUER_SLACK_SIGNING_${run}` };
  let company: TestIssuer;
  let ci: TestIssuer;
  let slack: SlackTestServer;
  let service: RunningApprovalService;
  let client: ApprovalClient;

  beforeAll(async () => {
    [company, ci, slack] = await Promise.all([startTestIssuer(), startTestIssuer(), startSlackServer()]);
    process.env[env.bot] = 'xoxb-test-token';
    process.env[env.signing] = signingSecret;
    const loaded: LoadedConfig = {
      path: '',
      dir: process.cwd(),
      config: parseConfig({
        bus: { url: NATS_URL, stream, subjectPrefix: prefix },
        identity: { oidc: [{ issuer: company.issuer, audience: 'sluice' }, { issuer: ci.issuer, audience: 'sluice' }] },
        services: { approval: { grpc: `127.0.0.1:${await freePort()}`, http: `127.0.0.1:${await freePort()}`, timeout: '30s' } },
        approval: {
          slack: {
            botToken: { env: env.bot },
            channel: '#db-approvals',
            signingSecret: { env: env.signing },
            apiUrl: slack.apiUrl,
            users: {
              U0DBA: { sub: 'dba-slack', groups: ['dba'], issuer: company.issuer },
              U0CIDBA: { sub: 'dba-slack', groups: ['dba'], issuer: ci.issuer },
              U0NOISSUER: { sub: 'dba-slack', groups: ['dba'] },
              U0AGENT: { sub: 'agent-7', groups: ['dba'] },
            },
          },
        },
      }),
    };
    service = await startApprovalService({ loaded, logger, longPollMs: 1_000, webhookAttempts: 1 });
    client = new proto.ApprovalServiceClient(service.grpcAddress, credentials.createInsecure());
  });

  afterAll(async () => {
    client?.close();
    await service?.stop();
    const nc = await connect({ servers: NATS_URL });
    await (await jetstreamManager(nc)).streams.delete(stream).catch(() => undefined);
    await nc.close();
    await Promise.all([company?.close(), ci?.close(), slack?.close()]);
    for (const name of Object.values(env)) delete process.env[name];
  });

  /** A held command of agent-7 from the company's issuer; approvers: the dba group, from `approverIssuers` if any. */
  const hold = (approverIssuers: string[], requesterIssuer = company.issuer): Promise<string> =>
    new Promise((resolve, reject) => {
      const request: proto.RequestApprovalRequest = {
        sessionId: `session-${randomBytes(3).toString('hex')}`,
        commandId: `command-${randomBytes(3).toString('hex')}`,
        resource: 'shop-db',
        requester: { sub: 'agent-7', groups: ['agents'], issuer: requesterIssuer },
        command: 'DELETE FROM orders',
        commandHash: `hash-${randomBytes(6).toString('hex')}`,
        risk: 'high',
        rule: 'mass-deletes-need-dba',
        approverGroups: ['dba'],
        approverSubs: [],
        approverIssuers,
        minApprovals: 1,
        timeoutMs: 30_000,
        action: 'write',
        justification: '',
      };
      client.requestApproval(request, new Metadata(), { deadline: new Date(Date.now() + 10_000) }, (error: ServiceError | null, response) =>
        error ? reject(error) : resolve(response.approvalId),
      );
    });

  const decideOverHttp = async (id: string, token: string, decision = 'approve') => {
    const response = await fetch(`http://${service.httpAddress}/v1/approvals/${id}/decision`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ decision, reason: 'checked' }),
    });
    return { status: response.status, body: (await response.json()) as { code?: string; status?: string; decisions?: { approver: string; approverIssuer?: string }[] } };
  };
  const pressButton = async (userId: string, approvalId: string) => {
    const { body, headers } = signedSlackInteraction(signingSecret, buttonPress({ userId, actionId: 'approve', approvalId }));
    const response = await fetch(`http://${service.httpAddress}/slack/interactions`, { method: 'POST', headers, body });
    return { status: response.status, code: response.status === 200 ? undefined : ((await response.json()) as { code?: string }).code };
  };
  const view = async (id: string, token: string) => fetch(`http://${service.httpAddress}/v1/approvals/${id}`, { headers: { authorization: `Bearer ${token}` } });

  it("refuses the agent's own sub from the other issuer as self-approval, over the API and through a Slack mapping", async () => {
    const id = await hold([]);
    const twin = await decideOverHttp(id, await ci.mint({ sub: 'agent-7', groups: ['dba'] }));
    expect(twin).toMatchObject({ status: 403, body: { code: SluiceErrorCode.SelfApproval } });
    expect(await pressButton('U0AGENT', id)).toEqual({ status: 403, code: SluiceErrorCode.SelfApproval });
  });

  it("refuses the other issuer's DBA, over the API and in Slack, when the approvers name the company's issuer", async () => {
    const id = await hold([company.issuer]);
    expect(await decideOverHttp(id, await ci.mint({ sub: 'dba-slack', groups: ['dba'] }))).toMatchObject({ status: 403, body: { code: SluiceErrorCode.NotAnApprover } });
    expect(await pressButton('U0CIDBA', id)).toEqual({ status: 403, code: SluiceErrorCode.NotAnApprover });
    expect(await pressButton('U0NOISSUER', id)).toEqual({ status: 403, code: SluiceErrorCode.NotAnApprover });
    // Nor may they read it; the company's DBA may, and decides.
    expect((await view(id, await ci.mint({ sub: 'dba-slack', groups: ['dba'] }))).status).toBe(404);
    expect((await view(id, await ci.mint({ sub: 'agent-7', groups: ['agents'] }))).status).toBe(404);
    expect((await view(id, await company.mint({ sub: 'agent-7', groups: ['agents'] }))).status).toBe(200);
    expect(await pressButton('U0DBA', id)).toEqual({ status: 200, code: undefined });
  });

  it('answers a Slack user id named like an Object property as unmapped (403), not with the prototype', async () => {
    const id = await hold([]);
    for (const userId of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
      expect({ userId, ...(await pressButton(userId, id)) }).toEqual({ userId, status: 403, code: SluiceErrorCode.NotAnApprover });
    }
  });

  it("shows approvers which issuer's agent asked: an agent of the other issuer may take a trusted agent's name", async () => {
    const id = await hold([], ci.issuer);
    const message = await slack.waitForCall('chat.postMessage', (call) => JSON.stringify(call.args.blocks).includes(id));
    expect(JSON.stringify(message.args.blocks)).toContain(`agent-7 (from ${ci.issuer})`);
    expect(String(message.args.text)).toContain(`agent-7 (from ${ci.issuer})`);
    const shown = await view(id, await ci.mint({ sub: 'agent-7', groups: [] }));
    expect(((await shown.json()) as { requester: unknown }).requester).toEqual({ sub: 'agent-7', groups: ['agents'], issuer: ci.issuer });
  });

  it("records which issuer's approver decided, since two may name the same sub", async () => {
    const id = await hold([]);
    const decided = await decideOverHttp(id, await ci.mint({ sub: 'dba-1', groups: ['dba'] }));
    expect(decided.status).toBe(200);
    expect(decided.body.decisions).toEqual([expect.objectContaining({ approver: 'dba-1', approverIssuer: ci.issuer })]);
  });
});
