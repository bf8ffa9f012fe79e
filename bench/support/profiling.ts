import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { watchCausedCpu } from './caused-cpu.js';
import type { CleanupStack } from './cleanup.js';
import { formatSelfTimes, monotonicMicros, readProfiles, summarizeProfile, type ProfileWindow } from './cpu-profile.js';
import { startBenchSluice, type BenchSluice, type SluiceProcess } from './deployment.js';
import { runPgbench, runRedisBenchmark, runWrk, type LoadRun } from './load.js';
import { cpuTimeMicros } from './processes.js';
import type { LoadKind } from './samples.js';
import type { Stack } from './stack.js';

/** Sluice's CPU per operation in one process, from /proc over the profiled workload. */
export interface ProcessCpu {
  readonly name: string;
  readonly pid: number;
  readonly usPerOperation: number;
}

/** What V8's sampler saw in one process over the workload. */
export interface ProcessProfile {
  readonly name: string;
  readonly pid: number;
  /** Sampled busy time per operation (wall time: includes time descheduled in syscalls). */
  readonly sampledUsPerOperation: number;
  /** Share of the sampled busy time in writes and other syscalls, left out of `top`. */
  readonly syscallShare: number;
  /** `  12.3%  function file:line`, shares of the busy time without the syscalls. */
  readonly top: readonly string[];
}

export interface WorkloadProfile {
  readonly workload: LoadKind;
  readonly description: string;
  /** The gaps this workload explains (verdict target ids). */
  readonly gaps: readonly string[];
  readonly operations?: number;
  readonly seconds: number;
  readonly processes: readonly ProcessCpu[];
  readonly caused?: { readonly storeUsPerOperation: number; readonly natsUsPerOperation: number };
  readonly profiles: readonly ProcessProfile[];
  readonly error?: string;
}

export interface ProfilingOptions {
  readonly stack: Stack;
  /** The workloads to profile, each with the gaps it explains. */
  readonly workloads: ReadonlyMap<LoadKind, readonly string[]>;
  /** Seconds of each workload (a redis-benchmark's request count is sized from `rates`). */
  readonly seconds: number;
  /** Sluice's throughput per workload in the rounds, to size a request-count benchmark. */
  readonly rates: ReadonlyMap<LoadKind, number>;
  readonly clients: number;
  readonly threads: number;
  readonly redisClients: number;
  readonly pipeline: number;
  readonly wrkThreads: number;
  readonly wrkConnections: number;
  /** Functions listed per dominant process. */
  readonly topCount?: number;
  readonly log: (line: string) => void;
  readonly cleanup: CleanupStack;
}

const describe = (workload: LoadKind, options: ProfilingOptions): string =>
  ({
    'pgbench-select': `pgbench -S -c ${options.clients} -j ${options.threads}, simple protocol`,
    'pgbench-select-extended': `pgbench -S -c ${options.clients} -j ${options.threads}, extended protocol`,
    'pgbench-select-c1': 'pgbench -S -c 1, simple protocol',
    'pgbench-tpcb': `pgbench TPC-B-like -c ${options.clients}`,
    'redis-get': `redis-benchmark GET -c ${options.redisClients}`,
    'redis-set': `redis-benchmark SET -c ${options.redisClients}`,
    'redis-get-pipelined': `redis-benchmark GET -c ${options.redisClients} -P ${options.pipeline}`,
    'redis-set-pipelined': `redis-benchmark SET -c ${options.redisClients} -P ${options.pipeline}`,
    'http-get': `wrk -t ${options.wrkThreads} -c ${options.wrkConnections}, 1 KB JSON`,
  })[workload];

