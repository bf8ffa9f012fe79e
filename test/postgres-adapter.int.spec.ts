import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import net, { type AddressInfo } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  decodeBackend,
  encodeCancelRequest,
  encodePasswordMessage,
  encodeQuery,
  encodeStartupMessage,
  FrameReader,
  type BackendMessage,
} from '@sluice/codec-pg';
import fc from 'fast-check';
import type { PostgresResourceConfig } from '@sluice/config';
import { DependencyUnavailableError, SluiceErrorCode, type Action, type DenyDecision, type SluiceEventKind, type Subject } from '@sluice/contracts';
import { createTokenVerifier } from '@sluice/identity';
import type { ColumnInfo, MaskCounts, ProfileMasker } from '@sluice/masking-engine';
import type { ApprovalOutcome, ApprovalRequest, Decision, GovernancePorts, GovernedCommand } from '../services/proxy/src/ports.js';
import { createPostgresAdapter, type PostgresAdapter } from '../services/proxy/src/postgres/adapter.js';
import { createDatabase, dropDatabases } from './support/databases.js';
import { startTestIssuer, type TestIssuer } from './support/oidc.js';
import { listenPostgresProxy, openClient, sqlState, waitFor as pollUntil } from './support/postgres-proxy-harness.js';
import { maskBinaryVia } from './support/fake-masker.js';

// ---------------------------------------------------------------- test ports (in-process)

/**
 * A stand-in policy for these tests only: statements are told apart by their first keyword.
 * (The real classifier parses SQL with the PostgreSQL grammar; it is not under test here.)
 */
const classify = (text: string, prepared: ReadonlyMap<string, string> | undefined): Action => {
  const rank: Action[] = ['read', 'write', 'ddl', 'admin'];
  let widest: Action = 'read';
  for (const raw of text.split(';')) {
    const part = raw.trim().toLowerCase();
    if (!part) continue;
    let action: Action = 'read';
    const execute = /^execute\s+"?(\w+)"?/.exec(part);
    const prepare = /^prepare\s+\w+(?:\s*\([^)]*\))?\s+as\s+(.*)$/s.exec(part);
    if (execute) {
      const source = prepared?.get(execute[1]!);
      const body = source ? /prepare\s+\w+(?:\s*\([^)]*\))?\s+as\s+([^;]*)/is.exec(source)?.[1] : undefined;
      action = body ? classify(body, undefined) : 'admin';
    } else if (prepare) action = classify(prepare[1]!, undefined);
    else if (part.includes('admin_thing')) action = 'admin';
    else if (/^(insert|update|delete)\b/.test(part) || /^copy\s+\w+\s+from\b/.test(part)) action = 'write';
    else if (/^(create|drop|alter|truncate)\b/.test(part)) action = 'ddl';
    if (rank.indexOf(action) > rank.indexOf(widest)) widest = action;
  }
  return widest;
};

type DecisionFields = Partial<Omit<DenyDecision, 'effect'>> & Pick<Decision, 'action'> & { readonly maskProfile?: string };
const decision = ({ effect, maskProfile, ...fields }: DecisionFields & Pick<Decision, 'effect'>): Decision => {
  const basis = { rule: '', reason: '', risk: 'low' as const, tables: [], prepares: [], ...fields };
  switch (effect) {
    case 'allow':
      return { ...basis, effect, maskProfile };
    case 'approve':
      return { ...basis, effect, approvers: { groups: [], subs: [], minApprovals: 1 }, approvalTimeoutMs: 60_000, maskProfile };
    case 'deny':
      return { ...basis, effect };
  }
};

class TestPolicy {
  down = false;
  readonly decided: string[] = [];
  lastSearchPath: readonly string[] | undefined;

  async describeSession(subject: Subject) {
    if (this.down) throw new DependencyUnavailableError(SluiceErrorCode.PolicyUnavailable, 'down');
    return { mayConnect: subject.groups.length > 0, readOnly: !subject.groups.includes('ops') };
  }

  async decide(subject: Subject, resource: string, command: GovernedCommand): Promise<Decision> {
    if (this.down) throw new DependencyUnavailableError(SluiceErrorCode.PolicyUnavailable, 'down');
    if (command.kind !== 'sql') throw new Error('sql only');
    this.decided.push(command.text);
    this.lastSearchPath = command.searchPath;
    const action = classify(command.text, command.preparedStatements);
    const prepares = [...command.text.matchAll(/prepare\s+(\w+)/gi)].map((m) => m[1]!.toLowerCase());
    if (action === 'admin') return decision({ effect: 'deny', action, rule: 'never-admin', reason: 'admin statement', risk: 'critical' });
    if (subject.groups.includes('ops')) {
      // A leading comment (an agent's justification) does not hide the statement from this stand-in.
      if (/^\s*(?:\/\*[\s\S]*?\*\/\s*)?delete\b/i.test(command.text)) {
        return decision({ effect: 'approve', action, rule: 'risky-needs-dba', reason: 'needs a DBA', risk: 'high', prepares });
      }
      return decision({ effect: 'allow', action, rule: 'ops-change', reason: 'ops may change', maskProfile: 'pii', prepares });
    }
    if (action === 'read') return decision({ effect: 'allow', action, rule: 'support-read', reason: 'support reads', maskProfile: 'pii', prepares });
    return decision({ effect: 'deny', action, reason: `no rule allows ${action} on ${resource}`, risk: 'medium' });
  }
}

