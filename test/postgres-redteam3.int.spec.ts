import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { encodeBind, encodeCopyData, encodeCopyDone, encodeExecute, encodeFlush, encodeParse, encodeQuery, encodeSync } from '@sluice/codec-pg';
import { COLUMN_REDACTED } from '@sluice/masking-engine';
import { usePostgresFrontDoor, type RawPostgresSession, waitFor } from './support/postgres-proxy-harness.js';
import { expectNoRawSsn, RAW_SSN, RED_TEAM_SEED_SQL, redTeamConfig } from './support/postgres-red-team.js';

/**
 * Third red team of the PostgreSQL front door, against the day's data-path changes: pipelines
 * forwarded without waiting for Sync, SQL cursors used as portals, the real backend pid with the
 * proxy's own cancel key, SQL_ASCII, more startup parameters, target catalog facts and covered-
 * value flow checks. Same fixture as the first two (`912-34-5678` only the column rule can mask).
 */

const database = `sluice_redteam3_${randomUUID().replaceAll('-', '').slice(0, 12)}`;

const frontDoor = usePostgresFrontDoor({
  config: redTeamConfig(database, ['public.secrets']),
  database,
  hashKey: 'redteam3-int',
  setupSql: `${RED_TEAM_SEED_SQL}
     create function tag(variadic ps people[]) returns text language sql as $$ select ($1[1]).ssn $$;
     create function peek(variadic os orders[]) returns text language sql as $$ select secret from secrets limit 1 $$;
     create table badges (id int, ssn text unique deferrable initially deferred);
     create sequence tally;`,
});

describe('a FETCH reads the cursor the server holds, not a DECLARE of the name the server has since dropped', () => {
  // The proxy kept each confirmed DECLARE's text by name for FETCH lineage, past CLOSE, the end of
  // the transaction and ROLLBACK TO. A protocol portal Bound under the name (cursors and portals
  // share the namespace) was then fetched by SQL FETCH with the old DECLARE's lineage:
  // `upper(ssn) AS item` passed as orders.item, in clear.
  const PORTAL = 'select upper(ssn) as item from people';
  it.each([
    ['CLOSE', 'begin; declare c cursor for select item from orders; close c'],
    ['COMMIT', 'begin; declare c cursor for select item from orders; commit; begin'],
    ['ROLLBACK TO', 'begin; savepoint a; declare c cursor for select item from orders; rollback to a'],
  ])('masks a portal bound as c after %s, fetched by SQL FETCH', async (_, before) => {
    const session = await frontDoor.openRaw(['readers']);
    session.send(encodeQuery(before));
    await session.readyCount(2);
    session.send(encodeParse('', PORTAL), encodeBind('c', ''), encodeSync());
    await session.readyCount(3);
    session.send(encodeQuery('fetch next from c'), encodeParse('', 'fetch all from c'), encodeBind('', ''), encodeExecute(''), encodeSync());
    await session.readyCount(5);
    expect(session.errors()).toEqual([]);
    expect(session.rows()).toEqual([[COLUMN_REDACTED]]);
    expectNoRawSsn(session.received.toString('latin1'));
  });

  it('masks a portal fetched by SQL FETCH that no DECLARE ever named', async () => {
    const session = await frontDoor.openRaw(['readers']);
    session.send(encodeQuery('begin'));
    await session.readyCount(2);
    session.send(encodeParse('', PORTAL), encodeBind('c', ''), encodeSync());
    await session.readyCount(3);
    session.send(encodeQuery('fetch all from c'));
    await session.readyCount(4);
    expect(session.rows()).toEqual([[COLUMN_REDACTED]]);
  });
});

