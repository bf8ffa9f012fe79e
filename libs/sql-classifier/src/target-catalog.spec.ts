import { beforeAll, describe, expect, it } from 'vitest';
import { ANY_TABLE } from './catalogue.js';
import { classifySql, loadSqlClassifier } from './classify.js';
import { coveredFlows } from './covered-flows.js';
import { targetCatalogFacts } from './target-catalog.js';

beforeAll(async () => {
  await loadSqlClassifier();
});

const catalog = targetCatalogFacts({
  rowFunctions: ['note'],
  rewritingRelations: ['public.victim_all'],
  inheritance: [
    ['public.child', 'public.parent'],
    ['public.grandchild', 'public.child'],
    ['public.part1', 'public.part'],
  ],
  version: 'v1',
});

const classify = (sql: string, uncommittedChanges = false) => {
  const result = classifySql(sql, { catalog: uncommittedChanges ? { ...catalog, uncommittedChanges } : catalog });
  if (!result.ok) throw new Error(result.error);
  return result;
};

describe('attribute notation', () => {
  it.each(['SELECT o.note FROM orders o', 'SELECT (o).note FROM orders o', 'SELECT public.orders.note FROM public.orders'])('reads %s as a call of note(o)', (sql) => {
    const result = classify(sql);
    expect([result.action, result.risk]).toEqual(['write', 'high']);
    expect(result.tables).toContain(ANY_TABLE);
  });

  it('leaves other column names, and a bare name, as columns', () => {
    expect(classify('SELECT o.item, note FROM orders o')).toMatchObject({ action: 'read', risk: 'low', tables: ['public.orders'] });
  });

  it('treats every qualified name as a possible call after a schema change not yet committed', () => {
    expect(classify('SELECT o.item FROM orders o', true)).toMatchObject({ action: 'write', risk: 'high' });
    // … and after a DDL statement earlier in the same text.
    const same = classify("CREATE FUNCTION peek(o orders) RETURNS text LANGUAGE sql AS 'SELECT 1'; SELECT o.peek FROM orders o");
    expect(same.statements[1]).toMatchObject({ action: 'write', risk: 'high' });
  });
});

describe('writes through views and rules', () => {
  it('makes a bounded write to a rewriting relation unbounded', () => {
    expect(classify('DELETE FROM victim_all WHERE id = 1')).toMatchObject({ action: 'write', risk: 'high' });
    expect(classify('DELETE FROM victim WHERE id = 1')).toMatchObject({ action: 'write', risk: 'medium' });
    expect(classify("UPDATE public.victim_all SET x = 0 WHERE id = 1")).toMatchObject({ risk: 'high' });
  });
});

describe('inheritance', () => {
  it('names the descendants of a relation read without ONLY, and the ancestors of any', () => {
    expect(classify('SELECT * FROM parent').tables).toEqual(['public.child', 'public.grandchild', 'public.parent']);
    expect(classify('SELECT * FROM ONLY parent').tables).toEqual(['public.parent']);
    expect(classify('SELECT * FROM part1').tables).toEqual(['public.part', 'public.part1']);
    expect(classify('SELECT * FROM child').tables).toEqual(['public.child', 'public.grandchild', 'public.parent']);
  });
});

describe('code definitions', () => {
  it('names the tables of a SQL body and `*` for any other', () => {
    expect(classifySql("CREATE FUNCTION f() RETURNS text LANGUAGE sql AS 'SELECT secret FROM secrets'")).toMatchObject({ action: 'ddl', tables: ['public.secrets'] });
    expect(classifySql('CREATE FUNCTION f() RETURNS text LANGUAGE sql BEGIN ATOMIC DELETE FROM victim; END')).toMatchObject({ action: 'ddl', tables: ['public.victim'] });
    expect(classifySql("CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS 'BEGIN RETURN 1; END'")).toMatchObject({ tables: [ANY_TABLE] });
    expect(classifySql("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT FROM WHERE'")).toMatchObject({ tables: [ANY_TABLE] });
  });

  it.each([
    'CREATE TRIGGER t AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION copy_rows()',
    'CREATE OPERATOR === (function = f, leftarg = int, rightarg = int)',
    'CREATE AGGREGATE a(int) (sfunc = f, stype = int)',
    'CREATE CAST (int AS wrapped) WITH FUNCTION wrap(int)',
  ])('names `*` for %s', (sql) => {
    const result = classifySql(sql);
    expect(result.ok && result.tables).toContain(ANY_TABLE);
  });
});