const EMAIL = /[\w.+-]+@([\w-]+(?:\.[\w-]+)+)/g;
const count = (counts: MaskCounts, key: string): void => {
  counts[key] = (counts[key] ?? 0) + 1;
};
const columnRule = (column: ColumnInfo | undefined): boolean =>
  column !== undefined && (/ssn|secret_num/i.test(column.name) || /\.customers\.notes$/.test(column.qualifiedName ?? ''));

/** A small fake of the masking engine: emails keep their domain, ssn-like columns are redacted. */
const piiMasker: ProfileMasker = {
  name: 'pii',
  maskCell(value, column, counts) {
    if (columnRule(column)) {
      count(counts, 'column:ssn');
      return '***-**-****';
    }
    return this.maskText(value, counts);
  },
  maskText(value, counts) {
    return value.replace(EMAIL, (_match, domain: string) => {
      count(counts, 'email');
      return `***@${domain}`;
    });
  },
  maskJson(value) {
    return value;
  },
  hasColumnRule: (column) => columnRule(column),
  maskBinaryCell: (value, column, counts) => maskBinaryVia(piiMasker)(value, column, counts),
};

class TestMasking {
  down = false;
  /** The profile's masker: another object stands for a new version of the masking profiles. */
  pii: ProfileMasker = piiMasker;
  /** Every text maskCommandText was asked to mask. */
  readonly commandTexts: string[] = [];
  masker(profile: string | undefined): ProfileMasker | undefined {
    if (this.down) throw new DependencyUnavailableError(SluiceErrorCode.MaskingUnavailable, 'profiles are not current');
    return profile === 'pii' ? this.pii : undefined;
  }
  maskCommandText(text: string): string {
    this.commandTexts.push(text);
    return piiMasker.maskText(text, {});
  }
}

class TestApprovals {
  readonly requests: (ApprovalRequest & { approvalId: string })[] = [];
  readonly consumed = new Set<string>();
  readonly cancelled: string[] = [];
  readonly #waiting = new Map<string, (outcome: ApprovalOutcome) => void>();

  async request(request: ApprovalRequest) {
    const approvalId = `appr-${randomUUID().slice(0, 8)}`;
    this.requests.push({ ...request, approvalId });
    return { approvalId, expiresAt: new Date(Date.now() + 60_000) };
  }

  awaitDecision(approvalId: string, signal: AbortSignal): Promise<ApprovalOutcome> {
    return new Promise((resolve) => {
      this.#waiting.set(approvalId, resolve);
      signal.addEventListener('abort', () => {
        this.cancelled.push(approvalId);
        resolve({ outcome: 'cancelled', approvers: [], reason: 'client disconnected' });
      });
    });
  }

  async consume(approvalId: string) {
    if (this.consumed.has(approvalId)) return false;
    this.consumed.add(approvalId);
    return true;
  }

