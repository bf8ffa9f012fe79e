import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigInvalidError, mayDecide } from '@sluice/contracts';
import { apiBaseUrl, parseAddress, requireSecret, type LoadedConfig } from '@sluice/config';
import { createTokenVerifier, type TokenVerifier } from '@sluice/identity';
import { createApiServer, readApiTls } from '@sluice/service-runtime';
import type { Logger } from '@sluice/telemetry';
import { activityCounts, ActivityFeed, activityPage, activityRow } from './activity.js';
import { CONSOLE_CSS, CONSOLE_JS } from './assets.js';
import { ApprovalApi, AuditApi, type ApprovalView, type SessionQuery } from './backends.js';
import { BackendError, ConsoleError, CsrfError, MalformedPathError, SignInError } from './errors.js';
import type { SafeHtml } from './html.js';
import { ApprovalFeed, consoleBusAuth } from './live.js';
import { CodeFlow } from './oidc-login.js';
import { policyPage, policyView, type ExplainQuery } from './policy-page.js';
import { approvalsPage, errorPage, inboxFragment, layout, nothingPage, sessionPage, sessionsPage, signInPage, type Roles, type Viewer } from './pages.js';
import { readCookie, sameSecret, SESSION_COOKIE, SIGN_IN_COOKIE, WebSessions, type Person, type WebSession } from './web-sessions.js';

export interface ConsoleServiceOptions {
  readonly loaded: LoadedConfig;
  readonly logger: Logger;
  /** Tests may pass their own; by default the configured issuers verify the person's token. */
  readonly verifier?: TokenVerifier;
}

export interface RunningConsole {
  readonly address: AddressInfo;
  stop(): Promise<void>;
}

const MAX_FORM_BYTES = 16 * 1024;
const SSE_HEARTBEAT_MS = 25_000;
/**
 * Live streams one web session may hold open (a few tabs). Each inbox stream asks the approval
 * API again on every approval event, so unbounded streams would multiply that load at will.
 */
export const MAX_LIVE_STREAMS_PER_SESSION = 8;
/** The approval service publishes an event before it updates its inbox: each change gets a second look. */
const RECHECK_AFTER_MS = 300;

/** No inline script or style, nothing from anywhere else, never framed. */
const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  // same-origin, not no-referrer: with no-referrer Chromium sends `Origin: null` on form posts,
  // and the Origin check below needs the real one.
  'referrer-policy': 'same-origin',
  'x-frame-options': 'DENY',
  'cache-control': 'no-store',
};

const NOTICES: Record<string, string> = { approve: 'Approved.', deny: 'Denied.' };

const readForm = async (request: IncomingMessage): Promise<URLSearchParams> => {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > MAX_FORM_BYTES) throw new CsrfError('the form is too large');
    chunks.push(chunk as Buffer);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
};

