import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, dropDatabases } from '../support/databases.js';
import { startSecuredNats, type SecuredNats } from '../support/nats-server.js';
import { startTestIssuer, type TestIssuer } from '../support/oidc.js';
import { freePort } from '../support/ports.js';
import { runCommand } from '../support/run.js';
import { SLUICE_BIN, startSluice, type RunningSluice } from '../support/sluice.js';

describe('a deployment with every guard on: NATS users from `sluice keys`, signed events, audit readers', () => {
  const run = randomUUID().slice(0, 8);
  const targetDb = `sluice_e2e_sec_${run}`;
  const storeDb = `sluice_e2e_secstore_${run}`;
  const stream = `SLUICE_E2E_SEC_${run}`;
  const subjectPrefix = `e2esec.${run}.events`;
  let keysDir: string;
  let nats: SecuredNats;
  let idp: TestIssuer;
  let sluice: RunningSluice;
  let pgPort: number;

  beforeAll(async () => {
    await createDatabase(targetDb, `CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'hello');`);
    keysDir = join(mkdtempSync(join(tmpdir(), 'sluice-e2e-keys-')), 'keys');
    const keys = await runCommand(process.execPath, [SLUICE_BIN, 'keys', '--out', keysDir, '--stream', stream, '--prefix', subjectPrefix]);
    expect(keys.status).toBe(0);
    nats = await startSecuredNats(readFileSync(join(keysDir, 'nats-auth.conf'), 'utf8'));
    idp = await startTestIssuer();
    pgPort = await freePort();
    sluice = await startSluice(
      {
        bus: { url: nats.url, stream, subjectPrefix },
        eventStore: { url: `postgres://postgres@127.0.0.1:5432/${storeDb}` },
        identity: { oidc: [{ issuer: idp.issuer, audience: 'sluice' }] },
        resources: [{ name: 'notes-db', type: 'postgres', listen: `127.0.0.1:${pgPort}`, target: { host: '127.0.0.1', database: targetDb }, credentials: { username: 'postgres' } }],
        audit: { readers: { groups: ['compliance'] } },
        rules: [{ name: 'support-read', effect: 'allow', subjects: { groups: ['support-agents'] }, actions: ['read'] }],
      },
      // The keys folder `sluice keys` wrote: the services sign with it and log in to NATS with it.
      { env: { SLUICE_KEYS_DIR: keysDir, NATS_URL: '', DATABASE_URL: '' } },
    );
  });

  afterAll(async () => {
    await sluice?.stop();
    await idp?.close();
    await nats?.stop();
    await dropDatabases([targetDb, storeDb]);
    if (keysDir) rmSync(join(keysDir, '..'), { recursive: true, force: true });
  });

  it('records an agent session that a reader can list, replay and verify, while an anonymous client gets nowhere near the bus', async () => {
    await expect(connect({ servers: nats.url, reconnect: false, timeout: 3_000 })).rejects.toThrow(/authorization/i);

    const client = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'agent-1', database: 'notes-db', password: await idp.mint({ sub: 'agent-1', groups: ['support-agents'] }) });
    await client.connect();
    expect((await client.query('SELECT body FROM notes')).rows).toEqual([{ body: 'hello' }]);
    await client.end();

    const reader = await idp.mint({ sub: 'carol', groups: ['compliance'] });
    const base = `http://127.0.0.1:${sluice.ports.auditHttp}`;
    expect((await fetch(`${base}/v1/sessions?subject=agent-1`)).status).toBe(401);
    expect((await fetch(`${base}/v1/sessions?subject=agent-1`, { headers: { authorization: `Bearer ${await idp.mint({ sub: 'agent-1', groups: ['support-agents'] })}` } })).status).toBe(403);
    let sessions: Array<{ session_id: string; ended_at: string | null }> = [];
    for (let attempt = 0; attempt < 100 && !(sessions.length === 1 && sessions[0]!.ended_at); attempt++) {
      const response = await fetch(`${base}/v1/sessions?subject=agent-1`, { headers: { authorization: `Bearer ${reader}` } });
      expect(response.status).toBe(200);
      sessions = ((await response.json()) as { sessions: typeof sessions }).sessions;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(sessions).toHaveLength(1);
    const replay = await sluice.cli(['replay', sessions[0]!.session_id], { SLUICE_TOKEN: reader });
    expect(replay.stdout).toContain('SELECT body FROM notes');
    const verify = await sluice.cli(['audit', 'verify', '--json'], { SLUICE_TOKEN: reader });
    expect(verify.status).toBe(0);
    expect(JSON.parse(verify.stdout)).toMatchObject({ ok: true });

    const store = new pg.Client({ host: '127.0.0.1', user: 'postgres', database: storeDb });
    await store.connect();
    try {
      const signers = await store.query(`SELECT DISTINCT signed_by FROM sluice.events ORDER BY 1`);
      expect(signers.rows.map((row) => row.signed_by)).toContain('proxy');
      expect(signers.rows.map((row) => row.signed_by)).not.toContain(null);
      expect((await store.query('SELECT count(*)::int AS n FROM sluice.rejected_events')).rows[0].n).toBe(0);
    } finally {
      await store.end();
    }
  });
});
