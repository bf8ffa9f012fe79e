import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

/** The shells npm runs a script or a bin through (its `script-shell`, `sh` by default). */
const SHELLS = new Set(['sh', 'dash', 'bash', 'zsh', 'ash', 'ksh', 'busybox']);

interface ProcessInfo {
  readonly ppid: number;
  readonly name: string;
}

/** A process's parent and command name: from /proc on Linux, else from ps; undefined if neither tells. */
const processInfo = (pid: number): ProcessInfo | undefined => {
  try {
    // "pid (comm) state ppid …"; comm may itself hold spaces and parentheses.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = stat.lastIndexOf(')');
    return { name: stat.slice(stat.indexOf('(') + 1, close), ppid: Number(stat.slice(close + 2).split(' ')[1]) };
  } catch {
    // Not Linux (or the process is gone): ask ps, once.
  }
  try {
    const [ppid, ...command] = execFileSync('ps', ['-o', 'ppid=,comm=', '-p', String(pid)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .trim()
      .split(/\s+/);
    return { ppid: Number(ppid), name: basename(command.join(' ')) };
  } catch {
    return undefined;
  }
};

/**
 * The process that launched us: npm runs a script or a bin through a shell (npm → sh → node), and
 * when npm is killed that shell stays, waiting for us; so the launcher is the first ancestor that
 * is not such a shell.
 */
export const launcherOf = (parent: number, info: (pid: number) => ProcessInfo | undefined = processInfo): number => {
  let launcher = parent;
  for (let hops = 0; hops < 2; hops++) {
    const found = info(launcher);
    if (found === undefined || !SHELLS.has(found.name) || found.ppid <= 1) break;
    launcher = found.ppid;
  }
  return launcher;
};

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, under another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/**
 * `npx sluice …` and `npm start` run us under npm (npm → sh → node). Killing that npm process does
 * not reach us: we would keep running, orphaned, with every port bound. Under npm (which sets
 * npm_command) we therefore treat the disappearance of our parent, or of npm above the shell
 * between us, as a stop request. Started any other way (a shell, systemd, a test), nothing
 * changes: a background process may outlive its shell.
 */
export const stopWhenLauncherExits = (stop: (reason: string) => void, intervalMs = 1_000): void => {
  if (!process.env.npm_command) return;
  const parent = process.ppid;
  const launcher = launcherOf(parent);
  const timer = setInterval(() => {
    if (process.ppid === parent && isAlive(launcher)) return;
    clearInterval(timer);
    stop('launcher exited');
  }, intervalMs);
  timer.unref();
};
