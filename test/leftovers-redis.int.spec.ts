import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeCommand } from '@sluice/codec-resp';
import { compilePiiMasking, type RecordedEvent } from './support/engine-ports.js';
import { showResp } from './support/raw-socket.js';
import { redTeamKeyRules, startRedisFrontDoor, type RedisFrontDoor } from './support/redis-proxy-harness.js';
import { waitUntil } from './support/wait.js';

/*
 * A re-authentication ends one session and starts another on the same connection. Probed with
 * raw RESP against the real Redis: it cannot be queued inside a transaction (EXEC's results would
 * be recorded under the new session), nor taken while the connection is subscribed (messages that
 * arrive after it would be recorded under the new session, masked with the old subscriber's
 * profile). Sluice refuses it in both cases, and records the refusal under the current session.
 */

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const subOf = (event: RecordedEvent): string | undefined => (event.data.subject as { sub?: string } | undefined)?.sub;

describe('a Redis agent re-authenticating where its session cannot end', () => {
  const recorded: RecordedEvent[] = [];
  const prefix = `leftovers-reauth:${randomUUID().slice(0, 8)}`;
  const key = (name: string) => `${prefix}:${name}`;
  let door: RedisFrontDoor;

  beforeAll(async () => {
    door = await startRedisFrontDoor({ keyPrefix: prefix, rules: redTeamKeyRules(key), masking: compilePiiMasking('leftovers-reauth'), recorded });
    await door.direct.set(key('pub:1'), 'hello world');
  });
  afterAll(() => door.close());

  /** The events recorded since `start` for the sessions of this connection (found by its subject's session.started). */
  const sessionsOf = (start: number, sub: string) => {
    const events = recorded.slice(start);
    const started = events.filter((event) => event.type === 'session.started' && subOf(event) === sub).map((event) => event.sessionId);
    expect(started).toHaveLength(1);
    return { events, session: started[0]! };
  };

  it.each([
    ['AUTH <token>', (token: string) => ['AUTH', token]],
    ['HELLO 2 AUTH <user> <token>', (token: string) => ['HELLO', '2', 'AUTH', 'agent', token]],
    ['HELLO 3 AUTH <user> <token>', (token: string) => ['HELLO', '3', 'AUTH', 'agent', token]],
  ])('refuses %s inside MULTI; EXEC aborts and nothing is recorded under a new session', async (_, login) => {
    const start = recorded.length;
    const first = `multi-first-${randomUUID().slice(0, 8)}`;
    const second = `multi-second-${randomUUID().slice(0, 8)}`;
    const agent = await door.agent(await door.idp.mint({ sub: first, groups: ['support-agents'] }));
    const token = await door.idp.mint({ sub: second, groups: ['support-agents'] });
    agent.write(Buffer.concat([encodeCommand(['MULTI']), encodeCommand(['GET', key('pub:1')]), encodeCommand(login(token)), encodeCommand(['GET', key('pub:1')]), encodeCommand(['EXEC'])]));
    expect(showResp(await agent.read())).toBe('OK');
    expect(showResp(await agent.read())).toBe('QUEUED');
    const refusal = showResp(await agent.read());
    expect(refusal).toMatch(/^ERR .*inside MULTI/);
    expect(showResp(await agent.read())).toBe('QUEUED');
    expect(showResp(await agent.read())).toMatch(/^EXECABORT/);
    // The connection goes on under its first identity.
    agent.send('GET', key('pub:1'));
    expect(showResp(await agent.read())).toBe('hello world');
    agent.socket.destroy();
    await waitUntil(() => recorded.slice(start).some((event) => event.type === 'session.ended'), 5_000, 'session ended');
    await sleep(50);
    const { events, session } = sessionsOf(start, first);
    expect(events.filter((event) => event.type === 'session.started').map(subOf)).toEqual([first]);
    expect(events.every((event) => event.type === 'session.rejected' || event.sessionId === session || !event.sessionId)).toBe(true);
    // The refusal is on the record, under the session it was sent in, without the token.
    const decided = events.filter((event) => event.type === 'command.decided' && event.sessionId === session);
    const refused = decided.find((event) => String(event.data.command).startsWith(login(token)[0]!));
    expect(refused?.data.decision).toBe('deny');
    expect(JSON.stringify(events)).not.toContain(token);
    const completion = events.find((event) => event.type === 'command.completed' && event.data.commandId === refused!.data.commandId);
    expect(completion?.data.ok).toBe(false);
    expect(events.filter((event) => event.type === 'session.ended').map((event) => event.sessionId)).toEqual([session]);
  });

  it.each([
    ['RESP2 SUBSCRIBE', 2, 'SUBSCRIBE'],
    ['RESP3 SUBSCRIBE', 3, 'SUBSCRIBE'],
    ['RESP3 PSUBSCRIBE', 3, 'PSUBSCRIBE'],
  ] as const)('refuses AUTH while subscribed (%s); messages after it stay the first session\'s', async (_, protocol, command) => {
    const start = recorded.length;
    const first = `sub-first-${randomUUID().slice(0, 8)}`;
    const second = `sub-second-${randomUUID().slice(0, 8)}`;
    const channel = key(`news-${randomUUID().slice(0, 8)}`);
    const agent = await door.agent(await door.idp.mint({ sub: first, groups: ['support-agents'] }));
    if (protocol === 3) {
      agent.send('HELLO', '3');
      expect((await agent.read()).type).toBe('map');
    }
    agent.send(command, channel);
    expect(showResp(await agent.read())).toEqual([command.toLowerCase(), channel, 1]);
    agent.send('AUTH', await door.idp.mint({ sub: second, groups: ['support-agents'] }));
    expect(showResp(await agent.read())).toMatch(/^ERR .*unsubscribe first/);
    await door.direct.publish(channel, 'after the auth');
    const message = showResp(await agent.read()) as unknown[];
    expect(message.at(-1)).toBe('after the auth');
    agent.socket.destroy();
    await waitUntil(() => recorded.slice(start).some((event) => event.type === 'session.ended'), 5_000, 'session ended');
    await sleep(50);
    const { events, session } = sessionsOf(start, first);
    expect(events.filter((event) => event.type === 'session.started').map(subOf)).toEqual([first]);
    const pushed = events.filter((event) => event.type === 'result.returned' && JSON.stringify(event.data).includes('after the auth'));
    expect(pushed.map((event) => event.sessionId)).toEqual([session]);
    const refused = events.find((event) => event.type === 'command.decided' && event.data.command === 'AUTH');
    expect(refused?.sessionId).toBe(session);
    expect(refused?.data.decision).toBe('deny');
  });

  it('lets AUTH through once the last subscription is gone (RESP3)', async () => {
    const start = recorded.length;
    const first = `unsub-first-${randomUUID().slice(0, 8)}`;
    const second = `unsub-second-${randomUUID().slice(0, 8)}`;
    const channel = key(`news-${randomUUID().slice(0, 8)}`);
    const agent = await door.agent(await door.idp.mint({ sub: first, groups: ['support-agents'] }));
    agent.send('HELLO', '3');
    expect((await agent.read()).type).toBe('map');
    agent.send('SUBSCRIBE', channel);
    expect(showResp(await agent.read())).toEqual(['subscribe', channel, 1]);
    agent.send('UNSUBSCRIBE', channel);
    expect(showResp(await agent.read())).toEqual(['unsubscribe', channel, 0]);
    agent.send('AUTH', await door.idp.mint({ sub: second, groups: ['support-agents'] }));
    expect(showResp(await agent.read())).toBe('OK');
    agent.send('GET', key('pub:1'));
    expect(showResp(await agent.read())).toBe('hello world');
    agent.socket.destroy();
    await waitUntil(() => recorded.slice(start).filter((event) => event.type === 'session.ended').length >= 2, 5_000, 'both sessions ended');
    expect(recorded.slice(start).filter((event) => event.type === 'session.started').map(subOf)).toEqual([first, second]);
  });
});
