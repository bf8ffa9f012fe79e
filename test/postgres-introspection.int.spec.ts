import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import type net from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PostgresResourceConfig, RuleConfig } from '@sluice/config';
import type { SluiceEventKind } from '@sluice/contracts';
import { compileMasking, COLUMN_REDACTED } from '@sluice/masking-engine';
import { loadSqlClassifier } from '@sluice/sql-classifier';
import { createPolicy } from '@sluice/policy-engine';
import { createPostgresAdapter, type PostgresAdapter } from '../services/proxy/src/postgres/adapter.js';
import { createDatabase } from './support/databases.js';
import { startTestIssuer, type TestIssuer } from './support/oidc.js';
import { createPostgresPorts, enginePolicyPort, listenPostgresProxy, openClient, sqlState, closeProxyParts } from './support/postgres-proxy-harness.js';

/**
 * Issue #11: psql's meta-commands and the introspection queries of drivers, ORMs and database
 * tools work for a read grant (with and without a `tables` allow-list) as they do direct, while
 * catalog relations that hold data (pg_stats) stay under the rules and masking. Real PostgreSQL,
 * real psql and node-postgres, the real classifier, policy and masking engine.
 */

const RESOURCE = 'introspection-db';

const RULES: RuleConfig[] = [
  { name: 'support-read', effect: 'allow', subjects: { groups: ['readers'] }, resources: [RESOURCE], actions: ['read'], mask: 'pii' },
  { name: 'orders-only', effect: 'allow', subjects: { groups: ['orders'] }, resources: [RESOURCE], actions: ['read'], tables: ['public.orders'], mask: 'pii' },
] as RuleConfig[];

const masking = compileMasking(
  {
    defaultRegion: 'US',
    detectors: [],
    profiles: { pii: { detectors: ['credit_card', 'email', 'us_ssn'], strategy: 'partial', columns: [{ match: '(?i)ssn', strategy: 'redact' }] } },
  },
  { hashKey: 'introspection-int' },
);

/** SSNs in the 9xx area: no detector takes them for SSNs, only column rules can catch them. */
const RAW_SSNS = ['912-34-5678', '900-12-3456', '923-45-6789'];

const run = randomUUID().replaceAll('-', '').slice(0, 10);
const database = `sluice_pg_introspection_${run}`;
let issuer: TestIssuer;
let server: net.Server;
let port: number;
let adapter: PostgresAdapter;
let direct: pg.Client;
const clients: pg.Client[] = [];
const events: { kind: SluiceEventKind; data: Record<string, unknown> }[] = [];

type Who = 'readers' | 'orders' | 'direct';

const token = (group: string) => issuer.mint({ sub: `agent-${group}-${randomUUID().slice(0, 4)}`, groups: [group] });

const connect = async (group: Exclude<Who, 'direct'>): Promise<pg.Client> =>
  openClient({ host: '127.0.0.1', port, user: 'agent', database: RESOURCE, password: await token(group) }, clients);

