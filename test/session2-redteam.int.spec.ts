import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodePasswordMessage, encodeStartupMessage } from '@sluice/codec-pg';
import { parseConfig, type RuleConfig } from '@sluice/config';
import { buildEvent, type CloudEvent } from '@sluice/contracts';
import { openEventStore, type EventStore } from '@sluice/event-store';
import { dropDatabases } from './support/databases.js';
import { compilePiiMasking, type RecordedEvent } from './support/engine-ports.js';
import { call, startHttpFrontDoor, type HttpFrontDoor } from './support/http-proxy-harness.js';
import { usePostgresFrontDoor, waitFor } from './support/postgres-proxy-harness.js';
import { useTestPolicyService } from './support/policy-service.js';
import { RED_TEAM_RESOURCE, RED_TEAM_SEED_SQL, redTeamConfigInput } from './support/postgres-red-team.js';
import { showResp } from './support/raw-socket.js';
import { redTeamKeyRules, startRedisFrontDoor, type RedisFrontDoor } from './support/redis-proxy-harness.js';
import { waitUntil } from './support/wait.js';

/*
 * Red team of the session's merged changes (the fair share's running count, the login hang-up
 * fixes) as an agent with a valid token for a read-only grant, raw protocol bytes and real
 * targets: what an agent does between commands (re-authenticating behind a command still running)
 * or while its login is checked (hanging up) must leave every session it started ended after its
 * last event, and every place among its subject's connections given back.
 */

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const subOf = (event: RecordedEvent): string | undefined => (event.data.subject as { sub?: string } | undefined)?.sub;

/** Fails unless every session started among `events` ended, and nothing of a session came after its end. */
const expectEveryStartedSessionEnded = (events: readonly RecordedEvent[]): void => {
  const started = new Set<string>();
  const ended = new Set<string>();
  for (const event of events) {
    expect(ended.has(event.sessionId), `${event.type} after its session ended`).toBe(false);
    if (event.type === 'session.started') started.add(event.sessionId);
    if (event.type === 'session.ended') ended.add(event.sessionId);
  }
  expect([...started].filter((id) => !ended.has(id))).toEqual([]);
};

describe('a Redis agent re-authenticating behind a command still running', () => {
  const recorded: RecordedEvent[] = [];
  const prefix = `session2-reauth:${randomUUID().slice(0, 8)}`;
  const key = (name: string) => `${prefix}:${name}`;
  let door: RedisFrontDoor;

  beforeAll(async () => {
    door = await startRedisFrontDoor({ keyPrefix: prefix, rules: redTeamKeyRules(key), masking: compilePiiMasking('session2-reauth'), recorded });
    await door.direct.set(key('pub:1'), 'hello world');
  });
  afterAll(() => door.close());

  it('records the command under the session it was taken in, before that session ends', async () => {
    const start = recorded.length;
    const agent = await door.agent(await door.idp.mint({ sub: 'reauth-first', groups: ['support-agents'] }));
    const second = await door.idp.mint({ sub: 'reauth-second', groups: ['support-agents'] });
    // A blocking read still running when the AUTH comes: its reply (and its events) come after it.
    agent.send('XREAD', 'BLOCK', '300', 'STREAMS', key('stream'), '$');
    agent.send('AUTH', second);
    agent.send('GET', key('pub:1'));
    expect([showResp(await agent.read()), showResp(await agent.read()), showResp(await agent.read())]).toEqual([null, 'OK', 'hello world']);
    agent.socket.destroy();
    const mine = () => recorded.slice(start);
    await waitUntil(() => mine().filter((event) => event.type === 'session.ended').length >= 2, 5_000, 'both sessions ended');
    await sleep(100);
    expectEveryStartedSessionEnded(mine());
    const sessionOf = (sub: string) => mine().find((event) => event.type === 'session.started' && subOf(event) === sub)!.sessionId;
    const first = mine().filter((event) => event.sessionId === sessionOf('reauth-first'));
    const xread = first.find((event) => event.type === 'command.decided')!.data.commandId;
    // The blocking read's outcome is its session's, before that session's end.
    expect(first.filter((event) => event.type === 'command.completed').map((event) => event.data.commandId)).toEqual([xread]);
    expect(first.at(-1)!.type).toBe('session.ended');
    expect(mine().filter((event) => event.sessionId === sessionOf('reauth-second')).map((event) => event.type)).toContain('command.completed');
  });

  it('starts no session for an agent that hung up while its AUTH waited', async () => {
    const start = recorded.length;
    const rounds = 5;
    for (let round = 0; round < rounds; round++) {
      const agent = await door.agent(await door.idp.mint({ sub: `reauth-gone-${round}`, groups: ['support-agents'] }));
      agent.send('XREAD', 'BLOCK', '200', 'STREAMS', key('stream'), '$');
      agent.send('AUTH', await door.idp.mint({ sub: `reauth-never-${round}`, groups: ['support-agents'] }));
      await sleep(20 + round * 10);
      agent.socket.destroy();
    }
    await sleep(600);
    const mine = recorded.slice(start);
    expectEveryStartedSessionEnded(mine);
    expect(mine.filter((event) => event.type === 'session.started').map(subOf)).toEqual(Array.from({ length: rounds }, (_, round) => `reauth-gone-${round}`));
  });
});

