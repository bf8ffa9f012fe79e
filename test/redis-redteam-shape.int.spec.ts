import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeCommand } from '@sluice/codec-resp';
import type { RuleConfig } from '@sluice/config';
import type { Decision, GovernedCommand, Subject } from '@sluice/contracts';
import { compilePiiMasking } from './support/engine-ports.js';
import { waitFor } from './support/postgres-proxy-harness.js';
import { useTestPolicyService } from './support/policy-service.js';
import { showResp } from './support/raw-socket.js';
import { startRedisFrontDoor, type RedisFrontDoor } from './support/redis-proxy-harness.js';

/*
 * Red team of Redis decisions kept by shape and key globs: an agent with a valid token for a
 * key-limited grant, raw RESP, and a real policy service over gRPC whose client (the proxy's)
 * caches as in production. The one thing probed: the proxy never answers a command from a
 * decision the policy service would not give that command (keys across a glob, another subject,
 * an older policy, another masking profile), and nothing denied runs.
 */

const RUN = randomBytes(4).toString('hex');
const prefix = `sluice-test:rrshape-${RUN}`;
const key = (name: string) => `${prefix}:${name}`;
const ISSUER_A = 'https://issuer-a.test';
const ISSUER_B = 'https://issuer-b.test';

/** Redis glob forms as rule key globs (Sluice's matcher reads only `*` and `?`; the rest is literal). */
const GLOB_FORMS = ['a?c', '[abc]x', '[^a]x', '[a-z]x', '[z-a]x', '\\*x', '\\?x', '\\[x', 'x\\', '[ab', 'A*', '*\u00e9', '\u{1F600}?', 'sp ace*'];

const rules = [
  { name: 'no-secrets', effect: 'deny', resources: ['cache'], keys: [key('pub:secret*')] },
  { name: 'no-geheim', effect: 'deny', resources: ['cache'], keys: [key('pub:geheim-ü:*')] },
  ...GLOB_FORMS.map((form, index) => ({ name: `glob-${index}`, effect: 'deny', resources: ['cache'], keys: [key(`g:${form}`)] })),
  {
    name: 'hold-writes',
    effect: 'approve',
    subjects: { groups: ['agents'] },
    resources: ['cache'],
    actions: ['write'],
    keys: [key('pub:hold*')],
    approvers: { groups: ['owners'] },
  },
  { name: 'pii-read', effect: 'allow', subjects: { groups: ['agents'] }, resources: ['cache'], actions: ['read'], keys: [key('pub:pii:*')], mask: 'pii' },
  { name: 'agents-rw', effect: 'allow', subjects: { groups: ['agents'] }, resources: ['cache'], actions: ['read', 'write'], keys: [key('pub:*'), key('g:*')] },
  { name: 'bracket-read', effect: 'allow', subjects: { groups: ['agents'] }, resources: ['cache'], actions: ['read'], keys: [key('br:[ab]*'), key('br:\\*')] },
  { name: 'issuer-a-read', effect: 'allow', subjects: { groups: ['agents'], issuer: ISSUER_A }, resources: ['cache'], actions: ['read'], keys: [key('iss:*')] },
  { name: 'ops-admin', effect: 'allow', subjects: { groups: ['ops'] }, resources: ['cache'], actions: ['read', 'write', 'admin'], keys: [key('ops:*')] },
] as RuleConfig[];

let door: RedisFrontDoor | undefined;

const buffers = (args: readonly (string | Buffer)[]): Buffer[] => args.map((arg) => (typeof arg === 'string' ? Buffer.from(arg) : arg));
const redis = (...args: (string | Buffer)[]): GovernedCommand => ({ kind: 'redis', args: buffers(args) });

/** What the proxy acts on in a decision: compared between the cache and the service's engine. */
const view = (decision: Decision) => ({
  effect: decision.effect,
  rule: decision.rule,
  reason: decision.reason,
  action: decision.action,
  risk: decision.risk,
  maskProfile: decision.effect === 'deny' ? undefined : (decision.maskProfile ?? undefined),
  ...(decision.effect === 'approve' ? { approvers: decision.approvers, approvalTimeoutMs: decision.approvalTimeoutMs } : {}),
});

