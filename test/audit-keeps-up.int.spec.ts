import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { jetstream } from '@nats-io/jetstream';
import { connectBus, decodeEvents } from '@sluice/event-bus';
import { auditCatchUp, describeCatchUp, storeMark } from './support/audit-keeps-up.js';
import { dropDatabases, deleteStreams } from './support/databases.js';
import { startTestIssuer, type TestIssuer } from './support/oidc.js';
import { freePort } from './support/ports.js';
import { startSluice, type RunningSluice } from './support/sluice.js';

/**
 * Issue 12's "the audit keeps up", bounded and short: concurrent agents run statements through
 * Sluice for a few seconds; then every statement is in the event store once, with its outcome.
 * The 2 s bound is the benchmark's (bench/run.ts); here the wait is generous, the machine shared.
 */
describe('the audit keeps up with concurrent agents', () => {
  const run = randomUUID().slice(0, 8);
  const storeDb = `sluice_keepsup_${run}`;
  const stream = `SLUICE_KEEPSUP_${run}`;
  const storeUrl = `postgres://postgres@127.0.0.1:5432/${storeDb}`;
  let idp: TestIssuer;
  let sluice: RunningSluice;
  let port: number;
  let ackedPort: number;

  beforeAll(async () => {
    idp = await startTestIssuer();
    port = await freePort();
    ackedPort = await freePort();
    sluice = await startSluice({
      identity: { oidc: [{ issuer: idp.issuer, audience: 'sluice' }] },
      eventStore: { url: storeUrl },
      bus: { url: 'nats://127.0.0.1:4222', stream, subjectPrefix: `keepsup.${run}.events` },
      resources: [
        { name: 'db', type: 'postgres', listen: `127.0.0.1:${port}`, target: { host: '127.0.0.1', database: 'postgres' }, credentials: { username: 'postgres' } },
        // Each command waits until the bus has its record.
        { name: 'db-acked', type: 'postgres', listen: `127.0.0.1:${ackedPort}`, target: { host: '127.0.0.1', database: 'postgres' }, credentials: { username: 'postgres' }, audit: { wait: 'ack' } },
      ],
      masking: { profiles: { pii: { detectors: ['email', 'credit_card'] } } },
      rules: [{ name: 'agents-read', effect: 'allow', subjects: { groups: ['agents'] }, actions: ['read'], mask: 'pii' }],
    });
  });

  afterAll(async () => {
    await sluice?.stop();
    await idp?.close();
    await dropDatabases([storeDb]);
    await deleteStreams([stream]);
  });

  it('stores every statement of 4 agents once, with its outcome, none lost or doubled', async () => {
    const agents = await Promise.all(
      Array.from({ length: 4 }, async (_, index) => {
        const client = new pg.Client({ host: '127.0.0.1', port, user: `agent${index}`, database: 'db', password: await idp.mint({ sub: `agent${index}`, groups: ['agents'] }) });
        await client.connect();
        return client;
      }),
    );
    const { seq: afterSeq } = await storeMark(storeUrl);
    let done = 0;
    const until = Date.now() + 3_000;
    await Promise.all(
      agents.map(async (client, index) => {
        // A new literal each time, as agents and pgbench -S send.
        for (let n = 0; Date.now() < until; n++) {
          await client.query(`SELECT ${index * 1_000_000 + n} AS keeps_up, 'someone@example.com' AS email`);
          done += 1;
        }
      }),
    );
    const loadEndedAt = Date.now();
    const result = await auditCatchUp({ storeUrl, afterSeq, commandPrefix: 'SELECT ', expected: done, slack: 0, loadEndedAt, withinMs: 30_000 });
    await Promise.all(agents.map((client) => client.end()));
    expect(done).toBeGreaterThan(0);
    expect(result, describeCatchUp(result)).toMatchObject({ recorded: done, doubled: 0, ok: true });
  });

  it('stores events whose ids, session ids and command ids are UUIDv7, in the order they were made (the right edge of the indexes)', async () => {
    const { seq: afterSeq } = await storeMark(storeUrl);
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'agent-ids', database: 'db', password: await idp.mint({ sub: 'agent-ids', groups: ['agents'] }) });
    await client.connect();
    for (let n = 0; n < 5; n++) await client.query(`SELECT ${n} AS time_ordered_ids`);
    const loadEndedAt = Date.now();
    await client.end();
    const result = await auditCatchUp({ storeUrl, afterSeq, commandPrefix: 'SELECT ', expected: 5, slack: 0, loadEndedAt, withinMs: 30_000 });
    expect(result, describeCatchUp(result)).toMatchObject({ recorded: 5, ok: true });
    const store = new pg.Client({ connectionString: storeUrl });
    await store.connect();
    try {
      // session.ended follows the statements once the connection is gone.
      let rows: Array<{ id: string; session_id: string; command_id: string | null; kind: string }> = [];
      for (const deadline = Date.now() + 10_000; !rows.some((row) => row.kind === 'session.ended') && Date.now() < deadline; await new Promise((resolve) => setTimeout(resolve, 50))) {
        ({ rows } = await store.query(`SELECT id, session_id, command_id, kind FROM sluice.events WHERE seq > $1 AND session_id IN (SELECT session_id FROM sluice.events WHERE seq > $1 AND data->>'command' LIKE '%time_ordered_ids%') ORDER BY session_seq`, [afterSeq]));
      }
      expect(rows.map((row) => row.kind)).toEqual(['session.started', ...Array<string>(5).fill('command.executed'), 'session.ended']);
      const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
      for (const row of rows) {
        expect(row.id).toMatch(UUID_V7);
        expect(row.session_id).toMatch(UUID_V7);
      }
      const ids = rows.map((row) => row.id);
      expect([...ids].sort()).toEqual(ids);
      const commandIds = rows.flatMap((row) => (row.command_id ? [row.command_id] : []));
      expect(commandIds).toHaveLength(5);
      for (const commandId of commandIds) expect(commandId).toMatch(UUID_V7);
      expect([...commandIds].sort()).toEqual(commandIds);
    } finally {
      await store.end();
    }
  });

  it('with audit.wait ack, a command runs only once its decision is on the bus', async () => {
    const client = new pg.Client({ host: '127.0.0.1', port: ackedPort, user: 'agent', database: 'db-acked', password: await idp.mint({ sub: 'agent', groups: ['agents'] }) });
    await client.connect();
    const marker = `acked_${run}`;
    // Stamped by the target while it runs the command: the bus must have its record by then.
    const { rows } = await client.query<{ ran: Date }>(`SELECT clock_timestamp() AS ran, '${marker}' AS marker`);
    await client.end();
    const nc = await connectBus('nats://127.0.0.1:4222', 'keeps-up-test');
    try {
      const consumer = await jetstream(nc).consumers.get(stream);
      let decidedAt: Date | undefined;
      for (;;) {
        const message = await consumer.next({ expires: 2_000 });
        if (!message) break;
        const decided = decodeEvents(message.data).find((event) => event.type === 'sluice.command.decided.v1' && JSON.stringify(event.data).includes(marker));
        // The stream's own timestamp: when JetStream stored (and acknowledged) the message.
        if (decided) decidedAt = new Date(Number(message.info.timestampNanos) / 1e6);
      }
      expect(decidedAt, 'the command.decided event of the acknowledged command').toBeDefined();
      expect(decidedAt!.getTime()).toBeLessThanOrEqual(rows[0]!.ran.getTime() + 1);
    } finally {
      await nc.close();
    }
  });
});
