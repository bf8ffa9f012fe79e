import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type pg from 'pg';
import { parseConfig } from '@sluice/config';
import { COLUMN_REDACTED } from '@sluice/masking-engine';
import { sqlState, usePostgresFrontDoor } from './support/postgres-proxy-harness.js';
import { expectNoRawSsn, RAW_SSN, RED_TEAM_SEED_SQL, redTeamConfigInput } from './support/postgres-red-team.js';

/*
 * Column rules follow views: a view's column derives from the columns its definition shows
 * (catalog facts: pg_get_viewdef of every view and materialized view), so `ssn as tax_id` in a
 * view a DBA made is masked as `ssn` is, however the agent reads it. Real PostgreSQL through the
 * proxy, read-only `readers` tokens (the red team's `pii` profile, with one more rule by
 * qualified name: `public.patients.diagnosis`, whose values no detector recognises) and `clinic`
 * ones (that rule and `app.notes.body` alone). The database's default search_path is `app, public`.
 */

const database = `sluice_views_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
const DIAGNOSIS = 'chronic-xyzzy-syndrome';

const input = redTeamConfigInput(database, ['public.secrets']);
const DIAGNOSIS_RULE = { column: 'public.patients.diagnosis', strategy: 'redact' } as const;
/** `clinic`: reads, masked with a profile whose only rule is by qualified name (no name rule matches every whole row). */
const config = parseConfig({
  ...input,
  masking: {
    profiles: {
      pii: { ...input.masking.profiles.pii, columns: [...input.masking.profiles.pii.columns, DIAGNOSIS_RULE] },
      clinical: { detectors: ['email'], strategy: 'partial', columns: [DIAGNOSIS_RULE, { column: 'app.notes.body', strategy: 'redact' }] },
    },
  },
  rules: [...input.rules, { name: 'clinic', effect: 'allow', subjects: { groups: ['clinic'] }, resources: [input.resources[0]!.name], actions: ['read'], mask: 'clinical' }],
});

const frontDoor = usePostgresFrontDoor({
  config,
  database,
  hashKey: 'view-lineage-int',
  setupSql: `${RED_TEAM_SEED_SQL}
     create table patients (id int primary key, name text, diagnosis text);
     insert into patients values (1, 'Ada Lovelace', '${DIAGNOSIS}');
     create view v as select id, ssn as tax_id, name from people;
     create view vv as select tax_id as deep, name from v;
     create view vj as select p.id, p.name, v.tax_id as joined from people p join v using (id);
     create view vx as select id, upper(ssn) as up, ssn || '' as cat, name from people;
     create materialized view mv as select id, ssn as kept, name from people;
     create schema app;
     create view app.av as select id, ssn as hidden, name from public.people;
     create view visits as select id, diagnosis as notes, name from patients;
     create view secret_view as select * from secrets;
     create table sink (x text);
     create table app.notes (id int, body text);
     insert into app.notes values (1, '${DIAGNOSIS}');
     create view app.note_view as select id, body as summary from app.notes;
     alter database ${database} set search_path = app, public;`,
});

/** Every value of every row, as text (no client-side parsing); `name` makes it a named prepared statement. */
const rows = async (client: pg.Client, text: string, named?: { readonly name: string; readonly values: unknown[] }): Promise<string[][]> => {
  const result = await client.query({ text, rowMode: 'array', types: { getTypeParser: () => (value: unknown) => value }, ...named } as pg.QueryConfig);
  return result.rows as string[][];
};

const expectNoRaw = (value: unknown): void => {
  expectNoRawSsn(value);
  expect(JSON.stringify(value)).not.toContain(DIAGNOSIS);
};

describe('column rules through views', () => {
  it('masks a view column that renames a covered one, and leaves the view\'s other columns readable', async () => {
    const client = await frontDoor.connect(['readers']);
    expect(await rows(client, 'select id, tax_id, name from v')).toEqual([['1', COLUMN_REDACTED, 'Ada Lovelace']]);
    expect(await rows(client, 'select id, name from v')).toEqual([['1', 'Ada Lovelace']]);
    expect(await rows(client, 'select notes, name from visits')).toEqual([[COLUMN_REDACTED, 'Ada Lovelace']]);
  });

  it('masks a view over a view, a join view and a view of expressions of a covered column', async () => {
    const client = await frontDoor.connect(['readers']);
    expect(await rows(client, 'select deep, name from vv')).toEqual([[COLUMN_REDACTED, 'Ada Lovelace']]);
    expect(await rows(client, 'select id, name, joined from vj')).toEqual([['1', 'Ada Lovelace', COLUMN_REDACTED]]);
    expect(await rows(client, 'select up, cat, name from vx')).toEqual([[COLUMN_REDACTED, COLUMN_REDACTED, 'Ada Lovelace']]);
    expect(await rows(client, "select upper(tax_id), tax_id || '' as x, lower(notes) from v, visits")).toEqual([[COLUMN_REDACTED, COLUMN_REDACTED, COLUMN_REDACTED]]);
  });

  it('masks select * of a view, by the columns the wire names, and not its uncovered columns', async () => {
    const client = await frontDoor.connect(['readers']);
    expect(await rows(client, 'select * from v')).toEqual([['1', COLUMN_REDACTED, 'Ada Lovelace']]);
    expect(await rows(client, 'select * from vv')).toEqual([[COLUMN_REDACTED, 'Ada Lovelace']]);
    expect(await rows(client, 'select * from visits')).toEqual([['1', COLUMN_REDACTED, 'Ada Lovelace']]);
  });

  it('masks a whole row of a view, as a row and as JSON, under a rule by name and a rule by qualified name', async () => {
    const client = await frontDoor.connect(['readers']);
    const whole = [...(await rows(client, 'select v from v')), ...(await rows(client, 'select row_to_json(v) from v'))];
    const visits = [...(await rows(client, 'select visits from visits')), ...(await rows(client, 'select row_to_json(x) from visits x'))];
    expect(whole).toEqual([[COLUMN_REDACTED], [JSON.stringify(COLUMN_REDACTED)]]);
    expect(visits).toEqual([[COLUMN_REDACTED], [JSON.stringify(COLUMN_REDACTED)]]);
    // Only the rule by qualified name: the whole row of the view carries public.patients.diagnosis.
    const clinic = await frontDoor.connect(['clinic']);
    const rowsOfClinic = [...(await rows(clinic, 'select visits from visits')), ...(await rows(clinic, 'select row_to_json(x) from visits x'))];
    expect(rowsOfClinic).toEqual([[COLUMN_REDACTED], [JSON.stringify(COLUMN_REDACTED)]]);
    expect(await rows(clinic, 'select notes, name from visits')).toEqual([[COLUMN_REDACTED, 'Ada Lovelace']]);
    expect(await rows(clinic, 'select tax_id, name from v')).toEqual([[RAW_SSN, 'Ada Lovelace']]);
  });

  it('masks a materialized view\'s column that keeps a covered one, whole and through *', async () => {
    const client = await frontDoor.connect(['readers']);
    expect(await rows(client, 'select kept, name from mv')).toEqual([[COLUMN_REDACTED, 'Ada Lovelace']]);
    expect(await rows(client, 'select * from mv')).toEqual([['1', COLUMN_REDACTED, 'Ada Lovelace']]);
  });

  it('masks COPY (select … from a view) TO STDOUT', async () => {
    const out = [
      await frontDoor.psql('copy (select * from v) to stdout'),
      await frontDoor.psql('copy (select tax_id, name from v) to stdout with (format csv)'),
      await frontDoor.psql('copy (select notes from visits) to stdout'),
      await frontDoor.psql('copy mv to stdout'),
    ];
    expectNoRaw(out);
    expect(out[1]).toContain('Ada Lovelace');
  });

  it('masks a prepared statement and a cursor over a view', async () => {
    const client = await frontDoor.connect(['readers']);
    const byId = (): Promise<string[][]> => rows(client, 'select tax_id, name from v where id = $1', { name: 'by_id', values: [1] });
    expect(await byId()).toEqual([[COLUMN_REDACTED, 'Ada Lovelace']]);
    expect(await byId()).toEqual([[COLUMN_REDACTED, 'Ada Lovelace']]);
    await client.query('prepare p as select * from vv');
    expect(await rows(client, 'execute p')).toEqual([[COLUMN_REDACTED, 'Ada Lovelace']]);
    await client.query('begin');
    await client.query('declare c cursor for select tax_id, name from v');
    expect(await rows(client, 'fetch all from c')).toEqual([[COLUMN_REDACTED, 'Ada Lovelace']]);
    // A FETCH of a `*` masks every column with what the view may carry, as of a table's `*`.
    await client.query('declare d cursor for select * from visits');
    expectNoRaw(await rows(client, 'fetch all from d'));
    await client.query('commit');
  });

  it('finds a view of another schema through search_path', async () => {
    const client = await frontDoor.connect(['readers']);
    await client.query('set search_path = app, public');
    expect(await rows(client, 'select hidden, name from av')).toEqual([[COLUMN_REDACTED, 'Ada Lovelace']]);
    expect(await rows(client, 'select * from av')).toEqual([['1', COLUMN_REDACTED, 'Ada Lovelace']]);
  });

  it('reads a view\'s definition with every relation of it qualified, whatever the role\'s or database\'s search_path', async () => {
    // The database's default path is `app, public`: pg_get_viewdef under it would print `FROM notes`,
    // which lineage would resolve to public.notes, out of reach of the rule on app.notes.body.
    const clinic = await frontDoor.connect(['clinic']);
    expect(await rows(clinic, 'select summary from app.note_view')).toEqual([[COLUMN_REDACTED]]);
    expect(await rows(clinic, 'select * from note_view')).toEqual([['1', COLUMN_REDACTED]]);
  });

  it('refuses a write of a view column that shows a covered one into an uncovered column, as the same write from the table', async () => {
    const client = await frontDoor.connect(['writers']);
    expect(await sqlState(client.query('insert into sink select ssn from people'))).toBe('42501');
    expect(await sqlState(client.query('insert into sink select tax_id from v'))).toBe('42501');
    expect(await sqlState(client.query('insert into sink select notes from visits'))).toBe('42501');
    expect(await sqlState(client.query('insert into sink select name from v'))).toBeUndefined();
    const stored = await frontDoor.direct.query('select x from sink');
    expectNoRaw(stored.rows);
  });

  it('masks a view replaced through Sluice by the next statement, and a prepared statement bound again', async () => {
    const reader = await frontDoor.connect(['readers']);
    const dba = await frontDoor.connect(['changers']);
    await dba.query('create view relabelled as select id, name as shown from people');
    const shown = (): Promise<string[][]> => rows(reader, 'select shown from relabelled where id = $1', { name: 'shown', values: [1] });
    expect(await shown()).toEqual([['Ada Lovelace']]);
    await dba.query('create or replace view relabelled as select id, ssn as shown from people');
    expect(await shown()).toEqual([[COLUMN_REDACTED]]);
    expect(await rows(reader, 'select * from relabelled')).toEqual([['1', COLUMN_REDACTED]]);
  });

  it('masks every column read in a transaction after a view is created in it, which the catalog cannot see yet, and the view precisely once committed', async () => {
    const dba = await frontDoor.connect(['changers']);
    await dba.query('begin');
    await dba.query('create view fresh as select id, name, ssn as q from people');
    expect(await rows(dba, 'select q, name from fresh')).toEqual([[COLUMN_REDACTED, COLUMN_REDACTED]]);
    expect(await rows(dba, "select q || '' as x from fresh")).toEqual([[COLUMN_REDACTED]]);
    expectNoRawSsn(await frontDoor.psql('begin; create view fresh2 as select ssn as q from people; copy (select q from fresh2) to stdout; rollback', ['changers']));
    await dba.query('commit');
    // The view and its read in one text: decided with facts from before it.
    const [, read] = (await dba.query('create view fresh3 as select ssn as q from people; select q from fresh3')) as unknown as pg.QueryResult[];
    expect(read?.rows).toEqual([{ q: COLUMN_REDACTED }]);
    expect(await rows(dba, 'select q, name from fresh')).toEqual([[COLUMN_REDACTED, 'Ada Lovelace']]);
  });
});

describe('a policy rule denying a table, read through a view', () => {
  // A gap, kept as a probe: the policy decides on the relations a text names, and a view is its
  // own relation, so `deny` on public.secrets does not reach `select * from secret_view` (its
  // rows come back; column rules still apply). Whether a deny should follow views (a view over a
  // denied table is also a DBA's way to grant a narrower reading) is the policy's call to make.
  it.fails('refuses a read through a view of a table a deny rule names, as the read of the table', async () => {
    const client = await frontDoor.connect(['readers']);
    expect(await sqlState(client.query('select * from secrets'))).toBe('42501');
    expect(await sqlState(client.query('select * from secret_view'))).toBe('42501');
  });
});
