import { beforeAll, describe, expect, it } from 'vitest';
import { loadSqlClassifier } from './classify.js';
import { columnLineages, resultLineage, type ColumnLineage, type StatementLineage } from './lineage.js';
import { referencedColumns } from './session-statements.js';

beforeAll(async () => {
  await loadSqlClassifier();
});

/** The lineage of the first statement's columns, as `table.column` strings (`?.column` when the table is unknown). */
const columns = (sql: string, searchPath?: readonly string[]): string[][] => {
  const statement = resultLineage(sql, searchPath ? { searchPath } : {})?.statements[0];
  expect(statement).toBeDefined();
  expect(statement!.open).toBe(false);
  return statement!.head.map(flat);
};
const flat = (lineage: ColumnLineage | undefined): string[] => (lineage ?? []).map((source) => `${source.table ?? '?'}.${source.column}`).sort();

const SSN = ['public.people.ssn'];

describe('resultLineage: derived columns carry their source', () => {
  it.each([
    ['substr', 'SELECT substr(ssn, 8) AS tail FROM people'],
    ['right()', 'SELECT right(ssn, 4) FROM people'],
    ['left()', 'SELECT left(ssn, 3) FROM people'],
    ['concatenation', "SELECT 'x' || ssn || 'y' FROM people"],
    ['concat()', "SELECT concat('#', ssn) FROM people"],
    ['a cast', 'SELECT ssn::text FROM people'],
    ['a CAST()', 'SELECT CAST(ssn AS varchar(4)) FROM people'],
    ['lower/upper', 'SELECT lower(upper(ssn)) FROM people'],
    ['encode', "SELECT encode(convert_to(ssn, 'UTF8'), 'base64') FROM people"],
    ['md5 (an unkeyed hash of a low-entropy value is reversible)', 'SELECT md5(ssn) FROM people'],
    ['a CASE result', "SELECT CASE WHEN id > 0 THEN ssn ELSE 'none' END FROM people"],
    ['COALESCE', "SELECT coalesce(ssn, 'n/a') FROM people"],
    ['NULLIF', "SELECT nullif(ssn, '') FROM people"],
    ['min()', 'SELECT min(ssn) FROM people'],
    ['max() over a window', 'SELECT max(ssn) OVER (PARTITION BY id) FROM people'],
    ['string_agg()', "SELECT string_agg(ssn, ',') FROM people"],
    ['an array', 'SELECT ARRAY[ssn] FROM people'],
    ['a qualified reference', 'SELECT substr(p.ssn, 8) FROM people p'],
    ['a schema-qualified table', 'SELECT substr(ssn, 8) FROM public.people'],
    ['a field selection', 'SELECT (p).ssn FROM people p'],
    ['a scalar subquery', 'SELECT (SELECT substr(ssn, 8) FROM people LIMIT 1)'],
  ])('through %s', (_what, sql) => {
    expect(columns(sql)).toEqual([SSN]);
  });

  it('through a table under TABLESAMPLE, by its own name and by its alias', () => {
    expect(columns('SELECT upper(ssn) FROM people TABLESAMPLE BERNOULLI (100)')).toEqual([SSN]);
    expect(columns('SELECT upper(p.ssn) FROM people p TABLESAMPLE SYSTEM (100) REPEATABLE (1)')).toEqual([SSN]);
  });

  it.each([
    ['a set-returning function in FROM', "SELECT count(*) FROM people, generate_series(1, split_part(ssn, '-', 1)::int)"],
    ['a scalar subquery over one', "SELECT (SELECT count(*) FROM generate_series(1, split_part(p.ssn, '-', 3)::int)) FROM people p"],
    ['one in a subquery’s select list', "SELECT count(*) FROM (SELECT generate_series(1, length(ssn)) FROM people) s"],
    ['a LATERAL unnest', "SELECT row_number() OVER () FROM people p CROSS JOIN LATERAL unnest(string_to_array(repeat('a,', length(p.ssn)), ','))"],
    ['one in a CTE', 'WITH g AS (SELECT unnest(regexp_split_to_array(ssn, \'\')) FROM people) SELECT count(*) FROM g'],
  ])('through a count of rows that %s generates from the value', (_what, sql) => {
    expect(columns(sql)).toEqual([SSN]);
  });

  it('not through a count of a table’s own rows', () => {
    expect(columns("SELECT count(*), (SELECT count(*) FROM generate_series(1, 3)) FROM people WHERE ssn LIKE '9%'")).toEqual([[], []]);
  });

  it('through a column definition list, which names the JSON members json(b)_to_record reads', () => {
    expect(columns('SELECT upper(x.ssn) FROM accounts, jsonb_to_record(profile) AS x(ssn text)')).toEqual([['?.ssn', 'public.accounts.profile']]);
    expect(columns('SELECT r.ssn FROM accounts, ROWS FROM (jsonb_to_record(profile) AS (ssn text)) AS r')).toEqual([['?.ssn', 'public.accounts.profile']]);
  });

  it('through attribute notation, which may call a function of the whole row (p.concat is concat(p))', () => {
    expect(columns('SELECT p.concat FROM people p')).toEqual([['public.people.*', 'public.people.concat']]);
    expect(columns('SELECT (p).quote_literal FROM people p')).toEqual([['public.people.*', 'public.people.quote_literal']]);
  });

  it('through a subquery alias: SELECT upper(s.s) FROM (SELECT ssn AS s FROM people) s', () => {
    expect(columns('SELECT upper(s.s) FROM (SELECT ssn AS s FROM people) s')).toEqual([SSN]);
  });

  it('through a subquery column list: SELECT z FROM (SELECT ssn FROM people) AS s(z)', () => {
    expect(columns('SELECT z || z FROM (SELECT ssn FROM people) AS s(z)')).toEqual([SSN]);
  });

  it('through a table alias list, which renames columns only the catalog knows: any column of the table', () => {
    expect(columns('SELECT upper(c) FROM people AS x(a, b, c)')).toEqual([['public.people.*']]);
    expect(columns('SELECT upper(j.c) FROM (people CROSS JOIN orders) AS j(a, b, c)')).toEqual([['public.orders.*', 'public.people.*']]);
  });

  it("through an XMLTABLE column named bare, even beside a base table that may have that name", () => {
    const xml = "xmltable('/r' PASSING (SELECT xmlelement(name r, ssn) FROM people) COLUMNS v text PATH '.')";
    expect(columns(`SELECT upper(v) FROM ${xml}`)).toEqual([SSN]);
    expect(columns(`SELECT upper(v) FROM orders, ${xml}`)).toEqual([['public.orders.v', ...SSN]]);
  });

  it.each(['SELECT mode() WITHIN GROUP (ORDER BY ssn) FROM people', 'SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY ssn) FROM people'])(
    'through an ordered-set aggregate, which returns a value of its ordering: %s',
    (sql) => {
      expect(columns(sql)).toEqual([SSN]);
    },
  );

  it('through SYSTEM_USER, a column name to PostgreSQL 15 (the parser knows the newer keyword)', () => {
    expect(columns('SELECT upper(system_user) FROM (SELECT ssn AS "system_user" FROM people) s')).toEqual([SSN]);
  });

  it.each([
    'INSERT INTO orders (id, item) SELECT id + 100, ssn FROM people RETURNING item',
    'UPDATE orders o SET item = p.ssn FROM people p WHERE o.id = p.id RETURNING o.item',
    'INSERT INTO orders VALUES (1, (SELECT ssn FROM people LIMIT 1)) RETURNING item',
  ])('through what a write put in the row it RETURNs: %s', (sql) => {
    expect(columns(sql)[0]).toEqual(expect.arrayContaining(SSN));
  });

  it("through a recursive CTE's SEARCH … SET and CYCLE … SET … USING columns (arrays of the rows' values)", () => {
    const cte = 'WITH RECURSIVE t(x) AS (SELECT ssn FROM people UNION ALL SELECT x FROM t WHERE false)';
    expect(columns(`${cte} SEARCH DEPTH FIRST BY x SET ord SELECT ord FROM t`)).toEqual([SSN]);
    expect(columns(`${cte} CYCLE x SET c USING p SELECT p::text FROM t`)).toEqual([SSN]);
  });

  it("through a CTE alias: WITH x AS (SELECT ssn AS a FROM people) SELECT a || '' FROM x", () => {
    expect(columns("WITH x AS (SELECT ssn AS a FROM people) SELECT a || '' FROM x")).toEqual([SSN]);
  });

  it('through a CTE column list and a chain of CTEs', () => {
    expect(columns('WITH x(a) AS (SELECT ssn FROM people), y AS (SELECT substr(a, 2) AS b FROM x) SELECT lower(b) FROM y')).toEqual([SSN]);
  });

  it('through a recursive CTE whose recursive term brings the column in', () => {
    expect(columns("WITH RECURSIVE t(x) AS (SELECT '' UNION ALL SELECT ssn FROM people, t) SELECT x FROM t")).toEqual([SSN]);
  });

  it('through a data-changing CTE RETURNING it', () => {
    expect(columns('WITH d AS (DELETE FROM people RETURNING ssn) SELECT substr(ssn, 8) FROM d')).toEqual([SSN]);
  });

  it('through * over a subquery of known columns', () => {
    expect(columns('SELECT * FROM (SELECT id, substr(ssn, 8) AS tail FROM people) s')).toEqual([['public.people.id'], SSN]);
  });

  it('through a lateral set-returning function (and, since people may have a column u, people.u too)', () => {
    expect(columns('SELECT u FROM people, unnest(ARRAY[ssn]) AS u')).toEqual([['public.people.ssn', 'public.people.u']]);
    expect(columns('SELECT p.name FROM people p, unnest(ARRAY[ssn]) AS u')).toEqual([['public.people.name']]);
  });

  it('through either branch of a UNION', () => {
    expect(columns("SELECT name FROM people UNION ALL SELECT substr(ssn, 8) FROM people")).toEqual([['public.people.name', 'public.people.ssn']]);
  });

  it('through RETURNING of an UPDATE', () => {
    expect(columns("UPDATE people SET name = 'x' WHERE id = 1 RETURNING id, substr(ssn, 8)")).toEqual([['public.people.id'], SSN]);
  });

  it('resolves an unqualified table to each schema of the search path, a qualified one to its own', () => {
    expect(columns('SELECT substr(ssn, 8) FROM people', ['"$user"', 'crm', 'public'])).toEqual([['crm.people.ssn', 'public.people.ssn']]);
    // pg_catalog listed after crm: a crm.substr would shadow the built-in, so the result may carry anything.
    expect(columns('SELECT substr(ssn, 8) FROM people', ['"$user"', 'crm', 'public', 'pg_catalog'])).toEqual([['?.*', 'crm.people.ssn', 'public.people.ssn']]);
    expect(columns('SELECT substr(ssn, 8) FROM crm.people', ['public'])).toEqual([['crm.people.ssn']]);
  });

  it('keeps one entry per statement of a multi-statement text, undefined where no rows come back', () => {
    const lineage = resultLineage("SET x = 1; SELECT substr(ssn, 8) FROM people; SELECT 1 AS one; INSERT INTO t VALUES (1)")!;
    expect(lineage.statements).toHaveLength(4);
    expect(lineage.statements[0]).toBeUndefined();
    expect(lineage.statements[1]!.head.map(flat)).toEqual([SSN]);
    expect(lineage.statements[2]!.head.map(flat)).toEqual([[]]);
    expect(lineage.statements[3]).toBeUndefined();
    expect(lineage.cacheable).toBe(true);
  });

  it('follows EXECUTE of a prepared statement, and says the answer cannot be cached by text', () => {
    const preparedStatements = new Map([['q', 'PREPARE q AS SELECT substr(ssn, 8) FROM people']]);
    const lineage = resultLineage('EXECUTE q', { preparedStatements })!;
    expect(lineage.statements[0]!.head.map(flat)).toEqual([SSN]);
    expect(lineage.cacheable).toBe(false);
  });
});

