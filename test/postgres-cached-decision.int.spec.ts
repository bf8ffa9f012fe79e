import { randomUUID } from 'node:crypto';
import type net from 'node:net';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PostgresResourceConfig } from '@sluice/config';
import type { Subject } from '@sluice/contracts';
import { compileMasking, COLUMN_REDACTED } from '@sluice/masking-engine';
import { loadSqlClassifier, normalizeSql } from '@sluice/sql-classifier';
import type { Decision, GovernedCommand } from '../services/proxy/src/ports.js';
import { createPostgresAdapter, type PostgresAdapter } from '../services/proxy/src/postgres/adapter.js';
import { createDatabase } from './support/databases.js';
import { startTestIssuer, type TestIssuer } from './support/oidc.js';
import { createPostgresPorts, listenPostgresProxy, openClient, closeProxyParts } from './support/postgres-proxy-harness.js';

/*
 * Issue 12: a statement whose decision the policy port has cached (also by its shape, as under
 * pgbench -S's new literal per statement) is decided at once: the session asks the port's cache,
 * not `decide` (a promise and a tracing span per statement, and turns of the event loop before
 * a byte goes upstream). Everything else stays as it was: decided before it is sent, masked,
 * recorded.
 */

const masking = compileMasking(
  {
    defaultRegion: 'US',
    detectors: [],
    profiles: { pii: { detectors: ['email', 'us_ssn'], strategy: 'partial', columns: [{ match: '(?i)ssn', strategy: 'redact' }] } },
  },
  { hashKey: 'cached-decision-int' },
);

const allow: Decision = { effect: 'allow', rule: 'readers', reason: 'reads', action: 'read', risk: 'low', maskProfile: 'pii', tables: [], prepares: [] };

/** A policy port as the proxy's gRPC client behaves: `decide` asks, and caches by the text's shape. */
class ShapeCachingPolicy {
  readonly asked: string[] = [];
  readonly #cache = new Map<string, Decision>();

  readonly port = {
    describeSession: async (_subject: Subject) => ({ mayConnect: true, readOnly: true }),
    decide: async (_subject: Subject, _resource: string, command: GovernedCommand): Promise<Decision> => {
      if (command.kind !== 'sql') throw new Error('sql only');
      this.asked.push(command.text);
      this.#cache.set(this.#key(command.text), allow);
      return allow;
    },
    cachedDecision: (_subject: Subject, _resource: string, command: GovernedCommand): Decision | undefined =>
      command.kind === 'sql' ? this.#cache.get(this.#key(command.text)) : undefined,
  };

  #key(text: string): string {
    return normalizeSql(text) ?? text;
  }
}

