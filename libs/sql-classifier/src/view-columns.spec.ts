import { beforeAll, describe, expect, it } from 'vitest';
import { loadSqlClassifier } from './classify.js';
import { coveredFlows } from './covered-flows.js';
import { resultLineage, type ColumnLineage } from './lineage.js';
import { referencedColumns } from './session-statements.js';
import { targetCatalogFacts } from './target-catalog.js';
import { viewColumns, type ViewDefinition } from './view-columns.js';
import { throughViews, viewsCalled, type ViewColumns } from './view-sources.js';

beforeAll(async () => {
  await loadSqlClassifier();
});

const ANY = { column: '*', anyColumn: true };

/** Definitions as pg_get_viewdef prints them with search_path `pg_catalog` (PostgreSQL 15). */
const VIEWS: ViewDefinition[] = [
  { name: 'public.v', columns: ['id', 'tax_id'], definition: ' SELECT people.id,\n    people.ssn AS tax_id\n   FROM public.people;' },
  { name: 'public.v2', columns: ['a', 'b'], definition: ' SELECT people.id AS a,\n    upper(people.ssn) AS b\n   FROM public.people;' },
  { name: 'public.vv', columns: ['x', 'name'], definition: ' SELECT v.tax_id AS x,\n    p.name\n   FROM (public.v\n     JOIN public.people p USING (id));' },
  { name: 's2.sv', columns: ['id', 'ssn'], definition: ' SELECT t.id,\n    t.ssn\n   FROM s2.t;' },
  { name: 'public.w', columns: ['v'], definition: ' SELECT v.*::public.v AS v\n   FROM public.v;' },
  { name: 'public.rj', columns: ['j', 'id'], definition: ' SELECT row_to_json(p.*) AS j,\n    p.id\n   FROM public.people p;' },
  { name: 'public.cat', columns: ["c"], definition: " SELECT people.ssn || ''::text AS c\n   FROM public.people;" },
  { name: 'public.mv', columns: ['m'], definition: ' SELECT people.ssn AS m\n   FROM public.people;' },
];

let views: ViewColumns;
beforeAll(() => {
  // Built once the parser is loaded: before, every view column is any column (fail closed).
  views = viewColumns(VIEWS);
});

const columnsOf = (view: string, column: string): ColumnLineage | undefined => views.get(view)?.columns.get(column);

describe('viewColumns', () => {
  it('gives a renaming view column the column it shows, and leaves the others to theirs', () => {
    expect(columnsOf('public.v', 'tax_id')).toEqual([{ table: 'public.people', column: 'ssn' }]);
    expect(columnsOf('public.v', 'id')).toEqual([{ table: 'public.people', column: 'id' }]);
    expect(columnsOf('public.mv', 'm')).toEqual([{ table: 'public.people', column: 'ssn' }]);
  });

  it('follows expressions and a view over a view through a join to the base columns', () => {
    expect(columnsOf('public.v2', 'b')).toEqual([{ table: 'public.people', column: 'ssn' }]);
    expect(columnsOf('public.cat', 'c')).toEqual([{ table: 'public.people', column: 'ssn' }]);
    expect(columnsOf('public.vv', 'x')).toEqual(expect.arrayContaining([{ table: 'public.v', column: 'tax_id' }, { table: 'public.people', column: 'ssn' }]));
    expect(columnsOf('public.vv', 'name')).toEqual([{ table: 'public.people', column: 'name' }]);
  });

  it('reads relations by the schema pg_get_viewdef prints, not a search path', () => {
    expect(columnsOf('s2.sv', 'ssn')).toEqual([{ table: 's2.t', column: 'ssn' }]);
  });

  it('gives a whole row what the row carries: any column of it, or any column where a cast hides it', () => {
    expect(columnsOf('public.rj', 'j')).toEqual([{ table: 'public.people', column: '*', anyColumn: true }]);
    expect(columnsOf('public.w', 'v')).toEqual(expect.arrayContaining([ANY]));
  });

  it('makes every column any column when the definition does not parse or does not match the columns', () => {
    const broken = viewColumns([
      { name: 'public.bad', columns: ['a'], definition: 'SELECT FROM WHERE' },
      { name: 'public.narrow', columns: ['a', 'b'], definition: ' SELECT people.id AS a\n   FROM public.people;' },
      { name: 'public.empty', columns: ['a'], definition: '' },
    ]);
    for (const name of ['public.bad', 'public.narrow', 'public.empty']) {
      expect(broken.get(name)?.columns.get('a')).toEqual([ANY]);
      expect(broken.get(name)?.all).toEqual([ANY]);
    }
  });

  it('makes the columns of views in a cycle, or in a chain too deep, any column', () => {
    const cycle = viewColumns([
      { name: 'public.a', columns: ['x'], definition: 'SELECT b.x FROM public.b' },
      { name: 'public.b', columns: ['x'], definition: 'SELECT a.x FROM public.a' },
    ]);
    expect(cycle.get('public.a')?.columns.get('x')).toEqual(expect.arrayContaining([ANY]));
    expect(cycle.get('public.b')?.columns.get('x')).toEqual(expect.arrayContaining([ANY]));
    const chain = viewColumns([
      { name: 'public.c0', columns: ['x'], definition: 'SELECT people.ssn AS x FROM public.people' },
      ...Array.from({ length: 40 }, (_, i) => ({ name: `public.c${i + 1}`, columns: ['x'], definition: `SELECT c${i}.x FROM public.c${i}` })),
    ]);
    expect(chain.get('public.c5')?.columns.get('x')).toEqual(expect.arrayContaining([{ table: 'public.people', column: 'ssn' }]));
    expect(chain.get('public.c40')?.columns.get('x')).toEqual(expect.arrayContaining([ANY]));
  });
});