describe('coveredFlows', () => {
  it('pairs the written columns with their values where the text does', () => {
    const flows = coveredFlows('INSERT INTO orders (id, item) SELECT id + 100, ssn FROM people')!;
    expect(flows.writes.map((flow) => [flow.target?.column, flow.sources.map((source) => source.column)])).toEqual([
      ['id', ['id']],
      ['item', ['ssn']],
    ]);
    expect(coveredFlows('INSERT INTO orders SELECT id, ssn FROM people')!.writes.every((flow) => flow.target === undefined)).toBe(true);
    expect(coveredFlows('UPDATE orders SET item = p.ssn FROM people p')!.writes).toEqual([{ target: { tables: ['public.orders'], column: 'item' }, sources: [{ column: 'ssn' }] }]);
  });

  it('finds columns compared where a series is in FROM, and only there', () => {
    expect(coveredFlows("SELECT g FROM people, generate_series(1, 9) g WHERE g = split_part(ssn, '-', 1)::int")!.seriesPredicates.map((source) => source.column)).toEqual(['g', 'ssn']);
    expect(coveredFlows("SELECT id FROM people WHERE ssn = 'x'")!.seriesPredicates).toEqual([]);
  });
});

describe('user overloads of built-in names', () => {
  const overloaded = targetCatalogFacts({ rowFunctions: [], overloadedBuiltins: ['=', '>=', 'upper'], rewritingRelations: [], inheritance: [], version: 'v2' });
  const withOverloads = (sql: string) => {
    const result = classifySql(sql, { catalog: overloaded });
    if (!result.ok) throw new Error(result.error);
    return result;
  };

  it.each([
    'SELECT 1 FROM people WHERE name = 1.5',
    "SELECT 1 FROM people WHERE name = 'x'",
    'SELECT upper(1.5)',
    'SELECT 1 FROM people WHERE id BETWEEN 1 AND 2',
    'SELECT 1 FROM people WHERE id IN (1, 2)',
    'SELECT 1 FROM people WHERE id = ANY (ARRAY[1, 2])',
    'SELECT 1 FROM people WHERE id IN (SELECT id FROM orders)',
    'SELECT CASE id WHEN 1 THEN 2 END FROM people',
    'SELECT 1 FROM people JOIN orders USING (id)',
    'SELECT 1 FROM people NATURAL JOIN orders',
  ])('does not vouch for %s: the name may pick the user overload', (sql) => {
    const result = withOverloads(sql);
    expect([result.action, result.risk]).toEqual(['write', 'high']);
    expect(result.tables).toContain(ANY_TABLE);
  });

  it.each([
    'SELECT pg_catalog.upper(name) FROM people WHERE id OPERATOR(pg_catalog.=) 1',
    'SELECT lower(name) FROM people WHERE id < 2',
    'SELECT 1 FROM people JOIN orders ON people.id < orders.id',
  ])('vouches for %s: qualified with pg_catalog, or a name not overloaded', (sql) => {
    expect(withOverloads(sql)).toMatchObject({ action: 'read', risk: 'low' });
  });

  it.each([
    "SELECT upper(name) FROM people WHERE name = 'x' AND id BETWEEN 1 AND 2",
    'SELECT 1 FROM people JOIN orders USING (id) WHERE id IN (SELECT id FROM orders)',
    'SELECT CASE id WHEN 1 THEN 2 END FROM people',
  ])('classifies %s as before in a database without overloads', (sql) => {
    expect(classifySql(sql, { catalog })).toEqual(classifySql(sql, {}));
    expect(classify(sql)).toMatchObject({ action: 'read', risk: 'low' });
  });

  it('refuses a user operator in op ANY (subquery) like any other user operator', () => {
    const result = classify('SELECT 1 FROM people WHERE id OPERATOR(public.===) ANY (SELECT id FROM orders)');
    expect([result.action, result.risk]).toEqual(['write', 'high']);
  });
});

