import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type JWK, type CryptoKey } from 'jose';

export interface MintOptions {
  readonly sub: string;
  readonly groups?: readonly string[];
  readonly aud?: string;
  /** Seconds until expiry; negative for an already expired token. */
  readonly expiresIn?: number;
  /** Seconds from now before which the token is not valid. */
  readonly notBefore?: number;
  readonly iss?: string;
  /** Sign with another key than the published one. */
  readonly foreignKey?: boolean;
  readonly extraClaims?: Record<string, unknown>;
}

export interface TestIssuer {
  readonly issuer: string;
  readonly audience: string;
  mint(options: MintOptions): Promise<string>;
  /** A token with `alg: none`. */
  mintUnsigned(options: MintOptions): string;
  /** A token signed with HS256 and a shared secret. */
  mintSymmetric(options: MintOptions): Promise<string>;
  /** Publishes a new signing key (old one dropped) and signs with it from now on. */
  rotateKey(): Promise<void>;
  close(): Promise<void>;
}

interface SigningKey {
  readonly kid: string;
  readonly privateKey: CryptoKey;
  readonly publicJwk: JWK;
}

const newKey = async (kid: string): Promise<SigningKey> => {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  return { kid, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } };
};

/**
 * A real OIDC-style issuer on 127.0.0.1 (random port): discovery document, JWKS, and ES256
 * access tokens minted by jose, the way an IdP's client-credentials grant issues them.
 */
export const startTestIssuer = async (options: { audience?: string } = {}): Promise<TestIssuer> => {
  const audience = options.audience ?? 'sluice';
  let generation = 1;
  let key = await newKey(`k${generation}`);
  const foreign = await newKey('foreign');
  const server: Server = createServer((request, response) => {
    const body =
      request.url === '/.well-known/openid-configuration'
        ? { issuer, jwks_uri: `${issuer}/jwks`, token_endpoint: `${issuer}/token`, id_token_signing_alg_values_supported: ['ES256'] }
        : request.url === '/jwks'
          ? { keys: [key.publicJwk] }
          : undefined;
    response.writeHead(body ? 200 : 404, { 'content-type': 'application/json' });
    response.end(JSON.stringify(body ?? { error: 'not_found' }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const claims = (mint: MintOptions) => ({ groups: [...(mint.groups ?? [])], ...mint.extraClaims });
  const timing = (mint: MintOptions) => {
    const now = Math.floor(Date.now() / 1000);
    return { iat: now, exp: now + (mint.expiresIn ?? 300), ...(mint.notBefore === undefined ? {} : { nbf: now + mint.notBefore }) };
  };

  return {
    issuer,
    audience,
    async mint(mint) {
      const signing = mint.foreignKey ? foreign : key;
      const { iat, exp, nbf } = timing(mint);
      let jwt = new SignJWT(claims(mint))
        .setProtectedHeader({ alg: 'ES256', kid: signing.kid, typ: 'at+jwt' })
        .setSubject(mint.sub)
        .setIssuer(mint.iss ?? issuer)
        .setAudience(mint.aud ?? audience)
        .setIssuedAt(iat)
        .setExpirationTime(exp);
      if (nbf !== undefined) jwt = jwt.setNotBefore(nbf);
      return jwt.sign(signing.privateKey);
    },
    mintUnsigned(mint) {
      const { iat, exp } = timing(mint);
      const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
      return `${encode({ alg: 'none', typ: 'JWT' })}.${encode({ ...claims(mint), sub: mint.sub, iss: mint.iss ?? issuer, aud: mint.aud ?? audience, iat, exp })}.`;
    },
    async mintSymmetric(mint) {
      const { iat, exp } = timing(mint);
      return new SignJWT(claims(mint))
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject(mint.sub)
        .setIssuer(mint.iss ?? issuer)
        .setAudience(mint.aud ?? audience)
        .setIssuedAt(iat)
        .setExpirationTime(exp)
        .sign(new TextEncoder().encode('a-shared-secret-of-at-least-32-bytes!!'));
    },
    async rotateKey() {
      generation += 1;
      key = await newKey(`k${generation}`);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
};
