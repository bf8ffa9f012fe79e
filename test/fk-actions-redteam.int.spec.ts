import { afterEach, describe, expect, it } from 'vitest';
import { sqlState, useWritersFrontDoor } from './support/postgres-proxy-harness.js';

/*
 * Red team of foreign-key actions (README "Policy"): an agent allowed to read, write and change the
 * schema, with books.ledger denied whole, tries to change or delete ledger rows through the ON
 * DELETE/UPDATE actions of its foreign keys without naming it. Every probe is kept, those that held too.
 */

const RESOURCE = 'fkrt-db';
const LEDGER_ROW = { id: 1, account: 1, mid: 1, part: 1, mixed: 1, def: 1, dotted: 1 };
const frontDoor = useWritersFrontDoor({
  prefix: 'sluice_fkrt',
  resource: RESOURCE,
  guards: [
    { name: 'ledger-untouchable', tables: ['books.ledger'] },
  ],
  setupSql: () => [
    'create table public.base (id int)',
    'create table public.accounts (id int primary key) inherits (public.base)',
    'insert into public.accounts values (1), (2)',
    'create table public.roots (id int primary key)',
    'insert into public.roots values (1)',
    'create table public.mid (id int primary key, root int references public.roots on delete cascade on update cascade)',
    'insert into public.mid values (1, 1)',
    'create table public.parts (id int primary key) partition by range (id)',
    'create table public.parts_1 partition of public.parts for values from (0) to (100)',
    'insert into public.parts values (1)',
    'create schema "Public"',
    'create table "Public"."Accounts" (id int primary key)',
    'insert into "Public"."Accounts" values (1)',
    'create table public.defs (id int primary key)',
    'insert into public.defs values (1)',
    // Two tables whose `schema.relation` texts are both a.b.c.
    'create schema "a.b"',
    'create table "a.b".c (id int primary key)',
    'insert into "a.b".c values (1)',
    'create schema a',
    'create table a."b.c" (id int primary key)',
    'insert into a."b.c" values (1)',
    'create view public.accounts_view as select * from public.accounts',
    'create schema early',
    'create table public.free (id int primary key)',
    'create schema books',
    'create table books.ledger (id int primary key, account int references public.accounts on delete cascade on update cascade, ' +
      'mid int references public.mid on delete set null on update set null, part int references public.parts on delete cascade, ' +
      'mixed int references "Public"."Accounts" on delete cascade, def int references public.defs on delete cascade deferrable initially deferred, ' +
      'dotted int references a."b.c" on delete cascade)',
    'insert into books.ledger values (1, 1, 1, 1, 1, 1, 1)',
  ],
});

const ledgerRows = async (): Promise<unknown[]> => (await frontDoor.direct.query('select * from books.ledger order by id')).rows;

// A probe that got through changed the fixture: put it back so the next probe starts from it.
const RESTORE = [
  'alter table if exists public.harmless rename to accounts',
  'alter table if exists early.accounts set schema public',
  'drop table if exists public.base2, public.pp, public.pp2',
  'insert into public.accounts values (1), (2) on conflict do nothing',
  'insert into public.roots values (1) on conflict do nothing',
  'insert into public.mid values (1, 1) on conflict do nothing',
  'insert into public.parts values (1) on conflict do nothing',
  'insert into "Public"."Accounts" values (1) on conflict do nothing',
  'insert into public.defs values (1) on conflict do nothing',
  'insert into "a.b".c values (1) on conflict do nothing',
  'insert into a."b.c" values (1) on conflict do nothing',
  'delete from books.ledger',
  'insert into books.ledger values (1, 1, 1, 1, 1, 1, 1)',
].join(';\n');

afterEach(async () => {
  const rows = await ledgerRows();
  await frontDoor.direct.query(RESTORE);
  expect(rows).toEqual([LEDGER_ROW]);
});

