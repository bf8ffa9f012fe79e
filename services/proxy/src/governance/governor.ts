import {
  failClosedDecision,
  maskProfileOf,
  SluiceErrorCode,
  type ApproveDecision,
  type Decision,
  type DenyDecision,
  type Protocol,
  type Subject,
  type SubjectRef,
} from '@sluice/contracts';
import { RECORDING_DEFAULTS } from '@sluice/config';
import type { ProfileMasker } from '@sluice/masking-engine';
import type { GovernancePorts, GovernedCommand } from '../ports.js';
import { shownJustification } from '../justification.js';
import { cutText } from '../recording.js';
import { holdForApproval, type HoldResult } from './approval-hold.js';

/** Whom and where a command is decided for: one agent session on one resource. */
export interface GovernedSession {
  readonly id: string;
  readonly resource: string;
  readonly subject: Subject;
  readonly protocol: Protocol;
}

/**
 * The policy's answer, or the fail-closed denial when it could not answer: `unavailable` tells a
 * front door to report the dependency (ERR_POLICY_UNAVAILABLE), not a rule, as the reason.
 */
export type Verdict = { readonly decision: Decision; readonly unavailable: false } | { readonly decision: DenyDecision; readonly unavailable: true };

/** The reason recorded when the policy service could not decide. */
export const POLICY_UNAVAILABLE = 'the policy service is unavailable';

/** How a command is shown in its command.decided record. */
export interface RecordedCommand {
  readonly commandId: string;
  /** Already masked (see `maskedCommand`). */
  readonly command: string;
  /** UTF-8 size of the text before the front door cut it, when it did. */
  readonly commandBytes?: number;
}

export type MaskerChoice = { readonly ok: true; readonly masker: ProfileMasker | undefined } | { readonly ok: false; readonly code: typeof SluiceErrorCode.MaskingUnavailable };

/**
 * The protocol-neutral governance of one command: decide (fail closed), record the decision,
 * hold for a human, pick the masker. Front doors (PostgreSQL, Redis, HTTP) keep only their wire
 * protocol: how a command is read, and how a refusal or a result is written back.
 */
export class Governor {
  constructor(
    private readonly ports: GovernancePorts,
    readonly session: GovernedSession,
  ) {}

  /** Never rejects: a policy port that throws (or throws synchronously) is a denial. */
  async decide(command: GovernedCommand): Promise<Verdict> {
    try {
      return { decision: await this.ports.policy.decide(this.session.subject, this.session.resource, command), unavailable: false };
    } catch {
      return { decision: failClosedDecision(POLICY_UNAVAILABLE), unavailable: true };
    }
  }

  /**
   * The verdict at once when the policy port has the decision cached (no promise, no turn of the
   * event loop: a pipelined burst is decided in one go); undefined when `decide` must ask.
   */
  cachedVerdict(command: GovernedCommand): Verdict | undefined {
    try {
      const decision = this.ports.policy.cachedDecision?.(this.session.subject, this.session.resource, command);
      return decision ? { decision, unavailable: false } : undefined;
    } catch {
      // A cache that fails is no answer: `decide` asks (and fails closed).
      return undefined;
    }
  }

  /**
   * A command's text as the audit record and approvers see it: masked with every detector (and
   * the decision's profile); `fallback` when masking itself fails, never the raw text.
   */
  maskedCommand(text: string, decision: Decision | undefined, fallback: string): string {
    try {
      return this.ports.masking.maskCommandText(text, decision ? maskProfileOf(decision) : undefined);
    } catch {
      return fallback;
    }
  }

  /** The command.decided record; `tables` is recorded for protocols whose commands name tables. */
  recordDecided(recorded: RecordedCommand, decision: Decision): void {
    this.ports.audit.record(this.session.id, 'command.decided', {
      commandId: recorded.commandId,
      resource: this.session.resource,
      protocol: this.session.protocol,
      command: recorded.command,
      action: decision.action,
      risk: decision.risk,
      decision: decision.effect,
      rule: decision.rule,
      reason: decision.reason,
      // Undefined rather than spread in: a literal costs a fraction of a spread once per command.
      tables: this.session.protocol === 'postgres' ? decision.tables : undefined,
      truncated: recorded.commandBytes !== undefined ? true : undefined,
      commandBytes: recorded.commandBytes,
    });
  }

