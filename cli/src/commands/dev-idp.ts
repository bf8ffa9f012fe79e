import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';
import { stopWhenLauncherExits } from '../launcher-watch.js';
import { SluiceError, SluiceErrorCode } from '@sluice/contracts';

export const DEV_IDP_USAGE = `usage: sluice dev-idp [--port 9000] [--audience sluice] [--host 127.0.0.1] [--issuer URL]
  a local OIDC issuer for trying Sluice out (never for production): discovery, JWKS and a token
  endpoint that signs ES256 access tokens for any subject and groups, and a sign-in page (the
  authorization code flow with PKCE) where a person types any user name and groups, for the
  console; stops on Ctrl-C or SIGTERM.
  --host is the address to listen on, --issuer the URL the gateway knows it by (default
  http://127.0.0.1:PORT; in docker compose, http://dev-idp:9000)
`;

export const TOKEN_USAGE = `usage: sluice token --sub S [--groups a,b] [--audience A] [--expires-in SECONDS] [--issuer URL]
  prints an access token from the local dev issuer (default http://127.0.0.1:9000)
`;

/**
 * A local token issuer for trying Sluice out (never for production): OIDC discovery, JWKS and a
 * token endpoint that signs ES256 access tokens for any subject and groups it is asked for.
 * The key is kept under ./.sluice/ so tokens outlive a restart.
 */
const KEY_FILE = join('.sluice', 'dev-idp-key.json');

export class DevIdpError extends SluiceError {
  readonly code = SluiceErrorCode.DevIdp;
  override readonly expose = true;
}

const loadKey = async (): Promise<{ privateJwk: JWK; publicJwk: JWK }> => {
  if (existsSync(KEY_FILE)) return JSON.parse(readFileSync(KEY_FILE, 'utf8')) as { privateJwk: JWK; publicJwk: JWK };
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const kid = `dev-${Date.now().toString(36)}`;
  const keys = { privateJwk: { ...(await exportJWK(privateKey)), kid, alg: 'ES256' }, publicJwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } };
  mkdirSync('.sluice', { recursive: true });
  writeFileSync(KEY_FILE, JSON.stringify(keys), { mode: 0o600 });
  return keys;
};

interface IssuedCode {
  readonly sub: string;
  readonly groups: string[];
  readonly redirectUri: string;
  readonly challenge: string;
  readonly audience: string;
  readonly expiresAt: number;
}

const readForm = async (request: IncomingMessage): Promise<URLSearchParams> => {
  let body = '';
  for await (const chunk of request) {
    body += (chunk as Buffer).toString('utf8');
    if (body.length > 16_384) break;
  }
  return new URLSearchParams(body);
};

const escapeAttribute = (value: string): string => value.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);

/** The development sign-in page: anyone may be anyone, which is why this issuer is never for production. */
const signInForm = (response: ServerResponse, params: URLSearchParams): void => {
  const hidden = ['client_id', 'redirect_uri', 'state', 'code_challenge', 'code_challenge_method', 'resource']
    .map((name) => `<input type="hidden" name="${name}" value="${escapeAttribute(params.get(name) ?? '')}">`)
    .join('');
  response.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; form-action *" });
  response.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sluice dev issuer</title>
<style>body{font:15px system-ui,sans-serif;max-width:26rem;margin:4rem auto}label{display:block;margin:.8rem 0}input{font:inherit;width:100%;padding:.3rem}button{font:inherit;padding:.4rem 1rem}</style></head>
<body><h1>Sluice development issuer</h1><p>Development only: sign in as anyone, with any groups.</p>
<form method="post" action="/authorize">${hidden}
<label>User name <input name="username" autocomplete="username" required autofocus></label>
<label>Groups (comma separated) <input name="groups" placeholder="dba, compliance"></label>
<button type="submit">Sign in</button></form></body></html>`);
};

export interface DevIdp {
  readonly issuer: string;
  close(): Promise<void>;
}

/** Starts the issuer on host:port; `sluice demo` runs it in-process, `sluice dev-idp` alone. */
export const startDevIdp = async (port: number, audience: string, options: { host?: string; issuer?: string } = {}): Promise<DevIdp> => {
  const { privateJwk, publicJwk } = await loadKey();
  const privateKey = await importJWK(privateJwk, 'ES256');
  const host = options.host ?? '127.0.0.1';
  const issuer = (options.issuer ?? `http://127.0.0.1:${port}`).replace(/\/$/, '');
  const codes = new Map<string, IssuedCode>();
  const server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', issuer);
    const json = (status: number, body: unknown) => {
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(JSON.stringify(body));
    };
    if (url.pathname === '/.well-known/openid-configuration') {
      return json(200, {
        issuer,
        jwks_uri: `${issuer}/jwks`,
        token_endpoint: `${issuer}/token`,
        authorization_endpoint: `${issuer}/authorize`,
        grant_types_supported: ['client_credentials', 'authorization_code'],
        response_types_supported: ['code'],
        code_challenge_methods_supported: ['S256'],
      });
    }
    if (url.pathname === '/jwks') return json(200, { keys: [publicJwk] });
    if (url.pathname === '/authorize') {
      if (request.method === 'GET') return signInForm(response, url.searchParams);
      if (request.method === 'POST') {
        void readForm(request).then((form) => {
          const redirectUri = form.get('redirect_uri') ?? '';
          const sub = (form.get('username') ?? '').trim();
          if (!/^https?:\/\//.test(redirectUri) || !sub || form.get('code_challenge_method') !== 'S256' || !form.get('code_challenge')) {
            response.writeHead(400, { 'content-type': 'text/plain' });
            return response.end('a user name, an http(s) redirect_uri and an S256 code_challenge are required');
          }
          const code = randomBytes(24).toString('base64url');
          codes.set(code, {
            sub,
            groups: (form.get('groups') ?? '').split(/[\s,]+/).filter(Boolean),
            redirectUri,
            challenge: form.get('code_challenge')!,
            audience: form.get('resource') || audience,
            expiresAt: Date.now() + 60_000,
          });
          const target = new URL(redirectUri);
          target.searchParams.set('code', code);
          if (form.get('state')) target.searchParams.set('state', form.get('state')!);
          response.writeHead(303, { location: target.toString() });
          response.end();
        });
        return;
      }
    }
    if (url.pathname === '/token' && request.method === 'POST') {
      void readForm(request).then((form) => {
        let sub = form.get('client_id') ?? form.get('sub');
        let groups = (form.get('groups') ?? '').split(',').filter(Boolean);
        let tokenAudience = form.get('audience') ?? audience;
        if (form.get('grant_type') === 'authorization_code') {
          // A code is used once, by whoever holds the PKCE verifier, at the redirect URI it was issued for.
          const issued = codes.get(form.get('code') ?? '');
          codes.delete(form.get('code') ?? '');
          const verifier = form.get('code_verifier') ?? '';
          if (!issued || issued.expiresAt < Date.now() || issued.redirectUri !== form.get('redirect_uri') || createHash('sha256').update(verifier).digest('base64url') !== issued.challenge) {
            return json(400, { error: 'invalid_grant' });
          }
          ({ sub, groups, audience: tokenAudience } = issued);
        }
        if (!sub) return json(400, { error: 'invalid_request', error_description: 'client_id (the subject) is required' });
        const expiresIn = Number(form.get('expires_in') ?? 3600);
        void new SignJWT({ groups })
          .setProtectedHeader({ alg: 'ES256', kid: publicJwk.kid!, typ: 'at+jwt' })
          .setSubject(sub)
          .setIssuer(issuer)
          .setAudience(tokenAudience)
          .setIssuedAt()
          .setExpirationTime(`${expiresIn}s`)
          .sign(privateKey)
          .then((token) => json(200, { access_token: token, token_type: 'Bearer', expires_in: expiresIn }));
      });
      return;
    }
    json(404, { error: 'not_found' });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(error.code === 'EADDRINUSE' ? new DevIdpError(`port ${port} is already in use (is a dev-idp already running?): stop it or pass --port`) : error),
    );
    server.listen(port, host, () => resolve());
  });
  return {
    issuer,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
};

