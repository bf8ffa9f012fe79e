import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
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

  beforeAll(async () => {
    idp = await startTestIssuer();
    port = await freePort();
    sluice = await startSluice({
      identity: { oidc: [{ issuer: idp.issuer, audience: 'sluice' }] },
      eventStore: { url: storeUrl },
      bus: { url: 'nats://127.0.0.1:4222', stream, subjectPrefix: `keepsup.${run}.events` },
      resources: [{ name: 'db', type: 'postgres', listen: `127.0.0.1:${port}`, target: { host: '127.0.0.1', database: 'postgres' }, credentials: { username: 'postgres' } }],
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
    const afterSeq = await storeMark(storeUrl);
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
});
