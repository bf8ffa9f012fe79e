/**
 * The statements of the classifier's differential test (test/classifier-differential.int.spec.ts):
 * a small grammar over the schema below, seeded mutations of what it produces, the probes of
 * issue 9, and one call of every zero/one-argument function in pg_proc. No npm package ships
 * PostgreSQL's regression SQL (libpg-query ships only its WASM build, pgsql-parser only its
 * code), so the corpus is generated here, deterministically, at test time.
 */

/** The scratch schema every statement runs against. Each table has an integer `id`. */
export const DIFFERENTIAL_SCHEMA = `
  CREATE SCHEMA app;
  CREATE SCHEMA secret;
  CREATE TABLE public.orders (id int PRIMARY KEY, customer_id int, total numeric, note text);
  CREATE TABLE public.customers (id int PRIMARY KEY, name text, email text);
  CREATE TABLE public.people (id int PRIMARY KEY, name text, ssn text);
  CREATE TABLE app.orders (id int PRIMARY KEY, total numeric);
  CREATE TABLE app.events (id bigserial PRIMARY KEY, payload jsonb);
  CREATE TABLE secret.secrets (id int PRIMARY KEY, value text);
  CREATE TABLE public."Mixed Case" (id int, "Value" text);
  CREATE TABLE public.parted (id int, region text) PARTITION BY LIST (region);
  CREATE TABLE public.parted_eu PARTITION OF public.parted FOR VALUES IN ('eu');
  CREATE TABLE public.parted_us PARTITION OF public.parted FOR VALUES IN ('us');
  CREATE SEQUENCE public.order_ids;
  INSERT INTO public.orders SELECT g, g % 3, g * 10, 'n' || g FROM generate_series(1, 20) g;
  INSERT INTO public.customers SELECT g, 'c' || g, 'c' || g || '@example.com' FROM generate_series(1, 5) g;
  INSERT INTO public.people VALUES (1, 'Ann', '123-45-6789');
  INSERT INTO app.orders SELECT g, g FROM generate_series(1, 5) g;
  INSERT INTO secret.secrets VALUES (1, 'hunter2');
  INSERT INTO public."Mixed Case" VALUES (1, 'v');
  INSERT INTO public.parted VALUES (1, 'eu'), (2, 'us');
  CREATE FUNCTION public.bump() RETURNS int LANGUAGE sql AS $$ INSERT INTO app.events (payload) VALUES ('{}') RETURNING 1 $$;
  CREATE FUNCTION public.secret_rows() RETURNS SETOF secret.secrets LANGUAGE sql STABLE AS $$ SELECT * FROM secret.secrets $$;
  CREATE FUNCTION public.write_eq(int, int) RETURNS boolean LANGUAGE sql AS $$ INSERT INTO app.events (payload) VALUES ('{}') RETURNING $1 = $2 $$;
  CREATE OPERATOR public.=== (FUNCTION = public.write_eq, LEFTARG = int, RIGHTARG = int);
  CREATE PROCEDURE public.archive(n int) LANGUAGE sql AS $$ DELETE FROM public.orders WHERE id < n $$;
  -- Functions that run with no call in the text: attribute notation, a cast, a domain check, a
  -- row-level security policy the owner is forced under, a view.
  CREATE FUNCTION public.log_order(public.orders) RETURNS int LANGUAGE sql AS $$ INSERT INTO app.events (payload) VALUES (to_jsonb($1)) RETURNING 1 $$;
  CREATE TYPE public.widget AS (n int);
  CREATE FUNCTION public.make_widget(int) RETURNS public.widget LANGUAGE sql AS $$ INSERT INTO app.events (payload) VALUES ('{}') RETURNING ROW($1)::public.widget $$;
  CREATE CAST (int AS public.widget) WITH FUNCTION public.make_widget(int);
  CREATE FUNCTION public.write_check(int) RETURNS boolean LANGUAGE sql AS $$ INSERT INTO app.events (payload) VALUES ('{}') RETURNING true $$;
  CREATE DOMAIN public.checked AS int CHECK (public.write_check(VALUE));
  CREATE TABLE public.guarded (id int);
  INSERT INTO public.guarded VALUES (1);
  ALTER TABLE public.guarded ENABLE ROW LEVEL SECURITY;
  ALTER TABLE public.guarded FORCE ROW LEVEL SECURITY;
  CREATE POLICY guarded_by_write ON public.guarded USING (public.bump() = 1);
  CREATE VIEW public.bumping AS SELECT public.bump() AS b;
  -- Marked IMMUTABLE, so a plain EXPLAIN folds it as a constant and runs it.
  CREATE FUNCTION public.folded() RETURNS bigint IMMUTABLE LANGUAGE plpgsql AS $$ BEGIN RETURN nextval('public.order_ids'); END $$;
`;

export interface CorpusEntry {
  /** The simple-query message sent to the server and classified as one. */
  readonly sql: string;
  /** A PREPARE the session runs first (not judged); the classifier is told about it. */
  readonly prepare?: { readonly name: string; readonly sql: string };
  /** Where the statement comes from, for the report of a disagreement. */
  readonly origin: string;
}

/** mulberry32: a small seeded generator, so the corpus is the same on every run. */
const seededRandom = (seed: number): (() => number) => {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
};

type Random = () => number;
const pick = <T>(random: Random, items: readonly T[]): T => items[Math.floor(random() * items.length)]!;

