import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deleteStreams, dropDatabases } from '../support/databases.js';
import { freePort } from '../support/ports.js';
import { runCommand } from '../support/run.js';
import { allocateServicePorts, servicesSection, SLUICE_BIN, startSluice, type RunningSluice } from '../support/sluice.js';

/**
 * `sluice up` as a new user runs it: the per-deployment CA and certificates are generated beside
 * the other keys, every service speaks mutual TLS with them, the operator's `sluice policy
 * reload` holds its own certificate, and a second deployment whose ports clash is told so.
 */
describe('a deployment run by sluice up trusts only itself', () => {
  const run = randomUUID().slice(0, 8);
  const storeDb = `sluice_e2e_trust_${run}`;
  const stream = `SLUICE_E2E_TRUST_${run}`;
  let sluice: RunningSluice;
  const deployment = () => ({
    eventStore: { url: `postgres://postgres@127.0.0.1:5432/${storeDb}` },
    bus: { url: 'nats://127.0.0.1:4222', stream, subjectPrefix: `e2etrust.${run}.events` },
    rules: [{ name: 'read', effect: 'allow', actions: ['read'] }],
  });

  beforeAll(async () => {
    sluice = await startSluice(deployment());
  });
  afterAll(async () => {
    await sluice?.stop();
    await dropDatabases([storeDb]);
    await deleteStreams([stream]);
  });

  it('generates the CA and a certificate per peer, and gets ready over mutual TLS', async () => {
    for (const file of ['ca.crt', 'ca.key', 'proxy.crt', 'policy.crt', 'masking.crt', 'approval.crt', 'operator.crt']) {
      expect(existsSync(join(sluice.dir, '.sluice', 'keys', 'tls', file))).toBe(true);
    }
    expect((await fetch(`http://127.0.0.1:${sluice.ports.admin}/readyz`)).status).toBe(200);
  });

  it('reloads the policy through sluice policy reload, which presents the operator certificate', async () => {
    const result = await sluice.cli(['policy', 'reload', '--config', sluice.configPath]);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/policy reloaded: version \d+/);
  });

  it("refuses to start a second deployment whose service port is taken, in one line naming the key and the port", async () => {
    const ports = { ...(await allocateServicePorts()), masking: sluice.ports.masking };
    const dir = mkdtempSync(join(tmpdir(), 'sluice-e2e-clash-'));
    try {
      writeFileSync(join(dir, 'sluice.yaml'), stringify({ admin: { listen: `127.0.0.1:${ports.admin}` }, services: servicesSection(ports), ...deployment() }));
      const result = await runCommand(process.execPath, [SLUICE_BIN, 'up', '--config', 'sluice.yaml'], { cwd: dir, env: { ...process.env, LOG_LEVEL: 'warn' } });
      expect(result.status).not.toBe(0);
      const lines = result.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain('services.masking.grpc');
      expect(lines[0]).toContain(`port ${sluice.ports.masking}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses, the same way, a resource listener whose port is taken', async () => {
    const taken = await freePort();
    const holder = (await import('node:net')).createServer().listen(taken, '127.0.0.1');
    await new Promise((resolve) => holder.once('listening', resolve));
    const dir = mkdtempSync(join(tmpdir(), 'sluice-e2e-clash-'));
    try {
      const ports = await allocateServicePorts();
      writeFileSync(
        join(dir, 'sluice.yaml'),
        stringify({
          admin: { listen: `127.0.0.1:${ports.admin}` },
          services: servicesSection(ports),
          ...deployment(),
          resources: [{ name: 'db', type: 'postgres', listen: `127.0.0.1:${taken}`, target: { host: '127.0.0.1', database: 'postgres' }, credentials: { username: 'postgres' } }],
        }),
      );
      const result = await runCommand(process.execPath, [SLUICE_BIN, 'up', '--config', 'sluice.yaml'], { cwd: dir, env: { ...process.env, LOG_LEVEL: 'warn' } });
      expect(result.status).not.toBe(0);
      expect(result.stderr.trim().split('\n')).toEqual([expect.stringContaining(`resources[0].listen: port ${taken}`)]);
    } finally {
      holder.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
