import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { encodeBind, encodeExecute, encodeFlush, encodeParse, encodePasswordMessage, encodeQuery, encodeStartupMessage, encodeSync } from '@sluice/codec-pg';
import { parseConfig } from '@sluice/config';
import { createPolicy } from '@sluice/policy-engine';
import type { GovernancePorts } from '../services/proxy/src/ports.js';
import { enginePolicyPort, usePostgresFrontDoor, waitFor } from './support/postgres-proxy-harness.js';
import { RED_TEAM_RESOURCE, RED_TEAM_SEED_SQL, redTeamConfigInput } from './support/postgres-red-team.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * An agent that hangs up while its login is checked is found gone after each step of the login
 * (the token, the session policy, the target), in one place: recorded once as 'client closed
 * during login', its place among its subject's connections given back, and nothing more done for
 * it: a login whose agent left while its session policy was asked opens no target session.
 */
describe('a PostgreSQL agent hanging up while its session policy is asked', () => {
  const database = `leftovers_pg_${randomUUID().slice(0, 8)}`;
  const input = redTeamConfigInput(database, ['public.secrets']);
  const config = parseConfig({ ...input, resources: input.resources.map((resource) => ({ ...resource, limits: { maxConnectionsPerSubject: 1 } })) });
  /** The session policy asked so far, and a slow answer: the agent hangs up meanwhile. */
  const asked: string[] = [];
  const slowPolicy = (): GovernancePorts['policy'] => {
    const engine = enginePolicyPort(createPolicy(config.rules, config.resources, { approvalTimeoutMs: 60_000 }));
    return {
      ...engine,
      describeSession: async (subject, name) => {
        asked.push(subject.sub);
        await sleep(subject.sub === 'agent-readers' ? 300 : 0);
        return engine.describeSession(subject, name);
      },
    };
  };
  const frontDoor = usePostgresFrontDoor({ config, database, setupSql: RED_TEAM_SEED_SQL, hashKey: 'leftovers-pg', limitConnections: true, policyPort: slowPolicy });

  /** Sessions PostgreSQL established to the target database so far (the proxy's target sessions). */
  const targetSessions = async (): Promise<number> => {
    await frontDoor.direct.query('select pg_stat_clear_snapshot()');
    return (await frontDoor.direct.query('select sessions::int as n from pg_stat_database where datname = $1', [database])).rows[0].n;
  };

  it('is recorded once, opens no target session and gives its place back', async () => {
    const token = await frontDoor.token(['readers']);
    const before = frontDoor.events.length;
    const sessionsBefore = await targetSessions();
    const rounds = 3;
    for (let round = 0; round < rounds; round++) {
      const socket = connect(frontDoor.port, '127.0.0.1');
      socket.on('error', () => undefined);
      await new Promise<void>((resolve) => socket.once('connect', resolve));
      const count = asked.length;
      socket.write(Buffer.concat([encodeStartupMessage([['user', 'agent'], ['database', RED_TEAM_RESOURCE]]), encodePasswordMessage(token)]));
      await waitFor(() => asked.length > count, 5_000);
      socket.destroy();
    }
    const logins = () => frontDoor.events.slice(before).filter((event) => event.kind === 'session.started' || event.kind === 'session.rejected');
    await waitFor(() => logins().length >= rounds, 15_000);
    await sleep(300);
    expect(logins().map((event) => [event.kind, event.data.reason])).toEqual(Array.from({ length: rounds }, () => ['session.rejected', 'client closed during login']));
    // Give PostgreSQL's statistics time to take in a session that might have been opened.
    await sleep(600);
    expect(await targetSessions()).toBe(sessionsBefore);
    // One place per subject: a leak and this login would be refused (53300).
    const client = await frontDoor.connect(['readers']);
    expect((await client.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
  });
});

/**
 * An agent that sends an Execute (extended protocol), reads its result and hangs up at once: what
 * it was sent is on the record as it happened (its rows returned, its completion with the
 * target's tag), never as a command that ended before the target answered.
 */
describe('a PostgreSQL agent hanging up right after an Execute\'s result', () => {
  const database = `leftovers_exec_${randomUUID().slice(0, 8)}`;
  const frontDoor = usePostgresFrontDoor({ config: parseConfig(redTeamConfigInput(database, ['public.secrets'])), database, setupSql: RED_TEAM_SEED_SQL, hashKey: 'leftovers-exec' });

  it.each([
    ['its ReadyForQuery', 'ReadyForQuery', true],
    ['its CommandComplete (Sync sent)', 'CommandComplete', true],
    ['its CommandComplete (Flush, no Sync)', 'CommandComplete', false],
  ] as const)('records the completion as relayed when it hangs up on %s', async (_, upTo, sync) => {
    for (let round = 0; round < 5; round++) {
      const session = await frontDoor.openRaw(['readers']);
      const before = frontDoor.events.length;
      const text = `select g as n, 'row ' || g as label from generate_series(1, ${10 + round}) g`;
      session.send(encodeParse('', text), encodeBind('', ''), encodeExecute(''), sync ? encodeSync() : encodeFlush());
      await waitFor(() => session.count(upTo) >= (upTo === 'ReadyForQuery' ? 2 : 1) || session.closed, 5_000);
      session.socket.destroy();
      expect(session.count('CommandComplete')).toBe(1);
      const mine = () => frontDoor.events.slice(before);
      await waitFor(() => mine().some((event) => event.kind === 'session.ended'), 5_000);
      const decided = mine().filter((event) => event.kind === 'command.decided');
      expect(decided).toHaveLength(1);
      const id = decided[0]!.data.commandId;
      const completed = mine().filter((event) => event.kind === 'command.completed' && event.data.commandId === id);
      expect(completed.map((event) => [event.data.ok, event.data.outcome])).toEqual([[true, `SELECT ${10 + round}`]]);
      const returned = mine().filter((event) => event.kind === 'result.returned' && event.data.commandId === id);
      expect(returned.map((event) => event.data.rowCount)).toEqual([10 + round]);
    }
  });

  it.each(['Execute', 'Query'] as const)('records the rows relayed before it hung up mid-result (%s), and the completion as unknown', async (way) => {
    for (let round = 0; round < 3; round++) {
      const session = await frontDoor.openRaw(['readers']);
      const before = frontDoor.events.length;
      const text = `select g as n, repeat('x', 200) as filler from generate_series(1, 200000) g`;
      if (way === 'Execute') session.send(encodeParse('', text), encodeBind('', ''), encodeExecute(''), encodeSync());
      else session.send(encodeQuery(text));
      await waitFor(() => session.count('DataRow') > 0 || session.closed, 5_000);
      session.socket.destroy();
      const relayed = session.count('DataRow');
      expect(session.count('CommandComplete')).toBe(0);
      const mine = () => frontDoor.events.slice(before);
      await waitFor(() => mine().some((event) => event.kind === 'session.ended'), 5_000);
      const id = mine().find((event) => event.kind === 'command.decided')!.data.commandId;
      const completed = mine().filter((event) => event.kind === 'command.completed' && event.data.commandId === id);
      expect(completed.map((event) => event.data.ok)).toEqual([false]);
      // Rows left the proxy: they are on the record (at least those the agent got), masked as sent.
      const returned = mine().filter((event) => event.kind === 'result.returned' && event.data.commandId === id);
      expect(returned).toHaveLength(1);
      expect(Number(returned[0]!.data.rowCount)).toBeGreaterThanOrEqual(relayed);
    }
  });
});
