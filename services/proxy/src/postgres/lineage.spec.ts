import { beforeAll, describe, expect, it } from 'vitest';
import { compileMasking } from '@sluice/masking-engine';
import { loadSqlClassifier, resultLineage, targetCatalogFacts } from '@sluice/sql-classifier';
import { coveredValueEscape, derivedColumns, LineageCache, resultColumnSources, touchesCoveredColumn, viewColumnSources, withUncommittedChanges } from './lineage.js';

beforeAll(async () => {
  await loadSqlClassifier();
});

describe('LineageCache', () => {
  it('computes the lineage of a text once and answers repeats from the cache', () => {
    const cache = new LineageCache();
    const first = cache.lineage('SELECT substr(ssn, 8) AS tail FROM people', ['public'], new Map());
    expect(first).toBeDefined();
    expect(cache.lineage('SELECT substr(ssn, 8) AS tail FROM people', ['public'], new Map())).toBe(first);
    expect(cache.lineage('SELECT substr(ssn, 8) AS tail FROM people', ['crm'], new Map())).not.toBe(first);
  });

  it('keeps the one schema "crm,public" apart from the path crm, public', () => {
    const cache = new LineageCache();
    const text = 'SELECT substr(ssn, 8) AS tail FROM people';
    const one = cache.lineage(text, ['crm,public'], new Map());
    expect(one?.statements[0]?.head[0]).toEqual([{ table: 'crm,public.people', column: 'ssn' }]);
    expect(cache.lineage(text, ['crm', 'public'], new Map())?.statements[0]?.head[0]).not.toEqual(one?.statements[0]?.head[0]);
  });

  it('does not cache the lineage of an EXECUTE, which depends on the prepared statements', () => {
    const cache = new LineageCache();
    const prepared = new Map([['q', 'SELECT right(ssn, 4) FROM people']]);
    const first = cache.lineage('EXECUTE q', undefined, prepared);
    expect(first?.statements[0]?.head[0]).toEqual([{ table: 'public.people', column: 'ssn' }]);
    prepared.set('q', 'SELECT name FROM people');
    expect(cache.lineage('EXECUTE q', undefined, prepared)?.statements[0]?.head[0]).toEqual([{ table: 'public.people', column: 'name' }]);
  });

  it('answers a new literal in a WHERE comparison from the statement shape, without a new parse', () => {
    const cache = new LineageCache();
    const first = cache.lineage('SELECT abalance FROM pgbench_accounts WHERE aid = 1', ['public'], new Map());
    expect(first?.statements[0]?.head[0]).toEqual([{ table: 'public.pgbench_accounts', column: 'abalance' }]);
    expect(cache.lineage('SELECT abalance FROM pgbench_accounts WHERE aid = 99', ['public'], new Map())).toBe(first);
    expect(cache.lineage("SELECT abalance FROM pgbench_accounts WHERE aid = '7'", ['public'], new Map())).toBe(first);
    // The search path is part of the key, as for exact texts.
    expect(cache.lineage('SELECT abalance FROM pgbench_accounts WHERE aid = 2', ['crm'], new Map())).not.toBe(first);
  });

  it('answers a new literal in a whole target of the SELECT list from the shape, as a fresh parse would', () => {
    const cache = new LineageCache();
    const first = cache.lineage("SELECT 7 AS n, 'x@example.com' AS email, ssn FROM people WHERE id = 7", ['public'], new Map());
    for (const text of ["SELECT 8 AS n, 'y@example.org' AS email, ssn FROM people WHERE id = 8", "SELECT NULL AS n, '123-45-6789' AS email, ssn FROM people WHERE id = 9"]) {
      const shared = cache.lineage(text, ['public'], new Map());
      expect(shared).toBe(first);
      expect(shared).toEqual(resultLineage(text, { searchPath: ['public'], preparedStatements: new Map() }));
    }
    expect(derivedColumns(first, 0, 3)).toEqual([undefined, undefined, [{ name: 'ssn', qualifiedName: 'public.people.ssn' }]]);
  });

  it('never shares the answer about a constant in the SELECT list that is not a whole target', () => {
    const cache = new LineageCache();
    const pairs = [
      ["SELECT (ARRAY[name, id::text])[1] AS v FROM people", "SELECT (ARRAY[name, ssn])[2] AS v FROM people"],
      ["SELECT to_jsonb(p)->>'name' AS v FROM people p", "SELECT to_jsonb(p)->>'ssn' AS v FROM people p"],
      ["SELECT format('%1$s', name, ssn) AS v FROM people", "SELECT format('%2$s', name, ssn) AS v FROM people"],
      ["SELECT v FROM (SELECT name AS v, 1 AS k FROM people UNION ALL SELECT ssn, 2 FROM people) u WHERE k = 1", "SELECT v FROM (SELECT name AS v, 1 AS k FROM people UNION ALL SELECT ssn, 2 FROM people) u WHERE k = 2"],
    ];
    for (const [harmless, revealing] of pairs) {
      cache.lineage(harmless!, ['public'], new Map());
      expect(cache.lineage(revealing!, ['public'], new Map())).toEqual(resultLineage(revealing!, { searchPath: ['public'], preparedStatements: new Map() }));
    }
  });

  it('never shares an answer between texts whose differing literal changes it', () => {
    const cache = new LineageCache();
    const pairs = [
      ["SELECT doc->'name' AS v FROM docs WHERE id = 1", "SELECT doc->'ssn' AS v FROM docs WHERE id = 1"],
      ["SELECT json_extract_path_text(doc, 'name') FROM docs", "SELECT json_extract_path_text(doc, 'ssn') FROM docs"],
      ["SELECT doc['name'] FROM docs WHERE id = 1", "SELECT doc['ssn'] FROM docs WHERE id = 1"],
    ];
    for (const [harmless, revealing] of pairs) {
      cache.lineage(harmless!, ['public'], new Map());
      expect(cache.lineage(revealing!, ['public'], new Map())).toEqual(resultLineage(revealing!, { searchPath: ['public'], preparedStatements: new Map() }));
      expect(JSON.stringify(cache.lineage(revealing!, ['public'], new Map()))).toContain('ssn');
    }
  });
});

