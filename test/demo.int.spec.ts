import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { deleteStreams, dropDatabases } from './support/databases.js';
import { freePorts } from './support/ports.js';
import { runCommand } from './support/run.js';
import { allocateServicePorts, REPO_ROOT, servicesSection, SLUICE_BIN, type ServicePorts } from './support/sluice.js';

const START_SCRIPT = join(REPO_ROOT, 'scripts/start.mjs');
const run = Math.random().toString(36).slice(2, 8);

interface Scratch {
  readonly dir: string;
  readonly database: string;
  readonly eventsDatabase: string;
  readonly role: string;
  readonly redisUser: string;
  readonly keyPrefix: string;
  readonly stream: string;
  readonly ports: ServicePorts;
  readonly listen: { readonly pg: number; readonly redis: number; readonly http: number; readonly api: number; readonly issuer: number };
}

/** The example config's shape on scratch names and free ports, so a test never meets a real demo. */
const scratchDeployment = async (tag: string): Promise<Scratch> => {
  const dir = mkdtempSync(join(tmpdir(), `sluice-demo-${tag}-`));
  const ports = await allocateServicePorts();
  const [pgPort, redisPort, httpPort, api, issuer] = await freePorts(5);
  const scratch: Scratch = {
    dir,
    database: `demo_shop_${tag}_${run}`,
    eventsDatabase: `demo_events_${tag}_${run}`,
    role: `demo_owner_${tag}_${run}`,
    redisUser: `demo-cache-${tag}-${run}`,
    keyPrefix: `test-demo-${tag}-${run}:`,
    stream: `TEST_DEMO_${tag.toUpperCase()}_${run.toUpperCase()}`,
    ports,
    listen: { pg: pgPort!, redis: redisPort!, http: httpPort!, api: api!, issuer: issuer! },
  };
  const example = readFileSync(join(REPO_ROOT, 'deploy/sluice.example.yaml'), 'utf8');
  expect(example).toContain('database: shop');
  writeFileSync(
    join(dir, 'sluice.yaml'),
    stringify({
      admin: { listen: `127.0.0.1:${ports.admin}` },
      bus: { url: 'nats://127.0.0.1:4222', stream: scratch.stream, subjectPrefix: `testdemo${tag}${run}.events` },
      eventStore: { url: `postgres://postgres@127.0.0.1:5432/${scratch.eventsDatabase}` },
      identity: { oidc: [{ issuer: `http://127.0.0.1:${scratch.listen.issuer}`, audience: 'sluice' }] },
      services: servicesSection(ports),
      resources: [
        { name: 'shop-db', type: 'postgres', listen: `127.0.0.1:${scratch.listen.pg}`, target: { host: '127.0.0.1', port: 5432, database: scratch.database }, credentials: { username: scratch.role, password: { env: 'SHOP_DB_PASSWORD' } } },
        { name: 'cache', type: 'redis', listen: `127.0.0.1:${scratch.listen.redis}`, target: { host: '127.0.0.1', port: 6379 }, credentials: { username: scratch.redisUser, password: { env: 'REDIS_PASSWORD' } } },
        { name: 'billing-api', type: 'http', listen: `127.0.0.1:${scratch.listen.http}`, target: { url: `http://127.0.0.1:${scratch.listen.api}` }, credentials: { headers: { Authorization: { env: 'BILLING_TOKEN', prefix: 'Bearer ' } } } },
      ],
      masking: { profiles: { pii: { detectors: ['credit_card', 'email', 'phone', 'us_ssn', 'iban', 'ipv4'], strategy: 'partial', columns: [{ match: '(?i)ssn', strategy: 'redact' }] } } },
      rules: [
        { name: 'support-read', effect: 'allow', subjects: { groups: ['support-agents'] }, actions: ['read'], mask: 'pii' },
        { name: 'never-admin', effect: 'deny', actions: ['admin'] },
      ],
    }),
  );
  return scratch;
};

const cleanUp = async (scratch: Scratch): Promise<void> => {
  await dropDatabases([scratch.database, scratch.eventsDatabase], [scratch.role]);
  await deleteStreams([scratch.stream]);
  const redis = createClient({ url: 'redis://127.0.0.1:6379' });
  await redis.connect();
  const keys = await redis.keys(`${scratch.keyPrefix}*`);
  if (keys.length > 0) await redis.del(keys);
  await redis.sendCommand(['ACL', 'DELUSER', scratch.redisUser]);
  await redis.quit();
  rmSync(scratch.dir, { recursive: true, force: true });
};

