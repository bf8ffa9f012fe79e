import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import type pg from 'pg';
import { encodeBind, encodeExecute, encodeParse, encodeQuery, encodeSync } from '@sluice/codec-pg';
import { sqlState, useWritersFrontDoor, waitFor } from './support/postgres-proxy-harness.js';

/*
 * Red team of the withheld server texts and of CASCADE (README "Policy"): an agent allowed to read,
 * write and change the schema, with reads of hr.salaries denied and books.ledger denied whole,
 * tries to get a salary out through the server's texts (or anything else a write on the table
 * sends out), or to change the ledger without naming it.
 */

const RESOURCE = 'rgtxt-db';
const frontDoor = useWritersFrontDoor({
  prefix: 'sluice_rgtxt',
  resource: RESOURCE,
  guards: [
    { name: 'salaries-unread', actions: ['read'], tables: ['hr.salaries'] },
    { name: 'ledger-untouchable', tables: ['books.ledger'] },
  ],
  setupSql: () => [
    'create schema hr',
    'create table hr.salaries (id int primary key, name text not null, amount int)',
    "insert into hr.salaries values (1, 'Alice', 250000)",
    'create sequence public.s',
    'create table public.accounts (id int primary key)',
    'insert into public.accounts values (1), (2)',
    "create type public.mood as enum ('calm', 'angry')",
    'create domain public.cents as int constraint cents_positive check (value >= 0)',
    'create schema books',
    'create table books.ledger (id int primary key, account int references public.accounts on delete cascade on update cascade, mood public.mood, amount public.cents)',
    "insert into books.ledger values (1, 1, 'calm', 5)",
  ],
});

const SECRET = /250000|Alice/;
const leaks = (value: unknown): boolean => SECRET.test(JSON.stringify(value));
const failure = async (promise: Promise<unknown>): Promise<Record<string, unknown> | undefined> =>
  promise.then(
    () => undefined,
    (caught: Record<string, unknown>) => ({ code: caught.code, message: caught.message, detail: caught.detail, hint: caught.hint, where: caught.where, internalQuery: caught.internalQuery }),
  );
const notices = (client: pg.Client): Record<string, unknown>[] => {
  const seen: Record<string, unknown>[] = [];
  client.on('notice', (notice) => seen.push({ ...notice, message: notice.message }));
  return seen;
};