  /** Waits for the next request, then answers it. */
  async decideNext(outcome: ApprovalOutcome): Promise<ApprovalRequest & { approvalId: string }> {
    const before = this.requests.length;
    await waitFor(() => this.#waiting.size > 0 && this.requests.length > 0);
    const request = this.requests.at(-1)!;
    expect(this.requests.length).toBeGreaterThanOrEqual(before);
    const resolve = this.#waiting.get(request.approvalId)!;
    this.#waiting.delete(request.approvalId);
    resolve(outcome);
    return request;
  }
}

interface RecordedEvent {
  readonly sessionId: string;
  readonly kind: SluiceEventKind;
  readonly data: Record<string, unknown>;
}

class TestAudit {
  healthy = true;
  readonly events: RecordedEvent[] = [];
  record(sessionId: string, kind: SluiceEventKind, data: unknown): void {
    this.events.push({ sessionId, kind, data: data as Record<string, unknown> });
  }
  of(kind: SluiceEventKind): RecordedEvent[] {
    return this.events.filter((e) => e.kind === kind);
  }
}

const waitFor = (condition: () => boolean, timeoutMs = 5_000): Promise<void> => pollUntil(condition, timeoutMs);

// ---------------------------------------------------------------- fixture

const database = `sluice_pg_adapter_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
let issuer: TestIssuer;
let server: net.Server;
let port: number;
let adapter: PostgresAdapter;
let policy: TestPolicy;
let masking: TestMasking;
let approvals: TestApprovals;
let audit: TestAudit;
let direct: pg.Client;
const clients: pg.Client[] = [];

const token = (groups: string[], extra: { expiresIn?: number; aud?: string } = {}) => issuer.mint({ sub: `agent-${groups.join('-')}`, groups, ...extra });

const connect = async (groups: string[] = ['readers']): Promise<pg.Client> =>
  openClient({ host: '127.0.0.1', port, user: 'agent', database: 'test-db', password: await token(groups) }, clients);

const psql = async (password: string, sql: string): Promise<{ code: number | null; stdout: string; stderr: string }> =>
  new Promise((resolve, reject) => {
    const child = spawn('psql', ['-h', '127.0.0.1', '-p', String(port), '-U', 'agent', '-d', 'test-db', '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-c', sql], {
      env: { ...process.env, PGPASSWORD: password, PGSSLMODE: 'prefer', PGCONNECT_TIMEOUT: '5' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });

beforeAll(async () => {
  issuer = await startTestIssuer();
  await createDatabase(database);
  direct = new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database });
  await direct.connect();
  await direct.query(`
    create table customers (id int primary key, name text, email text, ssn text, balance numeric(10,2), profile jsonb, notes text default 'vip');
    insert into customers values
      (1, 'Ada Lovelace', 'ada@example.com', '123-45-6789', 10.50, '{"contact": "ada@example.com", "tier": 1}'),
      (2, 'Alan Turing', 'alan@example.org', '987-65-4321', 20.00, '{"contact": "alan@example.org", "tier": 2}'),
      (3, 'Grace Hopper', 'grace@example.net', '111-22-3333', 30.25, null);
    create table probe (n int);
    create function delete_everything() returns int language sql volatile as 'delete from customers returning 1';
  `);
  const resource: PostgresResourceConfig = {
    name: 'test-db',
    type: 'postgres',
    listen: '127.0.0.1:0',
    target: { host: '127.0.0.1', port: 5432, database, ssl: false },
    credentials: { username: 'postgres' },
  };
  adapter = createPostgresAdapter(resource, { secretsDir: process.cwd() });
  const verifier = createTokenVerifier([{ issuer: issuer.issuer, audience: 'sluice', clockTolerance: 0 }]);
  policy = new TestPolicy();
  masking = new TestMasking();
  approvals = new TestApprovals();
  audit = new TestAudit();
  const ports: GovernancePorts = {
    identity: { verify: async (t) => verifier.verify(t) },
    policy,
    masking,
    approvals,
    audit,
    recording: { maxRows: 2, maxBytes: 65_536 },
    newId: randomUUID,
    now: () => new Date(),
  };
  ({ server, port } = await listenPostgresProxy(adapter, ports));
});

beforeEach(() => {
  policy.down = false;
  masking.down = false;
  masking.pii = piiMasker;
  audit.healthy = true;
});

afterAll(async () => {
  for (const client of clients) await client.end().catch(() => {});
  await adapter?.close();
  await new Promise((resolve) => server?.close(resolve));
  await direct?.end();
  await dropDatabases([database]);
  await issuer?.close();
});

/** A hand-driven protocol session: startup and token auth done, then raw bytes in and messages out. */
const rawSession = async (groups: string[] = ['readers']) => {
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
  socket.write(encodeStartupMessage([['user', 'agent'], ['database', 'test-db']]));
  await waitFor(() => messages.length > 0);
  socket.write(encodePasswordMessage(await token(groups)));
  await waitFor(() => messages.some((m) => m.type === 'ReadyForQuery'));
  messages.length = 0;
  return { socket, messages, isClosed: () => closed };
};

// ---------------------------------------------------------------- tests

describe('PostgreSQL adapter: authentication', () => {
  it('accepts a valid token as the password and starts an audited session', async () => {
    const client = await connect();
    const { rows } = await client.query('select 1 as one');
    expect(rows).toEqual([{ one: 1 }]);
    const started = audit.of('session.started').at(-1)!;
    expect(started.data).toMatchObject({ resource: 'test-db', protocol: 'postgres', readOnly: true, subject: { sub: 'agent-readers' } });
  });

  it('refuses garbage, expired and wrongly addressed tokens with 28P01 and records session.rejected', async () => {
    const rejectedBefore = audit.of('session.rejected').length;
    for (const password of ['not-a-token', await token(['readers'], { expiresIn: -60 }), await token(['readers'], { aud: 'someone-else' }), issuer.mintUnsigned({ sub: 'x', groups: ['readers'] })]) {
      const client = new pg.Client({ host: '127.0.0.1', port, user: 'agent', database: 'test-db', password });
      client.on('error', () => {});
      expect(await sqlState(client.connect())).toBe('28P01');
    }
    expect(audit.of('session.rejected').length - rejectedBefore).toBe(4);
    expect(audit.of('session.rejected').at(-1)!.data).toMatchObject({ code: 'ERR_TOKEN_INVALID', protocol: 'postgres' });
  });

  it('closes the session with FATAL 28P01 when the token expires', async () => {
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'agent', database: 'test-db', password: await token(['readers'], { expiresIn: 2 }) });
    const failure = new Promise<{ code?: string }>((resolve) => client.on('error', (error: Error) => resolve(error as { code?: string })));
    await client.connect();
    expect((await failure).code).toBe('28P01');
    await waitFor(() => audit.of('session.ended').some((e) => e.data.reason === 'token_expired'));
  });
});

describe('PostgreSQL adapter: simple query protocol', () => {
  it('returns a granted SELECT with its rows masked, names and amounts intact', async () => {
    const client = await connect();
    const { rows } = await client.query('select id, name, email, ssn, balance from customers order by id');
    expect(rows[0]).toEqual({ id: 1, name: 'Ada Lovelace', email: '***@example.com', ssn: '***-**-****', balance: '10.50' });
    expect(rows.map((r) => r.email)).toEqual(['***@example.com', '***@example.org', '***@example.net']);
  });

  it('applies a schema.table.column rule through the catalog, and not to a computed column of the same name', async () => {
    const client = await connect();
    const { rows } = await client.query("select c.notes, 'plain' as notes2 from customers c where id = 1");
    expect(rows).toEqual([{ notes: '***-**-****', notes2: 'plain' }]);
    const extended = await client.query('select notes from customers where id = $1', [2]);
    expect(extended.rows).toEqual([{ notes: '***-**-****' }]);
  });

  it('passes the session search_path to the policy, read again after the agent sets it', async () => {
    const client = await connect();
    await client.query('select 1');
    expect(policy.lastSearchPath).toEqual(['pg_catalog', 'public']);
    await client.query('set search_path to pg_catalog, public');
    await client.query('select 1');
    expect(policy.lastSearchPath).toEqual(['pg_catalog', 'public']);
  });

  it('masks values the target quotes in an error, such as a unique violation detail', async () => {
    const client = await connect(['ops']);
    await direct.query('create unique index if not exists customers_email on customers (email)');
    const error = (await client.query("insert into customers (id, email) values (99, 'ada@example.com')").catch((e: unknown) => e)) as {
      code?: string;
      detail?: string;
    };
    expect(error.code).toBe('23505');
    expect(error.detail).toContain('***@example.com');
    expect(error.detail).not.toContain('ada@example.com');
    const bound = (await client.query('select $1::int', ['bob@example.org']).catch((e: unknown) => e)) as { code?: string; message: string };
    expect(bound.code).toBe('22P02');
    expect(bound.message).not.toContain('bob@example.org');
    expect(JSON.stringify(audit.events)).not.toMatch(/ada@example\.com|bob@example\.org/);
  });

  it('records decided, completed and the masked result, truncated at the recording limit', async () => {
    const client = await connect();
    await client.query('select id, email from customers order by id');
    const decided = audit.of('command.decided').at(-1)!;
    expect(decided.data).toMatchObject({ decision: 'allow', rule: 'support-read', action: 'read', protocol: 'postgres' });
    const result = audit.of('result.returned').find((e) => e.data.commandId === decided.data.commandId)!;
    expect(result.data).toMatchObject({ columns: ['id', 'email'], rowCount: 3, truncated: true, rows: [['1', '***@example.com'], ['2', '***@example.org']] });
    expect((result.data.maskedCounts as MaskCounts).email).toBe(3);
    await waitFor(() => audit.of('command.completed').some((e) => e.data.commandId === decided.data.commandId));
    expect(audit.of('command.completed').find((e) => e.data.commandId === decided.data.commandId)!.data).toMatchObject({ outcome: 'SELECT 3', ok: true });
    expect(JSON.stringify(audit.events)).not.toContain('ada@example.com');
  });

  it('has recorded a command whole, result then outcome, by the time its ReadyForQuery reaches the agent', async () => {
    // The ReadyForQuery that ends the target's chunk is written before the command's records are
    // made: they must still be made in that same turn, before the agent can read the answer.
    const client = await connect();
    for (let id = 1; id <= 20; id++) {
      const before = audit.events.length;
      const { rows } = await client.query(`select id, email from customers where id = ${1 + (id % 3)}`);
      expect(rows).toHaveLength(1);
      const mine = audit.events.slice(before).filter((e) => e.sessionId === audit.events.at(-1)!.sessionId);
      expect(mine.map((e) => e.kind)).toEqual(['command.decided', 'result.returned', 'command.completed']);
      const commandId = mine[0]!.data.commandId;
      expect(mine.every((e) => e.data.commandId === commandId)).toBe(true);
      expect(mine[1]!.data).toMatchObject({ rowCount: 1, rows: [[String(1 + (id % 3)), expect.stringMatching(/^\*\*\*@/)]] });
      expect(mine[2]!.data).toMatchObject({ outcome: 'SELECT 1', ok: true });
    }
  });

  it('denies an ungranted DELETE with 42501 before it reaches the target and keeps the session usable', async () => {
    const client = await connect();
    expect(await sqlState(client.query('delete from customers'))).toBe('42501');
    expect((await direct.query('select count(*)::int as n from customers')).rows[0].n).toBe(3);
    expect((await client.query('select count(*)::int as n from customers')).rows[0].n).toBe(3);
  });

  it('names the deciding rule in the denial message', async () => {
    const client = await connect(['ops']);
    const error = await client.query('select admin_thing()').catch((e: Error) => e);
    expect((error as { code?: string }).code).toBe('42501');
    expect((error as Error).message).toContain('never-admin');
  });

  it('runs no part of a multi-statement message when one part is denied', async () => {
    const client = await connect(['ops']);
    expect(await sqlState(client.query('insert into probe values (1); select admin_thing()'))).toBe('42501');
    expect((await direct.query('select count(*)::int as n from probe')).rows[0].n).toBe(0);
    expect((await client.query('select 2 as two')).rows).toEqual([{ two: 2 }]);
  });

  it('leaves the transaction aborted after a denial inside a transaction block, as an error of the server would', async () => {
    const client = await connect();
    await client.query('begin');
    expect(await sqlState(client.query('delete from customers'))).toBe('42501');
    expect(await sqlState(client.query('select 1 as one'))).toBe('25P02');
    await client.query('rollback');
    expect((await client.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
  });

  it('makes a read-only session fail a function whose body deletes with 25006', async () => {
    const client = await connect();
    expect(await sqlState(client.query('select delete_everything()'))).toBe('25006');
    expect((await direct.query('select count(*)::int as n from customers')).rows[0].n).toBe(3);
    expect(await sqlState(client.query('select 1'))).toBeUndefined();
  });

  it('answers EXECUTE of a PREPAREd write with the action of what was prepared', async () => {
    const client = await connect(['readers']);
    expect(await sqlState(client.query('prepare p1 as select email from customers where id = $1'))).toBeUndefined();
    const { rows } = await client.query('execute p1(2)');
    expect(rows).toEqual([{ email: '***@example.org' }]);
    expect(await sqlState(client.query('prepare p2 as delete from customers'))).toBe('42501');
  });

  it('masks COPY TO STDOUT rows and forwards COPY FROM STDIN data of an allowed statement', async () => {
    const reader = await psql(await token(['readers']), 'copy (select id, email from customers order by id) to stdout');
    expect(reader.code).toBe(0);
    expect(reader.stdout).toBe('1\t***@example.com\n2\t***@example.org\n3\t***@example.net\n');
    const opsPassword = await token(['ops']);
    const copyIn = await new Promise<{ code: number | null }>((resolve, reject) => {
      const child = spawn('psql', ['-h', '127.0.0.1', '-p', String(port), '-U', 'agent', '-X', '-v', 'ON_ERROR_STOP=1', '-c', 'copy probe from stdin'], {
        env: { ...process.env, PGPASSWORD: opsPassword },
      });
      child.stdin.end('41\n42\n\\.\n');
      child.on('error', reject);
      child.on('exit', (code) => resolve({ code }));
    });
    expect(copyIn.code).toBe(0);
    expect((await direct.query('select count(*)::int as n from probe where n in (41, 42)')).rows[0].n).toBe(2);
  });
});

describe('PostgreSQL adapter: psql', () => {
  it('runs a granted SELECT and refuses a DELETE with 42501 through real psql', async () => {
    const password = await token(['readers']);
    const granted = await psql(password, 'select name, email from customers where id = 1');
    expect(granted).toMatchObject({ code: 0, stdout: 'Ada Lovelace|***@example.com\n' });
    const denied = await psql(password, 'delete from customers');
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toContain('permission denied');
    const badToken = await psql('garbage', 'select 1');
    expect(badToken.code).not.toBe(0);
  });
});

describe('PostgreSQL adapter: extended query protocol', () => {
  it('runs a query with parameters and masks its rows', async () => {
    const client = await connect();
    const { rows } = await client.query('select $1::int + 1 as n, email from customers where id = $2', [41, 1]);
    expect(rows).toEqual([{ n: 42, email: '***@example.com' }]);
  });

  it('runs a named prepared statement again without a new Parse and still masks', async () => {
    const client = await connect();
    const first = await client.query({ name: 'by-id', text: 'select email from customers where id = $1', values: [1] });
    const second = await client.query({ name: 'by-id', text: 'select email from customers where id = $1', values: [2] });
    expect([first.rows, second.rows]).toEqual([[{ email: '***@example.com' }], [{ email: '***@example.org' }]]);
  });

  it('masks the recorded text of a statement Parsed again for every execution once per masker, and again under a new one', async () => {
    const client = await connect();
    const text = "select id from customers where email = 'ada@example.com' and id = $1";
    const masked = "select id from customers where email = '***@example.com' and id = $1";
    const before = audit.of('command.decided').length;
    // node-postgres sends an unnamed query's Parse with every execution.
    for (const id of [1, 2, 1]) await client.query(text, [id]);
    expect(masking.commandTexts.filter((t) => t === text)).toHaveLength(1);
    // A new version of the profiles (another masker): the text is masked again with it.
    masking.pii = { ...piiMasker };
    expect((await client.query(text, [1])).rows).toEqual([{ id: 1 }]);
    expect(masking.commandTexts.filter((t) => t === text)).toHaveLength(2);
    const recorded = audit.of('command.decided').slice(before).map((e) => e.data.command);
    expect(recorded).toEqual([masked, masked, masked, masked]);
  });

  it('refuses a denied Parse with 42501 and runs nothing of its batch', async () => {
    const client = await connect();
    expect(await sqlState(client.query({ name: 'wipe', text: 'delete from customers where id = $1', values: [1] }))).toBe('42501');
    expect((await direct.query('select count(*)::int as n from customers')).rows[0].n).toBe(3);
    // The refused name was never allowed: running it again is refused the same way.
    expect(await sqlState(client.query({ name: 'wipe', text: 'delete from customers where id = $1', values: [1] }))).toBe('42501');
    expect((await client.query('select $1::text as ok', ['yes'])).rows).toEqual([{ ok: 'yes' }]);
  });

  it('masks binary-format results: text re-encoded, jsonb re-encoded, ruled binary numbers nulled', async () => {
    const client = await connect();
    const { rows } = await client.query({
      text: 'select id, email, ssn, profile, 7::int4 as secret_num, balance from customers where id = $1',
      values: [1],
      binary: true,
    } as pg.QueryConfig);
    const row = rows[0] as Record<string, unknown>;
    // node-postgres hands binary values of types it has no binary parser for back as buffers.
    const text = (value: unknown): string => (Buffer.isBuffer(value) ? value.toString('utf8') : String(value));
    expect(text(row.email)).toBe('***@example.com');
    expect(text(row.ssn)).toBe('***-**-****');
    expect(row.secret_num).toBeNull();
    // Binary jsonb is a version byte (1) then the JSON text.
    const jsonb = text(row.profile);
    expect(jsonb.charCodeAt(0)).toBe(1);
    expect(JSON.parse(jsonb.slice(1))).toEqual({ contact: '***@example.com', tier: 1 });
    expect(row.id).toBe(1);
  });
});

describe('PostgreSQL adapter: approvals', () => {
  it('holds a command for approval and runs it once when granted', async () => {
    const client = await connect(['ops']);
    await direct.query(`insert into customers values (10, 'Temp', 'temp@example.com', null, 0, null)`);
    const running = client.query('delete from customers where id = 10');
    const request = await approvals.decideNext({ outcome: 'granted', approvers: ['dba-alice'], reason: 'ok' });
    expect(request.commandHash).toMatch(/^[0-9a-f]{64}$/);
    expect(request.command).toContain('delete from customers where id = 10');
    expect(request.justification).toBeUndefined();
    const result = await running;
    expect(result.rowCount).toBe(1);
    expect(approvals.consumed.has(request.approvalId)).toBe(true);
  });

  it('answers a denied approval with 42501 naming the approval id and runs nothing', async () => {
    const client = await connect(['ops']);
    const running = client.query('delete from customers where id = 3').catch((e: Error) => e);
    const held = await approvals.decideNext({ outcome: 'denied', approvers: ['dba-alice'], reason: 'not today' });
    const error = (await running) as Error & { code?: string };
    expect(error.code).toBe('42501');
    expect(error.message).toContain(held.approvalId);
    expect((await direct.query('select count(*)::int as n from customers where id = 3')).rows[0].n).toBe(1);
  });

  it('holds an extended-protocol command with its bound parameters in the hash', async () => {
    const client = await connect(['ops']);
    await direct.query(`insert into customers values (11, 'Temp', 'temp@example.com', null, 0, null)`);
    const running = client.query('/* justification: temp row of temp@example.com */ delete from customers where id = $1', [11]);
    const request = await approvals.decideNext({ outcome: 'granted', approvers: ['dba-bob'], reason: '' });
    expect((await running).rowCount).toBe(1);
    expect(request.commandHash).toMatch(/^[0-9a-f]{64}$/);
    // The leading comment is the agent's justification, masked as the command text is.
    expect(request.justification).not.toContain('temp@example.com');
    expect(request.justification).toMatch(/^temp row of \S+$/);
  });

  it('cancels the approval request when the client disconnects while held', async () => {
    const client = await connect(['ops']);
    void client.query('delete from customers where id = 2').catch(() => {});
    await waitFor(() => approvals.requests.length > 0 && !approvals.consumed.has(approvals.requests.at(-1)!.approvalId));
    const held = approvals.requests.at(-1)!;
    (client as unknown as { connection: { stream: net.Socket } }).connection.stream.destroy();
    await waitFor(() => approvals.cancelled.includes(held.approvalId));
    expect((await direct.query('select count(*)::int as n from customers where id = 2')).rows[0].n).toBe(1);
  });
});

describe('PostgreSQL adapter: failing closed', () => {
  it('withholds results with 58000 when masking is unavailable', async () => {
    const client = await connect();
    masking.down = true;
    const error = await client.query('select email from customers').catch((e: Error & { code?: string }) => e);
    expect((error as { code?: string }).code).toBe('58000');
    masking.down = false;
    expect((await client.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
  });

  it('denies with 42501 when the policy cannot answer', async () => {
    const client = await connect();
    policy.down = true;
    expect(await sqlState(client.query('select 1'))).toBe('42501');
  });

  it('refuses commands with 58000 while the audit trail is unhealthy', async () => {
    const client = await connect();
    audit.healthy = false;
    expect(await sqlState(client.query('select 1'))).toBe('58000');
    expect(await sqlState(client.query('select $1::int', [1]))).toBe('58000');
    audit.healthy = true;
    expect(await sqlState(client.query('select 1'))).toBeUndefined();
  });
});

describe('PostgreSQL adapter: protocol edges', () => {
  it('negotiates a newer 3.x protocol request down to 3.0 as the server does', async () => {
    const socket = net.connect(port, '127.0.0.1');
    const reader = new FrameReader({ phase: 'typed' });
    const messages: BackendMessage[] = [];
    socket.on('data', (chunk: Buffer) => messages.push(...reader.push(chunk).map(decodeBackend)));
    await new Promise((resolve) => socket.once('connect', resolve));
    const startup = encodeStartupMessage([['user', 'agent'], ['_pq_.test_option', 'x']]);
    startup.writeUInt32BE(196610, 4);
    socket.write(startup);
    await waitFor(() => messages.length >= 2);
    expect(messages[0]).toEqual({ type: 'NegotiateProtocolVersion', minorVersion: 0, unrecognized: ['_pq_.test_option'] });
    expect(messages[1]).toEqual({ type: 'AuthenticationCleartextPassword' });
    socket.destroy();
  });

  it('answers pipelined queries in order when a denied one follows an allowed one', async () => {
    const session = await rawSession();
    session.socket.write(Buffer.concat([encodeQuery('select pg_sleep(0.1), 1 as one'), encodeQuery('delete from customers'), encodeQuery('select 2 as two')]));
    await waitFor(() => session.messages.filter((m) => m.type === 'ReadyForQuery').length === 3);
    const types = session.messages.map((m) => m.type);
    expect(types).toEqual([
      'RowDescription', 'DataRow', 'CommandComplete', 'ReadyForQuery',
      'ErrorResponse', 'ReadyForQuery',
      'RowDescription', 'DataRow', 'CommandComplete', 'ReadyForQuery',
    ]);
    expect((session.messages[4] as { fields: Record<string, string> }).fields.C).toBe('42501');
    session.socket.destroy();
  });

  it('records every command of a pipelined message, each decision before its outcome', async () => {
    const session = await rawSession();
    const before = audit.events.length;
    session.socket.write(Buffer.concat([encodeQuery('select 1 as one'), encodeQuery('delete from customers'), encodeQuery('select 2 as two'), encodeQuery('select 3 as three')]));
    await waitFor(() => session.messages.filter((m) => m.type === 'ReadyForQuery').length === 4);
    await waitFor(() => audit.events.slice(before).filter((e) => e.kind === 'command.completed').length === 4);
    const events = audit.events.slice(before).filter((e) => e.kind.startsWith('command.') || e.kind === 'result.returned');
    const decided = events.filter((e) => e.kind === 'command.decided');
    expect(decided.map((e) => [e.data.command, e.data.decision])).toEqual([
      ['select 1 as one', 'allow'],
      ['delete from customers', 'deny'],
      ['select 2 as two', 'allow'],
      ['select 3 as three', 'allow'],
    ]);
    for (const [index, decision] of decided.entries()) {
      const own = events.filter((e) => e.data.commandId === decision.data.commandId).map((e) => e.kind);
      expect(own).toEqual(index === 1 ? ['command.decided', 'command.completed'] : ['command.decided', 'result.returned', 'command.completed']);
    }
    expect(events.find((e) => e.kind === 'command.completed' && e.data.commandId === decided[1]!.data.commandId)!.data).toMatchObject({ outcome: 'REFUSED', ok: false });
    session.socket.destroy();
  });

  it('answers a pipelined batch complete and in order, every row masked, when the target answers many queries in one read', async () => {
    const session = await rawSession();
    // 60 queries in one write: the target answers several of them in each read, rows of many at once.
    const texts = Array.from({ length: 60 }, (_, index) =>
      index % 3 === 2 ?
        `select g as n, 'row' || g || '@example.com' as email from generate_series(1, ${200 + index}) g`
      : `select ${index} as n, email from customers where id = ${1 + (index % 3)}`,
    );
    session.socket.write(Buffer.concat(texts.map((text) => encodeQuery(text))));
    await waitFor(() => session.messages.filter((m) => m.type === 'ReadyForQuery').length === texts.length, 20_000);
    const answers: { n: string; email: string }[][] = [[]];
    for (const message of session.messages) {
      if (message.type === 'DataRow') answers.at(-1)!.push({ n: message.values[0]!.toString(), email: message.values[1]!.toString() });
      else if (message.type === 'ReadyForQuery') answers.push([]);
      else expect(['RowDescription', 'CommandComplete']).toContain(message.type);
    }
    answers.pop();
    expect(answers).toHaveLength(texts.length);
    answers.forEach((rows, index) => {
      if (index % 3 === 2) {
        expect(rows).toEqual(Array.from({ length: 200 + index }, (_, row) => ({ n: String(row + 1), email: '***@example.com' })));
      } else {
        expect(rows).toEqual([{ n: String(index), email: ['***@example.com', '***@example.org', '***@example.net'][index % 3] }]);
      }
    });
    session.socket.destroy();
  });

  it('survives arbitrary well-framed messages after authentication: at worst that connection closes', async () => {
    const bystander = await connect();
    const codes = [...'QPBDESHCXdcfpF'].map((c) => c.charCodeAt(0));
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.constantFrom(...codes), fc.uint8Array({ maxLength: 40 })), { minLength: 1, maxLength: 6 }), async (messages) => {
        const session = await rawSession();
        const frames = messages.map(([code, payload]) => {
          const frame = Buffer.alloc(5 + payload.length);
          frame[0] = code;
          frame.writeUInt32BE(4 + payload.length, 1);
          Buffer.from(payload).copy(frame, 5);
          return frame;
        });
        session.socket.write(Buffer.concat(frames));
        await new Promise((resolve) => setTimeout(resolve, 30));
        session.socket.destroy();
      }),
      { numRuns: 25 },
    );
    expect((await bystander.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
    expect((await direct.query('select count(*)::int as n from customers where id <= 3')).rows[0].n).toBeGreaterThanOrEqual(2);
  });

  it('closes only the connection that sent a malformed packet and records it', async () => {
    const bystander = await connect();
    const socket = net.connect(port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(encodeStartupMessage([['user', 'agent'], ['database', 'test-db']]));
    await new Promise((resolve) => socket.once('data', resolve));
    socket.write(encodePasswordMessage(await token(['readers'])));
    await new Promise((resolve) => setTimeout(resolve, 200));
    const closed = new Promise((resolve) => socket.once('close', resolve));
    socket.write(Buffer.from([0x51, 0, 0, 0, 2]));
    await closed;
    await waitFor(() => audit.of('session.ended').some((e) => e.data.reason === 'protocol_malformed'));
    expect((await bystander.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
  });

  it('maps a CancelRequest with the proxy-issued key to the target session', async () => {
    const client = await connect();
    const key = client as unknown as { processID: number; secretKey: number };
    const sleeping = client.query('select pg_sleep(5)');
    await new Promise((resolve) => setTimeout(resolve, 200));
    const cancel = net.connect(port, '127.0.0.1');
    cancel.end(encodeCancelRequest(key.processID, key.secretKey));
    const started = Date.now();
    expect(await sqlState(sleeping)).toBe('57014');
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('tells the client and closes when the target ends the session, without disturbing others', async () => {
    const bystander = await connect();
    const client = await connect();
    const failure = new Promise<{ code?: string }>((resolve) => client.on('error', (error: Error) => resolve(error as { code?: string })));
    const { rows } = await client.query('select pg_backend_pid() as pid');
    await direct.query('select pg_terminate_backend($1)', [rows[0].pid]);
    expect((await failure).code).toBe('57P01');
    await waitFor(() => audit.of('session.ended').some((e) => e.data.reason === 'target_ended_session'));
    expect((await bystander.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
  });

  it('records session.ended with the command count when the client terminates', async () => {
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'agent', database: 'test-db', password: await token(['readers']) });
    await client.connect();
    await client.query('select 1');
    await client.query('select 2');
    await client.end();
    await waitFor(() => audit.of('session.ended').some((e) => e.data.reason === 'client_terminated' && e.data.commands === 2));
  });
});

describe('PostgreSQL adapter: TLS towards the agent', () => {
  let tlsServer: net.Server;
  let tlsAdapter: PostgresAdapter;
  let tlsPort: number;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-pg-tls-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-subj', '/CN=127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
    tlsAdapter = createPostgresAdapter(
      {
        name: 'test-db-tls',
        type: 'postgres',
        listen: '127.0.0.1:0',
        target: { host: '127.0.0.1', port: 5432, database, ssl: false },
        credentials: { username: 'postgres' },
        tls: { cert: { file: 'cert.pem' }, key: { file: 'key.pem' } },
      },
      { secretsDir: dir },
    );
    const verifier = createTokenVerifier([{ issuer: issuer.issuer, audience: 'sluice' }]);
    const ports: GovernancePorts = {
      identity: { verify: async (t) => verifier.verify(t) },
      policy, masking, approvals, audit,
      recording: { maxRows: 10, maxBytes: 65_536 },
      newId: randomUUID,
      now: () => new Date(),
    };
    tlsServer = net.createServer((socket) => void tlsAdapter.handleConnection(socket, ports));
    await new Promise<void>((resolve) => tlsServer.listen(0, '127.0.0.1', resolve));
    tlsPort = (tlsServer.address() as AddressInfo).port;
  });

  afterAll(async () => {
    await tlsAdapter?.close();
    await new Promise((resolve) => tlsServer?.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  it('speaks TLS with an agent that requires it and governs the session as in clear', async () => {
    const client = new pg.Client({ host: '127.0.0.1', port: tlsPort, user: 'agent', database: 'test-db-tls', password: await token(['readers']), ssl: { rejectUnauthorized: false } });
    await client.connect();
    expect((await client.query('select email from customers where id = 1')).rows).toEqual([{ email: '***@example.com' }]);
    expect(await sqlState(client.query('delete from customers'))).toBe('42501');
    await client.end();
    const password = await token(['readers']);
    const viaPsql = await new Promise<{ code: number | null; stdout: string }>((resolve, reject) => {
      const child = spawn('psql', ['-h', '127.0.0.1', '-p', String(tlsPort), '-U', 'agent', '-X', '-At', '-c', 'select ssl from pg_stat_ssl where pid = pg_backend_pid()'], {
        env: { ...process.env, PGPASSWORD: password, PGSSLMODE: 'require' },
      });
      let stdout = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.on('error', reject);
      child.on('exit', (code) => resolve({ code, stdout }));
    });
    // The agent's link is TLS; the target link here is not (target.ssl: false).
    expect(viaPsql).toEqual({ code: 0, stdout: 'f\n' });
  });
});
