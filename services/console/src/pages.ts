import type { ApprovalView, ChainVerification, SessionQuery, SessionSummary, StoredEvent } from './backends.js';
import { html, type SafeHtml } from './html.js';
import type { WebSession } from './web-sessions.js';

export interface Roles {
  readonly approver: boolean;
  readonly auditReader: boolean;
}

const navigation = (roles: Roles): SafeHtml =>
  roles.approver || roles.auditReader
    ? html`<nav aria-label="Main">${roles.approver ? html`<a href="/approvals">Approvals</a>` : ''}${roles.auditReader ? html`<a href="/sessions">Sessions</a><a href="/activity">Activity</a>` : ''}<a href="/policy">Policy</a></nav>`
    : html``;

export const layout = (title: string, session: WebSession | undefined, roles: Roles | undefined, body: SafeHtml): SafeHtml => html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · Sluice</title><link rel="stylesheet" href="/assets/console.css"><script src="/assets/console.js" defer></script></head>
<body><a class="skip" href="#main">Skip to content</a><header><a class="brand" href="/">Sluice</a>
${
  session && roles
    ? html`${navigation(roles)}
<form method="post" action="/logout" class="signout"><input type="hidden" name="csrf" value="${session.csrfToken}"><span class="who">${session.person.sub}</span> <button type="submit">Sign out</button></form>`
    : ''
}</header>
<main id="main" tabindex="-1">${body}</main></body></html>`;

export const signInPage = (message: string | undefined): SafeHtml => html`<h1>Sluice console</h1>
${message ? html`<p class="error" role="alert">${message}</p>` : ''}
<p>Approve held commands and replay what agents did.</p><p><a class="button" href="/login">Sign in</a></p>`;

export const nothingPage = (session: WebSession): SafeHtml => html`<h1>Nothing for you here</h1>
<p>You are signed in as <strong>${session.person.sub}</strong> (groups: ${session.person.groups.join(', ') || 'none'}). No approval rule names you as an approver, and you are not an audit reader.</p>`;

/** "4 min 05 s": what the countdown shows; the script keeps it current every second. */
export const formatTimeLeft = (expiresAt: string, now: number): string => {
  const left = Math.round((Date.parse(expiresAt) - now) / 1000);
  if (!(left > 0)) return 'expired';
  return left >= 60 ? `${Math.floor(left / 60)} min ${String(left % 60).padStart(2, '0')} s` : `${left} s`;
};

const timeLeft = (expiresAt: string, now: number): SafeHtml =>
  html`<time class="countdown" datetime="${expiresAt}" data-expires="${expiresAt}" title="expires ${expiresAt}">${formatTimeLeft(expiresAt, now)}</time>`;

const sessionLink = (sessionId: string, auditReader: boolean): SafeHtml =>
  auditReader ? html`<a href="/sessions/${encodeURIComponent(sessionId)}">${sessionId}</a>` : html`<code>${sessionId}</code>`;

/** Who looks at the inbox: what their cards offer depends on it. */
export interface Viewer {
  readonly sub: string;
  readonly csrf: string;
  readonly auditReader: boolean;
}

const approvalsOf = (approval: ApprovalView) => approval.decisions.filter((decision) => decision.decision === 'approve');

/** "1 of 2 approvals", and who gave them: the N-of-M progress the approval service counts. */
const progress = (approval: ApprovalView): SafeHtml => {
  const given = approvalsOf(approval);
  const needed = approval.approvers.minApprovals;
  return html`<span class="progress">${given.length} of ${needed} approval${needed === 1 ? '' : 's'}</span>${
    given.length > 0 ? html` <span class="by">(${given.map((decision, index) => html`${index > 0 ? ', ' : ''}<strong>${decision.approver}</strong>${decision.reason ? html`: ${decision.reason}` : ''}`)})</span>` : ''
  }`;
};

/** The agent's own words: text, never markup; shown apart so nobody takes it for Sluice's. */
const justificationOf = (approval: ApprovalView): SafeHtml =>
  approval.justification ? html`<q class="justification">${approval.justification}</q>` : html`<span class="muted">none given</span>`;

/** The agent with its issuer: another issuer may name an agent after a trusted one. */
const agentOf = (approval: ApprovalView): SafeHtml =>
  approval.requester.issuer ? html`${approval.subject} <span class="muted">from ${approval.requester.issuer}</span>` : html`${approval.subject}`;

const pendingCard = (approval: ApprovalView, viewer: Viewer, now: number): SafeHtml => {
  const mine = approval.decisions.find((decision) => decision.approver === viewer.sub);
  const still = approval.approvers.minApprovals - approvalsOf(approval).length;
  const titleId = `approval-${approval.id}`;
  return html`<article class="approval" data-approval-id="${approval.id}" aria-labelledby="${titleId}">
