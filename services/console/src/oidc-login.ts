import { createHash, randomBytes } from 'node:crypto';
import { SignInError } from './errors.js';

/** The parts of the issuer's discovery document the code flow needs. */
interface Discovery {
  readonly authorization_endpoint: string;
  readonly token_endpoint: string;
}

export interface CodeFlowSettings {
  readonly issuer: string;
  readonly clientId: string;
  readonly clientSecret: string | undefined;
  readonly scope: string;
  readonly resource: string | undefined;
  readonly redirectUri: string;
}

/** What the browser must bring back to /callback: kept server-side, keyed by `state`. */
export interface PendingSignIn {
  readonly state: string;
  readonly codeVerifier: string;
  readonly returnTo: string;
  readonly createdAt: number;
}

const base64url = (bytes: Buffer): string => bytes.toString('base64url');

/**
 * The OAuth 2.0 authorization code flow with PKCE (RFC 7636, S256) against the issuer found by
 * OIDC discovery. The access token it ends with is what the console then acts with on the
 * approval and audit APIs, so those keep deciding who may do what.
 * @see https://openid.net/specs/openid-connect-core-1_0.html#CodeFlowAuth
 */
export class CodeFlow {
  #discovery: Promise<Discovery> | undefined;

  constructor(private readonly settings: CodeFlowSettings) {}

  #discover(): Promise<Discovery> {
    this.#discovery ??= (async () => {
      const url = `${this.settings.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
      const response = await fetch(url, { signal: AbortSignal.timeout(5_000) });
      if (!response.ok) throw new SignInError(`the issuer's discovery answered ${response.status}`);
      const document = (await response.json()) as Partial<Discovery>;
      if (typeof document.authorization_endpoint !== 'string' || typeof document.token_endpoint !== 'string') {
        throw new SignInError('the issuer does not offer the authorization code flow (no authorization_endpoint)');
      }
      return { authorization_endpoint: document.authorization_endpoint, token_endpoint: document.token_endpoint };
    })().catch((error: unknown) => {
      // Not cached when it failed: the issuer may come up later.
      this.#discovery = undefined;
      throw error instanceof SignInError ? error : new SignInError('the issuer cannot be reached', { cause: error });
    });
    return this.#discovery;
  }

  /** A fresh state and verifier, and the URL to send the browser to. */
  async begin(returnTo: string, now: number): Promise<{ pending: PendingSignIn; location: string }> {
    const discovery = await this.#discover();
    const pending: PendingSignIn = { state: base64url(randomBytes(24)), codeVerifier: base64url(randomBytes(48)), returnTo, createdAt: now };
    const challenge = base64url(createHash('sha256').update(pending.codeVerifier).digest());
    const url = new URL(discovery.authorization_endpoint);
    url.searchParams.set('response_type', 'code');
    url.searchParams.set('client_id', this.settings.clientId);
    url.searchParams.set('redirect_uri', this.settings.redirectUri);
    url.searchParams.set('scope', this.settings.scope);
    url.searchParams.set('state', pending.state);
    url.searchParams.set('code_challenge', challenge);
    url.searchParams.set('code_challenge_method', 'S256');
    if (this.settings.resource) url.searchParams.set('resource', this.settings.resource);
    return { pending, location: url.toString() };
  }

  /** Exchanges the code for the person's access token (checked afterwards by the token verifier). */
  async finish(code: string, pending: PendingSignIn): Promise<string> {
    const discovery = await this.#discover();
    const form = new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: this.settings.redirectUri,
      code_verifier: pending.codeVerifier,
      client_id: this.settings.clientId,
    });
    if (this.settings.resource) form.set('resource', this.settings.resource);
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
    if (this.settings.clientSecret !== undefined) {
      // client_secret_basic (RFC 6749 §2.3.1): both parts form-encoded before base64.
      const user = encodeURIComponent(this.settings.clientId);
      const password = encodeURIComponent(this.settings.clientSecret);
      headers.authorization = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
    }
    let response: Response;
    try {
      response = await fetch(discovery.token_endpoint, { method: 'POST', headers, body: form, signal: AbortSignal.timeout(10_000) });
    } catch (error) {
      throw new SignInError('the issuer cannot be reached', { cause: error });
    }
    const body = (await response.json().catch(() => ({}))) as { access_token?: unknown; error?: unknown };
    if (!response.ok || typeof body.access_token !== 'string') {
      throw new SignInError(`the issuer refused the sign-in (${typeof body.error === 'string' ? body.error : response.status})`);
    }
    return body.access_token;
  }
}
