import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { encodeBind, encodeExecute, encodeParse, encodePasswordMessage, encodeStartupMessage, encodeSync } from '@sluice/codec-pg';
import { MAX_JSON_DEPTH } from '@sluice/masking-engine';
import { usePostgresFrontDoor, waitFor } from './support/postgres-proxy-harness.js';
import { expectNoRawSsn, RAW_SSN, RED_TEAM_RESOURCE, RED_TEAM_SEED_SQL, redTeamConfig } from './support/postgres-red-team.js';

/**
 * Red team on the last session's data-path changes, as a read-only agent (`readers`, masked with
 * `pii`, whose `(?i)ssn` column rule alone masks RAW_SSN) attacks them with real clients and raw
 * protocol bytes: masking's depth check moved into the walk (536773a), session.rejected masking of
 * a refused startup parameter (c89718f, ade6c0d), the classifier split (7f30b5a).
 */

const database = `sluice_dataplane_${randomUUID().replaceAll('-', '').slice(0, 12)}`;

/** A JSON text nested `levels` arrays deep, with a covered member beside the nesting. */
const deepDocument = (levels: number): string => `{"ssn": "${RAW_SSN}", "deep": ${'['.repeat(levels)}0${']'.repeat(levels)}}`;

const frontDoor = usePostgresFrontDoor({
  config: redTeamConfig(database, ['public.secrets']),
  database,
  hashKey: 'dataplane-int',
  setupSql: `${RED_TEAM_SEED_SQL}
     create table docs (id int primary key, body jsonb, note text, doc json);
     insert into docs values
       (1, '${deepDocument(MAX_JSON_DEPTH - 4)}', '${deepDocument(MAX_JSON_DEPTH - 4)}', '${deepDocument(MAX_JSON_DEPTH - 4)}'),
       (2, '${deepDocument(MAX_JSON_DEPTH + 4)}', '${deepDocument(MAX_JSON_DEPTH + 4)}', '${deepDocument(MAX_JSON_DEPTH + 4)}'),
       (3, jsonb_build_object('ssn', '${'['.repeat(MAX_JSON_DEPTH + 4)}${']'.repeat(MAX_JSON_DEPTH + 4)}'), null, null);
     create table lists (id int primary key, tags text[], docs jsonb[]);
     insert into lists values (1, array['plain', '{"ssn": "${RAW_SSN}"}'], array['{"ssn": "${RAW_SSN}"}'::jsonb]);
`,
});

/** A card number, an email and a US SSN the `everything` profile recognises in a record's text. */
const SECRETS = { card: '4111111111111111', email: 'alice.secret@example.com', ssn: '123-45-6789' };

describe('session.rejected of a startup setting the target refuses', () => {
  it.each([
    ['options -c DateStyle', [['options', `-c DateStyle=${SECRETS.card}`]]],
    ['options --TimeZone', [['options', `--TimeZone=${SECRETS.email}`]]],
    ['a statement_timeout parameter', [['statement_timeout', SECRETS.ssn]]],
    ['a default_transaction_isolation parameter', [['default_transaction_isolation', SECRETS.email]]],
  ] as const)('masks what the target quotes of the agent\'s value (%s)', async (_, parameters) => {
    const before = frontDoor.events.length;
    const session = await frontDoor.openRaw(['readers'], parameters.map(([name, value]) => [name, value]));
    expect(session.closed).toBe(true);
    expect(session.errors()[0]?.C).toBe('22023');
    await waitFor(() => frontDoor.events.slice(before).some((event) => event.kind === 'session.rejected'));
    const rejected = frontDoor.events.slice(before).filter((event) => event.kind === 'session.rejected');
    expect(rejected).toHaveLength(1);
    const recorded = JSON.stringify(rejected);
    expect(recorded).toMatch(/target refused a startup setting/);
    for (const secret of Object.values(SECRETS)) expect(recorded).not.toContain(secret);
  });
});

