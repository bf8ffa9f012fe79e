/**
 * Sluice's benchmarks, beside the direct path and pgbouncer, in interleaved rounds:
 *
 *   npx tsx --conditions=development bench/run.ts              # one quick round
 *   npx tsx --conditions=development bench/run.ts --rounds 3   # the README's figures
 *
 * Needs PostgreSQL on 127.0.0.1:5432 (trust), Redis on 6379, NATS JetStream on 4222, pgbench,
 * pgbouncer, redis-benchmark and wrk, and a built tree (`npm run build`) for `sluice up`.
 * Writes bench/results/latest.md and latest.json. See bench/README.md.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { LATENCY_QUERIES, latencyPaths, measurePgLatency } from './pg-latency.js';
import { CleanupStack } from './support/cleanup.js';
import type { ResourceKind } from './support/deployment.js';
import { freePostgresConnections, measurePostgresIdleSessions, measureRedisIdleSessions, type IdleSessionsResult } from './support/idle-sessions.js';
import { describeMachine } from './support/machine.js';
import { runPgbench, runRedisBenchmark, runWrk, type LoadRun } from './support/load.js';
import { killStartedChildren, nicenessOf, runTool, watchCpu, type CpuWatch } from './support/processes.js';
import { renderReport, wasBusy } from './support/report.js';
import { watchCausedCpu } from './support/caused-cpu.js';
import { profileGaps, type WorkloadProfile } from './support/profiling.js';
import { gapWorkloads, judgeTargets, summarizeVerdict, type Verdict } from './support/verdict.js';
import { auditCatchUp, describeCatchUp, storeMark, type AuditCatchUp } from '../test/support/audit-keeps-up.js';
import { NEW_LITERAL_QUERY, type LatencyResult, type LoadKind, type LoadSample } from './support/samples.js';
import { median } from './support/stats.js';
import { buildStack, REDIS_BENCH_KEY, type Stack } from './support/stack.js';
import { PG_ADMIN_USER, PG_PORT, REDIS_PORT, serverVersions } from './support/targets.js';

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = resolve(BENCH_DIR, '..');

const PARTS = ['latency', 'pgbench', 'redis', 'http', 'sessions', 'components', 'profile'] as const;
type Part = (typeof PARTS)[number];
/**
 * `--only targets`: what issue 12's verdict needs and nothing else — the new-literal latency
 * series, pgbench -S -c N in both protocols, GET with and without pipelining, wrk, idle sessions,
 * and the profiles of the gaps (no TPC-B, no pgbench -c 1, no SET, no component benchmarks).
 */
const TARGET_PARTS: readonly Part[] = ['latency', 'pgbench', 'redis', 'http', 'sessions', 'profile'];
/**
 * `--only audit`: the issue's keeps-up check alone — a 2 s warm-up through Sluice, then one
 * pgbench -S -c N through Sluice for `--audit-seconds` (60) and its check; no rounds, no other path.
 */
const AUDIT_ONLY = 'audit';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '1' },
    duration: { type: 'string', default: '10' },
    clients: { type: 'string', default: '8' },
    threads: { type: 'string', default: '2' },
    scale: { type: 'string', default: '10' },
    'latency-iterations': { type: 'string', default: '1000' },
    'redis-clients': { type: 'string', default: '50' },
    'redis-requests': { type: 'string', default: '100000' },
    'redis-pipelined-requests': { type: 'string', default: '100000' },
    pipeline: { type: 'string', default: '16' },
    'idle-sessions': { type: 'string', default: '2000' },
    'profile-seconds': { type: 'string', default: '5' },
    'audit-seconds': { type: 'string' },
    'audit-niceness': { type: 'string' },
    'wrk-threads': { type: 'string', default: '2' },
    'wrk-connections': { type: 'string', default: '50' },
    'wrk-duration': { type: 'string', default: '10' },
    only: { type: 'string', default: PARTS.join(',') },
    'no-sluice': { type: 'boolean', default: false },
    'deadline-minutes': { type: 'string' },
    out: { type: 'string', default: join(BENCH_DIR, 'results', 'latest.md') },
    help: { type: 'boolean', default: false },
  },
});

