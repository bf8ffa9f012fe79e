import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { MAX_PENDING_SIGN_INS, SESSION_COOKIE, WebSessions } from './web-sessions.js';

const withCookie = (cookie: string) => ({ headers: { cookie } }) as IncomingMessage;
const person = { sub: 'dba-alice', groups: ['dba'], issuer: 'https://idp.example.com' };

describe('WebSessions', () => {
  it('finds a session only by its exact cookie, and gives each session its own CSRF token', () => {
    const sessions = new WebSessions(() => 1_000);
    const first = sessions.open(person, 'token-1', undefined, false);
    const second = sessions.open(person, 'token-2', undefined, false);
    expect(sessions.find(withCookie(`other=1; ${SESSION_COOKIE}=${first.id}`))).toBe(first);
    expect(sessions.find(withCookie(`${SESSION_COOKIE}=${first.id}x`))).toBeUndefined();
    expect(sessions.find(withCookie(`x${SESSION_COOKIE}=${first.id}`))).toBeUndefined();
    expect(first.csrfToken).not.toBe(second.csrfToken);
    expect(first.id).not.toBe(first.csrfToken);
  });

  it('ends a session when the access token expires, and at sign-out', () => {
    let now = 1_000;
    const sessions = new WebSessions(() => now);
    const session = sessions.open(person, 'token', new Date(61_000), false);
    expect(sessions.isOpen(session)).toBe(true);
    now = 61_000;
    expect(sessions.find(withCookie(`${SESSION_COOKIE}=${session.id}`))).toBeUndefined();
    expect(sessions.isOpen(session)).toBe(false);
    now = 1_000;
    const other = sessions.open(person, 'token', undefined, false);
    sessions.close(other.id);
    expect(sessions.isOpen(other)).toBe(false);
  });

  it('takes a pending sign-in once, and not after ten minutes', () => {
    let now = 0;
    const sessions = new WebSessions(() => now);
    sessions.rememberSignIn({ state: 's1', codeVerifier: 'v', returnTo: '/', createdAt: 0 });
    sessions.rememberSignIn({ state: 's2', codeVerifier: 'v', returnTo: '/', createdAt: 0 });
    expect(sessions.takeSignIn('s1')?.codeVerifier).toBe('v');
    expect(sessions.takeSignIn('s1')).toBeUndefined();
    now = 10 * 60_000 + 1;
    expect(sessions.takeSignIn('s2')).toBeUndefined();
  });

  it('red team: a flood of unfinished sign-ins keeps at most the newest MAX_PENDING_SIGN_INS', () => {
    const sessions = new WebSessions(() => 0);
    for (let index = 0; index < MAX_PENDING_SIGN_INS + 500; index += 1) {
      sessions.rememberSignIn({ state: `flood-${index}`, codeVerifier: 'v', returnTo: '/', createdAt: 0 });
    }
    expect(sessions.pendingSignIns).toBe(MAX_PENDING_SIGN_INS);
    expect(sessions.takeSignIn('flood-0')).toBeUndefined();
    expect(sessions.takeSignIn(`flood-${MAX_PENDING_SIGN_INS + 499}`)?.codeVerifier).toBe('v');
  });
});
