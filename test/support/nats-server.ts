import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as connectTcp } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';

export const NATS_SERVER_BIN = process.env.NATS_SERVER_BIN ?? '/usr/sbin/nats-server';

export interface SecuredNats {
  readonly url: string;
  readonly dir: string;
  readonly output: () => string;
  stop(): Promise<void>;
}

const accepting = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = connectTcp(port, '127.0.0.1');
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });

/** One nats-server process, started on a config file and listening for clients on `port`. */
export interface NatsProcess {
  readonly output: () => string;
  readonly running: () => boolean;
  /** SIGTERM (SIGKILL after 5 s), or SIGKILL at once: resolves when the process is gone. */
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
}

export const spawnNatsServer = async (configFile: string, port: number): Promise<NatsProcess> => {
  let output = '';
  const child: ChildProcess = spawn(NATS_SERVER_BIN, ['-c', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 15_000;
  while (!(await accepting(port))) {
    if (child.exitCode !== null) throw new Error(`nats-server exited with ${child.exitCode}:\n${output}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`nats-server did not listen in time:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    output: () => output,
    running: () => child.exitCode === null && child.signalCode === null,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
};

/**
 * A real nats-server of its own on a free loopback port, JetStream stored in a temp folder, with
 * `configText` (e.g. an `authorization` block) added to its configuration. Stopped and removed by `stop`.
 */
export const startSecuredNats = async (configText: string): Promise<SecuredNats> => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-nats-'));
  const port = await freePort();
  const file = join(dir, 'nats.conf');
  writeFileSync(file, `listen: 127.0.0.1:${port}\njetstream { store_dir: ${JSON.stringify(join(dir, 'js'))} }\n${configText}`);
  const server = await spawnNatsServer(file, port).catch((error: unknown) => {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  });
  return {
    url: `nats://127.0.0.1:${port}`,
    dir,
    output: server.output,
    async stop() {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
};
