import { randomBytes } from 'node:crypto';
import type { Server } from 'node:net';
import { readFileSync, writeFileSync } from 'node:fs';
import { parse, stringify } from 'yaml';
import { createClient, type RedisClientType } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeCommand } from '@sluice/codec-resp';
import type { RuleConfig } from '@sluice/config';
import { compileMasking } from '@sluice/masking-engine';
import type { GovernancePorts } from '../services/proxy/src/ports.js';
import { createRedisAdapter } from '../services/proxy/src/redis/adapter.js';
import { createEnginePorts, listenOnLoopback, type RecordedEvent } from './support/engine-ports.js';
import { startTestIssuer, type TestIssuer } from './support/oidc.js';
import { waitFor } from './support/postgres-proxy-harness.js';
import { useTestPolicyService } from './support/policy-service.js';
import { rawRespSocket, showResp, type RawRespSocket } from './support/raw-socket.js';
import { loopbackRedisResource } from './support/redis-proxy-harness.js';

/*
 * Red team of the Redis burst memo (03b45a7): within one synchronous intake pass a command
 * byte-equal to the previous one takes its verdict and masked recorded text. An agent with a
 * valid token for a key-limited grant pipelines raw RESP mixing re-logins, denials, MULTI/EXEC,
 * SELECT, CLIENT, RESET and held writes, against a real policy service whose client caches as in
 * production. Held: a burst is answered, recorded and masked exactly as the same commands sent one
 * at a time, and a re-login or a reload is never answered by the previous verdict.
 */

const RUN = randomBytes(4).toString('hex');
const prefix = `sluice-test:rburst-${RUN}`;
const key = (name: string) => `${prefix}:${name}`;

const rules = [
  { name: 'no-secrets', effect: 'deny', resources: ['cache'], keys: [key('secret:*')] },
  { name: 'hold-writes', effect: 'approve', subjects: { groups: ['narrow-agents'] }, resources: ['cache'], actions: ['write'], keys: [key('pub:hold*')], approvers: { groups: ['owners'] } },
  { name: 'support-read', effect: 'allow', subjects: { groups: ['support-agents'] }, resources: ['cache'], actions: ['read'], keys: [key('*')], mask: 'strict' },
  { name: 'narrow-read', effect: 'allow', subjects: { groups: ['narrow-agents'] }, resources: ['cache'], actions: ['read'], keys: [key('pub:*')], mask: 'pii' },
] as RuleConfig[];

const policyService = useTestPolicyService('rburst', {
  resources: [{ name: 'cache', type: 'redis', listen: '127.0.0.1:0', target: { host: '127.0.0.1', port: 6379 } }],
  masking: { profiles: { pii: { detectors: ['email'], strategy: 'partial' }, strict: { detectors: ['email'], strategy: 'redact' } } },
  rules,
});

const masking = compileMasking(
  {
    defaultRegion: 'US',
    detectors: [],
    profiles: {
      pii: { detectors: ['email', 'us_ssn', 'credit_card'], strategy: 'partial', columns: [] },
      strict: { detectors: ['email', 'us_ssn', 'credit_card'], strategy: 'redact', columns: [] },
    },
  },
  { hashKey: `rburst-${RUN}` },
);

const recorded: RecordedEvent[] = [];
let idp: TestIssuer;
let direct: RedisClientType;
let server: Server;
let port: number;
const sockets: RawRespSocket[] = [];

beforeAll(async () => {
  idp = await startTestIssuer();
  direct = createClient({ socket: { host: '127.0.0.1', port: 6379 } });
  await direct.connect();
  const resource = loopbackRedisResource();
  const engine = createEnginePorts({ idp, rules, resource, masking, maxRecordedBytes: 65_536, recorded });
  const ports: GovernancePorts = {
    ...engine,
    policy: policyService.port,
    // The recorded text masked as in production: every detector, the decision's profile deciding how.
    masking: { ...engine.masking, maskCommandText: (text, profile) => masking.profile(profile ?? 'strict')!.maskText(text, {}) },
  };
  ({ server, port } = await listenOnLoopback(createRedisAdapter(resource, { secretsDir: process.cwd() }), ports));
  await direct.set(key('pub:1'), 'public one');
  await direct.set(key('secret:1'), 'the launch codes');
  await direct.set(key('team:1'), 'support only');
  await direct.set(key('pub:ada@example.com'), 'mail row');
  await direct.set(key('pub:beyond-ascii'), `${'é'.repeat(200)}4111 1111 1111 1111 漢字\u200bada.lovelace@example.com \u0301grace@example.com 😀123-45-6789`);
});

