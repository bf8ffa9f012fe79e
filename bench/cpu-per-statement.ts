/**
 * CPU time of each Sluice process per statement (from /proc/<pid>/stat), beside the latency of
 * the same sequential `SELECT 1` direct and through Sluice, two rounds:
 *   npx tsx --conditions=development bench/cpu-per-statement.ts      (NOMASK=1: no masking profile)
 */
import { readFileSync } from 'node:fs';
import { jetstreamManager } from '@nats-io/jetstream';
import { connectBus } from '@sluice/event-bus';
import pg from 'pg';
import { startTestIssuer } from '../test/support/oidc.js';
import { freePort } from '../test/support/ports.js';
import { startSluice } from '../test/support/sluice.js';
const cpu = (pid: number) => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' '); return (Number(f[11]) + Number(f[12])) * 10_000; };
const idp = await startTestIssuer();
const port = await freePort();
const sluice = await startSluice({
  identity: { oidc: [{ issuer: idp.issuer, audience: 'sluice' }] },
  eventStore: { url: 'postgres://postgres@127.0.0.1:5432/sluice_profile' },
  bus: { url: 'nats://127.0.0.1:4222', stream: 'SLUICE_PROFILE', subjectPrefix: 'profile.events' },
  resources: [{ name: 'db', type: 'postgres', listen: `127.0.0.1:${port}`, target: { host: '127.0.0.1', database: 'postgres' }, credentials: { username: 'postgres' } }],
  masking: { profiles: { pii: { detectors: ['credit_card', 'email'] } } },
  rules: [{ name: 'readers', effect: 'allow', actions: ['read'], mask: process.env.NOMASK ? undefined : 'pii' }],
});
const ready = (await (await fetch(`http://127.0.0.1:${sluice.ports.admin}/readyz`)).json()) as { services: Record<string, { pid: number }> };
const pids = Object.fromEntries(Object.entries(ready.services).map(([k, v]) => [k, v.pid]));
const client = new pg.Client({ host: '127.0.0.1', port, user: 'b', database: 'db', password: await idp.mint({ sub: 'b', expiresIn: 3600 }) });
await client.connect();
for (let i = 0; i < 500; i++) await client.query('SELECT 1');
await new Promise((r) => setTimeout(r, 3000));
const direct = new pg.Client({ host: '127.0.0.1', user: 'postgres', database: 'postgres' }); await direct.connect();
const n = 5000;
for (const round of [1, 2]) {
  let t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await direct.query('SELECT 1');
  const d = Number(process.hrtime.bigint() - t) / 1000 / n;
  const before = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpu(p)]));
  t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await client.query('SELECT 1');
  const s = Number(process.hrtime.bigint() - t) / 1000 / n;
  await new Promise((r) => setTimeout(r, 1000));
  const per = Object.entries(pids).map(([k, p]) => `${k}=${((cpu(p) - before[k]!) / n).toFixed(0)}`).join(' ');
  console.log(`round ${round}: direct ${d.toFixed(0)} µs, sluice ${s.toFixed(0)} µs; CPU µs/stmt: ${per}`);
}
await client.end(); await direct.end();
await sluice.stop();
await idp.close();
const nc = await connectBus('nats://127.0.0.1:4222', 'bench-cleanup');
await (await jetstreamManager(nc)).streams.delete('SLUICE_PROFILE').catch(() => undefined);
await nc.close();
const admin = new pg.Client({ host: '127.0.0.1', user: 'postgres', database: 'postgres' });
await admin.connect();
await admin.query('DROP DATABASE IF EXISTS sluice_profile WITH (FORCE)');
await admin.end();