if (values.help) {
  process.stdout.write(`bench/run.ts [--rounds N] [--duration S] [--clients N] [--threads N] [--scale N]
  [--latency-iterations N] [--redis-clients N] [--redis-requests N] [--redis-pipelined-requests N] [--pipeline N]
  [--wrk-threads N] [--wrk-connections N] [--wrk-duration S] [--idle-sessions N] [--profile-seconds S] [--audit-seconds S]
  [--audit-niceness N]
  [--only ${PARTS.join(',')} | --only targets | --only audit] [--no-sluice]
  [--deadline-minutes N] [--out FILE]\n`);
  process.exit(0);
}

const integer = (name: keyof typeof values): number => {
  const value = Number(values[name]);
  if (!Number.isInteger(value) || value < 0) {
    process.stderr.write(`--${name}: expected a whole number, got ${String(values[name])}\n`);
    process.exit(2);
  }
  return value;
};

const settings = {
  rounds: Math.max(1, integer('rounds')),
  seconds: integer('duration'),
  clients: integer('clients'),
  threads: integer('threads'),
  scale: integer('scale'),
  latencyIterations: integer('latency-iterations'),
  redisClients: integer('redis-clients'),
  redisRequests: integer('redis-requests'),
  redisPipelinedRequests: integer('redis-pipelined-requests'),
  pipeline: integer('pipeline'),
  wrkThreads: integer('wrk-threads'),
  wrkConnections: integer('wrk-connections'),
  wrkSeconds: integer('wrk-duration'),
  idleSessions: integer('idle-sessions'),
  profileSeconds: Math.max(1, integer('profile-seconds')),
};
/** services.audit.niceness for the Sluice deployment (-20 to 19); absent: the config's default. */
const auditNiceness = values['audit-niceness'] === undefined ? undefined : Number(values['audit-niceness']);
if (auditNiceness !== undefined && !(Number.isInteger(auditNiceness) && auditNiceness >= -20 && auditNiceness <= 19)) {
  process.stderr.write(`--audit-niceness: expected a whole number from -20 to 19, got ${String(values['audit-niceness'])}\n`);
  process.exit(2);
}
const requested = values.only.split(',').map((part) => part.trim()).filter(Boolean);
/** Only what the targets' verdict reads: see TARGET_PARTS. */
const targetsOnly = requested.includes('targets');
/** Only the long keeps-up check (see AUDIT_ONLY). */
const auditOnly = requested.length === 1 && requested[0] === AUDIT_ONLY;
/** How long a measurement waits for the event store to finish storing an earlier load's events. */
const AUDIT_DRAIN_GIVE_UP_MS = 120_000;
/**
 * The issue's own audit check: pgbench -S -c N for this long through Sluice, after the rounds.
 * On with `--only targets` (60 s), off by default (the rounds' checks follow shorter runs).
 */
const auditSeconds = values['audit-seconds'] === undefined ? (targetsOnly || auditOnly ? 60 : 0) : integer('audit-seconds');
const parts = new Set((auditOnly ? [] : targetsOnly ? [...requested.filter((part) => part !== 'targets'), ...TARGET_PARTS] : requested) as Part[]);
for (const part of parts) {
  if (!PARTS.includes(part)) {
    process.stderr.write(`--only: unknown part ${part}; expected some of ${PARTS.join(',')}\n`);
    process.exit(2);
  }
}
const deadlineMinutes = values['deadline-minutes'] === undefined ? 15 + settings.rounds * 10 : integer('deadline-minutes');
const begun = Date.now();
let startLoad = loadavg()[0]!;
const log = (line: string) => process.stderr.write(`[bench ${((Date.now() - begun) / 1000).toFixed(0).padStart(4)} s] ${line}\n`);

const cleanup = new CleanupStack();
let aborting = false;
const abort = (reason: string) => {
  if (aborting) return;
  aborting = true;
  log(`${reason}: stopping every process this run started and cleaning up`);
  killStartedChildren();
  // Should the main flow be stuck on a socket, exit anyway once cleanup is done.
  void cleanup.run(log).finally(() => setTimeout(() => process.exit(130), 2_000).unref());
};
process.once('SIGINT', () => abort('SIGINT'));
process.once('SIGTERM', () => abort('SIGTERM'));
const deadline = setTimeout(() => abort(`deadline of ${deadlineMinutes} min reached`), deadlineMinutes * 60_000);

