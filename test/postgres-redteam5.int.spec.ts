import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  encodeBind,
  encodeCancelRequest,
  encodeExecute,
  encodeParse,
  encodePasswordMessage,
  encodeQuery,
  encodeSSLRequest,
  encodeStartupMessage,
  encodeSync,
} from '@sluice/codec-pg';
import { useTestPolicyService } from './support/policy-service.js';
import { streamOversizedPassword, usePostgresFrontDoor, waitFor } from './support/postgres-proxy-harness.js';
import { expectNoRawSsn, RAW_SSN, RED_TEAM_SEED_SQL, redTeamConfig, redTeamConfigInput } from './support/postgres-red-team.js';

/**
 * Fifth red team of the PostgreSQL front door, against the statement-answer caches of the speed
 * work (lineage, covered-column, covered-value and session-effect answers kept per context, by
 * exact text or by shape; the session-effects memory of the last text; the outbox joining
 * replies). The proxy asks a real policy service over gRPC, whose client caches decisions by text
 * and by shape as in production. Read-only agent (`readers`), `pii` masks any column named like
 * ssn, public.secrets denied; shadow.secrets is allowed, so `secrets` is denied or not by the
 * search path the server resolves it with.
 */

const database = `sluice_redteam5_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
const policyService = useTestPolicyService('redteam5', redTeamConfigInput(database, ['public.secrets']));

const frontDoor = usePostgresFrontDoor({
  config: redTeamConfig(database, ['public.secrets']),
  database,
  hashKey: 'redteam5-int',
  setupSql: `${RED_TEAM_SEED_SQL}
     alter table people add column doc jsonb;
     update people set doc = jsonb_build_object('name', name, 'ssn', ssn);
     create schema shadow;
     create table shadow.secrets (id int, secret text);
     insert into shadow.secrets values (1, 'shadow-value'), (2, 'shadow-value');
     create schema "empty,public";
     create table "empty,public".secrets (id int, secret text);
     create schema empty;
     create view people_view as select id, ssn as nick from people;
     create materialized view people_mat as select id, ssn as nick from people;
