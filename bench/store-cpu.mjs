// CPU per stored event of the event store alone, without NATS: this process prepares and appends
// proxy-shaped `command.executed` events in batches of BATCH (as the audit service does), and
// the store's PostgreSQL backend CPU is read from /proc. Run after `npm run build`:
//   node bench/store-cpu.mjs   (N=30000 BATCH=200 SESSIONS=8; PostgreSQL on 5432; WRITTEN=1 reads each
//   batch's bytes as the audit service reads a Sluice publisher's, readWrittenEvents, else JSON.parse)
import { readFileSync } from 'node:fs';
import { openEventStore, readWrittenEvents } from '@sluice/event-store';
import { asAdmin, cpuMicros, httpRequestEvents, pgbenchStatementEvents } from './support/audit-events.mjs';

const N = Number(process.env.N ?? 30_000);
const BATCH = Number(process.env.BATCH ?? 200);
const SESSIONS = Number(process.env.SESSIONS ?? 8);
const run = `${Date.now().toString(36)}${process.pid}`;
const database = `sluice_store_cpu_${run}`;


const store = await openEventStore({ url: `postgres://postgres@127.0.0.1:5432/${database}`, maxConnections: 1 });
const event = (process.env.SHAPE === "http" ? httpRequestEvents : pgbenchStatementEvents)(run, SESSIONS);
// As the consumer hands them over: parsed from JSON (or read from the bytes), not the objects built here.
const batches = [];
for (let start = 0; start < N; start += BATCH) batches.push(JSON.stringify(Array.from({ length: Math.min(BATCH, N - start) }, (_, index) => event(start + index))));
const received = process.env.WRITTEN === '1' ? (text) => readWrittenEvents(Buffer.from(text, 'utf8')) : (text) => JSON.parse(text);
await store.append(await store.prepare(received(batches[0]), () => 'proxy'));
const [backend] = (await asAdmin('SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [database])).map((row) => row.pid);
const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const before = { self: process.cpuUsage(), backend: cpuMicros(backend) };
let stored = 0;
for (const text of batches.slice(1)) stored += (await store.append(await store.prepare(received(text), () => 'proxy'))).stored;
const self = process.cpuUsage(before.self);
const backendMicros = cpuMicros(backend) - before.backend;
console.log(
  `store-cpu: ${stored} events in batches of ${BATCH}, ${SESSIONS} sessions${process.env.WRITTEN === '1' ? ', read as written' : ''}; load ${load}; CPU µs/event: ` +
    `appender=${((self.user + self.system) / stored).toFixed(1)} backend=${(backendMicros / stored).toFixed(1)}`,
);
await store.close();
await asAdmin(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
