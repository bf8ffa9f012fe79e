import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { loadConfig } from '@sluice/config';
import { startPolicyService, type RunningPolicyService } from '@sluice/policy';
import type { Logger } from '@sluice/service-runtime';
import { createPolicyPort } from '../../services/proxy/src/ports/policy-client.js';
import { waitFor } from './postgres-proxy-harness.js';

/**
 * Starts a real policy service on a config file written to `dir` (its own stream and subjects on
 * the bus), and the proxy's port to it, caching as in production; resolves once the port has the
 * policy. Stop it all with stopTestPolicyService.
 */
export const startTestPolicyService = async (options: {
  readonly dir: string;
  readonly natsUrl: string;
  readonly stream: string;
  readonly subjectPrefix: string;
  readonly config: Record<string, unknown>;
  readonly logger: Logger;
}): Promise<{ service: RunningPolicyService; port: ReturnType<typeof createPolicyPort>; nc: NatsConnection }> => {
  const file = join(options.dir, 'sluice.yaml');
  writeFileSync(
    file,
    stringify({ bus: { url: options.natsUrl, stream: options.stream, subjectPrefix: options.subjectPrefix }, services: { policy: { grpc: '127.0.0.1:0' } }, ...options.config }),
  );
  const loaded = loadConfig(file);
  const service = await startPolicyService({ loaded, config: loaded.config, logger: options.logger });
  const nc = await connect({ servers: options.natsUrl });
  const port = createPolicyPort(service.address, { logger: options.logger });
  await waitFor(() => port.stats().version !== undefined);
  return { service, port, nc };
};

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
