import { status as GrpcStatus, type ServerErrorResponse, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { ACTIONS, RISKS, SluiceError, SluiceErrorCode, type Action, type Risk } from '@sluice/contracts';
import { timeOrderedId } from '@sluice/event-bus';
import { approval as proto } from '@sluice/proto';
import { invalidArgument, toGrpcError, type Logger } from '@sluice/service-runtime';
import type { KnownApproval } from './approval.js';
import type { ApprovalWorkflow } from './workflow.js';

export interface GrpcDeps {
  readonly workflow: ApprovalWorkflow;
  readonly logger: Logger;
  /** Expiry when the request names none (services.approval.timeout). */
  readonly defaultTimeoutMs: number;
  /** How long one AwaitDecision call waits before answering UNSPECIFIED (the client asks again). */
  readonly longPollMs?: number;
  readonly now?: () => Date;
  readonly newId?: () => string;
}

/** Errors the workflow did not raise on purpose are bus failures: the caller may retry, and denies meanwhile. */
const toStatus = (error: unknown, logger: Logger): ServerErrorResponse =>
  toGrpcError(error, { logger, during: 'approval command', unexpected: { status: GrpcStatus.UNAVAILABLE, code: SluiceErrorCode.ApprovalUnavailable } });

const OUTCOME_BY_STATUS: Record<KnownApproval['status'], proto.Outcome> = {
  pending: proto.Outcome.OUTCOME_UNSPECIFIED,
  granted: proto.Outcome.OUTCOME_GRANTED,
  executed: proto.Outcome.OUTCOME_GRANTED,
  denied: proto.Outcome.OUTCOME_DENIED,
  expired: proto.Outcome.OUTCOME_EXPIRED,
  cancelled: proto.Outcome.OUTCOME_CANCELLED,
};

export const decisionResponse = (approval: KnownApproval): proto.AwaitDecisionResponse => {
  const last = approval.decisions.at(-1);
  const reason =
    approval.status === 'cancelled' ? approval.reason : approval.status === 'expired' ? 'no decision before the approval expired' : (last?.reason ?? '');
  return {
    outcome: OUTCOME_BY_STATUS[approval.status],
    approvers: approval.decisions.filter((decision) => decision.decision === (approval.status === 'denied' ? 'deny' : 'approve')).map((decision) => decision.approver),
    reason,
    commandHash: approval.request.commandHash,
  };
};

/** Translates the ApprovalService RPCs to workflow commands; nothing else. */
export const createGrpcHandlers = (deps: GrpcDeps): proto.ApprovalServiceServer => {
  const { workflow, logger } = deps;
  const now = deps.now ?? (() => new Date());
  const newId = deps.newId ?? timeOrderedId;
  const longPollMs = deps.longPollMs ?? 20_000;

  return {
    requestApproval(call: ServerUnaryCall<proto.RequestApprovalRequest, proto.RequestApprovalResponse>, callback: sendUnaryData<proto.RequestApprovalResponse>) {
      const request = call.request;
      if (!request.requester?.sub || !request.commandHash || !request.resource) {
        callback(invalidArgument('requester.sub, resource and command_hash are required'));
        return;
      }
      const risk: Risk = (RISKS as readonly string[]).includes(request.risk) ? (request.risk as Risk) : 'critical';
      const action = (ACTIONS as readonly string[]).includes(request.action) ? (request.action as Action) : undefined;
      const at = now();
      const timeoutMs = request.timeoutMs > 0 ? request.timeoutMs : deps.defaultTimeoutMs;
      const id = newId();
      workflow
        .execute(id, {
          type: 'Request',
          id,
          sessionId: request.sessionId,
          commandId: request.commandId,
          resource: request.resource,
          requester: { sub: request.requester.sub, groups: request.requester.groups, issuer: request.requester.issuer },
          command: request.command,
          commandHash: request.commandHash,
          risk,
          rule: request.rule,
          ...(action ? { action } : {}),
          approvers: { groups: request.approverGroups, subs: request.approverSubs, issuers: request.approverIssuers, minApprovals: Math.max(1, request.minApprovals) },
          at,
          expiresAt: new Date(at.getTime() + timeoutMs),
          ...(request.justification ? { justification: request.justification } : {}),
        })
        .then(
          (approval) => callback(null, { approvalId: approval.id, expiresAt: new Date(approval.request.expiresAt) }),
          (error: unknown) => callback(toStatus(error, logger)),
        );
    },

    awaitDecision(call: ServerUnaryCall<proto.AwaitDecisionRequest, proto.AwaitDecisionResponse>, callback: sendUnaryData<proto.AwaitDecisionResponse>) {
      const abort = new AbortController();
      call.on('cancelled', () => abort.abort());
      workflow.waitForSettled(call.request.approvalId, longPollMs, abort.signal).then(
        (approval) => callback(null, decisionResponse(approval)),
        (error: unknown) => callback(toStatus(error, logger)),
      );
    },

    cancelApproval(call: ServerUnaryCall<proto.CancelApprovalRequest, proto.CancelApprovalResponse>, callback: sendUnaryData<proto.CancelApprovalResponse>) {
      workflow.execute(call.request.approvalId, { type: 'Cancel', reason: call.request.reason || 'cancelled by the proxy', at: now() }).then(
        () => callback(null, {}),
        (error: unknown) => {
          // Already settled: cancelling is then a no-op, not a failure.
          if (error instanceof SluiceError && error.code === SluiceErrorCode.IllegalTransition) callback(null, {});
          else callback(toStatus(error, logger));
        },
      );
    },

    consumeApproval(call: ServerUnaryCall<proto.ConsumeApprovalRequest, proto.ConsumeApprovalResponse>, callback: sendUnaryData<proto.ConsumeApprovalResponse>) {
      workflow.execute(call.request.approvalId, { type: 'Consume', commandHash: call.request.commandHash, at: now() }).then(
        () => callback(null, { ok: true }),
        (error: unknown) => {
          if (error instanceof SluiceError && (error.code === SluiceErrorCode.IllegalTransition || error.code === SluiceErrorCode.NotFound)) {
            callback(null, { ok: false });
          } else callback(toStatus(error, logger));
        },
      );
    },
  };
};