const latency: LatencyResult[][] = [];
const load: LoadSample[] = [];
const problems: string[] = [];
const components: { name: string; output: string }[] = [];
const auditKeepsUp: (AuditCatchUp & { round: number; load: string })[] = [];
const idleSessions: IdleSessionsResult[] = [];
let verdict: Verdict | undefined;
/** The audit service's niceness as it ran (services.audit.niceness, if the supervisor could apply it). */
let auditServiceNiceness: number | undefined;
let profiles: WorkloadProfile[] = [];
let busy = false;

type Path = 'direct' | 'pgbouncer' | 'node-pipe' | 'sluice';

/** Which processes' CPU a path's row reports. */
const cpuOf = (stack: Stack, path: Path): CpuWatch | undefined => {
  if (path === 'pgbouncer' && stack.pgbouncer) {
    const pid = stack.pgbouncer.daemon.pid;
    return watchCpu(() => ({ proxy: pid, all: [pid] }));
  }
  if (path === 'node-pipe' && stack.nodePipe) {
    const pid = stack.nodePipe.pid;
    return watchCpu(() => ({ proxy: pid, all: [pid] }));
  }
  if (path === 'sluice' && stack.sluice) return watchCpu(() => stack.sluice!.processes());
  return undefined;
};

/** Runs one load generator for one path, sampling the path's CPU around it, and records the sample. */
const sample = async (
  stack: Stack,
  base: Omit<LoadSample, 'path' | 'figures' | 'cpu' | 'caused' | 'error'>,
  path: Path,
  run: () => Promise<LoadRun>,
): Promise<void> => {
  if (aborting) return;
  log(`round ${base.round}: ${base.bench}, ${path}`);
  const watch = cpuOf(stack, path);
  // The event store's backends and nats-server: the PostgreSQL and NATS work Sluice causes.
  const causedWatch = path === 'sluice' && stack.sluice ? await watchCausedCpu(stack.sluice.storeUrl).catch(() => undefined) : undefined;
  let outcome: LoadRun | undefined;
  let error: string | undefined;
  try {
    outcome = await run();
    error = outcome.error;
  } catch (caught) {
    error = caught instanceof Error ? caught.message : String(caught);
  }
  // The load's events are still being stored when it ends: their CPU is the load's, and a backlog
  // left to drain would compete with the next path's measurement.
  const drained = path === 'sluice' && stack.sluice && !error ? await storeMark(stack.sluice.storeUrl, AUDIT_DRAIN_GIVE_UP_MS).catch(() => undefined) : undefined;
  if (drained && !drained.still) problems.push(`round ${base.round}, ${base.bench}, sluice: the event store was still storing the load's events ${AUDIT_DRAIN_GIVE_UP_MS / 1000} s after it ended`);
  const cpu = watch?.stop();
  const caused = await causedWatch?.stop().catch(() => undefined);
  if (error) {
    const note = path === 'sluice' && stack.sluice ? `\n--- sluice output (last lines) ---\n${stack.sluice.sluice.output().trim().split('\n').slice(-15).join('\n')}` : '';
    problems.push(`round ${base.round}, ${base.bench}, ${path}: ${error}${note}`);
    log(`  failed: ${error.split('\n')[0]}`);
  } else {
    const figures = outcome?.figures;
    log(`  ${Math.round(figures?.throughput ?? 0)} ${base.unit}, mean latency ${figures?.latencyMs ?? '?'} ms`);
  }
  load.push({ ...base, path, figures: outcome?.figures, cpu, ...(caused ? { caused } : {}), ...(drained?.still ? { auditBacklogMs: drained.waitedMs } : {}), error });
};

const pgPorts = (stack: Stack): Array<[Path, number]> => {
  const ports: Array<[Path, number]> = [['direct', PG_PORT]];
  if (stack.pgbouncer) ports.push(['pgbouncer', stack.pgbouncer.port]);
  if (stack.nodePipe) ports.push(['node-pipe', stack.nodePipe.port]);
  if (stack.sluice?.ports.postgres !== undefined) ports.push(['sluice', stack.sluice.ports.postgres]);
  return ports;
};

