import { encodeErrorResponse } from '@sluice/codec-pg';
import type { ResourceLimits } from '@sluice/config';
import { SluiceErrorCode, type Subject } from '@sluice/contracts';

/**
 * Open connections of one listener, in all and per subject (`limits.maxConnections`,
 * `limits.maxConnectionsPerSubject`): one agent opening connections in a loop fills its own share,
 * not the listener.
 */
export class ConnectionLimiter {
  #open = 0;
  readonly #bySubject = new Map<string, number>();

  constructor(readonly limits: Pick<ResourceLimits, 'maxConnections' | 'maxConnectionsPerSubject'>) {}

  /** Takes a place on the listener; false when it is full. Each true is followed by one release(). */
  tryOpen(): boolean {
    if (this.#open >= this.limits.maxConnections) return false;
    this.#open++;
    return true;
  }

  release(): void {
    this.#open = Math.max(0, this.#open - 1);
  }

  /**
   * Takes one of the subject's places; the function gives it back (once), undefined when full.
   * Counted by issuer and sub: another configured issuer may mint the same sub, and its tokens
   * must not fill this agent's share.
   */
  acquireSubject(subject: Pick<Subject, 'issuer' | 'sub'>): (() => void) | undefined {
    const sub = JSON.stringify([subject.issuer, subject.sub]);
    const open = this.#bySubject.get(sub) ?? 0;
    if (open >= this.limits.maxConnectionsPerSubject) return undefined;
    this.#bySubject.set(sub, open + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.#bySubject.get(sub) ?? 1) - 1;
      if (left <= 0) this.#bySubject.delete(sub);
      else this.#bySubject.set(sub, left);
    };
  }
}

export const TOO_MANY_CONNECTIONS = SluiceErrorCode.TooManyConnections;

/**
 * The refusal of a connection over the listener's maxConnections, in the protocol's own form,
 * written before anything is read: PostgreSQL FATAL 53300 (as the server's "too many clients"),
 * Redis `-ERR max number of clients reached` (Redis' own words), HTTP 503 problem+json.
 */
export const listenerFullReply = (protocol: 'postgres' | 'redis' | 'http', limit: number): Buffer => {
  const detail = `this resource takes at most ${limit} connections at once`;
  switch (protocol) {
    case 'postgres':
      return encodeErrorResponse({ severity: 'FATAL', code: '53300', message: `sorry, too many connections: ${detail}` });
    case 'redis':
      return Buffer.from(`-ERR max number of clients reached (${detail})\r\n`);
    case 'http': {
      const body = JSON.stringify({
        type: 'https://sluice.dev/problems/too-many-connections',
        title: 'Service unavailable',
        status: 503,
        detail,
        code: TOO_MANY_CONNECTIONS,
      });
      return Buffer.from(
        `HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nretry-after: 1\r\nconnection: close\r\n\r\n${body}`,
      );
    }
  }
};
