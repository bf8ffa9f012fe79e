import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeCommand } from '@sluice/codec-resp';
import type { RuleConfig } from '@sluice/config';
import type { GovernedCommand, Subject } from '@sluice/contracts';
import type { GovernancePorts } from '../services/proxy/src/ports.js';
import { compilePiiMasking } from './support/engine-ports.js';
import { useTestPolicyService } from './support/policy-service.js';
import { showResp } from './support/raw-socket.js';
import { startRedisFrontDoor, type RedisFrontDoor } from './support/redis-proxy-harness.js';

/*
 * A Redis decision kept by the command's shape (name, subcommand, argument count) and, for each
 * key, which of the rules' key globs it matches: a real policy service over gRPC, its client
 * caching as in production. Each probe first has a command decided, then asks for one of the same
 * shape whose key sits on the same side of every glob (answered from the cache, no call) or on the
 * other side of one (never answered by the first decision).
 */

const RUN = randomBytes(4).toString('hex');
const prefix = `sluice-test:rshape-${RUN}`;
const key = (name: string) => `${prefix}:${name}`;

const rules = [
  { name: 'public-secrets', effect: 'deny', resources: ['cache'], keys: [key('public:secret*')] },
  { name: 'agents-read', effect: 'allow', subjects: { groups: ['agents'] }, resources: ['cache'], actions: ['read'], keys: [key('public:*')], mask: 'pii' },
] as RuleConfig[];

let door: RedisFrontDoor | undefined;

const agent: Subject = { sub: 'shape-bot', groups: ['agents'], issuer: 'https://issuer.test' };
const redis = (...args: string[]): GovernedCommand => ({ kind: 'redis', args: args.map((arg) => Buffer.from(arg)) });
/** The decision and whether it took a call to the policy service. */
const decide = async (command: GovernedCommand) => {
  const before = policyService.port.stats().misses;
  const decision = await policyService.port.decide(agent, 'cache', command);
  return { effect: decision.effect, rule: decision.rule, asked: policyService.port.stats().misses > before };
};

const policyService = useTestPolicyService('rshape', {
  resources: [{ name: 'cache', type: 'redis', listen: '127.0.0.1:0', target: { host: '127.0.0.1', port: 6379 } }],
  masking: { profiles: { pii: { detectors: ['email'], strategy: 'partial' } } },
  rules,
});

