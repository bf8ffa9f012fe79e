import type { Action, Effect, Protocol, Risk } from './policy.js';
import type { ApproverRule } from './approvers.js';

/**
 * Every session action is one of these. Kinds are `<aggregate>.<past-tense verb>`; the
 * CloudEvents `type` is `sluice.<kind>.v1`.
 */
export interface SubjectRef {
  readonly sub: string;
  readonly groups: readonly string[];
  readonly issuer: string;
}

export interface SessionStarted {
  readonly resource: string;
  readonly protocol: Protocol;
  readonly subject: SubjectRef;
  readonly client: string;
  /** True when the session runs read-only on the target. */
  readonly readOnly: boolean;
  /** PostgreSQL: the user and database names the agent sent (the session runs as the resource's role, in its database). */
  readonly user?: string;
  readonly database?: string;
  /** PostgreSQL: the startup settings passed on to the target (name in lower case -> value). */
  readonly parameters?: Readonly<Record<string, string>>;
}

export interface SessionEnded {
  readonly resource: string;
  readonly reason: string;
  readonly commands: number;
  readonly durationMs: number;
}

/** The session could not start: bad token, unknown resource, target refused. */
export interface SessionRejected {
  readonly resource: string;
  readonly protocol: Protocol;
  readonly client: string;
  readonly reason: string;
  readonly code: string;
  readonly subject?: SubjectRef;
}

export interface CommandDecided {
  readonly commandId: string;
  readonly resource: string;
  readonly protocol: Protocol;
  /** The command as the agent sent it, with values a masking profile covers masked. */
  readonly command: string;
  readonly action: Action;
  readonly risk: Risk;
  /** `approve` means held for a human; approval.* events follow. */
  readonly decision: Effect;
  readonly rule: string;
  readonly reason: string;
  readonly tables?: readonly string[];
  /** Set when `command` was cut to `audit.recording.maxCommandBytes`, or `tables` to its first 4 KiB of names (the statement named more). */
  readonly truncated?: boolean;
  /** UTF-8 size of the recorded command text before it was cut (present when truncated). */
  readonly commandBytes?: number;
}

export interface ApprovalRequested {
  readonly approvalId: string;
  readonly commandId: string;
  readonly resource: string;
  readonly subject: SubjectRef | { readonly sub: string; readonly groups: readonly string[] };
  readonly command: string;
  readonly commandHash: string;
  readonly risk: Risk;
  readonly rule: string;
  /** What the command does (shown to approvers). */
  readonly action?: Action;
  readonly expiresAt: string;
  readonly approvers: ApproverRule;
  /** Why the agent says it needs the command (its own words, bounded by boundJustification, masked); absent when it gave none. */
  readonly justification?: string;
}

export interface ApprovalDecided {
  readonly approvalId: string;
  readonly decision: 'approve' | 'deny';
  readonly approver: string;
  /** The issuer of the approver's identity: two issuers may name the same `approver`. Absent for a Slack user mapped without one. */
  readonly approverIssuer?: string;
  readonly reason: string;
  /** True once enough approvals are in (minApprovals) or on the first deny, as the deciding instance saw it; the fold counts distinct approvals itself. */
  readonly final: boolean;
  readonly via: 'api' | 'slack' | 'cli';
}

export interface ApprovalExpired {
  readonly approvalId: string;
}

export interface ApprovalCancelled {
  readonly approvalId: string;
  readonly reason: string;
}

export interface ApprovalExecuted {
  readonly approvalId: string;
  readonly commandHash: string;
}

export interface CommandCompleted {
  readonly commandId: string;
  /** Command tag (`SELECT 3`, `DELETE 50`), Redis reply type or HTTP status. */
  readonly outcome: string;
  readonly ok: boolean;
  readonly error?: { readonly code: string; readonly message: string };
  readonly durationMs: number;
}

export interface ResultReturned {
  readonly commandId: string;
  readonly columns: readonly string[];
  /** The data exactly as the agent received it (masked), up to the recording limits. */
  readonly rows: readonly (readonly (string | null)[])[];
  readonly rowCount: number;
  readonly bytes: number;
  readonly truncated: boolean;
  readonly maskedCounts: Readonly<Record<string, number>>;
}

/**
 * A command that ran without a hold (decision `allow`), recorded as one event instead of its
 * command.decided, command.completed and result.returned: the decision's fields as they are, the
 * outcome's, and the masked result (absent when the command returned none) under `result`.
 */
export interface CommandExecuted extends CommandDecided, Omit<CommandCompleted, 'commandId'> {
  readonly result?: Omit<ResultReturned, 'commandId'>;
}

