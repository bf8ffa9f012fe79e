import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { freePorts } from './ports.js';
import { runCommand, type CommandResult } from './run.js';

export const REPO_ROOT = new URL('../../', import.meta.url).pathname;
export const SLUICE_BIN = join(REPO_ROOT, 'cli/bin/sluice.js');

export interface ServicePorts {
  readonly admin: number;
  readonly policy: number;
  readonly masking: number;
  readonly approvalGrpc: number;
  readonly approvalHttp: number;
  readonly auditHttp: number;
}

export interface RunningSluice {
  readonly dir: string;
  readonly configPath: string;
  readonly ports: ServicePorts;
  readonly output: () => string;
  /** Runs the CLI (`npx sluice …`) in the deployment's folder. */
  cli(args: readonly string[], env?: Record<string, string>): Promise<CommandResult>;
  stop(): Promise<void>;
}

/** Loopback addresses for every service of one test deployment. */
export const allocateServicePorts = async (): Promise<ServicePorts> => {
  const [admin, policy, masking, approvalGrpc, approvalHttp, auditHttp] = await freePorts(6);
  return { admin: admin!, policy: policy!, masking: masking!, approvalGrpc: approvalGrpc!, approvalHttp: approvalHttp!, auditHttp: auditHttp! };
};

export const servicesSection = (ports: ServicePorts) => ({
  policy: { grpc: `127.0.0.1:${ports.policy}` },
  masking: { grpc: `127.0.0.1:${ports.masking}` },
  approval: { grpc: `127.0.0.1:${ports.approvalGrpc}`, http: `127.0.0.1:${ports.approvalHttp}`, publicUrl: `http://127.0.0.1:${ports.approvalHttp}` },
  audit: { http: `127.0.0.1:${ports.auditHttp}` },
});

/**
 * Starts `sluice up` (the built CLI, as a user would) on a config in a fresh folder and waits
 * for /readyz. `config` gets admin and services filled in unless it sets them.
 */
export const startSluice = async (
  config: Record<string, unknown>,
  options: { env?: Record<string, string>; ports?: ServicePorts; readyTimeoutMs?: number; nodeArgs?: readonly string[] } = {},
): Promise<RunningSluice> => {
  const ports = options.ports ?? (await allocateServicePorts());
  const dir = mkdtempSync(join(tmpdir(), 'sluice-e2e-'));
  const configPath = join(dir, 'sluice.yaml');
  writeFileSync(configPath, stringify({ admin: { listen: `127.0.0.1:${ports.admin}` }, services: servicesSection(ports), ...config }));
  let output = '';
  const env = { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL === 'silent' ? 'warn' : (process.env.LOG_LEVEL ?? 'warn'), ...options.env };
  const child: ChildProcess = spawn(process.execPath, [...(options.nodeArgs ?? []), SLUICE_BIN, 'up', '--config', configPath], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const deadline = Date.now() + (options.readyTimeoutMs ?? 60_000);
  for (;;) {
    if (child.exitCode !== null) throw new Error(`sluice up exited with ${child.exitCode}:\n${output}`);
    try {
      const response = await fetch(`http://127.0.0.1:${ports.admin}/readyz`);
      if (response.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`sluice up was not ready in time:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }

  return {
    dir,
    configPath,
    ports,
    output: () => output,
    cli(args, extraEnv) {
      return runCommand(process.execPath, [SLUICE_BIN, ...args], { cwd: dir, env: { ...env, ...extraEnv } });
    },
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
};
