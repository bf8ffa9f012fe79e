import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { spawnNatsServer, type NatsProcess } from './nats-server.js';
import { freePorts } from './ports.js';
import { waitUntil } from './wait.js';

export interface NatsCluster {
  /** Every node's client URL. */
  readonly urls: readonly string[];
  /** The same, comma-separated, as `bus.url` takes them. */
  readonly url: string;
  readonly dir: string;
  output(node: number): string;
  /** SIGKILL one node (its store stays, for `restart`). */
  kill(node: number): Promise<void>;
  /** Starts a killed node again on its ports and store. */
  restart(node: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * `nodes` nats-server processes (default three) in one JetStream cluster on loopback: free ports
 * for clients and routes, each node's store under one temp folder, `configText` (an
 * `authorization` block, say) added to every node. Resolves once the cluster has a JetStream
 * meta leader (a stream can be created); `stop` ends every node and removes the folder.
 */
export const startNatsCluster = async (options: { nodes?: number; configText?: string } = {}): Promise<NatsCluster> => {
  const count = options.nodes ?? 3;
  const dir = mkdtempSync(join(tmpdir(), 'sluice-nats-cluster-'));
  const ports = await freePorts(count * 2);
  const clientPort = (node: number): number => ports[node]!;
  const routePort = (node: number): number => ports[count + node]!;
  const name = `sluice-test-${dir.slice(-6).replace(/[^A-Za-z0-9]/g, '')}`;
  const configFile = (node: number): string => {
    const store = join(dir, `n${node}`);
    mkdirSync(store, { recursive: true });
    const file = join(dir, `n${node}.conf`);
    const routes = Array.from({ length: count }, (_, other) => `nats://127.0.0.1:${routePort(other)}`).filter((_, other) => other !== node);
    writeFileSync(
      file,
      [
        `server_name: n${node}`,
        `listen: 127.0.0.1:${clientPort(node)}`,
        `jetstream { store_dir: ${JSON.stringify(store)} }`,
        `cluster { name: ${name}, listen: 127.0.0.1:${routePort(node)}, routes: [${routes.join(', ')}] }`,
        options.configText ?? '',
      ].join('\n'),
    );
    return file;
  };
  const nodes: Array<NatsProcess | undefined> = [];
  const stopAll = async (): Promise<void> => {
    await Promise.all(nodes.map((node) => node?.stop() ?? Promise.resolve()));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let node = 0; node < count; node += 1) nodes.push(await spawnNatsServer(configFile(node), clientPort(node)));
  } catch (error) {
    await stopAll();
    throw error;
  }
  const urls = Array.from({ length: count }, (_, node) => `nats://127.0.0.1:${clientPort(node)}`);
  return {
    urls,
    url: urls.join(','),
    dir,
    output: (node) => nodes[node]?.output() ?? '',
    async kill(node) {
      await nodes[node]?.stop('SIGKILL');
    },
    async restart(node) {
      if (nodes[node]?.running()) return;
      nodes[node] = await spawnNatsServer(join(dir, `n${node}.conf`), clientPort(node));
    },
    stop: stopAll,
  };
};

/**
 * Waits until the cluster's JetStream answers (a meta leader is elected) through `url`, logging in
 * with `connectOptions` when the nodes ask for it.
 */
export const waitForJetStream = async (url: string, connectOptions: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<void> => {
  const nc = await connect({ servers: url.split(','), ...connectOptions });
  try {
    // checkAPI off: the manager's own first request would fail before a leader is elected.
    const jsm = await jetstreamManager(nc, { checkAPI: false });
    await waitUntil(() => jsm.getAccountInfo().then(() => true, () => false), timeoutMs, 'a JetStream meta leader');
  } finally {
    await nc.close();
  }
};