describe('a simple query sent while the target skips to a Sync is not answered by a later one', () => {
  // After an extended-protocol error (the server's own, or a refusal sent up with a Flush) the
  // server discards every message up to the Sync, a Query too. The proxy still expected an answer
  // to such a Query, so the next query's rows were masked (and recorded) under its text:
  // `upper(ssn) AS item` came back in clear as `select item from orders`.
  const failures = [
    ['a refused Parse', [encodeParse('', 'delete from victim'), encodeFlush()]],
    ['a server error', [encodeParse('', 'select 1/0'), encodeBind('', ''), encodeExecute(''), encodeFlush()]],
  ] as const;
  const skipped = [encodeQuery('select 1 as a'), encodeQuery('select item from orders')];
  const leaking = encodeQuery('select upper(ssn) as item from people');

  it.each(failures)('masks the next query after %s, the skipped queries waiting for the error first', async (_, failing) => {
    const session = await frontDoor.openRaw(['readers']);
    session.send(...failing);
    await waitFor(() => session.count('ErrorResponse') === 1);
    session.send(...skipped);
    session.send(encodeSync(), leaking);
    await session.readyCount(3);
    expect(session.rows()).toEqual([[COLUMN_REDACTED]]);
    expectNoRawSsn(session.received.toString('latin1'));
  });

  it.each(failures)('masks the next query after %s, all sent at once', async (_, failing) => {
    const session = await frontDoor.openRaw(['readers']);
    session.send(...failing, ...skipped, encodeSync(), leaking);
    await session.readyCount(3);
    expect(session.rows()).toEqual([[COLUMN_REDACTED]]);
    expectNoRawSsn(session.received.toString('latin1'));
  });

  it('answers as the server does: nothing for queries between a failed Execute and the Sync', async () => {
    const failing = failures[1][1];
    const proxied = await frontDoor.openRaw(['readers']);
    const direct = await frontDoor.openDirectRaw();
    for (const session of [proxied, direct]) session.send(...failing, ...skipped, encodeSync(), encodeQuery('select 1 as b'));
    await Promise.all([proxied.readyCount(3), direct.readyCount(3)]);
    expect(proxied.summary()).toEqual(direct.summary());
  });
});

describe('COPY FROM STDIN with a WHERE that calls a function, whose code the statement does not show', () => {
  // The proxy reads search_path again after code a statement does not show; for a COPY FROM that
  // read must wait for the COPY's end, not be sent while the target is in copy-in mode.

  it('answers as the server does, and the session goes on', async () => {
    const proxied = await frontDoor.openRaw(['writers']);
    const direct = await frontDoor.openDirectRaw();
    for (const session of [proxied, direct]) {
      session.send(encodeQuery('copy victim from stdin where length(x::text) > 0 and abs(x) > 0'));
      await waitFor(() => session.count('CopyInResponse') === 1);
      session.send(encodeCopyData('7\t7\n'), encodeCopyDone(), encodeQuery('select count(*) as n from victim where id = 7'));
      await session.readyCount(3);
      await frontDoor.direct.query('delete from victim where id = 7');
    }
    expect(proxied.summary()).toEqual(direct.summary());
    expect(proxied.rows()).toEqual([['1']]);
  });

  it('answers a libpq-style extended COPY of that kind as the server does', async () => {
    const proxied = await frontDoor.openRaw(['writers']);
    const direct = await frontDoor.openDirectRaw();
    for (const session of [proxied, direct]) {
      session.send(encodeParse('', 'copy victim from stdin where abs(x) > 0'), encodeBind('', ''), encodeExecute(''), encodeSync());
      await waitFor(() => session.count('CopyInResponse') === 1);
      session.send(encodeCopyData('6\t6\n'), encodeCopyDone(), encodeSync(), encodeQuery('select count(*) as n from victim where id = 6'));
      await session.readyCount(3);
      await frontDoor.direct.query('delete from victim where id = 6');
    }
    expect(proxied.summary()).toEqual(direct.summary());
    expect(proxied.rows()).toEqual([['1']]);
  });
});

describe('a VARIADIC function called in attribute notation is a function call, not a column', () => {
  // `p.tag` calls tag(VARIADIC ARRAY[p]) when tag's only argument is VARIADIC over the row's type.
  // The catalog facts listed functions by their first argument's type (an array here, not a
  // composite), so `p.tag` passed as a column of people: its value (the SSN) came back in clear,
  // and `o.peek` read public.secrets past the deny rule.
  it.each([
    ['SELECT p.tag FROM people p', ['readers']],
    ['SELECT (p).tag FROM people p', ['readers']],
    ['SELECT o.peek FROM orders o', ['readers']],
    ['SELECT o.peek FROM orders o', ['orders']],
  ])('refuses %s (%s)', async (sql, groups) => {
    const client = await frontDoor.connect(groups);
    await expect(client.query(sql)).rejects.toMatchObject({ code: '42501' });
  });
});

