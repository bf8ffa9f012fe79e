/**
 * A CPU profile of every Sluice process while one agent runs N sequential statements:
 *   npx tsx --conditions=development bench/profile-proxy.ts [--statements 3000] [--dir /tmp/sluice-prof]
 *     [--redis [--clients 50] [--pipeline 16] [--random-keys 100000] [--fill-decisions 10000] [--idle-sessions 500]] [--http [--clients 50] [--duration 8s] [--credential-file]] [--noprof] [--strace]
 * Prints the proxy's top functions by self time (`--service audit`: the audit service's); the
 * .cpuprofile files open in Chrome DevTools. The masking profile is the benchmark's (every
 * detector and a column rule), so the per-operation figures compare with `npm run bench`.
 * It also prints each Sluice process's CPU per operation from /proc (user + system, the load and
 * a settling second after it), which counts time the wall-clock profiler cannot tell from waiting;
 * --noprof runs without the profiler, whose own overhead those figures otherwise include.
 * --random-keys N has redis-benchmark pick among N keys (`-r N`) instead of one.
 * --fill-decisions N first has N distinct commands decided (`KEYS fill:<i>*`, kept by their exact
 * arguments), so the load runs against a policy port whose decision cache is as full as a busy one's.
 * --idle-sessions N first opens N more Redis connections of the same agent, each sending one GET,
 * left open and idle through the load: the fair share's bookkeeping of an agent with a large pool.
 * --credential-file has the HTTP resource inject an Authorization header read from a file (`{ file }`),
 * as an API's credentials usually are; without it no credential is injected.
 * --strace counts the proxy's system calls during the load (`strace -c -f`, per operation); strace
 * slows every call it sees, so the CPU figures of such a run are not comparable with others.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createClient } from 'redis';
import { startTestIssuer } from '../test/support/oidc.js';
import { freePort } from '../test/support/ports.js';
import { startSluice } from '../test/support/sluice.js';
import { deleteStreams } from '../test/support/databases.js';
import { formatSelfTimes, monotonicMicros, profileRuns, readProfiles, summarizeProfile } from './support/cpu-profile.js';

const { values } = parseArgs({
  options: { statements: { type: 'string', default: '3000' }, dir: { type: 'string', default: '/tmp/sluice-prof' }, redis: { type: 'boolean', default: false }, http: { type: 'boolean', default: false }, service: { type: 'string', default: 'proxy' }, clients: { type: 'string', default: '50' }, pipeline: { type: 'string', default: '1' }, noprof: { type: 'boolean', default: false }, strace: { type: 'boolean', default: false }, 'random-keys': { type: 'string', default: '0' }, 'fill-decisions': { type: 'string', default: '0' }, 'idle-sessions': { type: 'string', default: '0' }, duration: { type: 'string', default: '8s' }, 'credential-file': { type: 'boolean', default: false } },
});
let statements = Number(values.statements);
// Side-by-side runs must not share a store database or a stream.
const suffix = randomBytes(4).toString('hex');
const storeDatabase = `sluice_profile_${suffix}`;
const stream = `SLUICE_PROFILE_${suffix}`;
/** PROFILE_SQL's `$1` becomes a new literal in every statement, as under pgbench -S. */
const statementText = (index: number) =>
  (process.env.PROFILE_SQL ?? `SELECT ${index} AS n, 'someone@example.com' AS email`).replaceAll('$1', String(1 + Math.floor(Math.random() * 100_000)));
const dir = values.dir;
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });

const credentialFile = `${dir}/api-token`;
writeFileSync(credentialFile, `${randomBytes(24).toString('hex')}\n`);
const run = promisify(execFile);
const randomKeys = Number(values['random-keys']) > 0 ? ['-r', values['random-keys']] : [];
/**
 * What a run leaves behind, undone in reverse order once: at its end, when it fails, and on
 * SIGINT (a failed or interrupted run must not leave its sluice_profile_* database or stream).
 */
const cleanups: Array<() => Promise<unknown>> = [];
let cleaned: Promise<void> | undefined;
const cleanUp = (): Promise<void> =>
  (cleaned ??= (async () => {
    for (const step of cleanups.splice(0).reverse()) await step().catch((error: unknown) => console.error(`cleanup: ${(error as Error).message}`));
  })());
