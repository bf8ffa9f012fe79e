/**
 * CPU time of each Sluice process per statement (from /proc/<pid>/stat), beside the latency of
 * the same sequential statements direct and through Sluice, two rounds:
 *   npx tsx --conditions=development bench/cpu-per-statement.ts [--statements 5000] [--sql 'SELECT 1'] [--lean]
 * By default every statement is pgbench -S's (`SELECT abalance FROM <accounts> WHERE aid = <new
 * literal>`) on a table this run creates, under the realistic profile (every detector and a column
 * rule); --sql sets a fixed statement instead ($1 in it becomes a new literal each time), --lean
 * drops the masking profile. Database, stream and table names carry a random suffix so that runs
 * side by side do not collide.
 */
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { jetstreamManager } from '@nats-io/jetstream';
import { connectBus } from '@sluice/event-bus';
import pg from 'pg';
import { startTestIssuer } from '../test/support/oidc.js';
import { freePort } from '../test/support/ports.js';
import { startSluice } from '../test/support/sluice.js';

const { values } = parseArgs({
  options: { statements: { type: 'string', default: '5000' }, sql: { type: 'string' }, lean: { type: 'boolean', default: false } },
});
const n = Number(values.statements);
const suffix = randomBytes(4).toString('hex');
const storeDatabase = `sluice_cpu_${suffix}`;
const stream = `SLUICE_CPU_${suffix}`;
const accounts = `cpu_accounts_${suffix}`;
const template = values.sql ?? `SELECT abalance FROM ${accounts} WHERE aid = $1`;
const statement = () => template.replaceAll('$1', String(1 + Math.floor(Math.random() * 10_000)));
const cpu = (pid: number) => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' '); return (Number(f[11]) + Number(f[12])) * 10_000; };

const admin = new pg.Client({ host: '127.0.0.1', user: 'postgres', database: 'postgres' });
await admin.connect();
await admin.query(`CREATE TABLE ${accounts} (aid int PRIMARY KEY, bid int, abalance int, filler char(84))`);
await admin.query(`INSERT INTO ${accounts} SELECT g, 1, 0, '' FROM generate_series(1, 10000) g`);
const idp = await startTestIssuer();
const port = await freePort();
const sluice = await startSluice({
  identity: { oidc: [{ issuer: idp.issuer, audience: 'sluice' }] },
  eventStore: { url: `postgres://postgres@127.0.0.1:5432/${storeDatabase}` },
  bus: { url: 'nats://127.0.0.1:4222', stream, subjectPrefix: `cpu.${suffix}.events` },
  resources: [{ name: 'db', type: 'postgres', listen: `127.0.0.1:${port}`, target: { host: '127.0.0.1', database: 'postgres' }, credentials: { username: 'postgres' } }],
  masking: {
    profiles: {
      pii: { detectors: ['credit_card', 'email', 'phone', 'us_ssn', 'iban', 'ipv4', 'jwt', 'secret'], strategy: 'partial', columns: [{ match: '(?i)ssn', strategy: 'redact' }] },
    },
  },
  rules: [{ name: 'readers', effect: 'allow', actions: ['read'], mask: values.lean ? undefined : 'pii' }],
});
const ready = (await (await fetch(`http://127.0.0.1:${sluice.ports.admin}/readyz`)).json()) as { services: Record<string, { pid: number }> };
const pids = Object.fromEntries(Object.entries(ready.services).map(([k, v]) => [k, v.pid]));
const client = new pg.Client({ host: '127.0.0.1', port, user: 'b', database: 'db', password: await idp.mint({ sub: 'b', expiresIn: 3600 }) });
await client.connect();
for (let i = 0; i < 500; i++) await client.query(statement());
await new Promise((r) => setTimeout(r, 3000));
const direct = new pg.Client({ host: '127.0.0.1', user: 'postgres', database: 'postgres' });
await direct.connect();
console.log(`statement: ${template} (${values.lean ? 'no masking profile' : 'every detector + column rule (?i)ssn'}); load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
for (const round of [1, 2]) {
  let t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await direct.query(statement());
  const d = Number(process.hrtime.bigint() - t) / 1000 / n;
  const before = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpu(p)]));
  t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await client.query(statement());
  const s = Number(process.hrtime.bigint() - t) / 1000 / n;
  await new Promise((r) => setTimeout(r, 1000));
  const per = Object.entries(pids).map(([k, p]) => `${k}=${((cpu(p) - before[k]!) / n).toFixed(0)}`).join(' ');
  console.log(`round ${round}: direct ${d.toFixed(0)} µs, sluice ${s.toFixed(0)} µs; CPU µs/stmt: ${per}`);
}
await client.end();
await direct.end();
await sluice.stop();
await idp.close();
const nc = await connectBus('nats://127.0.0.1:4222', 'bench-cleanup');
await (await jetstreamManager(nc)).streams.delete(stream).catch(() => undefined);
await nc.close();
await admin.query(`DROP DATABASE IF EXISTS ${storeDatabase} WITH (FORCE)`);
await admin.query(`DROP TABLE IF EXISTS ${accounts}`);
await admin.end();
