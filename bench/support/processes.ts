import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';

export interface ToolResult {
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
  readonly elapsedMs: number;
}

/** Every child this run started and has not reaped yet, so an aborted run can end exactly these. */
const started = new Set<ChildProcess>();

const OUTPUT_LIMIT = 4 * 1024 * 1024;

/** Set once the run is aborting: no new process may start while cleanup runs. */
let halted = false;

/**
 * Runs a load generator (or any tool) to completion, bounded by `timeoutMs`: on timeout it is
 * killed and the result says so rather than hanging the whole benchmark.
 */
export const runTool = (
  command: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs: number; cwd?: string; input?: string },
): Promise<ToolResult> =>
  new Promise((resolve) => {
    if (halted) {
      resolve({ status: null, signal: null, stdout: '', stderr: 'the run is aborting', timedOut: false, elapsedMs: 0 });
      return;
    }
    const begin = process.hrtime.bigint();
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    started.add(child);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout!.on('data', (chunk: Buffer) => {
      if (stdout.length < OUTPUT_LIMIT) stdout += chunk.toString();
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      if (stderr.length < OUTPUT_LIMIT) stderr += chunk.toString();
    });
    if (options.input !== undefined) child.stdin!.end(options.input);
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs);
    const finish = (status: number | null, signal: NodeJS.Signals | null, extra = '') => {
      clearTimeout(timer);
      started.delete(child);
      resolve({ status, signal, stdout, stderr: stderr + extra, timedOut, elapsedMs: Number(process.hrtime.bigint() - begin) / 1e6 });
    };
    child.once('error', (error) => finish(null, null, String(error)));
    child.once('close', (status, signal) => finish(status, signal));
  });

export interface Daemon {
  readonly pid: number;
  readonly child: ChildProcess;
  readonly output: () => string;
  stop(): Promise<void>;
}

/** Starts a long-running helper (pgbouncer, a pipe proxy) whose output is kept for error reports. */
export const startDaemon = (command: string, args: readonly string[], options: SpawnOptions = {}): Daemon => {
  if (halted) throw new Error('the run is aborting');
  const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
  started.add(child);
  let output = '';
  const keep = (chunk: Buffer) => {
    if (output.length < 64 * 1024) output += chunk.toString();
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
  exited.then(() => started.delete(child), () => undefined);
  if (child.pid === undefined) throw new Error(`could not start ${command}`);
  return {
    pid: child.pid,
    child,
    output: () => output,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
};

/** Aborting: SIGKILLs what this run started and is still running, and starts nothing more. */
export const killStartedChildren = (): void => {
  halted = true;
  for (const child of started) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
};

/** Resolves once something accepts TCP connections on 127.0.0.1:port. */
export const waitForPort = async (port: number, timeoutMs: number, alive?: () => boolean): Promise<void> => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (alive && !alive()) throw new Error(`the process meant to listen on ${port} exited`);
    if (Date.now() > deadline) throw new Error(`nothing listened on 127.0.0.1:${port} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
};

let clockTicks: number | undefined;
const ticksPerSecond = (): number => {
  if (clockTicks === undefined) {
    const answer = Number.parseInt(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout, 10);
    clockTicks = Number.isFinite(answer) && answer > 0 ? answer : 100;
  }
  return clockTicks;
};

/**
 * User + system CPU time a process (all its threads) has used so far, in microseconds.
 * @see https://man7.org/linux/man-pages/man5/proc_pid_stat.5.html fields 14 (utime) and 15 (stime)
 */
export const cpuTimeMicros = (pid: number): number | undefined => {
  const fields = statFieldsAfterName(pid);
  if (!fields) return undefined;
  const ticks = Number(fields[11]) + Number(fields[12]);
  return Number.isFinite(ticks) ? (ticks * 1e6) / ticksPerSecond() : undefined;
};

/** A process's (main thread's) niceness, field 19 of /proc/<pid>/stat. */
export const nicenessOf = (pid: number): number | undefined => {
  const fields = statFieldsAfterName(pid);
  return fields ? Number(fields[16]) : undefined;
};

/** The fields of /proc/<pid>/stat from field 3 on (index 0 is field 3), or undefined once it has exited. */
const statFieldsAfterName = (pid: number): string[] | undefined => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
};

export interface ProcessEntry {
  readonly pid: number;
  readonly cmdline: string;
}

/** Processes whose command line contains every one of `needles`. */
export const findProcesses = (needles: readonly string[]): ProcessEntry[] => {
  const found: ProcessEntry[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').join(' ');
      if (needles.every((needle) => cmdline.includes(needle))) found.push({ pid: Number(name), cmdline });
    } catch {
      // the process ended while we looked
    }
  }
  return found;
};

export interface CpuSample {
  /** CPU of the proxy process alone. */
  readonly proxyUs: number;
  /** CPU of every process of the path (for Sluice: supervisor and all five services). */
  readonly allUs: number;
  /** False when a process came or went during the measurement (a restart), so the figure is unsure. */
  readonly stable: boolean;
}

export interface CpuWatch {
  stop(): CpuSample;
}

/** Takes CPU times of the path's processes now; `stop()` returns what they used since. */
export const watchCpu = (processes: () => { proxy: number | undefined; all: readonly number[] }): CpuWatch => {
  const before = processes();
  const read = (pids: readonly number[]) => new Map(pids.map((pid) => [pid, cpuTimeMicros(pid)] as const));
  const proxyBefore = before.proxy === undefined ? undefined : cpuTimeMicros(before.proxy);
  const allBefore = read(before.all);
  return {
    stop() {
      const after = processes();
      const proxyAfter = after.proxy === undefined ? undefined : cpuTimeMicros(after.proxy);
      const allAfter = read(after.all);
      let allUs = 0;
      for (const [pid, end] of allAfter) allUs += (end ?? 0) - (allBefore.get(pid) ?? 0);
      const stable =
        before.proxy === after.proxy &&
        before.all.length === after.all.length &&
        before.all.every((pid) => allAfter.has(pid));
      return { proxyUs: (proxyAfter ?? 0) - (proxyBefore ?? 0), allUs, stable };
    },
  };
};
