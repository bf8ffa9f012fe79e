import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeCommand } from '@sluice/codec-resp';
import type { RuleConfig } from '@sluice/config';
import { compilePiiMasking } from './support/engine-ports.js';
import { sqlState, useWritersFrontDoor } from './support/postgres-proxy-harness.js';
import { useTestPolicyService } from './support/policy-service.js';
import { showResp } from './support/raw-socket.js';
import { startRedisFrontDoor, type RedisFrontDoor } from './support/redis-proxy-harness.js';

/*
 * A deny rule limited to `actions: [read]` keeps values from being read. An agent allowed to write
 * tries to take them out through a write instead: in the write's reply (GETSET, SET … GET, LPOP,
 * INCRBY k 0, UPDATE … RETURNING) or by copying them somewhere it may read (RENAME, INSERT … SELECT).
 * Redis goes through a real policy service whose client caches decisions by command shape, as in
 * production, so a write's shape decided first must not answer for a write that reads.
 */

const RUN = randomBytes(4).toString('hex');
const prefix = `sluice-test:readguard-${RUN}`;
const key = (name: string) => `${prefix}:${name}`;

const redisRules = [
  { name: 'secrets-unread', effect: 'deny', resources: ['cache'], actions: ['read'], keys: [key('secret:*')] },
  { name: 'agents-write', effect: 'allow', subjects: { groups: ['agents'] }, resources: ['cache'], actions: ['read', 'write'], keys: [key('*')] },
] as RuleConfig[];

const policyService = useTestPolicyService('readguard', {
  resources: [{ name: 'cache', type: 'redis', listen: '127.0.0.1:0', target: { host: '127.0.0.1', port: 6379 } }],
  masking: { profiles: { pii: { detectors: ['email'], strategy: 'partial' } } },
  rules: redisRules,
});

let door: RedisFrontDoor | undefined;

beforeAll(async () => {
  door = await startRedisFrontDoor({ keyPrefix: prefix, rules: redisRules, masking: compilePiiMasking('read-guards'), policyPort: () => policyService.port });
});

afterAll(async () => {
  await door?.close();
});

describe('a Redis deny on reading keys, for an agent allowed to write them', () => {
  it('refuses the writes that answer with or copy the guarded value, after the same shapes were decided for writes that only write', async () => {
    await door!.direct.set(key('secret:token'), 'hunter2');
    await door!.direct.rPush(key('secret:queue'), ['job-secret']);
    await door!.direct.set(key('secret:count'), '41');
    const client = await door!.agent(await door!.idp.mint({ sub: 'writer-bot', groups: ['agents'] }));
    const send = async (...args: string[]): Promise<unknown> => {
      client.write(encodeCommand(args));
      return showResp(await client.read());
    };
    // The same shapes first, allowed: a plain SET with an option, a RENAME into the guarded keys.
    expect(await send('SET', key('public:a'), 'v', 'NX')).toBe('OK');
    expect(await send('SET', key('secret:new'), 'v', 'XX')).toBe(null);
    expect(await send('RENAME', key('public:a'), key('secret:moved-in'))).toBe('OK');
    expect(await send('LPUSH', key('secret:queue'), 'more')).toBe(2);

    for (const args of [
      ['SET', key('secret:token'), 'overwritten', 'GET'],
      ['SET', key('secret:token'), 'overwritten', 'get'],
      ['GETSET', key('secret:token'), 'overwritten'],
      ['GETDEL', key('secret:token')],
      ['INCRBY', key('secret:count'), '0'],
      ['RPOP', key('secret:queue')],
      ['RENAME', key('secret:token'), key('public:copy')],
      ['COPY', key('secret:token'), key('public:copy')],
      ['LMOVE', key('secret:queue'), key('public:queue'), 'LEFT', 'LEFT'],
    ]) {
      expect(await send(...args), args.join(' ')).toEqual(expect.stringMatching(/^NOPERM denied by rule 'secrets-unread'/));
    }
    // Nothing ran: the values are where they were.
    expect(await door!.direct.get(key('secret:token'))).toBe('hunter2');
    expect(await door!.direct.get(key('secret:count'))).toBe('41');
    expect(await door!.direct.lRange(key('secret:queue'), 0, -1)).toEqual(['more', 'job-secret']);
    expect(await door!.direct.exists(key('public:copy'))).toBe(0);
  });
});

