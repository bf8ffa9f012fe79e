import { afterEach, describe, expect, it } from 'vitest';
import { Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { SluiceErrorCode } from '@sluice/contracts';
import { approval as proto } from '@sluice/proto';
import { createLogger } from '@sluice/service-runtime';
import type { ApproveDecision } from '@sluice/contracts';
import type { ApprovalRequest } from '../ports.js';
import { createApprovalPort } from './approval-client.js';

type Handler<Req, Res> = (request: Req) => Res | Promise<Res>;

interface FakeBehaviour {
  requestApproval: Handler<proto.RequestApprovalRequest, proto.RequestApprovalResponse>;
  awaitDecision: Handler<proto.AwaitDecisionRequest, proto.AwaitDecisionResponse>;
  cancelApproval: Handler<proto.CancelApprovalRequest, proto.CancelApprovalResponse>;
  consumeApproval: Handler<proto.ConsumeApprovalRequest, proto.ConsumeApprovalResponse>;
}

const unary =
  <Req, Res>(pick: () => Handler<Req, Res>) =>
  (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
    Promise.resolve()
      .then(() => pick()(call.request))
      .then(
        (response) => callback(null, response),
        (error: Error) => callback(error),
      );
  };

/** A stand-in ApprovalService on a real gRPC server, so the client is tested over the wire. */
const startFake = async (behaviour: FakeBehaviour, port = 0): Promise<{ address: string; server: Server }> => {
  const server = new Server();
  server.addService(proto.ApprovalServiceService, {
    requestApproval: unary(() => behaviour.requestApproval),
    awaitDecision: unary(() => behaviour.awaitDecision),
    cancelApproval: unary(() => behaviour.cancelApproval),
    consumeApproval: unary(() => behaviour.consumeApproval),
  });
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (error, actual) => (error ? reject(error) : resolve(actual))),
  );
  return { address: `127.0.0.1:${bound}`, server };
};

const decision: ApproveDecision = {
  effect: 'approve',
  rule: 'risky-needs-dba',
  reason: 'high risk',
  action: 'write',
  risk: 'high',
  tables: ['public.orders'],
  approvers: { groups: ['dba'], subs: ['alice'], minApprovals: 2 },
  approvalTimeoutMs: 60_000,
  maskProfile: undefined,
  prepares: [],
};

const approvalRequest: ApprovalRequest = {
  sessionId: 's-1',
  commandId: 'c-1',
  resource: 'shop-db',
  subject: { sub: 'ops-agent-1', groups: ['ops-agents'], issuer: 'http://issuer' },
  command: 'DELETE FROM orders',
  commandHash: 'h-1',
  decision,
};

const logger = createLogger('approval-client-test');
const pending = (): proto.AwaitDecisionResponse => ({ outcome: proto.Outcome.OUTCOME_UNSPECIFIED, approvers: [], reason: '', commandHash: '' });
const granted = (): proto.AwaitDecisionResponse => ({ outcome: proto.Outcome.OUTCOME_GRANTED, approvers: ['dba-alice'], reason: 'ok', commandHash: 'h-1' });

const baseBehaviour = (): FakeBehaviour => ({
  requestApproval: () => ({ approvalId: 'a-1', expiresAt: new Date(Date.now() + 60_000) }),
  awaitDecision: granted,
  cancelApproval: () => ({}),
  consumeApproval: () => ({ ok: true }),
});