describe('DDL does not move a covered value under a name no column rule covers', () => {
  // Column rules follow names: an agent allowed DDL renamed `ssn` (or copied it into another column
  // by a type change USING it, or a generated column over it), and every agent then read the
  // value in clear under the new name. Each table is fresh, so no cached column name hides it.
  let serial = 0;
  const freshTable = async (): Promise<string> => {
    const table = `ledger${++serial}`;
    await frontDoor.direct.query(`create table ${table} (id int, note text, ssn text); insert into ${table} values (1, 'n', '${RAW_SSN}')`);
    return table;
  };

  it.each([
    'ALTER TABLE %t RENAME COLUMN ssn TO body',
    'ALTER TABLE public.%t RENAME ssn TO body',
    'ALTER TABLE %t ALTER COLUMN note TYPE text USING ssn',
    "ALTER TABLE %t ALTER COLUMN note TYPE varchar USING reverse(ssn) || ''",
    'ALTER TABLE %t ADD COLUMN body text GENERATED ALWAYS AS (upper(ssn)) STORED',
  ])('refuses %s, so a later SELECT * shows nothing of it', async (template) => {
    const table = await freshTable();
    const changer = await frontDoor.connect(['changers']);
    await expect(changer.query(template.replace('%t', table))).rejects.toMatchObject({ code: '42501', message: expect.stringMatching(/column rule covers/) });
    const reader = await frontDoor.connect(['readers']);
    expectNoRawSsn((await reader.query(`SELECT * FROM ${table}`)).rows);
  });

  // Open: a column rule written with its table (`match: 'public\.people\.ssn'`) is undone by
  // renaming the table or its schema (`ALTER TABLE people RENAME TO folks`, `ALTER SCHEMA public
  // RENAME …`, `ALTER TABLE people SET SCHEMA …`): the wire then names public.folks.ssn. Refusing
  // every rename of a table that has a covered column needs the table's columns at decision time
  // (the catalog reads them by OID only after a result), so it is left for a catalog fact.
  it.todo('refuses renaming a table or schema whose columns a qualified column rule covers');

  it('refuses a table whose generated column copies a covered one, and still allows renaming within covered names', async () => {
    const changer = await frontDoor.connect(['changers']);
    const table = `generated${++serial}`;
    await expect(changer.query(`CREATE TABLE ${table} (id int, ssn text, body text GENERATED ALWAYS AS (ssn) STORED)`)).rejects.toMatchObject({ code: '42501' });
    const renamed = await freshTable();
    await changer.query(`ALTER TABLE ${renamed} RENAME COLUMN ssn TO old_ssn`);
    await changer.query(`ALTER TABLE ${renamed} RENAME COLUMN note TO remark`);
    const reader = await frontDoor.connect(['readers']);
    expect((await reader.query(`SELECT remark, old_ssn FROM ${renamed}`)).rows).toEqual([{ remark: 'n', old_ssn: COLUMN_REDACTED }]);
  });
});

describe("another session decides with the catalog facts of a schema change once it is committed", () => {
  // The facts were read again only when the changing session went back to idle. COMMIT AND CHAIN
  // commits and opens the next transaction at once: the session never went idle, and for up to
  // 30 s every other session read `p.reveal` (a function over people now) as a column of people.
  it('refuses a row function committed by COMMIT AND CHAIN in another session', async () => {
    const reader = await frontDoor.connect(['readers']);
    expect((await reader.query('SELECT p.name FROM people p')).rows).toEqual([{ name: 'Ada Lovelace' }]);
    const changer = await frontDoor.connect(['changers']);
    await changer.query('BEGIN');
    await changer.query('CREATE FUNCTION reveal(p people) RETURNS text LANGUAGE sql AS $$ SELECT $1.ssn $$');
    await changer.query('COMMIT AND CHAIN');
    await expect(reader.query('SELECT p.reveal FROM people p')).rejects.toMatchObject({ code: '42501' });
    await changer.query('COMMIT');
  });
});

describe('an error raised when the transaction ends is masked as the statements that caused it', () => {
  // A WITH HOLD cursor runs its query when its transaction commits, a deferred constraint is
  // checked then: the error quotes a covered value under a COMMIT (or the Sync of an implicit
  // transaction) that names no column, so only detectors ran and `8765-43-219` (the SSN
  // reversed) passed.
  const REVERSED = RAW_SSN.split('').reverse().join('');
  const expectNothingOfIt = (session: RawPostgresSession): void => {
    const received = session.received.toString('latin1');
    expectNoRawSsn(received);
    expect(received).not.toContain(REVERSED);
    expect(session.errors().map((error) => error.C)).toEqual(['22P02']);
  };
  const HOLD = 'declare c cursor with hold for select reverse(ssn)::int from people';

  it.each([
    ['COMMIT in its own message', 'commit'],
    ['END in its own message', 'end'],
  ])('masks the cast error of a WITH HOLD cursor at %s', async (_, end) => {
    const session = await frontDoor.openRaw(['readers']);
    session.send(encodeQuery(`begin; ${HOLD}`));
    await session.readyCount(2);
    session.send(encodeQuery(end));
    await session.readyCount(3);
    expectNothingOfIt(session);
  });

  it('masks it at COMMIT by the extended protocol, and at the Sync of an implicit transaction', async () => {
    const committed = await frontDoor.openRaw(['readers']);
    committed.send(encodeQuery(`begin; ${HOLD}`));
    await committed.readyCount(2);
    committed.send(encodeParse('', 'commit'), encodeBind('', ''), encodeExecute(''), encodeSync());
    await committed.readyCount(3);
    expectNothingOfIt(committed);
    const synced = await frontDoor.openRaw(['readers']);
    synced.send(encodeParse('', HOLD), encodeBind('', ''), encodeExecute(''), encodeSync());
    await synced.readyCount(2);
    expectNothingOfIt(synced);
  });

  it('masks the detail of a deferred unique violation at COMMIT', async () => {
    const writer = await frontDoor.connect(['writers']);
    await writer.query('BEGIN');
    await writer.query('INSERT INTO badges (id, ssn) SELECT 1, ssn FROM people');
    await writer.query('INSERT INTO badges (id, ssn) SELECT 2, ssn FROM people');
    const error = await writer.query('COMMIT').then(() => undefined, (failure: Error & { detail?: string; code?: string }) => failure);
    expect(error).toMatchObject({ code: '23505' });
    expectNoRawSsn(`${error?.message} ${error?.detail}`);
  });
});

