import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { SluiceErrorCode } from '@sluice/contracts';
import { createLogger } from '@sluice/telemetry';
import { createPolicyPort } from './policy-client.js';

/** A loopback port nobody listens on. */
const closedPort = (): Promise<number> =>
  new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });

describe('policy port', () => {
  it('fails closed with ERR_POLICY_UNAVAILABLE when no policy service answers', async () => {
    const port = createPolicyPort(`127.0.0.1:${await closedPort()}`, { logger: createLogger('policy-port-spec'), timeoutMs: 1_000 });
    try {
      const subject = { sub: 'a', groups: ['g'], issuer: 'i' };
      await expect(port.decide(subject, 'db', { kind: 'sql', text: 'SELECT 1' })).rejects.toMatchObject({ code: SluiceErrorCode.PolicyUnavailable });
      await expect(port.describeSession(subject, 'db')).rejects.toMatchObject({ code: SluiceErrorCode.PolicyUnavailable });
      expect(port.stats()).toMatchObject({ version: undefined, size: 0 });
    } finally {
      port.close();
    }
  });
});
