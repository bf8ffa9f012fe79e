import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '@sluice/config';
import { sqlState, usePostgresFrontDoor } from './support/postgres-proxy-harness.js';

/*
 * Red team of the guards on read over writes (README "Policy", `actions` on a deny rule): an agent
 * allowed to read, write and change the schema tries to read hr.salaries, whose reads are denied,
 * through DDL that moves its rows under another name or hooks code onto its writes.
 */

const database = `sluice_rgred_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
const RESOURCE = 'rgred-db';
const frontDoor = usePostgresFrontDoor(
  {
    config: parseConfig({
      resources: [{ name: RESOURCE, type: 'postgres', listen: '127.0.0.1:0', target: { host: '127.0.0.1', database }, credentials: { username: 'postgres' } }],
      rules: [
        { name: 'salaries-unread', effect: 'deny', resources: [RESOURCE], actions: ['read'], tables: ['hr.salaries'] },
        { name: 'writers', effect: 'allow', subjects: { groups: ['writers'] }, resources: [RESOURCE], actions: ['read', 'write', 'ddl'] },
      ],
    }),
    database,
    hashKey: 'read-guards-redteam-int',
    setupSql: [
      'create schema hr',
      'create table hr.salaries (id int primary key, name text not null, amount int)',
      "insert into hr.salaries values (1, 'Alice', 250000)",
      'create table public.parent (id int, name text, amount int)',
      'create table public.sink (amount int)',
      // A loopback foreign server, as a DBA might leave one: its foreign tables read this database.
      'create extension postgres_fdw',
      `create server loopback foreign data wrapper postgres_fdw options (host '127.0.0.1', port '5432', dbname '${database}')`,
      "create user mapping for public server loopback options (user 'postgres')",
    ].join(';\n'),
  },
  60_000,
);

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

describe('what a write on the table still tells (left open: README "Policy" says writes tell a little)', () => {
  // A write's error names the row it failed on: PostgreSQL's "Failing row contains (…)" detail. The
  // guard on read does not cover it; a deny without `actions` does. These record what the agent sees.
  it('a constraint error on a write of one row carries the rest of that row in its detail', async () => {
    const writer = await frontDoor.connect(['writers']);
    const error = await writer.query('update hr.salaries set name = null where id = 1').then(
      () => undefined,
      (caught: { code?: string; detail?: string }) => caught,
    );
    expect(error?.code).toBe('23502');
    expect(error?.detail).toContain('250000');
  });
});
