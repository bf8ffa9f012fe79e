import { randomUUID } from 'node:crypto';
import type net from 'node:net';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PostgresResourceConfig } from '@sluice/config';
import type { SluiceEventKind, Subject } from '@sluice/contracts';
import { compileMasking, COLUMN_REDACTED } from '@sluice/masking-engine';
import type { Decision, GovernedCommand } from '../services/proxy/src/ports.js';
import { createPostgresAdapter, type PostgresAdapter } from '../services/proxy/src/postgres/adapter.js';
import { createDatabase } from './support/databases.js';
import { startTestIssuer, type TestIssuer } from './support/oidc.js';
import { createPostgresPorts, listenPostgresProxy, openClient, closeProxyParts } from './support/postgres-proxy-harness.js';

/**
 * Lineage masking through the real PostgreSQL adapter and the real masking engine: a result column
 * derived from a column a rule covers is masked by that rule, whatever it is called and however
 * harmless its value looks.
 */

const masking = compileMasking(
  {
    defaultRegion: 'US',
    detectors: [],
    profiles: {
      pii: {
        detectors: ['credit_card', 'email', 'phone', 'us_ssn', 'iban', 'ipv4', 'jwt', 'secret'],
        strategy: 'partial',
        columns: [
          { match: '(?i)ssn', strategy: 'redact' },
          { column: 'public.people.pin_code', strategy: 'redact' },
        ],
      },
    },
  },
  { hashKey: 'lineage-int' },
);

/** Everything is a read allowed with the pii profile; the classifier is not what is under test here. */
const allow = (command: GovernedCommand): Decision => ({
  effect: 'allow',
  rule: 'support-read',
  reason: 'reads',
  action: 'read',
  risk: 'low',
  maskProfile: 'pii',
  tables: [],
  prepares: command.kind === 'sql' ? [...command.text.matchAll(/prepare\s+(\w+)/gi)].map((match) => match[1]!.toLowerCase()) : [],
});