afterAll(async () => {
  for (const client of sockets) client.socket.destroy();
  await new Promise((resolve) => server?.close(resolve));
  const keys = await direct.keys(`${prefix}:*`);
  if (keys.length > 0) await direct.del(keys);
  await direct.quit();
  await idp.close();
});

const tokens = async () => ({
  narrow: await idp.mint({ sub: `narrow-${RUN}`, groups: ['narrow-agents'] }),
  support: await idp.mint({ sub: `support-${RUN}`, groups: ['support-agents'] }),
});

const connect = async (token: string): Promise<RawRespSocket> => {
  const client = await rawRespSocket(port);
  sockets.push(client);
  client.send('AUTH', token);
  expect(showResp(await client.read())).toBe('OK');
  return client;
};

const read = async (client: RawRespSocket, count: number): Promise<unknown[]> => {
  const replies: unknown[] = [];
  for (let index = 0; index < count; index++) replies.push(showResp(await client.read()));
  return replies;
};

/** The commands written in one read (one burst), and their replies. */
const burst = async (client: RawRespSocket, commands: string[][]): Promise<unknown[]> => {
  client.write(Buffer.concat(commands.map((args) => encodeCommand(args))));
  return read(client, commands.length);
};

/** The same commands, each sent after the previous reply: no burst at all. */
const oneByOne = async (client: RawRespSocket, commands: string[][]): Promise<unknown[]> => {
  const replies: unknown[] = [];
  for (const args of commands) {
    client.send(...args);
    replies.push(...(await read(client, 1)));
  }
  return replies;
};

/** The command.decided records of sessions opened since `from`: what was decided, as recorded. */
const decidedSince = (from: number) =>
  recorded.slice(from).filter((event) => event.type === 'command.decided').map((event) => ({ command: event.data.command, decision: event.data.decision, rule: event.data.rule }));

