import { randomUUID } from 'node:crypto';
import postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '@sluice/config';
import { usePostgresFrontDoor } from './support/postgres-proxy-harness.js';

/**
 * A CancelRequest that arrives while the agent's statement is still with Sluice (decided, waiting
 * for Sluice's own search_path read, or held for a human) cancels that statement, as the server
 * cancels the statement it is running: postgres.js sends its cancel once the query before it has
 * completed, when direct the server is already running the cancelled one.
 */

const database = `sluice_fid_cancel_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
const RESOURCE = 'fid-cancel-db';

const frontDoor = usePostgresFrontDoor({
  config: parseConfig({
    resources: [{ name: RESOURCE, type: 'postgres', listen: '127.0.0.1:0', target: { host: '127.0.0.1', database }, credentials: { username: 'postgres' } }],
    rules: [
      { name: 'everything', effect: 'allow', subjects: { groups: ['all'] }, resources: [RESOURCE], actions: ['read', 'write', 'ddl', 'admin'] },
      { name: 'writes-held', effect: 'approve', subjects: { groups: ['held'] }, resources: [RESOURCE], actions: ['write'], approvers: { groups: ['dba'] } },
      { name: 'reads', effect: 'allow', subjects: { groups: ['held'] }, resources: [RESOURCE], actions: ['read'] },
    ],
  }),
  database,
  hashKey: 'fid-cancel-int',
  approvalOutcome: 'held',
  setupSql: 'create table t (id int)',
}, 120_000);

const connect = async (way: 'direct' | 'sluice', groups = ['all']): Promise<postgres.Sql> =>
  way === 'direct'
    ? postgres({ host: '127.0.0.1', port: 5432, user: 'postgres', database, max: 1, onnotice: () => {} })
    : postgres({ host: '127.0.0.1', port: frontDoor.port, user: 'agent', database: RESOURCE, pass: await frontDoor.token(groups), max: 1, onnotice: () => {} });

describe('cancelling a pipelined query, postgres.js, direct and through Sluice', () => {
  it('cancels the second of two pipelined queries and leaves the first to complete', async () => {
    const seen: Record<'direct' | 'sluice', unknown[]> = { direct: [], sluice: [] };
    for (const way of ['direct', 'sluice'] as const) {
      const sql = await connect(way);
      try {
        await sql`select 1`;
        // A call with arguments: Sluice reads search_path again before it decides the next query.
        const first = sql`select pg_sleep(0.5) as first`.execute();
        const second = sql`select pg_sleep(3) as second`;
        setTimeout(() => void second.cancel(), 100);
        const started = Date.now();
        const error = (await second.catch((e: unknown) => e)) as { code?: string };
        seen[way].push(error.code, (await first).length, Date.now() - started < 2500);
        seen[way].push((await sql`select 2 as after`)[0]);
      } finally {
        await sql.end();
      }
    }
    expect(seen.direct).toEqual(['57014', 1, true, { after: 2 }]);
    expect(seen.sluice).toEqual(seen.direct);
  }, 60_000);
});

describe('cancelling a statement held for approval', () => {
  it('answers it 57014 at once, gives up the hold, and runs nothing of it', async () => {
    const sql = await connect('sluice', ['held']);
    try {
      await sql`select 1`;
      const insert = sql`insert into t values (42)`;
      setTimeout(() => void insert.cancel(), 300);
      const error = (await insert.catch((e: unknown) => e)) as { code?: string; message?: string };
      expect(error).toMatchObject({ code: '57014', message: 'canceling statement due to user request' });
      expect((await sql`select count(*)::int as n from t`)[0]).toEqual({ n: 0 });
    } finally {
      await sql.end();
    }
    expect(frontDoor.approvalRequests.some((command) => command.includes('insert into t'))).toBe(true);
    expect((await frontDoor.direct.query('select count(*)::int as n from t where id = 42')).rows[0].n).toBe(0);
  }, 60_000);
});
