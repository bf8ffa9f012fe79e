import { ConfigInvalidError } from '@sluice/contracts';
import { KEYS_DIR_ENV, loadConfig, type LoadedConfig } from '@sluice/config';
import { createLogger } from '@sluice/telemetry';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { NoDeploymentError, removeRuntimeInfo, writeRuntimeInfo } from './config-resolution.js';
import { stopWhenLauncherExits } from './launcher-watch.js';
import { SERVICES, serviceEntry, Supervisor, type ServiceName } from './supervisor.js';
import { firstTakenAddress } from './listen-check.js';

const USAGE = `usage: sluice <command> [options]      (sluice <command> --help for one command)

  up --config FILE                     run every service (proxy, policy, masking, approval, audit; console when configured)
  demo --config FILE                   seed the demo world on the config's targets, then run it all (npm start)
  proxy|policy|masking|approval|audit|console --config FILE
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
  --version                            print the version
`;

const UP_USAGE = `usage: sluice up --config FILE      (or $SLUICE_CONFIG)
  runs every service (audit, policy, masking, approval, proxy) as child processes, restarts one
  that dies, serves /readyz on admin.listen; SIGHUP reloads, SIGINT/SIGTERM stop them in order
`;

const serviceUsage = (name: string): string => `usage: sluice ${name} --config FILE      (or $SLUICE_CONFIG)
  runs the ${name} service alone, in this process
`;

const version = (): string => {
  const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return `sluice ${manifest.version} (node ${process.versions.node})\n`;
};

/** A \`--help\` or \`-h\` anywhere before \`--\` asks for the command's usage, whatever else is there. */
const wantsHelp = (args: readonly string[]): boolean => {
  const end = args.indexOf('--');
  return (end === -1 ? args : args.slice(0, end)).some((arg) => arg === '--help' || arg === '-h');
};

/**
 * The usage text of a command, loaded only when asked for. `policy` and `audit` are services and
 * command groups: `sluice policy explain --help` is about the subcommand alone, `sluice policy
 * --help` about both.
 */
const usageOf = async (command: string, subcommand: string | undefined): Promise<string | undefined> => {
  const alsoTheService = subcommand === undefined ? serviceUsage(command) : '';
  switch (command) {
    case 'up':
      return UP_USAGE;
    case 'demo':
      return (await import('./commands/demo.js')).DEMO_USAGE;
    case 'policy':
      return `${(await import('./commands/policy.js')).USAGE}${alsoTheService}`;
    case 'audit':
      return `${(await import('./commands/audit.js')).USAGE}${alsoTheService}`;
    case 'replay':
      return (await import('./commands/replay.js')).USAGE;
    case 'approvals':
    case 'approve':
    case 'deny':
      return (await import('./commands/approvals.js')).USAGE;
    case 'dev-idp':
      return (await import('./commands/dev-idp.js')).DEV_IDP_USAGE;
    case 'token':
      return (await import('./commands/dev-idp.js')).TOKEN_USAGE;
    default:
      return (SERVICES as readonly string[]).includes(command) ? serviceUsage(command) : undefined;
  }
};

const fail = (message: string, code = 2): number => {
  process.stderr.write(`sluice: ${message}\n`);
  return code;
};

const loadOrExit = (argv: readonly string[]): LoadedConfig | number => {
  const { values } = parseArgs({ args: [...argv], options: { config: { type: 'string', short: 'c' } }, strict: false, allowPositionals: true });
  const file = (values.config as string | undefined) ?? process.env.SLUICE_CONFIG;
  if (!file) return fail('--config FILE is required (or set SLUICE_CONFIG); deploy/sluice.example.yaml is a start');
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
  const taken = await firstTakenAddress(loaded.config);
  if (taken !== undefined) return fail(taken, 1);
  const logger = createLogger('supervisor');
  const supervisor = new Supervisor(loaded, logger);
  try {
    await supervisor.start();
  } catch (error) {
    return fail(`cannot start: ${(error as Error).message}`, 1);
  }
  writeRuntimeInfo({ configPath: loaded.path, pid: process.pid, startedAt: new Date().toISOString() });
  return new Promise<number>((resolve) => {
    let stopping = false;
    // Ctrl-C reaches us twice under a launcher (from the terminal and forwarded): stop once, and
    // never let the second signal's default action kill us before the services are down.
    const shutdown = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'shutting down');
      void supervisor.stop().then(() => {
        removeRuntimeInfo();
        resolve(0);
      });
    };
    process.on('SIGINT', () => shutdown('SIGINT'));
    process.on('SIGTERM', () => shutdown('SIGTERM'));
    stopWhenLauncherExits(shutdown);
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

const main = async (argv: readonly string[]): Promise<number | undefined> => {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    if (command) process.stdout.write(USAGE);
    else process.stderr.write(USAGE);
    return command ? 0 : 2;
  }
  if (command === '--version' || command === '-V' || command === 'version') {
    process.stdout.write(version());
    return 0;
  }
  // `policy` and `audit` are services and command groups: a first word that is not an option is a
  // subcommand (a misspelt one gets the group's usage, not a service start-up).
  const subcommand = rest[0] !== undefined && !rest[0].startsWith('-') ? rest[0] : undefined;
  if (wantsHelp(rest)) {
    const usage = await usageOf(command, subcommand);
    if (usage !== undefined) {
      process.stdout.write(usage);
      return 0;
    }
  }
  if (command === 'up') return up(rest);
  if (command === 'demo') return (await import('./commands/demo.js')).run(rest);
  if (command === 'policy' && subcommand !== undefined) return (await import('./commands/policy.js')).run(rest);
  if (command === 'audit' && subcommand !== undefined) return (await import('./commands/audit.js')).run(rest);
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
    if (error instanceof NoDeploymentError) process.exit(fail(error.message, 1));
    process.stderr.write(`sluice: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
