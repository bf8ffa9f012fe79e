import { createHmac, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { jetstreamManager, DeliverPolicy } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { startApprovalService, type RunningApprovalService } from '@sluice/approval';
import { parseConfig, type LoadedConfig } from '@sluice/config';
import { MAX_JUSTIFICATION_CHARS } from '@sluice/contracts';
import { approval as proto } from '@sluice/proto';
import { createLogger } from '@sluice/service-runtime';
import { jetstream } from '@nats-io/jetstream';
import { startTestIssuer, type TestIssuer } from './support/oidc.js';
import { buttonPress, signedSlackInteraction, startSlackServer, type SlackTestServer } from './support/slack-server.js';
import { freePort } from './support/ports.js';

const run = randomBytes(4).toString('hex');
const STREAM = `APPROVAL_TEST_${run}`;
const PREFIX = `test.approval${run}.events`;
const WEBHOOK_SECRET = `whsec-${run}`;
const SIGNING_SECRET = `slack-signing-${run}`;
const env = { webhook: `SLUICE_TEST_WEBHOOK_SECRET_${run}`, bot: `SLUICE_TEST_SLACK_BOT_${run}`, signing: `SLUICE_TEST_SLACK_SIGNING_${run}` };

interface ReceivedWebhook {
  readonly raw: string;
  readonly body: Record<string, unknown>;
  readonly signature: string | undefined;
}

const waitFor = async <T>(probe: () => T | undefined, timeoutMs = 5_000): Promise<T> => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
};

type Client = InstanceType<typeof proto.ApprovalServiceClient>;
const unary = <Req, Res>(client: Client, method: string, request: Req, timeoutMs = 10_000): Promise<Res> =>
  new Promise((resolve, reject) => {
    const fn = (client as unknown as Record<string, (...args: unknown[]) => unknown>)[method]!;
    fn.call(client, request, new Metadata(), { deadline: new Date(Date.now() + timeoutMs) }, (error: ServiceError | null, response: Res) =>
      error ? reject(error) : resolve(response),
    );
  });

