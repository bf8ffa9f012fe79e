import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import net, { type AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import pg from 'pg';
import postgres from 'postgres';
import { afterAll, beforeAll } from 'vitest';
import { decodeBackend, encodePasswordMessage, encodeQuery, encodeStartupMessage, FrameReader, type BackendMessage } from '@sluice/codec-pg';
import { parseConfig, resourceLimits, type PostgresResourceConfig, type SluiceConfig } from '@sluice/config';
import type { SluiceEventKind } from '@sluice/contracts';
import { createTokenVerifier } from '@sluice/identity';
import { compileMasking, type CompiledMasking } from '@sluice/masking-engine';
import { loadSqlClassifier } from '@sluice/sql-classifier';
import { createPolicy } from '@sluice/policy-engine';
import { ConnectionLimiter } from '../../services/proxy/src/connection-limits.js';
import type { GovernancePorts, ProtocolAdapter } from '../../services/proxy/src/ports.js';
import { createPostgresAdapter, type PostgresAdapter } from '../../services/proxy/src/postgres/adapter.js';
import { createDatabase, dropDatabases } from './databases.js';
import { startTestIssuer, type TestIssuer } from './oidc.js';

const execFileAsync = promisify(execFile);

/** Polls a condition every 10 ms; throws when it is still false after the timeout. */
export const waitFor = async (condition: () => boolean, timeoutMs = 10_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
};

/** The policy port backed by an in-process policy engine (what `createPolicy` returns). */
export const enginePolicyPort = (policy: ReturnType<typeof createPolicy>): GovernancePorts['policy'] => ({
  describeSession: async (subject, name) => policy.describeSession(subject, name),
  decide: async (subject, name, command) => policy.decide(subject, name, command),
});

/** An approval port for specs where no rule holds a command: a request is a bug in the test. */
export const noApprovalsPort = (): GovernancePorts['approvals'] => ({
  request: async () => {
    throw new Error('no approvals in this test');
  },
  awaitDecision: async () => ({ outcome: 'denied', approvers: [], reason: '' }),
  consume: async () => false,
});

export interface PostgresPortsOptions {
  /** Tokens are verified against it (audience `sluice`, no clock tolerance). */
  readonly issuer: TestIssuer;
  readonly policy: GovernancePorts['policy'];
  /** Without it nothing is masked and command texts are recorded as they came. */
  readonly masking?: CompiledMasking;
  /** Without it: `noApprovalsPort()`. */
  readonly approvals?: GovernancePorts['approvals'];
  readonly record: GovernancePorts['audit']['record'];
  /** The adapter's recording limit on returned rows. */
  readonly maxRows: number;
}

/** The proxy's ports for the PostgreSQL integration specs: a real token verifier, the given policy, masking, approvals and audit sink. */
export const createPostgresPorts = ({ issuer, policy, masking, approvals, record, maxRows }: PostgresPortsOptions): GovernancePorts => {
  const verifier = createTokenVerifier([{ issuer: issuer.issuer, audience: 'sluice', clockTolerance: 0 }]);
  return {
    identity: { verify: async (jwt) => verifier.verify(jwt) },
    policy,
    masking: masking
      ? { masker: (profile) => (profile ? masking.profile(profile) : undefined), maskCommandText: (text) => masking.everything.maskText(text, {}) }
      : { masker: () => undefined, maskCommandText: (text) => text },
    approvals: approvals ?? noApprovalsPort(),
    audit: { healthy: true, record },
    recording: { maxRows, maxBytes: 65_536 },
    newId: randomUUID,
    now: () => new Date(),
  };
};

/** A loopback listener on port 0 (Nagle off, as the proxy runs) that hands every connection to the adapter. */
export const listenPostgresProxy = async (adapter: Pick<ProtocolAdapter, 'handleConnection'>, ports: GovernancePorts): Promise<{ server: net.Server; port: number }> => {
  const server = net.createServer({ noDelay: true }, (socket) => {
    void adapter.handleConnection(socket, ports);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
};

/** What a spec that builds its own proxy tears down: clients first, then the proxy, then what it ran against. */
export const closeProxyParts = async (parts: {
  readonly clients?: readonly pg.Client[];
  readonly adapter?: PostgresAdapter;
  readonly server?: net.Server;
  readonly direct?: pg.Client;
  readonly databases?: readonly string[];
  readonly issuer?: TestIssuer;
}): Promise<void> => {
  for (const client of parts.clients ?? []) await client.end().catch(() => {});
  await parts.adapter?.close();
  await new Promise((resolve) => (parts.server ? parts.server.close(resolve) : resolve(undefined)));
  await parts.direct?.end();
  await dropDatabases(parts.databases ?? []);
  await parts.issuer?.close();
};

/** Connects a node-postgres client (errors after connect are ignored: tests read them from queries) and adds it to `clients`. */
export const openClient = async (config: pg.ClientConfig, clients: pg.Client[]): Promise<pg.Client> => {
  const client = new pg.Client(config);
  client.on('error', () => {});
  await client.connect();
  clients.push(client);
  return client;
};

/** The SQLSTATE a promise rejects with, or undefined when it resolves. */
export const sqlState = async (promise: Promise<unknown>): Promise<string | undefined> => {
  try {
    await promise;
    return undefined;
  } catch (error) {
    return (error as { code?: string }).code;
  }
};

/** A connection speaking the protocol byte by byte, as an attacker would; keeps every byte it got. */
export class RawPostgresSession {
  readonly messages: BackendMessage[] = [];
  received = Buffer.alloc(0);
  closed = false;
  readonly #reader = new FrameReader({ phase: 'typed' });
  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.received = Buffer.concat([this.received, chunk]);
      for (const frame of this.#reader.push(chunk)) this.messages.push(decodeBackend(frame));
    });
    socket.on('close', () => (this.closed = true));
    socket.on('error', () => (this.closed = true));
  }

  /**
   * Connects to the proxy on `port` as user `agent` of database `database` and logs in with
   * `password`; `track` sees the session before the login, so a failed login is still cleaned up.
   */
  static async open(
    port: number,
    database: string,
    password: () => Promise<string>,
    track: (session: RawPostgresSession) => void,
    parameters: readonly [string, string][] = [],
  ): Promise<RawPostgresSession> {
    const socket = net.connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const session = new RawPostgresSession(socket);
    track(session);
    socket.write(encodeStartupMessage([['user', 'agent'], ['database', database], ...parameters]));
    await waitFor(() => session.messages.some((m) => m.type === 'AuthenticationCleartextPassword'));
    socket.write(encodePasswordMessage(await password()));
    await session.readyCount(1);
    return session;
  }

  /** The same, straight to the real server as `postgres` of `database` (trust auth): what the proxy's answers are compared with. */
  static async openDirect(database: string, track: (session: RawPostgresSession) => void): Promise<RawPostgresSession> {
    const socket = net.connect({ host: '127.0.0.1', port: 5432 });
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const session = new RawPostgresSession(socket);
    track(session);
    socket.write(encodeStartupMessage([['user', 'postgres'], ['database', database]]));
    await session.readyCount(1);
    return session;
  }

  /**
   * What came back since the login, in a form two servers' answers compare in: each message's
   * type, with a DataRow's values, a CommandComplete's tag, an error's SQLSTATE, a ReadyForQuery's status.
   */
  summary(): string[] {
    const start = this.messages.findIndex((m) => m.type === 'ReadyForQuery') + 1;
    return this.messages.slice(start).flatMap((m): string[] => {
      switch (m.type) {
        case 'DataRow':
          return [`DataRow ${m.values.map((v) => (v === null ? 'NULL' : v.toString('utf8'))).join('|')}`];
        case 'CommandComplete':
          return [`CommandComplete ${m.tag}`];
        case 'ErrorResponse':
          return [`ErrorResponse ${m.fields.C ?? ''}`];
        case 'RowDescription':
          return [`RowDescription ${m.fields.map((f) => f.name).join('|')}`];
        case 'ReadyForQuery':
          return [`ReadyForQuery ${String.fromCharCode(m.status)}`];
        case 'ParameterStatus':
        case 'NoticeResponse':
          return [];
        default:
          return [m.type];
      }
    });
  }

  /** Every DataRow so far, its values as UTF-8 text (`NULL` for a null). */
  rows(): string[][] {
    return this.messages.flatMap((m) => (m.type === 'DataRow' ? [m.values.map((v) => (v === null ? 'NULL' : v.toString('utf8')))] : []));
  }

  /** Sends each text as a simple Query alone, waiting for its ReadyForQuery. */
  async run(...texts: string[]): Promise<void> {
    for (const text of texts) {
      const ready = this.count('ReadyForQuery');
      this.send(encodeQuery(text));
      await this.readyCount(ready + 1);
    }
  }

  count(type: BackendMessage['type']): number {
    return this.messages.filter((m) => m.type === type).length;
  }

  async readyCount(n: number): Promise<void> {
    await waitFor(() => this.count('ReadyForQuery') >= n || this.closed);
  }

  /** The fields of every ErrorResponse so far: C the SQLSTATE, M the message, S the severity. */
  errors(): { C?: string; M?: string; S?: string }[] {
    return this.messages.flatMap((m) => (m.type === 'ErrorResponse' ? [m.fields as { C?: string; M?: string; S?: string }] : []));
  }

  send(...buffers: Buffer[]): void {
    this.socket.write(Buffer.concat(buffers));
  }
}

/** How a test reaches the target: straight to the server, or through the proxy. */
export type Way = 'direct' | 'sluice';
export const WAYS = ['direct', 'sluice'] as const;

export interface PostgresFrontDoorOptions {
  /** The parsed config: its first resource is the PostgreSQL resource the proxy serves. */
  readonly config: SluiceConfig;
  /** The target database, created with `setupSql` on start and dropped on close. */
  readonly database: string;
  readonly setupSql: string;
  /** Run on the direct connection before it closes (cluster-wide objects such as roles); failures are ignored. */
  readonly teardownSql?: string;
  readonly hashKey: string;
  /** How every held command is decided (denied unless told): `granted` runs it once; `held`: never decided, it waits until the proxy gives up the hold. */
  readonly approvalOutcome?: 'granted' | 'denied' | 'held';
  /** The policy port the proxy asks (a real gRPC client, with its decision cache); else the engine in process. */
  readonly policyPort?: () => GovernancePorts['policy'];
  /** Count connections against the resource's limits (maxConnectionsPerSubject) as the proxy's main does. */
  readonly limitConnections?: boolean;
}

/**
 * The PostgreSQL adapter on a loopback port in front of a fresh database on the real server, with
 * the real policy and masking engines and a real token issuer: what the PostgreSQL red-team specs
 * probe with node-postgres, psql and raw protocol bytes. Every approval request is recorded and
 * denied (or granted, by `approvalOutcome`). `close` tolerates a `start` that failed part-way.
 */
export class PostgresFrontDoor {
  /** Every audit event the adapter recorded, in order. */
  readonly events: { kind: SluiceEventKind; data: Record<string, unknown> }[] = [];
  /** Commands held for approval; every one is denied unless `approvalOutcome` grants it. */
  readonly approvalRequests: string[] = [];
  readonly #clients: pg.Client[] = [];
  readonly #raws: RawPostgresSession[] = [];
  readonly #sockets: net.Socket[] = [];
  readonly #options: PostgresFrontDoorOptions;
  readonly #resource: PostgresResourceConfig;
  #issuer: TestIssuer | undefined;
  #server: net.Server | undefined;
  #adapter: PostgresAdapter | undefined;
  #direct: pg.Client | undefined;
  #port = 0;

  constructor(options: PostgresFrontDoorOptions) {
    this.#options = options;
    this.#resource = options.config.resources[0] as PostgresResourceConfig;
  }

  /** A superuser connection straight to the target database, for seeding and checking. */
  get direct(): pg.Client {
    if (!this.#direct) throw new Error('the front door has not started');
    return this.#direct;
  }

  get port(): number {
    return this.#port;
  }

  async start(): Promise<void> {
    const { config, database, setupSql, hashKey } = this.#options;
    const policy = createPolicy(config.rules, config.resources, { approvalTimeoutMs: 60_000 });
    const masking = compileMasking(config.masking, { hashKey });
    await loadSqlClassifier();
    this.#issuer = await startTestIssuer();
    await createDatabase(database, setupSql);
    this.#direct = new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database });
    await this.#direct.connect();
    const resource = this.#resource;
    this.#adapter = createPostgresAdapter({ ...resource, target: { ...resource.target, port: 5432, ssl: false } }, { secretsDir: process.cwd() });
    const issuer = this.#issuer;
    const ports = createPostgresPorts({
      issuer,
      policy: this.#options.policyPort?.() ?? enginePolicyPort(policy),
      masking,
      approvals: {
        request: async (request) => {
          this.approvalRequests.push(request.command);
          return { approvalId: `appr-${randomUUID().slice(0, 8)}`, expiresAt: new Date(Date.now() + 60_000) };
        },
        awaitDecision: async (_approvalId, signal) => {
          if (this.#options.approvalOutcome !== 'held') return { outcome: this.#options.approvalOutcome ?? 'denied', approvers: [], reason: '' };
          await new Promise((resolve) => (signal.aborted ? resolve(undefined) : signal.addEventListener('abort', resolve, { once: true })));
          return { outcome: 'cancelled', approvers: [], reason: 'the hold was given up' };
        },
        consume: async () => this.#options.approvalOutcome === 'granted',
      },
      record: (_sessionId, kind, data) => {
        this.events.push({ kind, data: data as unknown as Record<string, unknown> });
      },
      maxRows: 10,
    });
    const limits = this.#options.limitConnections ? { connectionLimits: new Map([[resource.name, new ConnectionLimiter(resourceLimits(resource))]]) } : {};
    ({ server: this.#server, port: this.#port } = await listenPostgresProxy(this.#adapter, { ...ports, ...limits }));
  }

  async close(): Promise<void> {
    for (const client of this.#clients) await client.end().catch(() => {});
    for (const raw of this.#raws) raw.socket.destroy();
    for (const socket of this.#sockets) socket.destroy();
    await this.#adapter?.close();
    const server = this.#server;
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
    if (this.#options.teardownSql) await this.#direct?.query(this.#options.teardownSql).catch(() => {});
    await this.#direct?.end();
    await dropDatabases([this.#options.database]);
    await this.#issuer?.close();
  }

  /** A token for an agent in `groups` (sub `agent-<groups joined by ->`). */
  token(groups: string[]): Promise<string> {
    if (!this.#issuer) throw new Error('the front door has not started');
    return this.#issuer.mint({ sub: `agent-${groups.join('-')}`, groups });
  }

  /** node-postgres through the proxy as an agent in `groups`; closed by `close`. (Bound, as psql is: specs take them apart.) */
  readonly connect = async (groups = ['readers']): Promise<pg.Client> =>
    openClient({ host: '127.0.0.1', port: this.#port, user: 'agent', database: this.#resource.name, password: await this.token(groups) }, this.#clients);

  /** node-postgres straight to the target database as its superuser, or through the proxy as an agent in `groups`; the caller ends it. */
  async pgClient(way: Way, groups: string[]): Promise<pg.Client> {
    const client =
      way === 'direct'
        ? new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database: this.#options.database })
        : new pg.Client({ host: '127.0.0.1', port: this.#port, user: 'agent', database: this.#resource.name, password: await this.token(groups) });
    await client.connect();
    return client;
  }

  /** postgres.js the same way, one connection, `connection` its startup parameters; the caller ends it. */
  async postgresJs(way: Way, groups: string[], connection: Record<string, string> = {}): Promise<postgres.Sql> {
    const common = { max: 1, connection, onnotice: () => {} };
    return way === 'direct'
      ? postgres({ host: '127.0.0.1', port: 5432, user: 'postgres', database: this.#options.database, ...common })
      : postgres({ host: '127.0.0.1', port: this.#port, user: 'agent', database: this.#resource.name, pass: await this.token(groups), ...common });
  }

  /** psql through the proxy, one message: stdout, or stdout and stderr on failure. */
  readonly psql = async (sql: string, groups = ['readers']): Promise<string> => {
    const env = { ...process.env, PGPASSWORD: await this.token(groups), PGCONNECT_TIMEOUT: '10', PGSSLMODE: 'disable' };
    try {
      const { stdout } = await execFileAsync(
        'psql',
        ['-X', '-q', '-At', '-h', '127.0.0.1', '-p', String(this.#port), '-U', 'agent', '-d', this.#resource.name, '-v', 'ON_ERROR_STOP=1', '-c', sql],
        { env, timeout: 20_000 },
      );
      return stdout;
    } catch (error) {
      return `${(error as { stdout?: string }).stdout ?? ''}${(error as { stderr?: string }).stderr ?? ''}`;
    }
  };

  /** A raw protocol session through the proxy, logged in as an agent in `groups`; destroyed by `close`. */
  /** `parameters`: startup parameters after user and database (client_encoding, options, …). */
  async openRaw(groups: string[], parameters: readonly [string, string][] = []): Promise<RawPostgresSession> {
    return RawPostgresSession.open(this.#port, this.#resource.name, () => this.token(groups), (session) => this.#raws.push(session), parameters);
  }

  /** A bare socket to the proxy, nothing sent: the startup and what follows written as the attacker chooses; destroyed by `close`. */
  async rawSocket(): Promise<{ socket: net.Socket; received: () => Buffer; closed: () => boolean }> {
    const socket = net.connect({ host: '127.0.0.1', port: this.#port });
    this.#sockets.push(socket);
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    let received = Buffer.alloc(0);
    let closed = false;
    socket.on('data', (chunk: Buffer) => (received = Buffer.concat([received, chunk])));
    socket.on('close', () => (closed = true));
    socket.on('error', () => (closed = true));
    return { socket, received: () => received, closed: () => closed };
  }

  /** A raw protocol session straight to the target database as its superuser; destroyed by `close`. */
  openDirectRaw(): Promise<RawPostgresSession> {
    return RawPostgresSession.openDirect(this.#options.database, (session) => this.#raws.push(session));
  }

  /** The same raw protocol session straight to the server and through the proxy (an agent in `groups`), in that order. */
  async rawPair(groups: string[]): Promise<[RawPostgresSession, RawPostgresSession]> {
    return [await this.openDirectRaw(), await this.openRaw(groups)];
  }
}

/** A front door started before the spec's tests and closed after them. */
export const usePostgresFrontDoor = (options: PostgresFrontDoorOptions, startTimeoutMs?: number): PostgresFrontDoor => {
  const frontDoor = new PostgresFrontDoor(options);
  beforeAll(() => frontDoor.start(), startTimeoutMs);
  afterAll(() => frontDoor.close());
  return frontDoor;
};

/** A deny on tables, for everyone, of a front door from useWritersFrontDoor. */
export interface TableGuard {
  readonly name: string;
  readonly tables: readonly string[];
  /** Absent: every action. */
  readonly actions?: readonly ('read' | 'write' | 'ddl' | 'admin')[];
}

/**
 * A front door on a fresh database (`<prefix>_<random>`) whose agents in `writers` may read, write and
 * change the schema, and whose `guards` deny tables to everyone: what the read-guard and foreign-key
 * red teams attack. `setupSql` gets the database's name (a loopback foreign server names it).
 */
export const useWritersFrontDoor = (options: {
  readonly prefix: string;
  readonly resource: string;
  readonly guards: readonly TableGuard[];
  readonly setupSql: (database: string) => readonly string[];
}): PostgresFrontDoor => {
  const database = `${options.prefix}_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
  const resource = options.resource;
  return usePostgresFrontDoor(
    {
      config: parseConfig({
        resources: [{ name: resource, type: 'postgres', listen: '127.0.0.1:0', target: { host: '127.0.0.1', database }, credentials: { username: 'postgres' } }],
        rules: [
          ...options.guards.map((guard) => ({ ...guard, effect: 'deny', resources: [resource] })),
          { name: 'writers', effect: 'allow', subjects: { groups: ['writers'] }, resources: [resource], actions: ['read', 'write', 'ddl'] },
        ],
      }),
      database,
      hashKey: `${options.prefix}-int`,
      setupSql: options.setupSql(database).join(';\n'),
    },
    60_000,
  );
};

/**
 * Streams a PasswordMessage whose header claims 64 MiB, 64 KiB at a time, until the proxy closes
 * the socket or 1 MiB has gone: a stranger making the proxy hold a message before any login.
 */
export const streamOversizedPassword = async (raw: { socket: net.Socket; closed: () => boolean }): Promise<void> => {
  const header = Buffer.alloc(5);
  header.write('p', 0, 'latin1');
  header.writeUInt32BE(64 * 1024 * 1024, 1);
  raw.socket.write(header);
  for (let sent = 0; sent < 1024 * 1024 && !raw.closed(); sent += 64 * 1024) {
    raw.socket.write(Buffer.alloc(64 * 1024, 0x61));
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
};
