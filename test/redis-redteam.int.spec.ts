import { randomUUID } from 'node:crypto';
import { createClient, type RedisClientType } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeCommand } from '@sluice/codec-resp';
import type { RuleConfig } from '@sluice/config';
import { compilePiiMasking, expectNoClearSsn as noClearSsnIn, UNDETECTABLE_SSN as SSN, type RecordedEvent } from './support/engine-ports.js';
import { showResp as show } from './support/raw-socket.js';
import { redTeamKeyRules, seedRedTeamKeys, startRedisFrontDoor, type RedisFrontDoor } from './support/redis-proxy-harness.js';

/**
 * The second red team on the Redis front door (after issue #10's fixes), as an agent with a valid
 * read-only token and a masking profile with a column rule: raw RESP on a socket against the real
 * Redis, the real policy and masking engines. Each probe is refused or masked.
 */
const prefix = `sluice-redteam:${randomUUID().slice(0, 8)}`;
const key = (name: string) => `${prefix}:${name}`;
const rules = redTeamKeyRules(key, [{ name: 'no-geheim', effect: 'deny', keys: [key('geheim-ü:*')] }] as RuleConfig[]);

const masking = compilePiiMasking('redis-redteam');

/** Every audit event the adapter recorded, in order. */
const recorded: RecordedEvent[] = [];