/** Ways to name each table: plain, qualified, upper case, quoted, Unicode-escaped. */
const TABLE_NAMES: readonly string[] = [
  'orders',
  'public.orders',
  'PUBLIC.Orders',
  '"public"."orders"',
  'U&"\\006Frders"',
  'U&"!006Frders" UESCAPE \'!\'',
  'customers',
  'public.customers',
  'people',
  'app.orders',
  'APP.ORDERS',
  'app."orders"',
  'app.events',
  'secret.secrets',
  '"secret".SECRETS',
  'U&"secr\\0065t".secrets',
  '"Mixed Case"',
  'public."Mixed Case"',
  'parted',
  'public.parted_eu',
  'pg_catalog.pg_class',
  'pg_namespace',
];
/** Tables a write can target (pg_catalog is refused by permissions before read-only mode is checked). */
const WRITABLE_NAMES = TABLE_NAMES.filter((name) => !/pg_/i.test(name));

type Template = (t: string, u: string, n: number) => string;

const READS: readonly Template[] = [
  (t) => `SELECT * FROM ${t}`,
  (t, _u, n) => `SELECT count(*) FROM ${t} WHERE id > ${n}`,
  (t, u) => `SELECT a.id FROM ${t} a JOIN ${u} b ON a.id = b.id`,
  (t, u) => `SELECT a.id FROM ${t} a LEFT JOIN LATERAL (SELECT b.id FROM ${u} b WHERE b.id = a.id LIMIT 1) l ON true`,
  (t) => `SELECT 1 WHERE EXISTS (SELECT 1 FROM ${t})`,
  (t) => `SELECT (SELECT max(id) FROM ${t}) AS m`,
  (t) => `WITH x AS (SELECT id FROM ${t}) SELECT * FROM x`,
  (t, u) => `WITH x AS MATERIALIZED (SELECT id FROM ${t}) SELECT x.id FROM x JOIN ${u} u USING (id)`,
  (t, u) => `SELECT id FROM ${t} UNION SELECT id FROM ${u}`,
  (t, u) => `SELECT id FROM ${t} INTERSECT ALL SELECT id FROM ${u}`,
  (t, u) => `SELECT id FROM ${t} EXCEPT SELECT id FROM ${u}`,
  (t) => `TABLE ${t}`,
  (t) => `SELECT * FROM ONLY ${t}`,
  (t, u) => `SELECT id FROM ${t} WHERE id IN (SELECT id FROM ${u})`,
  (t) => `SELECT ARRAY(SELECT id FROM ${t})`,
  (t) => `SELECT row_to_json(r) FROM ${t} r`,
  (t) => `SELECT id, rank() OVER (ORDER BY id) FROM ${t}`,
  (t) => `WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r, ${t}`,
  (t) => `SELECT * FROM (SELECT * FROM (SELECT id FROM ${t}) a) b`,
  // A CTE shadows an unqualified table of the same name, not a qualified one.
  (t, u) => `WITH orders AS (SELECT id FROM ${u}) SELECT * FROM ${t}`,
  (t, u) => `WITH secrets AS (SELECT id FROM ${t}) SELECT * FROM secrets, ${u}`,
  (t, _u, n) => `SELECT id FROM ${t} ORDER BY id LIMIT 1 OFFSET ${n % 3}`,
  (t) => `SELECT * FROM ${t} TABLESAMPLE BERNOULLI (50) REPEATABLE (1)`,
  (t) => `VALUES ((SELECT count(*) FROM ${t}))`,
  (t) => `SELECT CASE WHEN EXISTS (SELECT FROM ${t}) THEN 1 END`,
  (t, u) => `SELECT id FROM ${t} GROUP BY id HAVING count(*) > (SELECT count(*) - 100 FROM ${u})`,
  (t) => `SELECT * FROM ROWS FROM (generate_series(1, 2)) g, ${t}`,
  (t, u) => `SELECT * FROM ${t} x WHERE x.id = ANY (SELECT id FROM ${u})`,
  (t) => `SELECT json_agg(j) FROM (SELECT * FROM ${t}) j`,
  (t, u) => `SELECT (SELECT count(*) FROM ${t} WHERE id IN (SELECT id FROM ${u}))`,
  (t) => `SELECT * FROM ${t} WHERE id = (SELECT min(id) FROM ${t})`,
  // CTE scope: a CTE on one arm of a set operation, in a subquery or after its use hides nothing elsewhere.
  (t) => `(WITH orders AS (SELECT 1 AS id) SELECT id FROM orders) UNION (SELECT id FROM ${t})`,
  (t) => `(WITH secrets AS (SELECT 1 AS id) SELECT id FROM secrets) UNION ALL (SELECT id FROM secrets) UNION SELECT id FROM ${t}`,
  (t) => `SELECT * FROM (WITH orders AS (SELECT 1 AS id) SELECT * FROM orders) s, ${t}`,
  (t) => `SELECT * FROM ${t} WHERE EXISTS (WITH ${t.includes('.') ? 'x' : t} AS (SELECT 1) SELECT 1)`,
  (t) => `WITH x AS (SELECT id FROM ${t}), orders AS (SELECT 1 AS id) SELECT * FROM x, orders`,
  (t) => `WITH orders AS (SELECT id FROM orders) SELECT * FROM orders, ${t}`,
  (t) => `WITH "Orders" AS (SELECT 1 AS id) SELECT o.id FROM orders o, "Orders", ${t}`,
  (t) => `WITH RECURSIVE x AS (SELECT id FROM customers), customers AS (SELECT id FROM ${t}) SELECT * FROM x`,
  (t) => `SELECT (WITH orders AS (SELECT 2 AS id) SELECT max(id) FROM orders), (SELECT max(id) FROM ${t})`,
  (t) => `SELECT * FROM ${t} a, LATERAL (WITH people AS (SELECT a.id) SELECT * FROM people) l`,
  (t) => `WITH people AS (SELECT id FROM ${t}) SELECT * FROM people p JOIN public.people q USING (id)`,
  (t) => `SELECT * FROM ${t} NATURAL JOIN (SELECT 1 AS id) one`,
  (t, u) => `SELECT * FROM ${t} FULL JOIN ${u} USING (id) WHERE id IS NOT NULL`,
  (t) => `SELECT DISTINCT ON (id) id FROM ${t}`,
  (t) => `SELECT id FROM ${t} ORDER BY id FETCH FIRST 1 ROWS WITH TIES`,
  (t) => `SELECT * FROM ${t} WHERE id = ALL (ARRAY(SELECT id FROM ${t}))`,
  (t) => `SELECT xmlagg(xmlelement(name r, id)) FROM ${t}`,
  (t) => `SELECT jsonb_agg(to_jsonb(z)) FROM ${t} z`,
  (t) => `SELECT * FROM generate_series(1, 2) g LEFT JOIN ${t} ON true`,
];

