import { randomUUID } from 'node:crypto';
import type net from 'node:net';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, type PostgresResourceConfig } from '@sluice/config';
import type { SluiceEventKind } from '@sluice/contracts';
import { compileMasking } from '@sluice/masking-engine';
import { createPolicy } from '@sluice/policy-engine';
import { loadSqlClassifier } from '@sluice/sql-classifier';
import { createPostgresAdapter, type PostgresAdapter } from '../services/proxy/src/postgres/adapter.js';
import { createDatabase, dropDatabases } from './support/databases.js';
import { startTestIssuer, type TestIssuer } from './support/oidc.js';
import { createPostgresPorts, listenPostgresProxy, openClient } from './support/postgres-proxy-harness.js';

/*
 * The agent's answer is written before its events are recorded: recording a command's outcome and
 * result (serialising them for the bus) is not on the way of the answer. Each record notes how many
 * bytes the proxy had written to the agent by then: the answer's bytes are already counted when its
 * command's completion and result are recorded, and the events keep their order.
 */

const database = `sluice_raw_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
const CONFIG = parseConfig({
  resources: [{ name: 'order-db', type: 'postgres', listen: '127.0.0.1:0', target: { host: '127.0.0.1', database }, credentials: { username: 'postgres' } }],
  masking: { profiles: { pii: { detectors: ['email'], strategy: 'partial', columns: [{ match: '(?i)ssn', strategy: 'redact' }] } } },
  rules: [{ name: 'read', effect: 'allow', actions: ['read'], mask: 'pii' }],
});
const policy = createPolicy(CONFIG.rules, CONFIG.resources, { approvalTimeoutMs: 60_000 });

let issuer: TestIssuer;
let server: net.Server;
let adapter: PostgresAdapter;
let port: number;
const agentSockets: net.Socket[] = [];
const clients: pg.Client[] = [];
const records: { kind: SluiceEventKind; written: number }[] = [];
const written = (): number => agentSockets.reduce((sum, socket) => sum + socket.bytesWritten, 0);

beforeAll(async () => {
  await loadSqlClassifier();
  issuer = await startTestIssuer();
  await createDatabase(database, `create table people (id int primary key, email text, ssn text);
    insert into people select g, 'user' || g || '@example.com', '912-34-567' || (g % 10) from generate_series(1, 5) g;`);
  const resource = CONFIG.resources[0] as PostgresResourceConfig;
  adapter = createPostgresAdapter({ ...resource, target: { ...resource.target, port: 5432, ssl: false } }, { secretsDir: process.cwd() });
  const ports = createPostgresPorts({
    issuer,
    policy: { describeSession: async () => ({ mayConnect: true, readOnly: true }), decide: async (subject, name, command) => policy.decide(subject, name, command) },
    masking: compileMasking(CONFIG.masking, { hashKey: 'record-after-write' }),
    record: (_sessionId, kind) => void records.push({ kind, written: written() }),
    maxRows: 10,
  });
  ({ server, port } = await listenPostgresProxy(adapter, ports));
  server.on('connection', (socket) => agentSockets.push(socket));
});

afterAll(async () => {
  for (const client of clients) await client.end().catch(() => {});
  await adapter?.close();
  await new Promise((resolve) => server?.close(resolve));
  await dropDatabases([database]);
  await issuer?.close();
});

describe('the answer before its record', () => {
  it.each([
    ['simple', (client: pg.Client) => client.query('select id, email, ssn from people order by id')],
    ['extended', (client: pg.Client) => client.query('select id, email, ssn from people where id > $1 order by id', [0])],
  ])('records a command’s result and completion after the rows are written to the agent (%s protocol)', async (_, query) => {
    const client = await openClient({ host: '127.0.0.1', port, user: 'agent', database: 'order-db', password: await issuer.mint({ sub: 'agent-order', groups: [] }) }, clients);
    const before = written();
    const from = records.length;
    const result = await query(client);
    expect(result.rows).toHaveLength(5);
    expect(JSON.stringify(result.rows)).not.toContain('912-34-567');
    const answered = written();
    const made = records.slice(from);
    expect(made.map((record) => record.kind)).toEqual(['command.decided', 'result.returned', 'command.completed']);
    // The decision is recorded before the statement goes to the target, with nothing written yet.
    expect(made[0]!.written).toBe(before);
    for (const record of made.slice(1)) expect(record.written, record.kind).toBe(answered);
  });
});