/**
 * The same hang-up while the second identity's admission is asked of a real policy service (a
 * subject the proxy's port has not cached: a round trip over gRPC): the connection's session was
 * ended by its close, and no session may start after it.
 */
describe('a Redis agent hanging up while its re-authentication is admitted', () => {
  const run = randomUUID().slice(0, 8);
  const prefix = `session2-admit:${run}`;
  const rules = [{ name: 'support-read', effect: 'allow', subjects: { groups: ['support-agents'] }, resources: ['cache'], actions: ['read'], keys: [`${prefix}:*`] }] as RuleConfig[];
  const policyService = useTestPolicyService('session2-admit', { resources: [{ name: 'cache', type: 'redis', listen: '127.0.0.1:0', target: { host: '127.0.0.1', port: 6379 } }], rules });
  const recorded: RecordedEvent[] = [];
  let door: RedisFrontDoor | undefined;

  beforeAll(async () => {
    door = await startRedisFrontDoor({ keyPrefix: prefix, rules, masking: compilePiiMasking('session2-admit'), recorded, policyPort: () => policyService.port });
  });
  afterAll(() => door?.close());

  it('starts no session the closed connection would never end', async () => {
    const start = recorded.length;
    for (let round = 0; round < 12; round++) {
      const agent = await door!.agent(await door!.idp.mint({ sub: `admit-first-${round}`, groups: ['support-agents'] }));
      agent.send('AUTH', await door!.idp.mint({ sub: `admit-late-${run}-${round}`, groups: ['support-agents'] }));
      if (round % 3 === 0) await new Promise((resolve) => setImmediate(resolve));
      else await sleep(round % 3);
      agent.socket.destroy();
    }
    await sleep(800);
    expectEveryStartedSessionEnded(recorded.slice(start));
  });
});

/**
 * Hung up right after sending its token: the close comes while the token is verified, before the
 * connection takes its place among its subject's (limits.maxConnectionsPerSubject). That place
 * must be given back all the same, or an agent locks itself (its subject) out for good.
 */
