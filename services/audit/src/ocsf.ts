import { kindOfType, type CloudEvent, type SluiceEventDataByKind } from '@sluice/contracts';

/**
 * CloudEvent -> OCSF 1.1 event.
 * @see https://schema.ocsf.io/1.1.0/classes/authentication (3002)
 * @see https://schema.ocsf.io/1.1.0/classes/datastore_activity (6005)
 * @see https://schema.ocsf.io/1.1.0/classes/api_activity (6003)
 * Everything else (approvals, policy changes) becomes a Base Event (class_uid 0).
 */
export const OCSF_VERSION = '1.1.0';
export const PRODUCT = { name: 'Sluice', vendor_name: 'Sluice', version: '0.1.0' } as const;

export const OcsfClass = {
  Base: { class_uid: 0, class_name: 'Base Event', category_uid: 0, category_name: 'Uncategorized' },
  Authentication: { class_uid: 3002, class_name: 'Authentication', category_uid: 3, category_name: 'Identity & Access Management' },
  ApiActivity: { class_uid: 6003, class_name: 'API Activity', category_uid: 6, category_name: 'Application Activity' },
  DatastoreActivity: { class_uid: 6005, class_name: 'Datastore Activity', category_uid: 6, category_name: 'Application Activity' },
} as const;

const Status = { Success: 1, Failure: 2, Other: 99 } as const;
/** disposition_id values of OCSF 1.1. */
const Disposition = { Allowed: 1, Blocked: 2, Delayed: 14, Logged: 17 } as const;
const SeverityByRisk: Record<string, number> = { low: 1, medium: 2, high: 4, critical: 5 };

export interface OcsfEvent {
  readonly class_uid: number;
  readonly class_name: string;
  readonly category_uid: number;
  readonly category_name: string;
  readonly activity_id: number;
  readonly activity_name: string;
  readonly type_uid: number;
  readonly time: number;
  readonly severity_id: number;
  readonly status_id: number;
  readonly status: string;
  readonly metadata: {
    readonly version: string;
    readonly product: typeof PRODUCT;
    readonly uid: string;
    readonly correlation_uid: string;
    readonly event_code: string;
    readonly original_time: string;
  };
  readonly [key: string]: unknown;
}

/** Who the session belongs to, when the event itself does not say (commands carry no subject). */
export type SubjectLookup = (sessionId: string) => { readonly sub: string; readonly groups: readonly string[] } | undefined;

type Data<K extends keyof SluiceEventDataByKind> = SluiceEventDataByKind[K];

const dispositionOf = (decision: string | undefined): { disposition_id: number; disposition: string } => {
  switch (decision) {
    case 'allow':
    case 'approve':
      return decision === 'allow' ? { disposition_id: Disposition.Allowed, disposition: 'Allowed' } : { disposition_id: Disposition.Delayed, disposition: 'Delayed' };
    case 'deny':
      return { disposition_id: Disposition.Blocked, disposition: 'Blocked' };
    default:
      return { disposition_id: Disposition.Logged, disposition: 'Logged' };
  }
};

/** Datastore Activity activity_id (OCSF 1.1): 1 Read, 4 Query, 5 Write, 99 Other. */
const datastoreActivity = (protocol: string, action: string): { activity_id: number; activity_name: string } => {
  if (action === 'read') return protocol === 'redis' ? { activity_id: 1, activity_name: 'Read' } : { activity_id: 4, activity_name: 'Query' };
  if (action === 'write') return { activity_id: 5, activity_name: 'Write' };
  return { activity_id: 99, activity_name: action === 'ddl' ? 'DDL' : 'Admin' };
};

