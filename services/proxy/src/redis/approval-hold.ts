import { createHash } from 'node:crypto';
import { SluiceErrorCode } from '@sluice/contracts';
import type { ApprovalPort, Decision, Session } from '../ports.js';

/** sha256 hex of the JSON array of parts: an approval is bound to exactly these values. */
export const commandHash = (parts: readonly unknown[]): string => createHash('sha256').update(JSON.stringify(parts)).digest('hex');

export type HoldResult =
  | { readonly granted: true; readonly approvalId: string }
  | {
      readonly granted: false;
      readonly approvalId: string | undefined;
      /** `denied`, `expired`, `cancelled`, `used` (consumed elsewhere) or `unavailable`. */
      readonly outcome: string;
      readonly code: string;
      readonly reason: string;
    };

/**
 * Holds one command for a human: asks for the approval, waits for the decision, then uses
 * the grant once. Never throws: an approval service that cannot answer is a refusal (fail closed).
 * The approval service records the approval.* events.
 */
export const holdForApproval = async (
  approvals: ApprovalPort,
  request: { session: Session; commandId: string; command: string; commandHash: string; decision: Decision; justification?: string | undefined },
  signal: AbortSignal,
): Promise<HoldResult> => {
  let approvalId: string | undefined;
  try {
    ({ approvalId } = await approvals.request({
      sessionId: request.session.id,
      commandId: request.commandId,
      resource: request.session.resource.name,
      subject: request.session.subject,
      command: request.command,
      commandHash: request.commandHash,
      decision: request.decision,
      ...(request.justification === undefined ? {} : { justification: request.justification }),
    }));
    const outcome = await approvals.awaitDecision(approvalId, signal);
    if (outcome.outcome !== 'granted') {
      return {
        granted: false,
        approvalId,
        outcome: outcome.outcome,
        code: outcome.outcome === 'denied' ? SluiceErrorCode.ApprovalDenied : SluiceErrorCode.ApprovalExpired,
        reason: outcome.reason,
      };
    }
    if (!(await approvals.consume(approvalId, request.commandHash))) {
      return { granted: false, approvalId, outcome: 'used', code: SluiceErrorCode.ApprovalDenied, reason: 'the approval was already used' };
    }
    return { granted: true, approvalId };
  } catch {
    return {
      granted: false,
      approvalId,
      outcome: signal.aborted ? 'cancelled' : 'unavailable',
      code: SluiceErrorCode.ApprovalUnavailable,
      reason: 'approval service unavailable',
    };
  }
};
