import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { connect, type Server, type Socket } from 'node:net';
import { promisify } from 'node:util';
import { createClient, type RedisClientType } from 'redis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { decodeReply, encodeCommand, RespFramer, type RespValue } from '@sluice/codec-resp';
import type { RedisResourceConfig } from '@sluice/config';
import { DependencyUnavailableError, SluiceErrorCode, type Decision, type SluiceEventKind } from '@sluice/contracts';
import { createTokenVerifier } from '@sluice/identity';
import type { ApprovalOutcome, ApprovalRequest, GovernancePorts } from '../services/proxy/src/ports.js';
import { createRedisAdapter } from '../services/proxy/src/redis/adapter.js';
import { createStubMasker, deferred, stubDecision, stubMaskText } from './support/stub-ports.js';
import { listenOnLoopback } from './support/engine-ports.js';
import { startTestIssuer, type TestIssuer } from './support/oidc.js';
import { loopbackRedisResource } from './support/redis-proxy-harness.js';

const run = promisify(execFile);
const prefix = `sluice-test:${randomUUID().slice(0, 8)}`;
const key = (name: string) => `${prefix}:${name}`;

// ---- test ports ---------------------------------------------------------------------------------

const masker = createStubMasker({ columnRule: /ssn/i });

const READS = new Set(['GET', 'MGET', 'HGET', 'HGETALL', 'HMGET', 'EXISTS', 'PING', 'ECHO', 'SUBSCRIBE', 'UNSUBSCRIBE', 'MULTI', 'EXEC', 'DISCARD']);
const WRITES = new Set(['SET', 'DEL', 'HSET', 'PUBLISH', 'INCR']);
const ADMIN = new Set(['FLUSHALL', 'FLUSHDB', 'CONFIG', 'SHUTDOWN', 'DEBUG', 'MONITOR']);

const decision = stubDecision;

interface Recorded {
  sessionId: string;
  kind: SluiceEventKind;
  data: Record<string, unknown>;
}

