import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import postgres from 'postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeBind, encodeDescribe, encodeExecute, encodeParse, encodeQuery, encodeSync } from '@sluice/codec-pg';
import { parseConfig } from '@sluice/config';
import { openClient, usePostgresFrontDoor, type RawPostgresSession, sqlState } from './support/postgres-proxy-harness.js';

/**
 * What the drivers' own test suites (node-postgres, postgres.js; bench/driver-suites.ts) found
 * that worked direct and not through Sluice, each tried direct and through Sluice with a rule
 * allowing everything a writer does: a cursor DECLAREd and used in one batch, a statement of more
 * than 32767 parameters, a statement_timeout of a few milliseconds asked for at startup.
 */

const database = `sluice_pg_drivers_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
const RESOURCE = 'drivers-db';

const frontDoor = usePostgresFrontDoor({
  config: parseConfig({
    resources: [{ name: RESOURCE, type: 'postgres', listen: '127.0.0.1:0', target: { host: '127.0.0.1', database }, credentials: { username: 'postgres' } }],
    masking: { profiles: { pii: { detectors: ['email'], strategy: 'redact' } } },
    rules: [
      { name: 'writers-change', effect: 'allow', subjects: { groups: ['writers'] }, actions: ['read', 'write', 'ddl'] },
      { name: 'readers-masked', effect: 'allow', subjects: { groups: ['readers'] }, actions: ['read'], mask: 'pii' },
      { name: 'no-secrets', effect: 'deny', tables: ['public.secrets'] },
      { name: 'never-admin', effect: 'deny', actions: ['admin'] },
    ],
  }),
  database,
  hashKey: 'driver-suites',
  setupSql: `create table numbers (n int);
    create table contacts (id int, email text);
    insert into contacts values (1, 'ann@example.com'), (2, 'bob@example.com'), (3, 'cy@example.com');
    create table secrets (id int, note text);
    insert into secrets values (1, 'the launch code');`,
});

/** The same raw protocol session straight to the server and through Sluice (in `groups`), in that order. */
const rawPair = (groups = ['writers']): Promise<[RawPostgresSession, RawPostgresSession]> => frontDoor.rawPair(groups);

/** Sends the messages and waits for `readies` more ReadyForQuery. */
const step = async (session: RawPostgresSession, messages: Buffer[], readies = 1): Promise<void> => {
  const ready = session.count('ReadyForQuery');
  session.send(...messages);
  await session.readyCount(ready + readies);
};

const extended = (text: string, rows = 0): Buffer[] => [encodeParse('', text), encodeBind('', ''), encodeExecute('', rows)];

describe('driver suites: a cursor DECLAREd and used in one batch', () => {
  it('runs DECLARE, FETCH, MOVE and CLOSE of a cursor in one simple Query, as direct', async () => {
    const seen: string[][] = [];
    for (const session of await rawPair()) {
      await step(session, [encodeQuery('begin; declare c cursor for select g from generate_series(1, 5) g; fetch 2 from c; move 1 in c; fetch all from c; close c; commit')]);
      seen.push(session.summary());
    }
    expect(seen[0]).toEqual([
      'CommandComplete BEGIN',
      'CommandComplete DECLARE CURSOR',
      'RowDescription g',
      'DataRow 1',
      'DataRow 2',
      'CommandComplete FETCH 2',
      'CommandComplete MOVE 1',
      'RowDescription g',
      'DataRow 4',
      'DataRow 5',
      'CommandComplete FETCH 2',
      'CommandComplete CLOSE CURSOR',
      'CommandComplete COMMIT',
      'ReadyForQuery I',
    ]);
    expect(seen[1]).toEqual(seen[0]);
  });

  it('runs a pipeline that DECLAREs a cursor, then Describes and Executes its portal and FETCHes from it before the Sync, as direct', async () => {
    const seen: string[][] = [];
    for (const session of await rawPair()) {
      await step(session, [
        ...extended('begin'),
        ...extended("declare p cursor for select g, 'row ' || g as label from generate_series(1, 4) g"),
        encodeDescribe('P', 'p'),
        encodeExecute('p', 2),
        ...extended('fetch 1 from p'),
        encodeExecute('p'),
        ...extended('commit'),
        encodeSync(),
      ]);
      seen.push(session.summary());
    }
    expect(seen[0]).toContain('DataRow 3|row 3');
    expect(seen[0]).toContain('PortalSuspended');
    expect(seen[0]!.at(-1)).toBe('ReadyForQuery I');
    expect(seen[1]).toEqual(seen[0]);
  });

  it("masks the rows of a cursor used in its DECLARE's pipeline with the DECLARE's profile, in the shape direct gives", async () => {
    const seen: string[][] = [];
    for (const session of await rawPair(['readers'])) {
      await step(session, [
        ...extended('begin'),
        ...extended('declare m cursor for select id, email from contacts order by id'),
        encodeDescribe('P', 'm'),
        encodeExecute('m', 1),
        ...extended('fetch 1 from m'),
        encodeExecute('m'),
        ...extended('commit'),
        encodeSync(),
      ]);
      seen.push(session.summary());
    }
    const [direct, sluice] = seen as [string[], string[]];
    expect(direct.filter((line) => line.includes('@example.com'))).toHaveLength(3);
    expect(sluice.join(' ')).not.toContain('@example.com');
    const shape = (lines: string[]) => lines.map((line) => line.replace(/^(DataRow \d+)\|.*$/, '$1'));
    expect(shape(sluice)).toEqual(shape(direct));
  });

  it('refuses a whole batch whose DECLARE is denied, the FETCH of that cursor with it, and nothing reaches the target', async () => {
    const [, sluice] = await rawPair();
    await step(sluice, [encodeQuery('begin; declare s cursor for select note from secrets; fetch all from s')]);
    await step(sluice, [encodeQuery('rollback')]);
    expect(sluice.errors().map((e) => e.C)).toEqual(['42501']);
    expect(sluice.summary().some((line) => line.includes('launch code'))).toBe(false);
    await step(sluice, [...extended('declare s cursor for select note from secrets'), encodeDescribe('P', 's'), encodeExecute('s'), encodeSync()]);
    expect(sluice.errors().map((e) => e.C)).toEqual(['42501', '42501']);
    expect(sluice.summary().some((line) => line.includes('launch code'))).toBe(false);
  });
});

describe('driver suites: statements with more than 32767 parameters', () => {
  const opened: postgres.Sql[] = [];
  afterAll(async () => {
    for (const sql of opened) await sql.end({ timeout: 1 }).catch(() => {});
  });

  it('inserts 40000 rows as one statement of 40000 parameters (postgres.js), as direct', async () => {
    const insert = async (sql: postgres.Sql): Promise<number> => {
      opened.push(sql);
      const rows = Array.from({ length: 40_000 }, (_, n) => ({ n }));
      return (await sql`insert into numbers ${sql(rows)}`).count;
    };
    expect(await insert(postgres({ host: '127.0.0.1', port: 5432, user: 'postgres', database, max: 1, onnotice: () => {} }))).toBe(40_000);
    const token = await frontDoor.token(['writers']);
    expect(await insert(postgres({ host: '127.0.0.1', port: frontDoor.port, user: 'agent', database: RESOURCE, pass: token, max: 1, onnotice: () => {} }))).toBe(40_000);
    expect((await frontDoor.direct.query('select count(*)::int as n from numbers')).rows[0].n).toBe(80_000);
  });
});

describe('driver suites: a statement_timeout of a few milliseconds at startup', () => {
  const clients: pg.Client[] = [];
  afterAll(async () => {
    for (const client of clients) await client.end().catch(() => {});
  });

  it('connects with statement_timeout 1 ms (node-postgres) and the server applies it to the first query, as direct', async () => {
    const token = await frontDoor.token(['writers']);
    const configs: pg.ClientConfig[] = [
      { host: '127.0.0.1', port: 5432, user: 'postgres', database, statement_timeout: 1 },
      { host: '127.0.0.1', port: frontDoor.port, user: 'agent', database: RESOURCE, password: token, statement_timeout: 1 },
    ];
    const seen: unknown[] = [];
    for (const config of configs) {
      const client = await openClient(config, clients);
      seen.push([await sqlState(client.query('select count(*) from generate_series(1, 3000000)')), (await client.query('show statement_timeout')).rows[0]]);
    }
    expect(seen[0]).toEqual(['57014', { statement_timeout: '1ms' }]);
    expect(seen[1]).toEqual(seen[0]);
  });
});
