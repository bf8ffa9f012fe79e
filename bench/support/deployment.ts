import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts } from '../../test/support/ports.js';
import { allocateServicePorts, servicesSection, startSluice, type RunningSluice } from '../../test/support/sluice.js';
import { findProcesses } from './processes.js';
import { PG_ADMIN_USER, PG_HOST, PG_PORT, REDIS_PORT, dropDatabase } from './targets.js';
import { deleteStreams } from '../../test/support/databases.js';

export const NATS_URL = 'nats://127.0.0.1:4222';

export type ResourceKind = 'postgres' | 'redis' | 'http';

export const RESOURCE_NAMES = { postgres: 'bench-db', redis: 'bench-cache', http: 'bench-api' } as const;

/** The same database behind a transaction-mode pgbouncer (StackOptions.pooledTarget). */
export const POOLED_RESOURCE_NAME = 'bench-db-pooled';

/** The groups of the two bench agents; the rules below grant them. */
export const READER_GROUP = 'bench-readers';
export const WRITER_GROUP = 'bench-writers';

export interface BenchSluice {
  readonly sluice: RunningSluice;
  readonly ports: Partial<Record<ResourceKind, number>>;
  /** Sluice's listener for the database behind the transaction-mode pgbouncer, if there is one. */
  readonly pooledPostgresPort?: number;
  readonly resources: readonly ResourceKind[];
  /** The event store's database (where the audit keeps-up check counts). */
  readonly storeUrl: string;
  /** The proxy's pid and the pids of every Sluice process of this deployment, looked up now. */
  processes(): { proxy: number | undefined; all: number[] };
  /** Every Sluice process of this deployment by role: `supervisor`, `proxy`, `policy`, `masking`, …. */
  named(): SluiceProcess[];
  stop(): Promise<void>;
}

export interface SluiceProcess {
  readonly pid: number;
  readonly name: string;
}

/** A Sluice process's role from its command line: the service whose dist/main.js it runs, or the supervisor. */
export const processRole = (cmdline: string): string => /services\/([\w-]+)\/dist\/main\.js/.exec(cmdline)?.[1] ?? 'supervisor';

export interface BenchSluiceOptions {
  readonly runId: string;
  readonly issuer: string;
  readonly audience: string;
  readonly targetDatabase: string;
  readonly httpTarget?: string;
  /** A transaction-mode pgbouncer's port: served as a second PostgreSQL resource. */
  readonly pooledTargetPort?: number;
  readonly resources: readonly ResourceKind[];
  /** Node options for every Sluice process (the supervisor passes its own to the services): `--cpu-prof`. */
  readonly nodeArgs?: readonly string[];
  /** How long `sluice up` may take to be ready (60 s). */
  readonly readyTimeoutMs?: number;
  /** `services.audit.niceness`; absent: the config's default. */
  readonly auditNiceness?: number;
}

/**
 * The config a production deployment would run: the real event store in PostgreSQL, events on
 * JetStream (a stream and subject prefix of this run's own), masking on for every grant.
 */
export const benchConfig = (options: BenchSluiceOptions, ports: Partial<Record<ResourceKind, number>> & { pooled?: number }, storeDatabase: string) => {
  const resources: Record<string, unknown>[] = [];
  // The idle-sessions part opens 2,000 sessions of one agent: above the default limits.
  const limits = { maxConnections: 2_500, maxConnectionsPerSubject: 2_500 };
  if (options.resources.includes('postgres'))
    resources.push({
      name: RESOURCE_NAMES.postgres,
      type: 'postgres',
      listen: `127.0.0.1:${ports.postgres}`,
      target: { host: PG_HOST, port: PG_PORT, database: options.targetDatabase },
      credentials: { username: PG_ADMIN_USER },
      limits,
    });
  if (options.resources.includes('postgres') && options.pooledTargetPort !== undefined && ports.pooled !== undefined)
    resources.push({
      name: POOLED_RESOURCE_NAME,
      type: 'postgres',
      listen: `127.0.0.1:${ports.pooled}`,
      target: { host: PG_HOST, port: options.pooledTargetPort, database: options.targetDatabase },
      credentials: { username: PG_ADMIN_USER },
      limits,
    });
  if (options.resources.includes('redis'))
    resources.push({ name: RESOURCE_NAMES.redis, type: 'redis', listen: `127.0.0.1:${ports.redis}`, target: { host: '127.0.0.1', port: REDIS_PORT }, limits });
  if (options.resources.includes('http') && options.httpTarget)
    resources.push({ name: RESOURCE_NAMES.http, type: 'http', listen: `127.0.0.1:${ports.http}`, target: { url: options.httpTarget } });
  // Rules may name only resources the config declares.
  const all = resources.map((resource) => resource.name as string);
  const writable = all.filter((name) => name !== RESOURCE_NAMES.http);
  return {
    bus: { url: NATS_URL, stream: `SLUICE_BENCH_${options.runId}`, subjectPrefix: `bench.${options.runId}.events` },
    eventStore: { url: `postgres://${PG_ADMIN_USER}@${PG_HOST}:${PG_PORT}/${storeDatabase}` },
    identity: { oidc: [{ issuer: options.issuer, audience: options.audience }] },
    resources,
    // The profile a real user runs (issue 12): every detector and a column rule.
    masking: {
      profiles: {
        pii: { detectors: ['credit_card', 'email', 'phone', 'us_ssn', 'iban', 'ipv4', 'jwt', 'secret'], strategy: 'partial', columns: [{ match: '(?i)ssn', strategy: 'redact' }] },
      },
    },
    rules: [
      { name: 'bench-read', effect: 'allow', subjects: { groups: [READER_GROUP, WRITER_GROUP] }, resources: all, actions: ['read'], mask: 'pii' },
      { name: 'bench-write', effect: 'allow', subjects: { groups: [WRITER_GROUP] }, resources: writable, actions: ['read', 'write'], mask: 'pii' },
      { name: 'never-admin', effect: 'deny', actions: ['admin'] },
    ],
  };
};