const createPorts = (idp: TestIssuer) => {
  const events: Recorded[] = [];
  const verifier = createTokenVerifier([{ issuer: idp.issuer, audience: idp.audience, groupsClaim: 'groups', clockTolerance: 5_000 }]);
  const state = { auditHealthy: true, policyDown: false, maskingDown: false, cache: false, decideCalls: [] as string[] };
  const approvalRequests: (ApprovalRequest & { id: string })[] = [];
  const outcomes = new Map<string, ReturnType<typeof deferred<ApprovalOutcome>>>();
  const consumed = new Set<string>();
  const outcome = (id: string) => {
    if (!outcomes.has(id)) outcomes.set(id, deferred<ApprovalOutcome>());
    return outcomes.get(id)!;
  };
  /** The stub policy's answer; `decide` gives it later, the cache (when `state.cache`) at once. */
  const decideNow = (subject: { groups: readonly string[] }, command: { kind: string; args: readonly (string | Buffer)[] }): Decision => {
    if (command.kind !== 'redis') throw new Error('unexpected command kind');
    const name = command.args[0]!.toString().toUpperCase();
    const target = command.args[1]?.toString() ?? '';
    if (ADMIN.has(name)) return decision('deny', 'never-admin', { action: 'admin', risk: 'critical' });
    if (name === 'ACL' && target.toUpperCase() === 'WHOAMI') return decision('allow', 'support-read');
    if (name === 'SET' && target.includes(':held')) return decision('approve', 'needs-human', { action: 'write', risk: 'high' });
    if (READS.has(name)) return decision('allow', 'support-read');
    if (WRITES.has(name) && subject.groups.includes('writers')) return decision('allow', 'ops-change', { action: 'write' });
    return decision('deny', 'support-read-only', { action: 'write', risk: 'medium' });
  };
  const ports: GovernancePorts = {
    identity: { verify: (token) => verifier.verify(token) },
    policy: {
      describeSession: async () => ({ mayConnect: true, readOnly: false }),
      decide: async (subject, _resource, command) => {
        if (command.kind !== 'redis') throw new Error('unexpected command kind');
        const name = command.args[0]!.toString().toUpperCase();
        const target = command.args[1]?.toString() ?? '';
        state.decideCalls.push(`${name} ${target}`);
        if (state.policyDown) throw new DependencyUnavailableError(SluiceErrorCode.PolicyUnavailable, 'policy service down');
        // Some decisions resolve later than the ones after them: replies must still keep their order.
        if (target.includes(':slow')) await new Promise((resolve) => setTimeout(resolve, 20));
        return decideNow(subject, command);
      },
      // A `:slow` command is never in the cache: a burst mixes commands decided at once with asked ones.
      cachedDecision: (subject, _resource, command) =>
        state.cache && !state.policyDown && command.kind === 'redis' && !(command.args[1]?.toString() ?? '').includes(':slow') ? decideNow(subject, command) : undefined,
    },
    masking: {
      masker: (profile) => {
        if (state.maskingDown) throw new DependencyUnavailableError(SluiceErrorCode.MaskingUnavailable, 'masking profiles not current');
        return profile === 'pii' ? masker : undefined;
      },
      maskCommandText: (text) => stubMaskText(text, {}),
    },
    approvals: {
      request: async (request) => {
        const id = `ap-${approvalRequests.length + 1}`;
        approvalRequests.push({ ...request, id });
        return { approvalId: id, expiresAt: new Date(Date.now() + 60_000) };
      },
      awaitDecision: (id) => outcome(id).promise,
      consume: async (id) => {
        if (consumed.has(id)) return false;
        consumed.add(id);
        return true;
      },
    },
    audit: {
      record: (sessionId, kind, data) => {
        events.push({ sessionId, kind, data: data as unknown as Record<string, unknown> });
      },
      get healthy() {
        return state.auditHealthy;
      },
    },
    recording: { maxRows: 100, maxBytes: 65_536 },
    newId: randomUUID,
    now: () => new Date(),
  };
  const decide = (id: string, result: ApprovalOutcome) => outcome(id).resolve(result);
  return { ports, events, state, approvalRequests, decide };
};

// ---- a raw RESP client, for what node-redis would hide ------------------------------------------

interface RawClient {
  socket: Socket;
  send(...commands: string[][]): void;
  read(count: number): Promise<RespValue[]>;
  closed: Promise<void>;
}