describe('resultLineage: masking fails closed', () => {
  it.each([
    ['a length (length(repeat(…, ascii(ssn))) is a character of it)', 'SELECT length(ssn) FROM people'],
    ['a prefix ~ (bitwise NOT, not a regex match)', "SELECT ~(translate(ssn, '-', '')::bigint) FROM people"],
    ['&& on tsquery (a tsquery, not a boolean)', "SELECT plainto_tsquery('simple', ssn) && 'zz' FROM people"],
    ['a hypothetical rank', 'SELECT rank(ascii(ssn)) WITHIN GROUP (ORDER BY 1) FROM people'],
  ])('%s carries the column', (_what, sql) => {
    expect(columns(sql)).toEqual([SSN]);
  });

  it.each([
    ['to_jsonb(p)', 'SELECT to_jsonb(p) FROM people p'],
    ["reverse(to_jsonb(p)->>'ssn')", "SELECT reverse(to_jsonb(p) ->> 'ssn') FROM people p"],
    ['row_to_json(p)', 'SELECT row_to_json(p) FROM people p'],
    ['p itself', 'SELECT p FROM people p'],
    ['p.* in an expression', 'SELECT row_to_json(p.*) FROM people p'],
    ['a whole row of a subquery over *', 'SELECT to_jsonb(s) FROM (SELECT * FROM people) s'],
  ])('a whole-row value (%s) may carry any column of the table', (_what, sql) => {
    expect(columns(sql)[0]).toContain('public.people.*');
    expect(resultLineage(sql)!.statements[0]!.head[0]!.find((source) => source.column === '*')!.anyColumn).toBe(true);
  });

  it.each([
    ['a user function', 'SELECT my_report(id) FROM people'],
    ['table_to_xml', "SELECT table_to_xml('public.people', true, true, '')"],
    ['a function in FROM', 'SELECT r FROM my_report(1) r'],
    ['a function qualified with another schema', 'SELECT public.lower(name) FROM people'],
    ['a cast to a user type', 'SELECT name::secret_type FROM people'],
    ['a user operator', 'SELECT name === 1 FROM people'],
  ])('%s may carry any column', (_what, sql) => {
    expect(columns(sql)[0]).toContain('?.*');
  });
});

