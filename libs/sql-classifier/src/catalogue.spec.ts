import { beforeAll, describe, expect, it } from 'vitest';
import { isOpenCatalogRelation } from './catalog-relations.js';
import { ANY_TABLE } from './catalogue.js';
import { classifySql } from './classify.js';
import { loadSqlClassifier } from './classify.js';

beforeAll(async () => {
  await loadSqlClassifier();
});

const verdict = (sql: string, searchPath?: readonly string[]): { action: string; risk: string; tables: readonly string[] } => {
  const result = classifySql(sql, searchPath ? { searchPath } : {});
  if (!result.ok) throw new Error(result.error);
  return { action: result.action, risk: result.risk, tables: result.tables };
};

describe('functions are closed by default', () => {
  it.each([
    "SELECT table_to_xml('public.secrets', true, true, '')",
    "SELECT schema_to_xml('public', true, true, '')",
    'SELECT database_to_xml(true, true, \'\')',
    "SELECT table_to_xmlschema('public.secrets', true, true, '')",
    'SELECT my_report(1)',
    'SELECT * FROM my_report(1)',
    'SELECT * FROM ROWS FROM (generate_series(1, 2), my_report(1))',
    "SELECT currval('orders_id_seq')",
    'SELECT pg_sleep(1)',
  ])('counts %s as reading any table at high risk', (sql) => {
    const { risk, tables } = verdict(sql);
    expect(tables).toContain(ANY_TABLE);
    expect(risk).toBe('high');
  });

  it('keeps the dynamic-SQL functions admin', () => {
    expect(verdict("SELECT query_to_xml('select * from secrets', true, true, '')")).toMatchObject({ action: 'admin', risk: 'critical' });
  });

  it('keeps known writers and admin functions as they were', () => {
    expect(verdict("SELECT nextval('s')")).toMatchObject({ action: 'write', risk: 'medium' });
    expect(verdict('SELECT pg_terminate_backend(1)')).toMatchObject({ action: 'admin', risk: 'critical' });
    expect(verdict("SELECT public.dblink('x', 'y')")).toMatchObject({ action: 'admin', risk: 'critical' });
  });

  it('lets catalogued functions, types and operators read only the tables named', () => {
    expect(
      verdict(
        "SELECT lower(name), substring(email from 2 for 3), count(*), now() - created_at, extract(year from created_at), id::text, tags @> ARRAY['a'], to_jsonb(o) ->> 'x' FROM orders o WHERE total > 10 GROUP BY 1, 2, 4, 5, 6, 7, 8",
      ),
    ).toEqual({ action: 'read', risk: 'low', tables: ['public.orders'] });
  });

  it('does not take a function qualified with another schema for the built-in of that name', () => {
    expect(verdict('SELECT public.lower(name) FROM orders').tables).toContain(ANY_TABLE);
    expect(verdict('SELECT pg_catalog.lower(name) FROM orders').tables).toEqual(['public.orders']);
  });

  it('does not take a quoted upper-case name for the built-in', () => {
    expect(verdict('SELECT "LOWER"(name) FROM orders').tables).toContain(ANY_TABLE);
  });

  it('trusts no unqualified name when the search path puts a schema before pg_catalog', () => {
    expect(verdict('SELECT lower(name) FROM orders', ['public', 'pg_catalog']).tables).toContain(ANY_TABLE);
    expect(verdict('SELECT lower(name) FROM orders', ['pg_catalog', 'public']).tables).toEqual(['public.orders']);
    expect(verdict('SELECT lower(name) FROM orders', ['"$user"', 'public']).tables).toEqual(['public.orders']);
  });

  it('counts a cast to a type outside pg_catalog as running unknown code', () => {
    expect(verdict("SELECT 'x'::mood").tables).toContain(ANY_TABLE);
    expect(verdict("SELECT CAST('1' AS int), '2'::varchar(3), '{1}'::int[]").tables).toEqual([]);
  });

  it('counts a user operator or an operator qualified elsewhere as running unknown code', () => {
    expect(verdict('SELECT 1 === 2').tables).toContain(ANY_TABLE);
    expect(verdict('SELECT 2 OPERATOR(public.+) 3').tables).toContain(ANY_TABLE);
    expect(verdict('SELECT 2 OPERATOR(pg_catalog.+) 3').tables).toEqual([]);
  });

  it('takes BETWEEN, IN, LIKE, SIMILAR, IS DISTINCT FROM and op ANY for the built-in operators they run', () => {
    expect(
      verdict(
        "SELECT 1 FROM t WHERE a BETWEEN 1 AND 2 AND b NOT BETWEEN SYMMETRIC 1 AND 2 AND c IS DISTINCT FROM d AND e SIMILAR TO 'x' AND f ILIKE 'y' AND g NOT IN (3) AND i = ANY('{1}') AND a ^@ 'x' ORDER BY a USING <",
      ),
    ).toEqual({ action: 'read', risk: 'low', tables: ['public.t'] });
  });

  it('counts ORDER BY … USING a user operator as running unknown code', () => {
    expect(verdict('SELECT a FROM t ORDER BY a USING <<<').tables).toContain(ANY_TABLE);
  });

  it('fails a tables allow-list even inside EXPLAIN', () => {
    expect(verdict("EXPLAIN SELECT table_to_xml('public.secrets', true, true, '')").tables).toContain(ANY_TABLE);
  });
});

