import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { encodeBind, encodeDescribe, encodeExecute, encodeParse, encodePasswordMessage, encodeQuery, encodeStartupMessage, encodeSync } from '@sluice/codec-pg';
import postgres from 'postgres';
import { COLUMN_REDACTED } from '@sluice/masking-engine';
import { useTestPolicyService } from './support/policy-service.js';
import { streamOversizedPassword, usePostgresFrontDoor, waitFor } from './support/postgres-proxy-harness.js';
import { expectNoRawSsn, RED_TEAM_SEED_SQL, redTeamConfig, redTeamConfigInput } from './support/postgres-red-team.js';

/**
 * Fourth red team of the PostgreSQL front door, against issue 12's and 19's data-path changes: the
 * synchronous fast path of a simple query whose decision the policy port has cached (also by the
 * text's shape), result columns reused per RowDescription, covered-column answers kept per shape,
 * cursors DECLAREd and used within one pipeline, bytes pipelined into the startup, and the
 * session-start read run without the client's statement_timeout. The proxy asks a real policy
 * service over gRPC (its client caches decisions as in production), so the fast path is the path
 * these probes take once a shape has been decided. Read-only agent (`readers`), `pii` masks any
 * column named like ssn, public.secrets denied.
 */

const database = `sluice_redteam4_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
const policyService = useTestPolicyService('redteam4', redTeamConfigInput(database, ['public.secrets']));

const frontDoor = usePostgresFrontDoor({
  config: redTeamConfig(database, ['public.secrets']),
  database,
  hashKey: 'redteam4-int',
  setupSql: `${RED_TEAM_SEED_SQL}
     create schema shadow;
     create table shadow.secrets (id int, secret text);
     insert into shadow.secrets values (1, 'shadow-value'), (2, 'shadow-value');
     create function public.peek(int) returns text language sql as $$ select 'harmless' $$;
     create function shadow.peek(int) returns text language sql as $$ select secret from public.secrets where id = $1 $$;
