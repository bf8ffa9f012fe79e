// CPU per stored event of each process the audit trail runs through, from /proc/<pid>/stat:
// the publisher (a child process publishing proxy-shaped, signed `command.executed` events as the
// proxy's publisher does, at RATE events/s), nats-server, the audit service (this process) and
// the event store's PostgreSQL backends (connections to this run's store database).
// Run after `npm run build`:  node bench/audit-cpu.mjs   (N=20000 RATE=3000 SESSIONS=8; SHAPE=http for
// HTTP requests whose 1 KB JSON body is recorded, else pgbench -S SELECTs)
// nats-server is shared with whatever else runs on the machine: its figure includes their work.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { pino } from 'pino';
import { jetstreamManager } from '@nats-io/jetstream';
import { connectBus, createMessageSigner, EventPublisher, generateSigningKeyPair } from '@sluice/event-bus';
import { asAdmin, cpuMicros, httpRequestEvents, minorFaults, pgbenchStatementEvents, systemMicros } from './support/audit-events.mjs';

const N = Number(process.env.N ?? 20_000);
const RATE = Number(process.env.RATE ?? 3_000);
const SESSIONS = Number(process.env.SESSIONS ?? 8);
const events = process.env.SHAPE === 'http' ? httpRequestEvents : pgbenchStatementEvents;

const cpuOrZero = (pid) => {
  try {
    return cpuMicros(pid);
  } catch {
    return 0;
  }
};