/** The load generator of a workload against the profiled deployment, for `seconds` (or a request count sized to it). */
const workloadRun = (workload: LoadKind, sluice: BenchSluice, options: ProfilingOptions, seconds: number): (() => Promise<LoadRun>) | undefined => {
  const { stack } = options;
  const pg = sluice.ports.postgres;
  const pgbench = (script: 'select-only' | 'tpcb', clients: number, protocol: 'simple' | 'extended') =>
    pg === undefined
      ? undefined
      : () =>
          runPgbench({
            port: pg,
            database: stack.database,
            script,
            clients,
            threads: options.threads,
            seconds,
            protocol,
            ...(script === 'tpcb' ? { user: 'bench-writer', password: stack.writerToken } : { user: 'bench-reader', password: stack.readerToken }),
          });
  const redis = (test: 'get' | 'set', pipeline: number) => {
    const port = sluice.ports.redis;
    if (port === undefined) return undefined;
    const rate = options.rates.get(workload) ?? 5_000;
    const requests = Math.round(Math.min(2_000_000, Math.max(2_000, rate * seconds)));
    return () => runRedisBenchmark({ port, password: stack.writerToken, test, clients: options.redisClients, requests, pipeline, timeoutMs: (seconds * 4 + 60) * 1000 });
  };
  switch (workload) {
    case 'pgbench-select':
      return pgbench('select-only', options.clients, 'simple');
    case 'pgbench-select-extended':
      return pgbench('select-only', options.clients, 'extended');
    case 'pgbench-select-c1':
      return pgbench('select-only', 1, 'simple');
    case 'pgbench-tpcb':
      return pgbench('tpcb', options.clients, 'simple');
    case 'redis-get':
      return redis('get', 1);
    case 'redis-set':
      return redis('set', 1);
    case 'redis-get-pipelined':
      return redis('get', options.pipeline);
    case 'redis-set-pipelined':
      return redis('set', options.pipeline);
    case 'http-get': {
      const port = sluice.ports.http;
      if (port === undefined) return undefined;
      return () => runWrk({ url: `http://127.0.0.1:${port}/items`, token: stack.readerToken, threads: options.wrkThreads, connections: options.wrkConnections, seconds });
    }
    default: {
      const unreachable: never = workload;
      throw new Error(`no profiling workload for ${String(unreachable)}`);
    }
  }
};

interface Measured {
  readonly workload: LoadKind;
  readonly window: ProfileWindow;
  readonly operations?: number;
  readonly processes: ProcessCpu[];
  readonly caused?: WorkloadProfile['caused'];
  readonly error?: string;
}

/** Runs one workload, reading every Sluice process's CPU from /proc at both ends. */
const measureWorkload = async (workload: LoadKind, sluice: BenchSluice, named: readonly SluiceProcess[], options: ProfilingOptions): Promise<Measured> => {
  const run = workloadRun(workload, sluice, options, options.seconds);
  const empty = { workload, window: { fromUs: 0, toUs: 0 }, processes: [] };
  if (!run) return { ...empty, error: 'the profiled deployment does not serve this protocol' };
  const before = new Map(named.map((entry) => [entry.pid, cpuTimeMicros(entry.pid)]));
  const caused = await watchCausedCpu(sluice.storeUrl);
  const fromUs = monotonicMicros();
  const outcome = await run().catch((error: unknown) => ({ error: (error as Error).message, figures: undefined }) as const);
  // The audit stores the last events after the load: give it the audit target's 2 s, inside the window.
  if (workload === 'pgbench-select') await new Promise((resolve) => setTimeout(resolve, 2_000));
  const toUs = monotonicMicros();
  const causedCpu = await caused.stop();
  const operations = outcome.figures?.operations;
  if (outcome.error || !operations) return { ...empty, window: { fromUs, toUs }, error: (outcome.error ?? 'no operations counted').split('\n').slice(0, 5).join('\n') };
  const processes = named.map((entry) => {
    const start = before.get(entry.pid);
    const end = cpuTimeMicros(entry.pid);
    // A process that restarted meanwhile has no figure of its own: 0 rather than minus its start.
    return { ...entry, usPerOperation: start === undefined || end === undefined ? 0 : (end - start) / operations };
  });
  return {
    workload,
    window: { fromUs, toUs },
    operations,
    processes: processes.sort((a, b) => b.usPerOperation - a.usPerOperation),
    caused: { storeUsPerOperation: causedCpu.storeUs / operations, natsUsPerOperation: causedCpu.natsUs / operations },
  };
};

/** The processes that dominate: the largest, and every other with at least a quarter of Sluice's CPU (at most three). */
const dominant = (processes: readonly ProcessCpu[]): ProcessCpu[] => {
  const total = processes.reduce((sum, entry) => sum + entry.usPerOperation, 0);
  return processes.filter((entry, index) => index === 0 || entry.usPerOperation >= total * 0.25).slice(0, 3);
};

/**
 * The short profiling pass after the rounds: a separate `sluice up` whose processes run with
 * `--cpu-prof`, each gap's workload for a few seconds, then CPU per operation of every Sluice
 * process (from /proc) and the top functions by self time of those that dominate.
 */
