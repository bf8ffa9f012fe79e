// Cost of deciding a SQL statement: parse + classify, normalize (the proxy's cache key), the
// whole in-process policy decision, and a decision-cache hit in the proxy's policy port.
// Run after `npm run build`: node bench/classifier.mjs  (the cache-hit row needs NATS on 4222)
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { classifySql, loadSqlClassifier, normalizeSql } from '@sluice/sql-classifier';
import { createPolicy } from '@sluice/policy-engine';
import { startPolicyService } from '@sluice/policy';
import { loadConfig } from '@sluice/config';
import { createLogger } from '@sluice/service-runtime';

const STATEMENTS = [
  'SELECT abalance FROM pgbench_accounts WHERE aid = 48213',
  "SELECT o.id, o.total, c.email FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.created_at > now() - interval '7 days' ORDER BY o.total DESC LIMIT 20",
  'UPDATE pgbench_accounts SET abalance = abalance + 17 WHERE aid = 5123',
  "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (3, 1, 4411, 17, CURRENT_TIMESTAMP)",
  'WITH moved AS (DELETE FROM queue WHERE id IN (SELECT id FROM queue ORDER BY id LIMIT 10) RETURNING *) INSERT INTO done SELECT * FROM moved',
  'BEGIN',
];
const ITERATIONS = Number(process.env.ITERATIONS ?? 3000);

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
};
const measure = (fn) => {
  for (let i = 0; i < 500; i++) fn(i);
  const samples = new Array(ITERATIONS);
  for (let i = 0; i < ITERATIONS; i++) {
    const start = process.hrtime.bigint();
    fn(i);
    samples[i] = Number(process.hrtime.bigint() - start) / 1000;
  }
  return median(samples);
};
const measureAsync = async (fn) => {
  for (let i = 0; i < 500; i++) await fn(i);
  const samples = new Array(ITERATIONS);
  for (let i = 0; i < ITERATIONS; i++) {
    const start = process.hrtime.bigint();
    await fn(i);
    samples[i] = Number(process.hrtime.bigint() - start) / 1000;
  }
  return median(samples);
};

await loadSqlClassifier();
const rules = [
  { name: 'readers', effect: 'allow', subjects: { groups: ['readers'] }, resources: ['db'], actions: ['read'], tables: ['public.*'] },
  { name: 'writers', effect: 'allow', subjects: { groups: ['writers'] }, resources: ['db'], actions: ['read', 'write'] },
  { name: 'big', effect: 'approve', subjects: { groups: ['writers'] }, resources: ['db'], risk: 'high', approvers: { groups: ['dba'] } },
  { name: 'no-admin', effect: 'deny', actions: ['admin'] },
];
const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-classifier-'));
const file = join(dir, 'sluice.yaml');
const run = Math.random().toString(16).slice(2, 8);
writeFileSync(
  file,
  JSON.stringify({
    bus: { url: process.env.NATS_URL ?? 'nats://127.0.0.1:4222', stream: `SLUICE_BENCH_${run}`, subjectPrefix: `sluicebench.c${run}` },
    services: { policy: { grpc: '127.0.0.1:0' } },
    resources: [{ name: 'db', type: 'postgres', listen: '127.0.0.1:25499', target: { host: '127.0.0.1', database: 'bench' }, credentials: { username: 'u' } }],
    rules,
  }),
);
const loaded = loadConfig(file);
const policy = createPolicy(loaded.config.rules, loaded.config.resources, { approvalTimeoutMs: 60_000 });
const subject = { sub: 'bench', groups: ['writers'], issuer: 'bench' };

console.log('| statement | classify µs | normalize µs | policy.decide µs |');
console.log('|---|---|---|---|');
const classifyMedians = [];
for (const text of STATEMENTS) {
  const classify = measure(() => classifySql(text));
  const normalize = measure(() => normalizeSql(text));
  const decide = measure(() => policy.decide(subject, 'db', { kind: 'sql', text }));
  classifyMedians.push(classify);
  console.log(`| ${text.length > 60 ? `${text.slice(0, 57)}…` : text} | ${classify.toFixed(1)} | ${normalize.toFixed(1)} | ${decide.toFixed(1)} |`);
}
console.log(`\nmedian classify over the typical statements: ${median(classifyMedians).toFixed(1)} µs`);

// The proxy's port against a real policy service: a miss is a gRPC round trip, a hit is a Map lookup.
let service;
let port;
try {
  const { createPolicyPort } = await import('../services/proxy/dist/ports/policy-client.js');
  const logger = createLogger('bench');
  logger.level = 'silent';
  service = await startPolicyService({ loaded, config: loaded.config, logger });
  port = createPolicyPort(service.address, { logger });
  while (port.stats().version === undefined) await new Promise((resolve) => setTimeout(resolve, 10));
  const hot = { kind: 'sql', text: STATEMENTS[0] };
  const hit = await measureAsync(() => port.decide(subject, 'db', hot));
  const sameShape = await measureAsync((i) => port.decide(subject, 'db', { kind: 'sql', text: `SELECT abalance FROM pgbench_accounts WHERE aid = ${1_000_000 + i}` }));
  const miss = await measureAsync(() => port.decide(subject, 'db', { kind: 'sql', text: 'BEGIN READ WRITE' }));
  console.log(`\nproxy policy port: cache hit (same text) ${hit.toFixed(1)} µs; hit by normalized text ${sameShape.toFixed(1)} µs; uncached gRPC Decide ${miss.toFixed(1)} µs`);
} catch (error) {
  console.log(`\n(proxy cache-hit row skipped: ${error.message})`);
} finally {
  port?.close();
  await service?.stop();
  rmSync(dir, { recursive: true, force: true });
  // The policy service made this run's stream for policy.changed; leave nothing behind.
  const { connectBus } = await import('../libs/event-bus/dist/index.js');
  const { jetstreamManager } = await import('@nats-io/jetstream');
  const nc = await connectBus(loaded.config.bus.url, 'bench-cleanup');
  await (await jetstreamManager(nc)).streams.delete(loaded.config.bus.stream).catch((error) => console.log(`(stream ${loaded.config.bus.stream} not deleted: ${error.message})`));
  await nc.close();
}
process.exit(0);
