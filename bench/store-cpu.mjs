// CPU per stored event of the event store alone, without NATS: this process prepares and appends
// proxy-shaped `command.executed` events in batches of BATCH (as the audit service does), and
// the store's PostgreSQL backend CPU is read from /proc. Run after `npm run build`:
//   node bench/store-cpu.mjs   (N=30000 BATCH=200 SESSIONS=8; PostgreSQL on 5432)
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { buildEvent } from '@sluice/contracts';
import { openEventStore } from '@sluice/event-store';

const N = Number(process.env.N ?? 30_000);
const BATCH = Number(process.env.BATCH ?? 200);
const SESSIONS = Number(process.env.SESSIONS ?? 8);
const run = `${Date.now().toString(36)}${process.pid}`;
const database = `sluice_store_cpu_${run}`;

const cpu = (pid) => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
};
const asAdmin = async (query, parameters) => {
  const admin = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres' });
  admin.on('error', () => undefined);
  await admin.connect();
  try {
    return (await admin.query(query, parameters)).rows;
  } finally {
    await admin.end().catch(() => undefined);
  }
};

const store = await openEventStore({ url: `postgres://postgres@127.0.0.1:5432/${database}`, maxConnections: 1 });
const seqs = new Array(SESSIONS).fill(0);
const event = (index) => {
  const session = index % SESSIONS;
  seqs[session] += 1;
  return buildEvent('command.executed', {
    id: `${run}-${index}-0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0`,
    source: 'proxy',
    subject: `${run}-session-${session}-7a6b5c4d-3e2f-1a0b-9c8d-7e6f5a4b3c2d`,
    time: new Date(),
    sessionseq: seqs[session],
    data: {
      commandId: `${run}-c${index}-11223344-5566-7788-99aa-bbccddeeff00`,
      resource: 'db',
      protocol: 'postgres',
      command: `SELECT abalance FROM pgbench_accounts WHERE aid = ${1 + ((index * 7919) % 100_000)};`,
      action: 'read',
      risk: 'low',
      decision: 'allow',
      rule: 'readers',
      reason: 'allowed by readers',
      tables: ['pgbench_accounts'],
      outcome: 'SELECT 1',
      ok: true,
      durationMs: 0.41,
      result: { columns: ['abalance'], rows: [['0']], rowCount: 1, bytes: 1, truncated: false, maskedCounts: {} },
    },
  });
};
// As the consumer hands them over: parsed from JSON, not the objects built here.
const batches = [];
for (let start = 0; start < N; start += BATCH) batches.push(JSON.stringify(Array.from({ length: Math.min(BATCH, N - start) }, (_, index) => event(start + index))));
await store.append(await store.prepare(JSON.parse(batches[0]), () => 'proxy'));
const [backend] = (await asAdmin('SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [database])).map((row) => row.pid);
const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const before = { self: process.cpuUsage(), backend: cpu(backend) };
let stored = 0;
for (const text of batches.slice(1)) stored += (await store.append(await store.prepare(JSON.parse(text), () => 'proxy'))).stored;
const self = process.cpuUsage(before.self);
const backendMicros = cpu(backend) - before.backend;
console.log(
  `store-cpu: ${stored} events in batches of ${BATCH}, ${SESSIONS} sessions; load ${load}; CPU µs/event: ` +
    `appender=${((self.user + self.system) / stored).toFixed(1)} backend=${(backendMicros / stored).toFixed(1)}`,
);
await store.close();
await asAdmin(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