<h3 id="${titleId}"><span class="risk risk-${approval.risk}">${approval.risk}</span> ${approval.action ?? ''} on ${approval.resource}</h3>
<pre class="command">${approval.command}</pre>
<dl><dt>Agent</dt><dd>${agentOf(approval)}</dd><dt>Justification</dt><dd>${justificationOf(approval)}</dd>
<dt>Rule</dt><dd>${approval.rule}</dd>
<dt>Command hash</dt><dd><code>${approval.commandHash}</code></dd>
<dt>Progress</dt><dd>${progress(approval)}</dd>
<dt>Time left</dt><dd>${timeLeft(approval.expiresAt, now)}</dd>
<dt>Session</dt><dd>${sessionLink(approval.sessionId, viewer.auditReader)}</dd></dl>
${
  mine
    ? html`<p class="waiting">You approved this; it waits for ${still} more approver${still === 1 ? '' : 's'}.</p>`
    : html`<form method="post" action="/approvals/${encodeURIComponent(approval.id)}/decision">
<input type="hidden" name="csrf" value="${viewer.csrf}">
<label for="reason-${approval.id}">Reason</label> <input id="reason-${approval.id}" name="reason" maxlength="2000" required autocomplete="off">
<button type="submit" id="approve-${approval.id}" name="decision" value="approve" class="approve">Approve</button>
<button type="submit" id="deny-${approval.id}" name="decision" value="deny" class="deny">Deny</button></form>`
}</article>`;
};

const historyRow = (approval: ApprovalView): SafeHtml => html`<tr data-approval-id="${approval.id}"><td><time datetime="${approval.requestedAt}">${approval.requestedAt}</time></td><td><span class="status status-${approval.status}">${approval.status}</span></td>
<td><code class="command-inline">${approval.command}</code>${approval.justification ? html`<div class="muted">Justification: ${justificationOf(approval)}</div>` : ''}</td><td>${agentOf(approval)}</td><td>${approval.rule}</td>
<td>${approvalsOf(approval).length} of ${approval.approvers.minApprovals}</td>
<td>${approval.decisions.map((decision) => html`<div>${decision.approver}: ${decision.decision}${decision.reason ? html` (${decision.reason})` : ''}</div>`)}</td></tr>`;

/** The inbox part of the approvals page; also what the live stream sends on each change. */
export const inboxFragment = (approvals: readonly ApprovalView[], viewer: Viewer, now = Date.now()): SafeHtml => {
  const pending = approvals.filter((approval) => approval.status === 'pending');
  const history = approvals.filter((approval) => approval.status !== 'pending').slice(0, 100);
  return html`<section aria-labelledby="pending-title"><h2 id="pending-title">Pending (${pending.length})</h2>
