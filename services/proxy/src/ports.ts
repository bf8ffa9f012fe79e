import type { Duplex } from 'node:stream';
import type {
  ApproveDecision,
  Decision,
  GovernedCommand,
  SluiceEventDataByKind,
  SluiceEventKind,
  Subject,
} from '@sluice/contracts';
import type { ResourceConfig } from '@sluice/config';
import type { ProfileMasker } from '@sluice/masking-engine';
import type { ConnectionLimiter } from './connection-limits.js';

/** A verified agent token. */
export interface VerifiedToken {
  readonly subject: Subject;
  /** When the token expires; the session is closed then. */
  readonly expiresAt: Date | undefined;
}

export interface IdentityPort {
  /** Verifies an agent's bearer token; throws TokenInvalidError or TokenExpiredError. */
  verify(token: string): Promise<VerifiedToken>;
}

export type { GovernedCommand };

export type { Decision } from '@sluice/contracts';

export interface SessionPolicy {
  readonly mayConnect: boolean;
  readonly readOnly: boolean;
}

export interface PolicyPort {
  describeSession(subject: Subject, resource: string): Promise<SessionPolicy>;
  /**
   * Decides one command. Cached decisions cost no round trip; a policy service that cannot
   * answer makes this throw DependencyUnavailableError (the adapter denies: fail closed).
   */
  decide(subject: Subject, resource: string, command: GovernedCommand): Promise<Decision>;
  /**
   * The decision `decide` would answer from its cache, without waiting; undefined when it would
   * have to ask. A port without a cache leaves it out.
   */
  cachedDecision?(subject: Subject, resource: string, command: GovernedCommand): Decision | undefined;
}

export interface MaskingPort {
  /**
   * The compiled masker of a profile (undefined profile: nothing to mask). Throws
   * DependencyUnavailableError while the masking service's profiles are not current: the
   * adapter then withholds the result (fail closed).
   */
  masker(profile: string | undefined): ProfileMasker | undefined;
  /** Masks a command text for the audit record and approvers, with every configured detector. */
  maskCommandText(text: string, profile: string | undefined): string;
}

export type ApprovalOutcome =
  | { readonly outcome: 'granted'; readonly approvers: readonly string[]; readonly reason: string }
  | { readonly outcome: 'denied' | 'expired' | 'cancelled'; readonly approvers: readonly string[]; readonly reason: string };

export interface ApprovalRequest {
  readonly sessionId: string;
  /** The command.decided event's command id, so the approval links to it. */
  readonly commandId: string;
  readonly resource: string;
  readonly subject: Subject;
  /** Masked command text shown to approvers. */
  readonly command: string;
  readonly commandHash: string;
  readonly decision: ApproveDecision;
  /** The agent's justification, bounded and masked (justification.ts); never part of the decision. */
  readonly justification?: string;
}

export interface ApprovalPort {
  request(request: ApprovalRequest): Promise<{ readonly approvalId: string; readonly expiresAt: Date }>;
  /** Resolves when decided or expired; aborting the signal cancels the request. */
  awaitDecision(approvalId: string, signal: AbortSignal): Promise<ApprovalOutcome>;
  /** Uses the grant right before the command runs; false when it was used or never granted. */
  consume(approvalId: string, commandHash: string): Promise<boolean>;
}

export interface Session {
  readonly id: string;
  readonly resource: ResourceConfig;
  readonly subject: Subject;
  readonly client: string;
  readonly startedAt: Date;
}

export interface AuditPort {
  /** Queues an event of this session (assigning its sequence); never blocks the data path. */
  record<K extends SluiceEventKind>(sessionId: string, kind: K, data: SluiceEventDataByKind[K]): void;
  /** False while events cannot reach the bus: adapters refuse new commands (fail closed). */
  readonly healthy: boolean;
  /**
   * Resolves once every event recorded so far for the session is acknowledged by the bus; rejects
   * when that cannot be confirmed in time (a resource's `audit.wait: ack`: the command is refused).
   * An audit port without it confirms nothing, so such a resource refuses every command.
   */
  acknowledged?(sessionId: string): Promise<void>;
  /**
   * True when the session's agent has more events waiting for the bus than its fair share of the
   * queue: the adapter stops taking and reading what makes them (commands, the target's replies)
   * until `resume` is called, once the agent's backlog is back under half its share. One agent
   * that floods is slowed on its own instead of making the audit unhealthy for every session. A
   * port without it never pauses anyone. What counts is the agent's events queued, its decisions
   * kept back for their outcome, and what all its sessions have reported `coming`. With `hold`
   * 'commands' (the default), a pause that goes on while the bus is away is ended with
   * `resume(true)`: the adapter ends the session as audit unavailable instead of waiting for
   * acknowledgements that do not come. A 'target' hold (the target's pushed messages) waits.
   */
  backlogged?(sessionId: string, resume: (outage: boolean) => void, hold?: BacklogHold): boolean;
  /**
   * Events the session will record for what it has taken and not decided yet (commands read and
   * waiting for their verdict or their turn, an HTTP request past its backlog check): +n as it
   * takes them, -n once their decisions are recorded. The agent's running total is what
   * `backlogged` counts, so many sessions' bursts count together at the cost of one addition
   * each. What a session has not given back when it ends (commands left undispatched) is given
   * back then; a session never gives back more than it reported. Present with `backlogged`.
   */
  coming?(sessionId: string, events: number): void;
}

/**
 * What `coming` counts for a command taken and not decided yet: a refusal's two events (its
 * decision and its completion). An allowed one's merge into one once its outcome comes.
 */
export const UNDECIDED_COMMAND_EVENTS = 2;

/** Who waits for an agent's audit backlog to drain: its commands, or the reading of its target's pushed messages. */
export type BacklogHold = 'commands' | 'target';

export interface GovernancePorts {
  readonly identity: IdentityPort;
  readonly policy: PolicyPort;
  readonly masking: MaskingPort;
  readonly approvals: ApprovalPort;
  readonly audit: AuditPort;
  /** Recording limits for result.returned. */
  readonly recording: { readonly maxRows: number; readonly maxBytes: number; readonly maxCommandBytes?: number };
  /** Per resource name: open connections in all and per subject (absent: no limits). */
  readonly connectionLimits?: ReadonlyMap<string, ConnectionLimiter>;
  readonly newId: () => string;
  readonly now: () => Date;
}

export interface ProtocolAdapter {
  handleConnection(socket: Duplex & { remoteAddress?: string; remotePort?: number }, ports: GovernancePorts): Promise<void>;
}
