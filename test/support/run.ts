import { execFile } from 'node:child_process';

export interface CommandResult {
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs a client program (psql, redis-cli, the sluice CLI) without blocking this process's event
 * loop: the test process also hosts the IdP, webhook sinks and targets those programs reach.
 */
export const runCommand = (
  file: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string; timeoutMs?: number } = {},
): Promise<CommandResult> =>
  new Promise((resolve) => {
    const child = execFile(file, [...args], { env: options.env ?? process.env, cwd: options.cwd, timeout: options.timeoutMs ?? 60_000, encoding: 'utf8' }, (error, stdout, stderr) => {
      const status = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolve({ status, stdout, stderr });
    });
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
