import { createHmac, timingSafeEqual } from 'node:crypto';
import { LogLevel, WebClient, type Block, type KnownBlock } from '@slack/web-api';
import type { Logger } from '@sluice/service-runtime';
import type { ApproverIdentity, KnownApproval } from './approval.js';

/** Slack's replay window for signed requests. @see https://api.slack.com/authentication/verifying-requests-from-slack */
export const SLACK_MAX_SKEW_SECONDS = 5 * 60;

export const slackSignature = (signingSecret: string, timestamp: string, rawBody: string | Buffer): string =>
  `v0=${createHmac('sha256', signingSecret).update(`v0:${timestamp}:`).update(rawBody).digest('hex')}`;

/**
 * Checks Slack's v0 signature (HMAC-SHA256 of `v0:{timestamp}:{body}`) in constant time, and
 * refuses timestamps more than five minutes away from now so a captured request cannot be replayed.
 */
export const verifySlackRequest = (
  signingSecret: string,
  headers: { readonly timestamp: string | undefined; readonly signature: string | undefined },
  rawBody: Buffer,
  now: Date,
): boolean => {
  const { timestamp, signature } = headers;
  if (!timestamp || !signature || !/^\d{1,12}$/.test(timestamp)) return false;
  if (Math.abs(now.getTime() / 1000 - Number(timestamp)) > SLACK_MAX_SKEW_SECONDS) return false;
  const expected = Buffer.from(slackSignature(signingSecret, timestamp, rawBody));
  const given = Buffer.from(signature);
  return given.length === expected.length && timingSafeEqual(given, expected);
};

export interface SlackInteraction {
  readonly userId: string;
  readonly userName: string | undefined;
  readonly decision: 'approve' | 'deny';
  readonly approvalId: string;
  readonly channel: string | undefined;
  readonly messageTs: string | undefined;
}

/** The button press in a `block_actions` payload (form field `payload`, JSON); undefined otherwise. */
export const parseInteraction = (rawBody: Buffer): SlackInteraction | undefined => {
  const payloadText = new URLSearchParams(rawBody.toString('utf8')).get('payload');
  if (!payloadText) return undefined;
  let payload: {
    type?: string;
    user?: { id?: string; username?: string; name?: string };
    actions?: { action_id?: string; value?: string }[];
    channel?: { id?: string };
    container?: { channel_id?: string; message_ts?: string };
    message?: { ts?: string };
  };
  try {
    payload = JSON.parse(payloadText) as typeof payload;
  } catch {
    return undefined;
  }
  // JSON.parse accepts `null` and scalars too; anything but an object is not a Slack action.
  if (payload === null || typeof payload !== 'object') return undefined;
  const action = payload.actions?.find((candidate) => candidate.action_id === 'approve' || candidate.action_id === 'deny');
  if (payload.type !== 'block_actions' || !action?.value || !payload.user?.id) return undefined;
  return {
    userId: payload.user.id,
    userName: payload.user.username ?? payload.user.name,
    decision: action.action_id as 'approve' | 'deny',
    approvalId: action.value,
    channel: payload.channel?.id ?? payload.container?.channel_id,
    messageTs: payload.container?.message_ts ?? payload.message?.ts,
  };
};

/**
 * Text put into mrkdwn: Slack reads `<…>` as links and mentions (`<!channel>`, `<https://x|label>`),
 * so an agent's command could notify a channel or show a link under a harmless label. Slack's
 * formatting reference asks for `&`, `<`, `>` to be escaped as entities in mrkdwn text.
 */
const escaped = (text: string): string => String(text).replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');

/** A code block within Slack's section limit, never ending in a cut `&…;` entity. */
const code = (text: string): string =>
  '```' + escaped(text).replaceAll('```', '`\u200b``').slice(0, 2_800).replace(/&[a-z]*$/, '') + '```';

/**
 * The agent with its issuer: an issuer whose users shape their sub (a CI system's workload
 * identities) may name an agent after a trusted one, and the approver must see which it is.
 */
const agentOf = (approval: KnownApproval): string => {
  const { subject } = approval.request;
  return 'issuer' in subject ? `${subject.sub} (from ${subject.issuer})` : subject.sub;
};

export const requestBlocks = (approval: KnownApproval): (Block | KnownBlock)[] => [
  { type: 'header', text: { type: 'plain_text', text: `Approval needed: ${approval.request.risk} risk on ${approval.request.resource}` } },
  {
    type: 'section',
    fields: [
      { type: 'mrkdwn', text: `*Agent*\n${escaped(agentOf(approval))}` },
      { type: 'mrkdwn', text: `*Risk*\n${escaped(approval.request.risk)}` },
      { type: 'mrkdwn', text: `*Rule*\n${escaped(approval.request.rule)}` },
      { type: 'mrkdwn', text: `*Expires*\n${approval.request.expiresAt}` },
    ],
  },
  { type: 'section', text: { type: 'mrkdwn', text: `*Command*\n${code(approval.request.command)}` } },
  // plain_text: the agent's words must not become Slack links or mentions.
  ...(approval.request.justification ? [{ type: 'section', text: { type: 'plain_text', text: `Justification: ${approval.request.justification}`, emoji: false } } as const] : []),
  { type: 'context', elements: [{ type: 'mrkdwn', text: `Approval \`${escaped(approval.id)}\` · hash \`${escaped(approval.request.commandHash)}\`` }] },
  {
    type: 'actions',
    block_id: 'sluice_decision',
    elements: [
      { type: 'button', action_id: 'approve', style: 'primary', text: { type: 'plain_text', text: 'Approve' }, value: approval.id },
      { type: 'button', action_id: 'deny', style: 'danger', text: { type: 'plain_text', text: 'Deny' }, value: approval.id },
    ],
  },
];