describe('Redis front door against a second red team', () => {
  let door: RedisFrontDoor;
  let direct: RedisClientType;
  let port: number;
  let token: string;

  const agent = async (login = token) => door.agent(login);

  beforeAll(async () => {
    door = await startRedisFrontDoor({ keyPrefix: prefix, rules, masking, recorded });
    ({ direct, port } = door);
    token = await door.idp.mint({ sub: 'support-bot', groups: ['support-agents'] });
    await seedRedTeamKeys(direct, key);
  });

  afterAll(async () => {
    await door.close();
  });

  describe('probes on which keys a command touches', () => {
    it('matches a deny rule naming a non-ASCII key against the UTF-8 key the agent sends (GET, KEYS, SORT GET)', async () => {
      await direct.set(key('geheim-ü:1'), 'verboten');
      const client = await agent();
      client.send('GET', key('geheim-ü:1'));
      expect(show(await client.read())).toMatch(/^NOPERM denied by rule 'no-geheim'/);
      client.send('KEYS', key('geheim-ü:*'));
      expect(show(await client.read())).toMatch(/^NOPERM denied by rule 'no-geheim'/);
      client.send('SORT', key('ids'), 'BY', 'nosort', 'GET', key('geheim-ü:*'));
      expect(show(await client.read())).toMatch(/^NOPERM denied by rule 'no-geheim'/);
      client.send('GET', key('pub:1'));
      expect(show(await client.read())).toBe('hello world');
    });
  });

  describe('probes on how values are masked', () => {
    it('applies column rules to the members of a JSON value (GET, a list element, a hash field holding JSON)', async () => {
      const document = JSON.stringify({ name: 'Doc', ssn: SSN, nested: { ssn: { raw: SSN } }, list: [{ SSN }] });
      await direct.set(key('doc:1'), document);
      await direct.rPush(key('docs'), [document]);
      await direct.hSet(key('doc-hash'), { profile: document });
      const client = await agent();
      client.send('GET', key('doc:1'));
      const value = show(await client.read()) as string;
      noClearSsnIn(value);
      expect(JSON.parse(value)).toMatchObject({ name: 'Doc', ssn: '[REDACTED]' });
      client.send('LRANGE', key('docs'), '0', '-1');
      noClearSsnIn(show(await client.read()));
      client.send('HGET', key('doc-hash'), 'profile');
      noClearSsnIn(show(await client.read()));
    });

    it('masks values a plain string names like a column rule (ssn=…, <ssn>…</ssn>)', async () => {
      await direct.set(key('log:1'), `GET /u/1 ssn=${SSN} name=Ann`);
      await direct.set(key('xml:1'), `<u><ssn>${SSN}</ssn><name>Ann</name></u>`);
      const client = await agent();
      client.send('MGET', key('log:1'), key('xml:1'));
      const values = show(await client.read());
      noClearSsnIn(values);
      expect(JSON.stringify(values)).toContain('name=Ann');
    });
  });

  describe('probes that change how replies come back', () => {
    it('keeps RESP2 when the target refuses a HELLO 3 (bad SETNAME): HGETALL and HRANDFIELD still mask the ssn field', async () => {
      const client = await agent();
      client.send('HELLO', '3', 'SETNAME', 'has space');
      expect(show(await client.read())).toMatch(/^ERR /);
      client.send('HGETALL', key('user:1'));
      const all = await client.read();
      noClearSsnIn(show(all));
      expect(show(all)).toContain('User 1');
      client.send('HRANDFIELD', key('user:1'), '-4', 'WITHVALUES');
      noClearSsnIn(show(await client.read()));
      client.send('PING');
      expect(show(await client.read())).toBe('PONG');
    });

    it('answers a RESP3 SUBSCRIBE without a channel itself; the replies after it stay paired and masked', async () => {
      const client = await agent();
      client.send('HELLO', '3');
      expect((await client.read()).type).toBe('map');
      client.write(Buffer.concat([encodeCommand(['SUBSCRIBE']), encodeCommand(['HGET', key('user:1'), 'ssn']), encodeCommand(['ECHO', 'after'])]));
      expect(show(await client.read())).toMatch(/^ERR wrong number of arguments/);
      const ssn = await client.read();
      noClearSsnIn(show(ssn));
      expect(ssn.type).not.toBe('error');
      expect(show(await client.read())).toBe('after');
    });

    it('pairs a RESP3 subscribe with all its confirmations (duplicates too) before the next reply', async () => {
      const client = await agent();
      const channel = key('dup');
      client.send('HELLO', '3');
      expect((await client.read()).type).toBe('map');
      client.write(Buffer.concat([encodeCommand(['SUBSCRIBE', channel, channel]), encodeCommand(['HGET', key('user:1'), 'ssn']), encodeCommand(['ECHO', 'after'])]));
      expect(show(await client.read())).toEqual(['subscribe', channel, 1]);
      expect(show(await client.read())).toEqual(['subscribe', channel, 1]);
      expect(show(await client.read())).toBe('[REDACTED]');
      expect(show(await client.read())).toBe('after');
      client.send('UNSUBSCRIBE');
      expect(show(await client.read())).toEqual(['unsubscribe', channel, 0]);
      client.send('HELLO', '2');
      const helloReply = show(await client.read());
      expect(Array.isArray(helloReply), JSON.stringify(helloReply)).toBe(true);
      client.send('HGETALL', key('user:1'));
      noClearSsnIn(show(await client.read()));
    });

    it('serves a real RESP3 client (node-redis 5) that subscribes, gets messages and keeps reading masked data', async () => {
      const client = createClient({ socket: { host: '127.0.0.1', port }, username: 'agent', password: token, RESP: 3 });
      await client.connect();
      try {
        const channel = key('resp3-news');
        const messages: string[] = [];
        await client.subscribe(channel, (message) => void messages.push(message));
        await direct.publish(channel, 'first');
        const deadline = Date.now() + 5_000;
        while (messages.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
        expect(messages).toEqual(['first']);
        const user = await client.hGetAll(key('user:1'));
        noClearSsnIn(user);
        expect(JSON.stringify(user)).toContain('User 1');
        await client.unsubscribe(channel);
        expect(await client.get(key('pub:1'))).toBe('hello world');
      } finally {
        client.destroy();
      }
    });

    it('leaves RESP2 subscriber mode when the last plain channel is unsubscribed (subscribe is not a shard kind)', async () => {
      const client = await agent();
      const channel = key('plain');
      client.send('SUBSCRIBE', channel);
      expect(show(await client.read())).toEqual(['subscribe', channel, 1]);
      client.send('UNSUBSCRIBE', channel);
      expect(show(await client.read())).toEqual(['unsubscribe', channel, 0]);
      client.send('GET', key('pub:1'));
      expect(show(await client.read())).toBe('hello world');
    });

    it('aborts EXEC after a SUBSCRIBE without a channel inside MULTI, as Redis does', async () => {
      const client = await agent();
      client.write(Buffer.concat([encodeCommand(['MULTI']), encodeCommand(['SUBSCRIBE']), encodeCommand(['GET', key('pub:1')]), encodeCommand(['EXEC'])]));
      expect(show(await client.read())).toBe('OK');
      expect(show(await client.read())).toMatch(/^ERR wrong number of arguments/);
      expect(show(await client.read())).toBe('QUEUED');
      expect(show(await client.read())).toMatch(/^EXECABORT/);
      client.send('GET', key('pub:1'));
      expect(show(await client.read())).toBe('hello world');
    });

    it('records every pushed message the agent receives, masked, even when masking changed nothing', async () => {
      const client = await agent();
      const channel = key('news');
      client.send('SUBSCRIBE', channel);
      expect(show(await client.read())).toEqual(['subscribe', channel, 1]);
      const before = recorded.length;
      await direct.publish(channel, 'plain news of the day');
      await direct.publish(channel, JSON.stringify({ ssn: SSN }));
      expect(show(await client.read())).toEqual(['message', channel, 'plain news of the day']);
      noClearSsnIn(show(await client.read()));
      const results = recorded.slice(before).filter((event) => event.type === 'result.returned' && event.data.commandId === 'push');
      expect(results).toHaveLength(2);
      expect(JSON.stringify(results[0]!.data.rows)).toContain('plain news of the day');
      expect(JSON.stringify(results)).not.toContain(SSN);
    });

    it('records the commands Sluice refuses whatever the policy says (CLIENT REPLY OFF, SYNC, RESET)', async () => {
      const client = await agent();
      const before = recorded.length;
      for (const command of [['CLIENT', 'REPLY', 'OFF'], ['SYNC'], ['RESET']]) {
        client.send(...command);
        expect(show(await client.read())).toMatch(/^NOPERM /);
      }
      const decided = recorded.slice(before).filter((event) => event.type === 'command.decided');
      expect(decided.map((event) => [event.data.command, event.data.decision])).toEqual([
        ['CLIENT REPLY OFF', 'deny'],
        ['SYNC', 'deny'],
        ['RESET', 'deny'],
      ]);
      expect(recorded.slice(before).filter((event) => event.type === 'command.completed')).toHaveLength(3);
    });

    it('decides and records HELLO after login (SETNAME renames the connection on the target)', async () => {
      const client = await agent();
      const before = recorded.length;
      client.send('HELLO', '2', 'SETNAME', 'renamed-by-agent');
      expect(Array.isArray(show(await client.read()))).toBe(true);
      client.send('CLIENT', 'GETNAME');
      expect(show(await client.read())).toBe('renamed-by-agent');
      const decided = recorded.slice(before).filter((event) => event.type === 'command.decided').map((event) => event.data.command);
      expect(decided).toEqual(['HELLO 2 SETNAME renamed-by-agent', 'CLIENT GETNAME']);
      const completed = recorded.slice(before).filter((event) => event.type === 'command.completed');
      expect(completed).toHaveLength(2);
    });

    it.each(['SUBSCRIBE', 'PSUBSCRIBE', 'SSUBSCRIBE'])('answers a RESP2 %s without a channel itself and stays out of subscriber mode', async (command) => {
      const client = await agent();
      client.send(command);
      expect(show(await client.read())).toMatch(/^ERR wrong number of arguments/);
      client.send('GET', key('pub:1'));
      expect(show(await client.read())).toBe('hello world');
    });

    it('refuses HELLO 2 once a RESP3 connection has subscribed, so pushed messages never pose as replies', async () => {
      const client = await agent();
      const channel = key('chan');
      client.send('HELLO', '3');
      expect((await client.read()).type).toBe('map');
      client.send('SUBSCRIBE', channel);
      expect((await client.read()).type).toBe('push');
      client.send('HELLO', '2');
      expect(show(await client.read())).toMatch(/^(ERR|NOPERM) /);
      await direct.publish(channel, 'a message');
      const pushed = await client.read();
      expect(pushed.type).toBe('push');
      client.send('ECHO', 'mine');
      expect(show(await client.read())).toBe('mine');
    });
  });
});
