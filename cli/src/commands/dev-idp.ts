import { createServer } from 'node:http';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';

/**
 * A local token issuer for trying Sluice out (never for production): OIDC discovery, JWKS and a
 * token endpoint that signs ES256 access tokens for any subject and groups it is asked for.
 * The key is kept under ./.sluice/ so tokens outlive a restart.
 */
const KEY_FILE = join('.sluice', 'dev-idp-key.json');

const loadKey = async (): Promise<{ privateJwk: JWK; publicJwk: JWK }> => {
  if (existsSync(KEY_FILE)) return JSON.parse(readFileSync(KEY_FILE, 'utf8'));
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const kid = `dev-${Date.now().toString(36)}`;
  const keys = { privateJwk: { ...(await exportJWK(privateKey)), kid, alg: 'ES256' }, publicJwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } };
  mkdirSync('.sluice', { recursive: true });
  writeFileSync(KEY_FILE, JSON.stringify(keys), { mode: 0o600 });
  return keys;
};

const serve = async (port: number, audience: string): Promise<number> => {
  const { privateJwk, publicJwk } = await loadKey();
  const privateKey = await importJWK(privateJwk, 'ES256');
  const issuer = `http://127.0.0.1:${port}`;
  const server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', issuer);
    const json = (status: number, body: unknown) => {
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(JSON.stringify(body));
    };
    if (url.pathname === '/.well-known/openid-configuration') {
      return json(200, { issuer, jwks_uri: `${issuer}/jwks`, token_endpoint: `${issuer}/token`, grant_types_supported: ['client_credentials'] });
    }
    if (url.pathname === '/jwks') return json(200, { keys: [publicJwk] });
    if (url.pathname === '/token' && request.method === 'POST') {
      let body = '';
      request.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
      request.on('end', () => {
        const form = new URLSearchParams(body);
        const sub = form.get('client_id') ?? form.get('sub');
        if (!sub) return json(400, { error: 'invalid_request', error_description: 'client_id (the subject) is required' });
        const groups = (form.get('groups') ?? '').split(',').filter(Boolean);
        const expiresIn = Number(form.get('expires_in') ?? 3600);
        void new SignJWT({ groups })
          .setProtectedHeader({ alg: 'ES256', kid: publicJwk.kid!, typ: 'at+jwt' })
          .setSubject(sub)
          .setIssuer(issuer)
          .setAudience(form.get('audience') ?? audience)
          .setIssuedAt()
          .setExpirationTime(`${expiresIn}s`)
          .sign(privateKey)
          .then((token) => json(200, { access_token: token, token_type: 'Bearer', expires_in: expiresIn }));
      });
      return;
    }
    json(404, { error: 'not_found' });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  process.stdout.write(`sluice dev-idp: issuer ${issuer} (audience ${audience}); mint with: npx sluice token --sub agent-1 --groups support-agents\n`);
  return new Promise<number>((resolve) => {
    process.once('SIGINT', () => server.close(() => resolve(0)));
    process.once('SIGTERM', () => server.close(() => resolve(0)));
  });
};

const mint = async (values: Record<string, string | boolean | undefined>): Promise<number> => {
  const issuer = (values.issuer as string | undefined) ?? 'http://127.0.0.1:9000';
  if (!values.sub) {
    process.stderr.write('sluice token: --sub is required\n');
    return 2;
  }
  const form = new URLSearchParams({ grant_type: 'client_credentials', client_id: values.sub as string, groups: (values.groups as string | undefined) ?? '' });
  if (values.audience) form.set('audience', values.audience as string);
  if (values['expires-in']) form.set('expires_in', values['expires-in'] as string);
  const response = await fetch(`${issuer}/token`, { method: 'POST', body: form });
  if (!response.ok) {
    process.stderr.write(`sluice token: ${issuer}/token answered ${response.status}; is \`npx sluice dev-idp\` running?\n`);
    return 1;
  }
  process.stdout.write(`${((await response.json()) as { access_token: string }).access_token}\n`);
  return 0;
};

export const run = async (argv: readonly string[]): Promise<number> => {
  const [command, ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    options: {
      port: { type: 'string' },
      audience: { type: 'string' },
      sub: { type: 'string' },
      groups: { type: 'string' },
      issuer: { type: 'string' },
      'expires-in': { type: 'string' },
    },
  });
  if (command === 'dev-idp') return serve(Number(values.port ?? 9000), values.audience ?? 'sluice');
  return mint(values);
};