const rawClient = async (port: number): Promise<RawClient> => {
  const socket = connect(port, '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  const framer = new RespFramer('reply');
  const received: RespValue[] = [];
  let waiter: (() => void) | undefined;
  socket.on('data', (chunk) => {
    for (const frame of framer.push(chunk)) received.push(decodeReply(frame));
    waiter?.();
  });
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return {
    socket,
    closed,
    send: (...commands) => socket.write(Buffer.concat(commands.map((command) => encodeCommand(command)))),
    read: async (count) => {
      const deadline = Date.now() + 3_000;
      while (received.length < count) {
        if (Date.now() > deadline) throw new Error(`timed out with ${received.length}/${count} replies`);
        await new Promise<void>((resolve) => {
          waiter = resolve;
          setTimeout(resolve, 50);
        });
      }
      return received.splice(0, count);
    },
  };
};

const text = (value: RespValue | undefined): string | undefined => {
  if (!value) return undefined;
  if (value.type === 'simple' || value.type === 'error') return value.value;
  if (value.type === 'bulk' || value.type === 'verbatim') return value.value.toString();
  return JSON.stringify(value, (_key, inner: unknown) => (typeof inner === 'bigint' ? inner.toString() : inner));
};

// ---- the proxy under test -----------------------------------------------------------------------

describe('Redis adapter', () => {
  let idp: TestIssuer;
  let direct: RedisClientType;
  let harness: ReturnType<typeof createPorts>;
  let server: Server;
  let port: number;
  let token: string;
  let writerToken: string;
  const aclUser = `sluice-test-${randomUUID().slice(0, 8)}`;
  const aclPassword = randomUUID();
  const clients: { close(): unknown }[] = [];

  const startProxy = async (overrides: Partial<RedisResourceConfig> = {}) => {
    const resource = loopbackRedisResource(overrides);
    const adapter = createRedisAdapter(resource, { secretsDir: process.cwd() });
    const { server: listener, port: listening } = await listenOnLoopback(adapter, harness.ports);
    return { listener, port: listening };
  };

  const agent = async (options: { RESP?: 2 | 3; username?: string; password?: string } = {}) => {
    const client = createClient({
      socket: { host: '127.0.0.1', port, reconnectStrategy: false },
      password: options.password ?? token,
      ...(options.username ? { username: options.username } : {}),
      ...(options.RESP ? { RESP: options.RESP } : {}),
    });
    client.on('error', () => {});
    await client.connect();
    clients.push({ close: () => client.isOpen && client.destroy() });
    return client;
  };

  const raw = async (to = port) => {
    const client = await rawClient(to);
    clients.push({ close: () => client.socket.destroy() });
    return client;
  };

  beforeAll(async () => {
    idp = await startTestIssuer();
    direct = createClient({ socket: { host: '127.0.0.1', port: 6379 } });
    await direct.connect();
    token = await idp.mint({ sub: 'support-bot', groups: ['support-agents'] });
    writerToken = await idp.mint({ sub: 'ops-bot', groups: ['writers'] });
    await direct.set(key('profile'), JSON.stringify({ name: 'Ann Lee', email: 'ann@example.com', ssn: '123-45-6789', total: 42 }));
    await direct.set(key('note'), 'call ann@example.com, card 4111 1111 1111 1111');
    await direct.hSet(key('customer'), { name: 'Ann Lee', email: 'ann@example.com', ssn: '123-45-6789' });
    await direct.sendCommand(['ACL', 'SETUSER', aclUser, 'on', `>${aclPassword}`, '~*', '&*', '+@all']);
  });

  afterAll(async () => {
    const keys = await direct.keys(`${prefix}:*`);
    if (keys.length > 0) await direct.del(keys);
    await direct.sendCommand(['ACL', 'DELUSER', aclUser]);
    await direct.quit();
    await idp.close();
  });

  beforeEach(async () => {
    harness = createPorts(idp);
    ({ listener: server, port } = await startProxy());
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    server.close();
  });

  const kinds = () => harness.events.map((event) => event.kind);

  it('logs in with AUTH <token>, answers an allowed GET masked and records the session', async () => {
    const client = await agent();
    const value = await client.get(key('note'));
    expect(value).toBe('call ***@example.com, card ****1111');
    const profile = JSON.parse((await client.get(key('profile')))!);
    expect(profile).toEqual({ name: 'Ann Lee', email: '***@example.com', ssn: 'REDACTED', total: 42 });
    await client.quit();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(kinds()).toContain('session.started');
    expect(kinds()).toContain('session.ended');
    const result = harness.events.find((event) => event.kind === 'result.returned' && JSON.stringify(event.data.rows).includes('card'));
    expect(result?.data.rows).toEqual([['call ***@example.com, card ****1111']]);
    expect(result?.data.maskedCounts).toEqual({ email: 1, credit_card: 1 });
    // No raw value reaches the audit record.
    expect(JSON.stringify(harness.events)).not.toContain('ann@example.com');
    expect(JSON.stringify(harness.events)).not.toContain('4111 1111 1111 1111');
    const decided = harness.events.find((event) => event.kind === 'command.decided' && String(event.data.command).startsWith('GET'));
    expect(decided?.data).toMatchObject({ protocol: 'redis', decision: 'allow', rule: 'support-read', resource: 'cache' });
  });

  it('records each command duration in whole microseconds, answered by the target or refused', async () => {
    const client = await agent();
    for (let index = 0; index < 5; index++) await client.get(key('note'));
    await expect(client.set(key('note'), 'overwritten')).rejects.toThrow(/^NOPERM/);
    const durations = harness.events.filter((event) => event.kind === 'command.completed').map((event) => event.data.durationMs as number);
    expect(durations.length).toBeGreaterThanOrEqual(6);
    for (const duration of durations) expect(Math.round(duration * 1000) / 1000).toBe(duration);
  });

  it('answers WRONGPASS to a bad token, records the rejection and keeps the connection for a retry', async () => {
    const client = await raw();
    client.send(['GET', key('note')], ['PING'], ['AUTH', 'not-a-token'], ['AUTH', 'agent', await idp.mint({ sub: 'x', expiresIn: -300 })]);
    const [noauth, pong, bad, expired] = await client.read(4);
    expect(text(noauth)).toMatch(/^NOAUTH/);
    expect(text(pong)).toBe('PONG');
    expect(text(bad)).toMatch(/^WRONGPASS/);
    expect(text(expired)).toMatch(/^WRONGPASS/);
    const rejected = harness.events.filter((event) => event.kind === 'session.rejected').map((event) => event.data.code);
    expect(rejected).toEqual([SluiceErrorCode.TokenInvalid, SluiceErrorCode.TokenExpired]);
    client.send(['AUTH', 'agent', token], ['GET', key('note')]);
    const [ok, value] = await client.read(2);
    expect(text(ok)).toBe('OK');
    expect(text(value)).toBe('call ***@example.com, card ****1111');
  });

  it('logs in with HELLO 3 AUTH, answers the target HELLO map and masks RESP3 maps by field', async () => {
    const client = await agent({ RESP: 3, username: 'agent' });
    const hash = await client.hGetAll(key('customer'));
    expect(hash).toEqual({ name: 'Ann Lee', email: '***@example.com', ssn: 'REDACTED' });
    const rawHello = await raw();
    rawHello.send(['HELLO', '3', 'AUTH', 'agent', token]);
    const [hello] = await rawHello.read(1);
    expect(hello?.type).toBe('map');
    expect(hello?.type === 'map' && hello.entries.map(([name]) => text(name))).toContain('proto');
  });

  it('masks RESP2 HGETALL pairs and HMGET values by field name, and HELLO 2 AUTH works too', async () => {
    const client = await agent({ RESP: 2 });
    expect(await client.hGetAll(key('customer'))).toEqual({ name: 'Ann Lee', email: '***@example.com', ssn: 'REDACTED' });
    expect(await client.hmGet(key('customer'), ['ssn', 'name'])).toEqual(['REDACTED', 'Ann Lee']);
  });

  it('denies SET with NOPERM naming the rule, before it reaches Redis, and the connection stays usable', async () => {
    const client = await agent();
    await expect(client.set(key('note'), 'overwritten')).rejects.toThrow(/^NOPERM .*support-read-only/);
    expect(await direct.get(key('note'))).toBe('call ann@example.com, card 4111 1111 1111 1111');
    expect(await client.get(key('note'))).toBe('call ***@example.com, card ****1111');
    const completed = harness.events.find((event) => event.kind === 'command.completed' && event.data.ok === false);
    expect((completed?.data.error as { code: string }).code).toBe(SluiceErrorCode.PolicyDenied);
  });

  it('denies FLUSHALL and leaves the data alone', async () => {
    const client = await agent({ password: writerToken });
    await expect(client.flushAll()).rejects.toThrow(/^NOPERM .*never-admin/);
    expect(await direct.exists(key('note'))).toBe(1);
  });

  it('keeps the reply order of pipelined commands whose decisions resolve out of order', async () => {
    const client = await raw();
    client.send(['AUTH', token]);
    await client.read(1);
    const commands: string[][] = [];
    for (let i = 0; i < 30; i++) {
      if (i % 3 === 0) commands.push(['ECHO', `${i}:slow`]);
      else if (i % 3 === 1) commands.push(['SET', key(`p${i}`), 'x']);
      else commands.push(['ECHO', `${i}`]);
    }
    client.send(...commands);
    const replies = await client.read(commands.length);
    replies.forEach((reply, i) => {
      if (i % 3 === 1) expect(text(reply)).toMatch(/^NOPERM/);
      else expect(text(reply)).toBe(i % 3 === 0 ? `${i}:slow` : `${i}`);
    });
    // Through node-redis as well: many commands in flight at once.
    const agentClient = await agent();
    const many = await Promise.all(Array.from({ length: 200 }, (_, i) => agentClient.echo(i % 2 ? `${i}:slow` : `${i}`)));
    expect(many).toEqual(Array.from({ length: 200 }, (_, i) => (i % 2 ? `${i}:slow` : `${i}`)));
  });

  it('answers a burst decided from the cache (allowed, denied, held, masked, one asked) split mid-frame across reads, in order, each command recorded', async () => {
    harness.state.cache = true;
    const client = await raw();
    client.send(['AUTH', token]);
    await client.read(1);
    const before: string[][] = [
      ['GET', key('note')],
      ['SET', key('burst'), 'x'],
      ['ECHO', 'mail ann@example.com'],
      ['CONFIG', 'GET', 'maxmemory'],
      ['ECHO', 'burst:slow'],
      ['GET', key('profile')],
    ];
    const after: string[][] = [['ECHO', 'after the hold'], ['GET', key('note')]];
    const bytes = Buffer.concat([...before, ['SET', key('burst:held'), 'held value'], ...after].map((command) => encodeCommand(command)));
    // Seven bytes at a time, each its own read: every frame but the shortest arrives in pieces.
    client.socket.setNoDelay(true);
    for (let offset = 0; offset < bytes.length; offset += 7) {
      client.socket.write(bytes.subarray(offset, offset + 7));
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    const first = (await client.read(before.length)).map(text);
    expect(first[0]).toBe('call ***@example.com, card ****1111');
    expect(first[1]).toMatch(/^NOPERM denied by rule 'support-read-only'/);
    expect(first[2]).toBe('mail ***@example.com');
    expect(first[3]).toMatch(/^NOPERM denied by rule 'never-admin'/);
    expect(first[4]).toBe('burst:slow');
    expect(JSON.parse(first[5]!)).toMatchObject({ email: '***@example.com', ssn: 'REDACTED' });
    // Nothing after the held SET is answered before the approver decides.
    await new Promise((resolve) => setTimeout(resolve, 100));
    await expect(client.read(1)).rejects.toThrow(/timed out/);
    expect(harness.approvalRequests).toHaveLength(1);
    harness.decide(harness.approvalRequests[0]!.id, { outcome: 'denied', approvers: ['dba-1'], reason: 'no' });
    const rest = (await client.read(1 + after.length)).map(text);
    expect(rest[0]).toMatch(/^NOPERM approval ap-1 denied/);
    expect(rest.slice(1)).toEqual(['after the hold', 'call ***@example.com, card ****1111']);
    expect(await direct.exists([key('burst'), key('burst:held')])).toBe(0);
    // Only the uncached command was asked; every command has exactly one decision record, in order.
    expect(harness.state.decideCalls).toEqual(['ECHO burst:slow']);
    const decided = harness.events.filter((event) => event.kind === 'command.decided');
    expect(decided.map((event) => String(event.data.command).split(' ')[0])).toEqual(['GET', 'SET', 'ECHO', 'CONFIG', 'ECHO', 'GET', 'SET', 'ECHO', 'GET']);
    expect(new Set(decided.map((event) => event.data.commandId)).size).toBe(decided.length);
    const completed = harness.events.filter((event) => event.kind === 'command.completed').map((event) => event.data.commandId);
    expect(completed.sort()).toEqual(decided.map((event) => event.data.commandId).sort());
    expect(JSON.stringify(harness.events)).not.toContain('ann@example.com');
  });

  it('closes only the connection that sent a malformed frame', async () => {
    const good = await raw();
    good.send(['AUTH', token]);
    await good.read(1);
    const bad = await raw();
    bad.send(['AUTH', token]);
    await bad.read(1);
    bad.socket.write('*1\r\n$abc\r\n');
    const [error] = await bad.read(1);
    expect(text(error)).toMatch(/^ERR Protocol error/);
    await bad.closed;
    good.send(['GET', key('note')]);
    expect(text((await good.read(1))[0])).toBe('call ***@example.com, card ****1111');
    expect(harness.events.some((event) => event.kind === 'session.ended' && String(event.data.reason).includes('protocol error'))).toBe(true);
  });

  it('works with redis-cli, masked reads and NOPERM writes', async () => {
    const cli = (...args: string[]) => run('redis-cli', ['-p', String(port), '--user', 'agent', '--pass', token, '--no-auth-warning', ...args]);
    expect((await cli('GET', key('note'))).stdout.trim()).toBe('call ***@example.com, card ****1111');
    expect((await cli('-3', 'HGETALL', key('customer'))).stdout).toContain('***@example.com');
    const denied = await cli('SET', key('note'), 'x');
    expect(denied.stdout + denied.stderr).toMatch(/NOPERM/);
  });

  it('authenticates upstream with the resource credentials and selects its db; the agent never sees them', async () => {
    process.env.SLUICE_TEST_REDIS_PASSWORD = aclPassword;
    const { listener, port: credentialedPort } = await startProxy({
      target: { host: '127.0.0.1', port: 6379, db: 5 },
      credentials: { username: aclUser, password: { env: 'SLUICE_TEST_REDIS_PASSWORD' } },
    });
    try {
      const inDb5 = createClient({ socket: { host: '127.0.0.1', port: 6379 }, database: 5 });
      await inDb5.connect();
      await inDb5.set(key('db5'), 'from db 5');
      const client = await raw(credentialedPort);
      client.send(['AUTH', token], ['ACL', 'WHOAMI'], ['GET', key('db5')]);
      const [ok, whoami, value] = await client.read(3);
      expect(text(ok)).toBe('OK');
      expect(text(whoami)).toBe(aclUser);
      expect(text(value)).toBe('from db 5');
      await inDb5.del(key('db5'));
      await inDb5.quit();
    } finally {
      listener.close();
    }
  });

  it('holds a command for approval, keeps later replies waiting, then runs it once when granted', async () => {
    const client = await agent({ password: writerToken });
    // Answered as any ECHO (masked like every reply of this resource).
    expect(await client.echo('justification: ticket 9, ask ops@example.com')).toBe('justification: ticket 9, ask ***@example.com');
    const held = client.set(key('held1'), 'approved value');
    const after = client.get(key('note'));
    let settled = false;
    void after.then(() => (settled = true));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(harness.approvalRequests).toHaveLength(1);
    expect(settled).toBe(false);
    expect(await direct.get(key('held1'))).toBeNull();
    const request = harness.approvalRequests[0]!;
    expect(request.command).toBe(`SET ${key('held1')} "approved value"`);
    // The ECHO before it is its justification, masked as the command is, and used once.
    expect(request.justification).toBe('ticket 9, ask ***@example.com');
    expect(request.commandHash).toMatch(/^[0-9a-f]{64}$/);
    harness.decide(request.id, { outcome: 'granted', approvers: ['dba-1'], reason: 'ok' });
    expect(await held).toBe('OK');
    expect(await after).toBe('call ***@example.com, card ****1111');
    expect(await direct.get(key('held1'))).toBe('approved value');
  });

  it('answers NOPERM naming the approval when the approver denies', async () => {
    const client = await agent({ password: writerToken });
    const held = client.set(key('held2'), 'never');
    await new Promise((resolve) => setTimeout(resolve, 50));
    const request = harness.approvalRequests[0]!;
    harness.decide(request.id, { outcome: 'denied', approvers: ['dba-1'], reason: 'no' });
    await expect(held).rejects.toThrow(new RegExp(`^NOPERM approval ${request.id} denied`));
    expect(await direct.get(key('held2'))).toBeNull();
    const codes = harness.events.filter((event) => event.kind === 'command.completed').map((event) => (event.data.error as { code?: string } | undefined)?.code);
    expect(codes).toContain(SluiceErrorCode.ApprovalDenied);
  });

  it('decides each command of MULTI when queued, masks EXEC results, and aborts EXEC after a denied command', async () => {
    const writer = await raw();
    writer.send(['AUTH', writerToken], ['MULTI'], ['SET', key('tx'), 'bob@example.org'], ['GET', key('tx')], ['EXEC']);
    const [, multi, queued1, queued2, exec] = await writer.read(5);
    expect([text(multi), text(queued1), text(queued2)]).toEqual(['OK', 'QUEUED', 'QUEUED']);
    expect(exec?.type === 'array' && exec.items.map(text)).toEqual(['OK', '***@example.org']);
    const reader = await raw();
    reader.send(['AUTH', token], ['MULTI'], ['GET', key('tx')], ['SET', key('tx'), 'changed'], ['EXEC']);
    const [, , queued, denied, aborted] = await reader.read(5);
    expect(text(queued)).toBe('QUEUED');
    expect(text(denied)).toMatch(/^NOPERM/);
    expect(text(aborted)).toMatch(/^EXECABORT/);
    expect(await direct.get(key('tx'))).toBe('bob@example.org');
  });

  it('masks pub/sub messages pushed to RESP2 and RESP3 subscribers', async () => {
    for (const RESP of [2, 3] as const) {
      const subscriber = await agent({ RESP });
      const message = deferred<string>();
      await subscriber.subscribe(key(`ch${RESP}`), (payload) => message.resolve(payload));
      await direct.publish(key(`ch${RESP}`), 'reach me at ann@example.com');
      expect(await message.promise).toBe('reach me at ***@example.com');
    }
  });

  it('fails closed: audit unavailable, policy unavailable and masking unavailable never pass data', async () => {
    const client = await raw();
    client.send(['AUTH', token]);
    await client.read(1);
    harness.state.auditHealthy = false;
    client.send(['GET', key('note')]);
    expect(text((await client.read(1))[0])).toMatch(/^ERR audit unavailable/);
    harness.state.auditHealthy = true;
    harness.state.policyDown = true;
    client.send(['GET', key('note')]);
    expect(text((await client.read(1))[0])).toBe('NOPERM policy unavailable');
    harness.state.policyDown = false;
    harness.state.maskingDown = true;
    client.send(['GET', key('note')]);
    expect(text((await client.read(1))[0])).toBe('ERR result withheld: masking unavailable');
    harness.state.maskingDown = false;
    client.send(['GET', key('note')]);
    expect(text((await client.read(1))[0])).toBe('call ***@example.com, card ****1111');
  });

  it('re-authenticates on AUTH after login: the old session ends and a new one starts for the new subject', async () => {
    const client = await raw();
    client.send(['AUTH', token], ['SET', key('re'), 'x'], ['AUTH', writerToken], ['SET', key('re'), 'x'], ['AUTH', 'garbage'], ['GET', key('re')]);
    const replies = (await client.read(6)).map(text);
    expect(replies[1]).toMatch(/^NOPERM/);
    expect(replies.slice(2)).toEqual(['OK', 'OK', expect.stringMatching(/^WRONGPASS/), 'x']);
    const started = harness.events.filter((event) => event.kind === 'session.started').map((event) => (event.data.subject as { sub: string }).sub);
    expect(started).toEqual(['support-bot', 'ops-bot']);
    expect(harness.events.some((event) => event.kind === 'session.ended' && event.data.reason === 're-authenticated')).toBe(true);
  });
});
