import { credentials, Metadata, status as GrpcStatus, type ChannelCredentials, type ChannelOptions, type ServiceError } from '@grpc/grpc-js';
import { DependencyUnavailableError, SluiceErrorCode } from '@sluice/contracts';
import { approval as proto } from '@sluice/proto';
import { Backoff, pause, retry, type Logger } from '@sluice/service-runtime';
import type { ApprovalOutcome, ApprovalPort, ApprovalRequest } from '../ports.js';

export interface ApprovalClientOptions {
  readonly logger: Logger;
  /** Deadline of RequestApproval / ConsumeApproval / CancelApproval calls. */
  readonly callTimeoutMs?: number;
  /** Deadline of one AwaitDecision long poll; the service answers "not yet" before it. */
  readonly pollTimeoutMs?: number;
  /** How long past an approval's expiry the client keeps waiting for an unreachable service. */
  readonly expiryGraceMs?: number;
  /** How long `consume` keeps trying an unreachable service before it answers false. */
  readonly consumeRetryMs?: number;
  /** How the channel authenticates (the deployment's mutual TLS); plain text when absent. */
  readonly credentials?: ChannelCredentials;
  /** Channel options that go with those credentials (grpcClientChannelOptions). */
  readonly channelOptions?: ChannelOptions;
}

type Unary<Req, Res> = (request: Req, metadata: Metadata, options: { deadline: Date; waitForReady: boolean }, callback: (error: ServiceError | null, response: Res) => void) => { cancel(): void };

/** Statuses after which asking again may succeed: the service restarts or is briefly overloaded. */
const RETRYABLE = new Set<number>([GrpcStatus.UNAVAILABLE, GrpcStatus.DEADLINE_EXCEEDED, GrpcStatus.RESOURCE_EXHAUSTED, GrpcStatus.ABORTED, GrpcStatus.INTERNAL, GrpcStatus.UNKNOWN]);

const OUTCOMES: Partial<Record<proto.Outcome, ApprovalOutcome['outcome']>> = {
  [proto.Outcome.OUTCOME_GRANTED]: 'granted',
  [proto.Outcome.OUTCOME_DENIED]: 'denied',
  [proto.Outcome.OUTCOME_EXPIRED]: 'expired',
  [proto.Outcome.OUTCOME_CANCELLED]: 'cancelled',
};

const isServiceError = (error: unknown): error is ServiceError => error instanceof Error && typeof (error as ServiceError).code === 'number';

/**
 * The proxy's ApprovalPort over gRPC. `request` fails closed (DependencyUnavailableError) when the
 * service cannot be reached; `awaitDecision` long-polls and rides out service restarts (the
 * service rebuilds its approvals from the event stream); aborting cancels the request.
 */
