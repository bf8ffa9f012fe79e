import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { encodeBind, encodeExecute, encodeParse, encodeSync } from '@sluice/codec-pg';
import { COLUMN_REDACTED } from '@sluice/masking-engine';
import { useTestPolicyService } from './support/policy-service.js';
import { usePostgresFrontDoor, type RawPostgresSession } from './support/postgres-proxy-harness.js';
import { expectNoRawSsn, RAW_SSN, RED_TEAM_SEED_SQL, redTeamConfig, redTeamConfigInput } from './support/postgres-red-team.js';

/*
 * Red team of the answers shared by statement texts of one shape (constants as `$n`): the policy
 * port's decision kept under the normalised text, and the proxy's lineage, covered-column and
 * session-effect answers kept under the shape when constantsAreInert says the constants cannot
 * matter. Each probe first has a shape-mate decided and analysed, then sends a text of that shape
 * whose constants (or whose session, subject or encoding) differ, and asserts the safe outcome. A
 * real policy service over gRPC, its client caching as in production; read-only `readers`, `pii`
 * redacting any column named like ssn, public.secrets denied, `orders` may read public.orders only.
 */

const database = `sluice_rtshape_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
const policyService = useTestPolicyService('rtshape', redTeamConfigInput(database, ['public.secrets']));

const frontDoor = usePostgresFrontDoor({
  config: redTeamConfig(database, ['public.secrets']),
  database,
  hashKey: 'redteam-shape-int',
  setupSql: `${RED_TEAM_SEED_SQL}
     insert into people values (2, 'Bob Builder', '${RAW_SSN}'), (3, 'Cy Young', '${RAW_SSN}');
     create table relabel (id int primary key, label text, ssn text);
     insert into relabel values (1, 'plain-label', '${RAW_SSN}'), (2, 'plain-label', '${RAW_SSN}');
     create view shown as select id, label as shown from relabel;
`,
  policyPort: () => policyService.port,
});

/**
 * A database whose owner overloaded built-in names: public.=(text, numeric) and
 * public.upper(numeric), each reading the denied public.secrets. Its own database, since no
 * unqualified `=` is vouched for where `=` is overloaded (the probes above need an ordinary one).
 */
const overloadedDatabase = `sluice_rtover_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
const overloaded = usePostgresFrontDoor({
  config: redTeamConfig(overloadedDatabase, ['public.secrets']),
  database: overloadedDatabase,
  hashKey: 'redteam-shape-int',
  setupSql: `${RED_TEAM_SEED_SQL}
     create function public.numeric_eq(text, numeric) returns boolean language plpgsql as $$
       begin raise exception 'leaked: %', (select secret from public.secrets limit 1); end $$;
     create operator public.= (leftarg = text, rightarg = numeric, function = public.numeric_eq);
     create function public.upper(numeric) returns text language plpgsql as $$
       begin raise exception 'leaked: %', (select secret from public.secrets limit 1); end $$;
`,
  policyPort: () => policyService.port,
});

/** A simple Query of raw bytes (text in the session's client_encoding). */
const runBytes = async (session: RawPostgresSession, bytes: Buffer): Promise<void> => {
  const body = Buffer.concat([bytes, Buffer.from([0])]);
  const header = Buffer.alloc(5);
  header.write('Q', 0, 'latin1');
  header.writeInt32BE(body.length + 4, 1);
  const ready = session.count('ReadyForQuery');
  session.send(header, body);
  await session.readyCount(ready + 1);
};

/** Everything the session got back, as text: no raw SSN may be in it. */
const received = (session: RawPostgresSession): string => session.received.toString('latin1');