describe('resultLineage: what does not carry a value', () => {
  it('a column only in WHERE or ORDER BY does not taint the output', () => {
    expect(columns("SELECT name FROM people WHERE ssn LIKE '123%' ORDER BY ssn")).toEqual([['public.people.name']]);
  });

  it('a column only in JOIN … ON, GROUP BY, HAVING or FILTER does not taint the output', () => {
    expect(
      columns('SELECT o.amount, count(*) FILTER (WHERE p.ssn IS NOT NULL) FROM orders o JOIN people p ON p.ssn = o.ssn GROUP BY o.amount, p.ssn HAVING min(p.ssn) > $1'),
    ).toEqual([['public.orders.amount'], []]);
  });

  it('count() says how many, not what', () => {
    expect(columns('SELECT count(*), count(ssn), count(DISTINCT ssn), row_number() OVER () FROM people')).toEqual([[], [], [], []]);
  });

  it('a comparison, a predicate or EXISTS gives a boolean, not the value', () => {
    expect(columns("SELECT ssn = '1', ssn IS NULL, ssn LIKE '1%', ssn IN ('1'), EXISTS (SELECT ssn FROM people) FROM people")).toEqual([[], [], [], [], []]);
  });

  it('a CASE condition chooses a branch without returning the column', () => {
    expect(columns("SELECT CASE WHEN ssn IS NULL THEN 'no' ELSE name END FROM people")).toEqual([['public.people.name']]);
  });

  it('a subquery column that is not selected outside does not taint its neighbours', () => {
    expect(columns('SELECT s.name FROM (SELECT name, ssn FROM people) s')).toEqual([['public.people.name']]);
  });

  it('constants and parameters carry nothing', () => {
    expect(columns("SELECT 1, 'a', $1, now()")).toEqual([[], [], [], []]);
  });
});

