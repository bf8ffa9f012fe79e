import { createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface SlackCall {
  /** Web API method, e.g. `chat.postMessage`. */
  readonly method: string;
  /** The arguments, from a form or JSON body; JSON-valued form fields (blocks) are parsed. */
  readonly args: Record<string, unknown>;
  /** The bearer token the client sent. */
  readonly token: string | undefined;
}

export interface SlackTestServer {
  /** Pass as `slackApiUrl` / config `approval.slack.apiUrl`. */
  readonly apiUrl: string;
  readonly calls: readonly SlackCall[];
  /** Resolves with the first call of `method` matching `predicate`, waiting up to `timeoutMs`. */
  waitForCall(method: string, predicate?: (call: SlackCall) => boolean, timeoutMs?: number): Promise<SlackCall>;
  close(): Promise<void>;
}

export interface SlackTestServerOptions {
  /** Slack users known to `users.info`, by id. */
  readonly users?: Record<string, { readonly email?: string; readonly name?: string }>;
  readonly channelId?: string;
}

const readBody = async (request: IncomingMessage): Promise<string> => {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
};

const parseArgs = (contentType: string, body: string): Record<string, unknown> => {
  if (contentType.includes('application/json')) return body ? (JSON.parse(body) as Record<string, unknown>) : {};
  const args: Record<string, unknown> = {};
  for (const [key, value] of new URLSearchParams(body)) {
    // The SDK form-encodes nested arguments (blocks, attachments) as JSON strings.
    if (/^[[{]/.test(value)) {
      try {
        args[key] = JSON.parse(value);
        continue;
      } catch {
        // a plain string that happens to start with a bracket
      }
    }
    args[key] = value;
  }
  return args;
};

/**
 * A local server that speaks Slack's Web API wire format (`POST /api/<method>`, form or JSON
 * bodies, `{ ok, ... }` answers) and records every call, for tests of Slack notifications.
 */
export const startSlackServer = async (options: SlackTestServerOptions = {}): Promise<SlackTestServer> => {
  const calls: SlackCall[] = [];
  const listeners = new Set<() => void>();
  const channelId = options.channelId ?? 'C0SLUICE01';
  let counter = 0;

  const server: Server = createServer((request, response) => {
    void (async () => {
      const method = (request.url ?? '').replace(/^\/api\//, '').split('?')[0] ?? '';
      const args = parseArgs(request.headers['content-type'] ?? '', await readBody(request));
      const authorization = request.headers.authorization;
      const token = authorization?.startsWith('Bearer ') ? authorization.slice(7) : typeof args.token === 'string' ? args.token : undefined;
      calls.push({ method, args, token });
      for (const listener of [...listeners]) listener();
      let answer: Record<string, unknown>;
      if (!token) answer = { ok: false, error: 'not_authed' };
      else if (method === 'chat.postMessage') {
        counter += 1;
        const ts = `${Math.floor(Date.now() / 1000)}.${String(counter).padStart(6, '0')}`;
        answer = { ok: true, channel: channelId, ts, message: { type: 'message', text: args.text, ts } };
      } else if (method === 'chat.update') {
        answer = { ok: true, channel: args.channel, ts: args.ts, text: args.text };
      } else if (method === 'users.info') {
        const id = typeof args.user === 'string' ? args.user : '';
        const user = options.users?.[id];
        answer = user ? { ok: true, user: { id, name: user.name ?? id, profile: { email: user.email } } } : { ok: false, error: 'user_not_found' };
      } else answer = { ok: false, error: 'unknown_method' };
      const text = JSON.stringify(answer);
      response.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
      response.end(text);
    })().catch(() => {
      response.writeHead(500).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    apiUrl: `http://127.0.0.1:${port}/api/`,
    calls,
    waitForCall(method, predicate = () => true, timeoutMs = 5_000) {
      const find = () => calls.find((call) => call.method === method && predicate(call));
      const found = find();
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`no ${method} call within ${timeoutMs} ms (calls: ${calls.map((call) => call.method).join(', ') || 'none'})`));
        }, timeoutMs);
        const check = (): void => {
          const match = find();
          if (!match) return;
          clearTimeout(timer);
          listeners.delete(check);
          resolve(match);
        };
        listeners.add(check);
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
};

/**
 * A Slack interactive callback as Slack sends it: form-encoded `payload`, signed with v0
 * (HMAC-SHA256 of `v0:{timestamp}:{body}`). `timestamp` in seconds, default now.
 */
export const signedSlackInteraction = (
  signingSecret: string,
  payload: Record<string, unknown>,
  timestamp = Math.floor(Date.now() / 1000),
): { body: string; headers: Record<string, string> } => {
  const body = new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
  const signature = `v0=${createHmac('sha256', signingSecret).update(`v0:${timestamp}:${body}`).digest('hex')}`;
  return {
    body,
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      'x-slack-request-timestamp': String(timestamp),
      'x-slack-signature': signature,
    },
  };
};

/** The `block_actions` payload of a button press on an approval message. */
export const buttonPress = (options: {
  readonly userId: string;
  readonly actionId: 'approve' | 'deny';
  readonly approvalId: string;
  readonly channel?: string;
  readonly messageTs?: string;
}): Record<string, unknown> => ({
  type: 'block_actions',
  user: { id: options.userId, username: options.userId.toLowerCase(), team_id: 'T0SLUICE' },
  team: { id: 'T0SLUICE', domain: 'sluice' },
  channel: { id: options.channel ?? 'C0SLUICE01', name: 'db-approvals' },
  container: { type: 'message', message_ts: options.messageTs ?? '1700000000.000001', channel_id: options.channel ?? 'C0SLUICE01' },
  message: { ts: options.messageTs ?? '1700000000.000001', type: 'message' },
  response_url: 'http://127.0.0.1:9/unused',
  trigger_id: '123.456.abc',
  actions: [{ type: 'button', action_id: options.actionId, block_id: 'sluice_decision', value: options.approvalId, action_ts: String(Date.now() / 1000) }],
});
