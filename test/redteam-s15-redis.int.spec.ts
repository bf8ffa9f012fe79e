import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeCommand } from '@sluice/codec-resp';
import { compilePiiMasking, type RecordedEvent } from './support/engine-ports.js';
import { showResp } from './support/raw-socket.js';
import { redTeamKeyRules, startRedisFrontDoor, type RedisFrontDoor } from './support/redis-proxy-harness.js';
import { waitUntil } from './support/wait.js';

/*
 * Red team of the re-authentication refusals (leftovers): with CLIENT TRACKING on, Redis pushes an
 * invalidation for every key the connection read (or, BCAST, every key under its prefixes) when
 * that key changes, long after the read. A re-authentication then would put the old session's
 * invalidations (key names its grant let it see) under the new session, as a subscription's
 * messages would. Probed with raw RESP against the real Redis.
 */

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const subOf = (event: RecordedEvent): string | undefined => (event.data.subject as { sub?: string } | undefined)?.sub;

describe('red team s15: a Redis agent re-authenticating while tracking keys', () => {
  const recorded: RecordedEvent[] = [];
  const prefix = `rt15-track:${randomUUID().slice(0, 8)}`;
  const key = (name: string) => `${prefix}:${name}`;
  let door: RedisFrontDoor;

  beforeAll(async () => {
    door = await startRedisFrontDoor({ keyPrefix: prefix, rules: redTeamKeyRules(key), masking: compilePiiMasking('rt15-track'), recorded });
    await door.direct.set(key('pub:1'), 'hello world');
  });
  afterAll(() => door.close());

  it.each([
    ['CLIENT TRACKING ON', (): string[] => ['CLIENT', 'TRACKING', 'ON']],
    ['CLIENT TRACKING ON BCAST PREFIX', (): string[] => ['CLIENT', 'TRACKING', 'ON', 'BCAST', 'PREFIX', key('pub:')]],
  ])('refuses AUTH after %s (RESP3); the invalidation after it stays the first session\'s', async (_, tracking) => {
    const start = recorded.length;
    const first = `track-first-${randomUUID().slice(0, 8)}`;
    const second = `track-second-${randomUUID().slice(0, 8)}`;
    const agent = await door.agent(await door.idp.mint({ sub: first, groups: ['support-agents'] }));
    agent.send('HELLO', '3');
    expect((await agent.read()).type).toBe('map');
    agent.send(...tracking());
    expect(showResp(await agent.read())).toBe('OK');
    agent.send('GET', key('pub:1'));
    expect(showResp(await agent.read())).toBe('hello world');
    agent.send('AUTH', await door.idp.mint({ sub: second, groups: ['support-agents'] }));
    expect(showResp(await agent.read())).toMatch(/^ERR .*tracking/i);
    await door.direct.set(key('pub:1'), 'changed');
    const invalidation = showResp(await agent.read()) as unknown[];
    expect(invalidation[0]).toBe('invalidate');
    // Tracking off, the identity may change again.
    agent.send('CLIENT', 'TRACKING', 'OFF');
    expect(showResp(await agent.read())).toBe('OK');
    agent.send('AUTH', await door.idp.mint({ sub: second, groups: ['support-agents'] }));
    expect(showResp(await agent.read())).toBe('OK');
    agent.socket.destroy();
    await waitUntil(() => recorded.slice(start).filter((event) => event.type === 'session.ended').length >= 2, 5_000, 'both sessions ended');
    await sleep(50);
    const events = recorded.slice(start);
    const sessions = events.filter((event) => event.type === 'session.started');
    expect(sessions.map(subOf)).toEqual([first, second]);
    const pushed = events.filter((event) => event.type === 'result.returned' && JSON.stringify(event.data).includes('invalidate'));
    expect(pushed.length).toBeGreaterThan(0);
    expect(pushed.map((event) => event.sessionId)).toEqual(pushed.map(() => sessions[0]!.sessionId));
    await door.direct.set(key('pub:1'), 'hello world');
  });

  // Probes of the leftovers' refusals in other framings (held): inline commands, a pipeline that
  // sends MULTI, AUTH and EXEC in one write, DISCARD, RESET.
  it('refuses an inline AUTH inside MULTI sent in one pipeline, then lets AUTH through after DISCARD', async () => {
    const start = recorded.length;
    const first = `inline-first-${randomUUID().slice(0, 8)}`;
    const second = `inline-second-${randomUUID().slice(0, 8)}`;
    const agent = await door.agent(await door.idp.mint({ sub: first, groups: ['support-agents'] }));
    const token = await door.idp.mint({ sub: second, groups: ['support-agents'] });
    agent.write(Buffer.concat([Buffer.from('MULTI\r\n'), encodeCommand(['GET', key('pub:1')]), Buffer.from(`AUTH ${token}\r\n`), Buffer.from(`HELLO 3 AUTH agent ${token}\r\n`), Buffer.from('EXEC\r\n')]));
    expect(showResp(await agent.read())).toBe('OK');
    expect(showResp(await agent.read())).toBe('QUEUED');
    expect(showResp(await agent.read())).toMatch(/^ERR AUTH inside MULTI/);
    expect(showResp(await agent.read())).toMatch(/^ERR HELLO inside MULTI/);
    expect(showResp(await agent.read())).toMatch(/^EXECABORT/);
    agent.write(Buffer.concat([Buffer.from('MULTI\r\n'), Buffer.from('DISCARD\r\n'), Buffer.from(`AUTH ${token}\r\n`), Buffer.from('RESET\r\n')]));
    expect(showResp(await agent.read())).toBe('OK');
    expect(showResp(await agent.read())).toBe('OK');
    expect(showResp(await agent.read())).toBe('OK');
    expect(showResp(await agent.read())).toMatch(/RESET is not allowed/);
    agent.socket.destroy();
    await waitUntil(() => recorded.slice(start).filter((event) => event.type === 'session.ended').length >= 2, 5_000, 'both sessions ended');
    const events = recorded.slice(start);
    expect(events.filter((event) => event.type === 'session.started').map(subOf)).toEqual([first, second]);
    expect(JSON.stringify(events)).not.toContain(token);
  });
});