describe('a sequence does not keep a covered value past masking', () => {
  // setval's result was masked, but the sequence kept the value: `SELECT last_value FROM tally`
  // gave it back in clear to any agent allowed to read it.
  it.each([
    "SELECT setval('tally', split_part(ssn, '-', 1)::int) FROM people",
    "SELECT pg_catalog.setval('tally', n, true) FROM (SELECT length(ssn) * 100 + 12 AS n FROM people) s",
  ])('refuses %s', async (sql) => {
    const writer = await frontDoor.connect(['writers']);
    await expect(writer.query(sql)).rejects.toMatchObject({ code: '42501', message: expect.stringMatching(/column rule covers/) });
    const reader = await frontDoor.connect(['readers']);
    const kept = JSON.stringify((await reader.query('SELECT last_value AS v FROM tally')).rows);
    expect(kept).not.toContain('912');
    expect(kept).not.toContain('1112');
  });

  it('still sets a sequence to a constant or from an uncovered column', async () => {
    const writer = await frontDoor.connect(['writers']);
    const lastValue = async (): Promise<string> => (await frontDoor.direct.query<{ v: string }>('SELECT last_value::text AS v FROM tally')).rows[0]!.v;
    await writer.query("SELECT setval('tally', 7)");
    expect(await lastValue()).toBe('7');
    await writer.query("SELECT setval('tally', (SELECT max(id) FROM people))");
    expect(await lastValue()).toBe('1');
  });
});

describe('a Sync sent during COPY FROM STDIN, which the target ignores, is not answered by a later query', () => {
  // The server ignores Sync (and Flush) in copy-in mode; libpq sends one after the Execute of a
  // COPY and another after CopyDone. The proxy waited for a ReadyForQuery for each, so every
  // later answer was taken for the one before it: `upper(ssn) AS item` was masked (and recorded)
  // as `select item from orders`, in clear, and the proxy's own search_path rows reached the client.
  const copyIn = {
    extended: [encodeParse('', 'copy victim from stdin'), encodeBind('', ''), encodeExecute(''), encodeSync()],
    simple: [encodeQuery('copy victim from stdin'), encodeSync()],
  };

  it.each(Object.entries(copyIn))('masks the queries after a %s-protocol COPY FROM STDIN with a Sync inside it', async (_, start) => {
    const session = await frontDoor.openRaw(['writers']);
    session.send(...start);
    await waitFor(() => session.count('CopyInResponse') === 1);
    session.send(encodeCopyData('9\t9\n'), encodeCopyDone(), encodeSync());
    await waitFor(() => session.count('CommandComplete') === 1);
    session.send(encodeQuery('select 1 as a'), encodeQuery('select item from orders'), encodeQuery('select upper(ssn) as item from people'));
    await waitFor(() => session.count('CommandComplete') === 4);
    expect(session.rows()).toEqual([['1'], ['public-order'], [COLUMN_REDACTED]]);
    expectNoRawSsn(session.received.toString('latin1'));
    await frontDoor.direct.query('delete from victim where id = 9');
  });

  it('answers a libpq-style extended COPY FROM STDIN as the server does', async () => {
    const proxied = await frontDoor.openRaw(['writers']);
    const direct = await frontDoor.openDirectRaw();
    for (const session of [proxied, direct]) {
      session.send(...copyIn.extended);
      await waitFor(() => session.count('CopyInResponse') === 1);
      session.send(encodeCopyData('8\t8\n'), encodeCopyDone(), encodeSync(), encodeQuery('select 1 as b'));
      await session.readyCount(3);
      await frontDoor.direct.query('delete from victim where id = 8');
    }
    expect(proxied.summary()).toEqual(direct.summary());
  });
});
