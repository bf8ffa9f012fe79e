import type { ApproverRule, SessionSummary, StoredEvent } from '@sluice/contracts';
import { BackendError } from './errors.js';

export type { SessionSummary, StoredEvent };

/** An approval as the approval service's HTTP API shows it (approvalView). */
export interface ApprovalView {
  readonly id: string;
  readonly status: 'pending' | 'granted' | 'denied' | 'expired' | 'cancelled' | 'executed';
  readonly sessionId: string;
  readonly resource: string;
  readonly subject: string;
  readonly requester: { readonly sub: string; readonly groups: readonly string[]; readonly issuer?: string };
  readonly command: string;
  readonly commandHash: string;
  readonly risk: string;
  readonly rule: string;
  readonly action: string | null;
  readonly approvers: ApproverRule;
  readonly requestedAt: string;
  readonly expiresAt: string;
  readonly decidedAt: string | null;
  readonly decisions: readonly { readonly approver: string; readonly decision: 'approve' | 'deny'; readonly reason?: string; readonly at?: string }[];
  readonly justification?: string;
  readonly reason?: string;
}

export type ChainVerification =
  | { readonly ok: true; readonly events: number }
  | { readonly ok: false; readonly events: number; readonly firstBroken: { readonly id: string; readonly seq: number; readonly reason: string; readonly kind: string } };

/** The answer of an API called with the person's token; `status` decides what the page says. */
export type Answer<T> = { readonly ok: true; readonly body: T } | { readonly ok: false; readonly status: number; readonly title: string };

const call = async <T>(url: string, token: string, init: { method?: string; body?: unknown } = {}): Promise<Answer<T>> => {
  let response: Response;
  try {
    response = await fetch(url, {
      method: init.method ?? 'GET',
      headers: { authorization: `Bearer ${token}`, accept: 'application/json', ...(init.body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
      signal: AbortSignal.timeout(10_000),
    });
  } catch (error) {
    throw new BackendError(`${new URL(url).host} cannot be reached`, { cause: error });
  }
  const body = (await response.json().catch(() => undefined)) as (T & { title?: unknown; detail?: unknown }) | undefined;
  if (response.ok && body !== undefined) return { ok: true, body };
  const title = typeof body?.detail === 'string' ? body.detail : typeof body?.title === 'string' ? body.title : `HTTP ${response.status}`;
  return { ok: false, status: response.status, title };
};

/** The approval service's decision API and inbox, always with the person's own token. */
export class ApprovalApi {
  constructor(private readonly base: string) {}

  list(token: string): Promise<Answer<{ approvals: ApprovalView[] }>> {
    return call(`${this.base}/v1/approvals`, token);
  }

  decide(token: string, id: string, decision: 'approve' | 'deny', reason: string): Promise<Answer<ApprovalView>> {
    return call(`${this.base}/v1/approvals/${encodeURIComponent(id)}/decision`, token, { method: 'POST', body: { decision, reason } });
  }
}

export interface SessionQuery {
  readonly subject?: string;
  readonly resource?: string;
  readonly decision?: string;
  readonly from?: string;
  readonly to?: string;
}

/** Events shown on one session page: an agent decides how long its session is. */
export const SESSION_PAGE_EVENTS = 500;

/** The audit service's read API (it checks `audit.readers` itself). */
export class AuditApi {
  constructor(private readonly base: string) {}

  sessions(token: string, query: SessionQuery): Promise<Answer<{ sessions: SessionSummary[] }>> {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) if (value) params.set(key, value as string);
    params.set('limit', '100');
    return call(`${this.base}/v1/sessions?${params.toString()}`, token);
  }

  /** One page of a session's events (`after`: the previous page's `next`). */
  events(token: string, sessionId: string, after?: string): Promise<Answer<{ events: StoredEvent[]; next?: string }>> {
    const params = new URLSearchParams({ limit: String(SESSION_PAGE_EVENTS) });
    if (after !== undefined) params.set('after', after);
    return call(`${this.base}/v1/sessions/${encodeURIComponent(sessionId)}/events?${params.toString()}`, token);
  }

  verify(token: string, sessionId: string): Promise<Answer<ChainVerification>> {
    return call(`${this.base}/v1/sessions/${encodeURIComponent(sessionId)}/verify`, token);
  }

  /** Whether the audit API lets this token read (a 403 or 401 means no). */
  async mayRead(token: string): Promise<boolean> {
    const answer = await call<unknown>(`${this.base}/v1/sessions?limit=1`, token).catch(() => undefined);
    return answer?.ok === true;
  }
}
