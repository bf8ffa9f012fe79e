import type { Server, Socket } from 'node:net';
import { createClient, type RedisClientType } from 'redis';
import { expect } from 'vitest';
import type { RedisResourceConfig, RuleConfig } from '@sluice/config';
import type { CompiledMasking } from '@sluice/masking-engine';
import type { GovernancePorts } from '../../services/proxy/src/ports.js';
import { createRedisAdapter } from '../../services/proxy/src/redis/adapter.js';
import { createEnginePorts, listenOnLoopback, UNDETECTABLE_SSN, type RecordedEvent } from './engine-ports.js';
import { startTestIssuer, type TestIssuer } from './oidc.js';
import { rawRespSocket, showResp, type RawRespSocket } from './raw-socket.js';

/** The `cache` resource: the real Redis on 127.0.0.1:6379, db 0, no target credentials unless overridden. */
export const loopbackRedisResource = (overrides: Partial<RedisResourceConfig> = {}): RedisResourceConfig => ({
  name: 'cache',
  type: 'redis',
  listen: '127.0.0.1:0',
  target: { host: '127.0.0.1', port: 6379, db: 0 },
  credentials: {},
  ...overrides,
});

/**
 * The red team's key rules under `key(…)`: `no-secrets` denies `secret:*` (then any extra
 * denies); `support-read` lets group support-agents read every key, masked with `pii`;
 * `narrow-read` lets group narrow-agents read only `ids` and `pub:*`, masked with `pii`.
 */
export const redTeamKeyRules = (key: (name: string) => string, extraDenies: RuleConfig[] = []): RuleConfig[] =>
  [
    { name: 'no-secrets', effect: 'deny', keys: [key('secret:*')] },
    ...extraDenies,
    { name: 'support-read', effect: 'allow', subjects: { groups: ['support-agents'] }, actions: ['read'], keys: [key('*')], mask: 'pii' },
    {
      name: 'narrow-read',
      effect: 'allow',
      subjects: { groups: ['narrow-agents'] },
      actions: ['read'],
      keys: [key('ids'), key('pub:*')],
      mask: 'pii',
    },
  ] as RuleConfig[];

/** The keys every red-team probe may touch: a denied secret, a public string, a list of ids and two users with an SSN field. */
export const seedRedTeamKeys = async (direct: RedisClientType, key: (name: string) => string): Promise<void> => {
  await direct.set(key('secret:1'), 'the launch codes');
  await direct.set(key('pub:1'), 'hello world');
  await direct.rPush(key('ids'), ['1', '2']);
  for (const id of ['1', '2']) await direct.hSet(key(`user:${id}`), { name: `User ${id}`, ssn: UNDETECTABLE_SSN });
};

export interface RedisFrontDoorOptions {
  /** Every key the specs write starts with it; `close` deletes them all. */
  readonly keyPrefix: string;
  readonly rules: RuleConfig[];
  readonly masking: CompiledMasking;
  readonly recorded?: RecordedEvent[];
  /** The policy port the adapter asks instead of the in-process engine (a real policy service's client). */
  readonly policyPort?: () => GovernancePorts['policy'];
}

export interface RedisFrontDoor {
  readonly idp: TestIssuer;
  /** A plain client straight to the real Redis, for seeding and checking. */
  readonly direct: RedisClientType;
  readonly resource: RedisResourceConfig;
  readonly server: Server;
  readonly port: number;
  /** Raw sockets opened by specs; `close` destroys them. */
  readonly sockets: Socket[];
  /** Fresh ports with the same rules, masking and audit sink (for a second adapter). */
  createPorts(): GovernancePorts;
  /** A raw RESP socket to the proxy, logged in with `AUTH <login>`. */
  agent(login: string): Promise<RawRespSocket>;
  close(): Promise<void>;
}

/**
 * The Redis adapter on a loopback port in front of the real Redis, with the real policy and
 * masking engines and a real token issuer: what the Redis red-team specs probe.
 */
export const startRedisFrontDoor = async ({ keyPrefix, rules, masking, recorded, policyPort }: RedisFrontDoorOptions): Promise<RedisFrontDoor> => {
  const idp = await startTestIssuer();
  const direct = createClient({ socket: { host: '127.0.0.1', port: 6379 } }) as RedisClientType;
  await direct.connect();
  const resource = loopbackRedisResource();
  const createPorts = (): GovernancePorts => {
    const ports = createEnginePorts({ idp, rules, resource, masking, maxRecordedBytes: 65_536, ...(recorded ? { recorded } : {}) });
    return policyPort ? { ...ports, policy: policyPort() } : ports;
  };
  const adapter = createRedisAdapter(resource, { secretsDir: process.cwd() });
  const { server, port } = await listenOnLoopback(adapter, createPorts());
  const sockets: Socket[] = [];
  return {
    idp,
    direct,
    resource,
    server,
    port,
    sockets,
    createPorts,
    agent: async (login) => {
      const client = await rawRespSocket(port);
      sockets.push(client.socket);
      client.send('AUTH', login);
      expect(showResp(await client.read())).toBe('OK');
      return client;
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
      const keys = await direct.keys(`${keyPrefix}:*`);
      if (keys.length > 0) await direct.del(keys);
      await direct.quit();
      await idp.close();
    },
  };
};