interface PgbenchShape {
  readonly kind: LoadKind;
  readonly name: (s: typeof settings) => string;
  readonly script: 'select-only' | 'tpcb';
  readonly protocol: 'simple' | 'extended';
  readonly clients: (s: typeof settings) => number;
  /** Issue 12's verdict reads it (kept by `--only targets`). */
  readonly target: boolean;
  /** The audit keeps-up check runs after Sluice's run of it. */
  readonly auditChecked: boolean;
}

const pgbenchShapes: readonly PgbenchShape[] = [
  { kind: 'pgbench-select', name: (s) => `select-only (-S), -c ${s.clients} -j ${s.threads}`, script: 'select-only', protocol: 'simple', clients: (s) => s.clients, target: true, auditChecked: true },
  {
    kind: 'pgbench-select-extended',
    name: (s) => `select-only (-S), -c ${s.clients} -j ${s.threads}, extended protocol (-M extended)`,
    script: 'select-only',
    protocol: 'extended',
    clients: (s) => s.clients,
    target: true,
    auditChecked: true,
  },
  { kind: 'pgbench-select-c1', name: () => 'select-only (-S), -c 1: latency', script: 'select-only', protocol: 'simple', clients: () => 1, target: false, auditChecked: false },
  { kind: 'pgbench-tpcb', name: (s) => `TPC-B-like, -c ${s.clients} -j ${s.threads}`, script: 'tpcb', protocol: 'simple', clients: (s) => s.clients, target: false, auditChecked: false },
];
const pgbenchRounds = pgbenchShapes.filter((shape) => shape.target || !targetsOnly);

/**
 * Issue 12's "the audit keeps up": after a pgbench -S run through Sluice, every statement it
 * counted is in the event store with its outcome within 2 s, none doubled (pgbench may cut off
 * one statement per client when it stops: those may be recorded beyond its count).
 */
const withAuditCheck = (storeUrl: string, round: number, label: string, run: () => Promise<LoadRun>) => async (): Promise<LoadRun> => {
  const { seq: afterSeq } = await storeMark(storeUrl, AUDIT_DRAIN_GIVE_UP_MS);
  const outcome = await run();
  const loadEndedAt = Date.now();
  const expected = outcome.figures?.operations;
  if (outcome.error || expected === undefined) return outcome;
  const check = await auditCatchUp({ storeUrl, afterSeq, commandPrefix: 'SELECT abalance FROM pgbench_accounts', expected, slack: settings.clients, loadEndedAt });
  auditKeepsUp.push({ ...check, round, load: label });
  log(`  ${describeCatchUp(check)}`);
  if (!check.ok) problems.push(`round ${round}, ${label}: ${describeCatchUp(check)}`);
  return outcome;
};

/** One long pgbench -S -c N through Sluice with the keeps-up check (issue 12: after 60 s); recorded as round 0. */
const runLongAuditCheck = async (stack: Stack): Promise<void> => {
  const sluice = stack.sluice;
  if (!sluice || sluice.ports.postgres === undefined || aborting) return;
  const label = `pgbench -S -c ${settings.clients}, simple, ${auditSeconds} s`;
  log(`the audit keeps up: ${label} through Sluice`);
  const load = () =>
    runPgbench({ port: sluice.ports.postgres!, database: stack.database, script: 'select-only', clients: settings.clients, threads: settings.threads, seconds: auditSeconds, user: 'bench-reader', password: stack.readerToken });
  const outcome = await withAuditCheck(sluice.storeUrl, 0, label, load)().catch((error: unknown) => ({ error: (error as Error).message }));
  if (outcome.error) problems.push(`the audit keeps-up run (${label}): ${outcome.error}`);
};