describe('LineageCache with user overloads of built-in names', () => {
  it('keeps the answer of an ordinary database apart from one where upper is overloaded', () => {
    const cache = new LineageCache();
    const anyColumn = (facts?: ReturnType<typeof targetCatalogFacts>): boolean =>
      cache.lineage('SELECT upper(1.5)', undefined, new Map(), undefined, facts)!.statements[0]!.head[0]!.some((source) => source.anyColumn === true);
    const plain = targetCatalogFacts({ rowFunctions: [], rewritingRelations: [], inheritance: [], version: 'plain' });
    const overloaded = targetCatalogFacts({ rowFunctions: [], overloadedBuiltins: ['upper'], rewritingRelations: [], inheritance: [], version: 'over' });
    expect(anyColumn(plain)).toBe(false);
    expect(anyColumn(overloaded)).toBe(true);
    expect(anyColumn()).toBe(false);
  });
});

describe('LineageCache and the target\'s views', () => {
  const view = (version: string, shown: string) =>
    targetCatalogFacts({
      rowFunctions: [],
      rewritingRelations: ['public.v'],
      inheritance: [],
      views: [{ name: 'public.v', columns: ['id', 'x'], definition: `SELECT people.id, people.${shown} AS x FROM public.people` }],
      version,
    });

  it('follows a view column to what the facts\' version of the view shows, and answers again when the version changes', () => {
    const cache = new LineageCache();
    const sources = (facts: ReturnType<typeof targetCatalogFacts>) => cache.lineage('SELECT x FROM v', ['public'], new Map(), undefined, facts)!.statements[0]!.head[0];
    expect(sources(view('v1', 'name'))).toEqual([{ table: 'public.v', column: 'x' }, { table: 'public.people', column: 'name' }]);
    expect(sources(view('v2', 'ssn'))).toEqual([{ table: 'public.v', column: 'x' }, { table: 'public.people', column: 'ssn' }]);
  });

  it('gives a column the wire names as a view\'s the columns it shows, any column for one the facts do not know, nothing for a table\'s', () => {
    const facts = view('v1', 'ssn');
    expect(viewColumnSources('public.v.x', facts.views)).toEqual([{ name: 'ssn', qualifiedName: 'public.people.ssn' }]);
    expect(viewColumnSources('public.v.added', facts.views)).toEqual([{ name: '*', anyColumn: true }]);
    expect(viewColumnSources('public.people.ssn', facts.views)).toBeUndefined();
    expect(viewColumnSources(undefined, facts.views)).toBeUndefined();
  });

  it('adds a view column\'s sources to what the text says, and any column to every column after an uncommitted schema change', () => {
    const facts = view('v1', 'ssn');
    const derived = [[{ name: 'x', qualifiedName: 'public.v.x' }], undefined];
    expect(resultColumnSources(derived, ['public.v.x', 'public.people.name'], facts)).toEqual([
      [{ name: 'x', qualifiedName: 'public.v.x' }, { name: 'ssn', qualifiedName: 'public.people.ssn' }],
      undefined,
    ]);
    const plain = targetCatalogFacts({ rowFunctions: [], rewritingRelations: [], inheritance: [], version: 'plain' });
    expect(resultColumnSources(derived, ['public.v.x', undefined], plain)).toBe(derived);
    const uncommitted = withUncommittedChanges(plain);
    expect(withUncommittedChanges(plain)).toBe(uncommitted);
    expect(resultColumnSources(undefined, [undefined, 'public.people.name'], uncommitted)).toEqual([
      [{ name: '*', anyColumn: true }],
      [{ name: '*', anyColumn: true }],
    ]);
  });
});