/** psql with `-c` per meta-command or query, through Sluice or direct to the target. */
const psql = async (who: Who, commands: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> => {
  const target = who === 'direct' ? ['-h', '127.0.0.1', '-p', '5432', '-U', 'postgres', '-d', database] : ['-h', '127.0.0.1', '-p', String(port), '-U', 'agent', '-d', RESOURCE];
  const password = who === 'direct' ? '' : await token(who);
  return new Promise((resolve, reject) => {
    const child = spawn('psql', [...target, '-X', '-v', 'ON_ERROR_STOP=1', ...commands.flatMap((command) => ['-c', command])], {
      env: { ...process.env, PGPASSWORD: password, PGSSLMODE: 'disable', PGCONNECT_TIMEOUT: '5', PAGER: '', PSQL_PAGER: '', COLUMNS: '200' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    // 'close', not 'exit': exit may come before the last of stdout is read.
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
};

beforeAll(async () => {
  await loadSqlClassifier();
  await createDatabase(
    database,
    `create type mood as enum ('calm', 'busy');
     create table people (id serial primary key, name text not null, ssn text, profile jsonb, mood mood default 'calm');
     comment on table people is 'customers we serve';
     comment on column people.ssn is 'social security number';
     create index people_name_idx on people (name);
     insert into people (name, ssn, profile) values
       ('Ann', '912-34-5678', '{"ssn": "912-34-5678", "plan": "gold"}'),
       ('Bob', '900-12-3456', '{"nested": {"tax": [{"SSN": "900-12-3456"}]}, "plan": "free"}'),
       ('Cy', '923-45-6789', '{"customer_ssn": {"area": "923", "rest": "45-6789"}}'),
       ('Cy', '923-45-6789', null);
     create table orders (id int primary key, person_id int references people (id), item text check (item <> ''));
     insert into orders values (1, 1, 'lamp');
     create view people_names as select id, name from people;
     create function order_count(p int) returns bigint language sql stable as 'select count(*) from orders where person_id = p';
     analyze people;`,
  );
  direct = new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database });
  await direct.connect();
  issuer = await startTestIssuer();
  const resource: PostgresResourceConfig = {
    name: RESOURCE,
    type: 'postgres',
    listen: '127.0.0.1:0',
    target: { host: '127.0.0.1', port: 5432, database, ssl: false },
    credentials: { username: 'postgres' },
  };
  const policy = createPolicy(RULES, [resource], { approvalTimeoutMs: 60_000 });
  adapter = createPostgresAdapter(resource, { secretsDir: process.cwd() });
  const ports = createPostgresPorts({
    issuer,
    policy: enginePolicyPort(policy),
    masking,
    record: (_sessionId: string, kind: SluiceEventKind, data: unknown) => {
      events.push({ kind, data: data as Record<string, unknown> });
    },
    maxRows: 5,
  });
  ({ server, port } = await listenPostgresProxy(adapter, ports));
});

afterAll(() => closeProxyParts({ clients, adapter, server, direct, databases: [database], issuer }));

describe("psql's meta-commands work for a read grant as they do direct", () => {
  // Their output depends on this database only (\l and \du below list the whole server).
  const SAME_AS_DIRECT = ['\\d', '\\dt', '\\dn', '\\df', '\\d+ people', '\\d people', '\\di', '\\dv', '\\dT', '\\dt+', '\\d+ orders'];

  it.each(['readers', 'orders'] as const)('gives the same output as direct for every meta-command (%s)', async (group) => {
    for (const command of SAME_AS_DIRECT) {
      const [through, straight] = await Promise.all([psql(group, [command]), psql('direct', [command])]);
      expect({ command, code: through.code, stderr: through.stderr }).toEqual({ command, code: 0, stderr: '' });
      expect({ command, stdout: through.stdout }).toEqual({ command, stdout: straight.stdout });
    }
  });

  it.each(['readers', 'orders'] as const)('lists databases and roles (\\l, \\du) including this one (%s)', async (group) => {
    const result = await psql(group, ['\\l', '\\du']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(database);
    expect(result.stdout).toMatch(/postgres\s+\| Superuser/);
  });

  it('switches to expanded output with \\x and runs a query after it', async () => {
    const result = await psql('readers', ['\\x', 'select id, name from people order by id limit 1']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('Expanded display is on.');
    expect(result.stdout).toMatch(/id\s+\| 1\nname \| Ann/);
  });

  it('still refuses a table outside the allow-list to the subject with tables, after its \\d worked', async () => {
    const described = await psql('orders', ['\\d people']);
    expect(described.code).toBe(0);
    expect(described.stdout).toContain('ssn');
    const result = await psql('orders', ['select * from people']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/permission denied|42501/);
  });
});

/** Introspection queries in the style of drivers, ORMs and tools (our own set, parameters as they send them). */
const TOOL_QUERIES: { tool: string; text: string; values?: unknown[] }[] = [
  // A driver registering parsers for types by name (arrays and enums), extended protocol.
  { tool: 'type parsers', text: 'SELECT t.oid, t.typname, t.typarray, t.typtype FROM pg_catalog.pg_type t WHERE t.typname = ANY($1::text[]) ORDER BY t.typname', values: [['mood', 'int4', 'jsonb']] },
  { tool: 'type parsers', text: "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid WHERE t.typname = 'mood' ORDER BY e.enumsortorder" },
  // ORMs on connect.
  { tool: 'connect', text: "SELECT version(), current_database(), current_schema(), current_user, session_user, current_setting('server_version_num')::int AS num, pg_backend_pid() > 0 AS has_pid" },
  { tool: 'connect', text: 'SELECT current_schemas(false), pg_catalog.pg_encoding_to_char(d.encoding) FROM pg_catalog.pg_database d WHERE d.datname = current_database()' },
  { tool: 'connect', text: 'SHOW standard_conforming_strings' },
  // Prisma-style introspection through information_schema.
  {
    tool: 'prisma',
    text: `SELECT c.table_name, c.column_name, c.data_type, c.udt_name, c.is_nullable, c.column_default, c.character_maximum_length
           FROM information_schema.columns c WHERE c.table_schema = $1 ORDER BY c.table_name, c.ordinal_position`,
    values: ['public'],
  },
  {
    tool: 'prisma',
    text: `SELECT tc.constraint_name, tc.constraint_type, kcu.table_name, kcu.column_name, ccu.table_name AS foreign_table, ccu.column_name AS foreign_column
           FROM information_schema.table_constraints tc
           JOIN information_schema.key_column_usage kcu ON kcu.constraint_name = tc.constraint_name AND kcu.table_schema = tc.table_schema
           LEFT JOIN information_schema.constraint_column_usage ccu ON ccu.constraint_name = tc.constraint_name AND tc.constraint_type = 'FOREIGN KEY'
           WHERE tc.table_schema = 'public' ORDER BY tc.constraint_name, kcu.ordinal_position`,
  },
  { tool: 'prisma', text: "SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder) AS labels FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = 'public' GROUP BY t.typname" },
  // TypeORM-style index and column reads through pg_catalog with quoted aliases.
  {
    tool: 'typeorm',
    text: `SELECT "ns"."nspname" AS "table_schema", "t"."relname" AS "table_name", "i"."relname" AS "index_name", "a"."attname" AS "column_name",
                  CASE "ix"."indisunique" WHEN 't' THEN 'TRUE' ELSE 'FALSE' END AS "is_unique", pg_get_expr("ix"."indpred", "ix"."indrelid") AS "condition",
                  "am"."amname" AS "method"
           FROM "pg_class" "t" INNER JOIN "pg_index" "ix" ON "ix"."indrelid" = "t"."oid" INNER JOIN "pg_attribute" "a" ON "a"."attrelid" = "t"."oid" AND "a"."attnum" = ANY ("ix"."indkey")
           INNER JOIN "pg_namespace" "ns" ON "ns"."oid" = "t"."relnamespace" INNER JOIN "pg_class" "i" ON "i"."oid" = "ix"."indexrelid" INNER JOIN "pg_am" "am" ON "am"."oid" = "i"."relam"
           WHERE "t"."relkind" IN ('r', 'p') AND "ns"."nspname" = 'public' ORDER BY "i"."relname", "a"."attname"`,
  },
  { tool: 'typeorm', text: `SELECT * FROM current_schema()` },
  { tool: 'typeorm', text: `SELECT "table_schema", "table_name", obj_description(('"' || "table_schema" || '"."' || "table_name" || '"')::regclass, 'pg_class') AS table_comment FROM "information_schema"."tables" WHERE "table_schema" = 'public' ORDER BY 2` },
  // SQLAlchemy-style reflection.
  { tool: 'sqlalchemy', text: "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = ANY (ARRAY['r', 'p', 'v', 'm', 'f']) ORDER BY 1", values: ['public'] },
  {
    tool: 'sqlalchemy',
    text: `SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid) FROM pg_catalog.pg_attrdef d
             WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef) AS "default", a.attnotnull, pg_catalog.col_description(a.attrelid, a.attnum) AS comment
           FROM pg_catalog.pg_attribute a WHERE a.attrelid = 'public.people'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
  },
  { tool: 'sqlalchemy', text: "SELECT r.conname, pg_catalog.pg_get_constraintdef(r.oid, true) FROM pg_catalog.pg_constraint r WHERE r.conrelid = 'public.orders'::regclass ORDER BY 1" },
  { tool: 'sqlalchemy', text: "SELECT pg_catalog.pg_get_indexdef(i.indexrelid), pg_catalog.pg_get_viewdef('public.people_names'::regclass, true) FROM pg_catalog.pg_index i WHERE i.indrelid = 'public.people'::regclass ORDER BY 1" },
  { tool: 'sqlalchemy', text: "SELECT pg_catalog.pg_get_serial_sequence('public.people', 'id'), pg_catalog.obj_description('public.people'::regclass, 'pg_class')" },
  // DBeaver-style browsing.
  { tool: 'dbeaver', text: 'SELECT db.oid, db.datname, db.datallowconn FROM pg_catalog.pg_database db WHERE db.datname = current_database()' },
  { tool: 'dbeaver', text: "SELECT n.oid, n.nspname, d.description FROM pg_catalog.pg_namespace n LEFT JOIN pg_catalog.pg_description d ON d.objoid = n.oid AND d.objsubid = 0 AND d.classoid = 'pg_namespace'::regclass WHERE n.nspname = 'public'" },
  {
    tool: 'dbeaver',
    text: `SELECT c.oid, c.relname, c.relkind, d.description, pg_catalog.pg_total_relation_size(c.oid) > 0 AS sized, pg_catalog.pg_size_pretty(pg_catalog.pg_relation_size(c.oid)) IS NOT NULL AS shown,
                  pg_table_size(c.oid) >= 0 AS t, pg_indexes_size(c.oid) >= 0 AS i, has_table_privilege(c.oid, 'SELECT') AS may_select, pg_catalog.pg_table_is_visible(c.oid) AS visible
           FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_description d ON d.objoid = c.oid AND d.objsubid = 0
           WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'v') ORDER BY c.relname`,
  },
  { tool: 'dbeaver', text: "SELECT p.proname, pg_catalog.pg_get_function_arguments(p.oid), pg_catalog.pg_get_function_result(p.oid), pg_catalog.pg_get_functiondef(p.oid) FROM pg_catalog.pg_proc p WHERE p.proname = 'order_count'" },
  { tool: 'dbeaver', text: "SELECT string_agg(word, ',' ORDER BY word) FROM pg_catalog.pg_get_keywords() WHERE catcode = 'R'" },
  { tool: 'dbeaver', text: "SELECT e.extname, e.extversion FROM pg_catalog.pg_extension e ORDER BY 1" },
  { tool: 'dbeaver', text: "SELECT array_to_string(ARRAY(SELECT quote_ident(attname) FROM pg_attribute WHERE attrelid = 'public.orders'::regclass AND attnum > 0 ORDER BY attnum), ', ')" },
  { tool: 'dbeaver', text: "SELECT (aclexplode(c.relacl)).privilege_type FROM pg_class c WHERE c.oid = 'public.orders'::regclass AND c.relacl IS NOT NULL" },
];

describe('introspection queries of drivers, ORMs and tools work for a read grant as they do direct', () => {
  it.each(['readers', 'orders'] as const)('answers each query as the target does (%s)', async (group) => {
    const client = await connect(group);
    for (const { tool, text, values } of TOOL_QUERIES) {
      const expected = await direct.query(text, values);
      let got: pg.QueryResult;
      try {
        got = await client.query(text, values);
      } catch (error) {
        throw new Error(`${tool}: ${(error as Error).message}\n${text}`);
      }
      expect({ tool, text, rows: got.rows }).toEqual({ tool, text, rows: expected.rows });
    }
  });
});

describe('catalog relations that hold data stay under the rules and masking', () => {
  it('refuses pg_stats, pg_statistic and pg_settings to the subject with a tables allow-list', async () => {
    const client = await connect('orders');
    for (const text of ['SELECT * FROM pg_stats', 'SELECT * FROM pg_catalog.pg_statistic', "SELECT setting FROM pg_settings WHERE name = 'port'", 'SELECT query FROM pg_stat_activity']) {
      expect({ text, code: await sqlState(client.query(text)) }).toEqual({ text, code: '42501' });
    }
    // The session goes on.
    expect((await client.query('SELECT item FROM orders')).rows).toEqual([{ item: 'lamp' }]);
  });

  it("masks pg_stats' sample values of a covered column for a read grant", async () => {
    const client = await connect('readers');
    const { rows } = await client.query("SELECT attname, most_common_vals::text AS common, histogram_bounds::text AS bounds FROM pg_stats WHERE tablename = 'people' AND attname = 'ssn'");
    expect(rows).toHaveLength(1);
    const text = JSON.stringify(rows);
    for (const ssn of RAW_SSNS) expect(text).not.toContain(ssn);
  });
});

describe('JSON members named like a column rule are masked through the proxy', () => {
  it.each(['text', 'binary'] as const)('masks "ssn" members at any depth in a jsonb column (%s results)', async (format) => {
    const client = await connect('readers');
    const query = { text: 'SELECT id, profile FROM people ORDER BY id', ...(format === 'binary' ? { binary: true } : {}) };
    const { rows } = await client.query(query);
    const text = JSON.stringify(rows.map((row: { profile: unknown }) => (Buffer.isBuffer(row.profile) ? row.profile.subarray(1).toString() : row.profile)));
    for (const ssn of RAW_SSNS) expect(text).not.toContain(ssn);
    expect(text).toContain('gold');
    expect(text).toContain(COLUMN_REDACTED);
  });

  it.each([
    "SELECT jsonb_build_object('doc', profile) AS wrapped FROM people",
    "SELECT profile -> 'nested' AS nested FROM people",
    'SELECT profile::text AS as_text FROM people',
    "SELECT profile ->> 'ssn' AS v FROM people",
    "SELECT profile -> 'ssn' AS v FROM people",
    "SELECT profile #>> '{nested,tax,0,SSN}' AS v FROM people",
    "SELECT jsonb_extract_path_text(profile, 'customer_ssn', 'rest') AS v FROM people",
    "SELECT profile['ssn'] AS v FROM people",
    "SELECT (profile ->> 'customer_ssn')::text AS v FROM people",
    "SELECT jsonb_path_query_first(profile, '$.nested.tax[0].SSN') AS v FROM people",
    "SELECT jsonb_path_query(profile, '$.**') AS v FROM people",
    'SELECT e.key, e.value FROM people, jsonb_each_text(profile) e',
    'SELECT jsonb_each(profile) AS pair FROM people',
  ])('masks them in %s', async (text) => {
    const client = await connect('readers');
    const { rows } = await client.query(text);
    const seen = JSON.stringify(rows);
    for (const ssn of [...RAW_SSNS, '45-6789']) expect(seen).not.toContain(ssn);
  });

  it('masks a member read by a key given as a parameter', async () => {
    const client = await connect('readers');
    const { rows } = await client.query('SELECT profile ->> $1 AS v FROM people ORDER BY id', ['ssn']);
    expect(rows[0].v).not.toBe('912-34-5678');
  });
});

