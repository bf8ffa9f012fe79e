import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { connectBus, decodeEvents } from '@sluice/event-bus';
import { jetstream } from '@nats-io/jetstream';
import { asSeparateEvents } from '../support/command-events.js';
import { createDatabase, deleteStreams, dropDatabases } from '../support/databases.js';
import { startOidcProvider, type RealIdp } from '../support/oidc-provider.js';
import { startTestIssuer, type TestIssuer } from '../support/oidc.js';
import { freePort } from '../support/ports.js';
import { runCommand } from '../support/run.js';
import { SLUICE_BIN, startSluice, type RunningSluice } from '../support/sluice.js';

describe('an agent’s governed PostgreSQL session, end to end through `sluice up`', () => {
  const run = randomUUID().slice(0, 8);
  const targetDb = `sluice_e2e_shop_${run}`;
  const storeDb = `sluice_e2e_store_${run}`;
  const stream = `SLUICE_E2E_${run}`;
  const subjectPrefix = `e2e.${run}.events`;
  let idp: RealIdp;
  let forger: TestIssuer;
  let sluice: RunningSluice;
  let proxyPort: number;

  const connect = (password: string, database = 'shop-db') =>
    new pg.Client({ host: '127.0.0.1', port: proxyPort, user: 'agent', password, database });

  beforeAll(async () => {
    await createDatabase(
      targetDb,
      `CREATE TABLE customers (id int PRIMARY KEY, name text, email text, card text, amount numeric(10,2));
       INSERT INTO customers VALUES (1, 'Ada Lovelace', 'ada@example.com', '4111 1111 1111 1111', 12.50),
                                    (2, 'Alan Turing', 'alan@example.org', '5500-0000-0000-0004', 99.99);`,
    );

    idp = await startOidcProvider([
      { clientId: 'support-bot', secret: 'support-bot-secret-0123456789abcdef', groups: ['support-agents'] },
      { clientId: 'stranger', secret: 'stranger-secret-0123456789abcdef0123', groups: [] },
      { clientId: 'compliance-bot', secret: 'compliance-bot-secret-0123456789abcd', groups: ['compliance'] },
    ]);
    forger = await startTestIssuer();
    proxyPort = await freePort();
    sluice = await startSluice(
      {
        bus: { url: 'nats://127.0.0.1:4222', stream, subjectPrefix },
        eventStore: { url: `postgres://postgres@127.0.0.1:5432/${storeDb}` },
        identity: { oidc: [{ issuer: idp.issuer, audience: 'sluice' }, { issuer: forger.issuer, audience: 'sluice' }] },
        resources: [
          {
            name: 'shop-db',
            type: 'postgres',
            listen: `127.0.0.1:${proxyPort}`,
            target: { host: '127.0.0.1', port: 5432, database: targetDb },
            credentials: { username: 'postgres', password: { env: 'E2E_UNUSED_PASSWORD' } },
          },
        ],
        masking: { profiles: { pii: { detectors: ['credit_card', 'email'], strategy: 'partial' } } },
        audit: { readers: { groups: ['compliance'] } },
        rules: [
          { name: 'support-reads', effect: 'allow', subjects: { groups: ['support-agents'] }, resources: ['shop-db'], actions: ['read'], mask: 'pii' },
          { name: 'nobody-administers', effect: 'deny', actions: ['admin'] },
        ],
      },
      { env: { NATS_URL: '', DATABASE_URL: '' } },
    );
  });

  afterAll(async () => {
    await sluice?.stop();
    await idp?.close();
    await forger?.close();
    await dropDatabases([targetDb, storeDb]);
    await deleteStreams([stream]);
  });

  it('serves /readyz with 200 once every service is ready', async () => {
    const response = await fetch(`http://127.0.0.1:${sluice.ports.admin}/readyz`);
    expect(response.status).toBe(200);
  });

  it('lets psql run a granted SELECT with an OIDC access token as its password, masking cards and emails', async () => {
    const token = await idp.token('support-bot');
    const psql = await runCommand('psql', ['-h', '127.0.0.1', '-p', String(proxyPort), '-U', 'support-bot', '-d', 'shop-db', '-At', '-F', '|', '-c', 'SELECT id, name, email, card, amount FROM customers ORDER BY id'], {
      env: { ...process.env, PGPASSWORD: token, PGCONNECT_TIMEOUT: '10' },
    });
    expect(psql.stderr).toBe('');
    const rows = psql.stdout.trim().split('\n');
    expect(rows).toHaveLength(2);
    expect(rows[0]).toContain('Ada Lovelace');
    expect(rows[0]).toContain('12.50');
    expect(psql.stdout).not.toContain('ada@example.com');
    expect(psql.stdout).not.toContain('4111 1111 1111 1111');
    expect(rows[0]).toMatch(/1111/);
  });

  it('denies an ungranted DELETE with SQLSTATE 42501 naming the rule, and the session stays usable', async () => {
    const client = connect(await idp.token('support-bot'));
    await client.connect();
    const error = await client.query('DELETE FROM customers').catch((caught: unknown) => caught as { code?: string; message?: string });
    expect(error).toMatchObject({ code: '42501' });
    const after = await client.query('SELECT count(*)::int AS n FROM customers');
    expect(after.rows[0].n).toBe(2);
    await client.end();
  });

  it('runs an extended-protocol query with parameters and a COPY out', async () => {
    const client = connect(await idp.token('support-bot'));
    await client.connect();
    const result = await client.query({ text: 'SELECT name, email FROM customers WHERE id = $1', values: [2] });
    expect(result.rows).toHaveLength(1);
    expect(result.rows[0].name).toBe('Alan Turing');
    expect(result.rows[0].email).not.toBe('alan@example.org');
    await client.end();

    const token = await idp.token('support-bot');
    const copy = await runCommand('psql', ['-h', '127.0.0.1', '-p', String(proxyPort), '-U', 'x', '-d', 'shop-db', '-c', '\\copy (SELECT id, email FROM customers ORDER BY id) TO STDOUT'], {
      env: { ...process.env, PGPASSWORD: token },
    });
    expect(copy.status).toBe(0);
    expect(copy.stdout.trim().split('\n')).toHaveLength(2);
    expect(copy.stdout).not.toContain('ada@example.com');
  });

  it('default-denies a subject no rule mentions', async () => {
    const client = connect(await idp.token('stranger'));
    await client.connect();
    const error = await client.query('SELECT 1').catch((caught: unknown) => caught as { code?: string });
    expect(error).toMatchObject({ code: '42501' });
    await client.end().catch(() => undefined);
  });

  it('refuses garbage, expired, wrongly addressed, forged and unsigned tokens with 28P01', async () => {
    const foreignIssuer = await startTestIssuer();
    const tokens = [
      'not-a-token',
      await forger.mint({ sub: 'a', groups: ['support-agents'], expiresIn: -300 }),
      await forger.mint({ sub: 'a', groups: ['support-agents'], aud: 'another-api' }),
      await forger.mint({ sub: 'a', groups: ['support-agents'], foreignKey: true }),
      await foreignIssuer.mint({ sub: 'a', groups: ['support-agents'] }),
      forger.mintUnsigned({ sub: 'a', groups: ['support-agents'] }),
      await forger.mint({ sub: 'a', groups: ['support-agents'], notBefore: 600 }),
    ];
    for (const token of tokens) {
      const client = connect(token);
      const error = await client.connect().then(
        () => undefined,
        (caught: unknown) => caught as { code?: string },
      );
      expect(error).toMatchObject({ code: '28P01' });
      await client.end().catch(() => undefined);
    }
    await foreignIssuer.close();
  });

  it('records the session as CloudEvents on JetStream and in sluice.events, hash-chained and verifiable', async () => {
    const client = connect(await idp.token('support-bot'));
    await client.connect();
    const marker = `marker_${run}`;
    await client.query(`SELECT '${marker}' AS marker, email FROM customers WHERE id = 1`);
    await client.query('DELETE FROM customers WHERE id = 1').catch(() => undefined);
    await client.end();

    const store = new pg.Client({ host: '127.0.0.1', user: 'postgres', database: storeDb });
    await store.connect();
    let sessionId: string | undefined;
    let types: string[] = [];
    let stored: { type: string; data: Record<string, unknown> }[] = [];
    for (let attempt = 0; attempt < 50; attempt++) {
      const found = await store.query(`SELECT session_id FROM sluice.events WHERE data::text LIKE $1 LIMIT 1`, [`%${marker}%`]);
      sessionId = found.rows[0]?.session_id;
      if (sessionId) {
        const events = await store.query(`SELECT type, data FROM sluice.events WHERE session_id = $1 ORDER BY seq`, [sessionId]);
        stored = events.rows.map((row: { type: string; data: Record<string, unknown> | null }) => ({ type: row.type.replace(/^sluice\./, '').replace(/\.v\d+$/, ''), data: row.data ?? {} }));
        types = stored.map((event) => event.type);
        if (types.includes('session.ended')) break;
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(sessionId).toBeDefined();
    expect(types[0]).toBe('session.started');
    // A command that ran without a hold may be one command.executed, standing for all three.
    expect(asSeparateEvents(stored).map((event) => event.type)).toEqual(
      expect.arrayContaining(['command.decided', 'command.completed', 'result.returned', 'session.ended']),
    );
    const rows = await store.query(`SELECT id, hash, prev_hash, data FROM sluice.events WHERE session_id = $1 ORDER BY seq`, [sessionId]);
    for (let index = 1; index < rows.rows.length; index++) expect(rows.rows[index].prev_hash).toBe(rows.rows[index - 1].hash);
    expect(JSON.stringify(rows.rows.map((row: { data: unknown }) => row.data))).not.toContain('ada@example.com');
    const refused = await store.query(`UPDATE sluice.events SET type = 'x' WHERE session_id = $1`, [sessionId]).catch((caught: unknown) => caught);
    expect(refused).toBeInstanceOf(Error);
    await store.end();

    const nc = await connectBus('nats://127.0.0.1:4222', 'e2e-reader');
    const consumer = await jetstream(nc).consumers.get(stream);
    const seen = new Set<string>();
    for (let message = await consumer.next({ expires: 1_000 }); message; message = await consumer.next({ expires: 1_000 })) {
      expect(message.subject.startsWith(`${subjectPrefix}.`)).toBe(true);
      for (const event of decodeEvents(message.data)) {
        expect(event.specversion).toBe('1.0');
        expect(event.type).toMatch(/^sluice\./);
        if (event.subject === sessionId) seen.add(event.type);
      }
    }
    await nc.drain();
    expect(seen.size).toBeGreaterThanOrEqual(4);

    const verify = await sluice.cli(['audit', 'verify', '--config', sluice.configPath], { SLUICE_TOKEN: await idp.token('compliance-bot') });
    expect(verify.status).toBe(0);
  });

  it('exits non-zero with one line naming rules[0].effect when a rule has a typo', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'sluice-typo-')), 'sluice.yaml');
    writeFileSync(file, 'rules:\n  - name: typo\n    effect: alow\n');
    const result = await runCommand(process.execPath, [SLUICE_BIN, 'up', '--config', file]);
    expect(result.status).not.toBe(0);
    const lines = result.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('rules[0].effect');
  });
});