const LOCKING_READS: readonly Template[] = [
  (t) => `SELECT id FROM ${t} FOR UPDATE`,
  (t) => `SELECT id FROM ${t} FOR SHARE`,
  (t) => `SELECT id FROM ${t} FOR NO KEY UPDATE SKIP LOCKED`,
  (t) => `SELECT l.id FROM ${t} l FOR KEY SHARE OF l NOWAIT`,
  (t) => `DECLARE c CURSOR FOR SELECT id FROM ${t} FOR UPDATE`,
  (t, u) => `SELECT * FROM ${u}, LATERAL (SELECT id FROM ${t} FOR UPDATE) x`,
];

const WRITES: readonly Template[] = [
  (w, _u, n) => `INSERT INTO ${w} (id) VALUES (${n + 1000})`,
  (w, u) => `INSERT INTO ${w} (id) SELECT id + 1000 FROM ${u}`,
  (w, _u, n) => `INSERT INTO ${w} (id) VALUES (${n + 1000}) ON CONFLICT DO NOTHING`,
  (w, _u, n) => `UPDATE ${w} SET id = id WHERE id = ${n}`,
  (w) => `UPDATE ${w} SET id = id`,
  (w, u) => `UPDATE ${w} w SET id = w.id FROM ${u} s WHERE s.id = w.id`,
  (w, _u, n) => `DELETE FROM ${w} WHERE id = ${n}`,
  (w) => `DELETE FROM ${w}`,
  (w, u) => `DELETE FROM ${w} w USING ${u} s WHERE s.id = w.id`,
  (w, u) => `MERGE INTO ${w} t USING ${u} s ON t.id = s.id WHEN MATCHED THEN DELETE`,
  (w) => `MERGE INTO ${w} t USING (SELECT 1 AS id) s ON t.id = s.id WHEN NOT MATCHED THEN INSERT (id) VALUES (s.id)`,
  (w, _u, n) => `WITH d AS (DELETE FROM ${w} WHERE id = ${n} RETURNING id) SELECT * FROM d`,
  (w) => `WITH u AS (UPDATE ${w} SET id = id RETURNING *) SELECT count(*) FROM u`,
  (w, u, n) => `WITH i AS (INSERT INTO ${w} (id) VALUES (${n + 1000}) RETURNING id) SELECT * FROM ${u} WHERE id IN (SELECT id FROM i)`,
  // A data-modifying CTE runs even when nothing refers to it.
  (w) => `WITH a AS (SELECT 1), d AS (DELETE FROM ${w} RETURNING 1) SELECT * FROM a`,
  (w) => `WITH RECURSIVE r AS (SELECT 1 AS n), d AS (UPDATE ${w} SET id = id WHERE id IN (SELECT n FROM r) RETURNING 1) SELECT * FROM r`,
  (w, u) => `SELECT id INTO TEMP TABLE copied FROM ${u} WHERE id > (SELECT count(*) FROM ${w})`,
  (w) => `CREATE TEMP TABLE copied AS SELECT * FROM ${w}`,
  (w) => `COPY (DELETE FROM ${w} RETURNING id) TO STDOUT`,
  (w) => `COPY (WITH d AS (UPDATE ${w} SET id = id RETURNING id) SELECT * FROM d) TO STDOUT`,
  (w) => `COPY ${w} FROM STDIN`,
  (w) => `LOCK TABLE ${w} IN EXCLUSIVE MODE`,
  (w) => `LOCK ${w}`,
  (w) => `TRUNCATE ${w}`,
  (w) => `DROP TABLE ${w}`,
  (w) => `ALTER TABLE ${w} ADD COLUMN extra int`,
  (w) => `CREATE INDEX ON ${w} (id)`,
  (w) => `COMMENT ON TABLE ${w} IS 'x'`,
  (w) => `GRANT SELECT ON ${w} TO PUBLIC`,
  (w) => `CREATE VIEW v AS SELECT * FROM ${w}`,
  (w) => `CREATE MATERIALIZED VIEW mv AS SELECT * FROM ${w}`,
  (w) => `CREATE RULE r AS ON INSERT TO ${w} DO INSTEAD NOTHING`,
  (w) => `CREATE POLICY p ON ${w} USING (true)`,
  (w) => `ALTER TABLE ${w} RENAME TO renamed`,
  (w) => `CREATE TABLE copy_of (LIKE ${w})`,
];

