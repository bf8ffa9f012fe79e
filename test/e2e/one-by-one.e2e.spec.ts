import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, deleteStreams, dropDatabases } from '../support/databases.js';
import { startTestIssuer, type TestIssuer } from '../support/oidc.js';
import { freePort } from '../support/ports.js';
import { allocateServicePorts, servicesSection, SLUICE_BIN, type ServicePorts } from '../support/sluice.js';
import { runCommand } from '../support/run.js';

/**
 * `npx sluice <service> --config FILE` for each service, in one folder and at the same moment,
 * without `sluice up` and without keys in the config: they must agree on one generated key set,
 * so the audit service stores their events as genuine.
 */
describe('services started one by one from one folder', () => {
  const run = randomUUID().slice(0, 8);
  const targetDb = `sluice_e2e_one_${run}`;
  const storeDb = `sluice_e2e_onestore_${run}`;
  const stream = `SLUICE_E2E_ONE_${run}`;
  let dir: string;
  let idp: TestIssuer;
  let ports: ServicePorts;
  let pgPort: number;
  const children: ChildProcess[] = [];
  let output = '';

  beforeAll(async () => {
    await createDatabase(targetDb, `CREATE TABLE t (id int); INSERT INTO t VALUES (7);`);
    idp = await startTestIssuer();
    ports = await allocateServicePorts();
    pgPort = await freePort();
    dir = mkdtempSync(join(tmpdir(), 'sluice-one-'));
    writeFileSync(
      join(dir, 'sluice.yaml'),
      stringify({
        bus: { url: 'nats://127.0.0.1:4222', stream, subjectPrefix: `e2eone.${run}.events` },
        eventStore: { url: `postgres://postgres@127.0.0.1:5432/${storeDb}` },
        identity: { oidc: [{ issuer: idp.issuer, audience: 'sluice' }] },
        services: servicesSection(ports),
        resources: [{ name: 'db', type: 'postgres', listen: `127.0.0.1:${pgPort}`, target: { host: '127.0.0.1', database: targetDb }, credentials: { username: 'postgres' } }],
        audit: { readers: { subs: ['carol'] } },
        rules: [{ name: 'read', effect: 'allow', subjects: { groups: ['agents'] }, actions: ['read'] }],
      }),
    );
    const env = { ...process.env, LOG_LEVEL: 'warn', NATS_URL: '', DATABASE_URL: '', SLUICE_KEYS_DIR: '' };
    for (const service of ['audit', 'policy', 'masking', 'approval', 'proxy']) {
      const child = spawn(process.execPath, [SLUICE_BIN, service, '--config', 'sluice.yaml'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      children.push(child);
    }
  });

  afterAll(async () => {
    for (const child of children.reverse()) {
      if (child.exitCode !== null) continue;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    await idp?.close();
    await dropDatabases([targetDb, storeDb]);
    await deleteStreams([stream]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('signs with one generated key set, so a session is stored as genuine and verifies', async () => {
    const password = await idp.mint({ sub: 'agent-7', groups: ['agents'] });
    let rows: unknown[] = [];
    for (let attempt = 0; attempt < 150 && rows.length === 0; attempt++) {
      // The proxy comes up once policy, masking and the bus answer; a proxy that restarts on the
      // way (the stream not yet created by audit) is the service's own retry, not ours to hide.
      try {
        const client = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'agent-7', database: 'db', password });
        await client.connect();
        rows = (await client.query('SELECT id FROM t')).rows;
        await client.end();
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
    expect(rows, output).toEqual([{ id: 7 }]);
    const reader = await idp.mint({ sub: 'carol' });
    let verify = { status: 1, stdout: '', stderr: '' };
    for (let attempt = 0; attempt < 50; attempt++) {
      verify = await runCommand(process.execPath, [SLUICE_BIN, 'audit', 'verify', '--json', '--config', 'sluice.yaml', '--token', reader], { cwd: dir });
      const result = JSON.parse(verify.stdout || '{}') as { ok?: boolean; events?: number };
      if (result.ok === false || (result.events ?? 0) >= 3) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(verify.status, `${verify.stdout}${verify.stderr}\n${output}`).toBe(0);
    expect(JSON.parse(verify.stdout)).toMatchObject({ ok: true });
  });
});