describe('a PostgreSQL agent hanging up while its token is checked', () => {
  const input = redTeamConfigInput(`session2_pg_${randomUUID().slice(0, 8)}`, ['public.secrets']);
  const config = parseConfig({ ...input, resources: input.resources.map((resource) => ({ ...resource, limits: { maxConnectionsPerSubject: 2 } })) });
  const frontDoor = usePostgresFrontDoor({ config, database: input.resources[0]!.target.database, setupSql: RED_TEAM_SEED_SQL, hashKey: 'session2-pg', limitConnections: true });

  it("gives back its place among its subject's connections", async () => {
    const token = await frontDoor.token(['readers']);
    const before = frontDoor.events.length;
    const rounds = 6;
    for (let round = 0; round < rounds; round++) {
      const socket = connect(frontDoor.port, '127.0.0.1');
      socket.on('error', () => undefined);
      await new Promise<void>((resolve) => socket.once('connect', resolve));
      socket.write(Buffer.concat([encodeStartupMessage([['user', 'agent'], ['database', RED_TEAM_RESOURCE]]), encodePasswordMessage(token)]));
      socket.destroy();
    }
    const logins = () => frontDoor.events.slice(before).filter((event) => event.kind === 'session.started' || event.kind === 'session.rejected');
    await waitFor(() => logins().length >= rounds, 15_000);
    await sleep(200);
    // Two places: a leak of two and this login would be refused (53300).
    const client = await frontDoor.connect(['readers']);
    expect((await client.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
  });
});

/**
 * The same on the HTTP front door, where the session is made per subject on a connection's first
 * request: a connection closed while that request's token is checked ended its sessions already;
 * one made after would never end, and its place would never be given back.
 */
describe('an HTTP agent hanging up while its token is checked', () => {
  const rules: RuleConfig[] = [{ name: 'support-read', effect: 'allow', subjects: { groups: ['support-agents'] }, actions: ['read'], mask: 'pii' }] as RuleConfig[];
  const recorded: RecordedEvent[] = [];
  let door: HttpFrontDoor;

  beforeAll(async () => {
    door = await startHttpFrontDoor({ rules, masking: compilePiiMasking('session2-http'), recorded, limits: { maxConnections: 50, maxConnectionsPerSubject: 2 } });
  });

  afterAll(async () => {
    await door?.close();
  });

  it('starts no session that never ends, and gives back its place', async () => {
    const token = await door.idp.mint({ sub: 'http-hangup', groups: ['support-agents'] });
    const start = recorded.length;
    const rounds = 6;
    for (let round = 0; round < rounds; round++) {
      const socket = connect(door.port, '127.0.0.1');
      socket.on('error', () => undefined);
      await new Promise<void>((resolve) => socket.once('connect', resolve));
      socket.write(`GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\n\r\n`);
      socket.destroy();
    }
    await sleep(500);
    expectEveryStartedSessionEnded(recorded.slice(start));
    // Two places: a leak of two and this request would be refused (429).
    expect((await call(door.port, '/x', { token, headers: { connection: 'close' } })).status).toBe(200);
  });
});

/**
 * The event store's COPY text sent where it lies (5c57603), fed what agents choose: texts with
 * COPY's specials, its end-of-data marker, U+0000 and lone surrogates, long enough that a batch
 * spans several CopyData messages; one event in the middle PostgreSQL refuses (its parts are then
 * written again, their chain room rewritten), and a batch redelivered in part (its rows no longer
 * back to back). Every chain verifies and every stored row says what was hashed.
 */
describe('the event store writing agent texts in place', () => {
  const run = randomUUID().slice(0, 8);
  const database = `sluice_session2_store_${run}`;
  let store: EventStore;

  beforeAll(async () => {
    store = await openEventStore({ url: `postgres://postgres@127.0.0.1:5432/${database}` });
  });
  afterAll(async () => {
    await store?.close();
    await dropDatabases([database]);
  });

  const AGENT_TEXTS = ['tab\there', 'line\nbreak\r\n', '\\.', '\n\\.\n', 'back\\slash\\', '\\N', 'nul\u0000byte', 'lone \ud800 surrogate', '\u2028\u2029\u0085', '\u007f\u001b[31m', '😀 é'];
  let counter = 0;
  const executed = (session: string, text: string, time = new Date()): CloudEvent => {
    counter += 1;
    const id = `${run}-${counter}`;
    return buildEvent('command.executed', {
      id,
      source: 'proxy',
      subject: session,
      time,
      data: {
        action: 'read', command: text, commandId: `${text}${counter}`, decision: 'allow', durationMs: 1, ok: true, outcome: 'OK', protocol: 'redis',
        reason: text, resource: text, result: { bytes: text.length, columns: [text], maskedCounts: {}, rowCount: 1, rows: [[text]], truncated: false }, risk: 'low', rule: 'r',
        // Not a member of command.executed's data, but of what the store indexes (subject_sub): as a foreign publisher could write it.
        ...({ subject: { sub: text, groups: [text], issuer: text } } as object),
      },
    });
  };

  it('stores a batch of several CopyData messages with a refused event and a redelivered part, every chain verifying', async () => {
    const sessions = [`${run}-a\t1`, `${run}-b\\.`, `${run}-c`];
    const filler = 'x'.repeat(700);
    const events = Array.from({ length: 1_800 }, (_, index) => executed(sessions[index % 3]!, `${AGENT_TEXTS[index % AGENT_TEXTS.length]}${filler}`));
    // A time PostgreSQL cannot store: refused alone, the rest stored around it in order.
    events.splice(900, 0, executed(sessions[0]!, 'year 10000', new Date('+010000-01-01T00:00:00Z')));
    const result = await store.appendStorable(await store.prepare(events, () => 'proxy'));
    expect(result.stored).toBe(1_800);
    expect(result.refused.map((refused) => refused.id)).toEqual([events[900]!.id]);
    expect(await store.verify()).toMatchObject({ ok: true, events: 1_800 });

    // Half of it again with new events between: the COPY refuses the stored ids, the retry skips them.
    const again = [...events.slice(0, 300).filter((_, index) => index % 2 === 0), ...Array.from({ length: 150 }, (_, index) => executed(sessions[index % 3]!, AGENT_TEXTS[index % AGENT_TEXTS.length]!))];
    expect(await store.append(await store.prepare(again, () => 'proxy'))).toEqual({ stored: 150, duplicates: 150 });
    expect(await store.verify()).toMatchObject({ ok: true, events: 1_950 });
    for (const session of sessions) {
      const stored = await store.sessionEvents(session);
      expect(stored).toHaveLength(650);
      expect(stored.map((event) => (event.data as { command: string }).command.replace(filler, ''))).toEqual(
        [...events, ...again.slice(150)].filter((event) => event.subject === session && event !== events[900]).map((event) => (event.data as { command: string }).command.replace(filler, '').replace('\u0000', '\ufffd').replace('\ud800', '\ufffd')),
      );
    }
  }, 120_000);
});
