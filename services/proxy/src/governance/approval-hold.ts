import { createHash } from 'node:crypto';
import { SluiceErrorCode, type ApproveDecision, type Subject } from '@sluice/contracts';
import type { ApprovalPort } from '../ports.js';

/** sha256 hex of the JSON array of parts: an approval is bound to exactly these values. */
export const commandHash = (parts: readonly unknown[]): string => createHash('sha256').update(JSON.stringify(parts)).digest('hex');

export type HoldResult =
  | { readonly granted: true; readonly approvalId: string }
  | {
      readonly granted: false;
      readonly approvalId: string | undefined;
      /** `denied`, `expired`, `cancelled`, `used` (consumed elsewhere) or `unavailable` (the service failed). */
      readonly outcome: 'denied' | 'expired' | 'cancelled' | 'used' | 'unavailable';
      readonly code: typeof SluiceErrorCode.ApprovalDenied | typeof SluiceErrorCode.ApprovalExpired | typeof SluiceErrorCode.ApprovalUnavailable;
      readonly reason: string;
      /** Who decided (a denial), when anyone did. */
      readonly approvers: readonly string[];
    };

export interface HoldRequest {
  readonly sessionId: string;
  readonly resource: string;
  readonly subject: Subject;
  readonly commandId: string;
  /** Masked command text shown to approvers. */
  readonly command: string;
  readonly commandHash: string;
  readonly decision: ApproveDecision;
  /** The agent's justification, bounded and masked (justification.ts); never part of the decision. */
  readonly justification?: string | undefined;
}

/**
 * Holds one command for a human: asks for the approval, waits for the decision, then uses
 * the grant once. Never throws: an approval service that cannot answer is a refusal (fail closed).
 * The approval service records the approval.* events.
 */
export const holdForApproval = async (approvals: ApprovalPort, request: HoldRequest, signal: AbortSignal): Promise<HoldResult> => {
  let approvalId: string | undefined;
  try {
    const { justification, ...rest } = request;
    ({ approvalId } = await approvals.request({ ...rest, ...(justification === undefined ? {} : { justification }) }));
    const outcome = await approvals.awaitDecision(approvalId, signal);
    if (outcome.outcome !== 'granted') {
      return {
        granted: false,
        approvalId,
        outcome: outcome.outcome,
        code: outcome.outcome === 'denied' ? SluiceErrorCode.ApprovalDenied : SluiceErrorCode.ApprovalExpired,
        reason: outcome.reason,
        approvers: outcome.approvers,
      };
    }
    if (!(await approvals.consume(approvalId, request.commandHash))) {
      return { granted: false, approvalId, outcome: 'used', code: SluiceErrorCode.ApprovalDenied, reason: 'the approval was already used', approvers: [] };
    }
    return { granted: true, approvalId };
  } catch {
    return {
      granted: false,
      approvalId,
      outcome: signal.aborted ? 'cancelled' : 'unavailable',
      code: SluiceErrorCode.ApprovalUnavailable,
      reason: 'approval service unavailable',
      approvers: [],
    };
  }
};