describe('a Redis deny on reading keys: writes that answer with a stored bit or score', () => {
  it('refuses SETBIT and ZADD … INCR on a guarded key, after a ZADD of the same length that only writes', async () => {
    await door!.direct.set(key('secret:bits'), 'A');
    await door!.direct.zAdd(key('secret:scores'), [{ score: 250000, value: 'alice' }]);
    const client = await door!.agent(await door!.idp.mint({ sub: 'writer-bot', groups: ['agents'] }));
    const send = async (...args: string[]): Promise<unknown> => {
      client.write(encodeCommand(args));
      return showResp(await client.read());
    };
    // Same command and length first, allowed: the policy client keeps that decision by shape.
    expect(await send('ZADD', key('secret:scores'), 'CH', '1', 'bob')).toBe(1);
    expect(await send('SETBIT', key('public:bits'), '1', '1')).toBe(0);
    for (const args of [
      // SETBIT answers with the bit it replaced: set each bit, read the old one, set it back.
      ['SETBIT', key('secret:bits'), '1', '0'],
      // ZADD … INCR 0 answers with the member's score, as ZSCORE would.
      ['ZADD', key('secret:scores'), 'INCR', '0', 'alice'],
      ['zadd', key('secret:scores'), 'xx', 'incr', '0', 'alice'],
    ]) {
      expect(await send(...args), args.join(' ')).toEqual(expect.stringMatching(/^NOPERM denied by rule 'secrets-unread'/));
    }
    expect(await door!.direct.get(key('secret:bits'))).toBe('A');
    expect(await door!.direct.zScore(key('secret:scores'), 'alice')).toBe(250000);
  });
});

const RESOURCE = 'readguard-db';
const frontDoor = useWritersFrontDoor({
  prefix: 'sluice_readguard',
  resource: RESOURCE,
  guards: [
    { name: 'salaries-unread', actions: ['read'], tables: ['public.salaries'] },
    { name: 'ledger-untouchable', tables: ['books.ledger'] },
  ],
  setupSql: () => [
    'create table salaries (id int primary key, amount int)',
    'insert into salaries values (1, 250000)',
    'create table sink (amount int)',
    'create table accounts (id int primary key)',
    'insert into accounts values (1)',
    'create schema books',
    'create table books.ledger (account int references public.accounts, amount int)',
    'insert into books.ledger values (1, 100)',
  ],
});

describe('a PostgreSQL deny on reading a table, for an agent allowed to write it', () => {
  it('refuses the writes that return or copy its rows, and lets writes that only write through', async () => {
    const writer = await frontDoor.connect(['writers']);
    expect(await sqlState(writer.query('select amount from salaries'))).toBe('42501');
    for (const text of [
      'update salaries set amount = amount where id = 1 returning amount',
      'delete from salaries where id = 1 returning *',
      'insert into sink select amount from salaries',
      'create table stolen as select * from salaries',
      'with s as (select amount from salaries) insert into sink select amount from s',
    ]) {
      expect(await sqlState(writer.query(text)), text).toBe('42501');
    }
    await writer.query('update salaries set amount = 260000 where id = 1');
    await writer.query('insert into salaries values (2, 1)');
    expect((await frontDoor.direct.query('select count(*)::int as n from sink')).rows[0].n).toBe(0);
    expect((await frontDoor.direct.query('select amount from salaries where id = 1')).rows[0].amount).toBe(260000);
  });
});

describe('a PostgreSQL deny on a table, for an agent allowed to change the schema', () => {
  it('refuses the CASCADE that would reach the table without naming it: TRUNCATE, DROP TABLE, DROP SCHEMA', async () => {
    const writer = await frontDoor.connect(['writers']);
    for (const text of ['truncate accounts cascade', 'drop table accounts cascade', 'drop schema books cascade', 'alter table accounts drop column id cascade']) {
      expect(await sqlState(writer.query(text)), text).toBe('42501');
    }
    expect((await frontDoor.direct.query('select count(*)::int as n from books.ledger')).rows[0].n).toBe(1);
    // Without CASCADE PostgreSQL refuses to reach the table itself.
    expect(await sqlState(writer.query('truncate accounts'))).toBe('0A000');
  });
});