describe('a jsonb, json or text value nested around the masking depth limit', () => {
  it.each([
    ['jsonb', 'body'],
    ['json', 'doc'],
    ['text', 'note'],
    ['jsonb as text', 'body::text'],
    ['a member as jsonb', "body->'ssn'"],
    ['a row as json', 'row_to_json(docs)'],
  ])('masks the covered member within the limit (%s)', async (_, expression) => {
    const client = await frontDoor.connect(['readers']);
    const { rows } = await client.query(`select ${expression} as v from docs where id = 1`);
    expect(rows).toHaveLength(1);
    expectNoRawSsn(rows);
  });

  it.each([
    ['jsonb', 'body'],
    ['json', 'doc'],
    ['text', 'note'],
    ['jsonb as text', 'body::text'],
    ['a row as json', 'row_to_json(docs)'],
    ['an array of jsonb', 'array[body]'],
    ['binary jsonb', 'body'],
  ])('withholds a document past the limit, never sends it raw (%s)', async (name, expression) => {
    const session = await frontDoor.openRaw(['readers']);
    if (name === 'binary jsonb') {
      session.send(encodeParse('', `select ${expression} as v from docs where id = 2`), encodeBind('', '', [], [1]), encodeExecute(''), encodeSync());
      await session.readyCount(2);
    } else await session.run(`select ${expression} as v from docs where id = 2`);
    expectNoRawSsn(session.received.toString('latin1'));
    // Failing closed: refused, or masked whole (a row's JSON is covered by the strictest rule any column could match).
    const shown = session.rows().flat().join('\n');
    expect(session.errors().length > 0 || !shown.includes('deep'), shown.slice(0, 200)).toBe(true);
  });

  it.each([
    ['jsonb', 'copy (select body from docs where id = 1) to stdout'],
    ['text', 'copy (select note from docs where id = 1) to stdout'],
    ['json in CSV', 'copy (select id, doc from docs where id = 1) to stdout with (format csv, header)'],
    ['jsonb beside a covered column', 'copy (select p.ssn, d.body from people p, docs d where d.id = 1) to stdout'],
  ])('masks the covered member of a document read by COPY TO STDOUT (%s)', async (_, text) => {
    // COPY applied column rules only to fields a rule covers whole: a document's members went out as the target wrote them.
    const session = await frontDoor.openRaw(['readers']);
    await session.run(text);
    expect(session.errors()).toEqual([]);
    expect(session.count('CopyData')).toBeGreaterThan(0);
    expectNoRawSsn(session.received.toString('latin1'));
  });

  it.each([
    ['a text[] cell', 'select tags from lists'],
    ['a text[] cell in binary', 'binary:select tags from lists'],
    ['a text[] cast to text', 'select tags::text from lists'],
    ['a jsonb[] cell', 'select docs from lists'],
    ['COPY of a text[]', 'copy (select tags from lists) to stdout'],
    ['COPY of a jsonb[]', 'copy (select docs from lists) to stdout with (format csv)'],
  ])('masks the covered member of a document in an array element: %s', async (_, text) => {
    // A text[] element was scanned, not walked; an array in COPY (no types on the wire) was scanned as one text.
    const session = await frontDoor.openRaw(['readers']);
    if (text.startsWith('binary:')) {
      session.send(encodeParse('', text.slice('binary:'.length)), encodeBind('', '', [], [1]), encodeExecute(''), encodeSync());
      await session.readyCount(2);
    } else await session.run(text);
    expect(session.errors()).toEqual([]);
    // The element with nothing to mask is kept.
    if (text.includes('tags')) expect(session.received.toString('latin1')).toContain('plain');
    expectNoRawSsn(session.received.toString('latin1'));
  });

  it.each([
    ['COPY TO STDOUT of a jsonb', 'copy (select body from docs where id = 2) to stdout'],
    ['COPY TO STDOUT of a text', 'copy (select note from docs where id = 2) to stdout with (format csv)'],
    ['COPY of the table', 'copy docs to stdout'],
    ['a cursor', 'begin; declare deep cursor for select body from docs where id = 2; fetch all from deep; commit'],
  ])('withholds a document past the limit read by %s', async (_, text) => {
    const session = await frontDoor.openRaw(['readers']);
    await session.run(text);
    expectNoRawSsn(session.received.toString('latin1'));
    // Refused, or masked whole: a COPY of the table and a cursor's rows are covered by the strictest rule.
    const shown = session.received.toString('latin1');
    expect(session.errors().length > 0 || !shown.includes('"deep"'), shown.slice(-200)).toBe(true);
  });

  it('masks a covered member whose value is a string that looks like a document past the limit', async () => {
    const client = await frontDoor.connect(['readers']);
    const { rows } = await client.query('select body from docs where id = 3');
    expect(rows).toHaveLength(1);
    expect(JSON.stringify(rows)).not.toContain('[[[[');
  });
});