describe('resultLineage: stars, unknowns and failures', () => {
  it('a * over a table has a width the text cannot tell: the columns around it stay aligned from both ends', () => {
    const statement = resultLineage('SELECT substr(ssn, 8) AS tail, *, upper(ssn) FROM people')!.statements[0]!;
    expect(statement.open).toBe(true);
    const lineages = columnLineages(statement, 5);
    expect(lineages.map((lineage) => (lineage ? flat(lineage) : undefined))).toEqual([SSN, undefined, undefined, undefined, SSN]);
  });

  it('columnLineages gives every column everything the statement returns when the widths disagree (fail closed)', () => {
    const statement: StatementLineage = { head: [[{ column: 'a' }]], tail: [], open: false };
    expect(columnLineages(statement, 2)).toEqual([[{ column: 'a' }], [{ column: 'a' }]]);
    expect(columnLineages(undefined, 1)).toEqual([undefined]);
  });

  it('returns undefined for text that does not parse, and for an empty text', () => {
    expect(resultLineage('SELEC nonsense')).toBeUndefined();
    expect(resultLineage('  ')).toBeUndefined();
  });

  it('gives no lineage for statements without rows or with unknowable ones', () => {
    // (FETCH from a cursor the text cannot see is no longer "unknown": it may carry any column, see below.)
    const lineage = resultLineage('EXPLAIN SELECT ssn FROM people; EXECUTE unknown; SELECT ssn INTO t FROM people')!;
    expect(lineage.statements).toEqual([undefined, undefined, undefined]);
  });
});