/** What the policy service's engine says now: the truth every cached answer must agree with. */
const truth = (subject: Subject, command: GovernedCommand) => view(policyService.service.policy.decide(subject, 'cache', command));

/** mulberry32: the same probes on every run. */
const seeded = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

const KEY_ENDS: (string | Buffer)[] = [
  'abc', 'axc', 'ac', 'abbc', 'aXc', '[abc]x', 'ax', 'bx', 'zx', 'Ax', 'A1', 'a1', '^x', '-x', '*x', '?x', '\\*x', '\\?x', '[x', '\\[x',
  'x\\', 'x', '[ab', 'ab', '\u00e9', 'x\u00e9', '\u{1F600}a', '\u{1F600}', '\u{1F600}\u{1F600}', '*', '?', '[', ']', '\\', '', 'sp ace', 'sp acey', '\n', '\u0001', '\u0002',
  Buffer.from([0xff]), Buffer.from([0xfe]), Buffer.from([0xc3, 0xa9]), Buffer.from([0xe9]), Buffer.from([0x78, 0xc3, 0xa9]), Buffer.from([0x78, 0xe9]),
  Buffer.from([0xef, 0xbf, 0xbd]), Buffer.from([0xed, 0xa0, 0xbd]), Buffer.from([0xf0, 0x9f, 0x98]), Buffer.from([0x00]),
];
const KEY_STARTS = ['pub:', 'pub:secret', 'pub:pii:', 'pub:hold', 'g:', 'iss:', 'ops:', 'other:', 'PUB:', 'pub:secre', 'pub:geheim-ü:'];
const allKeys = (): Buffer[] => {
  const keys: Buffer[] = [];
  for (const start of KEY_STARTS) for (const end of KEY_ENDS) keys.push(Buffer.concat([Buffer.from(key(start)), buffers([end])[0]!]));
  for (const end of KEY_ENDS) keys.push(buffers([end])[0]!);
  // Past the size of an exact-arguments entry: decided by shape only.
  keys.push(Buffer.from(key(`pub:${'x'.repeat(1_500)}`)), Buffer.from(key(`pub:secret${'y'.repeat(1_500)}`)), Buffer.from(key(`other:${'z'.repeat(1_500)}`)));
  return keys;
};