describe('answers shared by shape', () => {
  it('does not let a decision of one grant answer a shape-mate for another grant', async () => {
    const reader = await frontDoor.openRaw(['readers']);
    await reader.run('select name from people where id = 1', 'select name from people where id = 2');
    expect(reader.errors()).toEqual([]);
    // `orders` may read public.orders only: the same shape, decided for readers, must not answer it.
    const orders = await frontDoor.openRaw(['orders']);
    await orders.run('select name from people where id = 3');
    expect(orders.errors().map((e) => e.C)).toEqual(['42501']);
    expect(orders.rows()).toEqual([]);
  });

  it('masks a covered column behind a bare constant of another type (true, NULL, a string) in the shape of an integer', async () => {
    const session = await frontDoor.openRaw(['readers']);
    // `true` and `1` normalise alike; so do NULL, a string, a dollar-quoted and a U& constant.
    const texts = [
      'select 1 as n, ssn as s from people where id = 1',
      'select true as n, ssn as s from people where id = 1',
      'select null as n, ssn as s from people where id = 1',
      "select 'ssn' as n, ssn as s from people where id = 1",
      "select U&'\\0073sn' as n, ssn as s from people where id = 1",
      "select E'\\\\' as n, ssn as s from people where id = 1",
    ];
    await session.run(...texts);
    expect(session.errors()).toEqual([]);
    expect(session.rows().map((row) => row[1])).toEqual(texts.map(() => COLUMN_REDACTED));
    expectNoRawSsn(received(session));
  });

  it('masks a covered column whatever LIMIT ALL or a count shares its shape with', async () => {
    const session = await frontDoor.openRaw(['readers']);
    await session.run('select 1 as n, ssn from people where id = 1 limit 1', 'select 1 as n, ssn from people where id = 1 limit all');
    expect(session.errors()).toEqual([]);
    expect(session.rows().map((row) => row[1])).toEqual([COLUMN_REDACTED, COLUMN_REDACTED]);
    expectNoRawSsn(received(session));
  });

  it('masks a column named by a bare constant\'s alias after an unmasked shape-mate, and the other way round', async () => {
    const session = await frontDoor.openRaw(['readers']);
    await session.run(
      "select 'x' as n, name from people where id = 1",
      "select 'x' as ssn, name from people where id = 1",
      `select '${RAW_SSN}' as n, name from people where id = 1`,
    );
    expect(session.errors()).toEqual([]);
    const got = session.rows();
    expect(got[1]![0]).toBe(COLUMN_REDACTED);
    // The third value is only a constant, but the detectors still see it: not a 9xx SSN, so not
    // required to be masked; what matters is that the shape did not unmask anything named ssn.
    expect(got.map((row) => row[1])).toEqual(['Ada Lovelace', 'Ada Lovelace', 'Ada Lovelace']);
  });

  it('masks the covered column of a Parse/Bind/Execute whose shape-mate was a simple query', async () => {
    const session = await frontDoor.openRaw(['readers']);
    await session.run("select 'a' as n, name as s from people where id = 1");
    const ready = session.count('ReadyForQuery');
    session.send(encodeParse('p1', "select 'b' as n, ssn as s from people where id = 2"), encodeBind('', 'p1'), encodeExecute(''), encodeSync());
    await session.readyCount(ready + 1);
    session.send(encodeParse('', "select 'c' as n, ssn as s from people where id = 3"), encodeBind('c1', ''), encodeExecute('c1', 1), encodeExecute('c1', 1), encodeSync());
    await session.readyCount(ready + 2);
    expect(session.errors()).toEqual([]);
    expect(session.rows().map((row) => row[1])).toEqual(['Ada Lovelace', COLUMN_REDACTED, COLUMN_REDACTED]);
    expectNoRawSsn(received(session));
  });

  it('reads a Shift-JIS text as the server does: a trail byte 0x5c does not end an E string early', async () => {
    // In SJIS 0x83 0x5c is one character. Read as bytes of another encoding, `\'` would be an
    // escaped quote and `ssn as x …` part of the string: the covered column would go unseen.
    const session = await frontDoor.openRaw(['readers'], [['client_encoding', 'SJIS']]);
    await session.run("select E'a' as n, name as x from people where id = 1 --'");
    const attack = Buffer.concat([Buffer.from("select E'", 'latin1'), Buffer.from([0x83, 0x5c]), Buffer.from("' as n, ssn as x from people where id = 1 --'", 'latin1')]);
    await runBytes(session, attack);
    expectNoRawSsn(received(session));
  });

  it('masks after standard_conforming_strings off, whether refused or read as the server reads it', async () => {
    const session = await frontDoor.openRaw(['readers']);
    await session.run("select 'a' as n, name as m from people where id = 1");
    await session.run('set standard_conforming_strings = off', "select 'a\\' , ' as n, ssn as m from people where id = 1 --'");
    expectNoRawSsn(received(session));
  });

  it('does not reuse a view\'s lineage after the view is replaced to show a covered column', async () => {
    const session = await frontDoor.openRaw(['readers']);
    await session.run('select shown from shown where id = 1');
    await frontDoor.direct.query('create or replace view shown as select id, ssn as shown from relabel');
    await session.run('select shown from shown where id = 2', 'select shown from shown where id = 1');
    expectNoRawSsn(received(session));
  });

  // An INSERT's VALUES and an UPDATE's SET values are shared by shape (their constants are values
  // written): a benign write of one shape decided and analysed first must not answer a write that
  // copies a covered column, nor one whose constant is read as a JSON key or a name.
  it('refuses a write copying a covered column after benign writes of one shape, and keeps no covered value', async () => {
    const session = await frontDoor.openRaw(['writers']);
    await session.run("update relabel set label = 'first' where id = 1", "update relabel set label = 'second' where id = 2");
    await session.run("insert into relabel (id, label) values (10, 'ten')", "insert into relabel (id, label) values (11, 'eleven')");
    expect(session.errors()).toEqual([]);
    await session.run('update relabel set label = ssn where id = 1');
    await session.run('insert into relabel (id, label) select id + 20, ssn from relabel where id = 1');
    await session.run("update relabel set label = label || ssn where id = 2");
    expect(session.errors().map((error) => error.C)).toEqual(['42501', '42501', '42501']);
    await session.run("update relabel set label = 'third' where id = 1", 'select id, label from relabel order by id');
    expect(session.errors().length).toBe(3);
    expect(session.rows().at(-1)).toBeDefined();
    expect(received(session)).not.toContain(RAW_SSN);
    const reader = await frontDoor.openRaw(['readers']);
    await reader.run('select label from relabel where id = 1', 'select label from relabel where id = 2');
    expect(reader.rows()).toEqual([['third'], ['second']]);
  });

  it('keeps the deny rule for a shape-mate reached through another search_path in the same session', async () => {
    const session = await frontDoor.openRaw(['readers']);
    await session.run('select 1 as n from orders where id = 1');
    await session.run("select set_config('search_path', 'public', false)", 'select 1 as n from secrets where id = 2');
    expect(session.errors().at(-1)?.C).toBe('42501');
    expect(received(session)).not.toContain('TOP-SECRET-VALUE');
  });

  // PostgreSQL picks an operator or function by argument types across every schema on the path,
  // pg_catalog first only among equally good matches: a user's public.=(text, numeric) or
  // public.upper(numeric) is the exact match for a numeric constant and runs, reading a denied
  // table. The catalog facts name such overloads of built-in names, and the classifier does not
  // vouch for an unqualified call of one.
  it('does not let a comparison decided with a string answer its shape-mate whose number picks a user operator', async () => {
    // `name = 'x'` is text = text; `name = 1.5` resolves to public.=(text, numeric), a user
    // operator whose function reads public.secrets. Both normalise to `name = $1`. Which one runs
    // depends on types the text does not show, so where `=` is overloaded neither is vouched for:
    // the string comparison is refused too, and no allowed decision is left for the shape-mate.
    const session = await overloaded.openRaw(['readers']);
    await session.run("select 1 as n from people where name = 'x'", "select 1 as n from people where name = 'y'");
    expect(session.errors().map((error) => error.C)).toEqual(['42501', '42501']);
    await session.run('select 1 as n from people where name = 1.5');
    expect(session.errors().at(-1)?.C).toBe('42501');
    expect(received(session)).not.toContain('TOP-SECRET-VALUE');
  });

  it('refuses the user operator to a session that never saw a shape-mate', async () => {
    const session = await overloaded.openRaw(['readers']);
    await session.run('select 2 as m from people where name = 2.5');
    expect(session.errors().at(-1)?.C).toBe('42501');
    expect(received(session)).not.toContain('TOP-SECRET-VALUE');
  });

  it('refuses a built-in function name whose user overload matches the constant better', async () => {
    const session = await overloaded.openRaw(['readers']);
    await session.run("select upper('a') as n from people where id < 2", 'select upper(1.5) as n from people where id < 2');
    expect(session.errors().map((error) => error.C)).toEqual(['42501', '42501']);
    expect(received(session)).not.toContain('TOP-SECRET-VALUE');
  });

  it('still vouches for a built-in name qualified with pg_catalog where the name is overloaded', async () => {
    const session = await overloaded.openRaw(['readers']);
    await session.run('select pg_catalog.upper(name) as n from people where id operator(pg_catalog.=) 1');
    expect(session.errors()).toEqual([]);
    expect(session.rows()).toEqual([['ADA LOVELACE']]);
  });
});
