import { describe, expect, it } from 'vitest';
import type { ApprovalView } from './backends.js';
import { formatTimeLeft, inboxFragment, type Viewer } from './pages.js';

const now = Date.parse('2026-11-26T12:00:00Z');

const approval = (overrides: Partial<ApprovalView> = {}): ApprovalView => ({
  id: 'a-1',
  status: 'pending',
  sessionId: 's-1',
  resource: 'orders-db',
  subject: 'ops-bot',
  requester: { sub: 'ops-bot', groups: ['operators'] },
  command: 'DELETE FROM refunds',
  commandHash: 'h',
  risk: 'high',
  rule: 'refunds-need-two-dbas',
  action: 'write',
  approvers: { groups: ['dba'], subs: [], minApprovals: 2 },
  requestedAt: '2026-11-26T11:59:00Z',
  expiresAt: '2026-11-26T12:01:05Z',
  decidedAt: null,
  decisions: [],
  ...overrides,
});

const viewer: Viewer = { sub: 'dba-ivan', csrf: 'token', auditReader: false };

describe('the approvals inbox', () => {
  it('shows N-of-M progress and who approved, and lets the viewer decide', () => {
    const text = inboxFragment([approval({ decisions: [{ approver: 'dba-hana', decision: 'approve', reason: 'checked' }] })], viewer, now).text;
    expect(text).toContain('<span class="progress">1 of 2 approvals</span> <span class="by">(<strong>dba-hana</strong>: checked)</span>');
    expect(text).toContain('value="approve"');
  });

  it('offers no decision to someone who already approved: the request waits for the others', () => {
    const text = inboxFragment([approval({ decisions: [{ approver: 'dba-ivan', decision: 'approve' }] })], viewer, now).text;
    expect(text).toContain('You approved this; it waits for 1 more approver.');
    expect(text).not.toContain('<button');
  });

  it("shows the agent's justification as escaped text, and says when none was given", () => {
    const evil = `"><img src=x onerror=alert(1)> approve me`;
    const text = inboxFragment([approval({ justification: evil })], viewer, now).text;
    expect(text).toContain('<q class="justification">&quot;&gt;&lt;img src=x onerror=alert(1)&gt; approve me</q>');
    expect(text).not.toContain('<img');
    expect(inboxFragment([approval()], viewer, now).text).toContain('none given');
  });

  it("shows which issuer's agent asked, pending and in History (another issuer may take a trusted agent's name)", () => {
    const fromCi = approval({ requester: { sub: 'ops-bot', groups: [], issuer: 'https://ci.example.com' } });
    expect(inboxFragment([fromCi], viewer, now).text).toContain('ops-bot <span class="muted">from https://ci.example.com</span>');
    expect(inboxFragment([{ ...fromCi, status: 'denied' }], viewer, now).text).toContain('from https://ci.example.com');
  });

  it('puts decided and expired requests in History with their progress', () => {
    const text = inboxFragment([approval({ status: 'expired', decisions: [{ approver: 'dba-hana', decision: 'approve' }] })], viewer, now).text;
    expect(text).toContain('Pending (0)');
    expect(text).toMatch(/<span class="status status-expired">expired<\/span>[\s\S]*<td>1 of 2<\/td>/);
  });
});

describe('formatTimeLeft', () => {
  it('counts minutes and seconds, then says expired', () => {
    expect(formatTimeLeft('2026-11-26T12:01:05Z', now)).toBe('1 min 05 s');
    expect(formatTimeLeft('2026-11-26T12:00:09Z', now)).toBe('9 s');
    expect(formatTimeLeft('2026-11-26T12:00:00Z', now)).toBe('expired');
    expect(formatTimeLeft('not a time', now)).toBe('expired');
  });
});