export const createApprovalPort = (address: string, options: ApprovalClientOptions): ApprovalPort & { close(): void } => {
  const { logger } = options;
  const callTimeoutMs = options.callTimeoutMs ?? 5_000;
  const pollTimeoutMs = options.pollTimeoutMs ?? 30_000;
  const expiryGraceMs = options.expiryGraceMs ?? 30_000;
  const client = new proto.ApprovalServiceClient(address, options.credentials ?? credentials.createInsecure(), {
    ...options.channelOptions,
    'grpc.keepalive_time_ms': 15_000,
    'grpc.keepalive_timeout_ms': 5_000,
    'grpc.initial_reconnect_backoff_ms': 100,
    'grpc.max_reconnect_backoff_ms': 2_000,
  });
  /** approval id -> expiry, so a wait on a service that never returns still ends. */
  const expiries = new Map<string, Date>();

  const call = <Req, Res>(method: Unary<Req, Res>, request: Req, timeoutMs: number, signal?: AbortSignal): Promise<Res> =>
    new Promise((resolve, reject) => {
      const pending = method.call(client, request, new Metadata(), { deadline: new Date(Date.now() + timeoutMs), waitForReady: true }, (error, response) => {
        signal?.removeEventListener('abort', onAbort);
        if (error) reject(error);
        else resolve(response);
      });
      const onAbort = (): void => pending.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
    });

  const cancel = (approvalId: string, reason: string): void => {
    call<proto.CancelApprovalRequest, proto.CancelApprovalResponse>(client.cancelApproval, { approvalId, reason }, callTimeoutMs).catch((error: unknown) =>
      logger.warn({ err: error, approvalId }, 'could not cancel the approval request'),
    );
  };

  return {
    async request(request: ApprovalRequest) {
      const approvers = request.decision.approvers;
      let response: proto.RequestApprovalResponse;
      try {
        response = await call<proto.RequestApprovalRequest, proto.RequestApprovalResponse>(
          client.requestApproval,
          {
            sessionId: request.sessionId,
            commandId: request.commandId,
            resource: request.resource,
            requester: { sub: request.subject.sub, groups: [...request.subject.groups], issuer: request.subject.issuer },
            command: request.command,
            commandHash: request.commandHash,
            risk: request.decision.risk,
            rule: request.decision.rule,
            approverGroups: [...approvers.groups],
            approverSubs: [...approvers.subs],
            approverIssuers: [...(approvers.issuers ?? [])],
            minApprovals: approvers.minApprovals,
            timeoutMs: Math.max(0, Math.min(request.decision.approvalTimeoutMs || 0, 0xffffffff)),
            action: request.decision.action,
            justification: request.justification ?? '',
          },
          callTimeoutMs,
        );
      } catch (error) {
        throw new DependencyUnavailableError(SluiceErrorCode.ApprovalUnavailable, 'the approval service cannot take the request', { cause: error });
      }
      const expiresAt = response.expiresAt ?? new Date(Date.now() + (request.decision.approvalTimeoutMs || 120_000));
      expiries.set(response.approvalId, expiresAt);
      return { approvalId: response.approvalId, expiresAt };
    },

    async awaitDecision(approvalId: string, signal: AbortSignal): Promise<ApprovalOutcome> {
      const backoff = new Backoff({ initialMs: 100, maxMs: 2_000 });
      try {
        while (!signal.aborted) {
          try {
            const response = await call<proto.AwaitDecisionRequest, proto.AwaitDecisionResponse>(client.awaitDecision, { approvalId }, pollTimeoutMs, signal);
            backoff.reset();
            const outcome = OUTCOMES[response.outcome];
            if (outcome) return { outcome, approvers: response.approvers, reason: response.reason };
            continue; // not decided yet: poll again
          } catch (error) {
            if (signal.aborted) break;
            if (isServiceError(error) && error.code === GrpcStatus.NOT_FOUND) {
              return { outcome: 'cancelled', approvers: [], reason: 'the approval service does not know this request' };
            }
            if (isServiceError(error) && !RETRYABLE.has(error.code)) throw error;
            const expiresAt = expiries.get(approvalId);
            if (expiresAt && Date.now() > expiresAt.getTime() + expiryGraceMs) {
              return { outcome: 'expired', approvers: [], reason: 'the approval service was unreachable until the request expired' };
            }
            logger.debug({ err: error, approvalId }, 'approval service unreachable; waiting for it');
            await pause(backoff.next(), signal);
          }
        }
        // The agent went away while waiting: the request must not stay open for an approver.
        cancel(approvalId, 'the client disconnected while waiting');
        return { outcome: 'cancelled', approvers: [], reason: 'the client disconnected while waiting' };
      } catch (error) {
        throw new DependencyUnavailableError(SluiceErrorCode.ApprovalUnavailable, 'the approval service failed while waiting', { cause: error });
      } finally {
        expiries.delete(approvalId);
      }
    },

    async consume(approvalId: string, commandHash: string): Promise<boolean> {
      // A restart between grant and use is ridden out briefly; anything else means "do not run".
      try {
        const response = await retry(
          () => call<proto.ConsumeApprovalRequest, proto.ConsumeApprovalResponse>(client.consumeApproval, { approvalId, commandHash }, callTimeoutMs),
          {
            backoff: new Backoff({ initialMs: 100, maxMs: 1_000 }),
            // Retrying is safe: a grant used by a call whose answer was lost answers false (fail closed).
            retryable: (error) => isServiceError(error) && (error.code === GrpcStatus.UNAVAILABLE || error.code === GrpcStatus.DEADLINE_EXCEEDED),
            deadline: Date.now() + (options.consumeRetryMs ?? 5_000),
          },
        );
        return response.ok;
      } catch (error) {
        logger.warn({ err: error, approvalId }, 'could not consume the approval; the command does not run');
        return false;
      }
    },

    close() {
      client.close();
    },
  };
};