describe('resultLineage: columns the wire will not name', () => {
  it('a set-returning function may return more columns than the text names: each carries its arguments', () => {
    const lineage = resultLineage('SELECT * FROM json_each_text(row_to_json((SELECT p FROM people p LIMIT 1)))')!.statements[0]!;
    for (const column of columnLineages(lineage, 2, ['key', 'value']).map(flat)) expect(column).toContain('public.people.*');
  });
  it('a UNION of stars is resolved by the names the wire gives (its columns have no table OID)', () => {
    const lineage = resultLineage('SELECT * FROM people UNION ALL SELECT * FROM people')!.statements[0]!;
    expect(columnLineages(lineage, 2, ['id', 'pin_code']).map(flat)).toEqual([['public.people.id'], ['public.people.pin_code']]);
  });
  it('statistics views carry sample values of any column', () => {
    const lineage = resultLineage('SELECT * FROM pg_stats')!.statements[0]!;
    expect(columnLineages(lineage, 2, ['attname', 'histogram_bounds']).map(flat)).toEqual([['public.pg_stats.attname'], ['?.*']]);
    expect(columns("SELECT histogram_bounds FROM pg_catalog.pg_stats WHERE attname = 'ssn'")).toEqual([['?.*']]);
  });
});

describe('resultLineage: COPY TO and cursors', () => {
  it('gives the columns of COPY (query) TO and COPY table (columns) TO, and how the lines are written', () => {
    const query = resultLineage("COPY (SELECT id, reverse(ssn) FROM people) TO STDOUT WITH (FORMAT csv, DELIMITER ';', HEADER)")!.statements[0]!;
    expect(query.head.map(flat)).toEqual([['public.people.id'], SSN]);
    expect(query.copy).toEqual({ format: 'csv', delimiter: ';', quote: '"', escape: '"', header: true });
    const listed = resultLineage('COPY people (id, ssn) TO STDOUT')!.statements[0]!;
    expect(listed.head.map(flat)).toEqual([['public.people.id'], SSN]);
    expect(listed.copy).toMatchObject({ format: 'text', delimiter: '\t' });
  });
  it('a COPY of a whole table fills every column with any column of that table', () => {
    const whole = resultLineage('COPY people TO STDOUT')!.statements[0]!;
    expect(columnLineages(whole, 3).map(flat)).toEqual([['public.people.*'], ['public.people.*'], ['public.people.*']]);
  });
  it('does not count COPY FROM as returning rows', () => {
    expect(resultLineage('COPY people FROM STDIN')!.statements[0]).toBeUndefined();
  });
  it('FETCH gets the lineage of the DECLAREd query', () => {
    const cursors = new Map([['c', 'DECLARE c CURSOR WITH HOLD FOR SELECT reverse(ssn) AS r, name FROM people']]);
    const fetch = resultLineage('FETCH 10 FROM c', { cursors })!;
    expect(fetch.cacheable).toBe(false);
    expect(fetch.statements[0]!.head.map(flat)).toEqual([SSN, ['public.people.name']]);
  });
  it('FETCH from a cursor the text cannot see may carry any column', () => {
    const fetch = resultLineage('FETCH ALL FROM "<unnamed portal 1>"')!.statements[0]!;
    expect(columnLineages(fetch, 2).map(flat)).toEqual([['?.*'], ['?.*']]);
    expect(resultLineage('MOVE 1 IN c')!.statements[0]).toBeUndefined();
  });
});

