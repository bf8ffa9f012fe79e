import { ConfigInvalidError } from '@sluice/contracts';
import { KEYS_DIR_ENV, loadConfig, type LoadedConfig } from '@sluice/config';
import { createLogger } from '@sluice/telemetry';
import { parseArgs } from 'node:util';
import { removeRuntimeInfo, writeRuntimeInfo } from './config-resolution.js';
import { SERVICES, serviceEntry, Supervisor, type ServiceName } from './supervisor.js';

const USAGE = `usage: sluice <command> [options]

  up --config FILE                     run every service (proxy, policy, masking, approval, audit)
  proxy|policy|masking|approval|audit --config FILE
                                       run one service
  policy explain|test|reload …         explain a decision, run a decision table, reload rules
  audit verify [--session ID] [--token T]
                                       check every event chain (exit 1 names the first broken event)
  audit query [--subject S] [--resource R] [--since 1h] [--token T]
  replay <session-id> [--speed N] [--token T]
                                       print a session's commands, decisions and returned data
                                       (--token or $SLUICE_TOKEN: an audit reader's token)
  approvals list | approve <id> | deny <id> [--reason R] [--token T]
  keys [--out DIR] [--force]           make each service's Ed25519 key for signing its events
  dev-idp [--port 9000]                a local OIDC issuer for trying Sluice out
  token --sub S [--groups a,b] [--issuer URL]
                                       mint a token from the local dev issuer
`;

const fail = (message: string, code = 2): number => {
  process.stderr.write(`sluice: ${message}\n`);
  return code;
};

const loadOrExit = (argv: readonly string[]): LoadedConfig | number => {
  const { values } = parseArgs({ args: [...argv], options: { config: { type: 'string', short: 'c' } }, strict: false, allowPositionals: true });
  const file = (values.config as string | undefined) ?? process.env.SLUICE_CONFIG;
  if (!file) return fail('--config FILE is required');
  try {
    return loadConfig(file);
  } catch (error) {
    if (error instanceof ConfigInvalidError) return fail(`invalid config: ${error.message}`);
    throw error;
  }
};

const up = async (argv: readonly string[]): Promise<number> => {
  const loaded = loadOrExit(argv);
  if (typeof loaded === 'number') return loaded;
  const logger = createLogger('supervisor');
  const supervisor = new Supervisor(loaded, logger);
  try {
    await supervisor.start();
  } catch (error) {
    return fail(`cannot start: ${(error as Error).message}`, 1);
  }
  writeRuntimeInfo({ configPath: loaded.path, pid: process.pid, startedAt: new Date().toISOString() });
  return new Promise<number>((resolve) => {
    const shutdown = (signal: string) => {
      logger.info({ signal }, 'shutting down');
      void supervisor.stop().then(() => {
        removeRuntimeInfo();
        resolve(0);
      });
    };
    process.once('SIGINT', () => shutdown('SIGINT'));
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.on('SIGHUP', () => {
      logger.info('reloading every service');
      supervisor.reload();
    });
  });
};

/** Runs one service in this process, exactly as `sluice up` would run it in a child. */
const runOneService = async (name: ServiceName, argv: readonly string[]): Promise<number | undefined> => {
  const loaded = loadOrExit(argv);
  if (typeof loaded === 'number') return loaded;
  // The same keys folder `sluice up` would hand it: services started one by one from one folder
  // sign, verify and log in to NATS with one set of keys.
  const { provideDeploymentKeys } = await import('./commands/keys.js');
  process.env[KEYS_DIR_ENV] = provideDeploymentKeys(loaded.config).dir;
  process.argv = [process.argv[0]!, serviceEntry(name), '--config', loaded.path];
  await import(serviceEntry(name));
  return undefined;
};

const SUBCOMMANDS: Record<string, readonly string[]> = {
  policy: ['explain', 'test', 'reload'],
  audit: ['verify', 'query'],
};

const main = async (argv: readonly string[]): Promise<number | undefined> => {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE);
    return command ? 0 : 2;
  }
  if (command === 'up') return up(rest);
  if (command === 'policy' && SUBCOMMANDS.policy!.includes(rest[0] ?? '')) return (await import('./commands/policy.js')).run(rest);
  if (command === 'audit' && SUBCOMMANDS.audit!.includes(rest[0] ?? '')) return (await import('./commands/audit.js')).run(rest);
  if ((SERVICES as readonly string[]).includes(command)) return runOneService(command as ServiceName, rest);
  if (command === 'replay') return (await import('./commands/replay.js')).run(rest);
  if (command === 'approvals' || command === 'approve' || command === 'deny') return (await import('./commands/approvals.js')).run(argv);
  if (command === 'keys') return (await import('./commands/keys.js')).run(rest);
  if (command === 'dev-idp' || command === 'token') return (await import('./commands/dev-idp.js')).run(argv);
  process.stderr.write(USAGE);
  return fail(`unknown command "${command}"`);
};

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== undefined) process.exit(code);
  },
  (error: unknown) => {
    if (error instanceof ConfigInvalidError) process.exit(fail(`invalid config: ${error.message}`));
    process.stderr.write(`sluice: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
