import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import pg from 'pg';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  decodeBackend,
  encodeDescribe,
  encodeFlush,
  encodeParse,
  encodePasswordMessage,
  encodeQuery,
  encodeStartupMessage,
  encodeSync,
  FrameReader,
  type BackendMessage,
} from '@sluice/codec-pg';
import { parseConfig, type PostgresResourceConfig } from '@sluice/config';
import type { SluiceEventKind } from '@sluice/contracts';
import { loadSqlClassifier } from '@sluice/sql-classifier';
import { createPolicy } from '@sluice/policy-engine';
import { createPostgresAdapter, type PostgresAdapter } from '../services/proxy/src/postgres/adapter.js';
import { createDatabase } from './support/databases.js';
import { startTestIssuer, type TestIssuer } from './support/oidc.js';
import { createPostgresPorts, enginePolicyPort, listenPostgresProxy, openClient, waitFor as pollUntil, closeProxyParts } from './support/postgres-proxy-harness.js';

/**
 * PostgreSQL fidelity: a driver must not notice Sluice except where a rule says no. Each behaviour
 * is tried with a real client against the real server, direct and through Sluice (the real
 * policy engine and SQL classifier; nothing of pg or PostgreSQL is mocked).
 */

const database = `sluice_pg_fidelity_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
const RESOURCE = 'fidelity-db';

interface RecordedEvent {
  readonly kind: SluiceEventKind;
  readonly data: Record<string, unknown>;
}

let issuer: TestIssuer;
let server: net.Server;
let port: number;
let adapter: PostgresAdapter;
let direct: pg.Client;
const events: RecordedEvent[] = [];
const clients: pg.Client[] = [];

/** The fidelity probes give every answer 5 s. */
const waitFor = (condition: () => boolean, timeoutMs = 5_000): Promise<void> => pollUntil(condition, timeoutMs);

/** A writer may read, write and change the schema; admin (DO, SET ROLE, …) is denied to all. */
const token = (groups: string[] = ['writers']) => issuer.mint({ sub: `agent-${groups.join('-')}`, groups });

const throughSluice = async (config: pg.ClientConfig = {}, groups?: string[]): Promise<pg.ClientConfig> => ({
  host: '127.0.0.1',
  port,
  user: 'agent',
  database: RESOURCE,
  password: await token(groups),
  ...config,
});
const directly = (config: pg.ClientConfig = {}): pg.ClientConfig => ({ host: '127.0.0.1', port: 5432, user: 'postgres', database, ...config });

const open = (config: pg.ClientConfig): Promise<pg.Client> => openClient(config, clients);

const failure = async (promise: Promise<unknown>): Promise<{ code?: string; message?: string; position?: string; severity?: string }> => {
  try {
    await promise;
  } catch (error) {
    return error as { code?: string; message?: string; position?: string };
  }
  throw new Error('expected a failure');
};

/** The status byte of every ReadyForQuery a pg client receives, as the server (or Sluice) sent it. */
const statusLog = (client: pg.Client): string[] => {
  const log: string[] = [];
  (client as unknown as { connection: NodeJS.EventEmitter }).connection.on('readyForQuery', (message: { status: string }) => log.push(message.status));
  return log;
};

const count = async (): Promise<number> => (await direct.query('select count(*)::int as n from ledger')).rows[0].n as number;

beforeAll(async () => {
  await loadSqlClassifier();
  issuer = await startTestIssuer();
  await createDatabase(database);
  direct = new pg.Client(directly());
  await direct.connect();
  await direct.query('create table ledger (id serial primary key, note text)');
  const resource: PostgresResourceConfig = {
    name: RESOURCE,
    type: 'postgres',
    listen: '127.0.0.1:0',
    target: { host: '127.0.0.1', port: 5432, database, ssl: false },
    credentials: { username: 'postgres' },
  };
  const config = parseConfig({
    resources: [{ name: RESOURCE, type: 'postgres', listen: '127.0.0.1:1', target: { host: '127.0.0.1', database }, credentials: { username: 'postgres' } }],
    rules: [
      { name: 'writers-change', effect: 'allow', subjects: { groups: ['writers'] }, actions: ['read', 'write', 'ddl'] },
      { name: 'readers-read', effect: 'allow', subjects: { groups: ['readers'] }, actions: ['read'] },
      { name: 'never-admin', effect: 'deny', actions: ['admin'] },
    ],
  });
  const policy = createPolicy(config.rules, config.resources, { approvalTimeoutMs: 60_000 });
  adapter = createPostgresAdapter(resource, { secretsDir: process.cwd() });
  const ports = createPostgresPorts({
    issuer,
    policy: enginePolicyPort(policy),
    record: (_session, kind, data) => void events.push({ kind, data: data as unknown as Record<string, unknown> }),
    maxRows: 10,
  });
  ({ server, port } = await listenPostgresProxy(adapter, ports));
});

afterAll(() => closeProxyParts({ clients, adapter, server, direct, databases: [database], issuer }));

/** A hand-driven startup: raw parameters in, the backend's messages out. */
const rawStartup = async (parameters: [string, string][], password?: string): Promise<{ messages: BackendMessage[]; socket: net.Socket; closed: () => boolean }> => {
  const socket = net.connect(port, '127.0.0.1');
  const reader = new FrameReader({ phase: 'typed' });
  const messages: BackendMessage[] = [];
  let closed = false;
  socket.on('data', (chunk: Buffer) => {
    for (const frame of reader.push(chunk)) messages.push(decodeBackend(frame));
  });
  socket.on('close', () => (closed = true));
  socket.on('error', () => {});
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.write(encodeStartupMessage(parameters));
  await waitFor(() => messages.length > 0 || closed);
  socket.write(encodePasswordMessage(password ?? (await token())));
  await waitFor(() => closed || messages.some((m) => m.type === 'ReadyForQuery' || m.type === 'ErrorResponse'));
  return { messages, socket, closed: () => closed };
};

const SETTINGS = ['application_name', 'DateStyle', 'TimeZone', 'IntervalStyle', 'extra_float_digits', 'statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout', 'search_path'];
const show = async (client: pg.Client): Promise<Record<string, string>> => {
  const values: Record<string, string> = {};
  for (const name of SETTINGS) values[name] = Object.values((await client.query(`show ${name}`)).rows[0] as Record<string, string>)[0]!;
  return values;
};

describe('PostgreSQL fidelity: startup parameters', () => {
  const driverConfig: pg.ClientConfig = {
    application_name: 'fidelity-app',
    statement_timeout: 4321,
    lock_timeout: 1234,
    idle_in_transaction_session_timeout: 5678,
    options: '-c search_path=pg_catalog,public -c DateStyle=German,DMY --TimeZone=Asia/Tokyo -c IntervalStyle=iso_8601 -c extra_float_digits=2',
  };

  it('passes the settings a driver sends at startup to the target, as a direct connection gets them', async () => {
    const expected = await show(await open(directly(driverConfig)));
    expect(expected).toMatchObject({ application_name: 'fidelity-app', statement_timeout: '4321ms', TimeZone: 'Asia/Tokyo', search_path: 'pg_catalog,public' });
    expect(await show(await open(await throughSluice(driverConfig)))).toEqual(expected);
  });

  it('leaves application_name at the server default when the driver sends none, as direct', async () => {
    const expected = (await (await open(directly())).query('show application_name')).rows;
    expect(expected).toEqual([{ application_name: '' }]);
    expect((await (await open(await throughSluice())).query('show application_name')).rows).toEqual(expected);
  });

  it('applies the startup statement_timeout on the target: a long query is cancelled with 57014', async () => {
    const client = await open(await throughSluice({ statement_timeout: 200 }));
    expect((await failure(client.query('select pg_sleep(3)'))).code).toBe('57014');
    expect((await client.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
  });

  it('reads parameter names without case and options with backslash escapes, as PostgreSQL does', async () => {
    const { messages, socket } = await rawStartup([
      ['user', 'agent'],
      ['database', RESOURCE],
      ['Application_Name', 'raw-client'],
      ['options', '-c search_path="a\\ b",public'],
    ]);
    expect(messages.filter((m) => m.type === 'ErrorResponse')).toEqual([]);
    messages.length = 0;
    socket.write(encodeQuery("select current_setting('application_name') as a, current_setting('search_path') as p"));
    await waitFor(() => messages.some((m) => m.type === 'ReadyForQuery'));
    const row = messages.find((m) => m.type === 'DataRow') as Extract<BackendMessage, { type: 'DataRow' }>;
    expect(row.values.map((v) => v?.toString())).toEqual(['raw-client', '"a b",public']);
    socket.destroy();
  });

  it("relays the target's own refusal of a setting's value, as a direct connection gets it", async () => {
    const config = { options: '-c search_path=a\\ b' };
    const expected = await failure(new pg.Client(directly(config)).connect());
    const proxied = new pg.Client(await throughSluice(config));
    proxied.on('error', () => {});
    expect(expected).toMatchObject({ code: '22023', message: 'invalid value for parameter "search_path": "a b"' });
    expect(await failure(proxied.connect())).toMatchObject({ code: expected.code, message: expected.message, severity: 'FATAL' });
  });

  it('records the startup settings, user and database in session.started', async () => {
    await open(await throughSluice({ application_name: 'recorded-app', statement_timeout: 999 }));
    const started = events.filter((e) => e.kind === 'session.started').at(-1)!;
    expect(started.data).toMatchObject({ user: 'agent', database: RESOURCE, parameters: { application_name: 'recorded-app', statement_timeout: '999', client_encoding: 'UTF8' } });
  });

  it('refuses with a FATAL naming it any parameter that could undo policy, however it is sent', async () => {
    const attempts: [[string, string], string][] = [
      [['default_transaction_read_only', 'off'], 'default_transaction_read_only'],
      [['DEFAULT_TRANSACTION_READ_ONLY', 'off'], 'DEFAULT_TRANSACTION_READ_ONLY'],
      [['role', 'postgres'], 'role'],
      [['session_authorization', 'postgres'], 'session_authorization'],
      [['standard_conforming_strings', 'off'], 'standard_conforming_strings'],
      [['backslash_quote', 'on'], 'backslash_quote'],
      [['replication', 'database'], 'replication'],
      [['options', '-c default_transaction_read_only=off'], 'default_transaction_read_only'],
      [['options', '--default-transaction-read-only=off'], 'default_transaction_read_only'],
      [['options', '-c application_name=x -c role=postgres'], 'role'],
      [['options', '-B 1000'], 'options'],
    ];
    for (const [parameter, named] of attempts) {
      const { messages, closed } = await rawStartup([['user', 'agent'], ['database', RESOURCE], parameter], await token(['readers']));
      const error = messages.find((m) => m.type === 'ErrorResponse') as { fields: Record<string, string> } | undefined;
      expect(error?.fields, JSON.stringify(parameter)).toMatchObject({ S: 'FATAL', C: '42501' });
      expect(error!.fields.M).toContain(`"${named}"`);
      expect(messages.some((m) => m.type === 'ReadyForQuery')).toBe(false);
      await waitFor(closed);
    }
    const rejected = events.filter((e) => e.kind === 'session.rejected').at(-1)!;
    expect(rejected.data).toMatchObject({ code: 'ERR_POLICY_DENIED', subject: { sub: 'agent-readers' } });
  });

  it('keeps a read-only session read-only: options cannot switch default_transaction_read_only off', async () => {
    const readOnly = await open(await throughSluice({}, ['readers']));
    expect((await readOnly.query('show default_transaction_read_only')).rows[0].default_transaction_read_only).toBe('on');
    const refused = new pg.Client(await throughSluice({ options: '-c default_transaction_read_only=off' }, ['readers']));
    refused.on('error', () => {});
    expect(await failure(refused.connect())).toMatchObject({ code: '42501', severity: 'FATAL' });
  });

  it('takes client_encoding UTF8 under any spelling and refuses an encoding the proxy cannot convert, naming it', async () => {
    const utf8 = await open(await throughSluice({ client_encoding: 'utf-8' }));
    expect((await utf8.query('show client_encoding')).rows[0].client_encoding).toBe('UTF8');
    // LATIN1, SJIS and the others iconv-lite has tables for are converted (postgres-encodings.int.spec.ts).
    for (const encoding of ['EUC_TW', 'MULE_INTERNAL']) {
      const { messages } = await rawStartup([['user', 'agent'], ['database', RESOURCE], ['client_encoding', encoding]]);
      const error = messages.find((m) => m.type === 'ErrorResponse') as { fields: Record<string, string> };
      expect(error.fields).toMatchObject({ S: 'FATAL', C: '0A000' });
      expect(error.fields.M).toContain('client_encoding');
      expect(error.fields.M).toContain(encoding);
    }
  });

  it('takes SQL_ASCII over a UTF8 database at startup and by SET: the server checks input as UTF-8 and sends its UTF-8 unconverted', async () => {
    const { messages, socket } = await rawStartup([['user', 'agent'], ['database', RESOURCE], ['client_encoding', 'SQL_ASCII']]);
    socket.destroy();
    expect(messages.find((m) => m.type === 'ParameterStatus' && m.name === 'client_encoding')).toMatchObject({ value: 'SQL_ASCII' });
    expect(messages.at(-1)?.type).toBe('ReadyForQuery');
    const seen: unknown[] = [];
    for (const config of [directly(), await throughSluice()]) {
      const client = await open(config);
      await client.query("set client_encoding = 'sql_ascii'");
      const { rows } = await client.query("select current_setting('client_encoding') as encoding, 'café' as word, length('café') as n");
      seen.push(rows[0]);
    }
    expect(seen[0]).toEqual({ encoding: 'SQL_ASCII', word: 'café', n: 4 });
    expect(seen[1]).toEqual(seen[0]);
  });

  it('SQL_ASCII: a byte that is not UTF-8 before a quote cannot split a statement differently for Sluice and the server (GBK-style probe)', async () => {
    const before = await count();
    const { messages, socket } = await rawStartup([['user', 'agent'], ['database', RESOURCE], ['client_encoding', 'SQL_ASCII']], await token(['readers']));
    messages.length = 0;
    const sql = Buffer.concat([Buffer.from("select '"), Buffer.from([0xbf]), Buffer.from("'; delete from ledger; --'"), Buffer.from([0])]);
    const query = Buffer.concat([Buffer.from('Q'), Buffer.alloc(4), sql]);
    query.writeInt32BE(sql.length + 4, 1);
    socket.write(query);
    await waitFor(() => messages.some((m) => m.type === 'ReadyForQuery'));
    socket.destroy();
    const error = messages.find((m) => m.type === 'ErrorResponse') as { fields: Record<string, string> } | undefined;
    expect(error?.fields.C).toBe('42501');
    expect(messages.some((m) => m.type === 'CommandComplete')).toBe(false);
    expect(await count()).toBe(before);
  });

  it('passes psql settings from PGOPTIONS, PGAPPNAME, PGTZ and PGDATESTYLE through', async () => {
    const result = await psql(["select current_setting('application_name'), current_setting('TimeZone'), current_setting('DateStyle'), current_setting('lock_timeout')"], {
      PGOPTIONS: '-c lock_timeout=3s',
      PGAPPNAME: 'psql-agent',
      PGTZ: 'Europe/Paris',
      PGDATESTYLE: 'SQL, DMY',
    });
    expect(result.stderr).toBe('');
    expect(result.stdout.trim()).toBe('psql-agent|Europe/Paris|SQL, DMY|3s');
  });
});

const psql = async (commands: string[], env: Record<string, string> = {}, database = RESOURCE): Promise<{ code: number | null; stdout: string; stderr: string }> => {
  const password = await token();
  return new Promise((resolve, reject) => {
    const args = ['-h', '127.0.0.1', '-p', String(port), '-U', 'agent', '-d', database, '-X', '-At'];
    for (const command of commands) args.push('-c', command);
    const child = spawn('psql', args, { env: { ...process.env, PGPASSWORD: password, PGSSLMODE: 'disable', PGCONNECT_TIMEOUT: '5', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
};

describe('PostgreSQL fidelity: database and user names', () => {
  it('refuses a database other than the target or the resource with 3D000, as the server refuses one that does not exist', async () => {
    const directError = await failure(new pg.Client(directly({ database: 'nosuchdb' })).connect());
    const proxied = new pg.Client(await throughSluice({ database: 'nosuchdb' }));
    proxied.on('error', () => {});
    const sluiceError = await failure(proxied.connect());
    expect(directError).toMatchObject({ code: '3D000', message: 'database "nosuchdb" does not exist' });
    expect(sluiceError).toMatchObject({ code: '3D000', message: 'database "nosuchdb" does not exist', severity: 'FATAL' });
  });

  it("lands in the target database whether the agent names the resource, the target database or its user name (a driver's default)", async () => {
    for (const config of [{ database: RESOURCE }, { database }, { user: 'someone', database: 'someone' }]) {
      const client = await open(await throughSluice(config));
      expect((await client.query('select current_database() as db, current_user as role')).rows).toEqual([{ db: database, role: 'postgres' }]);
    }
  });
});

describe('PostgreSQL fidelity: transaction state after a refusal', () => {
  it('aborts the transaction on a denial inside a transaction block, so COMMIT commits nothing, as a server error would', async () => {
    const before = await count();
    const reference = await open(directly());
    const referenceStatus = statusLog(reference);
    await reference.query('begin');
    await reference.query("insert into ledger (note) values ('direct')");
    expect((await failure(reference.query('select 1/0'))).code).toBe('22012');
    expect((await failure(reference.query('select 1'))).code).toBe('25P02');
    expect((await reference.query('commit')).command).toBe('ROLLBACK');

    const client = await open(await throughSluice());
    const status = statusLog(client);
    await client.query('begin');
    await client.query("insert into ledger (note) values ('half the work')");
    expect((await failure(client.query('set role postgres'))).code).toBe('42501');
    expect((await failure(client.query('select 1'))).code).toBe('25P02');
    expect((await client.query('commit')).command).toBe('ROLLBACK');
    expect(await count()).toBe(before);
    expect(status).toEqual(referenceStatus);
    expect(status).toEqual(['T', 'T', 'E', 'E', 'I']);
  });

  it('aborts the transaction on a denial over the extended protocol too', async () => {
    const before = await count();
    const client = await open(await throughSluice());
    const status = statusLog(client);
    await client.query('begin');
    await client.query('insert into ledger (note) values ($1)', ['extended']);
    expect((await failure(client.query('select pg_terminate_backend($1)', [1]))).code).toBe('42501');
    expect(status.at(-1)).toBe('E');
    expect((await client.query('commit')).command).toBe('ROLLBACK');
    expect(await count()).toBe(before);
  });

  it('leaves a session outside a transaction idle and usable after a denial', async () => {
    const client = await open(await throughSluice());
    const status = statusLog(client);
    expect((await failure(client.query('set role postgres'))).code).toBe('42501');
    expect(status).toEqual(['I']);
    expect((await client.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
  });

  it('rolls back to a savepoint after a denial, as after a server error', async () => {
    const before = await count();
    const client = await open(await throughSluice());
    await client.query('begin');
    await client.query("insert into ledger (note) values ('kept')");
    await client.query('savepoint s');
    expect((await failure(client.query('set role postgres'))).code).toBe('42501');
    await client.query('rollback to savepoint s');
    expect((await client.query('commit')).command).toBe('COMMIT');
    expect(await count()).toBe(before + 1);
  });

  it('answers a refused Parse at the Flush, then skips to the Sync, whose ReadyForQuery says aborted, as the server does', async () => {
    const { messages, socket } = await rawStartup([['user', 'agent'], ['database', RESOURCE]]);
    const types = () => messages.map((m) => (m.type === 'ReadyForQuery' ? `Z${(m as { status: number }).status === 0x45 ? 'E' : (m as { status: number }).status === 0x54 ? 'T' : 'I'}` : m.type));
    messages.length = 0;
    socket.write(encodeQuery('begin'));
    await waitFor(() => types().includes('ZT'));
    messages.length = 0;
    socket.write(Buffer.concat([encodeParse('', 'select pg_terminate_backend(1)'), encodeDescribe('S', ''), encodeFlush()]));
    await waitFor(() => messages.length > 0);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(types()).toEqual(['ErrorResponse']);
    expect((messages[0] as { fields: Record<string, string> }).fields.C).toBe('42501');
    socket.write(Buffer.concat([encodeParse('', 'select 1'), encodeFlush()]));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(types()).toEqual(['ErrorResponse']);
    socket.write(encodeSync());
    await waitFor(() => types().some((t) => t.startsWith('Z')));
    expect(types()).toEqual(['ErrorResponse', 'ZE']);
    socket.destroy();
  });

  it('psql: a script whose middle statement is refused commits nothing, as with a failing statement direct', async () => {
    const before = await count();
    const result = await psql(['begin', "insert into ledger (note) values ('psql')", 'set role postgres', 'commit']);
    expect(result.stderr).toMatch(/permission denied/);
    expect(result.stdout).toContain('ROLLBACK');
    expect(await count()).toBe(before);
  });
});

describe('PostgreSQL fidelity: unparseable SQL', () => {
  it("answers with the parser's own 42601, message and position, as the server does", async () => {
    const expected = await failure((await open(directly())).query('selec 1'));
    const got = await failure((await open(await throughSluice())).query('selec 1'));
    expect(got).toMatchObject({ code: '42601', message: expected.message, position: expected.position });
    const endOfInput = await failure((await open(await throughSluice())).query('select 1 from'));
    expect(endOfInput).toMatchObject({ code: '42601', message: 'syntax error at end of input', position: '14' });
  });

  it('over the extended protocol too, and the transaction is aborted by it', async () => {
    const client = await open(await throughSluice());
    const status = statusLog(client);
    await client.query('begin');
    expect(await failure(client.query('selec $1', [1]))).toMatchObject({ code: '42601', message: 'syntax error at or near "selec"' });
    expect(status.at(-1)).toBe('E');
    expect((await failure(client.query('select 1'))).code).toBe('25P02');
    await client.query('rollback');
  });

  it('never forwards unparseable SQL to the target', async () => {
    const client = await open(await throughSluice());
    const marker = `sluice_marker_${randomUUID().slice(0, 8)}`;
    await failure(client.query(`selec '${marker}'`));
    const seen = await direct.query("select count(*)::int as n from pg_stat_activity where query like '%' || $1 || '%' and pid <> pg_backend_pid()", [marker]);
    expect(seen.rows[0].n).toBe(0);
  });
});

describe('PostgreSQL fidelity: errors as the server gives them', () => {
  const terminate = async (query: string): Promise<void> => {
    for (let attempt = 0; attempt < 100; attempt++) {
      const { rows } = await direct.query('select pg_terminate_backend(pid) as killed from pg_stat_activity where query = $1 and pid <> pg_backend_pid()', [query]);
      if (rows.length > 0) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error('the query never showed up');
  };

  it("gives the client the server's own FATAL 57P01 when the backend is terminated, and nothing of the proxy's", async () => {
    const seen = async (config: pg.ClientConfig): Promise<{ code?: string; message?: string }[]> => {
      const client = new pg.Client(config);
      const errors: { code?: string; message?: string }[] = [];
      client.on('error', (error: Error) => errors.push({ code: (error as { code?: string }).code, message: error.message }));
      await client.connect();
      const { rows } = await client.query('select pg_backend_pid() as pid');
      await direct.query('select pg_terminate_backend($1)', [rows[0].pid]);
      await waitFor(() => errors.length > 0);
      await new Promise((resolve) => setTimeout(resolve, 200));
      return errors;
    };
    const expected = await seen(directly());
    expect(expected[0]).toEqual({ code: '57P01', message: 'terminating connection due to administrator command' });
    expect(await seen(await throughSluice())).toEqual(expected);
  });

  it("fails a running prepared statement with the server's message when its backend is killed, and nothing else", async () => {
    const seen = async (config: pg.ClientConfig): Promise<{ query: { code?: string; message?: string }; client: string[] }> => {
      const client = new pg.Client(config);
      const errors: string[] = [];
      client.on('error', (error: Error) => errors.push(error.message));
      await client.connect();
      const sleeping = client.query({ name: 'sleep query', text: 'select pg_sleep($1)', values: [5] });
      // The FATAL may reach the client before terminate() has its own answer: handled below, not unhandled.
      sleeping.catch(() => undefined);
      await terminate('select pg_sleep($1)');
      const error = await failure(sleeping);
      await new Promise((resolve) => setTimeout(resolve, 200));
      return { query: { code: error.code, message: error.message }, client: errors };
    };
    const expected = await seen(directly());
    expect(expected.query).toEqual({ code: '57P01', message: 'terminating connection due to administrator command' });
    expect(await seen(await throughSluice())).toEqual(expected);
  });

  it('lets a client that closes right after connecting go without an error, as the server does', async () => {
    for (const config of [directly(), await throughSluice()]) {
      const client = new pg.Client(config);
      const errors: Error[] = [];
      client.on('error', (error: Error) => errors.push(error));
      // As node-postgres's quick-disconnect test does: neither promise is awaited (connect never settles).
      client.connect().catch((error: Error) => errors.push(error));
      client.end().catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(errors).toEqual([]);
    }
  });
});

describe('PostgreSQL fidelity with another driver: postgres.js (extended protocol, pipelined)', () => {
  const opened: postgres.Sql[] = [];
  const sluiceSql = async (options: postgres.Options<Record<string, never>> = {}, groups?: string[]): Promise<postgres.Sql> => {
    const sql = postgres({ host: '127.0.0.1', port, user: 'agent', database: RESOURCE, pass: await token(groups), max: 1, onnotice: () => {}, ...options });
    opened.push(sql);
    return sql;
  };
  const directSql = (options: postgres.Options<Record<string, never>> = {}): postgres.Sql => {
    const sql = postgres({ host: '127.0.0.1', port: 5432, user: 'postgres', database, max: 1, onnotice: () => {}, ...options });
    opened.push(sql);
    return sql;
  };
  afterAll(async () => {
    for (const sql of opened) await sql.end({ timeout: 1 }).catch(() => {});
  });
  const reason = async (promise: Promise<unknown>): Promise<{ code?: string; message?: string; position?: string }> => {
    try {
      await promise;
    } catch (error) {
      const { code, message, position } = error as { code?: string; message?: string; position?: string };
      return { code, message, position };
    }
    throw new Error('expected a failure');
  };

  it('passes its startup connection parameters to the target, as direct', async () => {
    const connection = { application_name: 'postgres-js-agent', statement_timeout: 1500, TimeZone: 'America/Lima', search_path: 'pg_catalog,public' };
    const read = async (sql: postgres.Sql) =>
      sql`select current_setting('application_name') as a, current_setting('statement_timeout') as s, current_setting('TimeZone') as t, current_setting('search_path') as p`;
    const expected = await read(directSql({ connection }));
    expect(expected[0]).toEqual({ a: 'postgres-js-agent', s: '1500ms', t: 'America/Lima', p: 'pg_catalog,public' });
    expect(await read(await sluiceSql({ connection }))).toEqual(expected);
  });

  it('is refused with a FATAL naming a parameter that would undo policy', async () => {
    const sql = await sluiceSql({ connection: { default_transaction_read_only: 'off' } as Record<string, string> }, ['readers']);
    const error = await reason(sql`select 1`);
    expect(error.code).toBe('42501');
    expect(error.message).toContain('default_transaction_read_only');
  });

  it('refuses an unknown database with 3D000, as direct', async () => {
    const expected = await reason(directSql({ database: 'nosuchdb' })`select 1`);
    expect(expected.code).toBe('3D000');
    expect(await reason((await sluiceSql({ database: 'nosuchdb' }))`select 1`)).toEqual(expected);
  });

  it('aborts its transaction on a refused statement, so COMMIT commits nothing', async () => {
    const before = await count();
    const sql = await sluiceSql();
    await sql.unsafe('begin');
    await sql`insert into ledger (note) values (${'postgres.js'})`;
    expect((await reason(sql`select pg_terminate_backend(${1})`)).code).toBe('42501');
    expect((await reason(sql`select 1`)).code).toBe('25P02');
    await sql.unsafe('commit');
    expect(await count()).toBe(before);
    expect(await sql`select 1 as one`).toEqual([{ one: 1 }]);
  });

  it("answers unparseable SQL with the server's 42601 message and position", async () => {
    const expected = await reason(directSql().unsafe('selec 1'));
    expect(expected.code).toBe('42601');
    expect(await reason((await sluiceSql()).unsafe('selec 1'))).toEqual(expected);
    const direct42601 = await reason(directSql()`selec ${1}`.execute());
    expect(await reason((await sluiceSql())`selec ${1}`.execute())).toEqual(direct42601);
  });
});