describe('foreign keys whose actions change another table', () => {
  // books.ledger → public.accounts ON DELETE CASCADE; audit.entries → books.ledger ON UPDATE SET NULL.
  const withKeys = targetCatalogFacts({
    rowFunctions: [],
    rewritingRelations: [],
    inheritance: [],
    foreignKeyActions: [
      ['books.ledger', 'public.accounts'],
      ['audit.entries', 'books.ledger'],
    ],
    version: 'fk1',
  });
  const writes = (sql: string): readonly string[] => {
    const result = classifySql(sql, { catalog: withKeys });
    if (!result.ok) throw new Error(result.error);
    return result.statements.flatMap((statement) => statement.writes);
  };

  it('counts the tables a DELETE, UPDATE, MERGE or upsert reaches through them as written, transitively', () => {
    for (const sql of [
      'DELETE FROM public.accounts WHERE id = 1',
      'UPDATE accounts SET id = 3 WHERE id = 1',
      'MERGE INTO public.accounts a USING (VALUES (1)) v(id) ON a.id = v.id WHEN MATCHED THEN DELETE',
      'INSERT INTO public.accounts VALUES (1) ON CONFLICT (id) DO UPDATE SET id = 2',
      'WITH gone AS (DELETE FROM public.accounts WHERE id = 1 RETURNING id) SELECT * FROM gone',
    ]) {
      expect(writes(sql), sql).toEqual(expect.arrayContaining(['public.accounts', 'books.ledger', 'audit.entries']));
    }
  });

  it('leaves writes that delete or change no referenced row, and other tables, to what they name', () => {
    expect(writes('INSERT INTO public.accounts VALUES (1)')).toEqual(['public.accounts']);
    expect(writes('INSERT INTO public.accounts VALUES (1) ON CONFLICT DO NOTHING')).toEqual(['public.accounts']);
    expect(writes('DELETE FROM audit.entries WHERE id = 1')).toEqual(['audit.entries']);
    expect(classifySql('DELETE FROM public.accounts WHERE id = 1', {})).toMatchObject({ tables: ['public.accounts'] });
  });

  it('counts any table as written after a schema change not yet committed (a rename or INHERIT may point the write at a referenced table)', () => {
    const stale = { ...withKeys, uncommittedChanges: true };
    for (const sql of ['DELETE FROM public.harmless WHERE id = 1', 'UPDATE public.base2 SET id = 3', 'MERGE INTO public.pp p USING (VALUES (1)) v(id) ON p.id = v.id WHEN MATCHED THEN DELETE']) {
      const result = classifySql(sql, { catalog: stale });
      expect(result.ok && result.statements.flatMap((statement) => statement.writes), sql).toContain(ANY_TABLE);
    }
    expect(writes('ALTER TABLE public.accounts RENAME TO harmless; DELETE FROM public.harmless WHERE id = 1')).toContain(ANY_TABLE);
  });

  it('counts any table as written by a DELETE or UPDATE of a view or a relation with rules (its rewrite may reach a referenced table)', () => {
    const withView = { ...withKeys, rewritingRelations: new Set(['public.accounts_view']) };
    const result = classifySql('DELETE FROM public.accounts_view WHERE id = 1', { catalog: withView });
    expect(result.ok && result.statements.flatMap((statement) => statement.writes)).toContain(ANY_TABLE);
  });

  it('keeps stale facts and views without acting foreign keys to what the write names', () => {
    const none = targetCatalogFacts({ rowFunctions: [], rewritingRelations: ['public.v'], inheritance: [], foreignKeyActions: [], version: 'fk0' });
    const result = classifySql('DELETE FROM public.v WHERE id = 1', { catalog: { ...none, uncommittedChanges: true } });
    expect(result.ok && result.statements.flatMap((statement) => statement.writes)).toEqual(['public.v']);
  });
});
