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
