import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism, release, totalmem } from 'node:os';

export interface Machine {
  readonly date: string;
  readonly nproc: number;
  readonly cpuModel: string;
  readonly memoryGiB: number;
  readonly kernel: string;
  readonly os: string;
  readonly versions: Readonly<Record<string, string>>;
}

const firstLine = (command: string, args: readonly string[]): string => {
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: 10_000 });
  const text = `${result.stdout ?? ''}${result.stderr ?? ''}`.trim().split('\n')[0] ?? '';
  return result.error ? 'not installed' : text;
};

const readOr = (path: string, fallback: string): string => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return fallback;
  }
};

/** The first dotted version number in a tool's banner, or the banner itself. */
export const versionOf = (banner: string): string => /\d+\.\d+(?:\.\d+)?/.exec(banner)?.[0] ?? banner;

/** What the figures were measured on: they mean little without it. */
export const describeMachine = (serverVersions: Readonly<Record<string, string>> = {}): Machine => {
  const cpuModel = /^model name\s*:\s*(.+)$/m.exec(readOr('/proc/cpuinfo', ''))?.[1]?.trim() ?? 'unknown';
  const os = /^PRETTY_NAME="?([^"\n]+)"?$/m.exec(readOr('/etc/os-release', ''))?.[1] ?? 'unknown';
  const nproc = Number.parseInt(firstLine('nproc', []), 10);
  return {
    date: new Date().toISOString(),
    nproc: Number.isFinite(nproc) ? nproc : availableParallelism(),
    cpuModel,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: release(),
    os,
    versions: Object.fromEntries(
      Object.entries({
        Node: process.version,
        PostgreSQL: serverVersions.postgresql ?? 'unknown',
        Redis: serverVersions.redis ?? 'unknown',
        'nats-server': firstLine('nats-server', ['--version']),
        pgbench: firstLine('pgbench', ['--version']),
        pgbouncer: firstLine('/usr/sbin/pgbouncer', ['--version']),
        'redis-benchmark': firstLine('redis-benchmark', ['--version']),
        wrk: firstLine('wrk', ['--version']),
      }).map(([name, banner]) => [name, versionOf(banner)]),
    ),
  };
};
