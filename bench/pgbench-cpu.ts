/**
 * The proxy's CPU per pgbench -S transaction, from /proc/<pid>/stat, with a fixed number of
 * transactions (so figures are per statement, not per second of a busy machine):
 *   npx tsx --conditions=development bench/pgbench-cpu.ts [--transactions 20000] [--clients 8]
 *     [--rounds 3] [--protocol simple|extended] [--script select-only|tpcb-like] [--pipe] [--strace]
 *     [--prof DIR] [--perf FILE]
 * Issue 12's realistic profile (every detector and a column rule); `--script tpcb-like` runs pgbench's
 * TPC-B-like transaction (seven statements, three of them UPDATEs) instead, writes allowed. Each round prints every Sluice
 * process's CPU µs per transaction (the kernel's part in brackets) and the proxy's page faults.
 * --pipe runs the same transactions through a bare Node byte pipe (support/targets.ts's) right
 * after each round and prints its CPU the same way: at equal system calls, what the proxy spends
 * beyond the pipe's kernel part is its own, and beyond the pipe's user part its JavaScript's.
 * --strace counts the proxy's system calls during the last round (`strace -c -f`) and prints them
 * per transaction; --perf records the last round with `perf record -e cpu-clock -g` (kernel, V8 internals
 * and, with the services under --perf-basic-prof, JavaScript by name: `perf report -i FILE
 * --no-children --sort sym`); --prof runs every service under
 * `node --cpu-prof` into DIR and prints each round's window on the monotonic clock. Each of them
 * slows the proxy: CPU figures of a traced or profiled round are not comparable.
 * To compare two builds, run the script of each checkout alternately, several times each.
 */
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startTestIssuer } from '../test/support/oidc.js';
import { freePort } from '../test/support/ports.js';
import { startSluice } from '../test/support/sluice.js';
import { deleteStreams } from '../test/support/databases.js';
import { startNodePipe } from './support/targets.js';

const { values } = parseArgs({
  options: {
    transactions: { type: 'string', default: '20000' },
    clients: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '3' },
    protocol: { type: 'string', default: 'simple' },
    script: { type: 'string', default: 'select-only' },
    pipe: { type: 'boolean', default: false },
    strace: { type: 'boolean', default: false },
    prof: { type: 'string' },
    perf: { type: 'string' },
  },
});
const clients = Number(values.clients);
const perClient = Math.ceil(Number(values.transactions) / clients);
const transactions = perClient * clients;
const runId = Math.random().toString(36).slice(2, 8);
const database = `pgbench_cpu_${runId}`;
const stream = `SLUICE_PGCPU_${runId}`;
/** User + system CPU of a process in µs (clock ticks of 10 ms), the system part, and its minor page faults. */
const cpuOf = (pid: number): { total: number; system: number; faults: number } => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return { total: (Number(fields[11]) + Number(fields[12])) * 10_000, system: Number(fields[12]) * 10_000, faults: Number(fields[7]) };
};
const loadAverage = (): string => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