describe('referencedColumns', () => {
  it('names every column a statement names anywhere, by name', () => {
    expect(referencedColumns("SELECT reverse(p.ssn)::int FROM people p WHERE name = 'x'")!.map((source) => source.column).sort()).toEqual(['name', 'ssn']);
  });
  it.each([
    'SELECT * FROM people',
    'SELECT to_jsonb(p) FROM people p',
    'SELECT my_report(1)',
    "SELECT histogram_bounds::text::int[] FROM pg_stats",
    'FETCH ALL FROM c',
    'SELECT c::int FROM people AS x(a, b, c)',
    "UPDATE people SET name = '' WHERE id = 1",
    'COPY people (id) FROM STDIN',
  ])('counts %s as naming any column', (sql) => {
    expect(referencedColumns(sql)).toEqual([{ column: '*', anyColumn: true }]);
  });
});

describe('resultLineage: JSON members read by key carry a column of that name', () => {
  it.each([
    ["->> 'ssn'", "SELECT profile ->> 'ssn' FROM people", ['?.ssn', 'public.people.profile']],
    ["-> 'ssn'", "SELECT profile -> 'ssn' AS x FROM people", ['?.ssn', 'public.people.profile']],
    ["#>> '{tax,ssn}'", "SELECT profile #>> '{tax,ssn}' FROM people", ['?.ssn', '?.tax', 'public.people.profile']],
    ['#> ARRAY[…]', "SELECT profile #> ARRAY['tax', 'ssn'] FROM people", ['?.ssn', '?.tax', 'public.people.profile']],
    ['jsonb_extract_path_text', "SELECT jsonb_extract_path_text(profile, 'tax', 'ssn') FROM people", ['?.ssn', '?.tax', 'public.people.profile']],
    ["a subscript ['ssn']", "SELECT profile['ssn'] FROM people", ['?.ssn', 'public.people.profile']],
    ['an array index', 'SELECT profile -> 0 FROM people', ['public.people.profile']],
  ])('%s', (_what, sql, expected) => {
    expect(columns(sql)[0]).toEqual(expected);
  });

  it.each([
    ['a parameter key', 'SELECT profile ->> $1 FROM people'],
    ['a key from a column', 'SELECT profile ->> name FROM people'],
    ['a parameter path', 'SELECT jsonb_extract_path_text(profile, $1) FROM people'],
    ['a parameter subscript', 'SELECT profile[$1] FROM people'],
  ])('%s may name any member: any column', (_what, sql) => {
    expect(resultLineage(sql)!.statements[0]!.head[0]!.some((source) => source.anyColumn)).toBe(true);
  });
});