const runPgbenchRound = async (stack: Stack, round: number, seconds: number, record: boolean): Promise<void> => {
  for (const shape of pgbenchRounds) {
    for (const [path, port] of pgPorts(stack)) {
      // A read-only agent for reads; TPC-B needs the agent granted write.
      const credentials =
        path === 'sluice' ? { user: shape.script === 'tpcb' ? 'bench-writer' : 'bench-reader', password: shape.script === 'tpcb' ? stack.writerToken : stack.readerToken } : { user: PG_ADMIN_USER };
      const load = () =>
        runPgbench({ port, database: stack.database, script: shape.script, protocol: shape.protocol, clients: shape.clients(settings), threads: settings.threads, seconds, ...credentials });
      const checked = record && path === 'sluice' && shape.auditChecked ? stack.sluice : undefined;
      const run = checked ? withAuditCheck(checked.storeUrl, round, `pgbench -S -c ${shape.clients(settings)}, ${shape.protocol}`, load) : load;
      if (record) {
        await sample(stack, { kind: shape.kind, bench: `pgbench ${shape.name(settings)}`, section: 'postgres', round, unit: 'tps', operation: 'transaction' }, path, run);
      } else if (!aborting) {
        const warm = await run();
        if (warm.error) log(`warm-up of ${path} (${shape.script}, ${shape.protocol}) failed: ${warm.error.split('\n')[0]}`);
      }
    }
  }
};

/** A quick SET then GET through Sluice's Redis port, so a broken path is reported once and clearly. */
const redisPathWorks = async (stack: Stack): Promise<boolean> => {
  const port = stack.sluice?.ports.redis;
  if (port === undefined) return false;
  const cli = (...args: string[]) => runTool('redis-cli', ['-p', String(port), '--no-auth-warning', '-a', stack.writerToken, ...args], { timeoutMs: 10_000 });
  const set = await cli('SET', REDIS_BENCH_KEY, 'xxx');
  const get = await cli('GET', REDIS_BENCH_KEY);
  if (set.stdout.trim() === 'OK' && get.stdout.trim() === 'xxx') return true;
  problems.push(`the Sluice Redis path does not answer SET/GET with the writer's token: SET -> ${JSON.stringify(set.stdout.trim() || set.stderr.trim())}, GET -> ${JSON.stringify(get.stdout.trim() || get.stderr.trim())}`);
  return false;
};

const runRedisRound = async (stack: Stack, round: number, sluiceWorks: boolean): Promise<void> => {
  const paths: Array<[Path, number, string | undefined]> = [['direct', REDIS_PORT, undefined]];
  if (sluiceWorks && stack.sluice?.ports.redis !== undefined) paths.push(['sluice', stack.sluice.ports.redis, stack.writerToken]);
  for (const pipeline of [1, settings.pipeline]) {
    for (const test of targetsOnly ? (['get'] as const) : (['get', 'set'] as const)) {
      const requests = pipeline === 1 ? settings.redisRequests : settings.redisPipelinedRequests;
      const bench = `${test.toUpperCase()}, -c ${settings.redisClients}${pipeline === 1 ? ', no pipelining' : `, -P ${pipeline}`} (${requests.toLocaleString('en-US')} requests)`;
      for (const [path, port, password] of paths) {
        const run = () => runRedisBenchmark({ port, password, test, clients: settings.redisClients, requests, pipeline, timeoutMs: 180_000 });
        const kind: LoadKind = `redis-${test}${pipeline === 1 ? '' : '-pipelined'}`;
        await sample(stack, { kind, bench, section: 'redis', round, unit: 'rps', operation: 'request' }, path, run);
      }
    }
  }
};

const httpPathWorks = async (stack: Stack): Promise<boolean> => {
  const port = stack.sluice?.ports.http;
  if (port === undefined) return false;
  try {
    const response = await fetch(`http://127.0.0.1:${port}/items`, { headers: { authorization: `Bearer ${stack.readerToken}` }, signal: AbortSignal.timeout(10_000) });
    const body = await response.text();
    if (response.status === 200) return true;
    problems.push(`the Sluice HTTP path answers GET /items with ${response.status}: ${body.slice(0, 300)}`);
  } catch (error) {
    problems.push(`the Sluice HTTP path does not answer GET /items: ${(error as Error).message}`);
  }
  return false;
};

