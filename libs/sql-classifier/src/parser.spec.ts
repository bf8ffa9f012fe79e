import { normalizeSync } from 'libpg-query';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadSqlClassifier, normalizeSql } from './parser.js';

beforeAll(async () => {
  await loadSqlClassifier();
});

/** normalizeSql must answer exactly as the normaliser would, whatever it kept from earlier texts. */
const asNormaliser = (text: string): string | undefined => {
  try {
    return normalizeSync(text);
  } catch {
    return undefined;
  }
};

describe('normalizeSql', () => {
  it.each([
    ['SELECT abalance FROM pgbench_accounts WHERE aid = 1', 'SELECT abalance FROM pgbench_accounts WHERE aid = 98765'],
    ["SELECT * FROM t WHERE a = 'x1' AND b = -5.5e3", "SELECT * FROM t WHERE a = 'x22' AND b = -7.0e9"],
    // Digits the normaliser keeps: a name, a type modifier, a FETCH count, a parameter, a comment.
    ['SELECT c1 FROM t1 WHERE id = 1', 'SELECT c2 FROM t2 WHERE id = 1'],
    ['SELECT x::varchar(10) FROM t WHERE id = 1', 'SELECT x::varchar(1000) FROM t WHERE id = 1'],
    ['FETCH 5 FROM c', 'FETCH 500 FROM c'],
    ['SELECT $1 + 5', 'SELECT $2 + 5'],
    ['SELECT 1 /* v1 */', 'SELECT 1 /* v2 */'],
    ['SELECT "col1" FROM t WHERE id = 1', 'SELECT "col2" FROM t WHERE id = 1'],
    ['SELECT 0o17', 'SELECT 0o18'],
    ['SELECT 1e5', 'SELECT 1e99999'],
    ['SELECT 1.5, 2', 'SELECT 1.55555, 2222222222222222222222222'],
  ])('answers %s, then %s, as the normaliser does', (first, second) => {
    expect(normalizeSql(first)).toBe(asNormaliser(first));
    expect(normalizeSql(second)).toBe(asNormaliser(second));
  });
});