describe('Redis burst memo red team', () => {
  it('answers and records a burst mixing repeats, denials, MULTI/EXEC, SELECT, CLIENT and RESET as the same commands one at a time', async () => {
    const { narrow } = await tokens();
    const commands = [
      ['GET', key('pub:1')],
      ['GET', key('pub:1')],
      ['GET', key('secret:1')],
      ['GET', key('secret:1')],
      ['GET', key('pub:1')],
      ['GET', key('team:1')],
      ['GET', key('pub:1')],
      ['MULTI'],
      ['GET', key('pub:1')],
      ['GET', key('secret:1')],
      ['GET', key('pub:1')],
      ['EXEC'],
      ['SELECT', '0'],
      ['GET', key('pub:1')],
      ['CLIENT', 'SETNAME', 'x'],
      ['GET', key('pub:1')],
      ['RESET'],
      ['GET', key('pub:1')],
      ['GET', key('secret:1')],
      ['GET', key('secret:1')],
    ];
    const fromBurst = recorded.length;
    const burstReplies = await burst(await connect(narrow), commands);
    const burstDecided = decidedSince(fromBurst);
    const fromSingles = recorded.length;
    const singleReplies = await oneByOne(await connect(narrow), commands);
    expect(burstReplies).toEqual(singleReplies);
    // The same records; a refusal before any rule (RESET) is recorded at intake, so ahead of
    // decisions still awaited from the service: compared as one sorted list.
    const sorted = (records: unknown[]) => records.map((record) => JSON.stringify(record)).sort();
    expect(sorted(burstDecided)).toEqual(sorted(decidedSince(fromSingles)));
    expect(burstDecided).toHaveLength(commands.length);
    // Nothing denied came back, whichever way it was sent.
    expect(JSON.stringify(burstReplies)).not.toContain('launch codes');
    expect(JSON.stringify(burstReplies)).not.toContain('support only');
    expect(burstReplies[0]).toBe('public one');
    expect(burstReplies[3]).toMatch(/^NOPERM/);
  });

  it('never answers a command after a re-login mid-burst by the previous identity verdict, either way', async () => {
    const { narrow, support } = await tokens();
    const down = await connect(support);
    expect(
      await burst(down, [
        ['GET', key('team:1')],
        ['GET', key('team:1')],
        ['AUTH', narrow],
        ['GET', key('team:1')],
        ['GET', key('team:1')],
      ]),
    ).toEqual(['support only', 'support only', 'OK', expect.stringMatching(/^NOPERM/), expect.stringMatching(/^NOPERM/)]);
    const up = await connect(narrow);
    const upReplies = await burst(up, [
      ['GET', key('team:1')],
      ['HELLO', '2', 'AUTH', 'default', support],
      ['GET', key('team:1')],
      ['AUTH', 'not-a-token'],
      ['GET', key('team:1')],
    ]);
    // A refused re-login leaves the connection as it was (as Redis does): still the support agent.
    expect(upReplies).toEqual([expect.stringMatching(/^NOPERM/), expect.any(Array), 'support only', expect.stringMatching(/^WRONGPASS/), 'support only']);
    const narrowAgain = await burst(up, [
      ['GET', key('team:1')],
      ['AUTH', narrow],
      ['GET', key('team:1')],
    ]);
    expect(narrowAgain).toEqual(['support only', 'OK', expect.stringMatching(/^NOPERM/)]);
  });

  it('masks each repeated command recorded in a burst, and under the profile of its own decision', async () => {
    const { narrow, support } = await tokens();
    const mail = ['GET', key('pub:ada@example.com')];
    const from = recorded.length;
    expect(await burst(await connect(narrow), [mail, mail, mail, ['AUTH', support], mail, mail])).toEqual(['mail row', 'mail row', 'mail row', 'OK', 'mail row', 'mail row']);
    const decided = decidedSince(from);
    expect(decided.map((record) => record.rule)).toEqual(['narrow-read', 'narrow-read', 'narrow-read', 'support-read', 'support-read']);
    for (const record of decided) expect(String(record.command)).not.toContain('ada@example.com');
    // pii keeps the first letter, strict redacts: each run recorded under its own profile.
    expect(decided.slice(0, 3).every((record) => String(record.command).includes('a***@example.com'))).toBe(true);
    expect(decided.slice(3).every((record) => String(record.command).includes('[REDACTED:email]'))).toBe(true);
  });

  it('holds each repeated held write in a burst on its own and runs none of them without an approval', async () => {
    const { narrow } = await tokens();
    const write = ['SET', key('pub:hold1'), 'v'];
    const replies = await burst(await connect(narrow), [write, write, write, ['GET', key('pub:1')]]);
    expect(replies.slice(0, 3)).toEqual([expect.stringMatching(/^NOPERM|^ERR/), expect.stringMatching(/^NOPERM|^ERR/), expect.stringMatching(/^NOPERM|^ERR/)]);
    expect(replies[3]).toBe('public one');
    expect(await direct.get(key('pub:hold1'))).toBeNull();
  });

  it('answers the first burst after a policy reload by the new policy, not a verdict kept from before it', async () => {
    const { narrow } = await tokens();
    const client = await connect(narrow);
    const read3 = [['GET', key('pub:1')], ['GET', key('pub:1')], ['GET', key('pub:1')]];
    expect(await burst(client, read3)).toEqual(['public one', 'public one', 'public one']);
    const before = policyService.port.stats().version!;
    const config = parse(readFileSync(policyService.configFile, 'utf8')) as { rules: RuleConfig[] };
    config.rules = [{ name: 'late-deny', effect: 'deny', resources: ['cache'], keys: [key('pub:1')] }, ...config.rules];
    writeFileSync(policyService.configFile, stringify(config));
    expect(await policyService.service.reload()).toMatchObject({ ok: true });
    await waitFor(() => policyService.port.stats().version !== before);
    expect(await burst(client, read3)).toEqual(Array.from({ length: 3 }, () => expect.stringMatching(/^NOPERM denied by rule 'late-deny'/)));
  });

  it('masks sensitive values right after runs of non-ASCII letters, marks and invisibles in replies, repeated in a burst', async () => {
    const { narrow } = await tokens();
    const get = ['GET', key('pub:beyond-ascii')];
    const replies = await burst(await connect(narrow), [get, get, get]);
    expect(new Set(replies).size).toBe(1);
    for (const secret of ['4111 1111 1111 1111', 'lovelace@', 'grace@']) expect(String(replies[0])).not.toContain(secret);
  });
});