describe('catalog introspection', () => {
  it.each([
    'SELECT pg_catalog.pg_table_is_visible(c.oid), pg_catalog.pg_opfamily_is_visible(1) FROM pg_catalog.pg_class c',
    "SELECT pg_catalog.pg_size_pretty(pg_catalog.pg_total_relation_size(c.oid)), pg_table_size(c.oid), pg_indexes_size(c.oid), pg_relation_size(c.oid) FROM pg_class c",
    'SELECT pg_catalog.pg_get_function_arg_default(p.oid, 0), pg_describe_object(0, p.oid, 0), pg_identify_object(0, p.oid, 0) FROM pg_proc p',
    'SELECT has_tablespace_privilege(1, $$CREATE$$), has_server_privilege(1, $$USAGE$$), (aclexplode(c.relacl)).privilege_type FROM pg_class c',
    'SELECT pg_database_size(current_database()), version(), pg_backend_pid(), current_user, session_user, current_schemas(true)',
    'SELECT * FROM pg_partition_tree(1::regclass)',
  ])('reads only the catalog with %s', (sql) => {
    const { action, risk, tables } = verdict(sql);
    expect({ action, risk }).toEqual({ action: 'read', risk: 'low' });
    expect(tables).not.toContain(ANY_TABLE);
    for (const table of tables) expect(table).toMatch(/^pg_catalog\./);
  });

  it('keeps functions that measure a value, read a sequence or a server file off the catalogue', () => {
    expect(verdict('SELECT pg_column_size(ssn) FROM people').tables).toContain(ANY_TABLE);
    expect(verdict("SELECT pg_sequence_last_value('s'::regclass)").tables).toContain(ANY_TABLE);
    expect(verdict("SELECT pg_read_file('/etc/passwd')")).toMatchObject({ action: 'admin' });
  });

  it('reads an unqualified long-standing catalog relation from pg_catalog, unless the path lists pg_catalog later', () => {
    expect(verdict('SELECT relname FROM pg_class').tables).toEqual(['pg_catalog.pg_class']);
    expect(verdict('SELECT relname FROM pg_class', ['public', 'pg_catalog']).tables).toEqual(['pg_catalog.pg_class', 'public.pg_class']);
    // Newer than PostgreSQL 12: an older server may read a user table of that name.
    expect(verdict('SELECT * FROM pg_publication_namespace').tables).toEqual(['pg_catalog.pg_publication_namespace', 'public.pg_publication_namespace']);
    // pg_stats also counts as reading any table: its sample values come from every table.
    expect(verdict('SELECT * FROM pg_stats').tables).toEqual(['*', 'pg_catalog.pg_stats', 'public.pg_stats']);
  });
});

describe('open catalog relations', () => {
  it.each(['pg_catalog.pg_class', 'pg_catalog.pg_attribute', 'pg_catalog.pg_roles', 'information_schema.columns', 'information_schema.tables'])('%s describes objects only', (name) => {
    expect(isOpenCatalogRelation(name)).toBe(true);
  });

  it.each([
    'pg_catalog.pg_statistic',
    'pg_catalog.pg_stats',
    'pg_catalog.pg_stats_ext',
    'pg_catalog.pg_statistic_ext_data',
    'pg_catalog.pg_authid',
    'pg_catalog.pg_shadow',
    'pg_catalog.pg_user_mappings',
    'pg_catalog.pg_settings',
    'pg_catalog.pg_db_role_setting',
    'pg_catalog.pg_stat_activity',
    'pg_catalog.pg_largeobject',
    'pg_catalog.pg_sequences',
    'information_schema.user_mapping_options',
    'information_schema.foreign_server_options',
    'public.pg_class',
    'pg_class',
  ])('%s stays under the rules', (name) => {
    expect(isOpenCatalogRelation(name)).toBe(false);
  });
});