/** Every place in a query an expression can sit: a sequence advanced there is a write wherever it is. */
const NEXTVAL = "nextval('order_ids')";
const EXPRESSION_PLACES: readonly Template[] = [
  (t) => `SELECT ${NEXTVAL} FROM ${t}`,
  (t) => `SELECT id FROM ${t} WHERE id < ${NEXTVAL}`,
  (t) => `SELECT id FROM ${t} ORDER BY ${NEXTVAL}`,
  (t) => `SELECT id FROM ${t} LIMIT ${NEXTVAL}`,
  (t) => `SELECT id FROM ${t} OFFSET ${NEXTVAL} - ${NEXTVAL}`,
  (t) => `SELECT id FROM ${t} GROUP BY id, ${NEXTVAL}`,
  (t) => `SELECT count(*) FILTER (WHERE ${NEXTVAL} > 0) FROM ${t}`,
  (t) => `SELECT sum(id) OVER (ORDER BY ${NEXTVAL}) FROM ${t}`,
  (t) => `SELECT CASE WHEN id > 0 THEN ${NEXTVAL} END FROM ${t}`,
  (t) => `SELECT coalesce(NULL, ${NEXTVAL}) FROM ${t}`,
  (t) => `SELECT ARRAY[${NEXTVAL}] FROM ${t}`,
  (t) => `SELECT ROW(${NEXTVAL}) FROM ${t}`,
  (t) => `SELECT ${NEXTVAL}::text::int FROM ${t}`,
  (t) => `SELECT id FROM ${t} a JOIN LATERAL (SELECT ${NEXTVAL} AS n) l ON l.n > a.id`,
  (t) => `SELECT id FROM ${t} WHERE id IN (VALUES (${NEXTVAL}))`,
  (t) => `SELECT * FROM ${t}, ROWS FROM (${NEXTVAL}) n`,
  (t) => `SELECT id FROM ${t} WHERE EXISTS (SELECT ${NEXTVAL})`,
  (t) => `SELECT id FROM ${t} GROUP BY id HAVING max(id) > ${NEXTVAL}`,
  (t) => `SELECT DISTINCT ON (${NEXTVAL}) id FROM ${t}`,
  (t) => `SELECT xmlelement(name n, ${NEXTVAL}) FROM ${t}`,
  (t) => `SELECT json_build_object('n', ${NEXTVAL}) FROM ${t}`,
  (t) => `SELECT id FROM ${t} WHERE id = ANY (ARRAY[${NEXTVAL}])`,
  (t) => `SELECT (SELECT ${NEXTVAL} FROM ${t} LIMIT 1)`,
  (t) => `WITH s AS (SELECT ${NEXTVAL} AS n) SELECT * FROM s, ${t}`,
  (t) => `SELECT id FROM ${t} UNION SELECT ${NEXTVAL}`,
  (t) => `SELECT id FROM ${t} WHERE id BETWEEN 0 AND ${NEXTVAL}`,
  (t) => `SELECT id FROM ${t} WHERE (id, ${NEXTVAL}) > (0, 0)`,
  (t) => `SELECT id IS DISTINCT FROM ${NEXTVAL} FROM ${t}`,
  (t) => `SELECT id FROM ${t} TABLESAMPLE BERNOULLI (${NEXTVAL} % 100)`,
];

/** A data-modifying CTE under layers that do not stop it from running. */
const WRITE_LAYERS: readonly ((inner: string, t: string) => string)[] = [
  (inner) => `COPY (${inner}) TO STDOUT`,
  (inner) => `EXPLAIN ANALYZE ${inner}`,
  (inner) => `EXPLAIN (ANALYZE, FORMAT XML) ${inner}`,
  (inner) => `CREATE TEMP TABLE layered AS ${inner}`,
  (inner) => `${inner}; SELECT 1`,
  (inner, t) => `SELECT 1 FROM ${t} LIMIT 0; ${inner}`,
];
const WRITE_OUTERS: readonly ((cte: string, t: string) => string)[] = [
  (cte) => `SELECT * FROM ${cte}`,
  (cte) => `SELECT count(*) FROM ${cte}`,
  () => 'SELECT 1',
  (cte, t) => `SELECT * FROM ${t} WHERE id IN (SELECT id FROM ${cte})`,
  (cte, t) => `SELECT * FROM ${t} x JOIN ${cte} USING (id)`,
];
const RETURNING_WRITES: readonly ((w: string, n: number) => string)[] = [
  (w, n) => `DELETE FROM ${w} WHERE id = ${n} RETURNING id`,
  (w) => `UPDATE ${w} SET id = id RETURNING id`,
  (w, n) => `INSERT INTO ${w} (id) VALUES (${n + 2000}) RETURNING id`,
  (w, n) => `INSERT INTO ${w} (id) VALUES (${n}) ON CONFLICT (id) DO UPDATE SET id = excluded.id RETURNING id`,
];

/** Ways to ask EXPLAIN to run the statement (the last ANALYZE option wins on the server). */
const EXPLAIN_ANALYZE: readonly string[] = [
  'EXPLAIN ANALYZE',
  'EXPLAIN ANALYSE',
  'explain analyze verbose',
  'EXPLAIN (ANALYZE)',
  'EXPLAIN (ANALYSE)',
  'EXPLAIN (ANALYZE true, COSTS off)',
  "EXPLAIN (ANALYZE 'on')",
  'EXPLAIN (ANALYZE 1, FORMAT JSON)',
  'EXPLAIN (ANALYZE yes)',
  'EXPLAIN (ANALYZE false, ANALYZE true)',
  'EXPLAIN (ANALYZE off, BUFFERS, ANALYZE)',
  'EXPLAIN (FORMAT YAML, "analyze")',
];