describe('errors of a write on hr.salaries whose message could carry the value before its first colon or quote', () => {
  it('withholds them: built-in messages quote the value after a colon or in quotes, or bare (withheld whole)', async () => {
    const writer = await frontDoor.connect(['writers']);
    for (const text of [
      'update hr.salaries set amount = 1 where id = 1 and name::regclass is null', // relation "Alice" does not exist
      "update hr.salaries set amount = 1 where id = 1 and has_table_privilege(amount::oid, 'select')", // relation with OID 250000 does not exist
      'update hr.salaries set amount = 1 where id = 1 and make_time(amount, 0, 0) is null', // time field value out of range: 250000:00:00
      "update hr.salaries set name = repeat('1', amount)::bit(3)::text where id = 1", // bit string length 250000 does not match type bit(3)
      "update hr.salaries set amount = 1 where id = 1 and (amount || ': x')::int = 0", // invalid input syntax for type integer: "250000: x"
      "update hr.salaries set amount = 1 where id = 1 and ('\"' || name)::int = 0",
      "update hr.salaries set amount = 1 where id = 1 and nextval(name) = 0",
      'update hr.salaries set amount = 1 / (amount - 125000 * 2) where id = 1', // division by zero, the value in no text
      "update hr.salaries set amount = 1 where id = 1 and jsonb_path_query_first('{}', name::jsonpath) is null",
      'explain analyze update hr.salaries set amount = 1 where id = 1 and name::int = 0',
    ]) {
      // Some succeed (has_table_privilege of an OID that names nothing is NULL): their texts are none.
      const error = await failure(writer.query(text));
      expect(leaks(error), `${text}: ${JSON.stringify(error)}`).toBe(false);
      expect(error?.hint ?? error?.where ?? error?.internalQuery, text).toBeUndefined();
      if (error) expect(error.message, text).toContain('[withheld]');
    }
    expect(frontDoor.events.filter((event) => leaks(event.data))).toEqual([]);
  });

  it('withholds COPY FROM errors, whose context quotes the line, and the errors of a prepared write at Execute', async () => {
    const writer = await frontDoor.connect(['writers']);
    const token = await frontDoor.token(['writers']);
    // COPY … FROM STDIN whose line collides with the stored row: the detail would quote its key, the context the line.
    const copy = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      let stderr = '';
      const child = spawn('psql', ['-h', '127.0.0.1', '-p', String(frontDoor.port), '-U', 'agent', '-d', RESOURCE, '-X', '-v', 'VERBOSITY=verbose', '-c', 'copy hr.salaries (id, name, amount) from stdin'], {
        env: { ...process.env, PGPASSWORD: token },
      });
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.stdin.end('1\tZed\t7\n\\.\n');
      child.on('error', reject);
      child.on('exit', (code) => resolve({ code, stderr }));
    });
    expect(copy.stderr).toContain('23505');
    expect(copy.stderr).toContain('[withheld]');
    expect(copy.stderr).not.toMatch(/CONTEXT|Zed|Key \(/);
    await writer.query({ name: 'nulls', text: 'update hr.salaries set name = $1 where id = $2', values: [null, 1] }).catch(() => undefined);
    const prepared = await failure(writer.query({ name: 'nulls', text: 'update hr.salaries set name = $1 where id = $2', values: [null, 1] }));
    expect(prepared?.code).toBe('23502');
    expect(leaks(prepared)).toBe(false);
  });

  it('keeps withholding for a failure arriving at COMMIT or in the same pipelined message, and stops only after the transaction', async () => {
    await frontDoor.direct.query('create table if not exists hr.owners (id int primary key)');
    await frontDoor.direct.query('alter table hr.salaries add column if not exists owner int references hr.owners deferrable initially deferred');
    const writer = await frontDoor.connect(['writers']);
    // One simple-query message: the write, the COMMIT that fails on it, then a statement of its own.
    const piped = await failure(writer.query('begin; update hr.salaries set owner = 250000 where id = 1; commit; select 1'));
    expect(piped?.code).toBe('23503');
    expect(leaks(piped), JSON.stringify(piped)).toBe(false);
    // Extended protocol: the write, then a statement of another table, one Sync: the deferred
    // failure comes at the Sync, after the other statement; then a simple query queued behind.
    const raw = await frontDoor.openRaw(['writers']);
    const ready = raw.count('ReadyForQuery');
    raw.send(
      encodeParse('', 'update hr.salaries set owner = 250000 where id = 1'), encodeBind('', ''), encodeExecute(''),
      encodeParse('', 'select 1'), encodeBind('', ''), encodeExecute(''), encodeSync(),
      encodeQuery('select 2'),
    );
    await raw.readyCount(ready + 2);
    expect(raw.errors().map((error) => error.C)).toEqual(['23503']);
    expect(leaks(raw.errors()), JSON.stringify(raw.errors())).toBe(false);
    // SQL-level PREPARE / EXECUTE of the write: the texts at EXECUTE are withheld too.
    await writer.query('prepare nulls_sql as update hr.salaries set name = null where id = 1');
    const executed = await failure(writer.query('execute nulls_sql'));
    expect(executed?.code).toBe('23502');
    expect(leaks(executed), JSON.stringify(executed)).toBe(false);
    // The next transaction's texts are the server's again.
    const own = await failure(writer.query("select 'x'::int"));
    expect(own?.message).toBe('invalid input syntax for type integer: "x"');
  });

  it('withholds a notice raised while the write runs (a DBA trigger on the table that quotes the row)', async () => {
    await frontDoor.direct.query(
      "create or replace function hr.tell() returns trigger language plpgsql as $$ begin raise notice '%: changed', new.amount; raise notice 'row %', new; return new; end $$",
    );
    await frontDoor.direct.query('create trigger tell before update on hr.salaries for each row execute function hr.tell()');
    try {
      const writer = await frontDoor.connect(['writers']);
      const seen = notices(writer);
      await writer.query('update hr.salaries set id = 1 where id = 1');
      await waitFor(() => seen.length >= 2);
      expect(leaks(seen), JSON.stringify(seen)).toBe(false);
    } finally {
      await frontDoor.direct.query('drop trigger tell on hr.salaries');
    }
  });
});