describe('derivedColumns', () => {
  it('gives each column of the n-th statement its sources as masking-engine column sources', () => {
    const lineage = new LineageCache().lineage("SELECT 1; SELECT id, substr(ssn, 8) AS tail, 'x' AS k FROM crm.people", undefined, new Map());
    expect(derivedColumns(lineage, 1, 3)).toEqual([[{ name: 'id', qualifiedName: 'crm.people.id' }], [{ name: 'ssn', qualifiedName: 'crm.people.ssn' }], undefined]);
  });

  it('gives nothing when no column has a source or the statement is unknown', () => {
    const lineage = new LineageCache().lineage("SELECT 1; SELECT substr(ssn, 8) FROM people", undefined, new Map());
    expect(derivedColumns(lineage, 0, 1)).toBeUndefined();
    expect(derivedColumns(lineage, 5, 1)).toBeUndefined();
    expect(derivedColumns(undefined, 0, 1)).toBeUndefined();
  });

  it('gives every column all the sources when the widths disagree (fail closed)', () => {
    const lineage = new LineageCache().lineage("SELECT 1; SELECT substr(ssn, 8) FROM people", undefined, new Map());
    const ssn = [{ name: 'ssn', qualifiedName: 'public.people.ssn' }];
    expect(derivedColumns(lineage, 1, 2)).toEqual([ssn, ssn]);
  });

  it('resolves the columns of a function in FROM by the names the wire gives', () => {
    const lineage = new LineageCache().lineage('SELECT * FROM json_each_text(row_to_json((SELECT p FROM people p)))', undefined, new Map());
    const columns = derivedColumns(lineage, 0, 2, ['key', 'value'])!;
    for (const column of columns) expect(column).toContainEqual({ name: '*', anyColumn: true, table: 'public.people' });
  });

  it('counts a column the walk cannot place (no relation in scope has it) as any column: fail closed', () => {
    const lineage = new LineageCache().lineage('SELECT (SELECT upper(x.ssn))', undefined, new Map());
    expect(derivedColumns(lineage, 0, 1)).toEqual([[{ name: '*', anyColumn: true }]]);
  });
});

