import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import type net from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeQuery, encodeSync } from '@sluice/codec-pg';
import type { PostgresResourceConfig, RuleConfig } from '@sluice/config';
import type { SluiceEventKind } from '@sluice/contracts';
import { loadSqlClassifier } from '@sluice/sql-classifier';
import { createPolicy } from '@sluice/policy-engine';
import type { ApprovalOutcome, ApprovalRequest } from '../services/proxy/src/ports.js';
import { createPostgresAdapter, type PostgresAdapter } from '../services/proxy/src/postgres/adapter.js';
import { createDatabase, dropDatabases } from './support/databases.js';
import { startTestIssuer, type TestIssuer } from './support/oidc.js';
import {
  createPostgresPorts,
  enginePolicyPort,
  listenPostgresProxy,
  openClient,
  RawPostgresSession,
  sqlState,
  waitFor,
} from './support/postgres-proxy-harness.js';

/**
 * Issue #9, findings 1-4: the proxy must hold the PostgreSQL session state the server holds
 * (lexer settings, prepared statements and portals, search_path), never a guess from the text.
 * Real PostgreSQL, the real classifier and policy engine, real clients (pg, psql, raw bytes).
 */

const RESOURCE = 'bypass-db';

const RULES: RuleConfig[] = [
  { name: 'readers-read', effect: 'allow', subjects: { groups: ['readers'] }, resources: [RESOURCE], actions: ['read'] },
  { name: 'no-secrets', effect: 'deny', resources: [RESOURCE], tables: ['public.secrets'] },
  { name: 'orders-only', effect: 'allow', subjects: { groups: ['orders'] }, resources: [RESOURCE], actions: ['read'], tables: ['public.orders'] },
  { name: 'ops-change', effect: 'allow', subjects: { groups: ['ops'] }, resources: [RESOURCE], actions: ['read', 'write'] },
  { name: 'runners-change', effect: 'allow', subjects: { groups: ['runners'] }, resources: [RESOURCE], actions: ['read', 'write'] },
  { name: 'risky-needs-dba', effect: 'approve', subjects: { groups: ['ops'] }, resources: [RESOURCE], risk: 'high', approvers: { groups: ['dba'] } },
  // A subject allowed admin statements: only the server-side tracking stands between it and a misread.
  { name: 'tuner-settings', effect: 'allow', subjects: { groups: ['tuner'] }, resources: [RESOURCE], actions: ['read', 'write', 'admin'], tables: ['public.orders'] },
] as RuleConfig[];