/** Starts `sluice up` (the built CLI) for the benchmark; the caller registers `stop` for cleanup. */
export const startBenchSluice = async (options: BenchSluiceOptions): Promise<BenchSluice> => {
  const [postgres, redis, http, pooled] = await freePorts(4);
  const ports: Partial<Record<ResourceKind, number>> & { pooled?: number } = {};
  if (options.resources.includes('postgres') && options.pooledTargetPort !== undefined) ports.pooled = pooled!;
  if (options.resources.includes('postgres')) ports.postgres = postgres!;
  if (options.resources.includes('redis')) ports.redis = redis!;
  if (options.resources.includes('http') && options.httpTarget) ports.http = http!;
  const storeDatabase = `sluice_bench_store_${options.runId}_${options.resources.length}`;
  const stream = `SLUICE_BENCH_${options.runId}`;
  const removeLeftovers = async () => {
    await dropDatabase(storeDatabase);
    await deleteStreams([stream]);
  };
  // startSluice keeps its folder when `sluice up` fails to start: find it by this run's stream name.
  const removeFolders = () => {
    for (const name of readdirSync(tmpdir())) {
      if (!name.startsWith('sluice-e2e-')) continue;
      const dir = join(tmpdir(), name);
      try {
        if (readFileSync(join(dir, 'sluice.yaml'), 'utf8').includes(`stream: ${stream}\n`)) rmSync(dir, { recursive: true, force: true });
      } catch {
        // not a deployment folder, or already gone
      }
    }
  };
  let sluice: RunningSluice;
  try {
    const servicePorts = await allocateServicePorts();
    const services = servicesSection(servicePorts);
    const config = {
      ...benchConfig(options, ports, storeDatabase),
      ...(options.auditNiceness === undefined ? {} : { services: { ...services, audit: { ...services.audit, niceness: options.auditNiceness } } }),
    };
    sluice = await startSluice(config, {
      ports: servicePorts,
      // Empty values keep a developer's NATS_URL / DATABASE_URL from overriding this config.
      env: { NATS_URL: '', DATABASE_URL: '', LOG_LEVEL: 'warn', OTEL_TRACES_EXPORTER: 'none', OTEL_SDK_DISABLED: 'true' },
      readyTimeoutMs: options.readyTimeoutMs ?? 60_000,
      ...(options.nodeArgs ? { nodeArgs: options.nodeArgs } : {}),
    });
  } catch (error) {
    removeFolders();
    await removeLeftovers().catch(() => undefined);
    throw error;
  }
  const configPath = sluice.configPath;
  return {
    sluice,
    ports,
    ...(ports.pooled === undefined ? {} : { pooledPostgresPort: ports.pooled }),
    resources: options.resources,
    storeUrl: benchConfig(options, ports, storeDatabase).eventStore.url,
    processes() {
      const all = findProcesses(['--config', configPath]);
      const proxy = all.find((entry) => entry.cmdline.includes('services/proxy/dist/main.js'))?.pid;
      return { proxy, all: all.map((entry) => entry.pid) };
    },
    named() {
      return findProcesses(['--config', configPath]).map((entry) => ({ pid: entry.pid, name: processRole(entry.cmdline) }));
    },
    async stop() {
      await sluice.stop();
      await removeLeftovers();
    },
  };
};