const database = `sluice_cached_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
const policy = new ShapeCachingPolicy();
const events: { kind: string; data: Record<string, unknown> }[] = [];
const clients: pg.Client[] = [];
let issuer: TestIssuer;
let server: net.Server;
let adapter: PostgresAdapter;
let port: number;

beforeAll(async () => {
  await loadSqlClassifier();
  issuer = await startTestIssuer();
  await createDatabase(
    database,
    `create table accounts (aid int primary key, abalance int, ssn text, doc jsonb);
     insert into accounts select g, g * 10, '123-45-' || lpad(g::text, 4, '0'), jsonb_build_object('note', 'n' || g, 'ssn', '123-45-' || lpad(g::text, 4, '0'))
       from generate_series(1, 50) g;`,
  );
  const resource: PostgresResourceConfig = {
    name: 'cached-db',
    type: 'postgres',
    listen: '127.0.0.1:0',
    target: { host: '127.0.0.1', port: 5432, database, ssl: false },
    credentials: { username: 'postgres' },
  };
  adapter = createPostgresAdapter(resource, { secretsDir: process.cwd() });
  const ports = createPostgresPorts({
    issuer,
    policy: policy.port,
    masking,
    record: (_sessionId, kind, data) => void events.push({ kind, data: data as unknown as Record<string, unknown> }),
    maxRows: 10,
  });
  ({ server, port } = await listenPostgresProxy(adapter, ports));
});

afterAll(() => closeProxyParts({ clients, adapter, server, databases: [database], issuer }));

describe('a statement whose decision is cached', () => {
  it('is decided from the cache under a new literal each time, masked and recorded as before', async () => {
    const password = await issuer.mint({ sub: 'agent-cached', groups: ['readers'] });
    const client = await openClient({ host: '127.0.0.1', port, user: 'agent', database: 'cached-db', password }, clients);
    const first = await client.query('SELECT abalance, ssn FROM accounts WHERE aid = 1');
    expect(first.rows).toEqual([{ abalance: 10, ssn: COLUMN_REDACTED }]);
    const asked = policy.asked.length;
    for (let aid = 2; aid <= 21; aid++) {
      const result = await client.query(`SELECT abalance, ssn FROM accounts WHERE aid = ${aid}`);
      expect(result.rows).toEqual([{ abalance: aid * 10, ssn: COLUMN_REDACTED }]);
    }
    // Twenty statements of a shape already decided: not one of them asked `decide`.
    expect(policy.asked.length).toBe(asked);
    const decided = events.filter((event) => event.kind === 'command.decided' && String(event.data.command).startsWith('SELECT abalance, ssn FROM accounts'));
    expect(decided).toHaveLength(21);
    const results = events.filter((event) => event.kind === 'result.returned');
    expect(JSON.stringify(results)).not.toContain('123-45-');
  });

  it('answers a new literal in the SELECT list from the shape, masked as a session seeing it first masks it', async () => {
    const password = await issuer.mint({ sub: 'agent-cached', groups: ['readers'] });
    const text = (aid: number): string =>
      `SELECT ${aid} AS n, '123-45-${String(aid).padStart(4, '0')}' AS ssn, 'agent${aid}@example.com' AS email, ssn AS theirs, abalance FROM accounts WHERE aid = ${aid}`;
    const shared = await openClient({ host: '127.0.0.1', port, user: 'agent', database: 'cached-db', password }, clients);
    await shared.query(text(1));
    const asked = policy.asked.length;
    for (let aid = 2; aid <= 6; aid++) {
      const answered = (await shared.query(text(aid))).rows;
      // A session that never saw the shape computes everything from this text alone.
      const fresh = await openClient({ host: '127.0.0.1', port, user: 'agent', database: 'cached-db', password }, clients);
      expect(answered).toEqual((await fresh.query(text(aid))).rows);
      await fresh.end();
      expect(answered[0]).toMatchObject({ n: aid, ssn: COLUMN_REDACTED, theirs: COLUMN_REDACTED, abalance: aid * 10 });
      expect(answered[0].email).not.toContain(`agent${aid}`);
    }
    expect(policy.asked.length).toBe(asked);
    const results = JSON.stringify(events.filter((event) => event.kind === 'result.returned'));
    expect(results).not.toContain('123-45-');
    expect(results).not.toMatch(/agent\d+@/);
  });

  it('does not share the answer about a literal that names what a column carries', async () => {
    const password = await issuer.mint({ sub: 'agent-cached', groups: ['readers'] });
    const client = await openClient({ host: '127.0.0.1', port, user: 'agent', database: 'cached-db', password }, clients);
    expect((await client.query("SELECT doc->>'note' AS v FROM accounts WHERE aid = 3")).rows).toEqual([{ v: 'n3' }]);
    expect((await client.query("SELECT doc->>'ssn' AS v FROM accounts WHERE aid = 3")).rows).toEqual([{ v: COLUMN_REDACTED }]);
  });

  it('a statement of another shape still asks the policy', async () => {
    const password = await issuer.mint({ sub: 'agent-cached', groups: ['readers'] });
    const client = await openClient({ host: '127.0.0.1', port, user: 'agent', database: 'cached-db', password }, clients);
    const asked = policy.asked.length;
    await client.query('SELECT count(*) FROM accounts WHERE abalance > 100');
    expect(policy.asked.slice(asked)).toEqual(['SELECT count(*) FROM accounts WHERE abalance > 100']);
  });
});
