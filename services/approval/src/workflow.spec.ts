import { describe, expect, it } from 'vitest';
import { kindOfType, SluiceErrorCode, type CloudEvent } from '@sluice/contracts';
import { createLogger } from '@sluice/service-runtime';
import type { ApprovalCommand } from './approval.js';
import { ApprovalWorkflow, fromCloudEvent, type EventSink } from './workflow.js';

const logger = createLogger('workflow-test');

/** A sink whose acknowledgements the test releases by hand. */
const heldSink = () => {
  const stored: CloudEvent[] = [];
  const held: (() => void)[] = [];
  const sink: EventSink = {
    publishNow: (event) =>
      new Promise<void>((resolve) =>
        held.push(() => {
          stored.push(event);
          resolve();
        }),
      ),
  };
  const releaseAll = () => {
    for (const release of held.splice(0)) release();
  };
  return { sink, stored, releaseAll, held };
};

const request = (id: string, at = new Date(), timeoutMs = 60_000): ApprovalCommand => ({
  type: 'Request',
  id,
  sessionId: 'session-1',
  commandId: '',
  resource: 'shop-db',
  requester: { sub: 'agent', groups: ['ops-agents'], issuer: 'https://idp.example.com' },
  command: 'DELETE FROM orders',
  commandHash: 'h',
  risk: 'high',
  rule: 'risky-needs-dba',
  approvers: { groups: ['dba'], subs: [], minApprovals: 1 },
  at,
  expiresAt: new Date(at.getTime() + timeoutMs),
});

const approve: ApprovalCommand = { type: 'Decide', decision: 'approve', approver: { sub: 'dba-1', groups: ['dba'], issuer: 'https://idp.example.com' }, reason: 'ok', via: 'api', at: new Date() };

const flush = () => new Promise((resolve) => setTimeout(resolve, 10));

describe('approval workflow', () => {
  it('releases a waiting requester only after the decision event is stored', async () => {
    const { sink, stored, releaseAll } = heldSink();
    const workflow = new ApprovalWorkflow(sink, logger);
    const requested = workflow.execute('a1', request('a1'));
    await flush();
    releaseAll();
    await requested;
    let released = false;
    const waiting = workflow.waitForSettled('a1', 5_000).then((approval) => {
      released = true;
      return approval;
    });
    const decided = workflow.execute('a1', approve);
    await flush();
    expect(released).toBe(false);
    expect(workflow.get('a1')?.status).toBe('pending');
    releaseAll();
    expect((await decided).status).toBe('granted');
    expect((await waiting).status).toBe('granted');
    expect(stored.map((event) => event.type)).toEqual(['sluice.approval.requested.v1', 'sluice.approval.decided.v1']);
    expect(stored.every((event) => event.subject === 'session-1')).toBe(true);
    workflow.stop();
  });

  it('keeps the state unchanged when the event cannot be stored', async () => {
    let fail = false;
    const workflow = new ApprovalWorkflow({ publishNow: async () => { if (fail) throw new Error('bus down'); } }, logger);
    await workflow.execute('a1', request('a1'));
    fail = true;
    await expect(workflow.execute('a1', approve)).rejects.toThrow('bus down');
    expect(workflow.get('a1')?.status).toBe('pending');
    workflow.stop();
  });

  it('runs concurrent decisions on one approval one at a time, so only one wins', async () => {
    const workflow = new ApprovalWorkflow({ publishNow: async () => undefined }, logger);
    await workflow.execute('a1', request('a1'));
    const results = await Promise.allSettled([
      workflow.execute('a1', approve),
      workflow.execute('a1', { ...approve, approver: { sub: 'dba-2', groups: ['dba'], issuer: 'https://idp.example.com' }, decision: 'deny' }),
    ]);
    expect(results.map((result) => result.status)).toEqual(['fulfilled', 'rejected']);
    expect((results[1] as PromiseRejectedResult).reason.code).toBe(SluiceErrorCode.IllegalTransition);
    workflow.stop();
  });

  it('rebuilds the same state from its stored events and expires what fell due meanwhile', async () => {
    const stored: CloudEvent[] = [];
    const first = new ApprovalWorkflow({ publishNow: async (event) => void stored.push(event) }, logger);
    await first.execute('due', request('due', new Date(Date.now() - 10_000), 1_000));
    await first.execute('open', request('open'));
    await first.execute('done', request('done'));
    await first.execute('done', approve);
    first.stop();

    const second = new ApprovalWorkflow({ publishNow: async (event) => void stored.push(event) }, logger);
    for (const event of stored) second.replay(fromCloudEvent(event)!);
    expect(second.get('done')).toEqual(first.get('done'));
    expect(second.get('open')).toEqual(first.get('open'));
    second.armTimers();
    expect((await second.waitForSettled('due', 2_000)).status).toBe('expired');
    expect(second.get('open')?.status).toBe('pending');
    second.stop();
  });

  it('answers a long poll with the pending state when nothing happens before the timeout', async () => {
    const workflow = new ApprovalWorkflow({ publishNow: async () => undefined }, logger);
    await workflow.execute('a1', request('a1'));
    expect((await workflow.waitForSettled('a1', 20)).status).toBe('pending');
    await expect(workflow.waitForSettled('nope', 20)).rejects.toMatchObject({ code: SluiceErrorCode.NotFound });
    workflow.stop();
  });

  it('as N instances following one stream: a request made on one is decided on another, and the waiter on the first is released', async () => {
    // The stream: events in one order, delivered to every instance (its own too) after the ack.
    const instances: ApprovalWorkflow[] = [];
    const stream: CloudEvent[] = [];
    const sink: EventSink = {
      publishNow: async (event) => {
        stream.push(event);
        setTimeout(() => {
          for (const instance of instances) instance.observe(fromCloudEvent(event)!, event.id);
        }, 1);
      },
    };
    const a = new ApprovalWorkflow(sink, logger, {}, undefined, { followsStream: true });
    const b = new ApprovalWorkflow(sink, logger, {}, undefined, { followsStream: true });
    instances.push(a, b);
    a.armTimers();
    b.armTimers();
    await a.execute('x', request('x'));
    expect(b.get('x')?.status).toBe('pending');
    const waiting = a.waitForSettled('x', 5_000);
    // Two instances decide at once: the stream's order is the answer, the same on both.
    const [approved, denied] = await Promise.all([
      b.execute('x', approve),
      a.execute('x', { ...approve, approver: { sub: 'dba-2', groups: ['dba'], issuer: 'https://idp.example.com' }, decision: 'deny' }),
    ]);
    expect((await waiting).status).toBe('granted');
    expect(approved.status).toBe('granted');
    expect(denied.status).toBe('granted');
    expect(a.get('x')).toEqual(b.get('x'));
    expect(stream.map((event) => kindOfType(event.type))).toEqual(['approval.requested', 'approval.decided', 'approval.decided']);
    a.stop();
    b.stop();
  });

  it('fails a command whose event the stream does not deliver back in time (the caller denies and retries)', async () => {
    const workflow = new ApprovalWorkflow({ publishNow: async () => undefined }, logger, {}, undefined, { followsStream: true, observeTimeoutMs: 50 });
    await expect(workflow.execute('lost', request('lost'))).rejects.toThrow(/not seen on the stream/);
    expect(workflow.get('lost')).toBeUndefined();
    workflow.stop();
  });
});
