import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type pg from 'pg';
import { parseConfig } from '@sluice/config';
import { COLUMN_REDACTED } from '@sluice/masking-engine';
import { encodeBind, encodeDescribe, encodeExecute, encodeParse, encodeQuery, encodeSync } from '@sluice/codec-pg';
import { sqlState, usePostgresFrontDoor } from './support/postgres-proxy-harness.js';
import { RED_TEAM_SEED_SQL, redTeamConfigInput } from './support/postgres-red-team.js';

/*
 * Red team of "column rules follow views": an agent with a read-only token (`readers`) or one
 * that may change the schema (`changers`), a profile whose column rule `(?i)diagnosis` is the only
 * thing standing between it and a made-up diagnosis no detector recognises, and views of every
 * shape over the covered table. Each probe asserts the diagnosis never comes back in clear.
 */

const database = `sluice_viewrt_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
const DIAGNOSIS = 'chronic-xyzzy-syndrome';

const input = redTeamConfigInput(database, ['public.secrets']);
const config = parseConfig({
  ...input,
  masking: { profiles: { pii: { ...input.masking.profiles.pii, columns: [...input.masking.profiles.pii.columns, { match: '(?i)diagnosis', strategy: 'redact' }] } } },
});

const frontDoor = usePostgresFrontDoor({
  config,
  database,
  hashKey: 'view-redteam-int',
  setupSql: `${RED_TEAM_SEED_SQL}
     create table patients (id int primary key, name text, diagnosis text);
     insert into patients values (1, 'Ada Lovelace', '${DIAGNOSIS}');
     create view listed(a, b) as select diagnosis, name from patients;
     create schema "Ward";
     create view "Ward"."Chart"("Note", "N.b") as select diagnosis, name from public.patients;
     create schema "a.b";
     create view "a.b".c as select diagnosis as x from public.patients;
     create schema a;
     create view a."b.c" as select name as x from public.patients;
     create function diagnosis_of(int) returns text language sql stable as 'select diagnosis from public.patients where id = $1';
     create view by_function as select id, diagnosis_of(id) as d from patients;
     create view by_srf as select u from patients, unnest(array[diagnosis]) u;
     create view by_lateral as select l.x from patients p cross join lateral (select p.diagnosis as x) l;
     create view by_union as select name as x from patients union all select diagnosis from patients;
     create view by_intersect as select diagnosis as x from patients intersect select diagnosis from patients;
     create view by_values as select x from (values ('none')) v(x) union all select diagnosis from patients;
     create view by_cte as with c(y) as (select diagnosis from patients) select y as x from c;
     create recursive view by_recursion(x) as select diagnosis from patients union all select x from by_recursion where false;
     create view by_json as select (to_jsonb(p) ->> 'diagnosis') as x from patients p;
     create view guarded with (security_barrier) as select id, diagnosis as x from patients where id > 0;
     create view checked as select id, diagnosis as x from patients where id > 0 with local check option;
     create materialized view mat_over_view as select b, a as kept from listed;
     create schema s1;
     create schema s2;
     create table s1.shadow (x text);
     insert into s1.shadow values ('harmless');
     create view s2.shadow as select diagnosis as x from public.patients;
     create view plain as select id, diagnosis as x, name from patients;
     create schema x1; create schema x2; create schema x3; create schema x4; create schema x5;
     create schema x6; create schema x7; create schema x8; create schema x9; create schema x10;
     create view x10.far as select diagnosis as x from public.patients;
     create table guarded_base (diagnosis text);
     create view truncated as select diagnosis as x from guarded_base;`,
});

/** Every value of every row, as text. */
const rows = async (client: pg.Client, text: string): Promise<string[][]> => {
  const result = await client.query({ text, rowMode: 'array', types: { getTypeParser: () => (value: unknown) => value } } as pg.QueryConfig);
  return result.rows as string[][];
};

const expectNoDiagnosis = (value: unknown): void => {
  expect(JSON.stringify(value)).not.toContain(DIAGNOSIS);
};

/** Each text's rows; a refusal counts as no rows (what matters is that no diagnosis comes back). */
const readAll = async (client: pg.Client, texts: readonly string[]): Promise<Record<string, unknown>> => {
  const out: Record<string, unknown> = {};
  for (const text of texts) out[text] = await rows(client, text).catch((error: { code?: string }) => `refused ${error.code}`);
  return out;
};

describe('views of every shape over a covered column', () => {
  it('masks a view with an explicit column list, bare and through expressions', async () => {
    const client = await frontDoor.connect(['readers']);
    const out = await readAll(client, ['select a from listed', "select a || '' from listed", 'select * from listed', 'select listed from listed']);
    expectNoDiagnosis(out);
  });

  it('masks quoted, mixed-case and dotted view and column names', async () => {
    const client = await frontDoor.connect(['readers']);
    const out = await readAll(client, [
      'select "Note" from "Ward"."Chart"',
      `select "Note" || '' from "Ward"."Chart"`,
      'select * from "Ward"."Chart"',
      `select x || '' from "a.b".c`,
      'select x from "a.b".c',
      `select x || '' from a."b.c"`,
    ]);
    expectNoDiagnosis(out);
  });

  it('masks views over a SQL function, a set-returning function, LATERAL, UNION, INTERSECT, VALUES, a CTE and recursion', async () => {
    const client = await frontDoor.connect(['readers']);
    const views = ['by_function', 'by_srf', 'by_lateral', 'by_union', 'by_intersect', 'by_values', 'by_cte', 'by_recursion', 'by_json', 'guarded', 'checked', 'mat_over_view'];
    const texts = views.flatMap((view) => [`select * from ${view}`, `select (t.*)::text from ${view} t`, `select concat(t) from ${view} t`]);
    const out = await readAll(client, texts);
    expectNoDiagnosis(out);
  });

  it('masks whole rows and composites of a view', async () => {
    const client = await frontDoor.connect(['readers']);
    const out = await readAll(client, [
      'select (v).* from plain v',
      'select row_to_json(v) from plain v',
      'select to_jsonb(v) from plain v',
      'select v::text from plain v',
      'select json_agg(v) from plain v',
      'select (select v from plain v)::text',
      'select array_agg(v)::text from plain v',
      "select (v).x || '' from plain v",
      'select format($$%s$$, v) from plain v',
    ]);
    expectNoDiagnosis(out);
  });

  it('masks a view found through a search_path where a table of the same name sits in an earlier schema on the path', async () => {
    const client = await frontDoor.connect(['readers']);
    await client.query('set search_path = s2, s1, public');
    const a = await readAll(client, ["select x || '' from shadow", 'select * from shadow']);
    await client.query('set search_path = s1, s2, public');
    const b = await readAll(client, ["select x || '' from shadow"]);
    await client.query('set search_path = x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, public');
    const c = await readAll(client, ["select x || '' from plain", 'select x from plain', "select x || '' from far"]);
    expectNoDiagnosis([a, b, c]);
  });

  it('masks a temporary view, for whoever may create one', async () => {
    const reader = await frontDoor.connect(['readers']);
    const r = await readAll(reader, ['create temp view tv as select diagnosis as x from patients', "select x || '' from tv"]);
    const dba = await frontDoor.connect(['changers']);
    const d = await readAll(dba, ['create temp view tv as select diagnosis as x from patients', "select x || '' from tv", 'select x from tv', "select x || '' from pg_temp.tv"]);
    expectNoDiagnosis([r, d]);
  });

  it('masks a view changed by ALTER VIEW … RENAME COLUMN, ALTER TABLE … RENAME COLUMN and CREATE OR REPLACE VIEW', async () => {
    const dba = await frontDoor.connect(['changers']);
    const reader = await frontDoor.connect(['readers']);
    await dba.query('create view renamed as select id, name, diagnosis from patients');
    const before = await readAll(reader, ["select diagnosis || '' from renamed"]);
    const renames = await readAll(dba, ['alter view renamed rename column diagnosis to summary', 'alter table patients rename column diagnosis to summary']);
    // Both count as writing a covered column's values into a column no rule covers: refused.
    expect(renames).toEqual({ 'alter view renamed rename column diagnosis to summary': 'refused 42501', 'alter table patients rename column diagnosis to summary': 'refused 42501' });
    await dba.query('create or replace view renamed as select id, name, diagnosis, diagnosis as extra from patients');
    const widened = await readAll(reader, ["select extra || '' from renamed", 'select * from renamed']);
    expectNoDiagnosis([before, widened]);
  });

  it('masks views swapped by renames after their table OIDs were cached under the old names', async () => {
    const dba = await frontDoor.connect(['changers']);
    await dba.query('create view swap_a as select id, diagnosis as x from patients');
    await dba.query('create view swap_b as select id, name as x from patients');
    const reader = await frontDoor.connect(['readers']);
    // The wire's table OIDs of both views are now known by their names (kept 60 s).
    const before = await readAll(reader, ['select * from swap_a', 'select * from swap_b']);
    await dba.query('alter view swap_a rename to swap_tmp');
    await dba.query('alter view swap_b rename to swap_a');
    await dba.query('alter view swap_tmp rename to swap_b');
    const after = await readAll(reader, ['select * from swap_b', 'select x from swap_b', 'select swap_b from swap_b']);
    const copied = await frontDoor.psql('copy (select * from swap_b) to stdout');
    expect(copied).toContain('\t');
    expectNoDiagnosis([before, after, copied]);
  });

  it('masks a holdable cursor over a view whose definition is replaced while the cursor stays open', async () => {
    const dba = await frontDoor.connect(['changers']);
    const reader = await frontDoor.connect(['readers']);
    await dba.query('create view held as select id, diagnosis as x from patients');
    await reader.query('begin');
    await reader.query('declare c cursor with hold for select x from held');
    await reader.query('commit');
    await dba.query('create or replace view held as select id, name as x from patients');
    const out = await readAll(reader, ['fetch all from c']);
    expectNoDiagnosis(out);
  });

  it('masks reads of a view replaced by another session while they are in flight', async () => {
    const dba = await frontDoor.connect(['changers']);
    await dba.query('create view raced as select id, name as x from patients');
    const reader = await frontDoor.openRaw(['readers']);
    await reader.run('select x from raced');
    const start = reader.count('ReadyForQuery');
    const burst = 3000;
    reader.send(...Array.from({ length: burst }, () => encodeQuery("select x || '' from raced")));
    await new Promise((resolve) => setTimeout(resolve, 5));
    await dba.query('create or replace view raced as select id, diagnosis as x from patients');
    await reader.readyCount(start + burst);
    const values = reader.rows().map((row) => row[0]);
    // The replacement landed inside the burst: both definitions were read (else the probe proves nothing).
    expect(values.slice(0, 2)).toContain('Ada Lovelace');
    expect(values.at(-1)).not.toBe('Ada Lovelace');
    expectNoDiagnosis(values);
  });
});

describe('views and the protocol: pipelines, Describe, errors, the facts read', () => {
  it('masks a read pipelined behind a view replacement in the same Sync', async () => {
    const dba = await frontDoor.openRaw(['changers']);
    await dba.run('create view piped as select id, name as x from patients');
    const start = dba.count('ReadyForQuery');
    dba.send(
      encodeParse('', 'create or replace view piped as select id, diagnosis as x from patients'),
      encodeBind('', ''),
      encodeExecute(''),
      encodeParse('', "select x || '' from piped"),
      encodeBind('', ''),
      encodeDescribe('P', ''),
      encodeExecute(''),
      encodeSync(),
    );
    await dba.readyCount(start + 1);
    expect(dba.errors()).toEqual([]);
    expect(dba.rows()).toHaveLength(1);
    expectNoDiagnosis(dba.rows());
  });

  it('masks a statement described before its view was replaced and executed after', async () => {
    const dba = await frontDoor.connect(['changers']);
    await dba.query('create view described as select id, name as x from patients');
    const reader = await frontDoor.openRaw(['readers']);
    const start = reader.count('ReadyForQuery');
    reader.send(encodeParse('early', "select x || '' from described"), encodeDescribe('S', 'early'), encodeSync());
    await reader.readyCount(start + 1);
    await dba.query('create or replace view described as select id, diagnosis as x from patients');
    reader.send(encodeBind('', 'early'), encodeExecute(''), encodeSync());
    await reader.readyCount(start + 2);
    await reader.run('prepare late as select x from described', 'execute late');
    expect(reader.rows()).toHaveLength(2);
    expectNoDiagnosis(reader.rows());
  });

  it('refuses a view column sent on by pg_notify or compared with a generated series, as the base column is', async () => {
    const client = await frontDoor.connect(['readers']);
    const heard: string[] = [];
    client.on('notification', (message) => heard.push(message.payload ?? ''));
    await client.query('listen leak');
    const outcomes = await readAll(client, [
      "select pg_notify('leak', x) from plain",
      "select pg_notify('leak', diagnosis) from patients",
      'select g from plain, generate_series(1, 99) g where g = length(x)',
      'select g from patients, generate_series(1, 99) g where g = length(diagnosis)',
    ]);
    await client.query('select 1');
    expect(Object.values(outcomes).every((outcome) => outcome === 'refused 42501')).toBe(true);
    expectNoDiagnosis(heard);
  });

  it('masks the texts of errors a view read raises over a covered value', async () => {
    const client = await frontDoor.connect(['readers']);
    const texts: string[] = [];
    for (const sql of ['select 1 from plain where x::int = 1', 'select 1 from plain where x::date is null', "select 1 from plain where to_number(x, '9') = 1"]) {
      await client.query(sql).catch((error: Error & { detail?: string }) => texts.push(`${error.message} ${error.detail ?? ''}`));
    }
    expect(texts).toHaveLength(3);
    expectNoDiagnosis(texts);
  });

  it('masks views whose definitions are deep or long, made by a DBA directly on the target', async () => {
    const deep = `${'lower('.repeat(2000)}diagnosis${')'.repeat(2000)}`;
    const wide = Array.from({ length: 1500 }, (_, i) => `diagnosis as c${i}`).join(', ');
    await frontDoor.direct.query(`create view deep as select ${deep} as x from patients`);
    await frontDoor.direct.query(`create view wide as select ${wide} from patients`);
    // A schema change through Sluice: the next decision reads the facts again.
    const dba = await frontDoor.connect(['changers']);
    await dba.query("comment on table orders is 'refresh'");
    const reader = await frontDoor.connect(['readers']);
    const out = await readAll(reader, ["select x || '' from deep", "select c1499 || '' from wide", 'select * from wide']);
    expect(Object.values(out).every((value) => Array.isArray(value))).toBe(true);
    expectNoDiagnosis(out);
  }, 30_000);

  it('masks, without waiting for it, while a transaction holds a lock that reading a view\'s definition waits for', async () => {
    const holder = await frontDoor.pgClient('direct', []);
    const dba = await frontDoor.connect(['changers']);
    try {
      const reader = await frontDoor.connect(['readers']);
      // A schema change through Sluice: the next decision reads the facts again.
      await dba.query("comment on table orders is 'refresh'");
      await holder.query('begin');
      // An ETL's pattern: a view's base table emptied and filled again in one transaction.
      await holder.query('truncate guarded_base');
      const outcome = await Promise.race([
        rows(reader, "select x || '' from by_cte").then((got) => ({ got }), (error: { code?: string }) => ({ refused: error.code })),
        new Promise((resolve) => setTimeout(() => resolve({ waiting: true }), 15_000)),
      ]);
      // pg_get_viewdef would wait for the lock (and the catalog query give up after 5 s, refusing
      // every decision): the locked views are read as any column instead, the others as they are.
      expect(outcome).toEqual({ got: [[COLUMN_REDACTED]] });
    } finally {
      await holder.query('rollback').catch(() => {});
      await holder.end();
    }
  }, 30_000);
});

describe('a schema change Sluice does not see', () => {
  // A gap, kept as a probe (README, Masking: not covered): DDL that a function runs is not a
  // schema change to Sluice. Here a DBA's view calls a function that replaces another view; a
  // `writers` agent's read of the first (a read to the policy) replaces the second, and until the
  // facts are read again (30 s at most) the second's columns derive from its old definition. A
  // read-only agent cannot: its session on the target is default_transaction_read_only. Marking
  // every call of a user function (and every read of a view, whose definition may call one) as a
  // schema change would refresh the facts and over-mask every session after each: not done.
  it.fails('masks a view replaced by DDL a function runs inside a read', async () => {
    await frontDoor.direct.query(`create view fnv as select id, name as x from patients;
      create function replace_fnv() returns int language plpgsql security definer as
        $$ begin execute 'create or replace view public.fnv as select id, diagnosis as x from public.patients'; return 1; end $$;
      create view runs_ddl as select public.replace_fnv() as z`);
    const dba = await frontDoor.connect(['changers']);
    await dba.query("comment on table orders is 'refresh'");
    const reader = await frontDoor.connect(['readers']);
    expect(await sqlState(reader.query('select z from runs_ddl'))).toBe('25006');
    const writer = await frontDoor.connect(['writers']);
    expect(await rows(writer, "select x || '' from fnv")).toEqual([['Ada Lovelace']]);
    expect(await rows(writer, 'select z from runs_ddl')).toHaveLength(1);
    expectNoDiagnosis(await rows(writer, "select x || '' from fnv"));
  });
});