${pending.length === 0 ? html`<p class="empty">Nothing to approve.</p>` : pending.map((approval) => pendingCard(approval, viewer, now))}</section>
<section aria-labelledby="history-title"><h2 id="history-title">History</h2>
${history.length === 0 ? html`<p class="empty">No decided or expired requests yet.</p>` : html`<table><caption class="visually-hidden">Decided, expired and cancelled requests, newest first</caption><thead><tr><th scope="col">Requested</th><th scope="col">Status</th><th scope="col">Command</th><th scope="col">Agent</th><th scope="col">Rule</th><th scope="col">Approvals</th><th scope="col">Decisions</th></tr></thead><tbody>${history.map(historyRow)}</tbody></table>`}</section>`;
};

export const approvalsPage = (approvals: readonly ApprovalView[], viewer: Viewer, notice: string | undefined): SafeHtml => html`<h1>Approvals</h1>
${notice ? html`<p class="notice" role="status">${notice}</p>` : ''}
<p class="live" id="live-state">Live updates connecting…</p>
<div id="announcer" class="visually-hidden" role="status" aria-live="polite" aria-atomic="true"></div>
<div id="inbox" data-live="/approvals/live">${inboxFragment(approvals, viewer)}</div>`;

export const sessionsPage = (query: SessionQuery, sessions: readonly SessionSummary[] | undefined, problem: string | undefined): SafeHtml => html`<h1>Sessions</h1>
<form method="get" action="/sessions" class="search">
<label>Subject <input name="subject" value="${query.subject ?? ''}"></label>
<label>Resource <input name="resource" value="${query.resource ?? ''}"></label>
<label>Decision <select name="decision"><option value="">any</option>${['allow', 'deny', 'approve'].map((decision) => html`<option value="${decision}"${query.decision === decision ? html` selected` : ''}>${decision}</option>`)}</select></label>
<label>From <input name="from" type="datetime-local" value="${query.from ?? ''}"></label>
<label>To <input name="to" type="datetime-local" value="${query.to ?? ''}"></label>
<button type="submit">Search</button></form>
${problem ? html`<p class="error" role="alert">${problem}</p>` : ''}
${
  sessions === undefined
    ? ''
    : sessions.length === 0
      ? html`<p class="empty">No session matches.</p>`
      : html`<table><thead><tr><th>Started</th><th>Agent</th><th>Resource</th><th>Protocol</th><th>Commands</th><th>Denials</th><th>Approvals</th></tr></thead><tbody>
${sessions.map((session) => html`<tr><td><a href="/sessions/${encodeURIComponent(session.session_id)}">${session.started_at}</a></td><td>${session.subject ?? ''}</td><td>${session.resource ?? ''}</td><td>${session.protocol ?? ''}</td><td>${session.commands}</td><td>${session.denials}</td><td>${session.approvals}</td></tr>`)}</tbody></table>`
}`;

const field = (data: Record<string, unknown>, name: string): string => {
  const value = data[name];
  return value === undefined || value === null ? '' : typeof value === 'string' ? value : JSON.stringify(value);
};

const resultTable = (data: Record<string, unknown>): SafeHtml => {
  const columns = Array.isArray(data.columns) ? (data.columns as unknown[]).map(String) : [];
  const rows = Array.isArray(data.rows) ? (data.rows as unknown[][]) : [];
  if (columns.length === 0) return html``;
  return html`<table class="result"><thead><tr>${columns.map((column) => html`<th>${column}</th>`)}</tr></thead><tbody>
${rows.slice(0, 50).map((row) => html`<tr>${(Array.isArray(row) ? row : []).map((cell) => html`<td>${cell === null ? 'NULL' : typeof cell === 'string' ? cell : JSON.stringify(cell)}</td>`)}</tr>`)}</tbody></table>
${rows.length > 50 || data.truncated === true ? html`<p class="muted">${field(data, 'rowCount')} rows; the first ones shown.</p>` : ''}`;
};

const eventDetail = (kind: string, data: Record<string, unknown>): SafeHtml => {
  switch (kind) {
    case 'session.started':
      return html`${field(data, 'subject') ? html`agent <strong>${(data.subject as { sub?: string })?.sub ?? ''}</strong>` : ''} on ${field(data, 'resource')} (${field(data, 'protocol')})${data.readOnly === true ? ', read-only' : ''}`;
    case 'command.decided':
    case 'command.executed':
      return html`<pre class="command">${field(data, 'command')}</pre>