const runHttpRound = async (stack: Stack, round: number, sluiceWorks: boolean): Promise<void> => {
  if (!stack.http) return;
  const paths: Array<[Path, string]> = [['direct', `${stack.http.url}/items`]];
  if (sluiceWorks && stack.sluice?.ports.http !== undefined) paths.push(['sluice', `http://127.0.0.1:${stack.sluice.ports.http}/items`]);
  const bench = `GET of a 1 KB JSON document with PII, -t ${settings.wrkThreads} -c ${settings.wrkConnections} -d ${settings.wrkSeconds}s`;
  for (const [path, url] of paths) {
    const run = () => runWrk({ url, token: stack.readerToken, threads: settings.wrkThreads, connections: settings.wrkConnections, seconds: settings.wrkSeconds });
    await sample(stack, { kind: 'http-get', bench, section: 'http', round, unit: 'rps', operation: 'request' }, path, run);
  }
};

/**
 * Issue 12's memory target: the proxy's resident memory per idle authenticated session, with
 * 2,000 Redis sessions and as many PostgreSQL sessions as the server's max_connections leaves room for.
 */
const runIdleSessions = async (stack: Stack, redisWorks: boolean): Promise<void> => {
  const proxyPid = stack.sluice?.processes().proxy;
  if (proxyPid === undefined || aborting) return;
  const record = (measured: IdleSessionsResult) => {
    idleSessions.push(measured);
    log(`  ${measured.opened} ${measured.protocol} sessions: ${measured.perSessionKiB.toFixed(1)} KiB each${measured.error ? ` (stopped: ${measured.error})` : ''}`);
    if (measured.error) problems.push(`idle ${measured.protocol} sessions: ${measured.error}`);
  };
  if (redisWorks && stack.sluice?.ports.redis !== undefined) {
    log(`idle sessions: ${settings.idleSessions} Redis sessions through Sluice`);
    record(await measureRedisIdleSessions({ proxyPid, port: stack.sluice.ports.redis, token: stack.readerToken, count: settings.idleSessions }));
  }
  const pooledPort = stack.sluice?.pooledPostgresPort;
  if (pooledPort !== undefined) {
    log(`idle sessions: ${settings.idleSessions} PostgreSQL sessions through Sluice (target: pgbouncer in transaction mode)`);
    // The writer's sessions: a read-only session's startup `options` is a parameter pgbouncer refuses.
    record(await measurePostgresIdleSessions({ proxyPid, port: pooledPort, database: stack.database, user: 'bench-writer', token: stack.writerToken, count: settings.idleSessions }));
  } else if (stack.sluice?.ports.postgres !== undefined) {
    // Without the pooled target, each Sluice session holds a server connection of its own.
    const room = await freePostgresConnections(stack.database, PG_ADMIN_USER);
    const count = Math.min(settings.idleSessions, room);
    log(`idle sessions: ${count} PostgreSQL sessions through Sluice`);
    record(
      await measurePostgresIdleSessions({
        proxyPid,
        port: stack.sluice.ports.postgres,
        database: stack.database,
        user: 'bench-reader',
        token: stack.readerToken,
        count,
        ...(count < settings.idleSessions ? { limitedBy: `the server's max_connections leaves room for ${room}` } : {}),
      }),
    );
  }
};

/**
 * The profiling pass: each gap's workload for a few seconds through a separate `sluice up` with
 * `--cpu-prof`. A failure is reported, not thrown: the figures of the rounds stand without it.
 */
const runProfiles = async (stack: Stack): Promise<void> => {
  const workloads = gapWorkloads(judge());
  if (workloads.size === 0 || !stack.sluice) return;
  const rates = new Map<LoadKind, number>();
  for (const kind of workloads.keys()) {
    const rate = median(load.filter((sample) => sample.kind === kind && sample.path === 'sluice' && !sample.error).map((sample) => sample.figures?.throughput));
    if (rate !== undefined) rates.set(kind, rate);
  }
  try {
    profiles = await profileGaps({
      stack,
      workloads,
      seconds: settings.profileSeconds,
      rates,
      clients: settings.clients,
      threads: settings.threads,
      redisClients: settings.redisClients,
      pipeline: settings.pipeline,
      wrkThreads: settings.wrkThreads,
      wrkConnections: settings.wrkConnections,
      log,
      cleanup,
    });
    for (const profile of profiles) if (profile.error) problems.push(`profiling ${profile.description}: ${profile.error}`);
  } catch (error) {
    problems.push(`profiling pass: ${error instanceof Error ? error.message : String(error)}`);
    log(`profiling failed: ${(error as Error).message.split('\n')[0]}`);
  }
};

