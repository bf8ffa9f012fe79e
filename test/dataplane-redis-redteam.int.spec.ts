import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeCommand } from '@sluice/codec-resp';
import { MAX_JSON_DEPTH } from '@sluice/masking-engine';
import { compilePiiMasking, UNDETECTABLE_SSN, type RecordedEvent } from './support/engine-ports.js';
import { showResp } from './support/raw-socket.js';
import { redTeamKeyRules, seedRedTeamKeys, startRedisFrontDoor, type RedisFrontDoor } from './support/redis-proxy-harness.js';
import { waitUntil } from './support/wait.js';

/** A JSON text nested `levels` arrays deep beside a member the `ssn` column rule covers. */
const deepDocument = (levels: number): string => `{"ssn": "${UNDETECTABLE_SSN}", "deep": ${'['.repeat(levels)}0${']'.repeat(levels)}}`;

/**
 * Masking's depth check in the walk (536773a) on Redis values: a JSON string value, a hash field's
 * value and a JSON text inside a JSON string, nested around MAX_JSON_DEPTH, under a profile with
 * a column rule (`ssn`) and with none.
 *
 * The PostgreSQL hang-up probe of dataplane-audit-order-redteam, on the Redis front door: an agent
 * pipelines commands and hangs up before their decisions come. Nothing of its session may be
 * recorded after its session.ended (the audit port would number it from sessionseq 1 again), and
 * every decided command gets at most one completion.
 */
const keyPrefix = `dataplane-hangup:${randomUUID().slice(0, 8)}`;
const key = (name: string): string => `${keyPrefix}:${name}`;

describe('a Redis agent hanging up on a pipeline', () => {
  const recorded: RecordedEvent[] = [];
  let door: RedisFrontDoor;

  beforeAll(async () => {
    door = await startRedisFrontDoor({ keyPrefix, rules: redTeamKeyRules(key), masking: compilePiiMasking('redis-hangup'), recorded });
    await seedRedTeamKeys(door.direct, key);
  });
  afterAll(() => door.close());

  it.each([
    ['a string value', 'string'],
    ['a hash field', 'hash'],
    ['JSON inside a JSON string', 'nested'],
  ])('masks %s within the depth limit and withholds it past the limit', async (_, shape) => {
    const agent = await door.agent(await door.idp.mint({ sub: 'deep-agent', groups: ['support-agents'] }));
    for (const levels of [MAX_JSON_DEPTH - 4, MAX_JSON_DEPTH + 4]) {
      const document = shape === 'nested' ? JSON.stringify({ payload: deepDocument(levels) }) : deepDocument(levels);
      const name = key(`deep:${shape}:${levels}`);
      if (shape === 'hash') await door.direct.hSet(name, { profile: document });
      else await door.direct.set(name, document);
      if (shape === 'hash') agent.send('HGET', name, 'profile');
      else agent.send('GET', name);
      const reply = JSON.stringify(showResp(await agent.read()));
      expect(reply, `${levels}`).not.toContain(UNDETECTABLE_SSN);
      if (levels > MAX_JSON_DEPTH) expect(reply, `${levels}`).toMatch(/^"?ERR|withheld/i);
      else expect(reply, `${levels}`).toContain('[[[[');
    }
  });

  it('records nothing of the session after its end', async () => {
    const token = await door.idp.mint({ sub: 'hangup-agent', groups: ['support-agents'] });
    const start = recorded.length;
    const mine = (): RecordedEvent[] => recorded.slice(start);
    for (let round = 0; round < 5; round++) {
      const socket = connect(door.port, '127.0.0.1');
      await new Promise<void>((resolve) => socket.once('connect', resolve));
      const commands = [['AUTH', token], ...Array.from({ length: 40 }, (_, index) => (index % 3 === 0 ? ['GET', key('secret:1')] : ['HGETALL', key('user:1')]))];
      socket.write(Buffer.concat(commands.map((command) => encodeCommand(command.map((part) => Buffer.from(part))))));
      // Hung up as soon as the session starts: its pipeline is still being decided.
      await waitUntil(async () => mine().filter((event) => event.type === 'session.started').length > round, 10_000, 'the session started');
      await new Promise((resolve) => setTimeout(resolve, round));
      socket.destroy();
    }
    await waitUntil(async () => mine().filter((event) => event.type === 'session.ended').length >= 5, 10_000, 'every session ended');
    await new Promise((resolve) => setTimeout(resolve, 500));
    const ended = new Set<string>();
    const completions = new Map<string, number>();
    const decided = new Set<string>();
    for (const event of mine()) {
      expect(ended.has(event.sessionId), `${event.type} after its session ended`).toBe(false);
      if (event.type === 'session.ended') ended.add(event.sessionId);
      if (event.type === 'command.decided') decided.add(event.data.commandId as string);
      if (event.type === 'command.completed') completions.set(event.data.commandId as string, (completions.get(event.data.commandId as string) ?? 0) + 1);
    }
    // Every decided command has its one outcome, the session's end having waited for it.
    expect([...decided].map((id) => completions.get(id) ?? 0)).toEqual([...decided].map(() => 1));
  });
});

/**
 * An agent with a good token that hangs up while its login is checked (the token verified, the
 * policy asked, the target being opened): the connection it left made no target connection that
 * stays open (before, one opened after the close stayed, a way to fill the target's maxclients),
 * and each such login is on the record, as a session that started and ended or as one refused.
 */
describe('a Redis agent hanging up during its login', () => {
  const recorded: RecordedEvent[] = [];
  let door: RedisFrontDoor;
  const loginPrefix = `dataplane-login-hangup:${randomUUID().slice(0, 8)}`;

  beforeAll(async () => {
    door = await startRedisFrontDoor({ keyPrefix: loginPrefix, rules: redTeamKeyRules((name) => `${loginPrefix}:${name}`), masking: compilePiiMasking('redis-login-hangup'), recorded });
  });
  afterAll(() => door.close());

  it('leaves no target connection open and records every login', async () => {
    const clientName = `hangup-${randomUUID().slice(0, 8)}`;
    const token = await door.idp.mint({ sub: 'login-hangup-agent', groups: ['support-agents'] });
    const rounds = 30;
    for (let round = 0; round < rounds; round++) {
      const socket = connect(door.port, '127.0.0.1');
      await new Promise<void>((resolve) => socket.once('connect', resolve));
      socket.on('error', () => undefined);
      socket.write(encodeCommand(['HELLO', '3', 'AUTH', 'agent', token, 'SETNAME', clientName].map((part) => Buffer.from(part))));
      // Gone at once, or a little later: while the token, the policy or the target is awaited.
      if (round % 3 === 0) await new Promise((resolve) => setImmediate(resolve));
      else await new Promise((resolve) => setTimeout(resolve, round % 3));
      socket.destroy();
    }
    const logins = (): RecordedEvent[] =>
      recorded.filter((event) => (event.type === 'session.started' || event.type === 'session.rejected') && (event.data.subject as { sub?: string } | undefined)?.sub === 'login-hangup-agent');
    await waitUntil(async () => logins().length >= rounds, 10_000, 'every login recorded');
    const named = async (): Promise<number> => (await door.direct.sendCommand<string>(['CLIENT', 'LIST'])).split('\n').filter((line) => line.includes(` name=${clientName} `)).length;
    await waitUntil(async () => (await named()) === 0, 5_000, 'no target connection left open');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await named()).toBe(0);
    expect(logins()).toHaveLength(rounds);
    const rejected = logins().filter((event) => event.type === 'session.rejected');
    for (const event of rejected) expect(event.data.reason).toBe('client closed during login');
  });
});