`,
  policyPort: () => policyService.port,
});

/** One extended-protocol statement run unnamed: Parse, Bind, Execute. */
const step = (text: string): Buffer[] => [encodeParse('', text), encodeBind('', ''), encodeExecute('')];

const victimRows = async (): Promise<number> => Number((await frontDoor.direct.query('select count(*)::int as n from victim')).rows[0].n);

describe('the fast path answers a new constant only where the constant cannot change the decision', () => {
  it('takes the fast path at all: a shape decided once is answered from the port cache', async () => {
    const session = await frontDoor.openRaw(['readers']);
    await session.run('select name from people where id = 1');
    const hits = policyService.port.stats().hits;
    await session.run('select name from people where id = 2', 'select name from people where id = 3');
    expect(policyService.port.stats().hits).toBeGreaterThan(hits);
    expect(session.errors()).toEqual([]);
  });

  it('refuses current_setting of a credential setting after current_setting of a harmless one was decided', async () => {
    // The classifier refuses current_setting('primary_conninfo') by its constant: a decision of
    // current_setting('application_name') kept under the shape current_setting($1) must not answer it.
    const session = await frontDoor.openRaw(['readers']);
    await session.run("select current_setting('application_name')", "select current_setting('application_name')");
    expect(session.errors()).toEqual([]);
    await session.run("select current_setting('primary_conninfo')");
    expect(session.errors().map((e) => e.C)).toEqual(['42501']);
  });

  it.each([
    ['COMMIT', ['commit']],
    ['ROLLBACK', ['rollback']],
    ['a failed statement and ROLLBACK', ['select 1/0', 'rollback']],
  ])('denies public.secrets once %s ends a SET LOCAL search_path under which secrets was shadow.secrets', async (_, end) => {
    // Under `search_path = shadow` the name secrets is shadow.secrets, which no rule denies. The
    // decision kept for that path must not answer once the server is back on public.
    const session = await frontDoor.openRaw(['readers']);
    await session.run('begin', 'set local search_path = shadow', 'select id from secrets where id = 1', 'select id from secrets where id = 2');
    expect(session.errors()).toEqual([]);
    expect(session.rows()).toEqual([['1'], ['2']]);
    // Row 3 is only in public.secrets.
    await session.run(...end, 'select id from secrets where id = 3');
    expect(session.rows()).toEqual([['1'], ['2']]);
    expect(session.errors().at(-1)?.C).toBe('42501');
  });

  it('denies the public table after a plain SET search_path rolled back, all sent at once', async () => {
    const session = await frontDoor.openRaw(['readers']);
    session.send(
      encodeQuery('begin'),
      encodeQuery('set search_path = shadow'),
      encodeQuery('select id from secrets where id = 1'),
      encodeQuery('select id from secrets where id = 2'),
      encodeQuery('rollback'),
      encodeQuery('select id from secrets where id = 3'),
    );
    await session.readyCount(7);
    expect(session.rows()).toEqual([['1'], ['2']]);
    expect(session.errors().map((e) => e.C)).toEqual(['42501']);
  });

  it.each([
    ['SET search_path', 'set search_path = public'],
    ['set_config', "select pg_catalog.set_config('search_path', 'public', false)"],
  ])('denies public.secrets read after an Execute of %s earlier in the same pipeline', async (_, change) => {
    // Under `search_path = shadow`, `secrets` is shadow.secrets; the pipeline's first Execute puts
    // the server on public before its second statement runs.
    const session = await frontDoor.openRaw(['readers']);
    await session.run('set search_path = shadow', 'select id from secrets where id = 1', 'select id from secrets where id = 2');
    expect(session.rows()).toEqual([['1'], ['2']]);
    session.send(...step(change), ...step('select id from secrets where id = 3'), encodeSync());
    await session.readyCount(5);
    expect(session.rows().filter((row) => row[0] === '3')).toEqual([]);
  });

  it('denies public.secrets through a statement prepared under search_path shadow, Bound after SET search_path = public', async () => {
    // The server analyses a prepared statement again under the path in force when it runs.
    const session = await frontDoor.openRaw(['readers']);
    await session.run('set search_path = shadow');
    session.send(encodeParse('s1', 'select id from secrets where id = 3'), encodeSync());
    await session.readyCount(3);
    await session.run('set search_path = public');
    session.send(encodeBind('', 's1'), encodeExecute(''), encodeSync());
    await session.readyCount(5);
    expect(session.rows()).toEqual([]);
    expect(session.errors().map((e) => e.C)).toEqual(['42501']);
  });

  it('masks an error text that carries the covered value, under a new literal each time', async () => {
    const session = await frontDoor.openRaw(['readers']);
    for (let n = 1; n <= 3; n++) await session.run(`select name from people where id = 1 and ssn::int = ${n}`);
    expect(session.errors()).toHaveLength(3);
    expectNoRawSsn(session.received.toString('latin1'));
  });

  it('refuses a write of a shape whose read was decided (writable CTE, same constants)', async () => {
    const session = await frontDoor.openRaw(['readers']);
    await session.run('select x from victim where id = 1', 'select x from victim where id = 2');
    await session.run('with d as (delete from victim where id = 1 returning x) select x from d');
    expect(session.errors().map((e) => e.C)).toEqual(['42501']);
    expect(await victimRows()).toBe(5);
  });
});

describe('the same probes through real drivers', () => {
  it('node-postgres warms current_setting($1) up; psql then asks for a credential setting (one cache for both)', async () => {
    const client = await frontDoor.connect(['readers']);
    for (let i = 0; i < 2; i++) expect((await client.query("select current_setting('application_name') as v")).rows).toHaveLength(1);
    const out = await frontDoor.psql("select current_setting('primary_conninfo')");
    expect(out).toContain('permission denied');
    await expect(client.query("select current_setting('primary_conninfo')")).rejects.toMatchObject({ code: '42501' });
  });

  it('postgres.js pipelines a SET search_path between two reads of secrets: the second does not read public.secrets', async () => {
    const sql = postgres({ host: '127.0.0.1', port: frontDoor.port, user: 'agent', database: 'redteam-db', password: await frontDoor.token(['readers']), ssl: false, max: 1, onnotice: () => {} });
    try {
      await sql.unsafe('set search_path = shadow');
      const [first, , second] = await Promise.allSettled([
        sql`select id from secrets where id = ${1}`,
        sql.unsafe('set search_path = public'),
        sql`select id from secrets where id = ${3}`,
      ]);
      expect(first).toMatchObject({ status: 'fulfilled' });
      expect(second).toMatchObject({ status: 'rejected', reason: { code: '42501' } });
    } finally {
      await sql.end({ timeout: 1 });
    }
  });
});

describe('result columns reused for the same RowDescription', () => {
  it('masks an expression column of people after the same column description came from orders', async () => {
    // Both describe one text column `item` with no table: the same RowDescription bytes.
    const session = await frontDoor.openRaw(['readers']);
    await session.run('select upper(item) as item from orders where id = 1', 'select upper(item) as item from orders where id = 1');
    await session.run('select upper(ssn) as item from people where id = 1');
    expect(session.rows()).toEqual([['PUBLIC-ORDER'], ['PUBLIC-ORDER'], [COLUMN_REDACTED]]);
    expectNoRawSsn(session.received.toString('latin1'));
  });
});

describe('a cursor DECLAREd earlier in the pipeline', () => {
  it('masks a portal Execute of c after CLOSE and a re-DECLARE of c with another query in the same pipeline', async () => {
    const session = await frontDoor.openRaw(['readers']);
    await session.run('begin');
    session.send(
      ...step('declare c cursor for select item from orders'),
      ...step('close c'),
      ...step('declare c cursor for select upper(ssn) as item from people'),
      encodeDescribe('P', 'c'),
      encodeExecute('c'),
      encodeSync(),
    );
    await session.readyCount(3);
    expectNoRawSsn(session.received.toString('latin1'));
    expect(session.rows()).toEqual([[COLUMN_REDACTED]]);
  });

  it('refuses an Execute of c after a DECLARE of c the policy refused, in the same pipeline', async () => {
    const session = await frontDoor.openRaw(['readers']);
    await session.run('begin');
    session.send(...step('declare c cursor for select secret from secrets'), encodeExecute('c'), encodeSync());
    await session.readyCount(3);
    expect(session.errors().map((e) => e.C)).toContain('42501');
    expect(session.received.toString('latin1')).not.toContain('TOP-SECRET-VALUE');
  });

  it('masks c after a DECLARE of c that failed on the server (c already held) and a FETCH of it', async () => {
    const session = await frontDoor.openRaw(['readers']);
    await session.run('begin', 'declare c cursor for select upper(ssn) as item from people');
    session.send(...step('declare c cursor for select item from orders'), encodeExecute('c'), encodeSync());
    await session.readyCount(3);
    await session.run('rollback', 'begin', 'declare c cursor for select upper(ssn) as item from people', 'fetch all from c');
    expect(session.rows()).toEqual([[COLUMN_REDACTED]]);
    expectNoRawSsn(session.received.toString('latin1'));
  });

  it('masks a WITH HOLD cursor declared in a pipeline, after COMMIT, read by MOVE and FETCH ABSOLUTE', async () => {
    const session = await frontDoor.openRaw(['readers']);
    await session.run('begin');
    session.send(...step('declare h scroll cursor with hold for select upper(ssn) as item from people'), encodeExecute('h'), encodeSync());
    await session.readyCount(3);
    await session.run('commit', 'move absolute 0 in h', 'fetch absolute 1 from h', 'close h');
    session.send(...step('declare h cursor with hold for select item from orders'), ...step('fetch absolute 1 from h'), encodeSync());
    await session.readyCount(8);
    expectNoRawSsn(session.received.toString('latin1'));
    expect(session.rows()).toEqual([[COLUMN_REDACTED], [COLUMN_REDACTED], ['public-order']]);
  });

  it('masks a portal Bound under the name of a cursor DECLAREd earlier in the pipeline', async () => {
    // The server refuses the Bind (a cursor named c exists): the Execute after it is skipped.
    const session = await frontDoor.openRaw(['readers']);
    await session.run('begin');
    session.send(...step('declare c cursor for select item from orders'), encodeParse('s', 'select upper(ssn) as item from people'), encodeBind('c', 's'), encodeExecute('c'), encodeSync());
    await session.readyCount(3);
    expectNoRawSsn(session.received.toString('latin1'));
  });
});

describe('bytes sent before the session has started', () => {
  const startup = encodeStartupMessage([['user', 'agent'], ['database', 'redteam-db']]);

  it('runs nothing sent with the startup before the password was asked for', async () => {
    const raw = await frontDoor.rawSocket();
    raw.socket.write(Buffer.concat([startup, encodeQuery('delete from victim'), encodePasswordMessage(await frontDoor.token(['readers'])), encodeQuery('delete from victim')]));
    await waitFor(() => raw.closed() || raw.received().includes('Z'));
    await new Promise((resolve) => setTimeout(resolve, 300));
    raw.socket.destroy();
    expect(await victimRows()).toBe(5);
  });

  it('refuses a write and the denied table pipelined after the password, and runs nothing after a bad token', async () => {
    for (const token of [await frontDoor.token(['readers']), 'not-a-token']) {
      const raw = await frontDoor.rawSocket();
      raw.socket.write(startup);
      await waitFor(() => raw.received().length > 0);
      raw.socket.write(Buffer.concat([encodePasswordMessage(token), encodeQuery('delete from victim'), encodeQuery('select secret from secrets'), encodeQuery('select ssn from people')]));
      await waitFor(() => raw.closed() || raw.received().filter((byte) => byte === 0x5a).length >= 4, 5_000).catch(() => undefined);
      raw.socket.destroy();
      const text = raw.received().toString('latin1');
      expect(text).not.toContain('TOP-SECRET-VALUE');
      expectNoRawSsn(text);
      expect(await victimRows()).toBe(5);
    }
  });

  it("holds no more than a token's worth before the login is answered: a password claiming 64 MiB ends the connection", async () => {
    const raw = await frontDoor.rawSocket();
    raw.socket.write(startup);
    await waitFor(() => raw.received().length > 0);
    // A stranger streams a "password" far past the longest token read at all (65,535 characters).
    await streamOversizedPassword(raw);
    await waitFor(() => raw.closed(), 5_000);
    expect(raw.received().toString('latin1')).toContain('08P01');
  });

  it('a login with pipelined statements of ordinary size still goes through', async () => {
    const raw = await frontDoor.rawSocket();
    raw.socket.write(startup);
    await waitFor(() => raw.received().length > 0);
    raw.socket.write(Buffer.concat([encodePasswordMessage(await frontDoor.token(['readers'])), ...Array.from({ length: 20 }, (_, index) => encodeQuery(`select ${index} as n`))]));
    await waitFor(() => raw.received().filter((byte) => byte === 0x5a).length >= 21, 10_000);
    expect(raw.closed()).toBe(false);
    raw.socket.destroy();
  });
});

describe('the session-start read without the client statement_timeout', () => {
  it("gives the session its startup statement_timeout back, and the agent's setting skips no check", async () => {
    const raw = await frontDoor.rawSocket();
    raw.socket.write(encodeStartupMessage([['user', 'agent'], ['database', 'redteam-db'], ['options', '-c statement_timeout=4321']]));
    await waitFor(() => raw.received().length > 0);
    raw.socket.write(Buffer.concat([encodePasswordMessage(await frontDoor.token(['readers'])), encodeQuery('show statement_timeout'), encodeQuery('delete from victim')]));
    await waitFor(() => raw.closed() || raw.received().toString('latin1').includes('permission denied'), 5_000).catch(() => undefined);
    raw.socket.destroy();
    const text = raw.received().toString('latin1');
    expect(text).toContain('4321ms');
    expect(await victimRows()).toBe(5);
  });

  it('keeps no statement_timeout when the agent asked for none; one set later skips no check', async () => {
    const session = await frontDoor.openRaw(['readers']);
    await session.run('show statement_timeout');
    expect(session.rows()).toEqual([['0']]);
    await session.run('set statement_timeout = 1', 'delete from victim');
    expect(session.errors().map((e) => e.C)).toEqual(['42501']);
    expect(await victimRows()).toBe(5);
  });
});