/** API Activity activity_id (OCSF 1.1): 1 Create, 2 Read, 3 Update, 4 Delete, 99 Other. */
const apiActivity = (command: string): { activity_id: number; activity_name: string } => {
  const method = command.split(' ', 1)[0]?.toUpperCase() ?? '';
  if (method === 'POST') return { activity_id: 1, activity_name: 'Create' };
  if (method === 'GET' || method === 'HEAD' || method === 'OPTIONS') return { activity_id: 2, activity_name: 'Read' };
  if (method === 'PUT' || method === 'PATCH') return { activity_id: 3, activity_name: 'Update' };
  if (method === 'DELETE') return { activity_id: 4, activity_name: 'Delete' };
  return { activity_id: 99, activity_name: 'Other' };
};

const actorOf = (sub: string | undefined, groups: readonly string[] | undefined, sessionId: string) => ({
  actor: {
    ...(sub === undefined ? {} : { user: { name: sub, uid: sub, groups: (groups ?? []).map((name) => ({ name })) } }),
    session: { uid: sessionId },
  },
});

export const toOcsf = (event: CloudEvent, lookup: SubjectLookup = () => undefined): OcsfEvent => {
  const kind = kindOfType(event.type) ?? event.type;
  const sessionId = event.subject;
  const known = lookup(sessionId);
  const base = {
    time: Date.parse(event.time),
    metadata: {
      version: OCSF_VERSION,
      product: PRODUCT,
      uid: event.id,
      correlation_uid: sessionId,
      event_code: kind,
      original_time: event.time,
    },
    unmapped: { event_id: event.id, type: event.type, source: event.source },
  };
  const typed = <C extends (typeof OcsfClass)[keyof typeof OcsfClass]>(
    cls: C,
    activity: { activity_id: number; activity_name: string },
    rest: Record<string, unknown> & { status_id: number; status: string; severity_id: number },
  ): OcsfEvent => ({ ...cls, ...activity, type_uid: cls.class_uid * 100 + activity.activity_id, ...base, ...rest });
  const outcome = (ok: boolean) => (ok ? { status_id: Status.Success, status: 'Success' } : { status_id: Status.Failure, status: 'Failure' });
  // The session's subject as its session.started named it (events after it do not repeat it).
  const actor = actorOf(known?.sub, known?.groups, sessionId);

  switch (kind) {
    case 'session.started': {
      const data = event.data as Data<'session.started'>;
      return typed(OcsfClass.Authentication, { activity_id: 1, activity_name: 'Logon' }, {
        ...outcome(true),
        severity_id: 1,
        ...dispositionOf('allow'),
        ...actorOf(data.subject?.sub, data.subject?.groups, sessionId),
        user: data.subject ? { name: data.subject.sub, uid: data.subject.sub } : undefined,
        dst_endpoint: { svc_name: data.resource },
        src_endpoint: { ip: data.client?.replace(/:\d+$/, '') },
        service: { name: data.resource },
        auth_protocol: 'OIDC',
      });
    }
    case 'session.ended': {
      const data = event.data as Data<'session.ended'>;
      return typed(OcsfClass.Authentication, { activity_id: 2, activity_name: 'Logoff' }, {
        ...outcome(true),
        severity_id: 1,
        ...actor,
        service: { name: data.resource },
        message: data.reason,
      });
    }
    case 'session.rejected': {
      const data = event.data as Data<'session.rejected'>;
      return typed(OcsfClass.Authentication, { activity_id: 1, activity_name: 'Logon' }, {
        ...outcome(false),
        status_code: data.code,
        status_detail: data.reason,
        severity_id: 3,
        ...dispositionOf('deny'),
        ...actorOf(data.subject?.sub, data.subject?.groups, sessionId),
        service: { name: data.resource },
        src_endpoint: { ip: data.client?.replace(/:\d+$/, '') },
      });
    }
    case 'command.decided':
    case 'command.executed': {
      const data = event.data as Data<'command.executed'>;
      const http = data.protocol === 'http';
      const cls = http ? OcsfClass.ApiActivity : OcsfClass.DatastoreActivity;
      const activity = http ? apiActivity(data.command) : datastoreActivity(data.protocol, data.action);
      const denied = data.decision === 'deny';
      // command.executed also says how the command ended and what it returned (shape and counts only).
      const executed = kind === 'command.executed';
      const failed = denied || (executed && data.ok === false);
      return typed(cls, activity, {
        ...outcome(!failed),
        status_detail: data.reason,
        ...(executed ? { status_code: data.error?.code ?? data.outcome, duration: data.durationMs } : {}),
        severity_id: denied ? Math.max(3, SeverityByRisk[data.risk] ?? 1) : (SeverityByRisk[data.risk] ?? 1),
        ...dispositionOf(data.decision),
        ...actor,
        ...(http
          ? { api: { operation: data.command.split(' ', 1)[0] ?? '', request: { uid: data.commandId } }, http_request: { url: { path: data.command.split(' ')[1] ?? '' } } }
          : { database: { name: data.resource, type: data.protocol === 'redis' ? 'Redis' : 'PostgreSQL' }, query_info: { query_string: data.command, uid: data.commandId } }),
        dst_endpoint: { svc_name: data.resource },
        firewall_rule: { name: data.rule },
        unmapped: {
          ...base.unmapped,
          command_id: data.commandId,
          action: data.action,
          risk: data.risk,
          decision: data.decision,
          rule: data.rule,
          tables: data.tables,
          ...(executed ? { outcome: data.outcome } : {}),
          ...(executed && data.result
            ? { columns: data.result.columns, row_count: data.result.rowCount, bytes: data.result.bytes, truncated: data.result.truncated, masked_counts: data.result.maskedCounts }
            : {}),
        },
      });
    }
    case 'command.completed': {
      const data = event.data as Data<'command.completed'>;
      return typed(OcsfClass.DatastoreActivity, { activity_id: 99, activity_name: 'Completed' }, {
        ...outcome(data.ok),
        status_code: data.error?.code ?? data.outcome,
        severity_id: 1,
        duration: data.durationMs,
        ...actor,
        unmapped: { ...base.unmapped, command_id: data.commandId, outcome: data.outcome },
      });
    }
    case 'result.returned': {
      const data = event.data as Data<'result.returned'>;
      // Row values stay in the store; the SIEM gets their shape and counts.
      return typed(OcsfClass.DatastoreActivity, { activity_id: 1, activity_name: 'Read' }, {
        ...outcome(true),
        severity_id: 1,
        ...actor,
        unmapped: { ...base.unmapped, command_id: data.commandId, columns: data.columns, row_count: data.rowCount, bytes: data.bytes, truncated: data.truncated, masked_counts: data.maskedCounts },
      });
    }
    default: {
      const data = (event.data ?? {}) as unknown as Record<string, unknown>;
      const decision = typeof data.decision === 'string' ? data.decision : undefined;
      return typed(OcsfClass.Base, { activity_id: 99, activity_name: kind }, {
        status_id: decision === 'deny' ? Status.Failure : Status.Other,
        status: decision === 'deny' ? 'Failure' : 'Other',
        // Something on the bus claimed to be Sluice and was not: a SIEM should page on it.
        severity_id: kind === 'event.rejected' ? 4 : 1,
        message: kind === 'event.rejected' ? `audit refused an event as not genuine: ${String(data.reason)}` : kind,
        ...actor,
        unmapped: { ...base.unmapped, ...data },
      });
    }
  }
};

/** Remembers each session's subject from its session.started event, for the events that follow. */
export class SessionSubjects {
  private readonly subjects = new Map<string, { sub: string; groups: readonly string[] }>();
  constructor(private readonly capacity = 50_000) {}

  observe(event: CloudEvent): void {
    if (kindOfType(event.type) !== 'session.started') return;
    const subject = (event.data as Data<'session.started'>).subject;
    if (!subject) return;
    if (this.subjects.size >= this.capacity) this.subjects.delete(this.subjects.keys().next().value!);
    this.subjects.set(event.subject, { sub: subject.sub, groups: subject.groups });
  }

  readonly lookup: SubjectLookup = (sessionId) => this.subjects.get(sessionId);
}
