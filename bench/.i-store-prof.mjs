// Store-only: append N events in batches of B, time each SQL statement kind.
import pg from 'pg';
import { buildEvent } from '@sluice/contracts';
import { openEventStore } from '@sluice/event-store';
const N = Number(process.env.N ?? 50000), B = Number(process.env.B ?? 1500), SESSIONS = Number(process.env.SESSIONS ?? 200);
const run = `${Date.now().toString(36)}${process.pid}`;
const database = `sluice_store_bench_${run}`;
const url = `postgres://postgres@127.0.0.1:5432/${database}`;
const stats = new Map();
const orig = pg.Client.prototype.query;
pg.Client.prototype.query = function (config, values, cb) {
  const text = typeof config === 'string' ? config : config?.text ?? '';
  const key = text.replace(/\s+/g, ' ').slice(0, 50);
  const t0 = process.hrtime.bigint();
  const p = orig.call(this, config, values, cb);
  if (p && typeof p.then === 'function') p.then(() => { const s = stats.get(key) ?? [0, 0]; s[0]++; s[1] += Number(process.hrtime.bigint() - t0) / 1e6; stats.set(key, s); }, () => {});
  return p;
};
const store = await openEventStore({ url });
const events = Array.from({ length: N }, (_, index) => buildEvent('command.decided', {
  id: `${run}-${index}`, source: 'proxy', subject: `session-${index % SESSIONS}`, time: new Date(),
  data: { commandId: `c${index}`, resource: 'shop-db', protocol: 'postgres', command: 'SELECT abalance FROM pgbench_accounts WHERE aid = $1', action: 'read', risk: 'low', decision: 'allow', rule: 'support-read', reason: 'allowed by support-read' },
}));
stats.clear();
const t0 = process.hrtime.bigint();
for (let i = 0; i < N; i += B) await store.append(events.slice(i, i + B));
const s = Number(process.hrtime.bigint() - t0) / 1e9;
console.log(`store: ${N} in ${s.toFixed(2)} s = ${Math.round(N / s)} events/s (batch ${B})`);
for (const [k, [c, ms]] of [...stats].sort((a, b) => b[1][1] - a[1][1])) console.log(ms.toFixed(0).padStart(7), 'ms', String(c).padStart(5), k);
const v0 = process.hrtime.bigint(); const v = await store.verify(); console.log('verify', v.ok, v.events, (Number(process.hrtime.bigint() - v0) / 1e6).toFixed(0), 'ms');
await store.close();
const admin = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres' });
await admin.connect(); await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`); await admin.end();