/** The demo's environment: nothing of the test runner's own secrets or deployment hints. */
const demoEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: 'warn' };
  for (const name of ['SLUICE_CONFIG', 'DATABASE_URL', 'SHOP_DB_PASSWORD', 'REDIS_PASSWORD', 'BILLING_TOKEN', 'npm_command']) delete env[name];
  return env;
};

const luhnValid = (digits: string): boolean => {
  let sum = 0;
  [...digits].reverse().forEach((character, index) => {
    let digit = Number(character);
    if (index % 2 === 1) digit = digit * 2 > 9 ? digit * 2 - 9 : digit * 2;
    sum += digit;
  });
  return sum % 10 === 0;
};

const ibanValid = (iban: string): boolean => {
  const compact = iban.replace(/ /g, '');
  const numeric = `${compact.slice(4)}${compact.slice(0, 4)}`.replace(/[A-Z]/g, (letter) => String(letter.charCodeAt(0) - 55));
  let remainder = 0;
  for (const character of numeric) remainder = (remainder * 10 + Number(character)) % 97;
  return remainder === 1;
};

describe('sluice demo seeds its world idempotently', () => {
  let scratch: Scratch;
  beforeAll(async () => {
    scratch = await scratchDeployment('seed');
  });
  afterAll(() => cleanUp(scratch));

  const seed = () => runCommand(process.execPath, [SLUICE_BIN, 'demo', '--config', 'sluice.yaml', '--seed-only', '--key-prefix', scratch.keyPrefix], { cwd: scratch.dir, env: demoEnv() });

  it('creates the database, role, tables, keys and ACL user the walkthrough needs, and a second run only resets them', async () => {
    const first = await seed();
    expect(first.status, first.stderr).toBe(0);
    expect(first.stdout).toContain(`database ${scratch.database} (created)`);
    expect(first.stdout).toContain('secrets SHOP_DB_PASSWORD, REDIS_PASSWORD, BILLING_TOKEN set for the demo');
    const secrets = JSON.parse(readFileSync(join(scratch.dir, '.sluice/demo-secrets.json'), 'utf8')) as Record<string, string>;

    const shop = new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database: scratch.database });
    await shop.connect();
    try {
      const customers = (await shop.query('SELECT * FROM customers ORDER BY id')).rows;
      expect(customers).toHaveLength(40);
      for (const customer of customers) {
        expect(luhnValid(customer.card_number.replace(/ /g, '')), customer.card_number).toBe(true);
        expect(ibanValid(customer.iban), customer.iban).toBe(true);
        expect(customer.ssn).toMatch(/^(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}$/);
        expect(customer.email).toMatch(/@example\.(com|org|net)$/);
      }
      expect(Number((await shop.query('SELECT count(*) FROM orders')).rows[0].count)).toBe(120);
      const owner = (await shop.query(`SELECT tableowner FROM pg_tables WHERE tablename = 'orders'`)).rows[0].tableowner;
      expect(owner).toBe(scratch.role);

      // The walkthrough's approved UPDATE changes every order; the next start brings them back.
      const before = (await shop.query('SELECT id, status FROM orders ORDER BY id')).rows;
      await shop.query(`UPDATE orders SET status = 'refunded'`);
      await shop.query(`INSERT INTO orders (id, customer_id, placed_at, status, total) VALUES (1000, 1, now(), 'paid', 1)`);
      const second = await seed();
      expect(second.status, second.stderr).toBe(0);
      expect(second.stdout).toContain(`database ${scratch.database} (reset)`);
      expect((await shop.query('SELECT id, status FROM orders WHERE id <= 120 ORDER BY id')).rows).toEqual(before);
      expect(Number((await shop.query('SELECT count(*) FROM customers')).rows[0].count)).toBe(40);
    } finally {
      await shop.end();
    }
    expect(JSON.parse(readFileSync(join(scratch.dir, '.sluice/demo-secrets.json'), 'utf8'))).toEqual(secrets);

    const asUser = createClient({ url: 'redis://127.0.0.1:6379', username: scratch.redisUser, password: secrets.REDIS_PASSWORD });
    await asUser.connect();
    try {
      expect(JSON.parse((await asUser.get(`${scratch.keyPrefix}customer:1`))!)).toMatchObject({ email: expect.stringMatching(/@example\./) });
      expect(await asUser.lLen(`${scratch.keyPrefix}recent-logins`)).toBe(10);
      await expect(asUser.get('outside-the-demo-prefix')).rejects.toThrow(/NOPERM/);
      await expect(asUser.sendCommand(['FLUSHALL'])).rejects.toThrow(/NOPERM/);
    } finally {
      await asUser.quit();
    }
  });
});

