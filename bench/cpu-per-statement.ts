/**
 * CPU time of each Sluice process per statement (from /proc/<pid>/stat), beside the latency of
 * the same sequential `SELECT 1` direct and through Sluice, two rounds:
 *   npx tsx --conditions=development bench/cpu-per-statement.ts      (NOMASK=1: no masking profile)
 * CLIENTS=8: that many agents at once (the latency figures are then per statement of one agent);
 * LITERALS=1: a new literal in every statement (what pgbench -S sends), not the same text.
 */
import { readFileSync } from 'node:fs';
import { jetstreamManager } from '@nats-io/jetstream';
import { connectBus } from '@sluice/event-bus';
import pg from 'pg';
import { startTestIssuer } from '../test/support/oidc.js';
import { freePort } from '../test/support/ports.js';
import { startSluice } from '../test/support/sluice.js';
const cpu = (pid: number) => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' '); return (Number(f[11]) + Number(f[12])) * 10_000; };
// Other runs may share the servers: this run's own database and stream.
const runId = Math.random().toString(36).slice(2, 8);
const idp = await startTestIssuer();
const port = await freePort();
const sluice = await startSluice({
  identity: { oidc: [{ issuer: idp.issuer, audience: 'sluice' }] },
  eventStore: { url: `postgres://postgres@127.0.0.1:5432/sluice_profile_${runId}` },
  bus: { url: 'nats://127.0.0.1:4222', stream: `SLUICE_PROFILE_${runId}`, subjectPrefix: `profile.${runId}.events` },
  resources: [{ name: 'db', type: 'postgres', listen: `127.0.0.1:${port}`, target: { host: '127.0.0.1', database: 'postgres' }, credentials: { username: 'postgres' } }],
  masking: { profiles: { pii: { detectors: ['credit_card', 'email'] } } },
  rules: [{ name: 'readers', effect: 'allow', actions: ['read'], mask: process.env.NOMASK ? undefined : 'pii' }],
});
const ready = (await (await fetch(`http://127.0.0.1:${sluice.ports.admin}/readyz`)).json()) as { services: Record<string, { pid: number }> };
const pids = Object.fromEntries(Object.entries(ready.services).map(([k, v]) => [k, v.pid]));
const agents = Number(process.env.CLIENTS ?? 1);
const statement = (i: number) => (process.env.LITERALS ? `SELECT ${i} AS n` : 'SELECT 1');
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
let next = 0;
/** n statements over every connection at once; µs per statement of one connection. */
const load = async (connections: pg.Client[], n: number): Promise<number> => {
  const t = process.hrtime.bigint();
  await Promise.all(connections.map(async (connection) => { for (let i = 0; i < n / connections.length; i++) await connection.query(statement(next++)); }));
  return (Number(process.hrtime.bigint() - t) / 1000 / n) * connections.length;
};
await load(clients, 500);
await new Promise((r) => setTimeout(r, 3000));
const n = 5000;
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
const nc = await connectBus('nats://127.0.0.1:4222', 'bench-cleanup');
await (await jetstreamManager(nc)).streams.delete(`SLUICE_PROFILE_${runId}`).catch(() => undefined);
await nc.close();
const admin = new pg.Client({ host: '127.0.0.1', user: 'postgres', database: 'postgres' });
await admin.connect();
await admin.query(`DROP DATABASE IF EXISTS sluice_profile_${runId} WITH (FORCE)`);
await admin.end();