/** Commands of every kind the brief names, over two keys (fixed positions, numkeys, options, patterns, subcommands, names). */
const COMMANDS: ((k1: Buffer, k2: Buffer) => (string | Buffer)[])[] = [
  (k1) => ['GET', k1],
  (k1) => ['get', k1],
  (k1) => ['gEt', k1],
  (k1) => ['GETDEL', k1],
  (k1) => ['STRLEN', k1],
  (k1) => ['DUMP', k1],
  (k1) => ['SET', k1, 'v'],
  (k1) => ['SET', k1, 'v', 'EX', '10'],
  (k1) => ['SET', k1, 'v', 'GET'],
  (k1, k2) => ['MGET', k1, k2],
  (k1, k2) => ['MSET', k1, 'v', k2, 'w'],
  (k1, k2) => ['DEL', k1, k2],
  (k1) => ['DEL', k1],
  (k1, k2) => ['EXISTS', k1, k2],
  (k1, k2) => ['RENAME', k1, k2],
  (k1, k2) => ['COPY', k1, k2],
  (k1, k2) => ['COPY', k1, k2, 'DB', '1'],
  (k1, k2) => ['SMOVE', k1, k2, 'm'],
  (k1, k2) => ['LMOVE', k1, k2, 'LEFT', 'RIGHT'],
  (k1, k2) => ['BLMOVE', k1, k2, 'LEFT', 'RIGHT', '0'],
  (k1, k2) => ['SINTERSTORE', k1, k2],
  (k1, k2) => ['ZUNIONSTORE', k1, '1', k2],
  (k1, k2) => ['ZUNIONSTORE', k1, '2', k2, k1],
  (k1, k2) => ['BITOP', 'AND', k1, k2],
  (k1, k2) => ['SORT', k1, 'BY', k2, 'GET', k2, 'STORE', k1],
  (k1) => ['SORT', k1],
  (k1, k2) => ['GEORADIUS', k1, '0', '0', '1', 'km', 'STORE', k2],
  (k1) => ['GEORADIUS', k1, '0', '0', '1', 'km'],
  (k1) => ['XREAD', 'STREAMS', k1, '0'],
  (k1, k2) => ['XREAD', 'COUNT', k1, 'STREAMS', k2, '0'],
  (k1) => ['EVAL', 'return 1', '1', k1],
  (k1) => ['FCALL', 'f', '1', k1],
  (k1) => ['OBJECT', 'ENCODING', k1],
  (k1) => ['OBJECT', 'FREQ', k1],
  (k1) => ['object', 'encoding', k1],
  (k1, k2) => ['OBJECT', k1, k2],
  (k1) => ['MEMORY', 'USAGE', k1],
  (k1) => ['MIGRATE', '127.0.0.1', '1', '', '0', '10', 'KEYS', k1],
  (k1) => ['SCAN', '0', 'MATCH', k1],
  (k1) => ['KEYS', k1],
  () => ['WAIT', '0', '0'],
  (k1) => ['CLIENT', 'TRACKING', 'on', 'BCAST', 'PREFIX', k1],
  (k1) => ['XINFO', 'STREAM', k1],
  (k1) => ['NOSUCH', k1],
  (k1, k2) => ['LCS', k1, k2],
  (k1) => ['HGET', k1, 'f'],
  (k1) => [k1],
  (k1, k2) => ['GET', k1, k2],
  (k1, k2) => ['WATCH', k1, k2],
  (k1) => ['PUBLISH', k1, 'm'],
];

const SUBJECTS: Subject[] = [
  { sub: 'shape-bot', groups: ['agents'], issuer: ISSUER_A },
  { sub: 'shape-bot', groups: ['agents'], issuer: ISSUER_B },
  { sub: 'shape-bot', groups: ['others'], issuer: ISSUER_A },
  { sub: 'ops-bot', groups: ['ops', 'agents'], issuer: ISSUER_A },
];

/**
 * Decides `count` seeded commands through the port, in order: every answer it gives from its
 * cache (before asking) and every answer it returns must be what the engine says for that very
 * command. Returns the mismatches, described, and how many answers came from the cache.
 */
const differential = async (count: number, seed: number): Promise<{ mismatches: string[]; hits: number }> => {
  const random = seeded(seed);
  const keys = allKeys();
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const mismatches: string[] = [];
  const before = policyService.port.stats().hits;
  for (let index = 0; index < count; index++) {
    const subject = pick(SUBJECTS);
    const args = buffers(pick(COMMANDS)(pick(keys), pick(keys)));
    const command: GovernedCommand = { kind: 'redis', args };
    const expected = truth(subject, command);
    const describe = () => `${subject.groups.join(',')}@${subject.issuer} ${args.map((arg) => JSON.stringify(arg.toString('latin1'))).join(' ')}`;
    const cached = policyService.port.cachedDecision(subject, 'cache', command);
    if (cached && JSON.stringify(view(cached)) !== JSON.stringify(expected)) mismatches.push(`cached ${describe()}: ${cached.effect} (${cached.rule}) but ${expected.effect} (${expected.rule})`);
    const decided = await policyService.port.decide(subject, 'cache', command);
    if (JSON.stringify(view(decided)) !== JSON.stringify(expected)) mismatches.push(`decided ${describe()}: ${decided.effect} (${decided.rule}) but ${expected.effect} (${expected.rule})`);
  }
  return { mismatches, hits: policyService.port.stats().hits - before };
};