if (process.env.AUDIT_CPU_ROLE === 'publisher') {
  // The proxy's side: one signed NATS message per gathering window (the publisher's defaults).
  const { prefix, run, privateKeyPem } = JSON.parse(process.env.AUDIT_CPU_SETTINGS);
  const nc = await connectBus('nats://127.0.0.1:4222', 'audit-cpu-publisher');
  const publisher = new EventPublisher(nc, { source: 'proxy', subjectPrefix: prefix, signer: createMessageSigner('proxy', privateKeyPem) });
  const event = events(run, SESSIONS);
  process.send({ ready: true });
  await new Promise((resolve) => process.once('message', resolve));
  // PUBLISHER_PROFILE=file.cpuprofile: this process's CPU profile while it publishes.
  const inspector = process.env.PUBLISHER_PROFILE ? new (await import('node:inspector')).Session() : undefined;
  const post = (method) => new Promise((resolve, reject) => inspector.post(method, (error, result) => (error ? reject(error) : resolve(result))));
  if (inspector) {
    inspector.connect();
    await post('Profiler.enable');
    await post('Profiler.start');
  }
  const started = Date.now();
  let sent = 0;
  while (sent < N) {
    const due = Math.min(N, Math.floor(((Date.now() - started) / 1000) * RATE));
    for (; sent < due; sent += 1) publisher.publish(event(sent));
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  await publisher.flush();
  if (inspector) writeFileSync(process.env.PUBLISHER_PROFILE, JSON.stringify((await post('Profiler.stop')).profile));
  process.send({ done: true });
  // Stays until the parent has read its CPU time.
  await new Promise((resolve) => process.once('message', resolve));
  await publisher.close();
  await nc.drain();
  process.exit(0);
}

const { startAuditService } = await import('@sluice/audit');
const { parseConfig } = await import('@sluice/config');
const run = `${Date.now().toString(36)}${process.pid}`;
const database = `sluice_audit_cpu_${run}`;
const url = `postgres://postgres@127.0.0.1:5432/${database}`;
const stream = `AUDIT_CPU_${run}`;
const prefix = `auditcpu.${run}.events`;
const keysDir = mkdtempSync(join(tmpdir(), 'sluice-bench-keys-'));
const proxyKeys = generateSigningKeyPair();
writeFileSync(join(keysDir, 'proxy.pub'), proxyKeys.publicKeyPem);
process.env.SLUICE_KEYS_DIR = keysDir;

const config = parseConfig({ bus: { url: 'nats://127.0.0.1:4222', stream, subjectPrefix: prefix }, services: { audit: { http: '127.0.0.1:0' } } });
const service = await startAuditService({ loaded: { config: { ...config, eventStore: { url } }, path: '/dev/null', dir: process.cwd() }, logger: pino({ level: 'warn' }) });
const backends = async () => (await asAdmin('SELECT pid FROM pg_stat_activity WHERE datname = $1', [database])).map((row) => row.pid);
const natsPid = Number(execFileSync('pgrep', ['-o', 'nats-server']).toString().trim());

const child = spawn(process.execPath, [fileURLToPath(import.meta.url)], {
  env: { ...process.env, AUDIT_CPU_ROLE: 'publisher', AUDIT_CPU_SETTINGS: JSON.stringify({ prefix, run, privateKeyPem: proxyKeys.privateKeyPem }) },
  stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
});
await new Promise((resolve) => child.once('message', resolve));
const stored = () => service.consumers().find((state) => state.durable === 'audit-store').handledEvents;
const loadBefore = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const before = { faults: minorFaults(process.pid), system: systemMicros(process.pid), audit: cpuMicros(process.pid), publisher: cpuMicros(child.pid), nats: cpuMicros(natsPid), backends: new Map((await backends()).map((pid) => [pid, cpuMicros(pid)])) };
// PROFILE=file.cpuprofile: the audit service's CPU profile over the measured window only.
const inspector = process.env.PROFILE ? new (await import('node:inspector')).Session() : undefined;
const post = (method) => new Promise((resolve, reject) => inspector.post(method, (error, result) => (error ? reject(error) : resolve(result))));
if (inspector) {
  inspector.connect();
  await post('Profiler.enable');
  await post('Profiler.start');
}
const started = process.hrtime.bigint();
child.send({ go: true });
while (stored() < N) await new Promise((resolve) => setTimeout(resolve, 50));
if (inspector) writeFileSync(process.env.PROFILE, JSON.stringify((await post('Profiler.stop')).profile));
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
const after = { faults: minorFaults(process.pid), system: systemMicros(process.pid), audit: cpuMicros(process.pid), publisher: cpuMicros(child.pid), nats: cpuMicros(natsPid) };
let store = 0;
for (const pid of await backends()) store += cpuOrZero(pid) - (before.backends.get(pid) ?? 0);
// Each row's xmin is the transaction that wrote it: the store's transactions, counted exactly.
const storeDb = new pg.Client({ connectionString: url });
await storeDb.connect();
const transactions = Number((await storeDb.query('SELECT count(DISTINCT xmin::text) AS n FROM sluice.events')).rows[0].n);
await storeDb.end();
const per = (micros) => (micros / N).toFixed(1);
const audit = after.audit - before.audit;
const publisher = after.publisher - before.publisher;
const nats = after.nats - before.nats;
console.log(
  `audit-cpu: ${N} ${process.env.SHAPE === 'http' ? 'HTTP' : 'pgbench'} events, ${RATE}/s, ${SESSIONS} sessions, stored in ${seconds.toFixed(2)} s (${transactions} transactions, ~${Math.round(N / Math.max(1, transactions))} events each); load ${loadBefore}; CPU µs/event: ` +
    `publisher=${per(publisher)} nats=${per(nats)} audit=${per(audit)} store=${per(store)} total=${per(publisher + nats + audit + store)}; ` +
    `audit's kernel share ${per(after.system - before.system)} µs/event, ${((after.faults - before.faults) / N).toFixed(2)} page faults/event`,
);
child.send({ exit: true });
await new Promise((resolve) => child.once('exit', resolve));
const verified = await service.store.verify();
if (!verified.ok || verified.events !== N) console.log(`audit-cpu: verify FAILED ${JSON.stringify(verified)}`);
await service.stop();
rmSync(keysDir, { recursive: true, force: true });
const nc = await connectBus('nats://127.0.0.1:4222', 'audit-cpu');
await (await jetstreamManager(nc)).streams.delete(stream).catch(() => undefined);
await nc.drain();
await asAdmin(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