describe('views whose names a lineage source cannot tell apart', () => {
  const SHOWS = ' SELECT patients.diagnosis AS x\n   FROM public.patients;';
  const HIDES = ' SELECT patients.name AS x\n   FROM public.patients;';

  it('makes the columns of "a.b".c and a."b.c" (both a.b.c) any column, in either order', () => {
    for (const [first, second] of [[SHOWS, HIDES], [HIDES, SHOWS]] as const) {
      const both = viewColumns([
        { name: 'a.b.c', columns: ['x'], definition: first },
        { name: 'a.b.c', columns: ['x'], definition: second },
      ]);
      expect(both.get('a.b.c')?.columns.get('x')).toEqual([ANY]);
    }
  });

  it('keys a temporary view by pg_temp too, with the columns of every session\'s view of that name', () => {
    const temporary = viewColumns([
      { name: 'pg_temp_3.tv', columns: ['x'], definition: SHOWS },
      { name: 'pg_temp_4.tv', columns: ['x'], definition: HIDES },
    ]);
    expect(temporary.get('pg_temp.tv')?.columns.get('x')).toEqual(expect.arrayContaining([{ table: 'public.patients', column: 'diagnosis' }, { table: 'public.patients', column: 'name' }]));
  });

  it('resolves an unqualified name to a view of that name off the known path: a temporary view, a path past the schemas kept', () => {
    const off = viewColumns([
      { name: 'pg_temp_3.tv', columns: ['x'], definition: SHOWS },
      { name: 'x10.far', columns: ['x'], definition: SHOWS },
    ]);
    const path = Array.from({ length: 10 }, (_, i) => `x${i + 1}`);
    for (const sql of ["select x || '' from tv", 'select x from pg_temp.tv', "select x || '' from far"]) {
      expect(resultLineage(sql, { views: off, searchPath: path })?.statements[0]?.head[0]).toEqual(expect.arrayContaining([{ table: 'public.patients', column: 'diagnosis' }]));
    }
    expect(viewsCalled(off, 'far')).toEqual(['x10.far']);
    expect(viewsCalled(new Map(), 'far')).toEqual([]);
  });
});

describe('throughViews', () => {
  it('hands back the same sources when none is a view column', () => {
    const sources: ColumnLineage = [{ table: 'public.people', column: 'name' }];
    expect(throughViews(sources, views)).toBe(sources);
    expect(throughViews(sources, new Map())).toBe(sources);
  });

  it('adds what a view column shows, every column of a view read whole, and any column for a column the view lacks', () => {
    expect(throughViews([{ table: 'public.v', column: 'tax_id' }], views)).toEqual([{ table: 'public.v', column: 'tax_id' }, { table: 'public.people', column: 'ssn' }]);
    expect(throughViews([{ table: 'public.v', column: '*', anyColumn: true }], views)).toEqual(
      expect.arrayContaining([{ table: 'public.people', column: 'ssn' }, { table: 'public.people', column: 'id' }]),
    );
    expect(throughViews([{ table: 'public.v', column: 'gone' }], views)).toEqual(expect.arrayContaining([ANY]));
  });
});

describe('lineage through the facts\' views', () => {
  const facts = () => targetCatalogFacts({ rowFunctions: [], rewritingRelations: ['public.v'], inheritance: [], views: VIEWS, version: 'v1' });
  const lineage = (sql: string, searchPath?: string[]) => resultLineage(sql, { views: facts().views!, ...(searchPath ? { searchPath } : {}) })?.statements[0];

  it('gives a select of a view column, an expression of one and a whole row of the view the base columns', () => {
    expect(lineage('select tax_id from v')?.head[0]).toEqual(expect.arrayContaining([{ table: 'public.people', column: 'ssn' }]));
    expect(lineage("select lower(tax_id) || '' as x from v")?.head[0]).toEqual(expect.arrayContaining([{ table: 'public.people', column: 'ssn' }]));
    expect(lineage('select row_to_json(v) from v')?.head[0]).toEqual(expect.arrayContaining([{ table: 'public.people', column: 'ssn' }]));
    expect(lineage('select id from v')?.head[0]).toEqual([{ table: 'public.v', column: 'id' }, { table: 'public.people', column: 'id' }]);
  });

  it('finds a view of another schema through the search path', () => {
    expect(lineage('select ssn as shown from sv', ['s2', 'public'])?.head[0]).toEqual(expect.arrayContaining([{ table: 's2.t', column: 'ssn' }]));
  });

  it('follows a COPY of a view\'s rows to the base columns', () => {
    expect(lineage('copy (select * from v) to stdout')?.fill).toEqual(expect.arrayContaining([{ table: 'public.people', column: 'ssn' }]));
  });

  it('names the columns a view column shows wherever a text refers to it, unless the view is read as any column', () => {
    expect(referencedColumns('select tax_id from public.v', { views: facts().views! })).toEqual(expect.arrayContaining([{ table: 'public.people', column: 'ssn' }]));
    expect(referencedColumns('select name from people', { views: facts().views! })).toEqual([{ column: 'name' }]);
    expect(referencedColumns('select id from v', { views: facts().views!, renamingRelations: facts().rewritingRelations })).toEqual([ANY]);
  });

  it('gives a write from a view column the column it shows', () => {
    const flows = coveredFlows('insert into t (x) select tax_id from v', { views: facts().views! });
    expect(flows?.writes[0]?.sources).toEqual(expect.arrayContaining([{ table: 'public.people', column: 'ssn' }]));
  });
});