/** Reads `count` replies, shown as plain data. */
const replies = async (client: Awaited<ReturnType<RedisFrontDoor['agent']>>, count: number): Promise<unknown[]> => {
  const shown: unknown[] = [];
  for (let index = 0; index < count; index++) shown.push(showResp(await client.read()));
  return shown;
};

const policyService = useTestPolicyService('rrshape', {
  resources: [{ name: 'cache', type: 'redis', listen: '127.0.0.1:0', target: { host: '127.0.0.1', port: 6379 } }],
  masking: { profiles: { pii: { detectors: ['email'], strategy: 'partial' } } },
  identity: { oidc: [ISSUER_A, ISSUER_B].map((issuer) => ({ issuer, audience: 'sluice' })) },
  rules,
});

beforeAll(async () => {
  door = await startRedisFrontDoor({ keyPrefix: prefix, rules, masking: compilePiiMasking('redis-redteam-shape'), policyPort: () => policyService.port });
});

afterAll(async () => {
  await door?.close();
});

describe('Redis decisions by shape against a red team', () => {
  it('never answers from the cache what the policy service would not say: glob forms, key bytes, commands, subjects (seeded differential)', async () => {
    const { mismatches, hits } = await differential(3_000, 7);
    expect(mismatches.slice(0, 10)).toEqual([]);
    // The probe is worth something only if the cache answered many of them.
    expect(hits).toBeGreaterThan(1_000);
  }, 120_000);

  it('keeps two commands apart whose arguments joined by a separator read alike (a key holding the separator)', async () => {
    const agent: Subject = { sub: 'sep-bot', groups: ['agents'], issuer: ISSUER_A };
    for (const separator of ['\u0002', '\u0001', '\u0000', ' ', ':']) {
      // One key, under the allow rule's `pub:*` …
      const joined = redis('MGET', `${key('pub:a')}${separator}${key('other:x')}`);
      expect((await policyService.port.decide(agent, 'cache', joined)).effect).toBe('allow');
      // … is not the two keys it reads like, one of them outside every allow rule.
      const split = redis('MGET', key('pub:a'), key('other:x'));
      expect(policyService.port.cachedDecision(agent, 'cache', split)?.effect ?? 'not cached', JSON.stringify(separator)).not.toBe('allow');
      expect((await policyService.port.decide(agent, 'cache', split)).effect).toBe('deny');
    }
  });

  it('keeps subjects apart whose claims joined by a separator read alike', async () => {
    // Groups: [agents, x] (allowed) and [agents<sep>x] (no rule); issuer and sub: the rule on iss:* names ISSUER_A.
    const pairs: [Subject, Subject, GovernedCommand][] = [
      [{ sub: 'g', groups: ['agents', 'x'], issuer: ISSUER_A }, { sub: 'g', groups: ['agents\u0002x'], issuer: ISSUER_A }, redis('GET', key('pub:claims'))],
      [{ sub: 'a\u0001b', groups: ['agents'], issuer: ISSUER_A }, { sub: 'b', groups: ['agents'], issuer: `${ISSUER_A}\u0001a` }, redis('GET', key('iss:claims'))],
    ];
    for (const [allowed, other, command] of pairs) {
      expect((await policyService.port.decide(allowed, 'cache', command)).effect).toBe('allow');
      expect(truth(other, command).effect).toBe('deny');
      expect(policyService.port.cachedDecision(other, 'cache', command)?.effect ?? 'not cached', JSON.stringify(other)).not.toBe('allow');
      expect((await policyService.port.decide(other, 'cache', command)).effect).toBe('deny');
    }
  });

  it('runs nothing denied when the allowed command came first with the separator inside its key (raw RESP, MGET and DEL)', async () => {
    await door!.direct.set(key('other:x'), 'private-value');
    const token = await door!.idp.mint({ sub: 'sep-door-bot', groups: ['agents'] });
    const client = await door!.agent(token);
    // One at a time: each decision is in the cache before the next command arrives.
    const shown: unknown[] = [];
    for (const args of [
      ['MGET', `${key('pub:b')}\u0002${key('other:x')}`],
      ['MGET', key('pub:b'), key('other:x')],
      ['DEL', `${key('pub:b')}\u0002${key('other:x')}`],
      ['DEL', key('pub:b'), key('other:x')],
    ]) {
      client.write(encodeCommand(args));
      shown.push(...(await replies(client, 1)));
    }
    const [joinedRead, splitRead, joinedDel, splitDel] = shown;
    expect(joinedRead).toEqual([null]);
    expect(splitRead).toEqual(expect.stringMatching(/^NOPERM denied: no rule allows it/));
    expect(joinedDel).toBe(0);
    expect(splitDel).toEqual(expect.stringMatching(/^NOPERM denied: no rule allows it/));
    expect(await door!.direct.get(key('other:x'))).toBe('private-value');
  });

  it('decides for the subject of the moment: AUTH and HELLO AUTH pipelined behind a warm shape', async () => {
    await door!.direct.set(key('pub:who'), 'agents-only');
    const agents = await door!.idp.mint({ sub: 'reauth-bot', groups: ['agents'] });
    // May connect (ops-admin), but reads only ops:*.
    const others = await door!.idp.mint({ sub: 'reauth-bot', groups: ['ops'] });
    const client = await door!.agent(agents);
    client.send('GET', key('pub:warm'));
    expect(await replies(client, 1)).toEqual([null]);
    client.write(
      Buffer.concat([
        encodeCommand(['AUTH', others]),
        encodeCommand(['GET', key('pub:who')]),
        encodeCommand(['AUTH', agents]),
        encodeCommand(['GET', key('pub:who')]),
        encodeCommand(['HELLO', '2', 'AUTH', 'reauth-bot', others]),
        encodeCommand(['GET', key('pub:who')]),
      ]),
    );
    const shown = await replies(client, 6);
    expect(shown[0]).toBe('OK');
    expect(shown[1]).toMatch(/^NOPERM denied: no rule allows it/);
    expect(shown[2]).toBe('OK');
    expect(shown[3]).toBe('agents-only');
    expect(Array.isArray(shown[4])).toBe(true);
    expect(shown[5]).toMatch(/^NOPERM denied: no rule allows it/);
  });

  it('masks with the profile of the glob the key sits in, not that of a warm shape', async () => {
    await door!.direct.set(key('pub:plain'), 'jane.doe@example.com');
    await door!.direct.set(key('pub:pii:1'), 'jane.doe@example.com');
    const token = await door!.idp.mint({ sub: 'mask-bot', groups: ['agents'] });
    const client = await door!.agent(token);
    client.send('GET', key('pub:plain'));
    expect(await replies(client, 1)).toEqual(['jane.doe@example.com']);
    client.send('GET', key('pub:pii:1'));
    const [masked] = await replies(client, 1);
    expect(masked).not.toContain('jane.doe');
    client.send('GET', key('pub:plain2'));
    client.send('GET', key('pub:pii:2'));
    expect(policyService.port.cachedDecision({ sub: 'x', groups: ['agents'], issuer: ISSUER_A }, 'cache', redis('GET', key('pub:pii:3')))).toBeUndefined();
    expect(view((await policyService.port.decide({ sub: 'x', groups: ['agents'], issuer: ISSUER_A }, 'cache', redis('GET', key('pub:pii:3'))))).maskProfile).toBe('pii');
    expect(view(policyService.port.cachedDecision({ sub: 'x', groups: ['agents'], issuer: ISSUER_A }, 'cache', redis('GET', key('pub:pii:4')))!).maskProfile).toBe('pii');
    await replies(client, 2);
  });

  it('answers a pipeline and a MULTI mixing cached and asked decisions completely and in order; a denied command aborts EXEC', async () => {
    const token = await door!.idp.mint({ sub: 'multi-bot', groups: ['agents'] });
    const client = await door!.agent(token);
    // Warm: an allowed write and a denied one.
    client.send('SET', key('pub:w0'), '0');
    client.send('SET', key('pub:secret:w0'), '0');
    expect(await replies(client, 2)).toEqual(['OK', expect.stringMatching(/^NOPERM denied by rule 'no-secrets'/)]);
    client.write(
      Buffer.concat([
        encodeCommand(['MULTI']),
        encodeCommand(['SET', key('pub:m1'), '1']),
        encodeCommand(['SET', key('pub:secret:m'), '2']),
        encodeCommand(['SET', key('pub:m2'), '3']),
        encodeCommand(['SET', key(`g:${'[abc]x'}`), '4']),
        encodeCommand(['SET', key('other:m'), '5']),
        encodeCommand(['EXEC']),
        encodeCommand(['MGET', key('pub:m1'), key('pub:m2')]),
      ]),
    );
    const shown = await replies(client, 8);
    expect(shown.slice(0, 2)).toEqual(['OK', 'QUEUED']);
    expect(shown[2]).toMatch(/^NOPERM denied by rule 'no-secrets'/);
    expect(shown[3]).toBe('QUEUED');
    expect(shown[4]).toMatch(/^NOPERM denied by rule 'glob-1'/);
    expect(shown[5]).toMatch(/^NOPERM denied: no rule allows it/);
    expect(shown[6]).toMatch(/^EXECABORT/);
    expect(shown[7]).toEqual([null, null]);
    for (const name of ['pub:m1', 'pub:secret:m', 'pub:m2', 'g:[abc]x', 'other:m']) expect(await door!.direct.exists(key(name)), name).toBe(0);

    // A pipeline: sides seen and unseen alternate; every reply comes back, in order.
    for (const [index, name] of ['pub:q1', 'g:abc', 'g:\\*x', 'pub:q2'].entries()) await door!.direct.set(key(name), `v${index}`);
    const pipeline = ['pub:q1', 'pub:secretq', 'g:abc', 'g:axc', 'g:\\*x', 'g:*x', 'other:q', 'pub:q2', 'g:x\\', 'pub:pii:q'];
    client.write(Buffer.concat(pipeline.map((name) => encodeCommand(['GET', key(name)]))));
    const got = await replies(client, pipeline.length);
    expect(got[0]).toBe('v0');
    expect(got[1]).toMatch(/^NOPERM denied by rule 'no-secrets'/);
    expect(got[2]).toMatch(/^NOPERM denied by rule 'glob-0'/);
    expect(got[3]).toMatch(/^NOPERM denied by rule 'glob-0'/);
    expect(got[4]).toMatch(/^NOPERM denied by rule 'glob-5'/);
    expect(got[5]).toBe(null);
    expect(got[6]).toMatch(/^NOPERM denied: no rule allows it/);
    expect(got[7]).toBe('v3');
    expect(got[8]).toMatch(/^NOPERM denied by rule 'glob-8'/);
    expect(got[9]).toBe(null);
  });

  it('lists no key names by a KEYS or SCAN pattern whose class or escape Redis reads and the rule glob of the same text does not', async () => {
    await door!.direct.set(key('br:a1'), 'a');
    await door!.direct.set(key('br:*'), 'star');
    // What Redis would list: keys the rule's literal `[ab]` and `\*` never grant.
    expect(await door!.direct.keys(key('br:[ab]*'))).toEqual([key('br:a1')]);
    expect(await door!.direct.keys(key('br:\\*'))).toEqual([key('br:*')]);
    const token = await door!.idp.mint({ sub: 'bracket-bot', groups: ['agents'] });
    const client = await door!.agent(token);
    client.send('GET', key('br:a1'));
    client.send('KEYS', key('br:[ab]*'));
    client.send('SCAN', '0', 'MATCH', key('br:[ab]*'), 'COUNT', '1000');
    client.send('KEYS', key('br:\\*'));
    for (const reply of await replies(client, 4)) expect(reply).toEqual(expect.stringMatching(/^NOPERM denied: no rule allows it/));
  });

  it('denies a key under a non-ASCII deny glob whatever bytes follow: a binary suffix does not turn the key into Latin-1', async () => {
    const binary = Buffer.concat([Buffer.from(key('pub:geheim-ü:')), Buffer.from([0xff, 0x10, 0xc3])]);
    await door!.direct.set(binary, 'verboten');
    const token = await door!.idp.mint({ sub: 'binary-bot', groups: ['agents'] });
    const client = await door!.agent(token);
    client.send('GET', key('pub:geheim-ü:1'));
    client.write(encodeCommand(['GET', binary]));
    client.write(encodeCommand(['SET', binary, 'overwritten']));
    for (const reply of await replies(client, 3)) expect(reply).toEqual(expect.stringMatching(/^NOPERM denied by rule 'no-geheim'/));
    expect(await door!.direct.get(binary)).toBe('verboten');
    await door!.direct.del(binary);
  });

  it('keeps no shape for a command naming hundreds of keys: the proxy would test every glob on each, on the loop all sessions share', async () => {
    const agent: Subject = { sub: 'bulk-bot', groups: ['agents'], issuer: ISSUER_A };
    const del = (count: number, round: number) => redis('DEL', ...Array.from({ length: count }, (_, index) => key(`pub:bulk-${round}-${index}`)));
    const asked = async (command: GovernedCommand) => {
      const misses = policyService.port.stats().misses;
      await policyService.port.decide(agent, 'cache', command);
      return policyService.port.stats().misses > misses;
    };
    expect(await asked(del(200, 1))).toBe(true);
    expect(await asked(del(200, 2))).toBe(false);
    expect(await asked(del(300, 1))).toBe(true);
    expect(policyService.port.cachedDecision(agent, 'cache', del(300, 2))).toBeUndefined();
  });

  it('drops decisions kept by shape when a reload changes the globs, also for decisions in flight during it', async () => {
    const agent: Subject = { sub: 'reload-bot', groups: ['agents'], issuer: ISSUER_A };
    await door!.direct.set(key('pub:late1'), 'late');
    const token = await door!.idp.mint({ sub: 'reload-bot', groups: ['agents'] });
    const client = await door!.agent(token);
    client.send('GET', key('pub:late0'));
    client.send('GET', key('pub:late1'));
    expect(await replies(client, 2)).toEqual([null, 'late']);
    const before = policyService.port.stats().version!;
    const file = policyService.configFile;
    const config = parse(readFileSync(file, 'utf8')) as { rules: RuleConfig[] };
    config.rules = [{ name: 'late-deny', effect: 'deny', resources: ['cache'], keys: [key('pub:late*')] }, ...config.rules];
    writeFileSync(file, stringify(config));
    // Decisions asked while the reload happens: none may be kept for the new version unless it is the new one's.
    const inFlight = Array.from({ length: 40 }, (_, index) => policyService.port.decide(agent, 'cache', redis('GET', key(`pub:late-${index}`))));
    expect(await policyService.service.reload()).toMatchObject({ ok: true });
    await Promise.all(inFlight);
    await waitFor(() => policyService.port.stats().version !== before);
    client.send('GET', key('pub:late1'));
    expect(await replies(client, 1)).toEqual([expect.stringMatching(/^NOPERM denied by rule 'late-deny'/)]);
    for (let index = 0; index < 40; index++) {
      const command = redis('GET', key(`pub:late-x${index}`));
      const cached = policyService.port.cachedDecision(agent, 'cache', command);
      if (cached) expect(view(cached)).toEqual(truth(agent, command));
    }
    // The differential again, under the new rules.
    const { mismatches } = await differential(600, 11);
    expect(mismatches.slice(0, 10)).toEqual([]);
  }, 60_000);
});