  /** A command refused before any rule (malformed, too large, never allowed): recorded as a denial. */
  recordRefusedBeforeRule(recorded: RecordedCommand, reason: string): DenyDecision {
    const decision = failClosedDecision(reason);
    this.recordDecided(recorded, decision);
    return decision;
  }

  /** The command.completed record of a command Sluice answered itself with an error. */
  recordRefused(commandId: string, refusal: { readonly outcome: string; readonly code: string; readonly message: string; readonly durationMs: number }): void {
    this.ports.audit.record(this.session.id, 'command.completed', {
      commandId,
      outcome: refusal.outcome,
      ok: false,
      error: { code: refusal.code, message: refusal.message },
      durationMs: refusal.durationMs,
    });
  }

  /**
   * `audit.wait: ack`: whether the bus acknowledged every event recorded so far for the session.
   * An audit port that cannot confirm (or does not say) is a no: the command is refused.
   */
  acknowledged(): Promise<boolean> {
    const pending = this.ports.audit.acknowledged?.(this.session.id) ?? Promise.reject(new Error('the audit port confirms no acknowledgements'));
    return pending.then(
      () => true,
      () => false,
    );
  }

  /** Holds an approve decision for a human; never throws (see holdForApproval). */
  hold(
    request: {
      readonly commandId: string;
      readonly command: string;
      readonly commandHash: string;
      readonly decision: ApproveDecision;
      /** The agent's justification as it sent it: approvers see it bounded and masked, or not at all if masking fails. */
      readonly justification?: string | undefined;
    },
    signal: AbortSignal,
  ): Promise<HoldResult> {
    // Approvers grant the whole command (its hash): they must be shown the whole of it. A text
    // past the recording bound reached them cut without a sign of it (PostgreSQL's at 80 KiB, and
    // at 1 KiB where its escapes made approval.requested too large for the bus), so a statement
    // padded before its write went to them looking harmless.
    const shownBytes = this.ports.recording.maxCommandBytes ?? RECORDING_DEFAULTS.maxCommandBytes;
    if (cutText(request.command, shownBytes).truncated) {
      return Promise.resolve({
        granted: false,
        approvalId: undefined,
        outcome: 'denied',
        code: SluiceErrorCode.ApprovalDenied,
        reason: `the command is longer than approvers can be shown whole (audit.recording.maxCommandBytes, ${shownBytes} bytes); it was not sent for approval`,
        approvers: [],
      });
    }
    const justification = shownJustification(request.justification, (text) => this.ports.masking.maskCommandText(text, maskProfileOf(request.decision)));
    return holdForApproval(
      this.ports.approvals,
      { ...request, justification, sessionId: this.session.id, resource: this.session.resource, subject: this.session.subject },
      signal,
    );
  }

  /**
   * The masker for an allowed (or granted) command's results. Masking that is not current refuses
   * the command (fail closed): nothing is sent rather than something unmasked.
   */
  maskerFor(decision: Decision): MaskerChoice {
    return this.maskerOf(maskProfileOf(decision));
  }

  maskerOf(profile: string | undefined): MaskerChoice {
    try {
      return { ok: true, masker: this.ports.masking.masker(profile) };
    } catch {
      return { ok: false, code: SluiceErrorCode.MaskingUnavailable };
    }
  }
}

/** The subject as events record it (issuer, sub, groups). */
export const subjectRefOf = (subject: Subject): SubjectRef => ({ sub: subject.sub, groups: subject.groups, issuer: subject.issuer });

/** Exhaustiveness guard for switches over a union: a new member is a compile error, and a refusal at run time. */
export const unreachable = (value: never): never => {
  throw new TypeError(`unhandled case: ${JSON.stringify(value)}`);
};