describe('approval service', () => {
  let issuer: TestIssuer;
  let slack: SlackTestServer;
  let webhookServer: Server;
  const webhooks: ReceivedWebhook[] = [];
  let loaded: LoadedConfig;
  let service: RunningApprovalService;
  let client: Client;
  let nc: NatsConnection;
  const logger = createLogger('approval-test');

  const start = async (): Promise<void> => {
    service = await startApprovalService({ loaded, logger, longPollMs: 1_000, webhookAttempts: 2 });
    client?.close();
    client = new proto.ApprovalServiceClient(service.grpcAddress, credentials.createInsecure());
  };

  const requestApproval = (overrides: Partial<proto.RequestApprovalRequest> = {}) =>
    unary<proto.RequestApprovalRequest, proto.RequestApprovalResponse>(client, 'requestApproval', {
      sessionId: `session-${randomBytes(3).toString('hex')}`,
      commandId: `command-${randomBytes(3).toString('hex')}`,
      resource: 'shop-db',
      requester: { sub: 'ops-agent-1', groups: ['ops-agents'], issuer: issuer.issuer },
      command: 'DELETE FROM orders',
      commandHash: `hash-${randomBytes(6).toString('hex')}`,
      risk: 'high',
      rule: 'risky-needs-dba',
      approverGroups: ['dba'],
      approverSubs: [],
      approverIssuers: [],
      minApprovals: 1,
      timeoutMs: 30_000,
      action: 'write',
      justification: '',
      ...overrides,
    });

  const awaitDecision = (approvalId: string, timeoutMs = 10_000) =>
    unary<proto.AwaitDecisionRequest, proto.AwaitDecisionResponse>(client, 'awaitDecision', { approvalId }, timeoutMs);

  /** AwaitDecision until settled (the service answers UNSPECIFIED after each long poll). */
  const settled = async (approvalId: string): Promise<proto.AwaitDecisionResponse> => {
    for (;;) {
      const response = await awaitDecision(approvalId);
      if (response.outcome !== proto.Outcome.OUTCOME_UNSPECIFIED) return response;
    }
  };

  const consume = (approvalId: string, commandHash: string) =>
    unary<proto.ConsumeApprovalRequest, proto.ConsumeApprovalResponse>(client, 'consumeApproval', { approvalId, commandHash });

  const decideOverHttp = async (approvalId: string, token: string | undefined, decision: string, reason = 'checked') => {
    const response = await fetch(`http://${service.httpAddress}/v1/approvals/${approvalId}/decision`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ decision, reason }),
    });
    return { status: response.status, contentType: response.headers.get('content-type'), body: (await response.json()) as Record<string, unknown> };
  };

  /** The approval's events as stored on the stream, in order. */
  const storedEvents = async (approvalId: string) => {
    const consumer = await jetstream(nc).consumers.get(STREAM, { filter_subjects: `${PREFIX}.approval.>`, deliver_policy: DeliverPolicy.All });
    const events: { type: string; data: { approvalId: string; justification?: string } }[] = [];
    const messages = await consumer.fetch({ max_messages: 1000, expires: 1_000 });
    for await (const message of messages) {
      const event = message.json<(typeof events)[number]>();
      if (event.data.approvalId === approvalId) events.push(event);
      if (message.info.pending === 0) break;
    }
    return events;
  };

  const dbaToken = (sub = 'dba-alice') => issuer.mint({ sub, groups: ['dba'] });

  beforeAll(async () => {
    issuer = await startTestIssuer();
    slack = await startSlackServer();
    webhookServer = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        const signature = request.headers['x-sluice-signature'];
        webhooks.push({ raw, body: JSON.parse(raw) as Record<string, unknown>, signature: Array.isArray(signature) ? signature[0] : signature });
        response.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => webhookServer.listen(0, '127.0.0.1', resolve));
    const webhookPort = (webhookServer.address() as AddressInfo).port;
    process.env[env.webhook] = WEBHOOK_SECRET;
    process.env[env.bot] = 'xoxb-test-token';
    process.env[env.signing] = SIGNING_SECRET;
    const [grpcPort, httpPort] = [await freePort(), await freePort()];
    loaded = {
      path: '',
      dir: process.cwd(),
      config: parseConfig({
        bus: { url: process.env.NATS_URL ?? 'nats://127.0.0.1:4222', stream: STREAM, subjectPrefix: PREFIX },
        identity: { oidc: [{ issuer: issuer.issuer, audience: issuer.audience }] },
        services: { approval: { grpc: `127.0.0.1:${grpcPort}`, http: `127.0.0.1:${httpPort}`, timeout: '30s' } },
        approval: {
          webhooks: [
            // A dead endpoint first: it must not hold up the live one.
            { url: `http://127.0.0.1:${await freePort()}/dead`, secret: { env: env.webhook } },
            { url: `http://127.0.0.1:${webhookPort}/approvals`, secret: { env: env.webhook } },
          ],
          slack: {
            botToken: { env: env.bot },
            channel: '#db-approvals',
            signingSecret: { env: env.signing },
            apiUrl: slack.apiUrl,
            users: { U0DBA: { sub: 'dba-slack', groups: ['dba'] }, U0DEV: { sub: 'dev-slack', groups: ['developers'] } },
          },
        },
      }),
    };
    nc = await connect({ servers: loaded.config.bus.url });
    await start();
  });

  afterAll(async () => {
    client?.close();
    await service?.stop();
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(STREAM).catch(() => undefined);
    await nc.drain();
    await issuer?.close();
    await slack?.close();
    await new Promise<void>((resolve) => webhookServer.close(() => resolve()));
    for (const name of Object.values(env)) delete process.env[name];
  });

  it('posts each request to the webhook with the fields approvers need, signed with the webhook secret', async () => {
    const { approvalId, expiresAt } = await requestApproval({ commandHash: 'hash-webhook', justification: 'ticket 42: <b>old</b> test rows' });
    const hook = await waitFor(() => webhooks.find((candidate) => candidate.body.id === approvalId));
    expect(hook.body).toMatchObject({
      id: approvalId,
      resource: 'shop-db',
      subject: 'ops-agent-1',
      command: 'DELETE FROM orders',
      commandHash: 'hash-webhook',
      risk: 'high',
      rule: 'risky-needs-dba',
      action: 'write',
      expiresAt: expiresAt!.toISOString(),
      decisionUrl: `http://${service.httpAddress}/v1/approvals/${approvalId}/decision`,
      justification: 'ticket 42: <b>old</b> test rows',
    });
    expect(hook.signature).toBe(`sha256=${createHmac('sha256', WEBHOOK_SECRET).update(hook.raw).digest('hex')}`);
  });

  it('grants when a DBA approves over the API, and the grant is used once with the exact hash', async () => {
    const { approvalId } = await requestApproval({ commandHash: 'hash-approve' });
    const waiting = settled(approvalId);
    const decided = await decideOverHttp(approvalId, await dbaToken(), 'approve', 'looks fine');
    expect(decided.status).toBe(200);
    expect(decided.body).toMatchObject({ id: approvalId, status: 'granted', commandHash: 'hash-approve' });
    const outcome = await waiting;
    expect(outcome.outcome).toBe(proto.Outcome.OUTCOME_GRANTED);
    expect(outcome.approvers).toEqual(['dba-alice']);
    expect((await consume(approvalId, 'hash-other')).ok).toBe(false);
    expect((await consume(approvalId, 'hash-approve')).ok).toBe(true);
    expect((await consume(approvalId, 'hash-approve')).ok).toBe(false);
  });

  it('stores requested, decided and executed events on the bus in order', async () => {
    const { approvalId } = await requestApproval({ commandHash: 'hash-events' });
    await decideOverHttp(approvalId, await dbaToken(), 'approve', 'ok');
    await consume(approvalId, 'hash-events');
    const types = (await storedEvents(approvalId)).map((event) => event.type);
    expect(types).toEqual(['sluice.approval.requested.v1', 'sluice.approval.decided.v1', 'sluice.approval.executed.v1']);
  });

  it('refuses a decision by someone who is not among the approvers with 403', async () => {
    const { approvalId } = await requestApproval();
    const decided = await decideOverHttp(approvalId, await issuer.mint({ sub: 'dev-bob', groups: ['developers'] }), 'approve');
    expect(decided.status).toBe(403);
    expect(decided.contentType).toContain('application/problem+json');
    expect(decided.body.code).toBe('ERR_NOT_AN_APPROVER');
  });

  it('refuses self-approval with 403 even when the requester is in the approver group', async () => {
    const { approvalId } = await requestApproval({ requester: { sub: 'ops-agent-1', groups: ['ops-agents', 'dba'], issuer: issuer.issuer } });
    const decided = await decideOverHttp(approvalId, await issuer.mint({ sub: 'ops-agent-1', groups: ['dba'] }), 'approve');
    expect(decided.status).toBe(403);
    expect(decided.body.code).toBe('ERR_SELF_APPROVAL');
  });

  it('answers 401 without a valid token and 404 for an unknown approval', async () => {
    const { approvalId } = await requestApproval();
    expect((await decideOverHttp(approvalId, undefined, 'approve')).status).toBe(401);
    expect((await decideOverHttp(approvalId, await issuer.mint({ sub: 'dba-x', groups: ['dba'], foreignKey: true }), 'approve')).status).toBe(401);
    expect((await decideOverHttp('no-such-approval', await dbaToken(), 'approve')).status).toBe(404);
  });

  it('denies when a DBA denies, answers 409 to a later decision, and the denied command cannot be consumed', async () => {
    const { approvalId } = await requestApproval({ commandHash: 'hash-deny' });
    expect((await decideOverHttp(approvalId, await dbaToken(), 'deny', 'not during business hours')).status).toBe(200);
    const outcome = await settled(approvalId);
    expect(outcome.outcome).toBe(proto.Outcome.OUTCOME_DENIED);
    expect(outcome.reason).toBe('not during business hours');
    expect((await decideOverHttp(approvalId, await dbaToken('dba-carol'), 'approve')).status).toBe(409);
    expect((await consume(approvalId, 'hash-deny')).ok).toBe(false);
  });

  it('expires a request nobody decides in time', async () => {
    const { approvalId } = await requestApproval({ timeoutMs: 300 });
    const outcome = await settled(approvalId);
    expect(outcome.outcome).toBe(proto.Outcome.OUTCOME_EXPIRED);
    expect((await decideOverHttp(approvalId, await dbaToken(), 'approve')).status).toBe(409);
  });

  it("shows the agent's justification, bounded, in the approval API and the stored approval.requested event", async () => {
    const { approvalId } = await requestApproval({ justification: `needed for\nticket 7 ${'y'.repeat(3_000)}` });
    const { justification: none } = (await (await fetch(`http://${service.httpAddress}/v1/approvals/${(await requestApproval()).approvalId}`, { headers: { authorization: `Bearer ${await dbaToken()}` } })).json()) as { justification: unknown };
    expect(none).toBeNull();
    const response = await fetch(`http://${service.httpAddress}/v1/approvals/${approvalId}`, { headers: { authorization: `Bearer ${await dbaToken()}` } });
    const { justification } = (await response.json()) as { justification: string };
    expect(justification.startsWith('needed for ticket 7 yyy')).toBe(true);
    expect(justification).toHaveLength(MAX_JUSTIFICATION_CHARS);
    const [stored] = await storedEvents(approvalId);
    expect(stored).toMatchObject({ type: 'sluice.approval.requested.v1', data: { justification } });
  });

  it('lists pending approvals for an authenticated caller', async () => {
    const { approvalId } = await requestApproval();
    const response = await fetch(`http://${service.httpAddress}/v1/approvals?status=pending`, { headers: { authorization: `Bearer ${await dbaToken()}` } });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { approvals: { id: string; status: string }[] };
    expect(body.approvals.find((approval) => approval.id === approvalId)?.status).toBe('pending');
    expect(body.approvals.every((approval) => approval.status === 'pending')).toBe(true);
  });

  it('red team: another agent of the same issuer cannot list or read approvals it neither asked for nor may decide', async () => {
    const { approvalId } = await requestApproval({ command: "UPDATE users SET api_key = 'sk-secret-in-sql'" });
    const otherAgent = await issuer.mint({ sub: 'support-agent-7', groups: ['support-agents'] });
    const listed = await fetch(`http://${service.httpAddress}/v1/approvals`, { headers: { authorization: `Bearer ${otherAgent}` } });
    expect(listed.status).toBe(200);
    const body = (await listed.json()) as { approvals: { id: string }[] };
    expect(body.approvals.map((approval) => approval.id)).not.toContain(approvalId);
    expect(JSON.stringify(body)).not.toContain('sk-secret-in-sql');
    const one = await fetch(`http://${service.httpAddress}/v1/approvals/${approvalId}`, { headers: { authorization: `Bearer ${otherAgent}` } });
    expect(one.status).toBe(404);
    // The agent that asked and the rule's approvers still see it.
    const requester = await issuer.mint({ sub: 'ops-agent-1', groups: ['ops-agents'] });
    expect((await fetch(`http://${service.httpAddress}/v1/approvals/${approvalId}`, { headers: { authorization: `Bearer ${requester}` } })).status).toBe(200);
    expect((await fetch(`http://${service.httpAddress}/v1/approvals/${approvalId}`, { headers: { authorization: `Bearer ${await dbaToken()}` } })).status).toBe(200);
  });

  it('red team: a rule that names no approvers lets no other identity (another agent) release the command', async () => {
    const { approvalId } = await requestApproval({ approverGroups: [], approverSubs: [], commandHash: 'hash-nobody' });
    const decided = await decideOverHttp(approvalId, await issuer.mint({ sub: 'other-agent', groups: ['support-agents'] }), 'approve');
    expect(decided.status).toBe(403);
    expect(decided.body.code).toBe('ERR_NOT_AN_APPROVER');
    expect((await consume(approvalId, 'hash-nobody')).ok).toBe(false);
  });

  it('keeps a pending request across a restart of the service, and it can still be decided', async () => {
    const { approvalId } = await requestApproval({ commandHash: 'hash-restart' });
    await service.stop();
    await start();
    const response = await fetch(`http://${service.httpAddress}/v1/approvals/${approvalId}`, { headers: { authorization: `Bearer ${await dbaToken()}` } });
    expect(await response.json()).toMatchObject({ id: approvalId, status: 'pending', commandHash: 'hash-restart' });
    const waiting = settled(approvalId);
    expect((await decideOverHttp(approvalId, await dbaToken(), 'approve')).status).toBe(200);
    expect((await waiting).outcome).toBe(proto.Outcome.OUTCOME_GRANTED);
    expect((await consume(approvalId, 'hash-restart')).ok).toBe(true);
  });

  it('red team: without provenance keys, a decision someone else put on the bus releases nothing at restart', async () => {
    const { approvalId } = await requestApproval({ commandHash: 'hash-forged-decision' });
    const forged = {
      specversion: '1.0',
      id: `forged-${approvalId}`,
      source: 'sluice/approval',
      type: 'sluice.approval.decided.v1',
      subject: 'session-forged',
      time: new Date().toISOString(),
      datacontenttype: 'application/json',
      data: { approvalId, decision: 'approve', approver: 'dba-mallory', reason: 'forged', final: true, via: 'api' },
    };
    await jetstream(nc).publish(`${PREFIX}.approval.decided`, new TextEncoder().encode(JSON.stringify(forged)));
    await service.stop();
    await start();
    expect(service.workflow.get(approvalId)?.status).toBe('pending');
    expect((await consume(approvalId, 'hash-forged-decision')).ok).toBe(false);
  });

  it.todo('red team: an approver named by sub or group is matched together with its issuer (a token of another configured issuer, e.g. the agents\' IdP, carrying sub "dba-alice" or group "dba" must not decide)');

  it('expires on restart a request whose time ran out while the service was down', async () => {
    const { approvalId } = await requestApproval({ timeoutMs: 200 });
    await service.stop();
    await new Promise((resolve) => setTimeout(resolve, 300));
    await start();
    expect((await settled(approvalId)).outcome).toBe(proto.Outcome.OUTCOME_EXPIRED);
  });

  describe('Slack', () => {
    const interact = (body: string, headers: Record<string, string>) =>
      fetch(`http://${service.httpAddress}/slack/interactions`, { method: 'POST', headers, body });

    it('posts a message with Approve and Deny buttons carrying the approval id', async () => {
      const { approvalId } = await requestApproval({ commandHash: 'hash-slack-post' });
      const call = await slack.waitForCall('chat.postMessage', (candidate) => JSON.stringify(candidate.args.blocks).includes(approvalId));
      expect(call.token).toBe('xoxb-test-token');
      expect(call.args.channel).toBe('#db-approvals');
      const actions = (call.args.blocks as { type: string; elements?: { action_id: string; value: string }[] }[]).find((block) => block.type === 'actions');
      expect(actions?.elements?.map((element) => [element.action_id, element.value])).toEqual([
        ['approve', approvalId],
        ['deny', approvalId],
      ]);
      expect(JSON.stringify(call.args.blocks)).toContain('hash-slack-post');
    });

    it('approves on a correctly signed button press by a mapped DBA, and updates the message', async () => {
      const { approvalId } = await requestApproval();
      await slack.waitForCall('chat.postMessage', (candidate) => JSON.stringify(candidate.args.blocks).includes(approvalId));
      const { body, headers } = signedSlackInteraction(SIGNING_SECRET, buttonPress({ userId: 'U0DBA', actionId: 'approve', approvalId, messageTs: '1700000000.000777' }));
      const response = await interact(body, headers);
      expect(response.status).toBe(200);
      const outcome = await settled(approvalId);
      expect(outcome.outcome).toBe(proto.Outcome.OUTCOME_GRANTED);
      expect(outcome.approvers).toEqual(['dba-slack']);
      const update = await slack.waitForCall('chat.update', (candidate) => JSON.stringify(candidate.args).includes(approvalId));
      expect(String(update.args.text)).toMatch(/^Approved/);
    });

    it('refuses a button press by a Slack user who is not an approver with 403', async () => {
      const { approvalId } = await requestApproval();
      const { body, headers } = signedSlackInteraction(SIGNING_SECRET, buttonPress({ userId: 'U0DEV', actionId: 'approve', approvalId }));
      expect((await interact(body, headers)).status).toBe(403);
    });

    it('refuses an interaction with a wrong signature with 401', async () => {
      const { approvalId } = await requestApproval();
      const { body, headers } = signedSlackInteraction('not-the-secret', buttonPress({ userId: 'U0DBA', actionId: 'approve', approvalId }));
      expect((await interact(body, headers)).status).toBe(401);
      const tampered = signedSlackInteraction(SIGNING_SECRET, buttonPress({ userId: 'U0DBA', actionId: 'deny', approvalId }));
      const swapped = tampered.body.replace('deny', 'approve');
      expect((await interact(swapped, tampered.headers)).status).toBe(401);
    });

    it('refuses a correctly signed interaction older than five minutes with 401', async () => {
      const { approvalId } = await requestApproval();
      const stale = Math.floor(Date.now() / 1000) - 6 * 60;
      const { body, headers } = signedSlackInteraction(SIGNING_SECRET, buttonPress({ userId: 'U0DBA', actionId: 'approve', approvalId }), stale);
      expect((await interact(body, headers)).status).toBe(401);
      const response = await fetch(`http://${service.httpAddress}/v1/approvals/${approvalId}`, { headers: { authorization: `Bearer ${await dbaToken()}` } });
      expect(((await response.json()) as { status: string }).status).toBe('pending');
    });
  });
});