export const profileGaps = async (options: ProfilingOptions): Promise<WorkloadProfile[]> => {
  const { stack, log } = options;
  if (options.workloads.size === 0 || !stack.sluice) return [];
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-prof-'));
  options.cleanup.defer('profile folder', () => rmSync(dir, { recursive: true, force: true }));
  log(`profiling: sluice up with --cpu-prof for ${[...options.workloads.keys()].join(', ')}`);
  const sluice = await startBenchSluice({
    // Its own stream and store database, beside the main deployment's.
    runId: `${stack.runId}prof`,
    issuer: stack.issuer.issuer,
    audience: stack.issuer.audience,
    targetDatabase: stack.database,
    httpTarget: stack.http?.url,
    resources: stack.sluice.resources,
    nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}`],
    // The sampler slows start-up, and the main deployment is still up beside it.
    readyTimeoutMs: 120_000,
  });
  // Stopped once: here to write the profiles, or by the cleanup if the pass is cut short.
  let stopping: Promise<void> | undefined;
  const stop = () => (stopping ??= sluice.stop());
  options.cleanup.defer('profiled sluice', stop);
  const named = sluice.named();
  const measured: Measured[] = [];
  try {
    for (const workload of options.workloads.keys()) {
      // A fresh deployment: caches, connections and JIT warm up first, outside the window.
      const warm = workloadRun(workload, sluice, options, 1);
      if (warm) await warm().catch(() => undefined);
      log(`profiling: ${describe(workload, options)}, ${options.seconds} s`);
      measured.push(await measureWorkload(workload, sluice, named, options));
    }
  } finally {
    // The profiles are written as the processes exit.
    await stop();
  }
  const files = readProfiles(dir);
  const topCount = options.topCount ?? 8;
  return measured.map((entry) => {
    const base = {
      workload: entry.workload,
      description: describe(entry.workload, options),
      gaps: options.workloads.get(entry.workload) ?? [],
      seconds: options.seconds,
      processes: entry.processes,
      ...(entry.operations === undefined ? {} : { operations: entry.operations }),
      ...(entry.caused ? { caused: entry.caused } : {}),
    };
    if (entry.error) return { ...base, profiles: [], error: entry.error };
    const profiles = dominant(entry.processes).flatMap((process): ProcessProfile[] => {
      const file = files.find((candidate) => candidate.pid === process.pid);
      if (!file) return [];
      const summary = summarizeProfile(file.profile, { window: entry.window });
      return [
        {
          name: process.name,
          pid: process.pid,
          sampledUsPerOperation: summary.busyUs / entry.operations!,
          syscallShare: summary.busyUs === 0 ? 0 : summary.syscallUs / summary.busyUs,
          top: formatSelfTimes(summary, topCount),
        },
      ];
    });
    return { ...base, profiles };
  });
};

const us = (value: number): string => `${value >= 10 ? Math.round(value) : value.toFixed(1)} µs`;

/** The report's section: per workload, CPU per operation of every process and the dominant ones' top functions. */
export const renderProfiles = (profiles: readonly WorkloadProfile[]): string => {
  if (profiles.length === 0) return '';
  const lines = [
    '### Profiles of the gaps',
    '',
    'A separate `sluice up` (same config, its own stream and store) ran with `node --cpu-prof`; each workload ran for a few seconds after a 1 s warm-up. CPU per operation is user+system time from /proc over the workload (the sampler on adds a little); the functions are V8 samples of the processes that dominate, self time within the workload\'s window.',
    '',
    "V8's sampler ticks on wall time: a sample taken while a thread is in `write()` — or descheduled there, on a loaded machine — is charged to `writeBuffer`/`writev` and the like. Those syscall natives are **left out of the percentages** below and shown apart as \"syscalls\".",
    '',
  ];
  for (const profile of profiles) {
    lines.push(`#### ${profile.description} — explains ${profile.gaps.join(', ')}`, '');
    if (profile.error) {
      lines.push(`Not profiled: ${profile.error.split('\n')[0]}`, '');
      continue;
    }
    const total = profile.processes.reduce((sum, entry) => sum + entry.usPerOperation, 0);
    const caused = profile.caused ? `; event store backends ${us(profile.caused.storeUsPerOperation)}, nats-server ${us(profile.caused.natsUsPerOperation)}` : '';
    lines.push(
      `${(profile.operations ?? 0).toLocaleString('en-US')} operations in ${profile.seconds} s. CPU per operation (/proc): ${profile.processes.map((entry) => `${entry.name} ${us(entry.usPerOperation)}`).join(', ')} — Sluice ${us(total)}${caused}.`,
      '',
    );
    for (const process of profile.profiles) {
      lines.push(
        `${process.name} (pid ${process.pid}): ${us(process.sampledUsPerOperation)} sampled per operation, of which syscalls ${(process.syscallShare * 100).toFixed(0)}% (left out below). Top functions by self time:`,
        '',
        '```',
        ...process.top,
        '```',
        '',
      );
    }
  }
  return lines.join('\n');
};
