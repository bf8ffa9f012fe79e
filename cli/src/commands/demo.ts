import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig, readSecret, type HttpResourceConfig, type LoadedConfig, type SecretRef } from '@sluice/config';
import { createLogger } from '@sluice/telemetry';
import { removeRuntimeInfo, writeRuntimeInfo } from '../config-resolution.js';
import { startBillingApi, type DemoApi } from '../demo/billing-api.js';
import { seedPostgres } from '../demo/seed-postgres.js';
import { seedRedis } from '../demo/seed-redis.js';
import { generateShop } from '../demo/shop-data.js';
import { stopWhenLauncherExits } from '../launcher-watch.js';
import { Supervisor } from '../supervisor.js';
import { startDevIdp, type DevIdp } from './dev-idp.js';
import { SluiceError, SluiceErrorCode } from '@sluice/contracts';

export const DEMO_USAGE = `usage: sluice demo --config FILE [--seed-only] [--key-prefix demo:]
  creates (or resets) the demo world on the config's local targets, then runs every service:
  - each postgres resource: its role (password from its credentials) and database, with the
    tables customers and orders full of fake personal data
  - each redis resource: keys under --key-prefix, and an ACL user limited to them
  - each http resource on a loopback target: a demo billing API on that port
  - the first loopback OIDC issuer: \`sluice dev-idp\` on its port, unless one already answers
  secrets the config names by { env: NAME } and the environment lacks are generated once and kept
  in .sluice/demo-secrets.json. --seed-only stops after seeding. Ctrl-C or SIGTERM stops
  everything it started, in order. The services log errors only, unless LOG_LEVEL says otherwise.
`;

export class DemoError extends SluiceError {
  readonly code = SluiceErrorCode.Demo;
  override readonly expose = true;
}

const SECRETS_FILE = join('.sluice', 'demo-secrets.json');
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

const say = (text: string): void => void process.stdout.write(`sluice demo: ${text}\n`);

const envNamesOf = (loaded: LoadedConfig): string[] => {
  const refs: (SecretRef | undefined)[] = [loaded.config.masking.hashKey];
  for (const resource of loaded.config.resources) {
    if (resource.type === 'http') refs.push(...Object.values(resource.credentials.headers));
    else refs.push(resource.credentials.password);
  }
  return [...new Set(refs.flatMap((ref) => (ref && 'env' in ref ? [ref.env] : [])))];
};

/**
 * The demo's secrets are its own: the environment wins, else the value kept from an earlier run,
 * else a new random one, so the role, the ACL user and the API agree with what the proxy presents.
 */
const provideSecrets = (names: readonly string[]): string[] => {
  const kept: Record<string, string> = existsSync(SECRETS_FILE) ? (JSON.parse(readFileSync(SECRETS_FILE, 'utf8')) as Record<string, string>) : {};
  const provided: string[] = [];
  for (const name of names) {
    if (process.env[name] !== undefined) continue;
    kept[name] ??= randomBytes(18).toString('base64url');
    process.env[name] = kept[name];
    provided.push(name);
  }
  if (provided.length > 0) {
    mkdirSync('.sluice', { recursive: true });
    writeFileSync(SECRETS_FILE, `${JSON.stringify(kept, null, 2)}\n`, { mode: 0o600 });
  }
  return provided;
};

const authorizationOf = (resource: HttpResourceConfig, configDir: string): string | undefined => {
  const entry = Object.entries(resource.credentials.headers).find(([name]) => name.toLowerCase() === 'authorization');
  return entry ? readSecret(entry[1], configDir) : undefined;
};

const issuerAnswers = async (issuer: string): Promise<boolean> => {
  try {
    const response = await fetch(`${issuer}/.well-known/openid-configuration`, { signal: AbortSignal.timeout(1_000) });
    await response.body?.cancel();
    return response.ok;
  } catch {
    return false;
  }
};

/** Seeds every target the config names, saying what it did; returns the problems, one per target. */
const seedTargets = async (loaded: LoadedConfig, keyPrefix: string): Promise<string[]> => {
  const shop = generateShop();
  const problems: string[] = [];
  for (const resource of loaded.config.resources) {
    try {
      if (resource.type === 'postgres') {
        const result = await seedPostgres(resource, readSecret(resource.credentials.password, loaded.dir), shop).catch((error: Error) => {
          throw new DemoError(`cannot prepare PostgreSQL at ${resource.target.host}:${resource.target.port} for ${resource.name}: ${error.message} (the demo logs in as $PGUSER, default postgres; set PGPASSWORD if it needs one)`);
        });
        say(`${resource.name}: database ${result.database} (${result.createdDatabase ? 'created' : 'reset'}), role ${result.role}, ${result.customers} customers, ${result.orders} orders`);
      } else if (resource.type === 'redis') {
        const result = await seedRedis(resource, readSecret(resource.credentials.password, loaded.dir), shop, keyPrefix).catch((error: Error) => {
          throw new DemoError(`cannot prepare Redis for ${resource.name}: ${error.message}`);
        });
        say(`${resource.name}: ${result.keys} keys under ${result.keyPrefix}${result.user ? `, ACL user ${result.user} limited to them` : ''}`);
      }
    } catch (error) {
      if (!(error instanceof DemoError)) throw error;
      problems.push(error.message);
    }
  }
  return problems;
};