/** Statements written out whole: sequences, procedures, transaction and session settings, DDL, admin. */
const FIXED: readonly string[] = [
  "SELECT nextval('order_ids')",
  "SELECT NEXTVAL('public.order_ids')",
  "SELECT pg_catalog.nextval('order_ids'::regclass)",
  `SELECT "nextval"('order_ids')`,
  `SELECT U&"nextv\\0061l"('order_ids')`,
  "SELECT * FROM nextval('order_ids')",
  "SELECT setval('order_ids', 5)",
  "SELECT id FROM orders WHERE id = nextval('order_ids')",
  "VALUES (nextval('order_ids'))",
  "SELECT * FROM orders, LATERAL (SELECT nextval('order_ids')) s",
  "SELECT currval('order_ids')",
  'CALL archive(1)',
  'CALL public.archive(1)',
  'CALL "public"."archive"(1)',
  'SET TRANSACTION READ WRITE',
  'SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE',
  'SET TRANSACTION READ ONLY, READ WRITE',
  'SET transaction_read_only = off',
  "SET transaction_read_only TO 'false'",
  'SET LOCAL transaction_read_only = 0',
  'SET "transaction_read_only" = off',
  'SET U&"transaction\\005Fread_only" = off',
  'SET TRANSACTION_READ_ONLY = OFF',
  'RESET transaction_read_only',
  'SET transaction_read_only TO DEFAULT',
  'SET default_transaction_read_only = off',
  'SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE',
  "SELECT set_config('transaction_read_only', 'off', true)",
  "SELECT set_config('default_transaction_read_only', 'off', false)",
  "SELECT pg_catalog.set_config('transaction_read_only', 'off', false)",
  'SET transaction_read_only = off; DELETE FROM orders',
  'SET TRANSACTION READ WRITE; INSERT INTO orders (id) VALUES (999)',
  'RESET ALL',
  'DISCARD ALL',
  'BEGIN READ WRITE',
  'START TRANSACTION READ WRITE',
  'DO $$ BEGIN DELETE FROM orders; END $$',
  "DO LANGUAGE plpgsql 'BEGIN PERFORM 1; END'",
  'NOTIFY events',
  "SELECT pg_notify('events', 'x')",
  'LISTEN events',
  'CREATE TABLE t (a int)',
  'CREATE TEMP TABLE t (a int)',
  'CREATE UNLOGGED TABLE t (a int)',
  'CREATE TABLE t AS SELECT 1 AS a',
  'SELECT 1 AS a INTO t',
  'CREATE SCHEMA s',
  'CREATE SEQUENCE s',
  'ALTER SEQUENCE order_ids RESTART',
  'CREATE TYPE ty AS (a int)',
  "CREATE TYPE mood AS ENUM ('ok')",
  'CREATE DOMAIN dom AS int',
  "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
  "CREATE OR REPLACE PROCEDURE pr() LANGUAGE sql AS 'SELECT 1'",
  'ALTER FUNCTION bump() STABLE',
  'DROP FUNCTION bump()',
  'DROP TABLE IF EXISTS nope',
  'DROP SCHEMA secret CASCADE',
  'CREATE EXTENSION IF NOT EXISTS hstore',
  'REVOKE ALL ON orders FROM PUBLIC',
  'CREATE ROLE someone',
  'ALTER ROLE CURRENT_USER SET work_mem = 1024',
  'DROP ROLE IF EXISTS nobody',
  'ALTER TABLE orders ENABLE ROW LEVEL SECURITY',
  'ALTER TABLE orders OWNER TO CURRENT_USER',
  'CLUSTER orders USING orders_pkey',
  'REINDEX TABLE orders',
  'ANALYZE orders',
  'VACUUM orders',
  'CREATE STATISTICS st ON id, total FROM orders',
  'ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC',
  'TRUNCATE ONLY parted_eu, app.events',
  'CREATE TRIGGER tr BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()',
  "SECURITY LABEL ON TABLE orders IS 'x'",
  'ALTER SYSTEM SET work_mem = 1024',
  'CHECKPOINT',
  "LOAD 'plpgsql'",
  "COPY orders FROM '/dev/null'",
  "COPY orders TO PROGRAM 'true'",
  'COPY orders TO STDOUT',
  'COPY (SELECT * FROM secret.secrets) TO STDOUT WITH (FORMAT csv)',
  'SELECT 1; DELETE FROM orders',
  'SELECT * FROM orders; UPDATE customers SET name = name',
  'PREPARE pw AS DELETE FROM orders; EXECUTE pw',
  'SELECT lo_create(0)',
  "SELECT pg_import_system_collations('public')",
  // Writes reached through a function body or an operator: only the server can see them.
  'SELECT bump()',
  'SELECT public.bump()',
  'SELECT * FROM bump()',
  'SELECT 1 WHERE bump() = 1',
  'SELECT 1 === 2',
  'SELECT 1 OPERATOR(public.===) 2',
  'SELECT id FROM orders WHERE id === 1',
  'SELECT * FROM secret_rows()',
  'SELECT * FROM public.secret_rows() s JOIN orders o ON o.id = s.id',
  'SELECT (SELECT count(*) FROM secret_rows())',
  'EXPLAIN SELECT folded()',
  'SELECT folded()',
  'DECLARE c CURSOR FOR SELECT nextval(\'order_ids\'); FETCH c',
  'DECLARE c CURSOR FOR SELECT nextval(\'order_ids\'); MOVE c',
  'DECLARE c CURSOR FOR SELECT bump(); FETCH ALL FROM c',
  'DECLARE c SCROLL CURSOR FOR SELECT id FROM orders FOR SHARE',
  'DECLARE c CURSOR WITH HOLD FOR SELECT id FROM orders; FETCH 1 FROM c',
  'SAVEPOINT a; SET TRANSACTION READ WRITE',
  'SAVEPOINT a; SET transaction_read_only = off',
  'SAVEPOINT a; SET LOCAL transaction_read_only TO false',
  "SAVEPOINT a; SELECT set_config('transaction_read_only', 'off', true)",
  'SAVEPOINT a; RESET transaction_read_only',
  'SAVEPOINT a; ROLLBACK TO SAVEPOINT a; DELETE FROM orders',
  'ROLLBACK AND CHAIN; DELETE FROM orders',
  'COMMIT AND CHAIN; UPDATE orders SET id = id',
  'START TRANSACTION ISOLATION LEVEL READ COMMITTED, READ WRITE',
  'BEGIN TRANSACTION READ ONLY, READ WRITE',
  'SET TRANSACTION READ WRITE, READ ONLY',
  "SET transaction_read_only = 'no'",
  'SET SESSION transaction_read_only = off',
  'SELECT * INTO UNLOGGED TABLE u FROM orders',
  'SELECT * INTO TEMPORARY t FROM orders',
  'WITH x AS (SELECT 1 AS a) SELECT * INTO t FROM x',
  'SELECT 1 AS a INTO t UNION SELECT 2',
  'EXPLAIN ANALYZE SELECT 1 AS a INTO t',
  'EXPLAIN (ANALYZE) CREATE TABLE t AS SELECT 1 AS a',
  'EXPLAIN ANALYZE CREATE MATERIALIZED VIEW mv AS SELECT 1 AS a',
  'EXPLAIN ANALYZE DECLARE c CURSOR FOR SELECT id FROM orders FOR UPDATE',
  'EXPLAIN ANALYZE SELECT id FROM orders FOR UPDATE',
  "EXPLAIN ANALYZE SELECT nextval('order_ids')",
  "EXPLAIN (ANALYZE, TIMING off) SELECT * FROM orders WHERE id = nextval('order_ids')",
  'DISCARD TEMP',
  'DISCARD SEQUENCES',
  'DISCARD PLANS',
  'SET CONSTRAINTS ALL IMMEDIATE',
  "SET LOCAL search_path = app; SELECT nextval('public.order_ids')",
  'REFRESH MATERIALIZED VIEW mv',
  'TABLE orders FOR UPDATE',
  'SELECT FROM orders WHERE id IN (SELECT id FROM customers FOR UPDATE)',
  'WITH l AS (SELECT id FROM orders FOR UPDATE) SELECT * FROM l',
  'SELECT * FROM (SELECT id FROM orders FOR NO KEY UPDATE) x',
  'VALUES (1) UNION ALL (SELECT id FROM orders FOR UPDATE)',
  "COPY (SELECT nextval('order_ids')) TO STDOUT",
  'COPY (SELECT id FROM orders FOR UPDATE) TO STDOUT',
  'COPY (INSERT INTO orders (id) VALUES (1001) RETURNING id) TO STDOUT',
  'COPY (MERGE INTO orders t USING customers s ON t.id = s.id WHEN MATCHED THEN DELETE) TO STDOUT',
  'IMPORT FOREIGN SCHEMA s FROM SERVER nope INTO public',
  'CREATE PUBLICATION pub FOR ALL TABLES',
  'CREATE EVENT TRIGGER et ON ddl_command_start EXECUTE FUNCTION suppress_redundant_updates_trigger()',
  'ALTER DATABASE CURRENT_DATABASE SET work_mem = 1024',
  'ALTER TABLE orders ALTER COLUMN note SET STATISTICS 10',
  'ALTER INDEX orders_pkey RENAME TO p',
  'ALTER SCHEMA app RENAME TO app2',
  'ALTER TYPE widget ADD ATTRIBUTE m int',
  'ALTER VIEW bumping RENAME TO b2',
  'ALTER SEQUENCE order_ids OWNED BY orders.id',
  'ALTER OPERATOR === (int, int) OWNER TO CURRENT_USER',
  'DROP OPERATOR === (int, int)',
  'DROP DOMAIN checked',
  'DROP CAST (int AS widget)',
  'DROP VIEW bumping',
  'DROP POLICY guarded_by_write ON guarded',
  'DROP SEQUENCE order_ids',
  'DROP INDEX orders_pkey',
  'CREATE OR REPLACE VIEW bumping AS SELECT 1 AS b',
  'CREATE AGGREGATE agg (int) (SFUNC = int4pl, STYPE = int)',
  'CREATE COLLATION c2 FROM "C"',
  'CREATE TEXT SEARCH CONFIGURATION ts (COPY = simple)',
  'CREATE CONVERSION conv FOR \'UTF8\' TO \'LATIN1\' FROM utf8_to_iso8859_1',
  'CREATE ACCESS METHOD am TYPE TABLE HANDLER heap_tableam_handler',
  'CREATE LANGUAGE plperl',
  'CREATE SERVER srv FOREIGN DATA WRAPPER nope',
  'CREATE USER MAPPING FOR CURRENT_USER SERVER nope',
  'CREATE TABLESPACE ts LOCATION \'/tmp\'',
  'CREATE DATABASE other',
  'CREATE SUBSCRIPTION sub CONNECTION \'\' PUBLICATION p',
  'GRANT pg_read_all_data TO CURRENT_USER',
  'REASSIGN OWNED BY CURRENT_USER TO postgres',
  'DROP OWNED BY CURRENT_USER',
  'SET ROLE NONE',
  'SET SESSION AUTHORIZATION DEFAULT',
  'SET session_replication_role = replica',
  'SELECT o.log_order FROM orders o',
  'SELECT (o).log_order FROM orders o',
  'SELECT log_order(o) FROM orders o',
  'SELECT 1::widget',
  'SELECT CAST(2 AS public.widget)',
  'SELECT 1::checked',
  'SELECT CAST(1 AS public.checked)',
  'SELECT * FROM guarded',
  'SELECT count(*) FROM public.guarded',
  'SELECT * FROM bumping',
];