describe('what a write on hr.salaries hands to others than its own texts', () => {
  it('refuses pg_notify and setval of a value computed from the row (a listener or the sequence would read it), and keeps constants', async () => {
    const writer = await frontDoor.connect(['writers']);
    const heard: string[] = [];
    writer.on('notification', (message) => heard.push(`${message.channel}:${message.payload ?? ''}`));
    await writer.query('listen ch');
    for (const text of [
      "update hr.salaries set amount = amount where id = 1 and pg_notify('ch', name) is null",
      "update hr.salaries set amount = amount where id = 1 and pg_notify(lower(name), 'x') is null",
      "update hr.salaries set amount = amount where id = 1 and setval('public.s', amount) is null",
      "delete from hr.salaries where id = 1 and pg_notify('ch', name) is null",
      "insert into hr.salaries values (1, 'x', 1) on conflict (id) do update set amount = 1 where pg_notify('ch', hr.salaries.name::text) is null",
      "merge into hr.salaries t using (values (1)) v(id) on t.id = v.id when matched and pg_notify('ch', t.name) is null then update set amount = 1",
      "with w as (update hr.salaries set amount = amount where id = 1 and pg_notify('ch', name) is null) select 1",
      "explain analyze update hr.salaries set amount = amount where id = 1 and setval('public.s', amount) is null",
    ]) {
      expect(await sqlState(writer.query(text)), text).toBe('42501');
    }
    await writer.query("update hr.salaries set amount = amount where id = 1 and pg_notify('ch', 'constant') is not null");
    await writer.query('select 1');
    expect(heard).toEqual(['ch:constant']);
    expect((await writer.query('select last_value::int as v from public.s')).rows[0].v).toBe(1);
  });
});

describe('CASCADE and other ways to change books.ledger without naming it', () => {
  it('refuses every CASCADE: of a domain, type, function, constraint, sequence, and ALTER TYPE … CASCADE', async () => {
    const writer = await frontDoor.connect(['writers']);
    for (const text of [
      'drop domain public.cents cascade', // drops books.ledger.amount
      'alter domain public.cents drop constraint cents_positive cascade',
      'drop type public.mood cascade', // drops books.ledger.mood
      'drop table public.accounts cascade', // drops the ledger's foreign key
      'alter table public.accounts drop constraint accounts_pkey cascade',
      'drop sequence public.s cascade',
      'drop schema public cascade',
      'DrOp   TyPe "public"."mood" CaScAdE',
      'drop owned by current_user cascade',
      'drop extension plpgsql cascade',
    ]) {
      expect(await sqlState(writer.query(text)), text).toBe('42501');
    }
    const { rows } = await frontDoor.direct.query("select count(*)::int as n from information_schema.columns where table_schema = 'books' and table_name = 'ledger'");
    expect(rows[0].n).toBe(4);
    // Without CASCADE PostgreSQL itself refuses to reach the ledger.
    expect(await sqlState(writer.query('drop domain public.cents'))).toBe('2BP01');
  });

  it('refuses a DELETE or UPDATE of a referenced table whose foreign-key actions would change the denied table', async () => {
    // The proxy reads which foreign keys act on a referenced table's DELETE/UPDATE from the catalog.
    const writer = await frontDoor.connect(['writers']);
    for (const text of ['update public.accounts set id = 3 where id = 1', 'delete from public.accounts where id = 1', 'insert into public.accounts values (1) on conflict (id) do update set id = 3']) {
      expect(await sqlState(writer.query(text)), text).toBe('42501');
    }
    expect((await frontDoor.direct.query('select account from books.ledger where id = 1')).rows[0].account).toBe(1);
  });

  it('documents what a deny on a table does not see: its types changed in place', async () => {
    // README "Policy": ALTER TYPE names the type, not the tables whose columns have it. Deny the
    // types too to keep the table as it is.
    const writer = await frontDoor.connect(['writers']);
    await writer.query("alter type public.mood rename value 'calm' to 'furious'");
    expect((await frontDoor.direct.query('select mood::text from books.ledger where id = 1')).rows[0].mood).toBe('furious');
  });
});