export const startConsoleService = async ({ loaded, logger, verifier: givenVerifier }: ConsoleServiceOptions): Promise<RunningConsole> => {
  const config = loaded.config;
  const settings = config.services.console;
  if (!settings) throw new ConfigInvalidError('services.console', 'the console settings');
  const listen = parseAddress(settings.http)!;
  const httpTls = readApiTls(settings.tls, loaded.dir, 'services.console.tls');
  const publicUrl = (settings.publicUrl ?? apiBaseUrl(settings)).replace(/\/$/, '');
  const publicOrigin = new URL(publicUrl).origin;
  // Served over TLS itself, or behind a proxy that browsers reach with https.
  const secureCookies = httpTls !== undefined || publicUrl.startsWith('https:');
  const issuer = settings.oidc.issuer ?? config.identity.oidc[0]?.issuer;
  if (!issuer) throw new ConfigInvalidError('services.console.oidc.issuer', 'an issuer (none is in identity.oidc either)');
  // The person's token must pass the audit and approval services, which only know identity.oidc.
  if (!config.identity.oidc.some((entry) => entry.issuer.replace(/\/$/, '') === issuer.replace(/\/$/, ''))) {
    throw new ConfigInvalidError('services.console.oidc.issuer', 'one of the identity.oidc issuers');
  }
  const flow = new CodeFlow({
    issuer,
    clientId: settings.oidc.clientId,
    clientSecret: settings.oidc.clientSecret ? requireSecret(settings.oidc.clientSecret, loaded.dir) : undefined,
    scope: settings.oidc.scope,
    resource: settings.oidc.resource,
    redirectUri: `${publicUrl}/callback`,
  });
  const verifier = givenVerifier ?? createTokenVerifier(config.identity.oidc);
  const approvalApi = new ApprovalApi(apiBaseUrl(config.services.approval));
  const auditApi = new AuditApi(apiBaseUrl(config.services.audit));
  const sessions = new WebSessions();
  /** Open live streams by web session, ended at sign-out. */
  const liveStreams = new Map<string, Set<ServerResponse>>();
  const feed = new ApprovalFeed(process.env.NATS_URL || config.bus.url, config.bus.subjectPrefix, consoleBusAuth(loaded), logger);
  await feed.start();
  const activity = new ActivityFeed(loaded, () => feed.connection, config.bus.subjectPrefix, logger);

  const approverRules = config.rules
    .filter((rule) => rule.effect === 'approve')
    .map((rule) => ({ groups: rule.approvers?.groups ?? [], subs: rule.approvers?.subs ?? [], issuers: [rule.approvers?.issuer ?? []].flat(), minApprovals: 1 }));
  const rolesOf = (session: WebSession): Roles => ({
    approver: approverRules.some((rule) => mayDecide(rule, session.person)),
    auditReader: session.auditReader,
  });
  /** The same test the approval service applies when deciding: named by the rule, and not the requester. */
  const mayAct = (person: Person, approval: ApprovalView): boolean =>
    approval.requester.sub !== person.sub && mayDecide(approval.approvers, person);

  const viewerOf = (session: WebSession): Viewer => ({ sub: session.person.sub, csrf: session.csrfToken, auditReader: session.auditReader });

  const cookie = (name: string, value: string, maxAgeSeconds: number): string =>
    `${name}=${value}; Path=/; HttpOnly; SameSite=Lax; Max-Age=${maxAgeSeconds}${secureCookies ? '; Secure' : ''}`;

  const sendPage = (response: ServerResponse, status: number, title: string, session: WebSession | undefined, body: SafeHtml, headers: Record<string, string | string[]> = {}): void => {
    const text = layout(title, session, session ? rolesOf(session) : undefined, body).text;
    response.writeHead(status, { ...SECURITY_HEADERS, 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
    response.end(text);
  };
  const redirect = (response: ServerResponse, location: string, headers: Record<string, string | string[]> = {}): void => {
    response.writeHead(303, { ...SECURITY_HEADERS, location, ...headers });
    response.end();
  };

  /** Every state-changing request: the session's token in the form, and not sent from another site. */
  const checkCsrf = (request: IncomingMessage, session: WebSession, form: URLSearchParams): void => {
    const origin = request.headers.origin;
    if (origin !== undefined && origin !== publicOrigin) throw new CsrfError('the request came from another origin');
    if (request.headers['sec-fetch-site'] === 'cross-site') throw new CsrfError('the request came from another site');
    const sent = form.get('csrf');
    if (!sent || !sameSecret(sent, session.csrfToken)) throw new CsrfError('the form is stale or was not sent by this console; reload the page');
  };

  const visibleApprovals = async (session: WebSession): Promise<ApprovalView[]> => {
    const answer = await approvalApi.list(session.accessToken);
    if (!answer.ok) throw new BackendError(`the approval service refused the inbox (${answer.title})`);
    return answer.body.approvals.filter((approval) => mayAct(session.person, approval));
  };

  /** Starts a server-sent event stream that ends at sign-out; `onClose` runs once it is gone. */
  const openStream = (request: IncomingMessage, response: ServerResponse, session: WebSession, onClose: () => void): void => {
    response.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/event-stream; charset=utf-8', connection: 'keep-alive' });
    // Node sends the head with the first bytes of body: without these the browser would only
    // see the stream open at the first event or heartbeat.
    response.write(': open\n\n');
    const streams = liveStreams.get(session.id) ?? new Set<ServerResponse>();
    liveStreams.set(session.id, streams.add(response));
    const heartbeat = setInterval(() => (sessions.isOpen(session) ? response.write(': keep-alive\n\n') : response.end()), SSE_HEARTBEAT_MS);
    request.on('close', () => {
      streams.delete(response);
      if (streams.size === 0) liveStreams.delete(session.id);
      clearInterval(heartbeat);
      onClose();
    });
  };

  const tooManyStreams = (response: ServerResponse, session: WebSession): boolean => {
    if ((liveStreams.get(session.id)?.size ?? 0) < MAX_LIVE_STREAMS_PER_SESSION) return false;
    const text = 'too many live views open; close some tabs';
    response.writeHead(429, { ...SECURITY_HEADERS, 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text), 'retry-after': '30' });
    response.end(text);
    return true;
  };

  const liveActivity = async (request: IncomingMessage, response: ServerResponse, session: WebSession): Promise<void> => {
    if (tooManyStreams(response, session)) return;
    let opened = false;
    const unwatch = activity.watch((item) => {
      if (!opened) return;
      if (!sessions.isOpen(session)) return void response.end();
      response.write(`event: activity\ndata: ${JSON.stringify({ row: activityRow(item).text, counts: activityCounts(activity.counts).text })}\n\n`);
    });
    // The page says "live" once the stream opens: by then the bus must already be sending.
    await activity.subscribed;
    if (request.destroyed) return unwatch();
    openStream(request, response, session, unwatch);
    opened = true;
  };

  const liveInbox = async (request: IncomingMessage, response: ServerResponse, session: WebSession): Promise<void> => {
    if (tooManyStreams(response, session)) return;
    let closed = false;
    let timer: NodeJS.Timeout | undefined;
    const push = async (): Promise<void> => {
      if (closed) return;
      if (!sessions.isOpen(session)) return void response.end();
      try {
        const approvals = await visibleApprovals(session);
        if (closed) return;
        response.write(`event: inbox\ndata: ${JSON.stringify({ html: inboxFragment(approvals, viewerOf(session)).text })}\n\n`);
      } catch (error) {
        logger.warn({ err: error }, 'live inbox could not be refreshed');
      }
    };
    let recheck: NodeJS.Timeout | undefined;
    // Assigned after openStream, whose close callback may already need it.
    // eslint-disable-next-line prefer-const
    let unlisten: (() => void) | undefined;
    openStream(request, response, session, () => {
      closed = true;
      clearTimeout(timer);
      clearTimeout(recheck);
      unlisten?.();
    });
    unlisten = feed.listen(() => {
      // Approvals change in bursts (a request and its first decision): one refresh per burst, and
      // one more a little later, since the approval service publishes before it updates its inbox.
      clearTimeout(timer);
      clearTimeout(recheck);
      timer = setTimeout(() => void push(), 50);
      recheck = setTimeout(() => void push(), RECHECK_AFTER_MS);
    });
    await push();
  };

  const route = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const url = new URL(request.url ?? '/', publicUrl);
    const method = request.method ?? 'GET';
    const path = url.pathname;
    if (path === '/assets/console.js' || path === '/assets/console.css') {
      const js = path.endsWith('.js');
      response.writeHead(200, { ...SECURITY_HEADERS, 'content-type': js ? 'text/javascript; charset=utf-8' : 'text/css; charset=utf-8', 'cache-control': 'max-age=300' });
      return void response.end(js ? CONSOLE_JS : CONSOLE_CSS);
    }
    if (path === '/healthz') {
      response.writeHead(200, { 'content-type': 'application/json' });
      return void response.end('{"ok":true}');
    }
    if (path === '/login' && method === 'GET') {
      const { pending, location } = await flow.begin('/', Date.now());
      sessions.rememberSignIn(pending);
      return redirect(response, location, { 'set-cookie': cookie(SIGN_IN_COOKIE, pending.state, 600) });
    }
    if (path === '/callback' && method === 'GET') {
      const state = url.searchParams.get('state') ?? '';
      const browserState = readCookie(request, SIGN_IN_COOKIE) ?? '';
      // The state must come back to the browser that started the sign-in (login CSRF).
      const pending = state && browserState && sameSecret(state, browserState) ? sessions.takeSignIn(state) : undefined;
      if (!pending) throw new SignInError('the sign-in expired or was started elsewhere; sign in again');
      const issuerError = url.searchParams.get('error');
      if (issuerError) throw new SignInError(`the issuer refused the sign-in (${issuerError})`);
      const code = url.searchParams.get('code');
      if (!code) throw new SignInError('the issuer sent no code');
      const accessToken = await flow.finish(code, pending);
      let identity;
      try {
        identity = await verifier.verify(accessToken);
      } catch (error) {
        throw new SignInError('the issuer gave a token Sluice does not accept (check identity.oidc audience)', { cause: error });
      }
      const person: Person = { sub: identity.subject.sub, groups: [...identity.subject.groups], issuer: identity.subject.issuer };
      const session = sessions.open(person, accessToken, identity.expiresAt, await auditApi.mayRead(accessToken));
      logger.info({ sub: person.sub }, 'signed in to the console');
      return redirect(response, pending.returnTo, { 'set-cookie': [cookie(SESSION_COOKIE, session.id, Math.floor((session.expiresAt - Date.now()) / 1000)), cookie(SIGN_IN_COOKIE, '', 0)] });
    }

    const session = sessions.find(request);
    if (!session) {
      if (path === '/') return sendPage(response, 200, 'Sign in', undefined, signInPage(undefined));
      return redirect(response, '/');
    }
    const roles = rolesOf(session);
    if (path === '/logout' && method === 'POST') {
      checkCsrf(request, session, await readForm(request));
      sessions.close(session.id);
      for (const stream of liveStreams.get(session.id) ?? []) stream.end();
      return redirect(response, '/', { 'set-cookie': cookie(SESSION_COOKIE, '', 0) });
    }
    if (path === '/' && method === 'GET') {
      if (roles.approver) return redirect(response, '/approvals');
      if (roles.auditReader) return redirect(response, '/sessions');
      return sendPage(response, 200, 'Nothing here', session, nothingPage(session));
    }
    if (path.startsWith('/approvals')) {
      if (!roles.approver) return sendPage(response, 403, 'Nothing here', session, nothingPage(session));
      if (path === '/approvals' && method === 'GET') {
        const done = url.searchParams.get('done') ?? '';
        return sendPage(response, 200, 'Approvals', session, approvalsPage(await visibleApprovals(session), viewerOf(session), NOTICES[done]));
      }
      if (path === '/approvals/live' && method === 'GET') return liveInbox(request, response, session);
      const decision = /^\/approvals\/([^/]+)\/decision$/.exec(path);
      if (decision && method === 'POST') {
        const form = await readForm(request);
        checkCsrf(request, session, form);
        const verdict = form.get('decision');
        if (verdict !== 'approve' && verdict !== 'deny') throw new CsrfError('choose Approve or Deny');
        const id = decodePathSegment(decision[1]!);
        const answer = await approvalApi.decide(session.accessToken, id, verdict, (form.get('reason') ?? '').slice(0, 2_000));
        logger.info({ approvalId: id, approver: session.person.sub, decision: verdict, ok: answer.ok }, 'decision from the console');
        if (answer.ok) return redirect(response, `/approvals?done=${verdict}`);
        const approvals = await visibleApprovals(session);
        return sendPage(response, answer.status >= 400 && answer.status < 500 ? answer.status : 502, 'Approvals', session, approvalsPage(approvals, viewerOf(session), `The approval service refused: ${answer.title}`));
      }
    }
    if (path === '/policy' && method === 'GET') {
      if (!roles.approver && !roles.auditReader) return sendPage(response, 403, 'Nothing here', session, nothingPage(session));
      const kind = url.searchParams.get('kind');
      const query: ExplainQuery | undefined = url.searchParams.has('command')
        ? {
            sub: url.searchParams.get('sub')?.trim() ?? '',
            groups: url.searchParams.get('groups') ?? '',
            issuer: url.searchParams.get('issuer') ?? '',
            resource: url.searchParams.get('resource') ?? '',
            kind: kind === 'redis' || kind === 'http' ? kind : 'sql',
            command: (url.searchParams.get('command') ?? '').slice(0, 16_384),
          }
        : undefined;
      return sendPage(response, 200, 'Policy', session, policyPage(await policyView(loaded.path, feed.policyVersion, query), query));
    }
    if (path === '/activity' || path === '/activity/live') {
      if (!roles.auditReader) return sendPage(response, 403, 'Nothing here', session, nothingPage(session));
      if (method !== 'GET') return sendPage(response, 405, 'Not allowed', session, errorPage('Use GET.'));
      if (path === '/activity/live') return liveActivity(request, response, session);
      return sendPage(response, 200, 'Activity', session, activityPage(activity));
    }
    if (path === '/sessions' || path.startsWith('/sessions/')) {
      if (!roles.auditReader) return sendPage(response, 403, 'Nothing here', session, nothingPage(session));
      if (path === '/sessions' && method === 'GET') {
        const query = Object.fromEntries(
          ['subject', 'resource', 'decision', 'from', 'to'].map((key) => [key, url.searchParams.get(key)?.trim() || undefined]).filter(([, value]) => value !== undefined),
        ) as SessionQuery;
        // datetime-local has no zone: the console reads it as UTC, as it shows times.
        const api = { ...query, ...(query.from ? { from: toIso(query.from) } : {}), ...(query.to ? { to: toIso(query.to) } : {}) };
        const answer = await auditApi.sessions(session.accessToken, api);
        return sendPage(response, 200, 'Sessions', session, sessionsPage(query, answer.ok ? answer.body.sessions : undefined, answer.ok ? undefined : answer.title));
      }
      const one = /^\/sessions\/([^/]+)$/.exec(path);
      if (one && method === 'GET') {
        const sessionId = decodePathSegment(one[1]!);
        const after = url.searchParams.get('after') ?? undefined;
        if (after !== undefined && !/^\d+$/.test(after)) return sendPage(response, 400, 'Session', session, errorPage('after must be an event seq.'));
        const [events, verification] = await Promise.all([auditApi.events(session.accessToken, sessionId, after), auditApi.verify(session.accessToken, sessionId)]);
        if (!events.ok) return sendPage(response, events.status === 404 ? 404 : 502, 'Session', session, errorPage(events.title));
        return sendPage(response, 200, 'Session', session, sessionPage(sessionId, events.body.events, verification.ok ? verification.body : undefined, events.body.next));
      }
    }
    return sendPage(response, 404, 'Not found', session, errorPage('There is no such page.'));
  };

  const server: Server = createApiServer(httpTls, (request, response) => {
    route(request, response).catch((error: unknown) => {
      if (response.headersSent) return void response.destroy();
      if (error instanceof ConsoleError) {
        const session = sessions.find(request);
        const body = error instanceof SignInError && !session ? signInPage(error.message) : errorPage(error.message);
        return sendPage(response, error.status, 'Error', session, body);
      }
      logger.error({ err: error }, 'console request failed');
      sendPage(response, 500, 'Error', undefined, errorPage('The console failed; see its log.'));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => resolve());
  });
  logger.info({ http: settings.http, publicUrl, tls: httpTls !== undefined }, 'console listening');
  return {
    address: server.address() as AddressInfo,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await feed.stop();
    },
  };
};

const decodePathSegment = (segment: string): string => {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new MalformedPathError();
  }
};

const toIso = (local: string): string => {
  const date = new Date(/[zZ]|[+-]\d\d:\d\d$/.test(local) ? local : `${local}Z`);
  return Number.isNaN(date.getTime()) ? local : date.toISOString();
};
