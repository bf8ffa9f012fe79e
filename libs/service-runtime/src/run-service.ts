import { parseArgs } from 'node:util';
import { ConfigInvalidError } from '@sluice/contracts';
import { loadConfig, type LoadedConfig, type SluiceConfig } from '@sluice/config';
import { createLogger, startTracing, type Logger } from '@sluice/telemetry';
import { HEALTH_LISTEN_ENV, startHealthEndpoint, type HealthEndpoint } from './health-endpoint.js';

export interface ServiceContext {
  readonly loaded: LoadedConfig;
  readonly config: SluiceConfig;
  readonly logger: Logger;
}

export interface RunningService {
  stop(): Promise<void>;
  reload?(): Promise<void>;
}

/** Message a service sends its supervisor (`sluice up`) over the IPC channel. */
export type SupervisorMessage = { readonly type: 'ready'; readonly service: string } | { readonly type: 'fatal'; readonly service: string; readonly reason: string };

/** Prints a config problem as one line, no stack, and exits non-zero. */
export const exitOnConfigError = (error: unknown): never => {
  if (error instanceof ConfigInvalidError) {
    process.stderr.write(`sluice: invalid config: ${error.message}\n`);
    process.exit(2);
  }
  throw error;
};

/**
 * Runs one Sluice service process: `--config FILE`, config validation, ordered shutdown on
 * SIGINT/SIGTERM, reload on SIGHUP, readiness reported to the supervisor.
 */
export const runService = (name: string, start: (context: ServiceContext) => Promise<RunningService>): void => {
  const { values } = parseArgs({ options: { config: { type: 'string', short: 'c' } }, strict: false, allowPositionals: true });
  const file = (values.config as string | undefined) ?? process.env.SLUICE_CONFIG;
  if (!file) {
    process.stderr.write(`sluice ${name}: --config FILE is required\n`);
    process.exit(2);
  }
  let loaded: LoadedConfig;
  try {
    loaded = loadConfig(file);
  } catch (error) {
    exitOnConfigError(error);
    return;
  }
  const logger = createLogger(name);
  const tracing = startTracing(name);
  let running: RunningService | undefined;
  let stopping = false;
  let health: HealthEndpoint | undefined;

  const shutdown = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    const forceExit = setTimeout(() => {
      logger.error('shutdown took too long; exiting');
      process.exit(1);
    }, 10_000);
    forceExit.unref();
    try {
      await running?.stop();
      await health?.close();
      await tracing.shutdown();
      logger.info('stopped');
      process.exit(0);
    } catch (error) {
      logger.error({ err: error }, 'shutdown failed');
      process.exit(1);
    }
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGHUP', () => {
    if (!running?.reload) return;
    logger.info('reloading');
    running.reload().catch((error: unknown) => logger.error({ err: error }, 'reload failed; keeping the previous config'));
  });
  process.on('disconnect', () => void shutdown('supervisor gone'));

  const healthListen = process.env[HEALTH_LISTEN_ENV];
  const healthStarted = healthListen
    ? startHealthEndpoint(name, healthListen).then((endpoint) => {
        health = endpoint;
        return endpoint;
      })
    : Promise.resolve(undefined);
  healthStarted
    .then(() => start({ loaded, config: loaded.config, logger }))
    .then((service) => {
      running = service;
      health?.markReady();
      logger.info('ready');
      const message: SupervisorMessage = { type: 'ready', service: name };
      process.send?.(message);
    })
    .catch((error: unknown) => {
      if (error instanceof ConfigInvalidError) exitOnConfigError(error);
      logger.fatal({ err: error }, 'failed to start');
      const reason = error instanceof Error ? error.message : String(error);
      const message: SupervisorMessage = { type: 'fatal', service: name, reason };
      process.send?.(message);
      process.stderr.write(`sluice ${name}: failed to start: ${reason}\n`);
      process.exit(1);
    });
};