/** Statements a read-only agent sends to lift the target's read-only mode or write past it: each alone, simple protocol. */
const WRITE_ATTEMPTS = [
  'begin read write; delete from victim where id = 1; commit',
  'start transaction isolation level serializable, read write; delete from victim where id = 1; commit',
  'begin transaction read only, read write; delete from victim where id = 1; commit',
  'begin; set transaction read write; delete from victim where id = 1; commit',
  'begin; set local transaction_read_only = off; delete from victim where id = 1; commit',
  'set session characteristics as transaction read write',
  'set session characteristics as transaction isolation level read committed, read write',
  "set default_transaction_read_only = 'off'",
  'set "default_transaction_read_only" to off',
  'set session default_transaction_read_only to default',
  'reset default_transaction_read_only',
  'reset all',
  'discard all',
  "select set_config('default_transaction_read_only', 'off', false)",
  "select set_config('transaction_read_only', 'off', true)",
  "select set_config(lower('DEFAULT_TRANSACTION_READ_ONLY'), 'off', false)",
  "select (select set_config(n, 'off', false) from (values ('default_transaction_read_only')) v(n))",
  'commit and chain',
  'do $$ begin delete from victim where id = 1; end $$',
  "do language plpgsql 'begin perform set_config(''default_transaction_read_only'', ''off'', false); end'",
  'with gone as (delete from victim where id = 1 returning *) select * from gone',
  'select * into victim_copy from victim',
  'create table victim_copy as select * from victim',
  "copy victim to program 'true'",
  "copy (select 1) to '/tmp/sluice-dataplane-probe'",
  'prepare wipe as delete from victim where id = 1; execute wipe',
  'explain analyze delete from victim where id = 1',
  'select 1; delete from victim where id = 1',
  "select $$;$$; delete from victim where id = 1",
  "select '/*'; delete from victim where id = 1 --*/",
  '/* select */ delete from victim where id = 1',
  'select 1 /* ; */ ; update victim set x = 0',
  "select e'\\\\'; delete from victim where id = 1 -- '",
  'select lo_create(4242)',
  "select lo_import('/etc/hostname')",
  "select pg_notify('c', 'x')",
  "select nextval('victim_seq')",
  "select setval('victim_seq', 99)",
  'select pg_advisory_lock(1); select pg_advisory_unlock_all()',
  'listen c; notify c',
  'set role postgres',
  'set session authorization postgres',
  'set session_replication_role = replica',
  "select current_setting('default_transaction_read_only'), pg_catalog.set_config('default_transaction_read_only', 'off', false)",
  'savepoint s; release s',
  'call victim_proc()',
  'select victim_func()',
  'vacuum victim',
  'analyze victim',
  'cluster victim',
  'refresh materialized view victim_mat',
  'lock victim in access exclusive mode',
  'truncate victim',
  'insert into victim values (99, 99) on conflict do nothing',
  'merge into victim using (select 1 as id) s on victim.id = s.id when matched then delete',
];