/** The findings of issue 9 that are statements (the session-level ones live in their own tests). */
const ISSUE_9_PROBES: readonly string[] = [
  "SELECT 'x\\''; SET default_transaction_read_only = off; --'",
  "SELECT 'x\\''; DELETE FROM orders; CREATE TABLE pwned(a int); --'",
  'SELECT * FROM secrets',
  "SET SCHEMA 'secret'",
  'SET U&"search\\005fpath" TO secret',
  "SELECT table_to_xml('secret.secrets', true, false, '')",
  "SELECT schema_to_xml('secret', true, false, '')",
  "SELECT query_to_xml('DELETE FROM orders RETURNING id', true, false, '')",
  "SELECT ~(translate(ssn, '-', '')::bigint) FROM people",
  "SELECT plainto_tsquery('simple', ssn) && 'zz' FROM people",
  'SELECT reverse(ssn)::int FROM people',
  'SELECT 1 FROM orders LIMIT 0; SELECT ssn FROM people',
  "SELECT reverse(to_jsonb(p)->>'ssn') FROM people p",
];

/**
 * Where a statement ends depends on how strings, identifiers and comments are lexed: each of
 * these either hides a DELETE inside one token or lets it run, and the classifier must agree with
 * the server on which (with the server's defaults; session lexer settings are tested elsewhere).
 */