/** The other engineers' component benchmarks, run as they are, output appended verbatim. */
const runComponents = async (): Promise<void> => {
  for (const name of ['masking.mjs', 'classifier.mjs', 'audit.mjs']) {
    const file = join(BENCH_DIR, name);
    if (!existsSync(file)) continue;
    log(`component benchmark bench/${name}`);
    const result = await runTool(process.execPath, ['--conditions=development', '--import', 'tsx', file], { cwd: REPO_ROOT, timeoutMs: 300_000 });
    const status = result.timedOut ? 'timed out after 300 s' : result.status === 0 ? '' : `exited with ${result.status ?? result.signal}`;
    const output = `${result.stdout.trim()}${status ? `\n\n${status}:\n${result.stderr.trim().split('\n').slice(-20).join('\n')}` : ''}`;
    components.push({ name: `bench/${name}`, output: output.length > 20_000 ? `${output.slice(0, 20_000)}\n… (cut)` : output });
    if (status) problems.push(`bench/${name} ${status}`);
  }
};

/** Issue 12's verdict on what has been measured so far. */
const judge = (): Verdict =>
  judgeTargets({ load, latency, auditKeepsUp, idleSessions, idleSessionsWanted: Math.max(2_000, settings.idleSessions), clients: settings.clients }, !busy);

const writeReport = (machine: ReturnType<typeof describeMachine>, final: boolean): string => {
  verdict = judge();
  const report = renderReport({
    machine,
    rounds: settings.rounds,
    settings: {
      'pgbench scale': settings.scale,
      'pgbench -T': `${settings.seconds} s`,
      'pgbench -c/-j': `${settings.clients}/${settings.threads}`,
      'latency iterations': settings.latencyIterations,
      'redis-benchmark -c': settings.redisClients,
      'redis -P': settings.pipeline,
      'wrk -t/-c/-d': `${settings.wrkThreads}/${settings.wrkConnections}/${settings.wrkSeconds} s`,
      ...(auditSeconds > 0 ? { 'audit check run': `${auditSeconds} s` } : {}),
      ...(auditServiceNiceness === undefined ? {} : { 'audit service niceness': auditServiceNiceness }),
      ...(final ? {} : { state: 'incomplete (written after a round; the run went on)' }),
    },
    latency,
    load,
    problems,
    auditKeepsUp,
    idleSessions,
    components,
    elapsedSeconds: (Date.now() - begun) / 1000,
    loadAverage: { start: startLoad, end: loadavg()[0]! },
    verdict,
    profiles,
  });
  mkdirSync(dirname(values.out), { recursive: true });
  writeFileSync(values.out, report);
  writeFileSync(values.out.replace(/\.md$/, '') + '.json', `${JSON.stringify({ machine, settings, targets: verdict, profiles, latency, load, auditKeepsUp, idleSessions, problems }, null, 2)}\n`);
  return report;
};

/**
 * Waits (up to 90 s) for the 1-minute load average to fall below half the CPUs, so that the tail
 * of a build just before does not mark the run busy; the load it starts with is what the report judges.
 */
const settleLoad = async (nproc: number): Promise<void> => {
  const quiet = nproc * 0.5;
  const until = Date.now() + 90_000;
  if (loadavg()[0]! > quiet) log(`waiting up to 90 s for the load average (${loadavg()[0]!.toFixed(2)}) to fall below ${quiet}`);
  while (loadavg()[0]! > quiet && Date.now() < until && !aborting) await new Promise((resolve) => setTimeout(resolve, 5_000));
  startLoad = loadavg()[0]!;
  busy = wasBusy(startLoad, nproc);
};

