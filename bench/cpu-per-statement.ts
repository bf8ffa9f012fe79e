/**
 * CPU time of each Sluice process per statement (from /proc/<pid>/stat), beside the latency of
 * the same statements direct and through Sluice, two rounds:
 *   npx tsx --conditions=development bench/cpu-per-statement.ts [--statements 5000] [--pgbench] [--sql 'SELECT 1']
 * NOMASK=1: no masking profile; CLIENTS=8: that many agents at once (the latency figures are then
 * per statement of one agent); LITERALS=1: a new literal in every statement (`SELECT <n> AS n`),
 * not the same text. --pgbench: pgbench -S's statement (`SELECT abalance FROM <accounts> WHERE aid =
 * <new literal>`) on a table this run creates; --sql: a statement of your own (`$1` in it becomes a
 * new literal each time). The masking profile is issue 12's realistic one: every detector and a
 * column rule. Database, stream and table names carry a random suffix: runs side by side do not collide.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startTestIssuer } from '../test/support/oidc.js';
import { freePort } from '../test/support/ports.js';
import { startSluice } from '../test/support/sluice.js';
import { deleteStreams } from '../test/support/databases.js';

const { values } = parseArgs({
  options: { statements: { type: 'string', default: '5000' }, sql: { type: 'string' }, pgbench: { type: 'boolean', default: false } },
});
const cpu = (pid: number) => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' '); return (Number(f[11]) + Number(f[12])) * 10_000; };
// Other runs may share the servers: this run's own database, stream and table.
const runId = Math.random().toString(36).slice(2, 8);
const accounts = `cpu_accounts_${runId}`;
const template = values.sql ?? (values.pgbench ? `SELECT abalance FROM ${accounts} WHERE aid = $1` : process.env.LITERALS ? 'SELECT $1 AS n' : 'SELECT 1');
let next = 0;
const statement = () => template.replaceAll('$1', String(values.pgbench ? 1 + Math.floor(Math.random() * 10_000) : next++));
const admin = new pg.Client({ host: '127.0.0.1', user: 'postgres', database: 'postgres' });
await admin.connect();
if (values.pgbench) {
  await admin.query(`CREATE TABLE ${accounts} (aid int PRIMARY KEY, bid int, abalance int, filler char(84))`);
  await admin.query(`INSERT INTO ${accounts} SELECT g, 1, 0, '' FROM generate_series(1, 10000) g`);
}
const idp = await startTestIssuer();
const port = await freePort();
const sluice = await startSluice({
  identity: { oidc: [{ issuer: idp.issuer, audience: 'sluice' }] },
  eventStore: { url: `postgres://postgres@127.0.0.1:5432/sluice_profile_${runId}` },
  bus: { url: 'nats://127.0.0.1:4222', stream: `SLUICE_PROFILE_${runId}`, subjectPrefix: `profile.${runId}.events` },
  resources: [{ name: 'db', type: 'postgres', listen: `127.0.0.1:${port}`, target: { host: '127.0.0.1', database: 'postgres' }, credentials: { username: 'postgres' } }],
  masking: {
    profiles: {
      pii: { detectors: ['credit_card', 'email', 'phone', 'us_ssn', 'iban', 'ipv4', 'jwt', 'secret'], strategy: 'partial', columns: [{ match: '(?i)ssn', strategy: 'redact' }] },
    },
  },
  rules: [{ name: 'readers', effect: 'allow', actions: ['read'], mask: process.env.NOMASK ? undefined : 'pii' }],
});
const ready = (await (await fetch(`http://127.0.0.1:${sluice.ports.admin}/readyz`)).json()) as { services: Record<string, { pid: number }> };
const pids = Object.fromEntries(Object.entries(ready.services).map(([k, v]) => [k, v.pid]));
const agents = Number(process.env.CLIENTS ?? 1);
const clients = await Promise.all(Array.from({ length: agents }, async () => {
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'b', database: 'db', password: await idp.mint({ sub: 'b', expiresIn: 3600 }) });
  await client.connect();
  return client;
}));
const directs = await Promise.all(Array.from({ length: agents }, async () => {
  const direct = new pg.Client({ host: '127.0.0.1', user: 'postgres', database: 'postgres' });
  await direct.connect();
  return direct;
}));
/** n statements over every connection at once; µs per statement of one connection. */
const load = async (connections: pg.Client[], n: number): Promise<number> => {
  const t = process.hrtime.bigint();
  await Promise.all(connections.map(async (connection) => { for (let i = 0; i < n / connections.length; i++) await connection.query(statement()); }));
  return (Number(process.hrtime.bigint() - t) / 1000 / n) * connections.length;
};
await load(clients, 500);
await new Promise((r) => setTimeout(r, 3000));
const n = Number(values.statements);
console.log(`statement: ${template} (${process.env.NOMASK ? 'no masking profile' : 'every detector + column rule (?i)ssn'}), ${agents} agent(s); load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
for (const round of [1, 2]) {
  const d = await load(directs, n);
  const before = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpu(p)]));
  const s = await load(clients, n);
  // The audit service stores the last events after the statements are done: its CPU counts too.
  await new Promise((r) => setTimeout(r, 1000));
  const per = Object.entries(pids).map(([k, p]) => `${k}=${((cpu(p) - before[k]!) / n).toFixed(0)}`).join(' ');
  console.log(`round ${round}: direct ${d.toFixed(0)} µs, sluice ${s.toFixed(0)} µs; CPU µs/stmt: ${per}`);
}
for (const connection of [...clients, ...directs]) await connection.end();
await sluice.stop();
await idp.close();
await deleteStreams([`SLUICE_PROFILE_${runId}`]);
await admin.query(`DROP DATABASE IF EXISTS sluice_profile_${runId} WITH (FORCE)`);
await admin.query(`DROP TABLE IF EXISTS ${accounts}`);
await admin.end();
