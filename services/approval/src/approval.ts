import {
  boundJustification,
  mayDecide,
  SluiceError,
  SluiceErrorCode,
  type Action,
  type ApproverIdentity,
  type ApproverRule,
  type ApprovalCancelled,
  type ApprovalDecided,
  type ApprovalExecuted,
  type ApprovalExpired,
  type ApprovalRequested,
  type Risk,
} from '@sluice/contracts';

/**
 * The approval aggregate as a decider: `decide(command, state)` answers with the events a command
 * causes (or throws why it may not happen), `evolve(state, event)` folds an event into the state.
 * Time always comes in the command, so the same history decides the same way after a replay.
 */

// The approver test lives in @sluice/contracts so that the console shows exactly what this decides.
export { mayDecide, type ApproverIdentity, type ApproverRule } from '@sluice/contracts';

export type DecisionVia = ApprovalDecided['via'];

/** Events of one approval as the decider sees them; the CloudEvent envelope is built around them. */
export type ApprovalEvent =
  | { readonly type: 'approval.requested'; readonly sessionId: string; readonly at: string; readonly data: ApprovalRequested }
  | { readonly type: 'approval.decided'; readonly at: string; readonly data: ApprovalDecided }
  | { readonly type: 'approval.expired'; readonly at: string; readonly data: ApprovalExpired }
  | { readonly type: 'approval.cancelled'; readonly at: string; readonly data: ApprovalCancelled }
  | { readonly type: 'approval.executed'; readonly at: string; readonly data: ApprovalExecuted };

export type ApprovalCommand =
  | {
      readonly type: 'Request';
      readonly id: string;
      readonly sessionId: string;
      readonly commandId: string;
      readonly resource: string;
      readonly requester: ApproverIdentity;
      readonly command: string;
      readonly commandHash: string;
      readonly risk: Risk;
      readonly rule: string;
      readonly action?: Action;
      readonly approvers: ApproverRule;
      readonly at: Date;
      readonly expiresAt: Date;
      /** The agent's own words; bounded again here, whoever sent it. */
      readonly justification?: string;
    }
  | {
      readonly type: 'Decide';
      readonly decision: 'approve' | 'deny';
      readonly approver: ApproverIdentity;
      readonly reason: string;
      readonly via: DecisionVia;
      readonly at: Date;
    }
  | { readonly type: 'Expire'; readonly at: Date }
  | { readonly type: 'Cancel'; readonly reason: string; readonly at: Date }
  | { readonly type: 'Consume'; readonly commandHash: string; readonly at: Date };

export interface RecordedDecision {
  readonly approver: string;
  readonly approverIssuer?: string;
  readonly decision: 'approve' | 'deny';
  readonly reason: string;
  readonly via: DecisionVia;
  readonly at: string;
}

interface Requested {
  readonly id: string;
  readonly sessionId: string;
  readonly request: ApprovalRequested;
  readonly requestedAt: string;
  readonly decisions: readonly RecordedDecision[];
}

export type Approval =
  | { readonly status: 'none' }
  | (Requested & { readonly status: 'pending' })
  | (Requested & { readonly status: 'granted'; readonly decidedAt: string })
  | (Requested & { readonly status: 'denied'; readonly decidedAt: string })
  | (Requested & { readonly status: 'expired'; readonly decidedAt: string })
  | (Requested & { readonly status: 'cancelled'; readonly decidedAt: string; readonly reason: string })
  | (Requested & { readonly status: 'executed'; readonly decidedAt: string; readonly executedAt: string });

export type ApprovalStatus = Approval['status'];
export type KnownApproval = Exclude<Approval, { status: 'none' }>;

export const initialState: Approval = { status: 'none' };

/** Final for the requester: AwaitDecision answers once one of these is reached. */
export const isSettled = (state: Approval): boolean => state.status !== 'none' && state.status !== 'pending';

export class IllegalTransitionError extends SluiceError {
  readonly code = SluiceErrorCode.IllegalTransition;
  override readonly expose = true;
  constructor(
    readonly status: ApprovalStatus,
    readonly command: ApprovalCommand['type'],
    detail?: string,
  ) {
    super(`cannot ${command} an approval that is ${status}${detail ? ` (${detail})` : ''}`);
  }
}

export class SelfApprovalError extends SluiceError {
  readonly code = SluiceErrorCode.SelfApproval;
  override readonly expose = true;
  constructor() {
    super('the requester may not decide their own request');
  }
}

export class NotAnApproverError extends SluiceError {
  readonly code = SluiceErrorCode.NotAnApprover;
  override readonly expose = true;
  constructor(readonly approver: string) {
    super(`${approver} is not an approver of this request`);
  }
}


const iso = (date: Date): string => date.toISOString();