const serve = async (port: number, audience: string, options: { host?: string; issuer?: string }): Promise<number> => {
  const idp = await startDevIdp(port, audience, options);
  process.stdout.write(`sluice dev-idp: issuer ${idp.issuer} (audience ${audience}); mint with: npx sluice token --sub agent-1 --groups support-agents\n`);
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = () => {
      if (stopping) return;
      stopping = true;
      void idp.close().then(() => resolve(0));
    };
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, stop);
    stopWhenLauncherExits(stop);
  });
};

const mint = async (values: Record<string, string | boolean | undefined>): Promise<number> => {
  const issuer = ((values.issuer as string | undefined) ?? 'http://127.0.0.1:9000').replace(/\/$/, '');
  if (!values.sub) {
    process.stderr.write(`sluice token: --sub is required\n${TOKEN_USAGE}`);
    return 2;
  }
  const form = new URLSearchParams({ grant_type: 'client_credentials', client_id: values.sub as string, groups: (values.groups as string | undefined) ?? '' });
  if (values.audience) form.set('audience', values.audience as string);
  if (values['expires-in']) form.set('expires_in', values['expires-in'] as string);
  let response: Response;
  try {
    response = await fetch(`${issuer}/token`, { method: 'POST', body: form, signal: AbortSignal.timeout(10_000) });
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    const why = cause?.code ?? cause?.message ?? (error as Error).message;
    process.stderr.write(`sluice token: no issuer answers at ${issuer} (${why}): start one with \`npx sluice dev-idp\` (\`npm start\` runs one), or pass --issuer URL\n`);
    return 1;
  }
  if (!response.ok) {
    process.stderr.write(`sluice token: ${issuer}/token answered ${response.status}; is it \`npx sluice dev-idp\`? (pass --issuer URL)\n`);
    return 1;
  }
  process.stdout.write(`${((await response.json()) as { access_token: string }).access_token}\n`);
  return 0;
};

export const run = async (argv: readonly string[]): Promise<number> => {
  const [command, ...rest] = argv;
  const usage = command === 'dev-idp' ? DEV_IDP_USAGE : TOKEN_USAGE;
  let values;
  try {
    ({ values } = parseArgs({
      args: rest,
      options: command === 'dev-idp'
        ? { port: { type: 'string' }, audience: { type: 'string' }, host: { type: 'string' }, issuer: { type: 'string' } }
        : { sub: { type: 'string' }, groups: { type: 'string' }, issuer: { type: 'string' }, audience: { type: 'string' }, 'expires-in': { type: 'string' } },
    }));
  } catch (error) {
    process.stderr.write(`sluice ${command}: ${(error as Error).message}\n${usage}`);
    return 2;
  }
  if (command === 'dev-idp') {
    const port = Number((values as { port?: string }).port ?? 9000);
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      process.stderr.write(`sluice dev-idp: --port expects a port number, got "${(values as { port?: string }).port}"\n`);
      return 2;
    }
    try {
      const { audience, host, issuer } = values as { audience?: string; host?: string; issuer?: string };
      return await serve(port, audience ?? 'sluice', { host, issuer });
    } catch (error) {
      if (error instanceof DevIdpError) {
        process.stderr.write(`sluice dev-idp: ${error.message}\n`);
        return 1;
      }
      throw error;
    }
  }
  return mint(values as Record<string, string | undefined>);
};
