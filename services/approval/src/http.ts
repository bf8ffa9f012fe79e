import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { mayDecide, SluiceError, SluiceErrorCode, type ApproverIdentity } from '@sluice/contracts';
import type { TokenVerifier } from '@sluice/identity';
import type { Logger } from '@sluice/service-runtime';
import type { ApprovalStatus, DecisionVia, KnownApproval } from './approval.js';
import { parseInteraction, verifySlackRequest, type SlackNotifier, type SlackUserMapping } from './slack.js';
import type { ApprovalWorkflow } from './workflow.js';

/** The JSON an approval is shown as over HTTP. */
export const approvalView = (approval: KnownApproval) => ({
  id: approval.id,
  status: approval.status,
  sessionId: approval.sessionId,
  resource: approval.request.resource,
  subject: approval.request.subject.sub,
  requester: approval.request.subject,
  command: approval.request.command,
  commandHash: approval.request.commandHash,
  risk: approval.request.risk,
  rule: approval.request.rule,
  action: approval.request.action ?? null,
  approvers: approval.request.approvers,
  requestedAt: approval.requestedAt,
  expiresAt: approval.request.expiresAt,
  decidedAt: 'decidedAt' in approval ? approval.decidedAt : null,
  executedAt: approval.status === 'executed' ? approval.executedAt : null,
  decisions: approval.decisions,
  justification: approval.request.justification ?? null,
  ...(approval.status === 'cancelled' ? { reason: approval.reason } : {}),
});

const STATUSES: readonly ApprovalStatus[] = ['pending', 'granted', 'denied', 'expired', 'cancelled', 'executed'];
const MAX_BODY_BYTES = 64 * 1024;

export interface HttpApiDeps {
  readonly workflow: ApprovalWorkflow;
  readonly verifier: TokenVerifier;
  readonly logger: Logger;
  readonly slack?: {
    readonly notifier: SlackNotifier;
    /** Undefined when the secret is not set: every interaction is refused. */
    readonly signingSecret: string | undefined;
    readonly users: SlackUserMapping;
  };
  readonly now?: () => Date;
}

/** The code of a refusal that names none: by its HTTP status. */
const CODE_BY_STATUS: Partial<Record<number, SluiceErrorCode>> = { 401: SluiceErrorCode.TokenInvalid, 404: SluiceErrorCode.NotFound, 413: SluiceErrorCode.LimitExceeded };

/** A refusal of the decision API itself; its title is written for the caller. */
class HttpProblem extends SluiceError {
  override readonly expose = true;
  readonly code: SluiceErrorCode;
  constructor(
    readonly status: number,
    readonly title: string,
    code?: SluiceErrorCode,
  ) {
    super(title);
    this.code = code ?? CODE_BY_STATUS[status] ?? SluiceErrorCode.BadRequest;
  }
}

const STATUS_BY_CODE: Partial<Record<string, number>> = {
  [SluiceErrorCode.TokenInvalid]: 401,
  [SluiceErrorCode.TokenExpired]: 401,
  [SluiceErrorCode.SelfApproval]: 403,
  [SluiceErrorCode.NotAnApprover]: 403,
  [SluiceErrorCode.NotFound]: 404,
  [SluiceErrorCode.IllegalTransition]: 409,
};

const sendJson = (response: ServerResponse, status: number, body: unknown, contentType = 'application/json'): void => {
  const text = JSON.stringify(body);
  response.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  response.end(text);
};

/** RFC 9457 problem details; only errors marked `expose` show their message. */
const sendProblem = (response: ServerResponse, error: unknown, logger: Logger): void => {
  let status = 500;
  let title = 'internal error';
  let code: string | undefined;
  if (error instanceof HttpProblem) {
    ({ status, title, code } = error);
  } else if (error instanceof SluiceError) {
    status = STATUS_BY_CODE[error.code] ?? 500;
    code = error.code;
    title = error.expose ? error.message : 'request failed';
  } else {
    // Anything unplanned here is the bus refusing to store an event.
    status = 503;
    title = 'the approval could not be recorded; try again';
    logger.error({ err: error }, 'approval request failed');
  }
  if (status === 401) response.setHeader('www-authenticate', 'Bearer');
  sendJson(response, status, { type: 'about:blank', title, status, ...(code ? { code } : {}) }, 'application/problem+json');
};

const readBody = async (request: IncomingMessage): Promise<Buffer> => {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new HttpProblem(413, 'request body too large');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
};

/**
 * Who may read an approval: its approvers (the rule's `mayDecide` test) and the agent that asked.
 * Anyone else with a valid token (another agent of the same issuer) must not read other agents'
 * command texts, justifications, session ids and approvers' reasons.
 */
const maySee = (approval: KnownApproval, caller: ApproverIdentity): boolean => isRequester(approval, caller) || mayDecide(approval.request.approvers, caller);

/** The agent that asked: the same sub from the same issuer (a request stored before issuers were kept names none). */
const isRequester = (approval: KnownApproval, caller: ApproverIdentity): boolean => {
  const requester = approval.request.subject;
  return requester.sub === caller.sub && (!('issuer' in requester) || requester.issuer === caller.issuer);
};

const bearerToken = (request: IncomingMessage): string => {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '');
  if (!match) throw new HttpProblem(401, 'a bearer token is required', SluiceErrorCode.TokenInvalid);
  return match[1]!;
};

/**
 * The approval service's HTTP edge: the decision API (approver's OIDC token), the inbox, and
 * Slack's interactive callback (Slack's signature instead of a token).
 */