const main = async (): Promise<void> => {
  const machine = describeMachine(await serverVersions());
  await settleLoad(machine.nproc);
  log(`${machine.nproc} CPUs (${machine.cpuModel}); ${settings.rounds} round(s); parts: ${[...parts].join(', ')}`);
  const wantsSluice = !values['no-sluice'];
  const sluiceResources: ResourceKind[] = ['postgres'];
  if (parts.has('redis') || parts.has('sessions')) sluiceResources.push('redis');
  if (parts.has('http')) sluiceResources.push('http');
  const stack = await buildStack(
    {
      scale: parts.has('pgbench') || auditOnly ? settings.scale : 0,
      pgbouncer: parts.has('pgbench') || parts.has('latency'),
      nodePipe: parts.has('pgbench') || parts.has('latency'),
      http: parts.has('http'),
      pooledTarget: parts.has('sessions'),
      sluiceResources: wantsSluice ? sluiceResources : [],
      ...(auditNiceness === undefined ? {} : { auditNiceness }),
      log,
    },
    cleanup,
  );
  problems.push(...stack.setupErrors, ...stack.sluiceErrors);
  const auditPid = stack.sluice?.named().find((process) => process.name === 'audit')?.pid;
  auditServiceNiceness = auditPid === undefined ? undefined : nicenessOf(auditPid);
  const redisWorks = (parts.has('redis') || parts.has('sessions')) && (await redisPathWorks(stack));
  const httpWorks = parts.has('http') && (await httpPathWorks(stack));

  // Before any load: afterwards the proxy's heap has room to spare, and RSS no longer grows with sessions.
  if (parts.has('sessions')) await runIdleSessions(stack, redisWorks);
  if (parts.has('pgbench')) {
    log('warm-up: 2 s of each pgbench script on each path (not recorded)');
    await runPgbenchRound(stack, 0, 2, false);
  }
  for (let round = 1; round <= settings.rounds; round++) {
    if (parts.has('latency')) {
      log(`round ${round}: node-postgres latency, ${settings.latencyIterations} sequential queries per path`);
      const queries = targetsOnly ? LATENCY_QUERIES.filter((query) => query.name === NEW_LITERAL_QUERY) : LATENCY_QUERIES;
      latency.push(await measurePgLatency(latencyPaths(stack), { iterations: settings.latencyIterations, warmup: 200, firstStatement: round * 1_000_000, queries }));
      for (const result of latency.at(-1)!) {
        if (result.error) problems.push(`round ${round}, latency ${result.query}, ${result.path}: ${result.error}`);
      }
    }
    if (parts.has('pgbench')) await runPgbenchRound(stack, round, settings.seconds, true);
    if (parts.has('redis')) await runRedisRound(stack, round, redisWorks);
    if (parts.has('http')) await runHttpRound(stack, round, httpWorks);
    if (round < settings.rounds) writeReport(machine, false);
  }
  if (auditOnly && stack.sluice?.ports.postgres !== undefined && !aborting) {
    log('warm-up: 2 s of pgbench -S through Sluice (not recorded)');
    const warm = await runPgbench({ port: stack.sluice.ports.postgres, database: stack.database, script: 'select-only', clients: settings.clients, threads: settings.threads, seconds: 2, user: 'bench-reader', password: stack.readerToken });
    if (warm.error) log(`warm-up through Sluice failed: ${warm.error.split('\n')[0]}`);
  }
  if ((parts.has('pgbench') || auditOnly) && auditSeconds > 0) await runLongAuditCheck(stack);
  if (parts.has('profile') && !aborting) await runProfiles(stack);
  if (parts.has('components')) await runComponents();
  // An aborted run keeps the report of its last complete round rather than a truncated one.
  if (aborting) return;
  const report = writeReport(machine, true);
  process.stdout.write(`${report}\n`);
  log(`wrote ${values.out}`);
  log(`targets (issue 12): ${summarizeVerdict(verdict!)}`);
};

main()
  .then(
    () => 0,
    (error: unknown) => {
      log(`failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
      return 1;
    },
  )
  .then(async (code) => {
    clearTimeout(deadline);
    // Also when aborting: the same (idempotent) cleanup must finish before the process exits.
    await cleanup.run(log);
    process.exit(aborting ? 130 : code);
  })
  .catch((error: unknown) => {
    log(`cleanup failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    process.exit(1);
  });