/** A part of the demo that could not start: said, and the rest goes on (the gateway still runs). */
const warn = (problem: string): void => void process.stderr.write(`sluice demo: ${problem}; going on without it\n`);

/** Everything the demo started, stopped in reverse: the gateway first, then its targets and issuer. */
interface Started {
  supervisor?: Supervisor;
  apis: DemoApi[];
  idp?: DevIdp;
}

const stopAll = async (started: Started): Promise<void> => {
  await started.supervisor?.stop();
  removeRuntimeInfo();
  for (const api of started.apis) await api.close();
  await started.idp?.close();
};

export const run = async (argv: readonly string[]): Promise<number> => {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: { config: { type: 'string', short: 'c' }, 'seed-only': { type: 'boolean' }, 'key-prefix': { type: 'string', default: 'demo:' } },
    }));
  } catch (error) {
    process.stderr.write(`sluice demo: ${(error as Error).message}\n${DEMO_USAGE}`);
    return 2;
  }
  const file = values.config ?? process.env.SLUICE_CONFIG;
  if (!file) {
    process.stderr.write(`sluice demo: --config FILE is required (npm start passes deploy/sluice.example.yaml)\n`);
    return 2;
  }
  // The demo's terminal is for the walkthrough: the services log only errors unless asked for more.
  process.env.LOG_LEVEL ??= 'error';
  const loaded = loadConfig(file);
  const provided = provideSecrets(envNamesOf(loaded));
  if (provided.length > 0) say(`secrets ${provided.join(', ')} set for the demo (kept in ${SECRETS_FILE})`);
  const problems = await seedTargets(loaded, values['key-prefix']);
  if (values['seed-only']) {
    for (const problem of problems) process.stderr.write(`sluice demo: ${problem}\n`);
    return problems.length === 0 ? 0 : 1;
  }
  problems.forEach(warn);

  const started: Started = { apis: [] };
  let stopping: Promise<void> | undefined;
  const finished = new Promise<number>((resolve) => {
    const stop = (reason: string) => {
      if (stopping) return;
      say(`stopping (${reason})`);
      stopping = stopAll(started).then(() => resolve(0));
    };
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => stop(signal));
    process.on('disconnect', () => stop('npm start exited'));
    stopWhenLauncherExits(stop);
  });

  try {
    const shop = generateShop();
    for (const resource of loaded.config.resources) {
      if (resource.type !== 'http') continue;
      const target = new URL(resource.target.url);
      if (!LOOPBACK.has(target.hostname)) continue;
      const port = Number(target.port || 80);
      const api = await startBillingApi(target.hostname.replace(/^\[|\]$/g, ''), port, authorizationOf(resource, loaded.dir), shop).catch((error: NodeJS.ErrnoException) => {
        warn(`cannot serve the demo API for ${resource.name} on ${target.host}: ${error.code === 'EADDRINUSE' ? 'the port is in use' : error.message}`);
        return undefined;
      });
      if (!api) continue;
      started.apis.push(api);
      say(`${resource.name}: demo billing API on ${api.url} (try GET /invoices)`);
    }
    const oidc = loaded.config.identity.oidc.find((issuer) => LOOPBACK.has(new URL(issuer.issuer).hostname));
    if (oidc && !(await issuerAnswers(oidc.issuer))) {
      const audience = Array.isArray(oidc.audience) ? oidc.audience[0]! : oidc.audience;
      started.idp = await startDevIdp(Number(new URL(oidc.issuer).port || 80), audience).catch((error: Error) => {
        warn(`cannot run the dev issuer for ${oidc.issuer}: ${error.message}`);
        return undefined;
      });
      if (started.idp) say(`dev issuer on ${started.idp.issuer}: mint tokens with npx sluice token --sub agent-1 --groups support-agents`);
    } else if (oidc) say(`using the issuer already answering on ${oidc.issuer}`);
    if (!stopping) {
      started.supervisor = new Supervisor(loaded, createLogger('supervisor'));
      await started.supervisor.start();
      writeRuntimeInfo({ configPath: loaded.path, pid: process.pid, startedAt: new Date().toISOString() });
      void announceWhenReady(started.supervisor, loaded, () => stopping !== undefined);
    }
  } catch (error) {
    await stopAll(started);
    process.stderr.write(`sluice demo: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
  return finished;
};

const announceWhenReady = async (supervisor: Supervisor, loaded: LoadedConfig, stopped: () => boolean): Promise<void> => {
  while (!supervisor.ready) {
    if (stopped()) return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  say(`ready on ${loaded.config.resources.map((resource) => `${resource.name} ${resource.listen}`).join(', ')}; the README's walkthrough starts here. Ctrl-C stops it all.`);
  const console = loaded.config.services.console;
  if (console) say(`web console on ${console.publicUrl ?? `http://${console.http}`} (sign in with any user name; groups dba to approve, compliance to replay)`);
};
