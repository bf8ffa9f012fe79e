import { describe, expect, it } from 'vitest';
import { MAX_JUSTIFICATION_CHARS, SluiceErrorCode } from '@sluice/contracts';
import { decide, evolve, fold, initialState, type Approval, type ApprovalCommand, type ApprovalEvent } from './approval.js';

const t0 = new Date('2026-01-01T00:00:00Z');
const at = (seconds: number): Date => new Date(t0.getTime() + seconds * 1000);

const request = (overrides: Partial<Extract<ApprovalCommand, { type: 'Request' }>> = {}): ApprovalCommand => ({
  type: 'Request',
  id: 'a1',
  sessionId: 's1',
  commandId: 'c1',
  resource: 'shop-db',
  requester: { sub: 'agent-1', groups: ['ops-agents'], issuer: 'https://idp.example.com' },
  command: 'DELETE FROM orders',
  commandHash: 'h1',
  risk: 'high',
  rule: 'risky-needs-dba',
  approvers: { groups: ['dba'], subs: [], minApprovals: 1 },
  at: t0,
  expiresAt: at(120),
  ...overrides,
});

const approve = (sub: string, seconds = 1, groups = ['dba']): ApprovalCommand => ({
  type: 'Decide',
  decision: 'approve',
  approver: { sub, groups, issuer: 'https://idp.example.com' },
  reason: 'ok',
  via: 'api',
  at: at(seconds),
});

/** given events, when a command: the events it yields, or the code of the error it throws. */
const given = (events: readonly ApprovalEvent[]) => {
  const state = fold(events);
  return {
    state,
    when(command: ApprovalCommand) {
      try {
        const produced = decide(command, state);
        return { events: produced, state: produced.reduce(evolve, state), code: undefined };
      } catch (error) {
        return { events: [], state, code: (error as { code?: string }).code };
      }
    },
  };
};

const requested = (overrides: Partial<Extract<ApprovalCommand, { type: 'Request' }>> = {}): ApprovalEvent[] =>
  decide(request(overrides), initialState);

const after = (history: ApprovalEvent[], command: ApprovalCommand): ApprovalEvent[] => [...history, ...decide(command, fold(history))];

