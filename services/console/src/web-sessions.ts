import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { PendingSignIn } from './oidc-login.js';

/** Who is signed in, as the issuer's token says. */
export interface Person {
  readonly sub: string;
  readonly groups: readonly string[];
  readonly issuer: string;
}

export interface WebSession {
  readonly id: string;
  readonly person: Person;
  /** The person's own access token: the console acts on the APIs with it, never with its own power. */
  readonly accessToken: string;
  /** Sent back with every form; a cross-site page cannot read it. */
  readonly csrfToken: string;
  readonly expiresAt: number;
  /** Whether the audit API let this person read sessions (asked once at sign-in). */
  readonly auditReader: boolean;
}

export const SESSION_COOKIE = 'sluice_console';
export const SIGN_IN_COOKIE = 'sluice_console_signin';
const SIGN_IN_TTL_MS = 10 * 60_000;
/** Sessions end with the access token, and at most after this (the token cannot be refreshed). */
const MAX_SESSION_MS = 12 * 3600_000;
/**
 * Sign-ins started and not finished, kept at most. Anyone can start one without signing in, so
 * without a bound a flood of GET /login would grow memory (and each sweep) for ten minutes; past
 * it the oldest is forgotten (its person just signs in again).
 */
export const MAX_PENDING_SIGN_INS = 10_000;

const newSecret = (): string => randomBytes(32).toString('base64url');

export const readCookie = (request: IncomingMessage, name: string): string | undefined => {
  for (const part of (request.headers.cookie ?? '').split(';')) {
    const index = part.indexOf('=');
    if (index > 0 && part.slice(0, index).trim() === name) return part.slice(index + 1).trim();
  }
  return undefined;
};

export const sameSecret = (a: string, b: string): boolean => {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
};

/**
 * Server-side sessions behind an opaque cookie: the browser never holds the access token, and
 * logging out or a restart ends every session for good.
 */
export class WebSessions {
  readonly #sessions = new Map<string, WebSession>();
  readonly #pending = new Map<string, PendingSignIn>();

  constructor(private readonly now: () => number = Date.now) {}

  rememberSignIn(pending: PendingSignIn): void {
    this.#sweep();
    this.#pending.set(pending.state, pending);
    // A Map iterates in insertion order: the first key is the oldest sign-in.
    while (this.#pending.size > MAX_PENDING_SIGN_INS) this.#pending.delete(this.#pending.keys().next().value!);
  }

  /** How many sign-ins are started and not finished (bounded by MAX_PENDING_SIGN_INS). */
  get pendingSignIns(): number {
    return this.#pending.size;
  }

  /** The sign-in `state` names, taken once; undefined when unknown or too old. */
  takeSignIn(state: string): PendingSignIn | undefined {
    const pending = this.#pending.get(state);
    this.#pending.delete(state);
    if (!pending || this.now() - pending.createdAt > SIGN_IN_TTL_MS) return undefined;
    return pending;
  }

  open(person: Person, accessToken: string, tokenExpiresAt: Date | undefined, auditReader: boolean): WebSession {
    this.#sweep();
    const limit = this.now() + MAX_SESSION_MS;
    const session: WebSession = {
      id: newSecret(),
      person,
      accessToken,
      csrfToken: newSecret(),
      expiresAt: Math.min(limit, tokenExpiresAt?.getTime() ?? limit),
      auditReader,
    };
    this.#sessions.set(session.id, session);
    return session;
  }

  find(request: IncomingMessage): WebSession | undefined {
    const id = readCookie(request, SESSION_COOKIE);
    if (!id) return undefined;
    const session = this.#sessions.get(id);
    if (!session) return undefined;
    if (session.expiresAt <= this.now()) {
      this.#sessions.delete(id);
      return undefined;
    }
    return session;
  }

  /** False once signed out or expired: a live stream opened before then must stop. */
  isOpen(session: WebSession): boolean {
    return this.#sessions.get(session.id) === session && session.expiresAt > this.now();
  }

  close(id: string): void {
    this.#sessions.delete(id);
  }

  #sweep(): void {
    const now = this.now();
    for (const [id, session] of this.#sessions) if (session.expiresAt <= now) this.#sessions.delete(id);
    for (const [state, pending] of this.#pending) if (now - pending.createdAt > SIGN_IN_TTL_MS) this.#pending.delete(state);
  }
}