/** Lookups of the policy port's decision cache by the front door. */
let cacheLookups = 0;
const countingPort = (port: GovernancePorts['policy']): GovernancePorts['policy'] =>
  new Proxy(port, {
    get(target, property) {
      if (property === 'cachedDecision') {
        return (...args: Parameters<NonNullable<GovernancePorts['policy']['cachedDecision']>>) => {
          cacheLookups += 1;
          return target.cachedDecision?.(...args);
        };
      }
      const value: unknown = Reflect.get(target, property);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });

beforeAll(async () => {
  door = await startRedisFrontDoor({ keyPrefix: prefix, rules, masking: compilePiiMasking('redis-shape'), policyPort: () => countingPort(policyService.port) });
});

afterAll(async () => {
  await door?.close();
});

describe('Redis decisions kept by shape and key globs', () => {
  it('answers a command of the same shape whose key matches the same globs without asking the service', async () => {
    expect(await decide(redis('GET', key('public:a')))).toEqual({ effect: 'allow', rule: 'agents-read', asked: true });
    expect(policyService.port.cachedDecision(agent, 'cache', redis('GET', key('public:b')))).toMatchObject({ effect: 'allow', rule: 'agents-read' });
    expect(await decide(redis('GET', key('public:c')))).toEqual({ effect: 'allow', rule: 'agents-read', asked: false });
  });

  it('never allows a key on the other side of a glob: outside the allow rule, or inside the deny rule within it', async () => {
    await decide(redis('GET', key('public:a')));
    for (const other of [key('private:a'), key('public:secret1'), `${prefix}:public`, key('Public:a')]) {
      // Not cached yet, or cached as the deny an earlier key on its side got: never the allow.
      expect(policyService.port.cachedDecision(agent, 'cache', redis('GET', other))?.effect ?? 'not cached', other).not.toBe('allow');
      expect((await decide(redis('GET', other))).effect, other).toBe('deny');
    }
    // The deny is kept by shape too, and each side keeps its own decision.
    expect(await decide(redis('GET', key('public:secret2')))).toEqual({ effect: 'deny', rule: 'public-secrets', asked: false });
    expect(await decide(redis('GET', key('public:d')))).toEqual({ effect: 'allow', rule: 'agents-read', asked: false });
  });

  it('matches every key of a multi-key command: one key across a glob changes the decision', async () => {
    expect(await decide(redis('MGET', key('public:a'), key('public:b')))).toMatchObject({ effect: 'allow' });
    expect(await decide(redis('MGET', key('public:c'), key('public:d')))).toEqual({ effect: 'allow', rule: 'agents-read', asked: false });
    expect(policyService.port.cachedDecision(agent, 'cache', redis('MGET', key('public:c'), key('private:d')))).toBeUndefined();
    expect((await decide(redis('MGET', key('public:c'), key('private:d')))).effect).toBe('deny');
    expect((await decide(redis('MGET', key('public:secret'), key('public:d')))).effect).toBe('deny');
    // Another argument count is another shape.
    expect((await decide(redis('MGET', key('public:c'), key('public:d'), key('public:e')))).asked).toBe(true);
  });

  it('keeps no shape for commands that read keys by pattern: each KEYS pattern is asked for', async () => {
    expect((await decide(redis('KEYS', key('public:x*')))).effect).toBe('allow');
    // `public:s*` may match a key of the deny rule's `public:secret*`.
    expect(policyService.port.cachedDecision(agent, 'cache', redis('KEYS', key('public:s*')))).toBeUndefined();
    expect((await decide(redis('KEYS', key('public:s*')))).effect).toBe('deny');
  });

  it('keeps a decision by shape for a command too large to be kept by its exact arguments', async () => {
    const large = 'x'.repeat(4_096);
    expect(await decide(redis('SET', key('public:big1'), large))).toMatchObject({ effect: 'deny', asked: true });
    expect(await decide(redis('SET', key('public:big2'), `${large}y`))).toMatchObject({ effect: 'deny', asked: false });
  });

  it('answers a pipeline in order when a denied command sits between allowed ones decided by shape', async () => {
    await door!.direct.set(key('public:p1'), 'one');
    await door!.direct.set(key('public:p2'), 'two');
    await door!.direct.set(key('public:secret3'), 'hidden');
    const token = await door!.idp.mint({ sub: 'shape-bot', groups: ['agents'] });
    const client = await door!.agent(token);
    // Warm the shapes so that the whole pipeline is decided from the cache in one go.
    client.send('GET', key('public:p1'));
    expect(showResp(await client.read())).toBe('one');
    client.send('GET', key('public:secret3'));
    expect(showResp(await client.read())).toMatch(/^NOPERM/);
    const misses = policyService.port.stats().misses;
    client.socket.write(
      Buffer.concat([
        encodeCommand(['GET', key('public:p2')]),
        encodeCommand(['GET', key('public:secret3')]),
        encodeCommand(['GET', key('private:x')]),
        encodeCommand(['GET', key('public:p1')]),
      ]),
    );
    const replies = [];
    for (let index = 0; index < 4; index++) replies.push(showResp(await client.read()));
    expect(replies[0]).toBe('two');
    expect(replies[1]).toMatch(/^NOPERM denied by rule 'public-secrets'/);
    expect(replies[2]).toMatch(/^NOPERM denied: no rule allows it/);
    expect(replies[3]).toBe('one');
    // Only the key outside every glob's side seen so far needed the service.
    expect(policyService.port.stats().misses - misses).toBe(1);
  });

  it('looks a command repeated in one pipelined read up once, and still decides each different one on its own', async () => {
    await door!.direct.set(key('public:r1'), 'r-one');
    await door!.direct.set(key('public:secret4'), 'hidden');
    const token = await door!.idp.mint({ sub: 'shape-bot', groups: ['agents'] });
    const client = await door!.agent(token);
    client.send('GET', key('public:r1'));
    expect(showResp(await client.read())).toBe('r-one');
    client.send('GET', key('public:secret4'));
    expect(showResp(await client.read())).toMatch(/^NOPERM/);
    const lookups = cacheLookups;
    const burst = [key('public:r1'), key('public:r1'), key('public:r1'), key('public:secret4'), key('public:secret4'), key('public:r1')];
    client.socket.write(Buffer.concat(burst.map((name) => encodeCommand(['GET', name]))));
    const replies = [];
    for (let index = 0; index < burst.length; index++) replies.push(showResp(await client.read()));
    expect(replies).toEqual(['r-one', 'r-one', 'r-one', expect.stringMatching(/^NOPERM denied by rule 'public-secrets'/), expect.stringMatching(/^NOPERM denied by rule 'public-secrets'/), 'r-one']);
    // One lookup per run of the same command: three runs, not six commands.
    expect(cacheLookups - lookups).toBe(3);
    // The next read looks up afresh.
    client.send('GET', key('public:r1'));
    expect(showResp(await client.read())).toBe('r-one');
    expect(cacheLookups - lookups).toBe(4);
  });
});