const LEXICAL_PROBES: readonly string[] = [
  "SELECT 'a''; DELETE FROM orders; --'",
  "SELECT 'a'''; DELETE FROM orders; --'",
  "SELECT E'a\\'; DELETE FROM orders; --'",
  "SELECT E'a\\\\'; DELETE FROM orders; --'",
  "SELECT E'a\\x27'; DELETE FROM orders; --'",
  'SELECT $$a$$; DELETE FROM orders; --$$',
  'SELECT $a$ $b$ $a$; DELETE FROM orders; --$b$',
  'SELECT $a$ $$; DELETE FROM orders; $$ $a$',
  "SELECT U&'d\\0061ta'; DELETE FROM orders",
  "SELECT U&'d!0027; DELETE FROM orders; --' UESCAPE '!'",
  "SELECT 'x' /* '; DELETE FROM orders; -- */",
  "SELECT 'x' /* /* */ '; DELETE FROM orders; -- */",
  'SELECT "x\'; DELETE FROM orders; --" FROM (SELECT 1 AS "x\'; DELETE FROM orders; --") s',
  'SELECT 1 AS "a""; DELETE FROM orders; --"',
  "SELECT B'01'; DELETE FROM orders",
  "SELECT X'1F'; DELETE FROM orders",
  'SELECT 1; --x\rDELETE FROM orders',
  'SELECT 1 --x\rFROM orders',
  'SELECT 1; --x\nDELETE FROM orders',
  'SELECT 1 /* x */; DELETE FROM orders',
  "SELECT 'a'\n'b'; DELETE FROM orders",
  "SELECT 'a' 'b'; DELETE FROM orders",
  'SELECT 0x1F FROM orders',
  'SELECT 1_000 FROM orders',
  'SELECT 1e FROM orders',
  'SELECT 1.x FROM orders',
  'SELECT 0b1; DELETE FROM orders',
  'SELECT $1a$; DELETE FROM orders; --$1a$',
  'SELECT $_$; DELETE FROM orders; --$_$',
  'SELECT id FROM orders WHERE id = 1 --\f; DELETE FROM orders',
];

