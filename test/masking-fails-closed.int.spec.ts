import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import type net from 'node:net';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, type PostgresResourceConfig } from '@sluice/config';
import type { SluiceEventKind } from '@sluice/contracts';
import { compileMasking, COLUMN_REDACTED } from '@sluice/masking-engine';
import { loadSqlClassifier } from '@sluice/sql-classifier';
import { createPolicy } from '@sluice/policy-engine';
import { createPostgresAdapter, type PostgresAdapter } from '../services/proxy/src/postgres/adapter.js';
import { createDatabase } from './support/databases.js';
import { startTestIssuer, type TestIssuer } from './support/oidc.js';
import { createPostgresPorts, listenPostgresProxy, openClient, closeProxyParts } from './support/postgres-proxy-harness.js';

/**
 * Issue #9, findings 5 and 6: functions are closed by default and masking fails closed, probed
 * the way an attacker with a valid read-only token would, through the real PostgreSQL adapter, the
 * real policy engine and the real masking engine, with real clients (node-postgres and psql).
 * `912-34-5678` is an SSN in the 9xx range: no detector recognises it, only the `(?i)ssn` column
 * rule can mask it.
 */

const run = promisify(execFile);
const database = `sluice_closed_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
const RAW = ['912-34-5678', '9123', '8765-43-219', '876543219', '912345678', '-912345679'];

const CONFIG = parseConfig({
  resources: [{ name: 'probe-db', type: 'postgres', listen: '127.0.0.1:0', target: { host: '127.0.0.1', database }, credentials: { username: 'postgres' } }],
  masking: {
    profiles: {
      weak: { detectors: ['email'], strategy: 'partial', columns: [] },
      pii: { detectors: ['credit_card', 'email', 'phone', 'us_ssn', 'iban', 'jwt', 'secret'], strategy: 'partial', columns: [{ match: '(?i)ssn', strategy: 'redact' }] },
    },
  },
  rules: [
    { name: 'orders-weak', effect: 'allow', subjects: { groups: ['support'] }, actions: ['read'], tables: ['public.orders'], mask: 'weak' },
    { name: 'people-pii', effect: 'allow', subjects: { groups: ['support'] }, actions: ['read'], tables: ['public.people'], mask: 'pii' },
    { name: 'support-read', effect: 'allow', subjects: { groups: ['support'] }, actions: ['read'], mask: 'pii' },
    { name: 'orders-only', effect: 'allow', subjects: { groups: ['orders-only'] }, actions: ['read'], tables: ['public.orders'], mask: 'pii' },
    // Functions the catalogue does not vouch for may write: only a rule that allows writes runs them.
    { name: 'reporting', effect: 'allow', subjects: { groups: ['reporting'] }, actions: ['read', 'write'], mask: 'pii' },
  ],
});
const policy = createPolicy(CONFIG.rules, CONFIG.resources, { approvalTimeoutMs: 60_000 });
const masking = compileMasking(CONFIG.masking, { hashKey: 'closed-int' });

let issuer: TestIssuer;
let server: net.Server;
let adapter: PostgresAdapter;
let port: number;
const events: { kind: SluiceEventKind; data: Record<string, unknown> }[] = [];
const clients: pg.Client[] = [];

const token = (groups: string[]): Promise<string> => issuer.mint({ sub: 'agent-probe', groups });

const connect = async (groups = ['support']): Promise<pg.Client> =>
  openClient({ host: '127.0.0.1', port, user: 'agent', database: 'probe-db', password: await token(groups) }, clients);

/** psql through the proxy, as an agent would run it: stdout, or the error text on failure. */
const psql = async (sql: string): Promise<string> => {
  const env = { ...process.env, PGPASSWORD: await token(['support']), PGCONNECT_TIMEOUT: '10' };
  try {
    const { stdout } = await run('psql', ['-X', '-q', '-h', '127.0.0.1', '-p', String(port), '-U', 'agent', '-d', 'probe-db', '-v', 'ON_ERROR_STOP=1', '-c', sql], { env });
    return stdout;
  } catch (error) {
    return `${(error as { stdout?: string }).stdout ?? ''}${(error as { stderr?: string }).stderr ?? ''}`;
  }
};

const expectNoRaw = (value: unknown): void => {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  for (const raw of RAW) expect(text).not.toContain(raw);
};

beforeAll(async () => {
  await loadSqlClassifier();
  issuer = await startTestIssuer();
  await createDatabase(
    database,
    `create table people (id int primary key, name text, ssn text);
     insert into people values (1, 'Ada Lovelace', '912-34-5678');
     create table orders (id int primary key, total int);
     insert into orders values (1, 10);
     create table stats_probe (code text);
     insert into stats_probe select '912-34-5678' from generate_series(1, 50);
     insert into stats_probe select 'other-' || g from generate_series(1, 50) g;
     analyze stats_probe;`,
  );
  const resource = CONFIG.resources[0] as PostgresResourceConfig;
  adapter = createPostgresAdapter({ ...resource, target: { ...resource.target, port: 5432, ssl: false } }, { secretsDir: process.cwd() });
  const ports = createPostgresPorts({
    issuer,
    policy: {
      describeSession: async () => ({ mayConnect: true, readOnly: true }),
      decide: async (subject, resource, command) => policy.decide(subject, resource, command),
    },
    masking,
    record: (_sessionId, kind, data) => {
      events.push({ kind, data: data as unknown as Record<string, unknown> });
    },
    maxRows: 10,
  });
  ({ server, port } = await listenPostgresProxy(adapter, ports));
});

afterAll(() => closeProxyParts({ clients, adapter, server, databases: [database], issuer }));

describe('functions are closed by default', () => {
  it.each([
    "SELECT table_to_xml('public.people', true, false, '')",
    "SELECT schema_to_xml('public', true, false, '')",
    "SELECT database_to_xml(true, false, '')",
    "SELECT query_to_xml('select * from people', true, false, '')",
  ])('refuses %s under a tables allow-list that does not name the table', async (sql) => {
    const client = await connect(['orders-only']);
    await expect(client.query(sql)).rejects.toMatchObject({ code: '42501' });
  });

  it('records a function the catalogue does not vouch for as reading any table at high risk', async () => {
    const client = await connect(['orders-only']);
    const before = events.length;
    await expect(client.query("SELECT total, table_to_xml('public.people', true, false, '') FROM orders")).rejects.toMatchObject({ code: '42501' });
    const decided = events.slice(before).find((event) => event.kind === 'command.decided');
    expect(JSON.stringify(decided?.data)).toContain('"*"');
  });

  it('masks what such a function returns when a rule without tables allows it', async () => {
    const client = await connect(['reporting']);
    const result = await client.query("SELECT table_to_xml('public.people', true, false, '') AS x");
    expect(result.rows).toEqual([{ x: COLUMN_REDACTED }]);
  });
});

describe('masking fails closed', () => {
  it('masks ~(translate(ssn, …)::bigint): a prefix ~ is a bitwise NOT, not a comparison', async () => {
    const client = await connect();
    const result = await client.query("SELECT ~(translate(ssn, '-', '')::bigint) AS x FROM people");
    expect(result.rows).toEqual([{ x: null }]);
  });

  it("masks plainto_tsquery('simple', ssn) && 'zz': && of tsqueries is a tsquery", async () => {
    const client = await connect();
    const result = await client.query("SELECT plainto_tsquery('simple', ssn) && 'zz' AS q FROM people");
    expect(result.rows).toEqual([{ q: null }]);
  });

  it("masks reverse(to_jsonb(p)->>'ssn') and whole rows: row_to_json(p), to_jsonb(p), p", async () => {
    const client = await connect();
    const result = await client.query("SELECT reverse(to_jsonb(p) ->> 'ssn') AS r, row_to_json(p) AS j, to_jsonb(p) AS b, p FROM people p");
    expect(result.rows).toEqual([{ r: COLUMN_REDACTED, j: COLUMN_REDACTED, b: COLUMN_REDACTED, p: COLUMN_REDACTED }]);
    const binary = await client.query({ text: 'SELECT to_jsonb(p) AS b, p FROM people p WHERE id = $1', values: [1], binary: true } as pg.QueryConfig);
    expectNoRaw(binary.rows);
  });

  it('masks every column of a function in FROM that returns more columns than the text names (json_each_text)', async () => {
    const client = await connect();
    const result = await client.query('SELECT * FROM json_each_text(row_to_json((SELECT p FROM people p LIMIT 1)))');
    expect(result.rows.length).toBe(3);
    expectNoRaw(result.rows);
  });

  it('masks the sample values of pg_stats, which carry any column', async () => {
    const client = await connect();
    const direct = new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database });
    await direct.connect();
    const raw = await direct.query("SELECT most_common_vals::text AS v FROM pg_stats WHERE tablename = 'stats_probe'");
    await direct.end();
    expect(raw.rows[0].v).toContain('912-34-5678');
    const result = await client.query("SELECT attname, histogram_bounds, most_common_vals FROM pg_stats WHERE tablename = 'stats_probe'");
    expect(result.rows).toHaveLength(1);
    expectNoRaw(result.rows);
    const star = await client.query("SELECT * FROM pg_stats WHERE tablename = 'stats_probe'");
    expectNoRaw(star.rows);
  });

  it('keeps a boolean comparison and a count in clear', async () => {
    const client = await connect();
    const result = await client.query("SELECT ssn LIKE '9%' AS nine, count(ssn) AS n FROM people GROUP BY 1");
    expect(result.rows).toEqual([{ nine: true, n: '1' }]);
  });
});

describe('column rules reach every text that can carry a covered value', () => {
  it('masks the value an error quotes when the statement touches a covered column', async () => {
    const client = await connect();
    const error = (await client.query('SELECT reverse(ssn)::int FROM people').catch((failure: unknown) => failure)) as pg.DatabaseError;
    expect(error.code).toBe('22P02');
    expect(error.message).toMatch(/^invalid input syntax for type integer: /);
    expectNoRaw(error.message);
    const unrelated = (await client.query("SELECT 'abc'::int").catch((failure: unknown) => failure)) as pg.DatabaseError;
    expect(unrelated.message).toBe('invalid input syntax for type integer: "abc"');
  });

  it('masks NOTIFY payloads another session sends with every profile the session was allowed under', async () => {
    const client = await connect();
    await client.query('SELECT name FROM people');
    // LISTEN names no table: the first allow rule with a tables list takes it, with the weak profile.
    await client.query('LISTEN probe_channel');
    const received = new Promise<pg.Notification>((resolve) => client.once('notification', resolve));
    const direct = new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database });
    await direct.connect();
    await direct.query("SELECT pg_notify('probe_channel', ssn) FROM people");
    await direct.end();
    const notification = await received;
    expect(notification.channel).toBe('probe_channel');
    expect(notification.payload).toBe(COLUMN_REDACTED);
  });

  it.each([
    ['COPY table (columns) TO', 'COPY people (id, ssn) TO STDOUT', `1\t${COLUMN_REDACTED}`],
    ['COPY (query) TO in CSV', "COPY (SELECT id, reverse(ssn) FROM people) TO STDOUT WITH (FORMAT csv, HEADER)", `id,reverse\n1,"${COLUMN_REDACTED}"`],
    ['COPY of a whole table', 'COPY people TO STDOUT', `${COLUMN_REDACTED}\t${COLUMN_REDACTED}\t${COLUMN_REDACTED}`],
  ])('applies column rules to %s, not detectors only (psql)', async (_what, sql, expected) => {
    const out = await psql(sql);
    expectNoRaw(out);
    expect(out.trim()).toBe(expected);
  });

  it('applies the DECLAREd query lineage and profile to FETCH from a cursor (FETCH names no table: weak profile)', async () => {
    const client = await connect();
    await client.query('BEGIN');
    await client.query('DECLARE c CURSOR FOR SELECT reverse(ssn) AS r, name FROM people');
    const fetched = await client.query('FETCH ALL FROM c');
    await client.query('COMMIT');
    expect(fetched.rows).toEqual([{ r: COLUMN_REDACTED, name: 'Ada Lovelace' }]);
  });

  it('uses the union of the profiles of a message with several statements, not the first', async () => {
    const client = await connect();
    const results = (await client.query('SELECT 1 FROM public.orders LIMIT 0; SELECT ssn, reverse(ssn) AS r FROM public.people')) as unknown as pg.QueryResult[];
    expect(results[1]!.rows).toEqual([{ ssn: COLUMN_REDACTED, r: COLUMN_REDACTED }]);
  });
});

describe('detectors', () => {
  it('find an SSN next to commas and in bytea, text and binary format', async () => {
    const client = await connect(['orders-only']);
    const text = await client.query("SELECT '1,123-45-6789,x' AS line, decode('3132332d34352d36373839', 'hex') AS b");
    expect(text.rows[0].line).not.toContain('123-45');
    expect(text.rows[0].b).toBeNull();
    const binary = await client.query({ text: "SELECT decode('3132332d34352d36373839', 'hex') AS b", binary: true } as pg.QueryConfig);
    expect(binary.rows).toEqual([{ b: null }]);
  });
});