describe('coveredValueEscape', () => {
  const masker = compileMasking(
    { defaultRegion: 'US', detectors: [], profiles: { pii: { detectors: [], strategy: 'redact', columns: [{ match: '(?i)ssn', strategy: 'redact' }] } } },
    {},
  ).profile('pii')!;
  const facts = targetCatalogFacts({ rowFunctions: ['ident'], rewritingRelations: [], inheritance: [], version: 'v1' });
  const escape = (text: string, prepared = new Map<string, string>()) => coveredValueEscape(masker, text, ['public'], prepared, facts);

  it('never lets a harmless literal answer for a text of the same shape whose literal carries a covered value away', () => {
    expect(escape("SELECT id FROM people, generate_series(1, 3) g WHERE g = 2 AND name = 'x'")).toBeUndefined();
    expect(escape("SELECT id FROM people, generate_series(1, 3) g WHERE g = 2 AND ssn = 'x'")).toContain('compares a column');
  });

  it('answers texts that differ only in compared literals from their shape', () => {
    expect(escape('SELECT id FROM people WHERE id = 1')).toBeUndefined();
    expect(escape('SELECT id FROM people WHERE id = 2')).toBeUndefined();
  });

  it('refuses writing a covered value into an uncovered column, and allows it into a covered one', () => {
    expect(escape('INSERT INTO orders (id, item) SELECT id, ssn FROM people')).toContain('column item');
    expect(escape('INSERT INTO people (id, ssn) SELECT id + 1, ssn FROM people')).toBeUndefined();
    expect(escape('EXECUTE launder', new Map([['launder', 'INSERT INTO orders SELECT id, ssn FROM people']]))).toContain('a column the statement does not name');
  });

  it('refuses a predicate over a covered column next to a series, and a row function in attribute notation', () => {
    expect(escape("SELECT g FROM people, generate_series(1, 999) g WHERE g = split_part(ssn, '-', 1)::int")).toContain('set-returning function');
    expect(escape('SELECT p.ident FROM people p')).toContain('attribute notation');
    expect(escape('SELECT ident(p) FROM people p')).toBeUndefined();
  });

  it('refuses DDL that moves a covered column under an uncovered name, and allows it under a covered one', () => {
    expect(escape('ALTER TABLE people RENAME COLUMN ssn TO body')).toContain('column body');
    expect(escape('ALTER TABLE people ALTER COLUMN name TYPE text USING ssn')).toContain('column name');
    expect(escape('ALTER TABLE people ADD COLUMN body text GENERATED ALWAYS AS (upper(ssn)) STORED')).toContain('column body');
    expect(escape('CREATE TABLE t (ssn text, body text GENERATED ALWAYS AS (ssn) STORED)')).toContain('column body');
    expect(escape('ALTER TABLE people RENAME COLUMN ssn TO old_ssn')).toBeUndefined();
    expect(escape('ALTER TABLE people RENAME COLUMN name TO full_name')).toBeUndefined();
    expect(escape('ALTER TABLE people ALTER COLUMN id TYPE bigint')).toBeUndefined();
  });

  it('refuses setval of a value computed from a covered column, which the sequence keeps', () => {
    expect(escape("SELECT setval('ctr', split_part(ssn, '-', 1)::int) FROM people")).toContain('a column the statement does not name');
    expect(escape("SELECT pg_catalog.setval('ctr', n) FROM (SELECT length(ssn) AS n FROM people) s")).toBeDefined();
    expect(escape("SELECT setval('ctr', 42)")).toBeUndefined();
    expect(escape("SELECT setval('ctr', (SELECT max(id) FROM people))")).toBeUndefined();
  });

  it('refuses writing a JSON member named like a covered column into an uncovered column', () => {
    expect(escape("INSERT INTO notes (body) SELECT doc->>'ssn' FROM docs")).toContain('column body');
    expect(escape("INSERT INTO notes (body) SELECT doc #>> '{contact,ssn}' FROM docs")).toContain('column body');
    expect(escape("UPDATE notes SET body = jsonb_extract_path_text(doc, 'ssn')")).toContain('column body');
    expect(escape("INSERT INTO notes (body) SELECT doc['ssn']::text FROM docs")).toContain('column body');
    expect(escape('INSERT INTO notes (body) SELECT doc->>k FROM docs')).toContain('column body');
    expect(escape("INSERT INTO notes (body) SELECT doc->>'name' FROM docs")).toBeUndefined();
  });

  it('refuses writing a view column that shows a covered column into an uncovered one, and allows one that does not', () => {
    const withView = targetCatalogFacts({
      rowFunctions: [],
      rewritingRelations: ['public.v'],
      inheritance: [],
      views: [{ name: 'public.v', columns: ['id', 'tax_id', 'name'], definition: 'SELECT people.id, people.ssn AS tax_id, people.name FROM public.people' }],
      version: 'views',
    });
    expect(coveredValueEscape(masker, 'INSERT INTO orders (item) SELECT tax_id FROM v', ['public'], new Map(), withView)).toContain('writes a value');
    expect(coveredValueEscape(masker, 'INSERT INTO orders (item) SELECT name FROM v', ['public'], new Map(), withView)).toBeUndefined();
    expect(coveredValueEscape(masker, 'SELECT id FROM v, generate_series(1, 3) g WHERE g::text = tax_id', ['public'], new Map(), withView)).toContain('compares a column');
  });

  it('lets everything through under a profile without column rules', () => {
    expect(coveredValueEscape(undefined, 'INSERT INTO orders SELECT id, ssn FROM people', ['public'], new Map(), facts)).toBeUndefined();
  });
});