`,
  policyPort: () => policyService.port,
});

const step = (text: string): Buffer[] => [encodeParse('', text), encodeBind('', ''), encodeExecute('')];

describe('texts of one shape whose constants choose what is read are answered each by its own text', () => {
  it.each([
    ['a JSON member by ->>', "select row_to_json(p)->>'name' as v from people p where id = 1", "select row_to_json(p)->>'ssn' as v from people p where id = 1"],
    ['a JSON path by #>>', "select doc #>> '{name}' as v from people where id = 1", "select doc #>> '{ssn}' as v from people where id = 1"],
    ['a jsonpath', "select jsonb_path_query(doc, '$.name') as v from people where id = 1", "select jsonb_path_query(doc, '$.ssn') as v from people where id = 1"],
    ['a subscript', "select doc['name'] as v from people where id = 1", "select doc['ssn'] as v from people where id = 1"],
    ['an array position', 'select (array[name, ssn])[1] as v from people where id = 1', 'select (array[name, ssn])[2] as v from people where id = 1'],
    ['a format() position', "select format('%1$s', name, ssn) as v from people where id = 1", "select format('%2$s', name, ssn) as v from people where id = 1"],
    ['a json member in WHERE and the target', "select doc->>'name' as v from people where doc->>'name' = 'Ada Lovelace'", "select doc->>'ssn' as v from people where doc->>'name' = 'Ada Lovelace'"],
    ['a bare constant beside a member', "select 'a' as k, doc->>'name' as v from people where id = 1", "select 'b' as k, doc->>'ssn' as v from people where id = 1"],
  ])('masks the covered value chosen by %s after the harmless one was answered', async (_, harmless, covered) => {
    const session = await frontDoor.openRaw(['readers']);
    await session.run(harmless, harmless, covered, harmless, covered);
    expect(session.rows().length).toBeGreaterThanOrEqual(3);
    expectNoRawSsn(session.received.toString('latin1'));
  });

  it('masks the same covered reads through the extended protocol, pipelined behind the harmless ones', async () => {
    const session = await frontDoor.openRaw(['readers']);
    session.send(
      ...step("select doc->>'name' as v from people where id = 1"),
      ...step("select doc->>'ssn' as v from people where id = 1"),
      ...step("select row_to_json(p)->>'name' as v from people p where id = 1"),
      ...step("select row_to_json(p)->>'ssn' as v from people p where id = 1"),
      encodeSync(),
    );
    await session.readyCount(2);
    expect(session.rows()).toHaveLength(4);
    expectNoRawSsn(session.received.toString('latin1'));
  });

  it.each([
    ['whitespace', 'select ssn  from people where id = 1'],
    ['a comment', 'select /* x */ ssn from people where id = 1'],
    ['a quoted identifier', 'select "ssn" from people where id = 1'],
    ['a Unicode-escaped identifier', 'select upper(U&"\\0073sn") as v from people where id = 1'],
    ['a Unicode-escaped identifier with UESCAPE', 'select upper(U&"!0073sn" UESCAPE \'!\') as v from people where id = 1'],
    ['a dollar-quoted constant beside it', 'select $$x$$ as k, lower(ssn) as v from people where id = 1'],
    ['an E string beside it', "select E'\\x41' as k, lower(ssn) as v from people where id = 1"],
  ])('masks ssn written with %s after name was read in that form', async (_, text) => {
    const session = await frontDoor.openRaw(['readers']);
    await session.run(text.replace(/ssn|0073sn/, (m) => (m === 'ssn' ? 'name' : '006eame')), text);
    expectNoRawSsn(session.received.toString('latin1'));
  });
});

describe('the same text under another search path, role or subject', () => {
  it('denies public.secrets after set_config puts the path back, the same shape that set it to shadow', async () => {
    const session = await frontDoor.openRaw(['readers']);
    await session.run("select set_config('search_path', 'shadow', false)", 'select id from secrets where id = 1', 'select id from secrets where id = 2');
    expect(session.rows().slice(1)).toEqual([['1'], ['2']]);
    await session.run("select set_config('search_path', 'public', false)", 'select id from secrets where id = 3', 'select id from secrets where id = 1');
    expect(session.rows().filter((row) => row[0] === '3')).toEqual([]);
    expect(session.errors().map((e) => e.C)).toEqual(['42501', '42501']);
  });

  it('denies the same text alternated with SET search_path: the last-text memory answers by the path', async () => {
    const session = await frontDoor.openRaw(['readers']);
    const text = 'select id from secrets where id = 1';
    await session.run('set search_path = shadow', text, text, 'set search_path = public', text, 'set search_path = shadow', text, 'reset search_path', text);
    expect(session.rows()).toEqual([['1'], ['1'], ['1']]);
    expect(session.errors().map((e) => e.C)).toEqual(['42501', '42501']);
  });

  it('denies it when SET and the read share one message, and when the SET is pipelined before Sync', async () => {
    const session = await frontDoor.openRaw(['readers']);
    await session.run('set search_path = shadow', 'select id from secrets where id = 1');
    await session.run('set search_path = public; select id from secrets where id = 3');
    session.send(...step('set search_path = shadow'), encodeSync());
    await session.readyCount(5);
    session.send(...step('set search_path = public'), ...step('select id from secrets where id = 3'), encodeSync());
    await session.readyCount(6);
    expect(session.rows()).toEqual([['1']]);
    expect(session.errors().length).toBeGreaterThanOrEqual(2);
  });

  it.each([
    ['a simple query', (text: string) => [encodeQuery(text)]],
    ['the extended protocol', (text: string) => [...step(text), encodeSync()]],
  ])('denies public.secrets under the path empty, public after the same text was allowed under the one schema "empty,public" (%s)', async (_, send) => {
    // Both paths joined with commas read "empty,public": a key built so must not let the
    // decision (or any answer) of one stand for the other.
    const session = await frontDoor.openRaw(['readers']);
    const text = 'select secret from secrets where id = 3';
    await session.run('set search_path = "empty,public"');
    let ready = session.count('ReadyForQuery');
    session.send(...send(text));
    await session.readyCount(ready + 1);
    expect(session.errors()).toEqual([]);
    await session.run('set search_path = empty, public');
    ready = session.count('ReadyForQuery');
    session.send(...send(text));
    await session.readyCount(ready + 1);
    expect(session.rows()).toEqual([]);
    expect(session.errors().map((e) => e.C)).toEqual(['42501']);
  });

  it('refuses SET ROLE and set_config of role, before and after an allowed setting of the same shape', async () => {
    const session = await frontDoor.openRaw(['readers']);
    await session.run("set application_name = 'a'", 'set role postgres', "select set_config('application_name', 'b', false)", "select set_config('role', 'postgres', false)");
    expect(session.errors().map((e) => e.C)).toEqual(['42501', '42501']);
  });

  it('answers each subject by its own grants for one text, alternated on two sessions', async () => {
    const [reader, ordersOnly] = [await frontDoor.openRaw(['readers']), await frontDoor.openRaw(['orders'])];
    for (let i = 1; i <= 3; i++) {
      await reader.run(`select name from people where id = ${i}`);
      await ordersOnly.run(`select name from people where id = ${i}`);
    }
    expect(reader.errors()).toEqual([]);
    expect(ordersOnly.errors().map((e) => e.C)).toEqual(['42501', '42501', '42501']);
  });
});

describe('error texts that quote a covered value', () => {
  it.each([
    ['a whole row cast', 'select row_to_json(p)::text::int from people p where id = 1'],
    ['a row as text', 'select (p.*)::text::int from people p where id = 1'],
    ['a JSON member cast', "select (doc->>'ssn')::int from people where id = 1"],
    ['a view column that is ssn renamed', 'select nick::int from people_view where id = 1'],
    ['a view row', 'select v::text::int from people_view v where id = 1'],
    ['a materialized view column that is ssn renamed', 'select nick::int from people_mat where id = 1'],
    ['a view column in WHERE', "select id from people_view where id = 1 and nick::int = 1"],
  ])('masks the value quoted by the error of %s', async (_, text) => {
    const session = await frontDoor.openRaw(['readers']);
    await session.run(text.replace('ssn', 'name'), text, text.replace('id = 1', 'id = 2'), text);
    expect(session.errors().length).toBeGreaterThan(0);
    expectNoRawSsn(session.received.toString('latin1'));
  });
});

describe('error texts that quote a covered value through a view of the session', () => {
  it('masks the error of a temporary view that renames ssn, made by an agent allowed DDL', async () => {
    const session = await frontDoor.openRaw(['changers']);
    await session.run('create temp view rt5_temp_view as select id, ssn as nick from people', 'select nick::int from rt5_temp_view where id = 1');
    expect(session.errors().map((e) => e.C)).toEqual(['22P02']);
    expectNoRawSsn(session.received.toString('latin1'));
  });
});

describe('replies joined in one write', () => {
  it('masks every result of many statements answered in one read, with a warning among them', async () => {
    const session = await frontDoor.openRaw(['readers']);
    const texts = Array.from({ length: 40 }, (_, i) => (i % 10 === 5 ? 'commit' : `select ssn, name, ${i} as n from people where id = 1`));
    session.send(...texts.map((text) => encodeQuery(text)));
    await session.readyCount(41);
    expect(session.count('NoticeResponse')).toBeGreaterThan(0);
    expect(session.rows()).toHaveLength(36);
    expectNoRawSsn(session.received.toString('latin1'));
  });

  it('masks a notification that arrives among the replies of a run of statements', async () => {
    const [listener, notifier] = [await frontDoor.openRaw(['readers']), await frontDoor.openRaw(['writers'])];
    await listener.run('listen rt5_channel');
    expect(listener.errors()).toEqual([]);
    await notifier.run(`notify rt5_channel, '${RAW_SSN}'`);
    listener.send(...Array.from({ length: 20 }, (_, i) => encodeQuery(`select name, ${i} as n from people where id = 1`)));
    await listener.readyCount(22);
    expect(listener.count('NotificationResponse')).toBe(1);
    expectNoRawSsn(listener.received.toString('latin1'));
  });

  it('masks a covered column in a row of several megabytes that crosses many reads', async () => {
    const session = await frontDoor.openRaw(['readers']);
    await session.run("select repeat('x', 3000000) as pad, ssn, repeat('y', 3000000) as pad2 from people where id = 1");
    expect(session.rows()).toHaveLength(1);
    expect(session.rows()[0]![1]).not.toBe(RAW_SSN);
    expectNoRawSsn(session.received.toString('latin1'));
  });
});

describe('bytes before the login is answered', () => {
  const startup = encodeStartupMessage([['user', 'agent'], ['database', 'redteam-db']]);

  it('keeps the limit after an SSLRequest answered N: a password claiming 64 MiB ends the connection', async () => {
    const raw = await frontDoor.rawSocket();
    raw.socket.write(encodeSSLRequest());
    await waitFor(() => raw.received().length > 0);
    expect(raw.received().toString('latin1')).toBe('N');
    raw.socket.write(startup);
    await waitFor(() => raw.received().length > 1);
    // A stranger streams a "password" far past the longest token read at all (65,535 characters).
    await streamOversizedPassword(raw);
    await waitFor(() => raw.closed(), 5_000);
    expect(raw.received().toString('latin1')).toContain('08P01');
  });

  it('ends a login whose token is followed by more statements than the limit, and runs none of them', async () => {
    const raw = await frontDoor.rawSocket();
    raw.socket.write(startup);
    await waitFor(() => raw.received().length > 0);
    const piled = Array.from({ length: 4_000 }, (_, i) => encodeQuery(`select ssn, ${i} as n, 'padding padding padding padding' as p from people`));
    raw.socket.write(Buffer.concat([encodePasswordMessage(await frontDoor.token(['readers'])), ...piled]));
    await waitFor(() => raw.closed(), 10_000);
    const text = raw.received().toString('latin1');
    expect(text).toContain('08P01');
    expect(text).not.toContain('SELECT 1');
    expectNoRawSsn(text);
  });

  it('answers a CancelRequest of an unknown key by closing, and a session opened after it still works', async () => {
    const raw = await frontDoor.rawSocket();
    raw.socket.write(Buffer.concat([encodeCancelRequest(12345, 67890), encodeQuery('select ssn from people')]));
    await waitFor(() => raw.closed(), 5_000);
    expect(raw.received().length).toBe(0);
    const session = await frontDoor.openRaw(['readers']);
    await session.run('select name from people where id = 1');
    expect(session.rows()).toEqual([['Ada Lovelace']]);
  });
});
