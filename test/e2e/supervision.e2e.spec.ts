import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { getPriority } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { parse, stringify } from 'yaml';
import { deleteStreams, dropDatabases } from '../support/databases.js';
import { startTestIssuer, type TestIssuer } from '../support/oidc.js';
import { freePort } from '../support/ports.js';
import { startSluice, type RunningSluice } from '../support/sluice.js';

interface Readiness {
  status: string;
  services: Record<string, { state: string; restarts: number; pid: number | null }>;
  consumers?: Array<{ durable: string; pending: number }>;
}

const waitFor = async <T>(probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
};

describe('sluice up supervises its services', () => {
  let idp: TestIssuer;
  let sluice: RunningSluice;
  let proxyPort: number;

  beforeAll(async () => {
    idp = await startTestIssuer();
    proxyPort = await freePort();
    sluice = await startSluice({
      identity: { oidc: [{ issuer: idp.issuer, audience: 'sluice' }] },
      eventStore: { url: 'postgres://postgres@127.0.0.1:5432/sluice_e2e_supervision' },
      bus: { url: 'nats://127.0.0.1:4222', stream: 'SLUICE_E2E_SUPERVISION', subjectPrefix: 'e2esup.events' },
      resources: [{ name: 'db', type: 'postgres', listen: `127.0.0.1:${proxyPort}`, target: { host: '127.0.0.1', database: 'postgres' }, credentials: { username: 'postgres' } }],
      rules: [{ name: 'readers', effect: 'allow', subjects: { groups: ['readers'] }, actions: ['read'] }],
    });
  });
  afterAll(async () => {
    await sluice?.stop();
    await idp?.close();
    await dropDatabases(['sluice_e2e_supervision']);
    await deleteStreams(['SLUICE_E2E_SUPERVISION']);
  });

  const readiness = async (): Promise<{ status: number; body: Readiness }> => {
    const response = await fetch(`http://127.0.0.1:${sluice.ports.admin}/readyz`);
    return { status: response.status, body: (await response.json()) as Readiness };
  };

  const agent = async (groups: string[]) => {
    const client = new pg.Client({ host: '127.0.0.1', port: proxyPort, user: 'a', database: 'a', password: await idp.mint({ sub: 'agent-s', groups }) });
    await client.connect();
    return client;
  };

  it('runs the proxy and the audit service with a larger young generation, the other services as node starts', async () => {
    const { body } = await readiness();
    const argvOf = (service: string): string[] => readFileSync(`/proc/${body.services[service]!.pid!}/cmdline`, 'utf8').split('\0');
    for (const service of ['proxy', 'audit']) expect(argvOf(service)).toContain('--max-semi-space-size=32');
    for (const service of ['policy', 'masking', 'approval']) expect(argvOf(service).some((arg) => arg.startsWith('--max-semi-space-size'))).toBe(false);
  });

  it('runs every thread of the audit service at services.audit.niceness (-5 by default), the other services as started', async () => {
    const { body } = await readiness();
    // Field 19 of /proc/<pid>/task/<tid>/stat, counted after the command name's closing parenthesis.
    const nicenessOf = (service: string): number[] => {
      const pid = body.services[service]!.pid!;
      return readdirSync(`/proc/${pid}/task`).map((thread) => Number(readFileSync(`/proc/${pid}/task/${thread}/stat`, 'utf8').split(') ')[1]!.split(' ')[16]));
    };
    // The services start at this runner's niceness (inherited); lowering it needs CAP_SYS_NICE.
    const started = getPriority();
    const privileged = process.getuid?.() === 0;
    expect(new Set(nicenessOf('audit'))).toEqual(new Set([privileged ? -5 : started]));
    for (const service of ['proxy', 'policy', 'masking', 'approval']) expect(new Set(nicenessOf(service))).toEqual(new Set([started]));
  });

  it('fails closed while the policy service does not answer, and serves again when it does', async () => {
    const client = await agent(['readers']);
    expect((await client.query('SELECT 1 AS one')).rows[0].one).toBe(1);
    const policyPid = (await readiness()).body.services.policy!.pid!;
    // Stopped, not killed: the supervisor must not bring it back while we look.
    process.kill(policyPid, 'SIGSTOP');
    try {
      const refused = await client.query('SELECT 2 AS uncached').catch((error: unknown) => error as { code?: string });
      expect(refused).toMatchObject({ code: '42501' });
    } finally {
      process.kill(policyPid, 'SIGCONT');
    }
    await waitFor(async () => ((await client.query('SELECT 3 AS back').catch(() => undefined))?.rows[0]?.back === 3 ? true : undefined));
    await client.end();
  });

  it('restarts a service that dies and reports it in /readyz', async () => {
    const { body } = await readiness();
    expect(body.consumers?.map((consumer) => consumer.durable)).toContain('audit-store');
    const policyPid = body.services.policy!.pid!;
    process.kill(policyPid, 'SIGKILL');
    await waitFor(async () => {
      const { status, body: now } = await readiness();
      return status === 200 && now.services.policy!.restarts >= 1 && now.services.policy!.pid !== policyPid ? true : undefined;
    });
    // New sessions are refused (fail closed) until the proxy reaches the new policy service.
    await waitFor(async () => {
      const client = await agent(['readers']).catch(() => undefined);
      const back = await client?.query('SELECT 4 AS back').then((result) => result.rows[0]?.back, () => undefined);
      await client?.end().catch(() => undefined);
      return back === 4 ? true : undefined;
    });
  });

  it('reloads rules on SIGHUP and keeps the old rules when the new file is invalid', async () => {
    const original = readFileSync(sluice.configPath, 'utf8');
    const config = parse(original) as { rules: unknown[] };
    config.rules.push({ name: 'writers-too', effect: 'allow', subjects: { groups: ['readers'] }, actions: ['write'] });
    const notify = (client: pg.Client) => client.query("SELECT pg_notify('sluice_e2e', 'x')").then(() => 'allowed', (error: { code?: string }) => error.code);
    const client = await agent(['readers']);
    expect(await notify(client)).toBe('42501');

    writeFileSync(sluice.configPath, 'rules:\n  - name: broken\n    effect: sometimes\n');
    process.kill(sluiceSupervisorPid(sluice), 'SIGHUP');
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect((await client.query('SELECT 4 AS still')).rows[0].still).toBe(4);
    expect(await notify(client)).toBe('42501');
    await client.end();

    writeFileSync(sluice.configPath, stringify(config));
    process.kill(sluiceSupervisorPid(sluice), 'SIGHUP');
    await waitFor(async () => {
      const fresh = await agent(['readers']);
      const outcome = await notify(fresh);
      await fresh.end();
      return outcome === 'allowed' ? true : undefined;
    });
    writeFileSync(sluice.configPath, original);
  });
});

const sluiceSupervisorPid = (sluice: RunningSluice): number => {
  const info = JSON.parse(readFileSync(`${sluice.dir}/.sluice/runtime.json`, 'utf8')) as { pid: number };
  return info.pid;
};
