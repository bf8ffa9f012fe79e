import { beforeAll, describe, expect, it } from 'vitest';
import { loadSqlClassifier } from './parser.js';
import { constantsAreInert, parseText, statementShape } from './statement-shape.js';

beforeAll(async () => {
  await loadSqlClassifier();
});

describe('statementShape', () => {
  it('is the normalised text when the text has constants, undefined when it has none', () => {
    expect(statementShape('SELECT abalance FROM pgbench_accounts WHERE aid = 42')).toBe('SELECT abalance FROM pgbench_accounts WHERE aid = $1');
    expect(statementShape('SELECT abalance FROM pgbench_accounts')).toBeUndefined();
    expect(statementShape('SELEC nonsense')).toBeUndefined();
  });
});

describe('parseText', () => {
  it('parses a text once for every question asked about it in a row', () => {
    const text = 'SELECT name FROM people WHERE id = 7';
    expect(parseText(text)).toBe(parseText(text));
    expect(() => parseText('SELEC nonsense')).toThrow();
  });
});

describe('constantsAreInert', () => {
  it.each([
    'SELECT abalance FROM pgbench_accounts WHERE aid = 42',
    "SELECT id, name FROM people WHERE name = 'Ada' AND (id IN (1, 2, 3) OR id BETWEEN 10 AND 20)",
    'SELECT * FROM people WHERE id >= 5::int ORDER BY id LIMIT 10 OFFSET 20',
    'SELECT p.name FROM people p JOIN orders o ON o.person = p.id WHERE o.total > 100',
    // A whole target of the SELECT list is only a value sent back: its output column has no source.
    "SELECT 7 AS n, 'x@example.com' AS email",
    "SELECT -7 AS n, NULL AS nothing, true AS yes, 'Ada' name FROM people WHERE id = 8",
    "SELECT '123-45-6789' AS ssn, ssn AS theirs FROM people WHERE id = 1 LIMIT 1",
    // A value written into a table is only a value: it carries no column's value and names nothing.
    "INSERT INTO notes(body) VALUES ('x')",
    'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (8, 1, 48213, -17, CURRENT_TIMESTAMP)',
    "INSERT INTO notes(id, body) VALUES (1, 'a'), (2, NULL) RETURNING id",
    'UPDATE pgbench_accounts SET abalance = abalance + -17 WHERE aid = 48213',
    "UPDATE people SET name = 'Ada', age = 2 * age WHERE id IN (1, 2)",
    'UPDATE people SET note = ssn WHERE id = 3',
    'DELETE FROM people WHERE id = 9',
    'DELETE FROM public.people WHERE id BETWEEN 1 AND 5 RETURNING *',
  ])('holds for constants only compared in WHERE, counting rows or written as values: %s', (text) => {
    expect(constantsAreInert(text)).toBe(true);
  });

  it.each([
    // Each of these reads a constant as a name or a text, or may: the answer depends on its value.
    "SELECT doc->'ssn' FROM docs WHERE id = 1",
    "SELECT id FROM docs WHERE doc->>'ssn' = 'x'",
    "SELECT id FROM docs WHERE tableoid = 'people'::regclass",
    "SELECT query_to_xml('select ssn from people', true, false, '')",
    "SELECT set_config('search_path', 'evil', false)",
    "SELECT current_setting('search_path')",
    "SET search_path = 'evil'",
    'SELECT * FROM generate_series(1, 5) g WHERE g = 3',
    'SELECT id FROM people WHERE id IN (SELECT person FROM orders WHERE total = 5)',
    'SELECT id FROM people WHERE upper(name) = lower(5::text)',
    'SELECT id FROM people WHERE id OPERATOR(myschema.=) 5',
    'SELECT id FROM people WHERE id = $1 AND age = 5',
    'SELECT id FROM people WHERE id = 5; SELECT 1',
    'SELEC nonsense',
    // Writes: a constant read as a key, a name, a position or SQL, or a catalog written (a SET).
    "UPDATE docs SET doc = doc -> 'ssn' WHERE id = 1",
    "UPDATE docs SET doc = doc #- '{ssn}' WHERE id = 1",
    "UPDATE docs SET doc = doc || '{\"a\": 1}' WHERE id = 1",
    "UPDATE people SET rel = 'people'::regclass",
    "UPDATE people SET name = upper('x')",
    'UPDATE people SET tags[1] = name',
    'UPDATE people SET note = ssn FROM generate_series(1, 5) g WHERE people.id = g',
    "UPDATE people SET name = 'x' RETURNING 7",
    "UPDATE pg_settings SET setting = 'evil' WHERE name = 'search_path'",
    "UPDATE pg_catalog.pg_settings SET setting = 'evil' WHERE name = 'search_path'",
    "UPDATE information_schema.sql_features SET comments = 'x'",
    "UPDATE people SET name = 'x' WHERE doc->>'ssn' = 'y'",
    'UPDATE people SET age = age OPERATOR(myschema.+) 1',
    'UPDATE people SET age = 1 + 2',
    "INSERT INTO notes(body) VALUES ('people'::regclass)",
    "INSERT INTO notes(body) VALUES (query_to_xml('select ssn from people', true, false, ''))",
    "INSERT INTO notes(body) SELECT doc->>'ssn' FROM docs",
    "INSERT INTO notes(body) VALUES ('x') ON CONFLICT (id) DO UPDATE SET body = 'y'",
    "WITH s AS (SELECT ssn FROM people LIMIT 1) INSERT INTO notes(body) SELECT ssn FROM s",
    'DELETE FROM people USING generate_series(1, 5) g WHERE people.id = g',
    "DELETE FROM people WHERE id = 1 RETURNING 'x'",
    // A constant in the SELECT list that is not a whole target: read as a name, a position, a
    // format, a type's input, or combined with a column.
    "SELECT pg_read_file('/etc/passwd') AS n",
    "SELECT format('%s', ssn) AS n FROM people",
    "SELECT '7'::int AS n",
    "SELECT 'people'::regclass AS n",
    "SELECT interval '1 day' AS n",
    "SELECT ssn || '' AS n FROM people",
    "SELECT 1 + id AS n FROM people",
    'SELECT ARRAY[7] AS n',
    'SELECT ROW(7) AS n',
    'SELECT (ARRAY[name, ssn])[2] AS n FROM people',
    "SELECT (SELECT 7) AS n",
    "SELECT CASE WHEN id = 1 THEN ssn ELSE name END AS n FROM people",
    // Positions: which output column is sorted, grouped or made distinct.
    'SELECT 7 AS n, ssn FROM people ORDER BY 1',
    'SELECT 7 AS n, ssn FROM people GROUP BY 1, 2',
    'SELECT DISTINCT ON (1) ssn, name FROM people',
    // The constant target of a set operation's branch: compared against another branch's column.
    "SELECT ssn FROM people UNION SELECT 'x'",
    "SELECT 7 AS n FROM generate_series(1, 3) g",
    "VALUES (1, 'x')",
  ])('does not hold where a constant may be read: %s', (text) => {
    expect(constantsAreInert(text)).toBe(false);
  });
});

describe('constantsAreInert, over texts of one shape', () => {
  it('holds for every text of a shape or for none: the constants are in the same places', () => {
    const pairs = [
      ["SELECT 7 AS n, 'x@example.com' AS email", "SELECT 8 AS n, 'y@example.org' AS email"],
      ["SELECT 7 AS n, ssn FROM people WHERE id = 1", "SELECT NULL AS n, ssn FROM people WHERE id = 2"],
      ["SELECT doc->'name' AS n FROM docs", "SELECT doc->'ssn' AS n FROM docs"],
      ["SELECT current_setting('a') AS n", "SELECT current_setting('b') AS n"],
      ["INSERT INTO notes(id, body) VALUES (1, 'x')", "INSERT INTO notes(id, body) VALUES ('people', 2)"],
      ['UPDATE t SET a = a + 1 WHERE id = 2', "UPDATE t SET a = a + 'x' WHERE id = 'y'"],
      ["UPDATE docs SET doc = doc - 'ssn'", 'UPDATE docs SET doc = doc - 3'],
    ];
    for (const [a, b] of pairs) {
      expect(statementShape(a!)).toBe(statementShape(b!));
      expect(constantsAreInert(a!)).toBe(constantsAreInert(b!));
    }
  });
});