describe('resultLineage: JSON functions that select members', () => {
  it.each([
    ["jsonb_path_query_first(profile, '$.tax.ssn')", "SELECT jsonb_path_query_first(profile, '$.tax.ssn') FROM people", ['?.ssn', '?.tax', 'public.people.profile']],
    ['a quoted jsonpath key', `SELECT jsonb_path_query(profile, '$."s s"') FROM people`, ['?.s s', 'public.people.profile']],
  ])('%s', (_what, sql, expected) => {
    expect(columns(sql)[0]).toEqual(expected);
  });

  it.each([
    ['jsonb_each in the select list', 'SELECT jsonb_each(profile) FROM people'],
    ['jsonb_each_text in FROM', 'SELECT e.value FROM people, jsonb_each_text(profile) e'],
    ['a member wildcard', "SELECT jsonb_path_query(profile, '$.*') FROM people"],
    ['keyvalue()', "SELECT jsonb_path_query(profile, '$.keyvalue()') FROM people"],
    ['a path given as a parameter', 'SELECT jsonb_path_query(profile, $1) FROM people'],
    // jsonpath escapes, quoted or not: each of these is $.ssn to PostgreSQL.
    ['a \\u escape in a quoted key', `SELECT jsonb_path_query(profile, '$."\\u0073sn"') FROM people`],
    ['a \\x escape in a quoted key', `SELECT jsonb_path_query(profile, '$."\\x73sn"') FROM people`],
    ['a \\u escape in a bare key', `SELECT jsonb_path_query_first(profile, '$.s\\u0073n') FROM people`],
    ['an identity escape in a bare key', `SELECT jsonb_path_query_array(profile, '$.s\\sn') FROM people`],
  ])('%s may return any member: any column', (_what, sql) => {
    const statement = resultLineage(sql)!.statements[0]!;
    const sources = [...statement.head.flat(), ...statement.tail.flat(), ...(statement.byName?.('value') ?? [])];
    expect(sources.some((source) => source.anyColumn)).toBe(true);
  });
});

describe('user overloads of built-in names (TargetCatalogFacts.overloadedBuiltins)', () => {
  const overloadedBuiltins: ReadonlySet<string> = new Set(['=', '>=', 'upper']);
  const anyColumn = (sql: string, overloads?: ReadonlySet<string>): boolean =>
    resultLineage(sql, overloads ? { overloadedBuiltins: overloads } : {})!.statements[0]!.head[0]!.some((source) => source.anyColumn === true);

  it.each(['SELECT upper(1.5) FROM people', 'SELECT name = 1.5 FROM people', 'SELECT id BETWEEN 1 AND 2 FROM people'])(
    '%s may carry any column where the name is overloaded, and none of another table elsewhere',
    (sql) => {
      expect(anyColumn(sql, overloadedBuiltins)).toBe(true);
      expect(anyColumn(sql)).toBe(false);
    },
  );

  it('keeps pg_catalog.upper a pure built-in', () => {
    expect(anyColumn('SELECT pg_catalog.upper(name) FROM people', overloadedBuiltins)).toBe(false);
  });
});

describe('resultLineage on a search path longer than the schemas it keeps', () => {
  it('counts an unqualified table as any column besides the schemas kept, a qualified one as itself', async () => {
    await loadSqlClassifier();
    const path = Array.from({ length: 10 }, (_, i) => `s${i + 1}`);
    const far = resultLineage("select upper(ssn) from people", { searchPath: path })?.statements[0]?.head[0];
    expect(far).toEqual(expect.arrayContaining([{ table: 's1.people', column: 'ssn' }, { column: '*', anyColumn: true }]));
    expect(resultLineage('select upper(ssn) from s10.people', { searchPath: path })?.statements[0]?.head[0]).toEqual([{ table: 's10.people', column: 'ssn' }]);
    expect(resultLineage('select upper(ssn) from people', { searchPath: path.slice(0, 8) })?.statements[0]?.head[0]).not.toEqual(expect.arrayContaining([{ column: '*', anyColumn: true }]));
  });
});