describe('sluice demo on a target it cannot reach', () => {
  it('names the target and what to check, and exits non-zero with --seed-only', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-demo-unreachable-'));
    const [closed, listen] = await freePorts(2);
    writeFileSync(join(dir, 'sluice.yaml'), stringify({ resources: [{ name: 'cache', type: 'redis', listen: `127.0.0.1:${listen}`, target: { host: '127.0.0.1', port: closed } }] }));
    const result = await runCommand(process.execPath, [SLUICE_BIN, 'demo', '--config', 'sluice.yaml', '--seed-only', '--key-prefix', `unreachable-${run}:`], { cwd: dir, env: demoEnv() });
    rmSync(dir, { recursive: true, force: true });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`sluice demo: cannot prepare Redis for cache: cannot reach Redis at 127.0.0.1:${closed}`);
  });
});

const portIsFree = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });

const descendantsOf = (pid: number): number[] => {
  const table = execFileSync('ps', ['-e', '-o', 'pid=,ppid='], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .map((line) => line.trim().split(/\s+/).map(Number) as [number, number]);
  const found: number[] = [];
  const walk = (parent: number) => {
    for (const [child, ppid] of table) {
      if (ppid === parent) {
        found.push(child);
        walk(child);
      }
    }
  };
  walk(pid);
  return found;
};

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/**
 * As npm runs a script (`npm start`) or a bin (`npx sluice …`): npm, here a node process in its
 * place with the variable npm sets, runs the command through `sh -c`, and that shell stays between
 * npm and the command (it waits for it), so killing npm leaves the shell behind.
 */
const underNpm = (command: string, npmCommand: string, options: SpawnOptions): ChildProcess =>
  spawn(
    process.execPath,
    ['-e', `require('node:child_process').spawn('sh', ['-c', ${JSON.stringify(`${command}; exit $?`)}], { stdio: 'inherit' }).on('exit', (code) => process.exit(code ?? 1));`],
    { ...options, env: { ...options.env, npm_command: npmCommand } },
  );

const waitUntil = async (condition: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> => {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what} not reached in ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
};

describe('npm start runs the demo and stops everything it started', () => {
  let scratch: Scratch;
  let launched: ChildProcess | undefined;
  let output = '';
  beforeAll(async () => {
    scratch = await scratchDeployment('start');
  });
  afterAll(async () => {
    if (launched?.pid !== undefined) for (const pid of [launched.pid, ...descendantsOf(launched.pid)]) if (alive(pid)) process.kill(pid, 'SIGKILL');
    await cleanUp(scratch);
  });

  /**
   * As `npm start -- --config FILE` runs it: the start script, in its own process group like a
   * terminal's job; `viaNpm` puts npm (and the shell npm runs it through) above the script.
   */
  const startDemo = async (viaNpm = false): Promise<{ root: ChildProcess; processes: number[] }> => {
    output = '';
    const args = [START_SCRIPT, '--config', 'sluice.yaml', '--key-prefix', scratch.keyPrefix];
    const options: SpawnOptions = { cwd: scratch.dir, env: demoEnv(), stdio: ['ignore', 'pipe', 'pipe'], detached: true };
    launched = viaNpm
      ? underNpm(`"${process.execPath}" ${args.map((arg) => `'${arg}'`).join(' ')}`, 'start', options)
      : spawn(process.execPath, args, options);
    launched.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    launched.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    await waitUntil(async () => (await fetch(`http://127.0.0.1:${scratch.ports.admin}/readyz`).catch(() => undefined))?.status === 200, 90_000, 'readiness');
    await waitUntil(() => output.includes('sluice demo: ready'), 10_000, 'the ready line');
    const processes = [launched.pid!, ...descendantsOf(launched.pid!)];
    // start script, demo (supervisor), five services; and npm and its shell
    expect(processes.length).toBeGreaterThanOrEqual(viaNpm ? 9 : 7);
    return { root: launched, processes };
  };

  const expectAllGone = async (processes: readonly number[]): Promise<void> => {
    await waitUntil(() => processes.every((pid) => !alive(pid)), 30_000, 'every process gone');
    const ports = [scratch.ports.admin, scratch.ports.policy, scratch.ports.masking, scratch.ports.approvalGrpc, scratch.ports.approvalHttp, scratch.ports.auditHttp, ...Object.values(scratch.listen)];
    for (const port of ports) expect(await portIsFree(port), `port ${port}`).toBe(true);
  };

  it('serves the walkthrough (masked row, denied DELETE, masked HTTP body), then SIGTERM leaves no process and no bound port', async () => {
    const { root, processes } = await startDemo();
    const token = (await runCommand(process.execPath, [SLUICE_BIN, 'token', '--sub', 'agent-1', '--groups', 'support-agents', '--issuer', `http://127.0.0.1:${scratch.listen.issuer}`], { cwd: scratch.dir })).stdout.trim();
    const psql = (sql: string) =>
      runCommand('psql', ['-h', '127.0.0.1', '-p', String(scratch.listen.pg), '-U', 'agent-1', '-d', scratch.database, '-X', '-At', '-c', sql], { env: { ...process.env, PGPASSWORD: token } });
    const masked = await psql('SELECT email, ssn, card_number FROM customers WHERE id = 1');
    expect(masked.status, masked.stderr).toBe(0);
    expect(masked.stdout.trim()).toMatch(/^[a-z]\*\*\*@example\.(com|org|net)\|\[REDACTED\]\|\*{4} \*{4} \*{4} \d{4}$/);
    const denied = await psql('DELETE FROM orders WHERE id = 1');
    expect(denied.status).not.toBe(0);
    expect(denied.stderr).toContain('permission denied');
    const invoice = await fetch(`http://127.0.0.1:${scratch.listen.http}/invoices/INV-00001`, { headers: { authorization: `Bearer ${token}` } });
    expect(invoice.status).toBe(200);
    const body = (await invoice.json()) as { customer: { email: string }; payment: { card: string } };
    expect(body.customer.email).toMatch(/^[a-z]\*\*\*@example\./);
    expect(body.payment.card).toMatch(/^\*{4} \*{4} \*{4} \d{4}$/);

    root.kill('SIGTERM');
    await expectAllGone(processes);
    expect(output).toContain('stopping (SIGTERM)');
  });

  it('Ctrl-C (SIGINT to the whole process group, as a terminal sends it) stops everything, once', async () => {
    const { root, processes } = await startDemo();
    process.kill(-root.pid!, 'SIGINT');
    await expectAllGone(processes);
    expect(output.match(/sluice demo: stopping/g)).toHaveLength(1);
  });

  it('stops everything when the launcher (npm) is killed outright', async () => {
    const { root, processes } = await startDemo(true);
    root.kill('SIGKILL');
    await expectAllGone(processes);
  });
});

describe('npx sluice dev-idp in the background', () => {
  const folders: string[] = [];
  afterAll(() => folders.forEach((folder) => rmSync(folder, { recursive: true, force: true })));

  const startIdp = async (port: number) => {
    const folder = mkdtempSync(join(tmpdir(), 'sluice-idp-'));
    folders.push(folder);
    // `npx sluice dev-idp &`: npm exec runs the CLI through a shell.
    const launcher = underNpm(`"${process.execPath}" "${SLUICE_BIN}" dev-idp --port ${port}`, 'exec', { cwd: folder, env: process.env, stdio: 'ignore', detached: true });
    await waitUntil(async () => (await fetch(`http://127.0.0.1:${port}/jwks`).catch(() => undefined))?.status === 200, 30_000, 'the issuer');
    return { launcher, processes: [launcher.pid!, ...descendantsOf(launcher.pid!)] };
  };

  it('stops and frees its port on SIGTERM, and when its launcher is killed', async () => {
    const [first, second] = await freePorts(2);
    const direct = await startIdp(first!);
    process.kill(direct.processes.at(-1)!, 'SIGTERM');
    await waitUntil(() => direct.processes.every((pid) => !alive(pid)), 15_000, 'dev-idp gone after SIGTERM');
    expect(await portIsFree(first!)).toBe(true);

    const orphaned = await startIdp(second!);
    orphaned.launcher.kill('SIGKILL');
    await waitUntil(() => orphaned.processes.every((pid) => !alive(pid)), 15_000, 'dev-idp gone with its launcher');
    expect(await portIsFree(second!)).toBe(true);
  });
});
