import { randomUUID } from 'node:crypto';
import type { Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RuleConfig } from '@sluice/config';
import { COLUMN_REDACTED } from '@sluice/masking-engine';
import type { GovernancePorts } from '../services/proxy/src/ports.js';
import { createRedisAdapter } from '../services/proxy/src/redis/adapter.js';
import { compilePiiMasking, expectNoClearSsn, listenOnLoopback, UNDETECTABLE_SSN } from './support/engine-ports.js';
import { usePostgresFrontDoor } from './support/postgres-proxy-harness.js';
import { expectNoRawSsn, RED_TEAM_SEED_SQL, redTeamConfig } from './support/postgres-red-team.js';
import { rawRespSocket, showResp } from './support/raw-socket.js';
import { redTeamKeyRules, seedRedTeamKeys, startRedisFrontDoor, type RedisFrontDoor } from './support/redis-proxy-harness.js';

/**
 * Red team of the governance core shared by the front doors (issue 15): an agent whose writes are
 * held for approval, and whose reads are masked, gets its held command granted. The grant lets
 * the command run once; it must not unmask what the agent's grants mask, nor skip audit.wait: ack.
 */

describe("PostgreSQL: a granted command is masked as the agent's grants mask it", () => {
  const database = `sluice_rtcore_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
  const frontDoor = usePostgresFrontDoor({ config: redTeamConfig(database, []), database, hashKey: 'redteam-core', setupSql: RED_TEAM_SEED_SQL, approvalOutcome: 'granted' });

  it('masks a read sent in one message with a write that needs a human (approval of the write, not of the SSNs)', async () => {
    const client = await frontDoor.connect(['changers']);
    // The DELETE deletes nothing, yet is high risk: the whole message is held, then granted.
    const results = (await client.query('SELECT ssn FROM people; DELETE FROM victim WHERE x = x AND false')) as unknown as { rows: unknown[] }[];
    expect(frontDoor.approvalRequests).toHaveLength(1);
    expect(results[0]!.rows).toEqual([{ ssn: COLUMN_REDACTED }]);
    expectNoRawSsn(results);
    const cte = await client.query('WITH d AS (DELETE FROM victim WHERE x = x AND false RETURNING id) SELECT ssn FROM people');
    expect(cte.rows).toEqual([{ ssn: COLUMN_REDACTED }]);
  });
});

describe('Redis: a granted command is masked and waits for its audit acknowledgement', () => {
  const prefix = `sluice-rtcore:${randomUUID().slice(0, 8)}`;
  const key = (name: string) => `${prefix}:${name}`;
  const rules = [
    ...redTeamKeyRules(key),
    { name: 'users-need-a-human', effect: 'approve', subjects: { groups: ['support-agents'] }, keys: [key('user:*')], approvers: { groups: ['dba'] } },
  ] as RuleConfig[];
  let door: RedisFrontDoor;
  let token: string;
  const servers: Server[] = [];

  /** The Redis adapter with every held command granted, and the audit port's acknowledgement as given. */
  const grantingDoor = async (acknowledged: GovernancePorts['audit']['acknowledged'], wait: 'ack' | undefined): Promise<number> => {
    const ports = door.createPorts();
    const granting: GovernancePorts = {
      ...ports,
      approvals: {
        request: async () => ({ approvalId: `appr-${randomUUID().slice(0, 8)}`, expiresAt: new Date(Date.now() + 60_000) }),
        awaitDecision: async () => ({ outcome: 'granted', approvers: ['dba-test'], reason: '' }),
        consume: async () => true,
      },
      audit: { ...ports.audit, ...(acknowledged ? { acknowledged } : {}) },
    };
    const adapter = createRedisAdapter({ ...door.resource, ...(wait ? { audit: { wait } } : {}) }, { secretsDir: process.cwd() });
    const { server, port } = await listenOnLoopback(adapter, granting);
    servers.push(server);
    return port;
  };

  const agentOn = async (port: number) => {
    const client = await rawRespSocket(port);
    door.sockets.push(client.socket);
    client.send('AUTH', token);
    expect(showResp(await client.read())).toBe('OK');
    return client;
  };

  beforeAll(async () => {
    door = await startRedisFrontDoor({ keyPrefix: prefix, rules, masking: compilePiiMasking('redteam-core'), recorded: [] });
    token = await door.idp.mint({ sub: 'support-bot', groups: ['support-agents'] });
    await seedRedTeamKeys(door.direct, key);
  });

  afterAll(async () => {
    // Destroys the agents' sockets (on every listener) before the granting listeners close.
    await door.close();
    for (const server of servers) await new Promise((resolve) => server.close(resolve));
  });

  it("masks the reply of a read an approve rule held, with the allow rule's profile", async () => {
    const client = await agentOn(await grantingDoor(async () => {}, undefined));
    client.send('HGET', key('user:1'), 'ssn');
    const reply = showResp(await client.read());
    expectNoClearSsn(reply);
    client.send('HGETALL', key('user:1'));
    expectNoClearSsn(showResp(await client.read()));
    expect(await door.direct.hGet(key('user:1'), 'ssn')).toBe(UNDETECTABLE_SSN);
  });

  it('refuses a granted command whose record the bus did not acknowledge (audit.wait: ack)', async () => {
    const client = await agentOn(await grantingDoor(() => Promise.reject(new Error('bus down')), 'ack'));
    client.send('HGET', key('user:1'), 'name');
    expect(showResp(await client.read())).toMatch(/^ERR audit unavailable/);
    // The session goes on: an allowed read is refused for the same reason, not hung.
    client.send('GET', key('pub:1'));
    expect(showResp(await client.read())).toMatch(/^ERR audit unavailable/);
  });
});

describe('audit.wait: ack across sessions', () => {
  // Open (availability, fails closed): createAuditPort's acknowledged(sessionId) waits for
  // publisher.acknowledged(), i.e. every event published so far by every session of the proxy, and
  // rejects when the bus refused any one of them even reduced. So one agent that floods large
  // result events (each bounded, but many) can push another session's ack past ACK_TIMEOUT_MS, and
  // one event the bus refuses makes every other session's next command fail with audit unavailable.
  // The fix is per-session acknowledgement in the publisher (the highest ordinal per subject and the
  // refusals per subject), which is a change to libs/event-bus's batching, not to the doors.
  it.todo("refuses only the session whose own events were not acknowledged, never another agent's");
});
