import type { ApproverRule } from './approvers.js';
import type { AssessedAction } from './policy.js';

/** What every decision states, whatever its effect. */
interface DecisionBasis extends AssessedAction {
  /** The deciding rule's name; empty for the default deny and for refusals before any rule. */
  readonly rule: string;
  readonly tables: readonly string[];
  /** Statement names this command PREPAREs; the proxy records them for later EXECUTEs. */
  readonly prepares: readonly string[];
}

/**
 * The command writes a table whose reads a rule denies or holds for this subject: the server's
 * error and notice texts about it can quote its rows (`Failing row contains (…)`), so the proxy
 * withholds them. Absent (false) otherwise.
 */
interface WithheldTexts {
  readonly withholdServerTexts?: boolean;
}

/** The command runs; its result is masked with `maskProfile` (none: nothing to mask). */
export interface AllowDecision extends DecisionBasis, WithheldTexts {
  readonly effect: 'allow';
  readonly maskProfile: string | undefined;
}

/**
 * The command waits for `approvers`, at most `approvalTimeoutMs`; once granted, its result is
 * masked with `maskProfile`: an approver releases the command, not the values a profile covers.
 */
export interface ApproveDecision extends DecisionBasis, WithheldTexts {
  readonly effect: 'approve';
  readonly approvers: ApproverRule;
  readonly approvalTimeoutMs: number;
  readonly maskProfile: string | undefined;
}

export interface DenyDecision extends DecisionBasis {
  readonly effect: 'deny';
}

/**
 * A policy decision on one command (CONTRACT §2): a union on `effect`, so what only one effect
 * carries (a mask profile, approvers) cannot be read from another.
 */
export type Decision = AllowDecision | ApproveDecision | DenyDecision;

/**
 * The decision when no policy answer can be trusted (the policy service is unavailable, the
 * proxy cannot know what the command reads): deny, as an admin command of critical risk.
 */
export const failClosedDecision = (reason: string): DenyDecision => ({
  effect: 'deny',
  rule: '',
  reason,
  action: 'admin',
  risk: 'critical',
  tables: [],
  prepares: [],
});

/** Whether the proxy withholds the server's texts about the command (an allowed or granted one's `withholdServerTexts`). */
export const withholdsServerTexts = (decision: Decision): boolean => decision.effect !== 'deny' && decision.withholdServerTexts === true;

/** The mask profile results are masked with: an allowed command's, or a granted one's. */
export const maskProfileOf = (decision: Decision): string | undefined => (decision.effect === 'deny' ? undefined : decision.maskProfile);
