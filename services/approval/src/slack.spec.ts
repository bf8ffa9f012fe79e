import { describe, expect, it } from 'vitest';
import { decide, evolve, initialState, type KnownApproval } from './approval.js';
import { parseInteraction, requestBlocks, slackSignature, verifySlackRequest } from './slack.js';

const secret = 'signing-secret';
const now = new Date('2026-01-01T00:10:00Z');
const ts = String(Math.floor(now.getTime() / 1000));
const body = Buffer.from(
  new URLSearchParams({
    payload: JSON.stringify({ type: 'block_actions', user: { id: 'U1', username: 'ann' }, actions: [{ action_id: 'deny', value: 'a-1' }], channel: { id: 'C1' }, container: { message_ts: '1.2' } }),
  }).toString(),
);

describe('slack requests', () => {
  it('accepts a request signed with the signing secret within five minutes', () => {
    expect(verifySlackRequest(secret, { timestamp: ts, signature: slackSignature(secret, ts, body) }, body, now)).toBe(true);
  });

  it('refuses a wrong secret, a changed body, a missing header or a stale timestamp', () => {
    expect(verifySlackRequest(secret, { timestamp: ts, signature: slackSignature('other', ts, body) }, body, now)).toBe(false);
    expect(verifySlackRequest(secret, { timestamp: ts, signature: slackSignature(secret, ts, body) }, Buffer.concat([body, Buffer.from('x')]), now)).toBe(false);
    expect(verifySlackRequest(secret, { timestamp: undefined, signature: slackSignature(secret, ts, body) }, body, now)).toBe(false);
    const stale = String(Number(ts) - 301);
    expect(verifySlackRequest(secret, { timestamp: stale, signature: slackSignature(secret, stale, body) }, body, now)).toBe(false);
  });

  it('reads the button, the user, and where the message lives from a block_actions payload', () => {
    expect(parseInteraction(body)).toEqual({ userId: 'U1', userName: 'ann', decision: 'deny', approvalId: 'a-1', channel: 'C1', messageTs: '1.2' });
    expect(parseInteraction(Buffer.from('payload=%7Bnot-json'))).toBeUndefined();
  });

  it('answers undefined, not a TypeError, when the payload is JSON but not an object', () => {
    for (const payload of ['null', '42', '%22text%22']) expect(parseInteraction(Buffer.from(`payload=${payload}`))).toBeUndefined();
  });

  it("shows the agent's justification as plain text (no links or mentions), and nothing when none was given", () => {
    const pending = (justification?: string): KnownApproval =>
      decide(
        {
          type: 'Request',
          id: 'a-1',
          sessionId: 's-1',
          commandId: 'c-1',
          resource: 'shop-db',
          requester: { sub: 'agent', groups: [], issuer: 'https://idp.example.com' },
          command: 'DELETE FROM orders',
          commandHash: 'h',
          risk: 'high',
          rule: 'r',
          approvers: { groups: ['dba'], subs: [], minApprovals: 1 },
          at: now,
          expiresAt: new Date(now.getTime() + 60_000),
          ...(justification === undefined ? {} : { justification }),
        },
        initialState,
      ).reduce(evolve, initialState) as KnownApproval;
    const texts = (approval: KnownApproval) => JSON.stringify(requestBlocks(approval));
    expect(requestBlocks(pending('see <https://evil.example|the runbook> <!channel>'))).toContainEqual({
      type: 'section',
      text: { type: 'plain_text', text: 'Justification: see <https://evil.example|the runbook> <!channel>', emoji: false },
    });
    expect(texts(pending())).not.toContain('Justification');
  });

  it('escapes the command (and every other field) in mrkdwn, so an agent cannot post a mention or a labelled link', () => {
    const approval = decide(
      {
        type: 'Request',
        id: 'a-2',
        sessionId: 's-1',
        commandId: 'c-1',
        resource: 'shop-db',
        requester: { sub: 'agent<!here>', groups: [], issuer: 'https://idp.example.com' },
        command: 'SET note "<!channel> <https://evil.example|approved by security> & more"',
        commandHash: 'h',
        risk: 'high',
        rule: 'r',
        approvers: { groups: ['dba'], subs: [], minApprovals: 1 },
        at: now,
        expiresAt: new Date(now.getTime() + 60_000),
      },
      initialState,
    ).reduce(evolve, initialState) as KnownApproval;
    // No plain_text block here (no justification): every text below is mrkdwn.
    const mrkdwn = JSON.stringify(requestBlocks(approval));
    expect(mrkdwn).not.toMatch(/<[!@#h]/);
    expect(mrkdwn).toContain('&lt;!channel&gt; &lt;https://evil.example|approved by security&gt; &amp; more');
    expect(mrkdwn).toContain('agent&lt;!here&gt;');
  });
});
