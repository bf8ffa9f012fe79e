import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createDatabase, deleteStreams, dropDatabases } from '../support/databases.js';
import { startTestIssuer, type TestIssuer } from '../support/oidc.js';
import { freePort } from '../support/ports.js';
import { runCommand } from '../support/run.js';
import { startSluice, type RunningSluice } from '../support/sluice.js';

/** Writes, DDL and admin statements dressed up as something else. None may change anything. */
const DISGUISED = [
  'DELETE FROM accounts',
  'delete/**/from accounts',
  'DeLeTe FROM "accounts" WHERE true',
  'WITH gone AS (DELETE FROM accounts RETURNING *) SELECT count(*) FROM gone',
  'WITH x AS (SELECT 1) UPDATE accounts SET balance = 0',
  'SELECT * INTO stolen FROM accounts',
  'CREATE TABLE stolen AS SELECT * FROM accounts',
  'EXPLAIN ANALYZE DELETE FROM accounts',
  'SELECT 1; DELETE FROM accounts',
  'SELECT 1; DROP TABLE accounts',
  'TRUNCATE accounts',
  'DROP TABLE accounts',
  'ALTER TABLE accounts ADD COLUMN pwned int',
  'GRANT ALL ON accounts TO PUBLIC',
  'CREATE ROLE intruder SUPERUSER',
  'SET ROLE postgres',
  'SET SESSION AUTHORIZATION postgres',
  "SELECT set_config('default_transaction_read_only', 'off', false)",
  'SET default_transaction_read_only = off',
  'SET transaction_read_only = off',
  'BEGIN READ WRITE',
  'START TRANSACTION READ WRITE',
  "DO $$ BEGIN DELETE FROM accounts; END $$",
  "COPY accounts FROM PROGRAM 'echo 9,9'",
  "COPY accounts TO '/tmp/sluice-exfiltrated.csv'",
  "SELECT pg_read_file('/etc/passwd')",
  'SELECT pg_terminate_backend(pg_backend_pid())',
  "SELECT lo_import('/etc/passwd')",
  "SELECT nextval('accounts_id_seq')",
  'ALTER SYSTEM SET fsync = off',
  'LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE',
  'PREPARE wipe AS DELETE FROM accounts',
];

describe('a read-only agent cannot change anything, whatever it sends', () => {
  const run = randomUUID().slice(0, 8);
  const targetDb = `sluice_e2e_ro_${run}`;
  const storeDb = `sluice_e2e_rostore_${run}`;
  const stream = `SLUICE_E2E_RO_${run}`;
  let idp: TestIssuer;
  let sluice: RunningSluice;
  let proxyPort: number;

  const snapshot = async () => {
    const client = new pg.Client({ host: '127.0.0.1', user: 'postgres', database: targetDb });
    await client.connect();
    const { rows } = await client.query(`SELECT (SELECT md5(string_agg(id || ':' || balance, ',' ORDER BY id)) FROM accounts) AS data,
      (SELECT count(*)::int FROM pg_class WHERE relname IN ('stolen', 'intruder')) AS extra,
      (SELECT count(*)::int FROM pg_roles WHERE rolname = 'intruder') AS roles,
      (SELECT last_value FROM accounts_id_seq) AS seq`);
    await client.end();
    return rows[0];
  };

  beforeAll(async () => {
    await createDatabase(
      targetDb,
      `CREATE TABLE accounts (id serial PRIMARY KEY, balance int);
      INSERT INTO accounts (balance) SELECT g * 10 FROM generate_series(1, 20) g;
      CREATE FUNCTION sneaky_total() RETURNS int LANGUAGE plpgsql VOLATILE AS $$
        BEGIN DELETE FROM accounts; RETURN 0; END $$;
      CREATE VIEW account_totals AS SELECT sneaky_total() AS total;`,
    );
    idp = await startTestIssuer();
    proxyPort = await freePort();
    sluice = await startSluice({
      identity: { oidc: [{ issuer: idp.issuer, audience: 'sluice' }] },
      eventStore: { url: `postgres://postgres@127.0.0.1:5432/${storeDb}` },
      bus: { url: 'nats://127.0.0.1:4222', stream, subjectPrefix: `e2ero.${run}.events` },
      resources: [{ name: 'ledger', type: 'postgres', listen: `127.0.0.1:${proxyPort}`, target: { host: '127.0.0.1', database: targetDb }, credentials: { username: 'postgres' } }],
      rules: [
        { name: 'auditors-read', effect: 'allow', subjects: { groups: ['auditors'] }, resources: ['ledger'], actions: ['read'] },
        { name: 'no-admin', effect: 'deny', actions: ['admin'] },
      ],
    });
  });

  afterAll(async () => {
    await sluice?.stop();
    await idp?.close();
    await dropDatabases([targetDb, storeDb], ['intruder']);
    await deleteStreams([stream]);
  });

  it('refuses every disguised write over node-postgres with 42501 and keeps the session usable', async () => {
    const before = await snapshot();
    const client = new pg.Client({ host: '127.0.0.1', port: proxyPort, user: 'auditor', database: 'ledger', password: await idp.mint({ sub: 'auditor-1', groups: ['auditors'] }) });
    await client.connect();
    for (const statement of DISGUISED) {
      const outcome = await client.query(statement).then(
        () => 'ran',
        (error: { code?: string }) => error.code,
      );
      expect(outcome, statement).toBe('42501');
      expect((await client.query('SELECT 1 AS alive')).rows[0].alive, statement).toBe(1);
    }
    const viaParameters = await client.query({ text: 'UPDATE accounts SET balance = $1', values: [0] }).catch((error: { code?: string }) => error.code);
    expect(viaParameters).toBe('42501');
    // A function the catalogue does not vouch for may write: refused to a read-only subject.
    const unknownFunction = await client.query('SELECT sneaky_total()').catch((error: { code?: string }) => error.code);
    expect(unknownFunction).toBe('42501');
    // A view hides the call from the text: the target's read-only transaction still stops the write.
    const hidden = await client.query('SELECT * FROM account_totals').catch((error: { code?: string }) => error.code);
    expect(hidden).toBe('25006');
    await client.end();
    expect(await snapshot()).toEqual(before);
  });

  it('refuses the same through psql, statement by statement and as one script', async () => {
    const before = await snapshot();
    const token = await idp.mint({ sub: 'auditor-2', groups: ['auditors'] });
    const psql = (args: string[]) =>
      runCommand('psql', ['-h', '127.0.0.1', '-p', String(proxyPort), '-U', 'auditor', '-d', 'ledger', '-v', 'VERBOSITY=verbose', ...args], {
        env: { ...process.env, PGPASSWORD: token },
      });
    const script = await psql(DISGUISED.flatMap((statement) => ['-c', statement]));
    expect(script.stdout).not.toMatch(/^DELETE|^UPDATE|^TRUNCATE|^DROP|^ALTER|^GRANT|^CREATE/m);
    expect(script.stderr.match(/42501/g)?.length ?? 0).toBeGreaterThanOrEqual(1);
    const each = await psql(['-c', 'SELECT count(*) FROM accounts', '-c', 'DELETE FROM accounts', '-c', 'SELECT count(*) FROM accounts']);
    expect(each.stderr).toContain('42501');
    expect(await snapshot()).toEqual(before);
  });
});