export const outcomeText = (approval: KnownApproval): string => {
  const by = approval.decisions.map((decision) => `${decision.decision === 'approve' ? 'approved' : 'denied'} by ${decision.approver}`).join(', ');
  switch (approval.status) {
    case 'granted':
    case 'executed':
      return `Approved (${by})`;
    case 'denied':
      return `Denied (${by})`;
    case 'expired':
      return 'Expired without a decision';
    case 'cancelled':
      return `Cancelled: ${approval.reason}`;
    case 'pending':
      return by ? `Pending (${by})` : 'Pending';
  }
};

const outcomeBlocks = (approval: KnownApproval): (Block | KnownBlock)[] => [
  ...requestBlocks(approval).filter((block) => block.type !== 'actions'),
  { type: 'section', text: { type: 'mrkdwn', text: `*${escaped(outcomeText(approval))}*` } },
];

export interface SlackUserMapping {
  readonly [slackUserIdOrEmail: string]: { readonly sub: string; readonly groups: readonly string[]; readonly issuer?: string };
}

/**
 * Posts requests to a channel and edits them with the outcome. Failures are logged, never
 * raised: Slack is a convenience channel, the decision API stays the source of truth.
 */
export class SlackNotifier {
  readonly client: WebClient;
  /** approval id -> where its message lives, to edit it when the approval settles. */
  readonly #messages = new Map<string, { channel: string; ts: string }>();
  private readonly channel: string;

  constructor(
    settings: { readonly token: string; readonly channel: string; readonly apiUrl: string },
    private readonly logger: Logger,
  ) {
    this.channel = settings.channel;
    this.client = new WebClient(settings.token, {
      slackApiUrl: settings.apiUrl,
      logLevel: LogLevel.ERROR,
      timeout: 10_000,
      retryConfig: { retries: 3, factor: 2, minTimeout: 200, maxTimeout: 2_000 },
    });
  }

  notify(approval: KnownApproval): void {
    this.client.chat
      .postMessage({
        channel: this.channel,
        text: `Approval needed: ${agentOf(approval)} on ${approval.request.resource} (${approval.request.risk} risk)`,
        blocks: requestBlocks(approval),
      })
      .then((result) => {
        if (result.ts && result.channel) this.#messages.set(approval.id, { channel: result.channel, ts: result.ts });
      })
      .catch((error: unknown) => this.logger.warn({ err: error, approvalId: approval.id }, 'slack postMessage failed'));
  }

  /** Remembers a message seen in an interaction (after a restart the map is empty). */
  remember(approvalId: string, channel: string | undefined, ts: string | undefined): void {
    if (channel && ts) this.#messages.set(approvalId, { channel, ts });
  }

  updateOutcome(approval: KnownApproval): void {
    const message = this.#messages.get(approval.id);
    if (!message) return;
    this.client.chat
      .update({ channel: message.channel, ts: message.ts, text: outcomeText(approval), blocks: outcomeBlocks(approval) })
      .catch((error: unknown) => this.logger.warn({ err: error, approvalId: approval.id }, 'slack chat.update failed'));
  }

  /** The approver a Slack user is: configured by Slack user id, or by the user's email. */
  async resolveUser(users: SlackUserMapping, userId: string): Promise<ApproverIdentity | undefined> {
    // A mapping without an issuer is no OIDC identity: it matches only approvers that name no issuer.
    const identity = (mapped: SlackUserMapping[string] | undefined): ApproverIdentity | undefined =>
      mapped && { sub: mapped.sub, groups: mapped.groups, issuer: mapped.issuer ?? '' };
    // Own keys only: a user id such as `constructor` must not find Object's prototype.
    const byId = Object.hasOwn(users, userId) ? users[userId] : undefined;
    if (byId) return identity(byId);
    if (!Object.keys(users).some((key) => key.includes('@'))) return undefined;
    try {
      const info = await this.client.users.info({ user: userId });
      const email = info.user?.profile?.email?.toLowerCase();
      if (!email) return undefined;
      const match = Object.entries(users).find(([key]) => key.toLowerCase() === email);
      return identity(match?.[1]);
    } catch (error) {
      this.logger.warn({ err: error, userId }, 'slack users.info failed');
      return undefined;
    }
  }
}