describe('approval client', () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => {
    for (const cleanup of cleanups.splice(0)) cleanup();
  });

  const setup = async (behaviour: FakeBehaviour) => {
    const fake = await startFake(behaviour);
    const port = createApprovalPort(fake.address, { logger, callTimeoutMs: 1_000 });
    cleanups.push(() => port.close(), () => fake.server.forceShutdown());
    return { fake, port };
  };

  it('sends the request with the rule approvers, risk and timeout, and returns the id and expiry', async () => {
    const seen: proto.RequestApprovalRequest[] = [];
    const behaviour = { ...baseBehaviour(), requestApproval: (request: proto.RequestApprovalRequest) => (seen.push(request), { approvalId: 'a-9', expiresAt: new Date('2030-01-01T00:00:00Z') }) };
    const { port } = await setup(behaviour);
    const result = await port.request(approvalRequest);
    expect(result).toEqual({ approvalId: 'a-9', expiresAt: new Date('2030-01-01T00:00:00Z') });
    expect(seen[0]).toMatchObject({
      sessionId: 's-1',
      commandId: 'c-1',
      resource: 'shop-db',
      requester: { sub: 'ops-agent-1', groups: ['ops-agents'] },
      commandHash: 'h-1',
      risk: 'high',
      rule: 'risky-needs-dba',
      approverGroups: ['dba'],
      approverSubs: ['alice'],
      minApprovals: 2,
      timeoutMs: 60_000,
      action: 'write',
    });
  });

  it('fails closed with ERR_APPROVAL_UNAVAILABLE when the service cannot be reached', async () => {
    const fake = await startFake(baseBehaviour());
    const address = fake.address;
    fake.server.forceShutdown();
    const port = createApprovalPort(address, { logger, callTimeoutMs: 500 });
    cleanups.push(() => port.close());
    await expect(port.request(approvalRequest)).rejects.toMatchObject({ code: SluiceErrorCode.ApprovalUnavailable });
  });

  it('keeps polling while the service answers "not yet" and resolves with the decision', async () => {
    let polls = 0;
    const { port } = await setup({ ...baseBehaviour(), awaitDecision: () => (++polls < 3 ? pending() : granted()) });
    const outcome = await port.awaitDecision('a-1', new AbortController().signal);
    expect(outcome).toEqual({ outcome: 'granted', approvers: ['dba-alice'], reason: 'ok' });
    expect(polls).toBe(3);
  });

  it('rides out a restart of the service while waiting for the decision', async () => {
    let first = true;
    const behaviour: FakeBehaviour = {
      ...baseBehaviour(),
      awaitDecision: async () => {
        if (!first) return { outcome: proto.Outcome.OUTCOME_DENIED, approvers: ['dba-bob'], reason: 'no', commandHash: 'h-1' };
        first = false;
        return pending();
      },
    };
    const { fake, port } = await setup(behaviour);
    const portNumber = Number(fake.address.split(':')[1]);
    fake.server.forceShutdown();
    const waiting = port.awaitDecision('a-1', new AbortController().signal);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const restarted = await startFake(behaviour, portNumber);
    cleanups.push(() => restarted.server.forceShutdown());
    await expect(waiting).resolves.toMatchObject({ outcome: 'denied', approvers: ['dba-bob'] });
  });

  it('cancels the request when the wait is aborted (the agent disconnected)', async () => {
    const cancelled: proto.CancelApprovalRequest[] = [];
    let release: (() => void) | undefined;
    const { port } = await setup({
      ...baseBehaviour(),
      awaitDecision: () => new Promise((resolve) => (release = () => resolve(pending()))),
      cancelApproval: (request) => (cancelled.push(request), {}),
    });
    const abort = new AbortController();
    const waiting = port.awaitDecision('a-1', abort.signal);
    await new Promise((resolve) => setTimeout(resolve, 100));
    abort.abort();
    await expect(waiting).resolves.toMatchObject({ outcome: 'cancelled' });
    release?.();
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(cancelled.map((request) => request.approvalId)).toEqual(['a-1']);
  });

  it('consumes with the command hash and reports false when the service refuses or is gone', async () => {
    const seen: proto.ConsumeApprovalRequest[] = [];
    const { fake, port } = await setup({ ...baseBehaviour(), consumeApproval: (request) => (seen.push(request), { ok: request.commandHash === 'h-1' }) });
    expect(await port.consume('a-1', 'h-1')).toBe(true);
    expect(await port.consume('a-1', 'h-other')).toBe(false);
    expect(seen.map((request) => request.commandHash)).toEqual(['h-1', 'h-other']);
    fake.server.forceShutdown();
    const slow = createApprovalPort(fake.address, { logger, callTimeoutMs: 200, consumeRetryMs: 500 });
    cleanups.push(() => slow.close());
    expect(await slow.consume('a-1', 'h-1')).toBe(false);
  });
});
