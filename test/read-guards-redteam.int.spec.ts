import { describe, expect, it } from 'vitest';
import { sqlState, useWritersFrontDoor } from './support/postgres-proxy-harness.js';

/*
 * Red team of the guards on read over writes (README "Policy", `actions` on a deny rule): an agent
 * allowed to read, write and change the schema tries to read hr.salaries, whose reads are denied,
 * through DDL that moves its rows under another name or hooks code onto its writes.
 */

const RESOURCE = 'rgred-db';
const frontDoor = useWritersFrontDoor({
  prefix: 'sluice_rgred',
  resource: RESOURCE,
  guards: [
    { name: 'salaries-unread', actions: ['read'], tables: ['hr.salaries'] },
  ],
  setupSql: (database) => [
    'create schema hr',
    'create table hr.salaries (id int primary key, name text not null, amount int)',
    "insert into hr.salaries values (1, 'Alice', 250000)",
    'create table public.parent (id int, name text, amount int)',
    'create table public.sink (amount int)',
    // A loopback foreign server, as a DBA might leave one: its foreign tables read this database.
    'create extension postgres_fdw',
    `create server loopback foreign data wrapper postgres_fdw options (host '127.0.0.1', port '5432', dbname '${database}')`,
    "create user mapping for public server loopback options (user 'postgres')",
  ],
});

describe('DDL that would move the rows of a table whose reads are denied', () => {
  it('refuses renaming the table or its schema, making it a child of a readable parent, rules or triggers on it, and a foreign table onto it', async () => {
    const writer = await frontDoor.connect(['writers']);
    expect(await sqlState(writer.query('select * from hr.salaries'))).toBe('42501');
    for (const text of [
      'alter table hr.salaries rename to open',
      'alter index hr.salaries rename to open',
      'alter table hr.salaries set schema public',
      'alter schema hr rename to open',
      'alter table hr.salaries inherit public.parent',
      'create rule leak as on update to hr.salaries do also insert into public.sink values (old.amount)',
      'create trigger leak after update on hr.salaries for each row execute function suppress_redundant_updates_trigger()',
      "create foreign table public.remote (id int, name text, amount int) server loopback options (schema_name 'hr', table_name 'salaries')",
    ]) {
      expect(await sqlState(writer.query(text)), text).toBe('42501');
    }
    // Nothing moved: the table is where it was, alone, with no rule or trigger on it.
    const { rows } = await frontDoor.direct.query(
      "select c.relname, n.nspname, (select count(*)::int from pg_inherits where inhrelid = c.oid) as parents, c.relhasrules, c.relhastriggers from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.relname = 'salaries'",
    );
    expect(rows).toEqual([{ relname: 'salaries', nspname: 'hr', parents: 0, relhasrules: false, relhastriggers: false }]);
    expect((await writer.query('select count(*)::int as n from public.parent')).rows[0].n).toBe(0);
    expect((await frontDoor.direct.query("select count(*)::int as n from pg_class where relname = 'remote'")).rows[0].n).toBe(0);
  });

  it('still lets writes into the table that only write through', async () => {
    const writer = await frontDoor.connect(['writers']);
    await writer.query("insert into hr.salaries values (2, 'Bob', 1)");
    await writer.query('update hr.salaries set amount = 2 where id = 2');
    await writer.query('alter table hr.salaries rename column amount to amount_eur');
    await writer.query('alter table hr.salaries rename column amount_eur to amount');
    expect((await frontDoor.direct.query('select amount from hr.salaries where id = 2')).rows[0].amount).toBe(2);
  });
});

describe('what a write on the table tells in its errors', () => {
  // PostgreSQL quotes the row a write failed on ("Failing row contains (…)", "Key (id)=(1)
  // already exists", a cast's "invalid input syntax … \"Alice\""). The guard on read cannot foresee
  // which write fails; the proxy withholds the texts of every write on the table instead.
  const leaks = (error: unknown): boolean => /250000|Alice/.test(JSON.stringify(error));
  const failure = async (promise: Promise<unknown>): Promise<{ code?: string; message?: string; detail?: string } | undefined> =>
    promise.then(
      () => undefined,
      (caught: { code?: string; message?: string; detail?: string }) => ({ code: caught.code, message: caught.message, detail: caught.detail, ...caught }),
    );

  it('keeps the SQLSTATE and withholds the row: a constraint, a duplicate key, a cast in the WHERE, through both protocols', async () => {
    const writer = await frontDoor.connect(['writers']);
    for (const [text, params, code] of [
      ['update hr.salaries set name = null where id = 1', [], '23502'],
      ["insert into hr.salaries values (1, 'Zed', 7)", [], '23505'],
      ['update hr.salaries set amount = 1 where name::int = 1', [], '22P02'],
      ['update hr.salaries set name = $1 where id = $2', [null, 1], '23502'],
    ] as const) {
      const error = await failure(writer.query(text, [...params]));
      expect(error?.code, text).toBe(code);
      expect(leaks(error), `${text}: ${JSON.stringify(error)}`).toBe(false);
      expect(error?.message).toContain('[withheld]');
    }
    // The record of the failed command carries the withheld message too.
    expect(frontDoor.events.some((event) => leaks(event.data))).toBe(false);
  });

  it('withholds a deferred constraint failing at COMMIT, which names no table', async () => {
    await frontDoor.direct.query('alter table hr.salaries add constraint amount_positive check (amount > 0) not valid');
    await frontDoor.direct.query('create table if not exists hr.owners (id int primary key)');
    await frontDoor.direct.query('alter table hr.salaries add column owner int references hr.owners deferrable initially deferred');
    const writer = await frontDoor.connect(['writers']);
    await writer.query('begin');
    await writer.query('update hr.salaries set owner = 42 where id = 1');
    const error = await failure(writer.query('commit'));
    expect(error?.code).toBe('23503');
    expect(leaks(error) || JSON.stringify(error).includes('42')).toBe(false);
  });

  it('leaves the texts of writes on other tables as the server wrote them', async () => {
    const writer = await frontDoor.connect(['writers']);
    await writer.query("insert into public.parent values (1, 'Bob', 5)");
    await writer.query('alter table public.parent add primary key (id)');
    const error = await failure(writer.query("insert into public.parent values (1, 'Bob', 5)"));
    expect(error?.detail).toBe('Key (id)=(1) already exists.');
  });
});
