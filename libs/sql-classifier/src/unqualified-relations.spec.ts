import { beforeAll, describe, expect, it } from 'vitest';
import { loadSqlClassifier } from './parser.js';
import { unqualifiedRelations } from './unqualified-relations.js';

beforeAll(async () => {
  await loadSqlClassifier();
});

describe('unqualifiedRelations', () => {
  it('lists each relation named without its schema once, read or written, and none named with one', () => {
    expect(unqualifiedRelations('select v from t join other.u using (v) where v in (select v from t)')).toEqual(['t']);
    expect(unqualifiedRelations("insert into log values ('x')")).toEqual(['log']);
    expect(unqualifiedRelations('copy t from stdin; truncate other.t, s')).toEqual(['t', 's']);
    expect(unqualifiedRelations('select 1')).toEqual([]);
  });
  it('counts a CTE name too (it can only widen what the name may read)', () => {
    expect(unqualifiedRelations('with c as (select v from public.t) select v from c')).toEqual(['c']);
  });
  it('is undefined when the text does not parse or EXECUTEs a prepared statement', () => {
    expect(unqualifiedRelations('selec nonsense')).toBeUndefined();
    expect(unqualifiedRelations('execute p(1)')).toBeUndefined();
  });
});