describe('touchesCoveredColumn', () => {
  const masker = compileMasking(
    { defaultRegion: 'US', detectors: [], profiles: { pii: { detectors: ['email'], strategy: 'partial', columns: [{ match: '(?i)ssn', strategy: 'redact' }] } } },
    { hashKey: 'touches-spec' },
  ).profile('pii')!;

  it('answers texts of one shape alike, and never shares an answer a literal changes', () => {
    expect(touchesCoveredColumn(masker, 'SELECT ssn FROM people WHERE id = 1', ['public'], new Map(), undefined)).toBe(true);
    expect(touchesCoveredColumn(masker, 'SELECT ssn FROM people WHERE id = 2', ['public'], new Map(), undefined)).toBe(true);
    expect(touchesCoveredColumn(masker, 'SELECT name FROM people WHERE id = 3', ['public'], new Map(), undefined)).toBe(false);
    // The literal names a JSON member: the same shape, another answer.
    expect(touchesCoveredColumn(masker, "SELECT doc->>'name' FROM people WHERE id = 4", ['public'], new Map(), undefined)).toBe(false);
    expect(touchesCoveredColumn(masker, "SELECT doc->>'ssn' FROM people WHERE id = 4", ['public'], new Map(), undefined)).toBe(true);
  });

  it('answers a new literal in a whole target of the SELECT list alike, with or without a covered column', () => {
    for (let n = 1; n <= 3; n++) {
      expect(touchesCoveredColumn(masker, `SELECT ${n} AS n, 'x${n}@example.com' AS email`, ['public'], new Map(), undefined)).toBe(false);
      expect(touchesCoveredColumn(masker, `SELECT ${n} AS n, ssn FROM people WHERE id = ${n}`, ['public'], new Map(), undefined)).toBe(true);
    }
  });

  it('counts every statement after an uncommitted schema change as touching a covered column', () => {
    const facts = targetCatalogFacts({ rowFunctions: [], rewritingRelations: [], inheritance: [], version: 'plain' });
    expect(touchesCoveredColumn(masker, 'SELECT name FROM people', ['public'], new Map(), facts)).toBe(false);
    expect(touchesCoveredColumn(masker, 'SELECT name FROM people', ['public'], new Map(), withUncommittedChanges(facts))).toBe(true);
  });

  it('counts a read of a view as any column: its column nick may be ssn renamed', () => {
    const views = targetCatalogFacts({ rowFunctions: [], rewritingRelations: ['crm.people_view'], inheritance: [], version: 'views' });
    const noViews = targetCatalogFacts({ rowFunctions: [], rewritingRelations: [], inheritance: [], version: 'none' });
    const text = 'SELECT nick::int FROM people_view WHERE id = 1';
    expect(touchesCoveredColumn(masker, text, ['crm'], new Map(), noViews)).toBe(false);
    expect(touchesCoveredColumn(masker, text, ['crm'], new Map(), views)).toBe(true);
    expect(touchesCoveredColumn(masker, 'SELECT nick::int FROM crm.people_view WHERE id = 2', ['public'], new Map(), views)).toBe(true);
    // Whatever the path: the session's temporary schema is searched first.
    expect(touchesCoveredColumn(masker, text, ['public'], new Map(), views)).toBe(true);
    expect(touchesCoveredColumn(masker, 'SELECT nick::int FROM public.people_view WHERE id = 3', ['public'], new Map(), views)).toBe(false);
  });
});
