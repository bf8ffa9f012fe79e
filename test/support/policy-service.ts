import { rmSync } from 'node:fs';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import type { RunningPolicyService } from '@sluice/policy';

/**
 * Stops what a spec started to run a real policy service: the proxy's port to it, the service,
 * its test stream on the bus (and the bus connection), and the directory its config file is in.
 * Each may be missing when the spec's setup failed part-way.
 */
export const stopTestPolicyService = async (parts: {
  port?: { close(): void } | undefined;
  service?: RunningPolicyService | undefined;
  nc?: NatsConnection | undefined;
  stream: string;
  dir: string;
}): Promise<void> => {
  parts.port?.close();
  await parts.service?.stop().catch(() => undefined);
  if (parts.nc) {
    const jsm = await jetstreamManager(parts.nc);
    await jsm.streams.delete(parts.stream).catch(() => undefined);
    await parts.nc.close();
  }
  rmSync(parts.dir, { recursive: true, force: true });
};