describe('foreign-key actions onto books.ledger, reached without naming it', () => {
  it('refuses DELETE/UPDATE/MERGE of every table whose foreign-key actions reach the ledger, however named', async () => {
    const writer = await frontDoor.connect(['writers']);
    for (const text of [
      'delete from only public.accounts where id = 1',
      'delete from public.base where id = 1', // accounts inherits base: its rows are deleted too
      'delete from public.parts where id = 1',
      'delete from public.parts_1 where id = 1', // a partition directly: the foreign key is cloned onto it
      'delete from "Public"."Accounts" where id = 1',
      'delete from a."b.c" where id = 1',
      'DELETE FROM "public"."accounts" WHERE id = 1',
      'delete from public.roots where id = 1', // roots -> mid -> ledger
      'update public.mid set id = 9 where id = 1',
      'delete from public.defs where id = 1', // a DEFERRABLE foreign key: its action is not deferred
      'with gone as (delete from public.accounts where id = 1 returning id) select * from gone',
      'select 1; with moved as (update public.accounts set id = 5 where id = 1 returning 1) select 1',
      'merge into public.accounts t using (values (1)) v(id) on t.id = v.id when matched then update set id = 5',
      'merge into public.accounts t using (values (1)) v(id) on t.id = v.id when matched then delete',
      'update public.accounts set id = 7 from (values (1)) v(x) where accounts.id = v.x',
      'delete from public.accounts using public.roots where accounts.id = roots.id',
      'insert into public.roots values (1) on conflict (id) do update set id = 4',
      'prepare wipe as delete from public.accounts where id = $1',
      'truncate public.accounts cascade',
    ]) {
      expect(await sqlState(writer.query(text)), text).toBe('42501');
    }
  });

  it('refuses a DELETE of a view over a referenced table (its rewrite deletes the table\'s rows)', async () => {
    const writer = await frontDoor.connect(['writers']);
    expect(await sqlState(writer.query('delete from public.accounts_view where id = 1'))).toBe('42501');
    expect(await sqlState(writer.query('update public.accounts_view set id = 8 where id = 1'))).toBe('42501');
  });

  it('refuses an unqualified name wherever the search_path finds it', async () => {
    const writer = await frontDoor.connect(['writers']);
    await writer.query('set search_path = early, public');
    expect(await sqlState(writer.query('delete from accounts where id = 1'))).toBe('42501');
    expect(await sqlState(writer.query('delete from "accounts" where id = 1'))).toBe('42501');
    await writer.query('set search_path = "$user", "Public", public');
    expect(await sqlState(writer.query('delete from "Accounts" where id = 1'))).toBe('42501');
  });

  it('leaves to PostgreSQL a TRUNCATE without CASCADE of a referenced table: it refuses it', async () => {
    const writer = await frontDoor.connect(['writers']);
    expect(await sqlState(writer.query('truncate public.accounts'))).toBe('0A000');
  });

  it('allows a DELETE of a table no acting foreign key reaches ("a.b".c has the same text as a."b.c": refused, fail closed)', async () => {
    const writer = await frontDoor.connect(['writers']);
    await writer.query('delete from public.free where id = 2');
    expect(await sqlState(writer.query('delete from "a.b".c where id = 1'))).toBe('42501');
  });

  it('refuses a foreign key added to the ledger itself, even NOT VALID', async () => {
    const writer = await frontDoor.connect(['writers']);
    expect(await sqlState(writer.query('alter table books.ledger add constraint sneaky foreign key (id) references public.roots on delete cascade not valid'))).toBe('42501');
  });
});

