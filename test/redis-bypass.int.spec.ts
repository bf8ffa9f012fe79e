import { randomUUID } from 'node:crypto';
import { connect, createServer, type AddressInfo } from 'node:net';
import type { RedisClientType } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeCommand } from '@sluice/codec-resp';
import { classifyRedis } from '@sluice/policy-engine';
import { createRedisAdapter } from '../services/proxy/src/redis/adapter.js';
import { compilePiiMasking, expectNoClearSsn as noClearSsnIn, UNDETECTABLE_SSN as SSN } from './support/engine-ports.js';
import { rawRespSocket as rawSocket, showResp as show } from './support/raw-socket.js';
import { redTeamKeyRules, seedRedTeamKeys, startRedisFrontDoor, type RedisFrontDoor } from './support/redis-proxy-harness.js';

/**
 * Red-team probes of the Redis front door (issue #10), through a real client against the real
 * Redis, with the real policy engine and masking engine: every probe is refused or masked.
 */
const prefix = `sluice-bypass:${randomUUID().slice(0, 8)}`;
const key = (name: string) => `${prefix}:${name}`;
const rules = redTeamKeyRules(key);

const masking = compilePiiMasking('redis-bypass');

describe('Redis front door against a red team', () => {
  let door: RedisFrontDoor;
  let direct: RedisClientType;
  let token: string;
  let narrowToken: string;

  const agent = async (login = token) => door.agent(login);

  beforeAll(async () => {
    door = await startRedisFrontDoor({ keyPrefix: prefix, rules, masking });
    ({ direct } = door);
    token = await door.idp.mint({ sub: 'support-bot', groups: ['support-agents'] });
    narrowToken = await door.idp.mint({ sub: 'narrow-bot', groups: ['narrow-agents'] });
    await seedRedTeamKeys(direct, key);
    await direct.xAdd(key('events'), '*', { kind: 'signup', ssn: SSN });
  });

  afterAll(async () => {
    await door.close();
  });

  describe('finding 1: inline commands are read as Redis reads them', () => {
    it('refuses a denied key hidden by a quote inside an inline argument', async () => {
      const client = await agent();
      client.write(`GET ${key('s"ecret:1"')}\r\n`);
      expect(show(await client.read())).toMatch(/^NOPERM denied by rule 'no-secrets'/);
      client.write(`GET ${key("se'cret:1'")}\r\n`);
      expect(show(await client.read())).toMatch(/^NOPERM denied by rule 'no-secrets'/);
      client.write(`GET ${key('pub:1')}\r\n`);
      expect(show(await client.read())).toBe('hello world');
    });

    it('matches Redis on a few hundred seeded random inline lines (EVAL returns the arguments Redis parsed)', async () => {
      let seed = 0x5eed10;
      const random = () => {
        seed = (seed + 0x6d2b79f5) | 0;
        let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
        t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
      };
      const alphabet = ['a', 'b', 'x', 'f', '4', 'n', '"', '"', "'", "'", '\\', '\\', ' ', ' ', '\t', '\v', '\f', '\r', '\x80', '\xff'];
      const started = Date.now();
      let redis = await rawSocket(6379);
      let agreedRefusals = 0;
      for (let round = 0; round < 300; round++) {
        const length = Math.floor(random() * 14);
        let tail = '';
        for (let i = 0; i < length; i++) tail += alphabet[Math.floor(random() * alphabet.length)];
        const line = Buffer.from(`EVAL "return ARGV" 0 ${tail}\r\n`, 'latin1');
        let ours: string[] | undefined;
        try {
          ours = decodeCommand(line).map((arg) => arg.toString('latin1'));
        } catch {
          ours = undefined;
        }
        redis.write(line);
        const reply = show(await redis.read());
        if (ours === undefined) {
          expect(reply, JSON.stringify(tail)).toMatch(/Protocol error: unbalanced quotes/);
          agreedRefusals++;
          redis.socket.destroy();
          redis = await rawSocket(6379);
        } else {
          expect(reply, JSON.stringify(tail)).toEqual(ours.slice(3));
        }
      }
      redis.socket.destroy();
      expect(agreedRefusals).toBeGreaterThan(10);
      expect(Date.now() - started).toBeLessThan(20_000);
    });

    it('forwards an inline command re-encoded as a RESP array, never as the raw line', async () => {
      // A relay in front of the real Redis records the bytes the proxy sends it.
      const upstreamBytes: Buffer[] = [];
      const relay = createServer((inbound) => {
        const outbound = connect(6379, '127.0.0.1');
        inbound.on('data', (chunk: Buffer) => upstreamBytes.push(chunk));
        inbound.pipe(outbound).pipe(inbound);
        inbound.on('error', () => outbound.destroy());
        outbound.on('error', () => inbound.destroy());
      });
      await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
      const relayed = createRedisAdapter({ ...door.resource, target: { ...door.resource.target, port: (relay.address() as AddressInfo).port } }, { secretsDir: process.cwd() });
      const front = createServer((socket) => void relayed.handleConnection(socket, door.createPorts()));
      await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
      try {
        const client = await rawSocket((front.address() as AddressInfo).port);
        door.sockets.push(client.socket);
        client.send('AUTH', token);
        expect(show(await client.read())).toBe('OK');
        client.write('ECHO a"b c"\r\n');
        expect(show(await client.read())).toBe('ab c');
        const sent = Buffer.concat(upstreamBytes).toString('latin1');
        expect(sent).toContain('*2\r\n$4\r\nECHO\r\n$4\r\nab c\r\n');
        expect(sent).not.toContain('ECHO a"');
        client.socket.destroy();
      } finally {
        front.close();
        relay.close();
      }
    });

    it('refuses an inline line with a NUL byte (Redis would stop reading at it)', async () => {
      const client = await agent();
      client.write(Buffer.from(`GET ${key('pub:1')}\0 ${key('secret:1')}\r\n`, 'latin1'));
      expect(show(await client.read())).toMatch(/Protocol error/);
    });
  });

  describe('finding 2: keys outside the key-spec positions', () => {
    it('decides SORT BY/GET patterns on every key they can match', async () => {
      const client = await agent();
      client.send('SORT', key('ids'), 'BY', 'nosort', 'GET', key('secret:*'));
      expect(show(await client.read())).toMatch(/^NOPERM denied by rule 'no-secrets'/);
      client.send('SORT_RO', key('ids'), 'BY', key('secret:*'), 'ALPHA');
      expect(show(await client.read())).toMatch(/^NOPERM denied by rule 'no-secrets'/);
      // A pattern whose fixed start is shorter than the deny glob's can still reach it.
      client.send('SORT', key('ids'), 'BY', 'nosort', 'GET', `${prefix}:s*`);
      expect(show(await client.read())).toMatch(/^NOPERM denied by rule 'no-secrets'/);
      client.send('KEYS', `${prefix}:*`);
      expect(show(await client.read())).toMatch(/^NOPERM denied by rule 'no-secrets'/);
      client.send('SORT', key('ids'), 'BY', 'nosort', 'GET', '#');
      expect(show(await client.read())).toEqual(['1', '2']);
    });

    it.each([
      'GET k1', 'MGET k1 k2', 'MSET k1 v k2 v', 'LCS k1 k2', 'RENAME k1 k2', 'COPY k1 k2', 'BLPOP k1 k2 0', 'LMPOP 2 k1 k2 LEFT',
      'BLMPOP 0 2 k1 k2 LEFT', 'SINTERCARD 2 k1 k2', 'ZDIFF 2 k1 k2', 'ZUNIONSTORE d 2 k1 k2', 'ZRANGESTORE d k1 0 1', 'BITOP AND d k1 k2',
      'PFCOUNT k1 k2', 'XREAD COUNT 1 STREAMS k1 k2 0 0', 'XREADGROUP GROUP streams c STREAMS k1 >', 'XREADGROUP GROUP g streams COUNT 1 STREAMS k1 k2 > >',
      'GEOSEARCHSTORE d k1 FROMLONLAT 0 0 BYRADIUS 1 km', 'OBJECT ENCODING k1', 'MEMORY USAGE k1', 'XINFO STREAM k1', 'SORT k1 LIMIT 0 1 STORE d',
      'SORT k1 LIMIT get store STORE d', 'GEORADIUS k1 0 0 1 km STORE d', 'SMOVE k1 k2 m', 'LMOVE k1 k2 LEFT LEFT', 'EXISTS k1 k2', 'DEL k1 k2',
      'SDIFFSTORE d k1 k2', 'ZINTERCARD 2 k1 k2', 'BZMPOP 0 2 k1 k2 MIN', 'ZMPOP 2 k1 k2 MIN', 'GETEX k1', 'XGROUP CREATE k1 g $', 'BLMOVE k1 k2 LEFT LEFT 0',
      'RPOPLPUSH k1 k2', 'HGETALL k1', 'GEORADIUSBYMEMBER_RO k1 m 1 km', 'ZINTERSTORE d 2 k1 k2 WEIGHTS 1 2', 'WATCH k1 k2', 'TOUCH k1 k2',
    ])('takes the keys Redis itself reports (COMMAND GETKEYS) for %s', async (line) => {
      const args = line.split(' ');
      const redisKeys = await direct.sendCommand<string[]>(['COMMAND', 'GETKEYS', ...args]);
      expect([...classifyRedis(args).keys].sort()).toEqual([...redisKeys].sort());
    });

    it('lets a pattern through an allow-list only when the list covers every key it can match', async () => {
      const client = await agent(narrowToken);
      client.send('SORT', key('ids'), 'BY', 'nosort', 'GET', key('user:*->name'));
      expect(show(await client.read())).toMatch(/^NOPERM denied: no rule allows it/);
      client.send('KEYS', '*');
      expect(show(await client.read())).toMatch(/^NOPERM denied/);
      client.send('SCAN', '0');
      expect(show(await client.read())).toMatch(/^NOPERM denied/);
      client.send('RANDOMKEY');
      expect(show(await client.read())).toMatch(/^NOPERM denied/);
      client.send('SCAN', '0', 'MATCH', key('pub:*'), 'MATCH', '*');
      expect(show(await client.read())).toMatch(/^NOPERM denied/);
      client.send('KEYS', key('pub:*'));
      expect(show(await client.read())).toEqual([key('pub:1')]);
    });
  });

  describe('finding 3: every reply that can carry a covered field is masked', () => {
    const noClearSsn = (reply: unknown) => expect(JSON.stringify(reply)).not.toContain(SSN);

    it.each([2, 3] as const)('HVALS, HSCAN, HRANDFIELD WITHVALUES, SORT GET ->ssn, XRANGE/XREAD entries and HGET in MULTI/EXEC (RESP%i)', async (protocol) => {
      const client = await agent();
      if (protocol === 3) {
        client.send('HELLO', '3');
        await client.read();
      }
      client.send('HVALS', key('user:1'));
      const hvals = show(await client.read());
      noClearSsn(hvals);
      expect(JSON.stringify(hvals)).toContain('[REDACTED]');
      client.send('HSCAN', key('user:1'), '0');
      const hscan = show(await client.read());
      noClearSsn(hscan);
      expect(JSON.stringify(hscan)).toContain('User 1');
      // A negative count may draw the same field every time, so only a positive count larger than
      // the hash is sure to return the name beside the masked SSN.
      client.send('HRANDFIELD', key('user:1'), '-6', 'WITHVALUES');
      noClearSsn(show(await client.read()));
      client.send('HRANDFIELD', key('user:1'), '100', 'WITHVALUES');
      const random = show(await client.read());
      noClearSsn(random);
      expect(JSON.stringify(random)).toContain('User 1');
      expect(JSON.stringify(random)).toContain('[REDACTED]');
      client.send('SORT', key('ids'), 'BY', 'nosort', 'GET', '#', 'GET', key('user:*->ssn'), 'GET', key('user:*->name'));
      const sorted = show(await client.read());
      expect(sorted).toEqual(['1', '[REDACTED]', 'User 1', '2', '[REDACTED]', 'User 2']);
      client.send('XRANGE', key('events'), '-', '+');
      const range = show(await client.read());
      noClearSsn(range);
      expect(JSON.stringify(range)).toContain('signup');
      client.send('XREAD', 'COUNT', '5', 'STREAMS', key('events'), '0');
      const read = show(await client.read());
      noClearSsn(read);
      expect(JSON.stringify(read)).toContain('signup');
      client.send('MULTI');
      client.send('HGET', key('user:1'), 'ssn');
      client.send('HGET', key('user:1'), 'name');
      client.send('EXEC');
      expect(show(await client.read())).toBe('OK');
      expect(show(await client.read())).toBe('QUEUED');
      expect(show(await client.read())).toBe('QUEUED');
      expect(show(await client.read())).toEqual(['[REDACTED]', 'User 1']);
      // UNWATCH is queued and a nested MULTI is not: the EXEC elements stay paired with their commands.
      client.send('MULTI');
      client.send('HGET', key('user:1'), 'name');
      client.send('UNWATCH');
      client.send('MULTI');
      client.send('HGET', key('user:1'), 'name');
      client.send('EXEC');
      for (let i = 0; i < 5; i++) await client.read();
      expect(show(await client.read())).toEqual(['User 1', 'OK', 'User 1']);
    });
  });

  describe('finding 4: the reply stream stays paired with the commands', () => {
    it('refuses CLIENT REPLY OFF and SKIP; the next replies answer their own commands', async () => {
      const client = await agent();
      client.send('CLIENT', 'REPLY', 'SKIP');
      client.send('HGET', key('user:1'), 'ssn');
      client.send('PING');
      client.send('CLIENT', 'REPLY', 'OFF');
      client.send('ECHO', 'still paired');
      expect(show(await client.read())).toMatch(/^NOPERM CLIENT REPLY/);
      expect(show(await client.read())).toBe('[REDACTED]');
      expect(show(await client.read())).toBe('PONG');
      expect(show(await client.read())).toMatch(/^NOPERM CLIENT REPLY/);
      expect(show(await client.read())).toBe('still paired');
    });

    it('keeps replies paired around subscriber mode (RESP2)', async () => {
      const client = await agent();
      // Not subscribed: Redis would answer one confirmation per channel, which no command waits for.
      client.send('UNSUBSCRIBE', 'a', 'b');
      client.send('HGET', key('user:1'), 'ssn');
      expect(show(await client.read())).toEqual(['unsubscribe', 'a', 0]);
      expect(show(await client.read())).toEqual(['unsubscribe', 'b', 0]);
      expect(show(await client.read())).toBe('[REDACTED]');
      // A subscription that fails upstream, then a hash read: the read is refused, never unmasked.
      client.send('SUBSCRIBE');
      client.send('HGET', key('user:1'), 'ssn');
      const replies = [show(await client.read()), show(await client.read())];
      expect(JSON.stringify(replies)).not.toContain(SSN);
    });

    it('keeps subscriber mode while shard channels remain, and leaves it with the last one', async () => {
      const client = await agent();
      client.send('SUBSCRIBE', key('ch'));
      client.send('SSUBSCRIBE', key('sh'));
      client.send('UNSUBSCRIBE', key('ch'));
      expect(show(await client.read())).toEqual(['subscribe', key('ch'), 1]);
      expect(show(await client.read())).toEqual(['ssubscribe', key('sh'), 1]);
      expect(show(await client.read())).toEqual(['unsubscribe', key('ch'), 0]);
      client.send('HGET', key('user:1'), 'ssn');
      expect(show(await client.read())).toMatch(/only \(P\|S\)SUBSCRIBE/);
      client.send('SUNSUBSCRIBE', key('sh'));
      expect(show(await client.read())).toEqual(['sunsubscribe', key('sh'), 0]);
      client.send('HGET', key('user:1'), 'ssn');
      expect(show(await client.read())).toBe('[REDACTED]');
    });

    it('waits for HELLO 3 before sending what follows, so replies are read in the right protocol', async () => {
      const client = await agent();
      client.send('HELLO', '3');
      client.send('HGETALL', key('user:1'));
      client.send('SUBSCRIBE', key('ch3'));
      client.send('HGET', key('user:1'), 'ssn');
      expect((await client.read()).type).toBe('map');
      const all = show(await client.read());
      noClearSsnIn(all);
      const rest = [show(await client.read()), show(await client.read())];
      noClearSsnIn(rest);
      expect(rest).toContainEqual('[REDACTED]');
    });

    it('refuses replication commands and HELLO inside MULTI', async () => {
      const client = await agent();
      client.send('SYNC');
      expect(show(await client.read())).toMatch(/^NOPERM SYNC/);
      client.send('MULTI');
      client.send('HELLO', '3');
      client.send('EXEC');
      expect(show(await client.read())).toBe('OK');
      expect(show(await client.read())).toMatch(/not allowed inside a transaction/);
      expect(show(await client.read())).toMatch(/^EXECABORT/);
      client.send('PING');
      expect(show(await client.read())).toBe('PONG');
    });
  });

  describe('finding 5: values that leave Redis in another form', () => {
    it.each([
      ['DUMP', key('pub:1')],
      ['GETRANGE', key('pub:1'), '0', '3'],
      ['SUBSTR', key('pub:1'), '0', '3'],
      ['LCS', key('pub:1'), key('pub:1')],
      ['GETBIT', key('pub:1'), '3'],
      ['BITFIELD_RO', key('pub:1'), 'GET', 'u8', '0'],
      ['BITPOS', key('pub:1'), '1'],
    ])('refuses %s under a masking profile', async (...command) => {
      const client = await agent();
      client.send(...command);
      expect(show(await client.read())).toMatch(/^NOPERM .*cannot cover/);
    });

    it('decides OBJECT, DEBUG and SLOWLOG on what they reveal (OBJECT: keys at position 2; DEBUG, SLOWLOG GET: admin)', async () => {
      const client = await agent();
      client.send('OBJECT', 'ENCODING', key('secret:1'));
      expect(show(await client.read())).toMatch(/^NOPERM denied by rule 'no-secrets'/);
      client.send('DEBUG', 'OBJECT', key('pub:1'));
      expect(show(await client.read())).toMatch(/^NOPERM/);
      // SLOWLOG GET shows other clients' arguments: admin, like MONITOR.
      client.send('SLOWLOG', 'GET');
      expect(show(await client.read())).toMatch(/^NOPERM/);
    });
  });
});