/**
 * Present as `data.reduced` on an event the publisher had to shrink: it did not fit the bus
 * (`too_large`) or the bus refused it for a reason retrying cannot fix (`rejected`). Fields listed
 * in `dropped` were removed or cut; the envelope (id, subject, type, time, sessionseq) is intact.
 */
export interface EventReduction {
  readonly reason: 'too_large' | 'rejected';
  /** Size of the event's JSON before it was reduced. */
  readonly originalBytes: number;
  readonly dropped: readonly string[];
  /** Why the bus refused it (`rejected`). */
  readonly error?: string;
}

export interface PolicyChanged {
  readonly version: number;
  readonly rules: number;
}

/**
 * The audit store refused a NATS message or an event in it as not genuine (unsigned, signed with
 * an unknown key, a bad signature, or a kind its signer may not publish). Published by the audit
 * service, signed by it, on its own subject; the refused record itself is kept in the store.
 */
export interface EventRejected {
  readonly reason: string;
  /** The signer the message named, if any (unverified when the signature is the problem). */
  readonly claimedSigner?: string;
  readonly natsSubject: string;
  readonly streamSeq: number;
  readonly eventId?: string;
  readonly eventType?: string;
  readonly sessionId?: string;
}

export interface SluiceEventDataByKind {
  'session.started': SessionStarted;
  'session.ended': SessionEnded;
  'session.rejected': SessionRejected;
  'command.decided': CommandDecided;
  'command.completed': CommandCompleted;
  'result.returned': ResultReturned;
  'command.executed': CommandExecuted;
  'approval.requested': ApprovalRequested;
  'approval.decided': ApprovalDecided;
  'approval.expired': ApprovalExpired;
  'approval.cancelled': ApprovalCancelled;
  'approval.executed': ApprovalExecuted;
  'policy.changed': PolicyChanged;
  'event.rejected': EventRejected;
}
export type SluiceEventKind = keyof SluiceEventDataByKind;

export const EVENT_TYPE_PREFIX = 'sluice.';
export const EVENT_TYPE_SUFFIX = '.v1';
export const eventType = (kind: SluiceEventKind): string => `${EVENT_TYPE_PREFIX}${kind}${EVENT_TYPE_SUFFIX}`;

/** Parses `sluice.session.started.v1` (or without the version) back to its kind. */
export const kindOfType = (type: string): SluiceEventKind | undefined => {
  if (!type.startsWith(EVENT_TYPE_PREFIX)) return undefined;
  const kind = type.slice(EVENT_TYPE_PREFIX.length).replace(/\.v\d+$/, '');
  return kind as SluiceEventKind;
};

/** CloudEvents 1.0 structured-mode JSON envelope. */
export interface CloudEvent<K extends SluiceEventKind = SluiceEventKind> {
  readonly specversion: '1.0';
  readonly id: string;
  readonly source: string;
  readonly type: string;
  /** The session id (for policy events, `policy`). */
  readonly subject: string;
  readonly time: string;
  readonly datacontenttype: 'application/json';
  /** Extension: the event's position in its session as its publisher saw it. */
  readonly sessionseq?: number;
  readonly data: SluiceEventDataByKind[K];
}

export type AnySluiceEvent = { [K in SluiceEventKind]: CloudEvent<K> }[SluiceEventKind];

let isoMillis = Number.NaN;
let isoText = '';

/**
 * `time.toISOString()`, written once per millisecond: a busy proxy stamps many events within one,
 * and the events of a stored batch mostly share one. An invalid date (NaN never equals itself)
 * throws as toISOString does.
 */
export const isoTime = (time: Date): string => {
  const millis = time.getTime();
  if (millis !== isoMillis) {
    isoText = time.toISOString();
    isoMillis = millis;
  }
  return isoText;
};

export const buildEvent = <K extends SluiceEventKind>(
  kind: K,
  fields: { id: string; source: string; subject: string; time: Date; sessionseq?: number; data: SluiceEventDataByKind[K] },
): CloudEvent<K> => ({
  // Members in sorted order (RFC 8785's, `data` first): the JSON the publisher writes is then
  // already the canonical text the audit store hashes, and it stores it without writing it again.
  data: fields.data,
  datacontenttype: 'application/json',
  id: fields.id,
  // Undefined, not a spread of an empty object: one literal is built (and serialised) several
  // times faster, and JSON leaves an undefined member out.
  sessionseq: fields.sessionseq,
  source: fields.source,
  specversion: '1.0',
  subject: fields.subject,
  time: isoTime(fields.time),
  type: eventType(kind),
});