export const createHttpApi = (deps: HttpApiDeps): RequestListener => {
  const now = deps.now ?? (() => new Date());
  const { workflow, logger } = deps;

  const authenticate = async (request: IncomingMessage) => (await deps.verifier.verify(bearerToken(request))).subject;

  const decideViaApi = async (request: IncomingMessage, response: ServerResponse, id: string): Promise<void> => {
    const approver = await authenticate(request);
    let body: { decision?: unknown; reason?: unknown };
    try {
      body = JSON.parse((await readBody(request)).toString('utf8') || '{}') as typeof body;
    } catch (error) {
      if (error instanceof HttpProblem) throw error;
      throw new HttpProblem(400, 'the body must be JSON: {"decision":"approve"|"deny","reason":"…"}');
    }
    if (body === null || typeof body !== 'object' || (body.decision !== 'approve' && body.decision !== 'deny')) {
      throw new HttpProblem(400, 'decision must be "approve" or "deny"');
    }
    if (body.reason !== undefined && typeof body.reason !== 'string') throw new HttpProblem(400, 'reason must be a string');
    const via: DecisionVia = request.headers['x-sluice-client'] === 'cli' ? 'cli' : 'api';
    const approval = await workflow.execute(id, {
      type: 'Decide',
      decision: body.decision,
      approver: { sub: approver.sub, groups: approver.groups, issuer: approver.issuer },
      reason: (body.reason ?? '').slice(0, 2_000),
      via,
      at: now(),
    });
    logger.info({ approvalId: id, approver: approver.sub, decision: body.decision, status: approval.status }, 'approval decided');
    sendJson(response, 200, approvalView(approval));
  };

  const slackInteraction = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const slack = deps.slack;
    if (!slack) throw new HttpProblem(404, 'slack is not configured');
    const raw = await readBody(request);
    const header = (name: string): string | undefined => {
      const value = request.headers[name];
      return Array.isArray(value) ? value[0] : value;
    };
    const signed =
      slack.signingSecret !== undefined &&
      verifySlackRequest(slack.signingSecret, { timestamp: header('x-slack-request-timestamp'), signature: header('x-slack-signature') }, raw, now());
    if (!signed) throw new HttpProblem(401, 'the Slack signature is missing, wrong or too old', SluiceErrorCode.TokenInvalid);
    const interaction = parseInteraction(raw);
    if (!interaction) throw new HttpProblem(400, 'not an approval button press');
    slack.notifier.remember(interaction.approvalId, interaction.channel, interaction.messageTs);
    const approver = await slack.notifier.resolveUser(slack.users, interaction.userId);
    if (!approver) throw new HttpProblem(403, `Slack user ${interaction.userId} is not mapped to an approver`, SluiceErrorCode.NotAnApprover);
    const approval = await workflow.execute(interaction.approvalId, {
      type: 'Decide',
      decision: interaction.decision,
      approver,
      reason: `via Slack by ${interaction.userName ?? interaction.userId}`,
      via: 'slack',
      at: now(),
    });
    // Settled approvals are edited by the workflow's hook; a partial N-of-M shows progress here.
    if (approval.status === 'pending') slack.notifier.updateOutcome(approval);
    logger.info({ approvalId: approval.id, approver: approver.sub, decision: interaction.decision, status: approval.status }, 'approval decided in Slack');
    response.writeHead(200).end();
  };

  const route = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const url = new URL(request.url ?? '/', 'http://approval.invalid');
    let segments: string[];
    try {
      segments = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    } catch {
      throw new HttpProblem(400, 'malformed path');
    }
    const method = request.method ?? 'GET';
    if (segments[0] === 'v1' && segments[1] === 'approvals') {
      const id = segments[2];
      if (id !== undefined && segments[3] === 'decision' && segments.length === 4) {
        if (method !== 'POST') throw new HttpProblem(405, 'use POST');
        return decideViaApi(request, response, id);
      }
      if (segments.length === 3 && id !== undefined) {
        if (method !== 'GET') throw new HttpProblem(405, 'use GET');
        const caller = await authenticate(request);
        const approval = workflow.get(id);
        // One the caller may not see answers as if it did not exist: its id says nothing either.
        if (!approval || !maySee(approval, caller)) throw new HttpProblem(404, `no approval ${id}`, SluiceErrorCode.NotFound);
        return sendJson(response, 200, approvalView(approval));
      }
      if (segments.length === 2) {
        if (method !== 'GET') throw new HttpProblem(405, 'use GET');
        const caller = await authenticate(request);
        const status = url.searchParams.get('status') ?? undefined;
        if (status !== undefined && !STATUSES.includes(status as ApprovalStatus)) {
          throw new HttpProblem(400, `status must be one of ${STATUSES.join(', ')}`);
        }
        return sendJson(response, 200, { approvals: workflow.list(status as ApprovalStatus | undefined).filter((approval) => maySee(approval, caller)).map(approvalView) });
      }
    }
    if (url.pathname === '/slack/interactions') {
      if (method !== 'POST') throw new HttpProblem(405, 'use POST');
      return slackInteraction(request, response);
    }
    if (url.pathname === '/healthz' || url.pathname === '/readyz') return sendJson(response, 200, { ok: true });
    throw new HttpProblem(404, 'not found');
  };

  return (request, response) => {
    route(request, response).catch((error: unknown) => {
      if (response.headersSent) {
        response.destroy();
        return;
      }
      sendProblem(response, error, logger);
    });
  };
};
