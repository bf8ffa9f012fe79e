import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Reading the `.cpuprofile` files that `node --cpu-prof` writes when a process exits.
 * @see https://chromedevtools.github.io/devtools-protocol/tot/Profiler/#type-Profile
 */
export interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
}

export interface CpuProfile {
  /** Microseconds on the monotonic clock that process.hrtime reads too, in every process. */
  readonly startTime: number;
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface ProfileFile {
  readonly file: string;
  /** The pid in node's file name (`CPU.<date>.<time>.<pid>.<tid>.<seq>.cpuprofile`), if it is there. */
  readonly pid: number | undefined;
  readonly profile: CpuProfile;
}

/** A window on the monotonic clock, in microseconds: `process.hrtime.bigint() / 1000n` at each end. */
export interface ProfileWindow {
  readonly fromUs: number;
  readonly toUs: number;
}

export const monotonicMicros = (): number => Number(process.hrtime.bigint() / 1000n);

export const readProfiles = (dir: string): ProfileFile[] =>
  readdirSync(dir)
    .filter((name) => name.endsWith('.cpuprofile'))
    .map((file) => {
      const pid = /^CPU\.\d+\.\d+\.(\d+)\.\d+\.\d+\.cpuprofile$/.exec(file)?.[1];
      return { file, pid: pid === undefined ? undefined : Number(pid), profile: JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile };
    });

/** Does any function of the profile come from `fragment` (e.g. `services/proxy/`)? */
export const profileRuns = (profile: CpuProfile, fragment: string): boolean => profile.nodes.some((node) => node.callFrame.url.includes(fragment));

/**
 * Natives that enter the kernel. V8's sampler ticks on wall time: a sample that lands while the
 * thread sits in write() (or is descheduled there, on a loaded machine) is charged to these.
 */
const SYSCALL_NATIVES = new Set(['writeBuffer', 'writev', 'writeUtf8String', 'writeLatin1String', 'writeAsciiString', 'writeUcs2String', 'shutdown', 'readStart', 'readStop', 'close', 'connect', 'fsync', 'writeString']);

export const isSyscallFrame = (frame: ProfileNode['callFrame']): boolean => frame.url === '' && SYSCALL_NATIVES.has(frame.functionName);

export interface SelfTime {
  /** `function file:line`, or the file alone when summarised by file. */
  readonly key: string;
  readonly selfUs: number;
}

export interface ProfileSummary {
  /** Sampled time that was not `(idle)`, including syscalls, in µs. */
  readonly busyUs: number;
  /** Of busyUs, what landed in natives that enter the kernel (see SYSCALL_NATIVES). */
  readonly syscallUs: number;
  /** Self time per function (or file), syscall natives left out, largest first. */
  readonly selfTimes: readonly SelfTime[];
}

/** Shortens a script URL to its place in the repository or in node_modules. */
const shortFile = (url: string): string => url.replace(/^file:\/\//, '').replace(/^.*\/(node_modules|work\/main|work\/wt\/[^/]+)\//, '');

/**
 * Self time per function (or per file) within `window` (all of the profile when absent): idle
 * samples never count; syscall natives are counted apart, not among the self times.
 */
export const summarizeProfile = (profile: CpuProfile, options: { window?: ProfileWindow; byFile?: boolean } = {}): ProfileSummary => {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map<string, number>();
  let busyUs = 0;
  let syscallUs = 0;
  let at = profile.startTime;
  profile.samples.forEach((id, index) => {
    const delta = profile.timeDeltas[index] ?? 0;
    at += delta;
    if (options.window && (at < options.window.fromUs || at > options.window.toUs)) return;
    const frame = byId.get(id)?.callFrame;
    if (!frame || frame.functionName === '(idle)') return;
    busyUs += delta;
    if (isSyscallFrame(frame)) {
      syscallUs += delta;
      return;
    }
    const file = shortFile(frame.url);
    const name = frame.functionName || '(anonymous)';
    // Natives and V8's own entries ((garbage collector), (program)) have no script.
    const key = options.byFile ? file || name : file ? `${name} ${file}:${frame.lineNumber + 1}` : name;
    self.set(key, (self.get(key) ?? 0) + delta);
  });
  const selfTimes = [...self.entries()].map(([key, selfUs]) => ({ key, selfUs })).sort((a, b) => b.selfUs - a.selfUs);
  return { busyUs, syscallUs, selfTimes };
};

/** `  12.3%  name file:line` lines, as shares of the self times (syscall natives left out). */
export const formatSelfTimes = (summary: ProfileSummary, count: number): string[] => {
  const total = summary.selfTimes.reduce((sum, entry) => sum + entry.selfUs, 0);
  return summary.selfTimes.slice(0, count).map((entry) => `${((100 * entry.selfUs) / (total || 1)).toFixed(1).padStart(5)}%  ${entry.key}`);
};
