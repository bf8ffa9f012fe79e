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
  /** Set when `command` was cut to `audit.recording.maxCommandBytes`. */
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

const EXECUTED_TYPE_JSON = JSON.stringify(eventType('command.executed'));

/** A number as JSON.stringify writes it. */
const jsonNumber = (value: number): string => (Number.isFinite(value) ? `${value}` : 'null');

/**
 * What JSON.stringify escapes in a string (`"`, `\\`, the C0 controls) or may (a lone surrogate;
 * any surrogate here, paired ones included, sends the text the long way).
 */
// eslint-disable-next-line no-control-regex -- the controls are exactly what JSON escapes
const ESCAPED_IN_JSON = /["\\\u0000-\u001f\ud800-\udfff]/;

/**
 * `JSON.stringify(value)` of a string member: quoted as it is when nothing in it is escaped (SQL
 * texts, ids and tags, almost always), which costs a third of a JSON.stringify call each; an event
 * has a dozen such members. Anything else, and any text with something to escape, goes the long way.
 */
const jsonString = (value: string): string => (typeof value === 'string' && !ESCAPED_IN_JSON.test(value) ? `"${value}"` : JSON.stringify(value));

/** `JSON.stringify(value)` of a boolean member. */
const jsonBoolean = (value: boolean): string => (value === true ? 'true' : value === false ? 'false' : JSON.stringify(value));

/** `JSON.stringify(cells)` of an array of texts and nulls (a row, the column names); the long way for anything else in it. */
const jsonCells = (cells: readonly (string | null)[]): string => {
  if (!Array.isArray(cells)) return JSON.stringify(cells);
  let json = '[';
  for (let index = 0; index < cells.length; index += 1) {
    const cell: unknown = cells[index];
    if (cell === null) json += index === 0 ? 'null' : ',null';
    else if (typeof cell === 'string') json += index === 0 ? jsonString(cell) : `,${jsonString(cell)}`;
    else return JSON.stringify(cells);
  }
  return `${json}]`;
};

/** `JSON.stringify(rows)` of a result's rows. */
const jsonRows = (rows: readonly (readonly (string | null)[])[]): string => {
  if (!Array.isArray(rows)) return JSON.stringify(rows);
  let json = '[';
  for (let index = 0; index < rows.length; index += 1) {
    const row: unknown = rows[index];
    // A row that is not an array (a hole among them) is written by JSON.stringify as part of the whole.
    if (!Array.isArray(row)) return JSON.stringify(rows);
    json += index === 0 ? jsonCells(row) : `,${jsonCells(row)}`;
  }
  return `${json}]`;
};

/** `JSON.stringify(counts)`: `{}` at once for the usual record with no name in it. */
const jsonCounts = (counts: Readonly<Record<string, number>>): string => {
  // for-in sees inherited enumerable names too: when it sees none, JSON (own names only) has none.
  for (const _name in counts) return JSON.stringify(counts);
  return '{}';
};

/** `,"name":<json>`, or nothing for an absent (undefined) member, as JSON.stringify leaves it out. */
const optionalMember = (name: string, value: unknown): string => (value === undefined ? '' : `,"${name}":${JSON.stringify(value)}`);

/** The members a command's decision gives every command.executed it decides, as last written. */
let decisionPart:
  | {
      readonly action: string;
      readonly decision: string;
      readonly protocol: string;
      readonly reason: string;
      readonly resource: string;
      readonly risk: string;
      readonly rule: string;
      readonly tables: readonly string[] | undefined;
      readonly head: string;
      readonly decisionJson: string;
      readonly middle: string;
      readonly tail: string;
    }
  | undefined;
/** The envelope members a session's events share, as last written. */
let sessionPart: { readonly source: string; readonly subject: string; readonly json: string } | undefined;

/**
 * `JSON.stringify(buildEvent('command.executed', fields))`, written member by member: the proxy
 * publishes one such event per command, and the members a decision or a session gives every one
 * of them are written once for a run of them, not once per event. Members in the order
 * JSON.stringify writes buildEvent's (RFC 8785's); events.spec.ts holds the two to the same text
 * for data holding CommandExecuted's members in that order (an audit port's literal), nothing else.
 */
export const executedEventJson = (fields: { id: string; source: string; subject: string; time: Date; sessionseq?: number; data: CommandExecuted }): string => {
  const data = fields.data;
  let decided = decisionPart;
  if (
    decided === undefined ||
    decided.action !== data.action ||
    decided.decision !== data.decision ||
    decided.protocol !== data.protocol ||
    decided.reason !== data.reason ||
    decided.resource !== data.resource ||
    decided.risk !== data.risk ||
    decided.rule !== data.rule ||
    decided.tables !== data.tables
  ) {
    decided = decisionPart = {
      action: data.action,
      decision: data.decision,
      protocol: data.protocol,
      reason: data.reason,
      resource: data.resource,
      risk: data.risk,
      rule: data.rule,
      tables: data.tables,
      head: `{"data":{"action":${JSON.stringify(data.action)}`,
      decisionJson: `,"decision":${JSON.stringify(data.decision)}`,
      middle: `,"protocol":${JSON.stringify(data.protocol)},"reason":${JSON.stringify(data.reason)},"resource":${JSON.stringify(data.resource)}`,
      tail: `,"risk":${JSON.stringify(data.risk)},"rule":${JSON.stringify(data.rule)}${optionalMember('tables', data.tables)}`,
    };
  }
  if (!sessionPart || sessionPart.source !== fields.source || sessionPart.subject !== fields.subject) {
    sessionPart = { source: fields.source, subject: fields.subject, json: `,"source":${JSON.stringify(fields.source)},"specversion":"1.0","subject":${JSON.stringify(fields.subject)}` };
  }
  const result = data.result;
  const resultJson =
    result === undefined
      ? ''
      : `,"result":{"bytes":${jsonNumber(result.bytes)},"columns":${jsonCells(result.columns)},"maskedCounts":${jsonCounts(result.maskedCounts)},"rowCount":${jsonNumber(result.rowCount)},"rows":${jsonRows(result.rows)},"truncated":${jsonBoolean(result.truncated)}}`;
  return (
    `${decided.head},"command":${jsonString(data.command)}${data.commandBytes === undefined ? '' : `,"commandBytes":${jsonNumber(data.commandBytes)}`}` +
    `,"commandId":${jsonString(data.commandId)}${decided.decisionJson},"durationMs":${jsonNumber(data.durationMs)}${optionalMember('error', data.error)}` +
    `,"ok":${jsonBoolean(data.ok)},"outcome":${jsonString(data.outcome)}${decided.middle}${resultJson}${decided.tail}${optionalMember('truncated', data.truncated)}}` +
    `,"datacontenttype":"application/json","id":${jsonString(fields.id)}${fields.sessionseq === undefined ? '' : `,"sessionseq":${jsonNumber(fields.sessionseq)}`}` +
    `${sessionPart.json},"time":"${isoTime(fields.time)}","type":${EXECUTED_TYPE_JSON}}`
  );
};