<span class="decision decision-${field(data, 'decision')}">${field(data, 'decision')}</span> by rule <strong>${field(data, 'rule')}</strong> · ${field(data, 'action')} · risk ${field(data, 'risk')}
${field(data, 'outcome') ? html` · ${field(data, 'outcome')}` : ''}${kind === 'command.executed' && typeof data.result === 'object' && data.result !== null ? resultTable(data.result as Record<string, unknown>) : ''}`;
    case 'result.returned':
      return resultTable(data);
    case 'command.completed':
      return html`${field(data, 'outcome')} ${data.ok === false ? html`<span class="error">${field(data, 'error')}</span>` : ''}`;
    case 'approval.requested': {
      const needed = Number((data.approvers as { minApprovals?: unknown } | undefined)?.minApprovals ?? 1);
      return html`held for approval by rule <strong>${field(data, 'rule')}</strong> (${needed} approval${needed === 1 ? '' : 's'} needed), hash <code>${field(data, 'commandHash')}</code>${
        field(data, 'justification') ? html`<div>justification: <q class="justification">${field(data, 'justification')}</q></div>` : ''
      }`;
    }
    case 'approval.executed':
      return html`the approved command ran (hash <code>${field(data, 'commandHash')}</code>)`;
    case 'approval.expired':
      return html`nobody decided in time`;
    case 'approval.cancelled':
      return html`cancelled: ${field(data, 'reason')}`;
    case 'session.ended':
      return html`${field(data, 'reason')} after ${field(data, 'commands')} commands, ${field(data, 'durationMs')} ms`;
    case 'session.rejected':
      return html`<span class="error">${field(data, 'reason')}</span> (${field(data, 'code')})`;
    case 'approval.decided':
      return html`<strong>${field(data, 'approver')}</strong>: ${field(data, 'decision')}${field(data, 'reason') ? html` (${field(data, 'reason')})` : ''} via ${field(data, 'via')}`;
    default:
      return html`<pre class="data">${JSON.stringify(data, null, 1)}</pre>`;
  }
};

export const sessionPage = (sessionId: string, events: readonly StoredEvent[], verification: ChainVerification | undefined, next?: string): SafeHtml => {
  const brokenId = verification && !verification.ok ? verification.firstBroken.id : undefined;
  return html`<h1>Session <code>${sessionId}</code></h1>
${
  verification === undefined
    ? html`<p class="error" role="alert">The chain could not be verified.</p>`
    : verification.ok
      ? html`<p class="verified" role="status">Chain verified: ${verification.events} events intact.</p>`
      : html`<p class="tampered" role="alert">Chain broken at event #${verification.firstBroken.seq} (${verification.firstBroken.kind}): ${verification.firstBroken.reason}</p>`
}
<ol class="timeline">${events.map((event) => {
    const kind = event.type.replace(/^sluice\./, '').replace(/\.v\d+$/, '');
    const broken = event.id === brokenId;
    return html`<li class="event${broken ? ' broken' : ''}" id="event-${event.id}"><div class="when"><time datetime="${event.time}">${event.time}</time> <span class="kind">${kind}</span>${broken ? html` <strong class="tampered">tampered</strong>` : ''}</div><div class="what">${eventDetail(kind, { ...event.data })}</div></li>`;
  })}</ol>
${next === undefined ? '' : html`<p><a href="/sessions/${encodeURIComponent(sessionId)}?after=${encodeURIComponent(next)}">Later events</a></p>`}`;
};

export const errorPage = (message: string): SafeHtml => html`<h1>Something went wrong</h1><p class="error" role="alert">${message}</p><p><a href="/">Back</a></p>`;