describe('approval decider', () => {
  it('records a request as pending with its command hash and expiry', () => {
    const { state, events } = given([]).when(request());
    expect(events.map((event) => event.type)).toEqual(['approval.requested']);
    expect(state.status).toBe('pending');
    expect(state.status === 'pending' && state.request.commandHash).toBe('h1');
    expect(state.status === 'pending' && state.request.expiresAt).toBe(at(120).toISOString());
  });

  it("carries the agent's justification in approval.requested, bounded to one line, and leaves it out when none is given", () => {
    const event = requested({ justification: ' ticket 42\nold rows\u202e ' + 'x'.repeat(2_000) })[0]!;
    const justification = event.type === 'approval.requested' ? event.data.justification : undefined;
    expect(justification?.startsWith('ticket 42 old rows x')).toBe(true);
    expect(Array.from(justification ?? '')).toHaveLength(MAX_JUSTIFICATION_CHARS);
    const none = requested({ justification: ' \n ' })[0]!;
    expect(none.type === 'approval.requested' && 'justification' in none.data).toBe(false);
  });

  it('decides the same with or without a justification: it is shown, never weighed', () => {
    const plain = given(requested()).when(approve('dba-1'));
    const justified = given(requested({ justification: 'approve me, I am allowed to self-approve' })).when(approve('dba-1'));
    expect(justified.state.status).toBe(plain.state.status);
    const self = requested({ requester: { sub: 'agent-1', groups: ['dba'], issuer: 'https://idp.example.com' }, justification: 'I am the DBA on call' });
    expect(given(self).when(approve('agent-1')).code).toBe(SluiceErrorCode.SelfApproval);
  });

  it('grants when an approver in the rule approves a pending request', () => {
    const { state, events } = given(requested()).when(approve('dba-1'));
    expect(events).toEqual([
      expect.objectContaining({ type: 'approval.decided', data: expect.objectContaining({ decision: 'approve', approver: 'dba-1', final: true }) }),
    ]);
    expect(state.status).toBe('granted');
  });

  it("records the approver's issuer beside the sub: another issuer may name the same approver", () => {
    const { state, events } = given(requested()).when(approve('dba-1'));
    expect(events[0]?.type === 'approval.decided' && events[0].data.approverIssuer).toBe('https://idp.example.com');
    expect(state.status === 'granted' && state.decisions[0]?.approverIssuer).toBe('https://idp.example.com');
  });

  it("refuses the requester's sub from another issuer as self-approval (the same name may be the same person)", () => {
    const history = requested({ requester: { sub: 'agent-1', groups: ['ops-agents'], issuer: 'https://idp.example.com' } });
    const twin: ApprovalCommand = { ...approve('agent-1'), approver: { sub: 'agent-1', groups: ['dba'], issuer: 'https://ci.example.com' } } as ApprovalCommand;
    expect(given(history).when(twin).code).toBe(SluiceErrorCode.SelfApproval);
  });

  it('refuses self-approval even when the requester is in the approver group', () => {
    const history = requested({ requester: { sub: 'agent-1', groups: ['dba'], issuer: 'https://idp.example.com' } });
    expect(given(history).when(approve('agent-1')).code).toBe(SluiceErrorCode.SelfApproval);
  });

  it('refuses a decision by someone outside the rule approvers', () => {
    expect(given(requested()).when(approve('dev-1', 1, ['developers'])).code).toBe(SluiceErrorCode.NotAnApprover);
  });

  it('accepts an approver listed by subject when the rule names subs', () => {
    const history = requested({ approvers: { groups: [], subs: ['alice'], minApprovals: 1 } });
    expect(given(history).when(approve('alice', 1, [])).state.status).toBe('granted');
  });

  it('lets nobody decide when the rule names no approvers (fail closed: the request can only expire)', () => {
    const history = requested({ approvers: { groups: [], subs: [], minApprovals: 1 } });
    expect(given(history).when(approve('someone', 1, [])).code).toBe(SluiceErrorCode.NotAnApprover);
    expect(given(history).when(approve('dba-1')).code).toBe(SluiceErrorCode.NotAnApprover);
  });

  it('refuses a second decision once the request is decided', () => {
    const history = after(requested(), approve('dba-1'));
    expect(given(history).when(approve('dba-2')).code).toBe(SluiceErrorCode.IllegalTransition);
    expect(given(history).when({ ...approve('dba-2'), decision: 'deny' } as ApprovalCommand).code).toBe(SluiceErrorCode.IllegalTransition);
  });

  it('makes a deny final at once, whatever minApprovals says', () => {
    const history = after(requested({ approvers: { groups: ['dba'], subs: [], minApprovals: 2 } }), approve('dba-1'));
    const denied = given(history).when({ ...approve('dba-2'), decision: 'deny' } as ApprovalCommand);
    expect(denied.state.status).toBe('denied');
    expect(given([...history, ...denied.events]).when({ type: 'Consume', commandHash: 'h1', at: at(2) }).code).toBe(
      SluiceErrorCode.IllegalTransition,
    );
  });

  it('counts a decision replayed from the stream once, so N-of-M still needs N distinct approvers', () => {
    const history = after(requested({ approvers: { groups: ['dba'], subs: [], minApprovals: 3 } }), approve('dba-1'));
    const decided = history.at(-1)!;
    const replayed = [...history, decided, decided];
    const state = fold(replayed);
    expect(state.status === 'pending' ? state.decisions : undefined).toHaveLength(1);
    expect(given(replayed).when(approve('dba-2', 2)).state.status).toBe('pending');
  });

  it('needs N distinct approvers when minApprovals is N', () => {
    let history = requested({ approvers: { groups: ['dba'], subs: [], minApprovals: 2 } });
    const first = given(history).when(approve('dba-1'));
    expect(first.state.status).toBe('pending');
    expect(first.events[0]?.type === 'approval.decided' && first.events[0].data.final).toBe(false);
    history = [...history, ...first.events];
    expect(given(history).when(approve('dba-1', 2)).code).toBe(SluiceErrorCode.IllegalTransition);
    expect(given(history).when(approve('dba-2', 2)).state.status).toBe('granted');
  });

  it('grants on the Nth distinct approval folded, whatever each decider saw: two instances racing both store final=false', () => {
    const history = requested({ approvers: { groups: ['dba'], subs: [], minApprovals: 2 } });
    // Each instance decides against the same state (neither has seen the other's event yet).
    const onA = given(history).when(approve('dba-1')).events;
    const onB = given(history).when(approve('dba-2')).events;
    expect([...onA, ...onB].map((event) => event.type === 'approval.decided' && event.data.final)).toEqual([false, false]);
    const state = fold([...history, ...onA, ...onB]);
    expect(state.status).toBe('granted');
    // A decided event that claims final too early does not grant.
    const early = onA.map((event) => (event.type === 'approval.decided' ? { ...event, data: { ...event.data, final: true } } : event));
    expect(fold([...history, ...early]).status).toBe('pending');
  });

  it('expires a pending request once its expiry is reached, and not before', () => {
    expect(given(requested()).when({ type: 'Expire', at: at(119) }).code).toBe(SluiceErrorCode.IllegalTransition);
    const { state } = given(requested()).when({ type: 'Expire', at: at(120) });
    expect(state.status).toBe('expired');
  });

  it('refuses a decision that arrives after the expiry time', () => {
    expect(given(requested()).when(approve('dba-1', 121)).code).toBe(SluiceErrorCode.IllegalTransition);
  });

  it('refuses to decide an expired request', () => {
    const history = after(requested(), { type: 'Expire', at: at(120) });
    expect(given(history).when(approve('dba-1', 1)).code).toBe(SluiceErrorCode.IllegalTransition);
  });

  it('consumes a grant once with the granted hash and refuses a second use', () => {
    const history = after(requested(), approve('dba-1'));
    const first = given(history).when({ type: 'Consume', commandHash: 'h1', at: at(2) });
    expect(first.state.status).toBe('executed');
    expect(given([...history, ...first.events]).when({ type: 'Consume', commandHash: 'h1', at: at(3) }).code).toBe(
      SluiceErrorCode.IllegalTransition,
    );
  });

  it('refuses to consume a grant with another command hash', () => {
    const history = after(requested(), approve('dba-1'));
    const result = given(history).when({ type: 'Consume', commandHash: 'h2', at: at(2) });
    expect(result.code).toBe(SluiceErrorCode.IllegalTransition);
    expect(result.state.status).toBe('granted');
  });

  it('refuses to consume a request that is still pending', () => {
    expect(given(requested()).when({ type: 'Consume', commandHash: 'h1', at: at(2) }).code).toBe(SluiceErrorCode.IllegalTransition);
  });

  it('cancels a pending request and refuses decisions afterwards', () => {
    const history = after(requested(), { type: 'Cancel', reason: 'client disconnected', at: at(5) });
    const state = fold(history) as Extract<Approval, { status: 'cancelled' }>;
    expect(state.status).toBe('cancelled');
    expect(state.reason).toBe('client disconnected');
    expect(given(history).when(approve('dba-1', 6)).code).toBe(SluiceErrorCode.IllegalTransition);
  });

  it('refuses a second request with the same id', () => {
    expect(given(requested()).when(request()).code).toBe(SluiceErrorCode.IllegalTransition);
  });

  it('ignores events that do not fit the state when evolving', () => {
    const state = fold([{ type: 'approval.executed', at: t0.toISOString(), data: { approvalId: 'a1', commandHash: 'h1' } }]);
    expect(state).toBe(initialState);
  });
});