class RecordingApprovals {
  readonly requests: (ApprovalRequest & { approvalId: string })[] = [];
  readonly #waiting = new Map<string, (outcome: ApprovalOutcome) => void>();
  async request(request: ApprovalRequest) {
    const approvalId = `appr-${randomUUID().slice(0, 8)}`;
    this.requests.push({ ...request, approvalId });
    return { approvalId, expiresAt: new Date(Date.now() + 60_000) };
  }
  awaitDecision(approvalId: string, signal: AbortSignal): Promise<ApprovalOutcome> {
    return new Promise((resolve) => {
      this.#waiting.set(approvalId, resolve);
      signal.addEventListener('abort', () => resolve({ outcome: 'cancelled', approvers: [], reason: 'aborted' }));
    });
  }
  async consume() {
    return true;
  }
  async decideNext(outcome: ApprovalOutcome): Promise<ApprovalRequest> {
    await waitFor(() => this.#waiting.size > 0);
    const [approvalId, resolve] = [...this.#waiting][0]!;
    this.#waiting.delete(approvalId);
    resolve(outcome);
    return this.requests.find((request) => request.approvalId === approvalId)!;
  }
}

interface RecordedEvent {
  readonly sessionId: string;
  readonly kind: SluiceEventKind;
  readonly data: Record<string, unknown>;
}

// ---------------------------------------------------------------- raw protocol client

const frontend = (code: string, body: Buffer): Buffer => {
  const header = Buffer.alloc(5);
  header.write(code, 0, 'latin1');
  header.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([header, body]);
};
const cstring = (text: string): Buffer => Buffer.from(`${text}\0`, 'utf8');
/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-PARSE */
const parse = (name: string, text: string): Buffer => frontend('P', Buffer.concat([cstring(name), cstring(text), Buffer.from([0, 0])]));
/** Bind with no parameters and text results. */
const bind = (portal: string, statement: string): Buffer => frontend('B', Buffer.concat([cstring(portal), cstring(statement), Buffer.from([0, 0, 0, 0, 0, 0])]));
const flush = (): Buffer => frontend('H', Buffer.alloc(0));
const execute = (portal: string): Buffer => frontend('E', Buffer.concat([cstring(portal), Buffer.from([0, 0, 0, 0])]));

// ---------------------------------------------------------------- fixture

const run = randomUUID().replaceAll('-', '').slice(0, 10);
const database = `sluice_pg_bypass_${run}`;
let issuer: TestIssuer;
let server: net.Server;
let port: number;
let adapter: PostgresAdapter;
let approvals: RecordedApprovals;
const events: RecordedEvent[] = [];
let direct: pg.Client;
const clients: pg.Client[] = [];
const raws: RawPostgresSession[] = [];
type RecordedApprovals = RecordingApprovals;

const token = (groups: string[]) => issuer.mint({ sub: `agent-${groups.join('-')}-${randomUUID().slice(0, 4)}`, groups });

const connect = async (groups: string[]): Promise<pg.Client> =>
  openClient({ host: '127.0.0.1', port, user: 'agent', database: RESOURCE, password: await token(groups) }, clients);

const openRaw = async (groups: string[]): Promise<RawPostgresSession> => {
  const password = await token(groups);
  return RawPostgresSession.open(port, RESOURCE, async () => password, (session) => raws.push(session));
};

/** psql with one `-c` per message: each is sent whole, as one Query, in one session. */
const psql = async (groups: string[], messages: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> => {
  const password = await token(groups);
  return new Promise((resolve, reject) => {
    const args = ['-h', '127.0.0.1', '-p', String(port), '-U', 'agent', '-d', RESOURCE, '-X', '-At', ...messages.flatMap((sql) => ['-c', sql])];
    const child = spawn('psql', args, { env: { ...process.env, PGPASSWORD: password, PGSSLMODE: 'disable', PGCONNECT_TIMEOUT: '5' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
};

const victimCount = async (): Promise<number> => Number((await direct.query('select count(*)::int as n from victim')).rows[0].n);
const pwned = async (): Promise<number> => Number((await direct.query("select count(*)::int as n from pg_class where relname = 'pwned'")).rows[0].n);

beforeAll(async () => {
  await loadSqlClassifier();
  await createDatabase(
    database,
    `create table victim (id int);
     insert into victim values (1), (2), (3);
     create table secrets (id int, secret text);
     insert into secrets values (1, 'public-secret');
     create table orders (id int, item text);
     insert into orders values (1, 'public-order');
     create schema secret;
     create table secret.orders (id int, item text);
     insert into secret.orders values (1, 'SECRET-ORDER');
     create function flip_lexer() returns text language sql volatile as
       $$ select pg_catalog.set_config('standard_conforming_strings', 'off', false) $$;
     -- A view hides the function call from the text of the statement that runs it.
     create view lexer_view as select flip_lexer() as flipped;`,
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
  approvals = new RecordingApprovals();
  adapter = createPostgresAdapter(resource, { secretsDir: process.cwd() });
  const ports = createPostgresPorts({
    issuer,
    policy: enginePolicyPort(policy),
    approvals,
    record: (sessionId: string, kind: SluiceEventKind, data: unknown) => {
      events.push({ sessionId, kind, data: data as Record<string, unknown> });
    },
    maxRows: 5,
  });
  ({ server, port } = await listenPostgresProxy(adapter, ports));
});

afterAll(async () => {
  for (const client of clients) await client.end().catch(() => {});
  for (const raw of raws) raw.socket.destroy();
  await adapter?.close();
  await new Promise((resolve) => server?.close(resolve));
  await direct?.end();
  await issuer?.close();
  await dropDatabases([database]);
});

// ---------------------------------------------------------------- finding 1: lexer settings

describe('the server lexes exactly as the classifier does', () => {
  it.each([
    'SET standard_conforming_strings = off',
    'set standard_conforming_strings to off',
    "SELECT set_config('standard_conforming_strings', 'off', false)",
    'SET backslash_quote = on',
    // SET client_encoding of SJIS or GBK is converted at the proxy's edge now (the target stays UTF8):
    // their trail-byte probes are in postgres-encodings.int.spec.ts. set_config() of it reaches the target.
    "SELECT set_config('client_encoding', 'SJIS', false)",
    'RESET standard_conforming_strings',
  ])('refuses %s as admin, and the session stays usable', async (sql) => {
    const client = await connect(['readers']);
    expect(await sqlState(client.query(sql))).toBe('42501');
    const { rows } = await client.query('show standard_conforming_strings');
    expect(rows[0].standard_conforming_strings).toBe('on');
  });

  it('refuses SET LOCAL standard_conforming_strings inside a transaction', async () => {
    const client = await connect(['readers']);
    await client.query('BEGIN');
    expect(await sqlState(client.query('SET LOCAL standard_conforming_strings = off'))).toBe('42501');
    await client.query('ROLLBACK');
    expect((await client.query('show standard_conforming_strings')).rows[0].standard_conforming_strings).toBe('on');
  });

  it('changes nothing with the smuggling probes after SET standard_conforming_strings = off (psql, each -c one message)', async () => {
    const before = await victimCount();
    const result = await psql(['readers'], [
      'SET standard_conforming_strings = off',
      "SELECT 'x\\''; SET default_transaction_read_only = off; --'",
      "SELECT 'x\\''; DELETE FROM victim; CREATE TABLE pwned(a int); --'",
      'SHOW default_transaction_read_only',
    ]);
    expect(result.stderr).toMatch(/permission denied/);
    expect(result.stdout.trim().split('\n').at(-1)).toBe('on');
    expect(await victimCount()).toBe(before);
    expect(await pwned()).toBe(0);
  });

  it('closes the session (FATAL, audited) when the server reports standard_conforming_strings off, before a pipelined command is read wrongly', async () => {
    const before = await victimCount();
    const raw = await openRaw(['tuner']);
    // One write: the SET (allowed to this subject) and a command that lexes differently once it ran.
    raw.send(encodeQuery('SET standard_conforming_strings = off'), encodeQuery("SELECT 'x\\''; DELETE FROM victim; CREATE TABLE pwned(a int); --'"));
    await waitFor(() => raw.closed);
    const fatal = raw.errors().find((e) => e.S === 'FATAL');
    expect(fatal?.C).toBe('0A000');
    expect(await victimCount()).toBe(before);
    expect(await pwned()).toBe(0);
    const ended = events.find((e) => e.kind === 'session.ended' && e.data.reason === 'lexer_state_changed');
    expect(ended).toBeDefined();
  });

  it('closes the session when a function flips standard_conforming_strings, before the next backslash text is decided', async () => {
    const before = await victimCount();
    // A user function called by name may do anything (functions are closed by default, and it
    // meets the deny on public.secrets): a view hides the call from the text.
    const raw = await openRaw(['runners']);
    raw.send(encodeQuery('SELECT flipped FROM lexer_view'), encodeQuery("SELECT 'x\\''; DELETE FROM victim; --'"));
    await waitFor(() => raw.closed);
    expect(raw.errors().some((e) => e.S === 'FATAL' && e.C === '0A000')).toBe(true);
    expect(await victimCount()).toBe(before);
  });

  it('refuses backslash text after an Execute that has not been synced yet (settings are reported only at ReadyForQuery)', async () => {
    const raw = await openRaw(['ops']);
    raw.send(parse('', 'SELECT flipped FROM lexer_view'), bind('', ''), execute(''), flush());
    await waitFor(() => raw.count('CommandComplete') >= 1);
    // With standard_conforming_strings on this is one string; with it off, a read of public.secrets.
    raw.send(parse('', "SELECT 'a\\'' FROM secrets --'"), bind('', ''), execute(''), encodeSync());
    await raw.readyCount(2);
    expect(raw.errors().map((e) => e.C)).toEqual(['42501']);
    expect(raw.messages.filter((m) => m.type === 'DataRow').length).toBe(1);
    // The refusal reaches the target as an error inside the unsynced implicit transaction, so the
    // target rolls the flipped setting back, as its own error would: it lexes as the classifier does.
    raw.send(encodeQuery('SHOW standard_conforming_strings'));
    await raw.readyCount(3);
    const shown = raw.messages.filter((m) => m.type === 'DataRow').map((m) => (m as { values: readonly (Buffer | null)[] }).values[0]?.toString());
    expect(shown.at(-1)).toBe('on');
  });

  it('refuses a backslash Parse that follows an Execute in the same batch; the Execute before it runs and is rolled back with it', async () => {
    const raw = await openRaw(['ops']);
    raw.send(parse('', 'SELECT flipped FROM lexer_view'), bind('', ''), execute(''), parse('s9', "SELECT 'a\\'' FROM secrets --'"), bind('p9', 's9'), execute('p9'), encodeSync());
    await raw.readyCount(2);
    expect(raw.errors().map((e) => e.C)).toEqual(['42501']);
    // Only the view's row: nothing of the refused Parse ran.
    expect(raw.count('DataRow')).toBe(1);
    raw.send(encodeQuery('SHOW standard_conforming_strings'));
    await raw.readyCount(3);
    expect(raw.closed).toBe(false);
    const shown = raw.messages.filter((m) => m.type === 'DataRow').map((m) => (m as { values: readonly (Buffer | null)[] }).values[0]?.toString());
    expect(shown.at(-1)).toBe('on');
  });

  it('refuses a session on a database whose default is standard_conforming_strings off', async () => {
    await direct.query(`alter database ${database} set standard_conforming_strings = off`);
    try {
      const code = await sqlState(connect(['readers']));
      expect(code).toBe('0A000');
    } finally {
      await direct.query(`alter database ${database} reset standard_conforming_strings`);
    }
  });
});

// ---------------------------------------------------------------- finding 2: prepared statements

describe('prepared statements are what the server holds', () => {
  it('decides Bind/Execute of s1 as the DELETE the server kept, not the SELECT 1 it refused with 42P05', async () => {
    const before = await victimCount();
    const decidedBefore = events.filter((e) => e.kind === 'command.decided').length;
    const raw = await openRaw(['ops']);
    raw.send(parse('s1', 'DELETE FROM victim'), encodeSync());
    await raw.readyCount(2);
    raw.send(parse('s1', 'SELECT 1'), encodeSync());
    await raw.readyCount(3);
    expect(raw.errors().at(-1)?.C).toBe('42P05');
    raw.send(bind('', 's1'), execute(''), encodeSync());
    // Held for approval as the DELETE it is; the approver says no.
    const request = await approvals.decideNext({ outcome: 'denied', approvers: ['dba'], reason: 'no' });
    expect(request.command).toBe('DELETE FROM victim');
    await raw.readyCount(4);
    expect(raw.errors().at(-1)?.C).toBe('42501');
    expect(raw.messages.some((m) => m.type === 'CommandComplete' && /DELETE/.test((m as { tag: string }).tag))).toBe(false);
    expect(await victimCount()).toBe(before);
    const decided = events.slice(0).filter((e) => e.kind === 'command.decided').slice(decidedBefore);
    // The Parse held for approval is on the record; nothing was recorded as running `SELECT 1`.
    expect(decided.some((e) => e.data.command === 'DELETE FROM victim' && e.data.decision === 'approve')).toBe(true);
    expect(decided.some((e) => e.data.command === 'SELECT 1' && e.data.decision === 'allow')).toBe(false);
  });

  it('decides a Bind of a name re-PREPAREd in SQL after DEALLOCATE as the new statement', async () => {
    const before = await victimCount();
    const raw = await openRaw(['ops']);
    raw.send(parse('s3', 'SELECT 1'), encodeSync());
    await raw.readyCount(2);
    raw.send(encodeQuery('DEALLOCATE s3'));
    await raw.readyCount(3);
    raw.send(encodeQuery('PREPARE s3 AS DELETE FROM victim'));
    // PREPARE of an unbounded DELETE is held too; granted, it only prepares.
    await approvals.decideNext({ outcome: 'granted', approvers: ['dba'], reason: 'prepare only' });
    await raw.readyCount(4);
    raw.send(bind('', 's3'), execute(''), encodeSync());
    const request = await approvals.decideNext({ outcome: 'denied', approvers: ['dba'], reason: 'no' });
    expect(request.command).toContain('DELETE FROM victim');
    await raw.readyCount(5);
    expect(raw.errors().at(-1)?.C).toBe('42501');
    expect(await victimCount()).toBe(before);
  });

  it('decides a pipelined SQL EXECUTE of a name re-Parsed in flight as the statement the server will hold', async () => {
    const before = await victimCount();
    const raw = await openRaw(['ops']);
    raw.send(parse('s5', 'SELECT 1'), encodeSync());
    await raw.readyCount(2);
    const close = frontend('C', Buffer.concat([Buffer.from('S'), cstring('s5')]));
    raw.send(close, parse('s5', 'DELETE FROM victim'), encodeSync(), encodeQuery('EXECUTE s5'));
    const request = await approvals.decideNext({ outcome: 'denied', approvers: ['dba'], reason: 'no' });
    expect(request.command).toBe('EXECUTE s5');
    await raw.readyCount(4);
    expect(raw.errors().at(-1)?.C).toBe('42501');
    expect(await victimCount()).toBe(before);
  });

  it('runs the DELETE once when the approver grants it, under its own record', async () => {
    await direct.query('insert into victim values (4)');
    const before = await victimCount();
    const raw = await openRaw(['ops']);
    raw.send(parse('s2', 'DELETE FROM victim WHERE true'), encodeSync());
    await raw.readyCount(2);
    raw.send(parse('s2', 'SELECT 1'), encodeSync());
    await raw.readyCount(3);
    raw.send(bind('', 's2'), execute(''), encodeSync());
    const request = await approvals.decideNext({ outcome: 'granted', approvers: ['dba'], reason: 'ok' });
    expect(request.command).toBe('DELETE FROM victim WHERE true');
    await raw.readyCount(4);
    expect(raw.messages.some((m) => m.type === 'CommandComplete' && (m as { tag: string }).tag === `DELETE ${before}`)).toBe(true);
    await direct.query('insert into victim values (1), (2), (3)');
  });
});

// ---------------------------------------------------------------- findings 3 and 4: search_path

describe('search_path comes from the server', () => {
  it('denies SELECT * FROM secrets under a deny rule on public.secrets when the login user has no schema of that name', async () => {
    const client = await connect(['readers']);
    expect(await sqlState(client.query('SELECT * FROM secrets'))).toBe('42501');
    const decided = events.filter((e) => e.kind === 'command.decided' && e.data.command === 'SELECT * FROM secrets');
    expect(decided.at(-1)?.data.tables).toEqual(['public.secrets']);
  });

  it('denies SELECT * FROM secrets when an earlier schema of the path has no such table (the server reads public.secrets)', async () => {
    const client = await connect(['readers']);
    await client.query('SET search_path = secret, public');
    expect(await sqlState(client.query('SELECT * FROM secrets'))).toBe('42501');
  });

  it.each([
    ["SET SCHEMA 'secret'"],
    ['SET U&"search\\005fpath" TO secret'],
    ["SELECT set_config('search_path', 'secret', false)"],
  ])('denies orders under tables: [public.orders] after %s', async (change) => {
    const client = await connect(['orders']);
    expect((await client.query('SELECT item FROM orders')).rows).toEqual([{ item: 'public-order' }]);
    await client.query(change);
    expect(await sqlState(client.query('SELECT item FROM orders'))).toBe('42501');
  });

  it('denies orders after BEGIN; SET LOCAL search_path = secret, and allows them again after ROLLBACK', async () => {
    const client = await connect(['orders']);
    await client.query('BEGIN');
    await client.query('SET LOCAL search_path = secret');
    expect(await sqlState(client.query('SELECT item FROM orders'))).toBe('42501');
    await client.query('ROLLBACK');
    expect((await client.query('SELECT item FROM orders')).rows).toEqual([{ item: 'public-order' }]);
  });

  it('refuses while an unsynced Execute may have changed search_path, then reads it again at the Sync (raw protocol)', async () => {
    const raw = await openRaw(['ops']);
    raw.send(parse('', "SELECT set_config('search_path', 'secret', false)"), bind('', ''), execute(''), flush());
    await waitFor(() => raw.count('CommandComplete') >= 1);
    raw.send(parse('', 'SELECT item FROM orders'), bind('', ''), execute(''), encodeSync());
    await raw.readyCount(2);
    expect(raw.errors().at(-1)?.C).toBe('42501');
    raw.send(parse('', 'SELECT item FROM orders'), bind('', ''), execute(''), encodeSync());
    await raw.readyCount(3);
    // The refusal reaches the target as an error inside the unsynced implicit transaction, so the
    // target rolls the set_config back, as its own error would: the path read again is public.
    const rows = raw.messages.filter((m) => m.type === 'DataRow').map((m) => (m as { values: readonly (Buffer | null)[] }).values[0]?.toString());
    expect(rows.at(-1)).toBe('public-order');
    const decided = events.filter((e) => e.kind === 'command.decided' && e.data.command === 'SELECT item FROM orders');
    expect(decided.at(-1)?.data.tables).toEqual(['public.orders']);
  });

  it('follows ROLLBACK back to a session-level search_path the proxy had seen changed inside the transaction', async () => {
    const client = await connect(['orders']);
    await client.query('SET search_path = secret');
    await client.query('BEGIN');
    await client.query('SET LOCAL search_path = public');
    expect((await client.query('SELECT item FROM orders')).rows).toEqual([{ item: 'public-order' }]);
    await client.query('ROLLBACK');
    // The server is back on `secret`: `orders` is secret.orders again.
    expect(await sqlState(client.query('SELECT item FROM orders'))).toBe('42501');
  });

  it('refuses a message that changes search_path and then names a table without its schema (psql)', async () => {
    const result = await psql(['orders'], ['SET search_path = public', 'BEGIN; SET LOCAL search_path = secret; SELECT item FROM orders; COMMIT']);
    expect(result.stdout).not.toContain('SECRET-ORDER');
    expect(result.stderr).toMatch(/permission denied/);
  });

  it('follows ROLLBACK TO SAVEPOINT back to the path the server restores (pg)', async () => {
    const client = await connect(['orders']);
    await client.query('SET search_path = secret');
    await client.query('BEGIN');
    await client.query('SAVEPOINT a');
    await client.query('SET LOCAL search_path = public');
    expect((await client.query('SELECT item FROM orders')).rows).toEqual([{ item: 'public-order' }]);
    await client.query('ROLLBACK TO SAVEPOINT a');
    expect(await sqlState(client.query('SELECT item FROM orders'))).toBe('42501');
    await client.query('ROLLBACK');
  });

});