process.once('SIGINT', () => void cleanUp().finally(() => process.exit(130)));
// Registered first, undone last: the store database and stream the services create.
cleanups.push(async () => {
  await deleteStreams([stream]);
  const admin = new pg.Client({ host: '127.0.0.1', user: 'postgres', database: 'postgres' });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${storeDatabase} WITH (FORCE)`);
  } finally {
    await admin.end();
  }
});
const idp = await startTestIssuer();
cleanups.push(() => idp.close());
const port = await freePort();
const redisPort = await freePort();
const httpPort = await freePort();
const document = JSON.stringify({ id: 7, name: 'Ada Lovelace', email: 'ada@example.com', notes: 'x'.repeat(900) });
const target = createServer((_request, response) => {
  response.writeHead(200, { 'content-type': 'application/json' });
  response.end(document);
});
await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
cleanups.push(async () => void target.close());
try {
  const sluice = await startSluice(
    {
      identity: { oidc: [{ issuer: idp.issuer, audience: 'sluice' }] },
      eventStore: { url: `postgres://postgres@127.0.0.1:5432/${storeDatabase}` },
      bus: { url: 'nats://127.0.0.1:4222', stream, subjectPrefix: `profile.${suffix}.events` },
      resources: [
        { name: 'db', type: 'postgres', listen: `127.0.0.1:${port}`, target: { host: '127.0.0.1', database: 'postgres' }, credentials: { username: 'postgres' } },
        {
          name: 'kv',
          type: 'redis',
          listen: `127.0.0.1:${redisPort}`,
          target: { host: '127.0.0.1', port: 6379 },
          // The idle sessions are the same agent's as the load's: past the default 100 per subject.
          ...(Number(values['idle-sessions']) > 0 ? { limits: { maxConnectionsPerSubject: Number(values['idle-sessions']) + 2 * Number(values.clients) } } : {}),
        },
        {
          name: 'api',
          type: 'http',
          listen: `127.0.0.1:${httpPort}`,
          target: { url: `http://127.0.0.1:${(target.address() as AddressInfo).port}` },
          ...(values['credential-file'] ? { credentials: { headers: { Authorization: { file: credentialFile, prefix: 'Bearer ' } } } } : {}),
        },
      ],
      // The realistic profile of issue 12: every detector and a column rule.
      masking: {
        profiles: {
          pii: { detectors: ['credit_card', 'email', 'phone', 'us_ssn', 'iban', 'ipv4', 'jwt', 'secret'], strategy: 'partial', columns: [{ match: '(?i)ssn', strategy: 'redact' }] },
        },
      },
      rules: [{ name: 'readers', effect: 'allow', actions: ['read'], mask: 'pii' }],
    },
    { env: { LOG_LEVEL: 'warn' }, nodeArgs: values.noprof ? [] : ['--cpu-prof', `--cpu-prof-dir=${dir}`] },
  );
  cleanups.push(() => sluice.stop());
  const ready = (await (await fetch(`http://127.0.0.1:${sluice.ports.admin}/readyz`)).json()) as { services: Record<string, { pid: number }> };
  const pids = Object.fromEntries(Object.entries(ready.services).map(([name, service]) => [name, service.pid]));
  /** User + system CPU of a process in µs (clock ticks of 10 ms), and the system part. */
  const cpuOf = (pid: number) => {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return { total: (Number(fields[11]) + Number(fields[12])) * 10_000, system: Number(fields[12]) * 10_000 };
  };
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'bench', database: 'db', password: await idp.mint({ sub: 'bench', expiresIn: 3600 }) });
  cleanups.push(() => client.end());
  await client.connect();
  for (let index = 0; index < 200; index++) await client.query('SELECT 0');
  const fillDecisions = Number(values['fill-decisions']);
  if (values.redis && fillDecisions > 0) {
    const filler = createClient({ socket: { host: '127.0.0.1', port: redisPort }, password: await idp.mint({ sub: 'bench', expiresIn: 3600 }) });
    await filler.connect();
    for (let start = 0; start < fillDecisions; start += 500) {
      await Promise.all(Array.from({ length: Math.min(500, fillDecisions - start) }, (_, index) => filler.keys(`fill:${start + index}*`)));
    }
    await filler.quit();
  }
  const idle: Array<ReturnType<typeof createClient>> = [];
  cleanups.push(() => Promise.all(idle.map((session) => session.quit())));
  // Opened 25 at a time: hundreds of logins at once outlast the client's connect timeout.
  for (let opened = 0; values.redis && opened < Number(values['idle-sessions']); opened += 25) {
    const password = await idp.mint({ sub: 'bench', expiresIn: 3600 });
    const batch = Array.from({ length: Math.min(25, Number(values['idle-sessions']) - opened) }, () => createClient({ socket: { host: '127.0.0.1', port: redisPort }, password }));
    await Promise.all(batch.map(async (session) => (await session.connect()).get('idle')));
    idle.push(...batch);
  }
  // A warm-up of the same load, not counted: the proxy's code is compiled, its caches filled, and
  // the per-connection work (token, admission) of a short measured run does not pass for per-request work.
  const warmToken = await idp.mint({ sub: 'bench', expiresIn: 3600 });
  if (values.http) await run('wrk', ['-t', '2', '-c', values.clients, '-d', '3s', '-H', `Authorization: Bearer ${warmToken}`, `http://127.0.0.1:${httpPort}/doc`]);
  else if (values.redis) execFileSync('redis-benchmark', ['-p', String(redisPort), '-a', warmToken, '-t', 'get', '-n', String(Math.min(statements, 20_000)), '-c', values.clients, '-P', values.pipeline, ...randomKeys, '-q']);
  // Only the samples taken while the load ran count: start-up and shutdown are left out.
  const cpuBefore = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, cpuOf(pid)]));
  const loadAverage = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  const strace = values.strace ? spawn('strace', ['-c', '-f', '-p', String(pids.proxy)], { stdio: ['ignore', 'ignore', 'pipe'] }) : undefined;
  let straceReport = '';
  if (strace) cleanups.push(async () => void strace.kill('SIGINT'));
  strace?.stderr.on('data', (chunk: Buffer) => (straceReport += chunk.toString()));
  // strace says when it has attached to every thread; the load starts after that.
  if (strace) await new Promise((resolve) => setTimeout(resolve, 1_000));
  const started = process.hrtime.bigint();
  const loadStart = monotonicMicros();
  if (values.http) {
    const token = await idp.mint({ sub: 'bench', expiresIn: 3600 });
    const wrk = await run('wrk', ['-t', '2', '-c', values.clients, '-d', values.duration, '-H', `Authorization: Bearer ${token}`, `http://127.0.0.1:${httpPort}/doc`]);
    console.log(wrk.stdout.split('\n').filter((line) => /Requests\/sec|Latency|Non-2xx/.test(line)).join('\n'));
    // Per operation means per request wrk made, not per --statements.
    statements = Number(/(\d+) requests in/.exec(wrk.stdout)?.[1] ?? statements);
  } else if (values.redis) {
    const token = await idp.mint({ sub: 'bench', expiresIn: 3600 });
    console.log(execFileSync('redis-benchmark', ['-p', String(redisPort), '-a', token, '-t', 'get', '-n', String(statements), '-c', values.clients, '-P', values.pipeline, ...randomKeys, '-q'], { encoding: 'utf8' }).trim().split('\r').pop());
  } else for (let index = 0; index < statements; index++) await client.query(statementText(index));
  const finished = process.hrtime.bigint();
  if (strace) {
    const exited = new Promise((resolve) => strace.on('exit', resolve));
    strace.kill('SIGINT');
    await exited;
  }
  const elapsedMs = Number(finished - started) / 1e6;
  // The audit service stores the last events after the statements are done: its work then counts too.
  const settleMs = values.service === 'audit' ? 2_000 : 0;
  await new Promise((resolve) => setTimeout(resolve, Math.max(settleMs, 1_000)));
  const cpuAfter = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, cpuOf(pid)]));
  const loadEnd = Number(finished / 1000n) + settleMs * 1000;
  // Stopped before the profiles are read: each process writes its .cpuprofile as it exits.
  await cleanUp();
  console.log(`load window (µs, monotonic): ${loadStart}-${loadEnd}`);
  console.log(`${statements} statements in ${elapsedMs.toFixed(0)} ms (${((1000 * elapsedMs) / statements).toFixed(0)} µs each); load average before: ${loadAverage}`);
  const perOperation = Object.keys(pids).map((name) => [name, (cpuAfter[name]!.total - cpuBefore[name]!.total) / statements, (cpuAfter[name]!.system - cpuBefore[name]!.system) / statements] as const);
  const allSluice = perOperation.reduce((sum, [, micros]) => sum + micros, 0);
  console.log(
    `CPU µs per operation (/proc${values.noprof ? '' : ', profiler on'}; of it in the kernel): ${perOperation.map(([name, micros, system]) => `${name}=${micros.toFixed(1)} (${system.toFixed(1)})`).join(' ')} all=${allSluice.toFixed(1)}`,
  );
  if (strace) {
    console.log(`proxy system calls during the load (strace -c -f), per operation:`);
    for (const line of straceReport.split('\n')) {
      const columns = line.trim().split(/\s+/);
      const calls = Number(columns[3]);
      if (columns.length >= 5 && Number.isFinite(calls) && /^[0-9.]+$/.test(columns[0]!)) console.log(`  ${columns.at(-1)!.padEnd(16)} ${(calls / statements).toFixed(2)}`);
    }
  }
  for (const { file, profile } of readProfiles(dir)) {
    if (!profileRuns(profile, `services/${values.service}/`)) continue;
    const window = { fromUs: loadStart, toUs: loadEnd };
    const summary = summarizeProfile(profile, { window });
    console.log(`\n${values.service} profile ${file}: ${(summary.busyUs / statements).toFixed(0)} µs of ${values.service} CPU per statement (V8 samples, wall time)`);
    // The sampler ticks on wall time: a write() the kernel descheduled counts in full.
    console.log(`writes and other syscalls: ${((100 * summary.syscallUs) / (summary.busyUs || 1)).toFixed(1)}% of the samples, left out of the shares below`);
    for (const line of formatSelfTimes(summary, 25)) console.log(line);
    console.log('by file:');
    for (const line of formatSelfTimes(summarizeProfile(profile, { window, byFile: true }), 15)) console.log(line);
  }
} finally {
  await cleanUp();
}
