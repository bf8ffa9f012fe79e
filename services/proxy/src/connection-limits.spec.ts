import { describe, expect, it } from 'vitest';
import { ConnectionLimiter, listenerFullReply } from './connection-limits.js';

describe('connection limits', () => {
  it('takes places on the listener up to maxConnections and gives them back', () => {
    const limiter = new ConnectionLimiter({ maxConnections: 2, maxConnectionsPerSubject: 5 });
    expect([limiter.tryOpen(), limiter.tryOpen(), limiter.tryOpen()]).toEqual([true, true, false]);
    limiter.release();
    expect(limiter.tryOpen()).toBe(true);
  });

  it('counts each subject apart, and a place given back twice counts once', () => {
    const limiter = new ConnectionLimiter({ maxConnections: 100, maxConnectionsPerSubject: 1 });
    const greedy = { issuer: 'https://idp.example', sub: 'greedy' };
    const release = limiter.acquireSubject(greedy);
    expect(release).toBeDefined();
    expect(limiter.acquireSubject(greedy)).toBeUndefined();
    expect(limiter.acquireSubject({ ...greedy, sub: 'modest' })).toBeDefined();
    release!();
    release!();
    expect(limiter.acquireSubject(greedy)).toBeDefined();
    expect(limiter.acquireSubject(greedy)).toBeUndefined();
  });

  it("counts the same sub from another issuer apart: a second issuer's tokens cannot fill an agent's share", () => {
    const limiter = new ConnectionLimiter({ maxConnections: 100, maxConnectionsPerSubject: 1 });
    expect(limiter.acquireSubject({ issuer: 'https://ci.example', sub: 'agent-1' })).toBeDefined();
    expect(limiter.acquireSubject({ issuer: 'https://idp.example', sub: 'agent-1' })).toBeDefined();
    // Nor can the two names be run together into another pair.
    expect(limiter.acquireSubject({ issuer: 'https://idp.example/', sub: 'x' })).toBeDefined();
    expect(limiter.acquireSubject({ issuer: 'https://idp.example', sub: '/x' })).toBeDefined();
  });

  it('refuses in each protocol form', () => {
    expect(listenerFullReply('postgres', 3).subarray(0, 1).toString()).toBe('E');
    expect(listenerFullReply('postgres', 3).toString()).toContain('53300');
    expect(listenerFullReply('redis', 3).toString()).toMatch(/^-ERR max number of clients reached/);
    expect(listenerFullReply('http', 3).toString()).toMatch(/^HTTP\/1\.1 503 .*\r\n[\s\S]*application\/problem\+json/);
  });
});