describe('a read-only agent writing past the classifier (7f30b5a split)', () => {
  it('changes nothing and never leaves the target session read write', async () => {
    await frontDoor.direct.query(`create sequence if not exists victim_seq;
      create or replace procedure victim_proc() language sql as $$ delete from victim where id = 1 $$;
      create or replace function victim_func() returns int language sql volatile as $$ delete from victim where id = 1 returning id $$;
      create materialized view if not exists victim_mat as select * from victim`);
    const got: string[] = [];
    for (const attempt of WRITE_ATTEMPTS) {
      const session = await frontDoor.openRaw(['readers']);
      await session.run(attempt);
      await session.run('show transaction_read_only');
      got.push(`${attempt} => ${session.rows().map((row) => row.join('|')).join(',')} ${session.errors().map((error) => error.C).join(',')}`);
      // Whatever it tried, the session is still read-only on the target.
      expect(session.rows().at(-1), attempt).toEqual(['on']);
    }
    const victims = await frontDoor.direct.query<{ n: string; sum: string }>('select count(*) as n, sum(x) as sum from victim');
    expect(victims.rows[0], got.join('\n')).toEqual({ n: '5', sum: '15' });
    const sequence = await frontDoor.direct.query<{ last_value: string; is_called: boolean }>('select last_value, is_called from victim_seq');
    expect(sequence.rows[0]).toEqual({ last_value: '1', is_called: false });
    const made = await frontDoor.direct.query("select relname from pg_class where relname = 'victim_copy' union all select loid::text from pg_largeobject_metadata lo(loid) where loid = 4242");
    expect(made.rows).toEqual([]);
  });
});

describe('the same through the extended protocol', () => {
  it.each([
    ['set_config with its name bound', "select set_config($1, $2, false)", ['default_transaction_read_only', 'off']],
    ['set_config with its name cast', "select set_config($1::text, 'off', false)", ['default_transaction_read_only']],
    ['BEGIN READ WRITE', 'begin read write', []],
    ['SET SESSION CHARACTERISTICS', 'set session characteristics as transaction read write', []],
    ['a writable CTE', 'with gone as (delete from victim where id = $1::int returning *) select * from gone', ['1']],
  ])('never lifts read-only nor writes (%s)', async (_, text, values) => {
    const session = await frontDoor.openRaw(['readers']);
    session.send(encodeParse('', text), encodeBind('', '', values), encodeExecute(''), encodeSync());
    await session.readyCount(2);
    session.send(encodeParse('', 'delete from victim where id = 2'), encodeBind('', ''), encodeExecute(''), encodeSync());
    await session.readyCount(3);
    await session.run('show transaction_read_only');
    expect(session.rows().at(-1)).toEqual(['on']);
    const victims = await frontDoor.direct.query<{ n: string }>('select count(*) as n from victim');
    expect(victims.rows[0]).toEqual({ n: '5' });
  });
});

/**
 * An agent with a good token that hangs up while its login is checked (the token verified, the
 * policy asked, the target being opened): every such login is on the record, as a session that
 * started (and ended) or as one refused because the client left, and no target session stays.
 */
describe('an agent hanging up during its login', () => {
  it('is on the record every time and leaves no target session', async () => {
    const applicationName = `hangup-${randomUUID().slice(0, 8)}`;
    const token = await frontDoor.token(['readers']);
    const before = frontDoor.events.length;
    const rounds = 20;
    for (let round = 0; round < rounds; round++) {
      const socket = connect(frontDoor.port, '127.0.0.1');
      socket.on('error', () => undefined);
      await new Promise<void>((resolve) => socket.once('connect', resolve));
      // The password right behind the startup packet: the proxy reads it once it has asked for it.
      socket.write(Buffer.concat([encodeStartupMessage([['user', 'agent'], ['database', RED_TEAM_RESOURCE], ['application_name', applicationName]]), encodePasswordMessage(token)]));
      await new Promise((resolve) => setTimeout(resolve, 2 + (round % 5) * 2));
      socket.destroy();
    }
    const logins = () =>
      frontDoor.events.slice(before).filter((event) => (event.kind === 'session.started' || event.kind === 'session.rejected') && (event.data.subject as { sub?: string } | undefined)?.sub === 'agent-readers');
    await waitFor(() => logins().length >= rounds, 15_000);
    const left = async (): Promise<number> => (await frontDoor.direct.query('select count(*)::int as n from pg_stat_activity where application_name = $1', [applicationName])).rows[0].n;
    for (let wait = 0; wait < 50 && (await left()) > 0; wait++) await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await left()).toBe(0);
    expect(logins()).toHaveLength(rounds);
    for (const event of logins()) if (event.kind === 'session.rejected') expect(event.data.reason).toBe('client closed during login');
  });
});