describe('code that deletes a referenced table\'s rows', () => {
  it('keeps the ledger: a SQL function, a DO block, a procedure (whichever step the proxy refuses)', async () => {
    const writer = await frontDoor.connect(['writers']);
    const refused: string[] = [];
    for (const text of [
      "create function public.wipe() returns void language sql as 'delete from public.accounts where id = 1'",
      'select public.wipe()',
      'create function public.wipe_atomic() returns void language sql begin atomic delete from public.accounts where id = 1; end',
      'select public.wipe_atomic()',
      'do $$ begin delete from public.accounts where id = 1; end $$',
      "create procedure public.wipe_proc() language sql as 'delete from public.accounts where id = 1'",
      'call public.wipe_proc()',
    ]) {
      if ((await sqlState(writer.query(text))) === '42501') refused.push(text);
    }
    expect(refused).toContain('do $$ begin delete from public.accounts where id = 1; end $$');
    await frontDoor.direct.query('drop function if exists public.wipe(), public.wipe_atomic(); drop procedure if exists public.wipe_proc()');
  });
});

describe('schema changes not yet in the catalog facts', () => {
  it('refuses a DELETE after a rename, inherit or attach in the same message (the facts are stale)', async () => {
    const writer = await frontDoor.connect(['writers']);
    for (const text of [
      'alter table public.accounts rename to harmless; delete from public.harmless where id = 1',
      'create table public.base2 (id int); alter table public.accounts inherit public.base2; delete from public.base2 where id = 1',
      'create table public.pp (id int primary key) partition by range (id); alter table public.pp attach partition public.roots for values from (0) to (100); delete from public.pp where id = 1',
      'alter table public.roots rename column id to key; update public.roots set key = 3 where key = 1',
    ]) {
      expect(await sqlState(writer.query(text)), text).toBe('42501');
    }
  });

  it('refuses a DELETE after a rename, inherit or attach earlier in the same transaction', async () => {
    const writer = await frontDoor.connect(['writers']);
    const changes: readonly (readonly [string, string])[] = [
      ['alter table public.accounts rename to harmless', 'delete from public.harmless where id = 1'],
      ['alter table public.accounts set schema early', 'delete from early.accounts where id = 1'],
      ['create table public.base2 (id int); alter table public.accounts inherit public.base2', 'delete from public.base2 where id = 1'],
      ['create table public.pp (id int primary key) partition by range (id); alter table public.pp attach partition public.roots for values from (0) to (100)', 'delete from public.pp where id = 1'],
      ['alter table public.parts detach partition public.parts_1', 'delete from public.parts_1 where id = 1'],
    ];
    for (const [change, write] of changes) {
      await writer.query('begin');
      await writer.query(change).catch(() => undefined);
      expect(await sqlState(writer.query(write)), `${change}; ${write}`).toBe('42501');
      await writer.query('rollback');
    }
  });

  it('refuses a DELETE after another session committed the change (the facts are read again)', async () => {
    const changer = await frontDoor.connect(['writers']);
    const writer = await frontDoor.connect(['writers']);
    await writer.query('delete from public.free where id = 99'); // the facts are read and trusted now
    await changer.query('alter table public.roots rename to roots_renamed');
    try {
      expect(await sqlState(writer.query('delete from public.roots_renamed where id = 1'))).toBe('42501');
      await changer.query('create table public.pp2 (id int primary key) partition by range (id)');
      await changer.query('alter table public.pp2 attach partition public.roots_renamed for values from (0) to (100)');
      expect(await sqlState(writer.query('delete from public.pp2 where id = 1'))).toBe('42501');
    } finally {
      await frontDoor.direct.query('alter table public.pp2 detach partition public.roots_renamed').catch(() => undefined);
      await frontDoor.direct.query('drop table if exists public.pp2');
      await frontDoor.direct.query('alter table public.roots_renamed rename to roots');
    }
  });

  it('lets ALTER COLUMN … TYPE of a referenced key through: it rebuilds the ledger\'s constraint, not its rows', async () => {
    const writer = await frontDoor.connect(['writers']);
    await writer.query('begin');
    await writer.query('alter table public.defs alter column id type bigint');
    await writer.query('rollback');
    // USING changes the referenced keys: no action runs, the rebuilt constraint refuses the ledger's rows.
    const changed = await sqlState(writer.query('alter table public.defs alter column id type bigint using id + 100'));
    expect(changed).toBe('23503');
  });
});
