import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { stringify } from 'yaml';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { loadConfig } from '@sluice/config';
import { startPolicyService, type RunningPolicyService } from '@sluice/policy';
import { createLogger, type Logger } from '@sluice/service-runtime';
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

/**
 * A real policy service (and the proxy's caching port to it) for the whole spec: started before
 * its tests, on a stream, subjects and directory of its own, and stopped after them. Register it
 * before the front doors that ask it, so that it starts first and stops last.
 */
export const useTestPolicyService = (
  name: string,
  config: Record<string, unknown>,
): { readonly port: ReturnType<typeof createPolicyPort>; readonly service: RunningPolicyService; readonly configFile: string } => {
  const run = randomBytes(4).toString('hex');
  const stream = `SLUICE_TEST_${name.toUpperCase().replaceAll('-', '_')}_${run}`;
  const dir = mkdtempSync(join(tmpdir(), `sluice-${name}-`));
  const natsUrl = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
  let started: Partial<Awaited<ReturnType<typeof startTestPolicyService>>> = {};
  beforeAll(async () => {
    started = await startTestPolicyService({ dir, natsUrl, stream, subjectPrefix: `sluicetest.${name.replaceAll('-', '')}${run}`, config, logger: createLogger(`${name}-test`) });
  });
  afterAll(() => stopTestPolicyService({ ...started, stream, dir }));
  const running = (): Awaited<ReturnType<typeof startTestPolicyService>> => {
    if (!started.port || !started.service || !started.nc) throw new Error(`the ${name} policy service has not started`);
    return started as Awaited<ReturnType<typeof startTestPolicyService>>;
  };
  return {
    /** The config file the service loaded (a spec may rewrite it and reload). */
    configFile: join(dir, 'sluice.yaml'),
    get port() {
      return running().port;
    },
    get service() {
      return running().service;
    },
  };
};
