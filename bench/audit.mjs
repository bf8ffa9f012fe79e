// Events per second the audit service stores on this machine: publish N events in CloudEvents
// batches (as the proxy does), time until every one is in sluice.events (chained, committed).
// Run after `npm run build`: node bench/audit.mjs   (N=50000 by default; PostgreSQL on 5432, NATS on 4222)
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { jetstreamManager } from '@nats-io/jetstream';
import { buildEvent } from '@sluice/contracts';
import { parseConfig } from '@sluice/config';
import { connectBus, createMessageSigner, EventPublisher, generateSigningKeyPair } from '@sluice/event-bus';
import { startAuditService } from '@sluice/audit';

const N = Number(process.env.N ?? 50_000);
const SESSIONS = Number(process.env.SESSIONS ?? 200);
const run = `${Date.now().toString(36)}${process.pid}`;
const database = `sluice_audit_bench_${run}`;
const url = `postgres://postgres@127.0.0.1:5432/${database}`;
const stream = `AUDIT_BENCH_${run}`;
const prefix = `bench.${run}.events`;

// Signed as the proxy signs (one Ed25519 signature per batch), checked by the audit service.
const keysDir = mkdtempSync(join(tmpdir(), 'sluice-bench-keys-'));
const proxyKeys = generateSigningKeyPair();
writeFileSync(join(keysDir, 'proxy.pub'), proxyKeys.publicKeyPem);
process.env.SLUICE_KEYS_DIR = keysDir;

const config = parseConfig({ bus: { url: 'nats://127.0.0.1:4222', stream, subjectPrefix: prefix }, services: { audit: { http: '127.0.0.1:0' } } });
const loaded = { config: { ...config, eventStore: { url } }, path: '/dev/null', dir: process.cwd() };
const service = await startAuditService({ loaded, logger: pino({ level: 'warn' }) });
const nc = await connectBus('nats://127.0.0.1:4222', 'audit-bench');
const publisher = new EventPublisher(nc, { source: 'proxy', subjectPrefix: prefix, signer: createMessageSigner('proxy', proxyKeys.privateKeyPem) });

const events = Array.from({ length: N }, (_, index) =>
  buildEvent('command.decided', {
    id: `${run}-${index}`,
    source: 'proxy',
    subject: `session-${index % SESSIONS}`,
    time: new Date(),
    data: {
      commandId: `c${index}`,
      resource: 'shop-db',
      protocol: 'postgres',
      command: 'SELECT abalance FROM pgbench_accounts WHERE aid = $1',
      action: 'read',
      risk: 'low',
      decision: 'allow',
      rule: 'support-read',
      reason: 'allowed by support-read',
    },
  }),
);

const started = process.hrtime.bigint();
for (const event of events) publisher.publish(event);
await publisher.flush();
const published = Number(process.hrtime.bigint() - started) / 1e9;
while ((await service.store.countEvents()) < N) await new Promise((resolve) => setTimeout(resolve, 100));
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
const verifyStart = process.hrtime.bigint();
const verified = await service.store.verify();
const verifySeconds = Number(process.hrtime.bigint() - verifyStart) / 1e9;

console.log(`audit store: ${N} events in ${SESSIONS} sessions published in ${published.toFixed(2)} s, stored in ${seconds.toFixed(2)} s`);
console.log(`audit store: ${Math.round(N / seconds)} events/s stored (hash-chained, committed)`);
console.log(`audit verify: ${Math.round(verified.events / verifySeconds)} events/s checked (ok=${verified.ok})`);

await service.stop();
rmSync(keysDir, { recursive: true, force: true });
await publisher.close();
await (await jetstreamManager(nc)).streams.delete(stream).catch(() => undefined);
await nc.drain();
const admin = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres' });
await admin.connect();
await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
await admin.end();
