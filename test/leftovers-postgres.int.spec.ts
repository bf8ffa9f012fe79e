import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { encodePasswordMessage, encodeStartupMessage } from '@sluice/codec-pg';
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