export const decide = (command: ApprovalCommand, state: Approval): ApprovalEvent[] => {
  switch (command.type) {
    case 'Request': {
      if (state.status !== 'none') throw new IllegalTransitionError(state.status, command.type);
      const justification = boundJustification(command.justification);
      return [
        {
          type: 'approval.requested',
          sessionId: command.sessionId,
          at: iso(command.at),
          data: {
            approvalId: command.id,
            commandId: command.commandId,
            resource: command.resource,
            subject: command.requester.issuer
              ? { sub: command.requester.sub, groups: [...command.requester.groups], issuer: command.requester.issuer }
              : { sub: command.requester.sub, groups: [...command.requester.groups] },
            command: command.command,
            commandHash: command.commandHash,
            risk: command.risk,
            rule: command.rule,
            ...(command.action === undefined ? {} : { action: command.action }),
            expiresAt: iso(command.expiresAt),
            approvers: {
              groups: [...command.approvers.groups],
              subs: [...command.approvers.subs],
              minApprovals: Math.max(1, command.approvers.minApprovals),
              ...(command.approvers.issuers?.length ? { issuers: [...command.approvers.issuers] } : {}),
            },
            ...(justification === undefined ? {} : { justification }),
          },
        },
      ];
    }
    case 'Decide': {
      if (state.status !== 'pending') throw new IllegalTransitionError(state.status, command.type);
      if (command.at.getTime() >= Date.parse(state.request.expiresAt)) {
        throw new IllegalTransitionError(state.status, command.type, 'the request has expired');
      }
      if (command.approver.sub === state.request.subject.sub) throw new SelfApprovalError();
      if (!mayDecide(state.request.approvers, command.approver)) throw new NotAnApproverError(command.approver.sub);
      if (state.decisions.some((decision) => decision.approver === command.approver.sub)) {
        throw new IllegalTransitionError(state.status, command.type, `${command.approver.sub} has already decided`);
      }
      const approvals = state.decisions.filter((decision) => decision.decision === 'approve').length;
      // A deny is final at once; approvals are final when minApprovals distinct approvers agreed.
      const final = command.decision === 'deny' || approvals + 1 >= state.request.approvers.minApprovals;
      return [
        {
          type: 'approval.decided',
          at: iso(command.at),
          data: {
            approvalId: state.id,
            decision: command.decision,
            approver: command.approver.sub,
            ...(command.approver.issuer ? { approverIssuer: command.approver.issuer } : {}),
            reason: command.reason,
            final,
            via: command.via,
          },
        },
      ];
    }
    case 'Expire': {
      if (state.status !== 'pending') throw new IllegalTransitionError(state.status, command.type);
      if (command.at.getTime() < Date.parse(state.request.expiresAt)) {
        throw new IllegalTransitionError(state.status, command.type, 'not yet due');
      }
      return [{ type: 'approval.expired', at: iso(command.at), data: { approvalId: state.id } }];
    }
    case 'Cancel': {
      // A grant not yet used may still be cancelled: the agent that asked has gone.
      if (state.status !== 'pending' && state.status !== 'granted') throw new IllegalTransitionError(state.status, command.type);
      return [{ type: 'approval.cancelled', at: iso(command.at), data: { approvalId: state.id, reason: command.reason } }];
    }
    case 'Consume': {
      if (state.status !== 'granted') throw new IllegalTransitionError(state.status, command.type);
      if (command.commandHash !== state.request.commandHash) {
        throw new IllegalTransitionError(state.status, command.type, 'the command differs from the one approved');
      }
      return [{ type: 'approval.executed', at: iso(command.at), data: { approvalId: state.id, commandHash: command.commandHash } }];
    }
    default: {
      const unreachable: never = command;
      throw new Error(`unknown command ${String((unreachable as { type?: unknown }).type)}`);
    }
  }
};

/** Folds one event into the state; never throws, an event that does not fit is ignored. */
export const evolve = (state: Approval, event: ApprovalEvent): Approval => {
  switch (event.type) {
    case 'approval.requested':
      if (state.status !== 'none') return state;
      return {
        status: 'pending',
        id: event.data.approvalId,
        sessionId: event.sessionId,
        request: event.data,
        requestedAt: event.at,
        decisions: [],
      };
    case 'approval.decided': {
      if (state.status !== 'pending') return state;
      // One decision per approver, as decide enforces: a stored decision replayed on the bus
      // (same signed bytes, another msg id) must not count again toward minApprovals.
      if (state.decisions.some((decision) => decision.approver === event.data.approver)) return state;
      const decisions = [
        ...state.decisions,
        {
          approver: event.data.approver,
          ...(event.data.approverIssuer === undefined ? {} : { approverIssuer: event.data.approverIssuer }),
          decision: event.data.decision,
          reason: event.data.reason,
          via: event.data.via,
          at: event.at,
        },
      ];
      // Settled by the history, not by the event's `final`: two instances each storing an
      // approval they saw as the first of two both say final=false, yet together they are two.
      if (event.data.decision === 'deny') return { ...state, decisions, status: 'denied', decidedAt: event.at };
      const approvals = decisions.filter((decision) => decision.decision === 'approve').length;
      if (approvals < state.request.approvers.minApprovals) return { ...state, decisions };
      return { ...state, decisions, status: 'granted', decidedAt: event.at };
    }
    case 'approval.expired':
      if (state.status !== 'pending') return state;
      return { ...state, status: 'expired', decidedAt: event.at };
    case 'approval.cancelled':
      if (state.status !== 'pending' && state.status !== 'granted') return state;
      return { ...state, status: 'cancelled', decidedAt: event.at, reason: event.data.reason };
    case 'approval.executed':
      if (state.status !== 'granted') return state;
      return { ...state, status: 'executed', executedAt: event.at };
    default:
      return state;
  }
};

export const fold = (events: readonly ApprovalEvent[], state: Approval = initialState): Approval => events.reduce(evolve, state);