/** Mutations that keep a statement's meaning: case, comments, whitespace, parentheses. */
const MUTATIONS: readonly ((sql: string, random: Random) => string)[] = [
  (sql) => sql,
  (sql) => sql.toLowerCase().replace(/u&"/g, 'U&"'),
  (sql) => `/* leading */ ${sql}`,
  (sql) => `-- line comment\n${sql}`,
  (sql) => `${sql} -- trailing`,
  (sql) => `/* nested /* comment */ still */ ${sql}`,
  (sql) => sql.replace(/ /g, '\n\t '),
  (sql) => `${sql};`,
  (sql) => `;;${sql};;`,
  (sql, random) => sql.replace(/\b(SELECT|FROM|WHERE|DELETE|UPDATE|INSERT|WITH)\b/g, (word) => (random() < 0.5 ? word.toLowerCase() : `${word} /**/`)),
];

/** Statements that are plain reads: wrapped in a subquery or a CTE they must keep their tables. */
const wrapRead = (sql: string, random: Random): string =>
  pick(random, [
    (s: string) => `SELECT * FROM (${s}) wrapped`,
    (s: string) => `WITH wrapped AS (${s}) SELECT * FROM wrapped`,
    (s: string) => `SELECT EXISTS (${s})`,
  ])(sql);

const keepPlainRead = (sql: string): boolean => !/;|^VALUES|^TABLE|ORDER BY|UNION|INTERSECT|EXCEPT|^WITH RECURSIVE|^WITH/i.test(sql);

/** The generated part of the corpus: at least `minimum` distinct messages, the same for the same seed. */
export const generateCorpus = (seed: number, minimum: number): CorpusEntry[] => {
  const random = seededRandom(seed);
  const entries = new Map<string, CorpusEntry>();
  const add = (sql: string, origin: string, prepare?: CorpusEntry['prepare']): void => {
    const key = prepare ? `${prepare.sql}\u0000${sql}` : sql;
    if (!entries.has(key)) entries.set(key, { sql, origin, ...(prepare ? { prepare } : {}) });
  };
  for (const sql of ISSUE_9_PROBES) add(sql, 'issue 9');
  for (const sql of LEXICAL_PROBES) add(sql, 'lexical');
  for (const sql of FIXED) {
    add(sql, 'fixed');
    add(pick(random, MUTATIONS)(sql, random), 'fixed, mutated');
  }
  for (const template of READS) for (const name of TABLE_NAMES) add(template(name, pick(random, TABLE_NAMES), 1 + Math.floor(random() * 5)), 'read');
  for (const template of LOCKING_READS) for (const name of TABLE_NAMES) add(template(name, pick(random, TABLE_NAMES), 1), 'locking read');
  for (const template of WRITES) for (const name of WRITABLE_NAMES) add(template(name, pick(random, TABLE_NAMES), 1 + Math.floor(random() * 5)), 'write');
  for (const template of EXPRESSION_PLACES) add(template(pick(random, TABLE_NAMES), '', 0), 'nextval placement');
  for (const layer of WRITE_LAYERS) {
    for (const outer of WRITE_OUTERS) {
      const w = pick(random, WRITABLE_NAMES.filter((name) => !/mixed|parted/i.test(name)));
      const cte = `WITH written AS (${pick(random, RETURNING_WRITES)(w, 1 + Math.floor(random() * 5))}) ${outer('written', pick(random, TABLE_NAMES))}`;
      add(layer(cte, pick(random, TABLE_NAMES)), 'layered write');
    }
  }
  let prepared = 0;
  while (entries.size < minimum) {
    const roll = random();
    const t = pick(random, TABLE_NAMES);
    const u = pick(random, TABLE_NAMES);
    const n = 1 + Math.floor(random() * 9);
    const mutate = pick(random, MUTATIONS);
    if (roll < 0.35) {
      const read = pick(random, READS)(t, u, n);
      add(mutate(keepPlainRead(read) ? wrapRead(read, random) : read, random), 'read, mutated');
    } else if (roll < 0.6) {
      add(mutate(pick(random, WRITES)(pick(random, WRITABLE_NAMES), u, n), random), 'write, mutated');
    } else if (roll < 0.75) {
      const write = pick(random, WRITES.slice(0, 16))(pick(random, WRITABLE_NAMES), u, n);
      add(`${pick(random, EXPLAIN_ANALYZE)} ${write}`, 'EXPLAIN ANALYZE of a write');
      add(`EXPLAIN (ANALYZE ${random() < 0.5 ? 'false' : 'off'}) ${write}`, 'EXPLAIN without ANALYZE of a write');
    } else if (roll < 0.9) {
      const name = `p${++prepared}`;
      const body = random() < 0.6 ? pick(random, WRITES.slice(0, 16))(pick(random, WRITABLE_NAMES), u, n) : pick(random, READS)(t, u, n);
      const prepare = { name, sql: `PREPARE ${name} AS ${body}` };
      add(pick(random, [`EXECUTE ${name}`, `execute ${name.toUpperCase()}`, `EXPLAIN ANALYZE EXECUTE ${name}`, `EXPLAIN EXECUTE ${name}`, `CREATE TEMP TABLE e AS EXECUTE ${name}`]), 'prepared', prepare);
    } else {
      add(mutate(pick(random, LOCKING_READS)(t, u, n), random), 'locking read, mutated');
    }
  }
  return [...entries.values()];
};

/** A row of pg_proc for a function of at most one argument. */
export interface FunctionRow {
  readonly schema: string;
  readonly name: string;
  /** The name as the server quotes it (`quote_ident`): `"char"`, `"numeric"`. */
  readonly quotedName: string;
  /** `format_type` of the argument, or undefined for none. */
  readonly argumentType: string | undefined;
}

/** A sensible argument for each argument type; a function taking any other type is not called. */
const ARGUMENTS: Readonly<Record<string, string>> = {
  oid: "'public.orders'::regclass::oid",
  regclass: "'public.orders'",
  text: "'public.orders'",
  name: "'orders'",
  'character varying': "'x'",
  character: "'x'",
  cstring: "'1'",
  integer: '1',
  bigint: '1',
  smallint: '1',
  numeric: '1.5',
  real: '1.5',
  'double precision': '0.5',
  boolean: 'true',
  bytea: "'\\x00'",
  json: "'{\"a\": 1}'",
  jsonb: "'{\"a\": 1}'",
  interval: "'1 day'",
  date: "'2020-01-01'",
  'timestamp with time zone': "'2020-01-01 00:00:00+00'",
  'timestamp without time zone': "'2020-01-01 00:00:00'",
  inet: "'127.0.0.1'",
  cidr: "'10.0.0.0/8'",
  uuid: "'00000000-0000-0000-0000-000000000001'",
  tsvector: "'a b'",
  tsquery: "'a & b'",
  xml: "'<a/>'",
  '"char"': "'r'",
  regnamespace: "'public'",
  regconfig: "'simple'",
  regproc: "'now'",
  regtype: "'int4'",
  'text[]': "'{a}'",
  anyarray: "'{1,2}'::int[]",
  anyelement: '1',
  xid: "'1'",
  xid8: "'1'",
  pg_lsn: "'0/0'",
};

/**
 * Never called, whatever the classifier says: their effect outlives the rolled-back transaction
 * (signals, files, WAL, replication, server configuration) or they wait. The test still
 * classifies them; it only keeps the shared test server out of their way.
 */
const UNSAFE_TO_CALL =
  /^(pg_terminate|pg_cancel|pg_signal|pg_reload|pg_rotate|pg_promote|pg_switch_wal|pg_create_restore|pg_backup|pg_start_backup|pg_stop_backup|pg_wal_replay|pg_log_backend|pg_sleep|pg_wait|pg_stat_reset|pg_stat_statements_reset|pg_file|pg_read|pg_ls|pg_stat_file|pg_current_logfile|pg_drop_replication|pg_create_.*slot|pg_replication|pg_logical|pg_copy_.*slot|pg_truncate_visibility|pg_restore_|pg_clear_|pg_import_system_collations|pg_log_standby|pg_sync_replication|lo_|pg_notify|set_config|dblink|pg_advisory|pg_try_advisory|binary_upgrade_)/;

/** One call of each function, unless calling it is unsafe on a shared server or its argument type has no sensible value. */
export const functionCallCorpus = (rows: readonly FunctionRow[]): CorpusEntry[] =>
  rows.flatMap((row) => {
    if (UNSAFE_TO_CALL.test(row.name)) return [];
    const argument = row.argumentType === undefined ? '' : ARGUMENTS[row.argumentType];
    if (argument === undefined) return [];
    const qualified = row.schema === 'pg_catalog' ? row.quotedName : `${row.schema}.${row.quotedName}`;
    return [{ sql: `SELECT ${qualified}(${argument})`, origin: `pg_proc ${row.schema}.${row.name}(${row.argumentType ?? ''})` }];
  });
