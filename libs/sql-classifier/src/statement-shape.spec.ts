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
  ])('holds for constants only compared in WHERE or counting rows: %s', (text) => {
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
    "INSERT INTO notes(body) VALUES ('x')",
    'SELEC nonsense',
  ])('does not hold where a constant may be read: %s', (text) => {
    expect(constantsAreInert(text)).toBe(false);
  });
});