const admin = new pg.Client({ host: '127.0.0.1', user: 'postgres', database: 'postgres' });
await admin.connect();
await admin.query(`CREATE DATABASE ${database}`);
execFileSync('pgbench', ['-h', '127.0.0.1', '-U', 'postgres', '-i', '-s', '1', '-q', database], { stdio: 'ignore' });
const idp = await startTestIssuer();
const port = await freePort();
const sluice = await startSluice({
  identity: { oidc: [{ issuer: idp.issuer, audience: 'sluice' }] },
  eventStore: { url: `postgres://postgres@127.0.0.1:5432/${database}_store` },
  bus: { url: 'nats://127.0.0.1:4222', stream, subjectPrefix: `pgcpu.${runId}.events` },
  resources: [{ name: 'db', type: 'postgres', listen: `127.0.0.1:${port}`, target: { host: '127.0.0.1', database }, credentials: { username: 'postgres' } }],
  masking: {
    profiles: {
      pii: { detectors: ['credit_card', 'email', 'phone', 'us_ssn', 'iban', 'ipv4', 'jwt', 'secret'], strategy: 'partial', columns: [{ match: '(?i)ssn', strategy: 'redact' }] },
    },
  },
  rules: [{ name: 'agents', effect: 'allow', actions: values.script === 'tpcb-like' ? ['read', 'write'] : ['read'], mask: 'pii' }],
}, { nodeArgs: values.prof ? ['--cpu-prof', `--cpu-prof-dir=${values.prof}`] : values.perf ? ['--perf-basic-prof'] : [] });
const ready = (await (await fetch(`http://127.0.0.1:${sluice.ports.admin}/readyz`)).json()) as { services: Record<string, { pid: number }> };
const pids = Object.fromEntries(Object.entries(ready.services).map(([name, service]) => [name, service.pid]));
const token = await idp.mint({ sub: 'bench', expiresIn: 3600 });
const pipe = values.pipe ? await startNodePipe(5432) : undefined;
const pgbench = (count: number, through: { port: number; user: string; database: string } = { port, user: 'bench', database: 'db' }): void => {
  const args = ['-h', '127.0.0.1', '-p', String(through.port), '-U', through.user, '-n', '-b', values.script, '-M', values.protocol, '-c', String(clients), '-j', String(Math.min(2, clients)), '-t', String(count), through.database];
  execFileSync('pgbench', args, { env: { ...process.env, PGPASSWORD: token, PGSSLMODE: 'disable' }, stdio: ['ignore', 'ignore', 'inherit'] });
};
/** The same transactions through the bare pipe, its CPU per transaction as the proxy's is printed. */
const pipeRound = (round: number): void => {
  if (!pipe) return;
  const load = loadAverage();
  const before = cpuOf(pipe.daemon.pid);
  pgbench(perClient, { port: pipe.port, user: 'postgres', database });
  const after = cpuOf(pipe.daemon.pid);
  console.log(`round ${round}, bare Node pipe: load ${load}; CPU µs/tx (of it in the kernel): pipe=${((after.total - before.total) / transactions).toFixed(1)} (${((after.system - before.system) / transactions).toFixed(1)})`);
};
try {
  // pgbench runs synchronously, which blocks this process and the token issuer in it: the proxy
  // fetches the issuer's keys at a first login made from here, asynchronously, before that.
  const probe = new pg.Client({ host: '127.0.0.1', port, user: 'bench', database: 'db', password: token });
  await probe.connect();
  await probe.end();
  pgbench(Math.ceil(2000 / clients));
  if (pipe) pgbench(Math.ceil(2000 / clients), { port: pipe.port, user: 'postgres', database });
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const rounds = Number(values.rounds);
  for (let round = 1; round <= rounds; round++) {
    const traced = values.strace && round === rounds;
    const out = `/tmp/pgbench-cpu-${runId}.strace`;
    const strace = traced ? spawn('strace', ['-c', '-f', '-o', out, '-p', String(pids.proxy)], { stdio: 'ignore' }) : undefined;
    const perf = values.perf && round === rounds ? spawn('perf', ['record', '-e', 'cpu-clock', '-g', '-o', values.perf, '-p', String(pids.proxy)], { stdio: 'ignore' }) : undefined;
    if (strace || perf) await new Promise((resolve) => setTimeout(resolve, 1000));
    const load = loadAverage();
    const before = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, cpuOf(pid)]));
    const started = process.hrtime.bigint();
    const windowStart = started / 1000n;
    pgbench(perClient);
    const elapsedMs = Number(process.hrtime.bigint() - started) / 1e6;
    // The events of the last statements are published and stored after pgbench ends: counted too.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const per = Object.entries(pids)
      .map(([name, pid]) => [name, cpuOf(pid), before[name]!] as const)
      .filter(([, after, was]) => after.total > was.total)
      .map(([name, after, was]) => `${name}=${((after.total - was.total) / transactions).toFixed(1)} (${((after.system - was.system) / transactions).toFixed(1)})${name === 'proxy' ? ` page faults/tx ${((after.faults - was.faults) / transactions).toFixed(2)}` : ''}`)
      .join(' ');
    if (values.prof) console.log(`profile window (µs, monotonic): ${windowStart}-${process.hrtime.bigint() / 1000n}`);
    console.log(`round ${round}${traced ? ' (strace on)' : ''}: ${transactions} tx in ${elapsedMs.toFixed(0)} ms, load ${load}; CPU µs/tx (of it in the kernel): ${per}`);
    pipeRound(round);
    if (perf) {
      perf.kill('SIGINT');
      await new Promise((resolve) => perf.once('exit', resolve));
    }
    if (strace) {
      strace.kill('SIGINT');
      await new Promise((resolve) => strace.once('exit', resolve));
      const lines = readFileSync(out, 'utf8').split('\n');
      console.log('proxy system calls per transaction (strace -c -f, includes the 1 s settle):');
      for (const line of lines) {
        const match = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$/.exec(line);
        if (match && Number(match[1]) >= transactions / 100) console.log(`  ${match[2]!.padEnd(16)} ${(Number(match[1]) / transactions).toFixed(2)}`);
      }
    }
  }
} catch (error) {
  console.error(sluice.output().slice(-3000));
  throw error;
} finally {
  await pipe?.stop();
  await sluice.stop();
  await idp.close();
  await deleteStreams([stream]);
  await admin.query(`DROP DATABASE IF EXISTS ${database}_store WITH (FORCE)`);
  await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  await admin.end();
}