const database = `sluice_lineage_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
let issuer: TestIssuer;
let server: net.Server;
let adapter: PostgresAdapter;
let port: number;
const events: { kind: SluiceEventKind; data: Record<string, unknown> }[] = [];
const clients: pg.Client[] = [];

const connect = async (): Promise<pg.Client> => {
  const password = await issuer.mint({ sub: 'agent-support', groups: ['support-agents'] });
  return openClient({ host: '127.0.0.1', port, user: 'agent', database: 'lineage-db', password }, clients);
};

beforeAll(async () => {
  issuer = await startTestIssuer();
  await createDatabase(
    database,
    `create table people (id int primary key, name text, ssn text, pin_code text, balance numeric(10,2));
     insert into people values
       (1, 'Ada Lovelace', '123-45-6789', 'k9x2', 10.50),
       (2, 'Alan Turing', '987-65-4321', 'p4q7', 20.00);`,
  );
  const resource: PostgresResourceConfig = {
    name: 'lineage-db',
    type: 'postgres',
    listen: '127.0.0.1:0',
    target: { host: '127.0.0.1', port: 5432, database, ssl: false },
    credentials: { username: 'postgres' },
  };
  adapter = createPostgresAdapter(resource, { secretsDir: process.cwd() });
  const ports = createPostgresPorts({
    issuer,
    policy: {
      describeSession: async (_subject: Subject) => ({ mayConnect: true, readOnly: true }),
      decide: async (_subject, _resource, command) => allow(command),
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

const RAW = ['6789', '4321', '123-45-6789', '987-65-4321', 'k9x2', 'p4q7', 'K9X2', 'P4Q7'];
const expectNoRaw = (value: unknown): void => {
  const text = JSON.stringify(value);
  for (const raw of RAW) expect(text).not.toContain(raw);
};

describe('column rules follow lineage through the PostgreSQL adapter', () => {
  it('masks SELECT substr(ssn, 8) AS tail in the simple protocol, names and amounts untouched', async () => {
    const client = await connect();
    const result = await client.query('SELECT substr(ssn, 8) AS tail, name, balance FROM people ORDER BY id');
    expect(result.rows).toEqual([
      { tail: COLUMN_REDACTED, name: 'Ada Lovelace', balance: '10.50' },
      { tail: COLUMN_REDACTED, name: 'Alan Turing', balance: '20.00' },
    ]);
  });

  it('masks SELECT substr(ssn, 8) AS tail in the extended protocol, text and binary results', async () => {
    const client = await connect();
    const text = await client.query({ text: 'SELECT substr(ssn, 8) AS tail, name, balance FROM people WHERE id = $1', values: [1] });
    expect(text.rows).toEqual([{ tail: COLUMN_REDACTED, name: 'Ada Lovelace', balance: '10.50' }]);
    const binary = await client.query({ text: 'SELECT substr(ssn, 8) AS tail, name FROM people WHERE id = $1', values: [2], binary: true } as pg.QueryConfig);
    expect(binary.rows).toEqual([{ tail: COLUMN_REDACTED, name: 'Alan Turing' }]);
  });

  it('masks through a subquery alias, a CTE, a CASE and a cast', async () => {
    const client = await connect();
    const result = await client.query(`
      WITH x AS (SELECT id, ssn AS a FROM people)
      SELECT upper(s.s) AS u, x.a || '' AS c, CASE WHEN x.id > 0 THEN right(x.a, 4) END AS k, (x.a)::varchar(4) AS v
      FROM (SELECT id, ssn AS s FROM people) s JOIN x USING (id) ORDER BY id`);
    expect(result.rows).toEqual([
      { u: COLUMN_REDACTED, c: COLUMN_REDACTED, k: COLUMN_REDACTED, v: COLUMN_REDACTED },
      { u: COLUMN_REDACTED, c: COLUMN_REDACTED, k: COLUMN_REDACTED, v: COLUMN_REDACTED },
    ]);
  });

  it('applies a schema.table.column rule to a column derived from it', async () => {
    const client = await connect();
    const result = await client.query('SELECT name, upper(pin_code) AS code FROM people ORDER BY id');
    expect(result.rows).toEqual([
      { name: 'Ada Lovelace', code: COLUMN_REDACTED },
      { name: 'Alan Turing', code: COLUMN_REDACTED },
    ]);
  });

  it('maps each result set of a multi-statement simple query to its own statement', async () => {
    const client = await connect();
    const results = (await client.query("SELECT name AS tail FROM people WHERE id = 1; SET application_name = 'x'; SELECT substr(ssn, 8) AS name FROM people WHERE id = 1")) as unknown as pg.QueryResult[];
    expect(results[0]!.rows).toEqual([{ tail: 'Ada Lovelace' }]);
    expect(results[2]!.rows).toEqual([{ name: COLUMN_REDACTED }]);
  });

  it('masks the result of EXECUTE of a statement PREPAREd in SQL', async () => {
    const client = await connect();
    await client.query('PREPARE tails AS SELECT right(ssn, 4) AS t FROM people ORDER BY id');
    const result = await client.query('EXECUTE tails');
    expect(result.rows).toEqual([{ t: COLUMN_REDACTED }, { t: COLUMN_REDACTED }]);
  });

  it('leaves columns alone when the masked column is only in WHERE or ORDER BY, or only counted', async () => {
    const client = await connect();
    const where = await client.query("SELECT name, balance FROM people WHERE ssn LIKE '123%' ORDER BY ssn");
    expect(where.rows).toEqual([{ name: 'Ada Lovelace', balance: '10.50' }]);
    const counted = await client.query('SELECT count(ssn) AS n, length(min(name)) AS l FROM people');
    expect(counted.rows).toEqual([{ n: '2', l: 12 }]);
  });

  it('records the masked values, not the raw ones, in result.returned', async () => {
    const client = await connect();
    const before = events.length;
    await client.query('SELECT substr(ssn, 8) AS tail, lower(pin_code) AS p FROM people');
    const returned = events.slice(before).filter((event) => event.kind === 'result.returned');
    expect(returned).toHaveLength(1);
    expect(returned[0]!.data.rows).toEqual([
      [COLUMN_REDACTED, COLUMN_REDACTED],
      [COLUMN_REDACTED, COLUMN_REDACTED],
    ]);
    expectNoRaw(returned[0]!.data);
    expect(returned[0]!.data.maskedCounts).toEqual({ 'column:(?i)ssn': 2, 'column:public.people.pin_code': 2 });
  });
});
