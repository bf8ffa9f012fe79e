import {
  createRemoteJWKSet,
  decodeProtectedHeader,
  errors as joseErrors,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import { TokenExpiredError, TokenInvalidError, type Subject } from '@sluice/contracts';

/** Asymmetric algorithms only: a shared-secret or `none` token is never accepted. */
export const ALLOWED_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;

export interface IssuerSettings {
  readonly issuer: string;
  readonly audience: string | readonly string[];
  readonly groupsClaim?: string;
  readonly jwksUri?: string;
  readonly algorithms?: readonly string[];
  /** Milliseconds of clock skew tolerated on exp/nbf/iat. */
  readonly clockTolerance?: number;
  /** Minimum milliseconds between two JWKS fetches (an unknown `kid` triggers one). */
  readonly jwksCooldown?: number;
}

export interface VerifiedIdentity {
  readonly subject: Subject;
  readonly expiresAt: Date | undefined;
  readonly claims: JWTPayload;
}

export interface TokenVerifier {
  verify(token: string): Promise<VerifiedIdentity>;
}

/** Reads a claim by dotted path (`realm_access.roles`) as a list of strings. */
export const readGroups = (claims: JWTPayload, path: string): string[] => {
  let value: unknown = claims;
  for (const part of path.split('.')) {
    if (value === null || typeof value !== 'object') return [];
    value = (value as Record<string, unknown>)[part];
  }
  if (typeof value === 'string') return value.split(/[\s,]+/).filter(Boolean);
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : [];
};

const JWKS_COOLDOWN_MS = 5_000;

/**
 * The longest token read at all, before any signature is checked: PostgreSQL's own limit on an
 * authentication message (PG_MAX_AUTH_TOKEN_LENGTH, 65535 bytes). Anyone may send a token, and a
 * 64 MiB password or AUTH argument would otherwise be decoded and parsed as JSON unauthenticated.
 */
export const MAX_TOKEN_CHARS = 65_535;

/**
 * The longest `sub` a session may carry, in UTF-8 bytes. OpenID Connect caps it at 255 ASCII
 * characters; the event store refuses an event whose indexed `data.subject.sub` is over 2048 bytes
 * (a btree entry's limit), so a longer one would leave the session's activity out of the sessions
 * it lists. Refused at the front door instead, before anything runs.
 * @see https://openid.net/specs/openid-connect-core-1_0.html#IDToken
 */
export const MAX_SUBJECT_BYTES = 1024;

interface IssuerVerifier {
  readonly settings: IssuerSettings;
  readonly keys: JWTVerifyGetKey;
}

const discoverJwksUri = async (issuer: string): Promise<string> => {
  const url = `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
  const response = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  if (!response.ok) throw new Error(`discovery at ${url} answered ${response.status}`);
  const document = (await response.json()) as { jwks_uri?: unknown; issuer?: unknown };
  if (typeof document.jwks_uri !== 'string') throw new Error(`discovery at ${url} has no jwks_uri`);
  return document.jwks_uri;
};

/** Verified tokens kept so an HTTP agent's every request does not pay a signature check. */
const VERIFIED_CACHE_SIZE = 10_000;

/**
 * Verifies agents' and approvers' OIDC access tokens against the configured issuers: discovery
 * and JWKS fetched lazily and cached (jose refetches on an unknown `kid`, at most once per
 * cooldown), iss/aud/exp/nbf checked, asymmetric algorithms only. A token that verified is
 * remembered until it expires: its signature and claims cannot change, and the first check
 * costs ~100 µs of CPU (ES256/RS256), which HTTP agents would otherwise pay per request.
 */
export const createTokenVerifier = (issuers: readonly IssuerSettings[], options: { now?: () => number } = {}): TokenVerifier => {
  const now = options.now ?? Date.now;
  const verified = new Map<string, VerifiedIdentity>();
  const remember = (token: string, identity: VerifiedIdentity): VerifiedIdentity => {
    if (verified.size >= VERIFIED_CACHE_SIZE) verified.delete(verified.keys().next().value!);
    verified.set(token, identity);
    return identity;
  };
  const byIssuer = new Map<string, Promise<IssuerVerifier>>();
  const issuerVerifier = (settings: IssuerSettings): Promise<IssuerVerifier> => {
    let pending = byIssuer.get(settings.issuer);
    if (!pending) {
      pending = (async () => {
        const jwksUri = settings.jwksUri ?? (await discoverJwksUri(settings.issuer));
        return { settings, keys: createRemoteJWKSet(new URL(jwksUri), { cooldownDuration: settings.jwksCooldown ?? JWKS_COOLDOWN_MS, cacheMaxAge: 10 * 60_000 }) };
      })();
      // A failed discovery is retried on the next token, not cached forever.
      pending.catch(() => byIssuer.delete(settings.issuer));
      byIssuer.set(settings.issuer, pending);
    }
    return pending;
  };

  return {
    async verify(token) {
      if (typeof token !== 'string' || token.length > MAX_TOKEN_CHARS) throw new TokenInvalidError('token is not a JWT');
      const known = verified.get(token);
      if (known) {
        if (known.expiresAt !== undefined && known.expiresAt.getTime() <= now()) {
          verified.delete(token);
          throw new TokenExpiredError('token expired');
        }
        return known;
      }
      if (token.split('.').length !== 3) throw new TokenInvalidError('token is not a JWT');
      let claimedIssuer: unknown;
      try {
        const header = decodeProtectedHeader(token);
        if (!header.alg || !(ALLOWED_ALGORITHMS as readonly string[]).includes(header.alg)) {
          throw new TokenInvalidError(`algorithm ${String(header.alg)} is not allowed`);
        }
        claimedIssuer = (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as { iss?: unknown } | null)?.iss;
      } catch (error) {
        if (error instanceof TokenInvalidError) throw error;
        throw new TokenInvalidError('token is malformed', { cause: error });
      }
      // Exactly the configured spelling (OpenID Connect Discovery 1.0 §4.3): `iss` picks the keys
      // the token is checked with, and a near match would check it with another issuer's.
      const settings = typeof claimedIssuer === 'string' ? issuers.find((candidate) => candidate.issuer === claimedIssuer) : undefined;
      if (!settings) throw new TokenInvalidError('token issuer is not trusted');
      let verifier: IssuerVerifier;
      try {
        verifier = await issuerVerifier(settings);
      } catch (error) {
        throw new TokenInvalidError('token issuer cannot be reached', { cause: error });
      }
      const algorithms = (settings.algorithms ?? ALLOWED_ALGORITHMS).filter((alg) => (ALLOWED_ALGORITHMS as readonly string[]).includes(alg));
      try {
        const { payload } = await jwtVerify(token, verifier.keys, {
          issuer: settings.issuer,
          audience: typeof settings.audience === 'string' ? settings.audience : [...settings.audience],
          algorithms,
          clockTolerance: Math.round((settings.clockTolerance ?? 30_000) / 1000),
          requiredClaims: ['exp'],
        });
        if (typeof payload.sub !== 'string' || payload.sub === '') throw new TokenInvalidError('token has no subject');
        if (Buffer.byteLength(payload.sub, 'utf8') > MAX_SUBJECT_BYTES) throw new TokenInvalidError(`token subject is longer than ${MAX_SUBJECT_BYTES} bytes`);
        return remember(token, {
          subject: { sub: payload.sub, groups: readGroups(payload, settings.groupsClaim ?? 'groups'), issuer: settings.issuer },
          expiresAt: payload.exp === undefined ? undefined : new Date(payload.exp * 1000),
          claims: payload,
        });
      } catch (error) {
        if (error instanceof TokenInvalidError) throw error;
        if (error instanceof joseErrors.JWTExpired) throw new TokenExpiredError('token expired', { cause: error });
        throw new TokenInvalidError(error instanceof joseErrors.JOSEError ? `token rejected (${error.code})` : 'token rejected', { cause: error });
      }
    },
  };
};
