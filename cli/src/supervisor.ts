import { fork, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { setPriority } from 'node:os';
import { fileURLToPath } from 'node:url';
import { apiBaseUrl, parseAddress, DEFAULT_AUDIT_NICENESS, KEYS_DIR_ENV, type LoadedConfig } from '@sluice/config';
import { provideDeploymentKeys } from './commands/keys.js';
import { Backoff, type SupervisorMessage } from '@sluice/service-runtime';
import type { Logger } from '@sluice/telemetry';

/** Start order; shutdown runs it backwards so the proxy stops taking sessions first and audit drains last. */
export const SERVICES = ['audit', 'policy', 'masking', 'approval', 'proxy', 'console'] as const;
export type ServiceName = (typeof SERVICES)[number];

/** The services one config runs: the console only when `services.console` is configured. */
export const servicesFor = (config: LoadedConfig['config']): readonly ServiceName[] =>
  SERVICES.filter((name) => name !== 'console' || config.services.console !== undefined);

export const serviceEntry = (name: ServiceName): string =>
  fileURLToPath(new URL(`../../services/${name}/dist/main.js`, import.meta.url));

/**
 * V8 flags of the services on the data path. Their garbage is short-lived, but a batch of events
 * lives until the bus or the store acknowledges it: in a young generation twice V8's default size
 * it dies there instead of being promoted. Measured under pgbench -S -c 8 (bench/pgbench-cpu.ts,
 * three alternations): the audit service 34 -> 25 µs per statement, the proxy 82 -> 80.
 */
export const SERVICE_V8_FLAGS: Readonly<Partial<Record<ServiceName, readonly string[]>>> = {
  proxy: ['--max-semi-space-size=32'],
  audit: ['--max-semi-space-size=32'],
};

const TELEMETRY_PRELOAD = fileURLToPath(new URL('../../libs/telemetry/dist/preload.js', import.meta.url));

/**
 * Gives every thread of a process the niceness (Linux keeps one per thread; a thread started later
 * takes its creator's). Returns the error that refused it, if any.
 */
const setProcessNiceness = (pid: number, niceness: number): Error | undefined => {
  let threads: number[];
  try {
    threads = readdirSync(`/proc/${pid}/task`).map(Number);
  } catch {
    threads = [pid];
  }
  try {
    for (const thread of threads) setPriority(thread, niceness);
    return undefined;
  } catch (error) {
    return error as Error;
  }
};

/** What runService exits with for an invalid config (exitOnConfigError). */
const CONFIG_INVALID_EXIT_CODE = 2;

type ServiceState = 'starting' | 'ready' | 'restarting' | 'stopped';

interface Supervised {
  readonly name: ServiceName;
  child: ChildProcess | undefined;
  state: ServiceState;
  restarts: number;
  readonly backoff: Backoff;
  lastReason: string | undefined;
  restartTimer: NodeJS.Timeout | undefined;
}

const MAX_BACKOFF_MS = 10_000;

/**
 * Runs the five services as separate processes, restarts one that dies (with backoff, logged),
 * serves /readyz on admin.listen, and stops them in order.
 */
export class Supervisor {
  readonly #services = new Map<ServiceName, Supervised>();
  #admin: Server | undefined;
  #stopping = false;
  /** Environment every child gets on top of ours (the generated provenance keys' folder). */
  #childEnv: Record<string, string> = {};

  constructor(
    private readonly loaded: LoadedConfig,
    private readonly logger: Logger,
  ) {}

  get ready(): boolean {
    return [...this.#services.values()].every((service) => service.state === 'ready');
  }

  async start(): Promise<void> {
    await this.#startAdmin();
    this.#provideKeys();
    for (const name of servicesFor(this.loaded.config)) {
      this.#services.set(name, { name, child: undefined, state: 'starting', restarts: 0, backoff: new Backoff({ initialMs: 500, maxMs: MAX_BACKOFF_MS }), lastReason: undefined, restartTimer: undefined });
      this.#spawn(name);
    }
  }

  #spawn(name: ServiceName): void {
    const service = this.#services.get(name)!;
    service.state = service.restarts === 0 ? 'starting' : 'restarting';
    const tracing = process.env.OTEL_EXPORTER_OTLP_ENDPOINT ? ['--import', TELEMETRY_PRELOAD] : [];
    const child = fork(serviceEntry(name), ['--config', this.loaded.path], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, ...this.#childEnv, SLUICE_SERVICE: name },
      execArgv: [...process.execArgv, ...(SERVICE_V8_FLAGS[name] ?? []), ...tracing],
    });
    service.child = child;
    child.on('message', (message: SupervisorMessage) => {
      if (message?.type === 'ready') {
        // Once it is ready every thread it starts with exists; later ones take the main thread's.
        if (name === 'audit') this.#prioritizeAudit(child);
        service.state = 'ready';
        this.logger.info({ service: name }, 'service ready');
        if (this.ready) this.logger.info({ admin: this.loaded.config.admin.listen }, 'sluice is ready');
      } else if (message?.type === 'fatal') {
        service.lastReason = message.reason;
      }
    });
    child.on('exit', (code, signal) => {
      service.child = undefined;
      if (this.#stopping) {
        service.state = 'stopped';
        return;
      }
      // Exit code 2 is an invalid config the service found at start (it printed the one-line
      // reason, e.g. audit.recording not fitting the bus): restarting cannot help, so stop all.
      if (code === CONFIG_INVALID_EXIT_CODE) {
        void this.stop().then(() => process.exit(CONFIG_INVALID_EXIT_CODE));
        return;
      }
      service.restarts += 1;
      service.state = 'restarting';
      const delay = service.backoff.next();
      this.logger.error({ service: name, code, signal, reason: service.lastReason, restartInMs: delay, restarts: service.restarts }, 'service exited; restarting');
      service.restartTimer = setTimeout(() => this.#spawn(name), delay);
    });
  }

  #prioritizeAudit(child: ChildProcess): void {
    const configured = this.loaded.config.services.audit.niceness;
    const niceness = configured ?? DEFAULT_AUDIT_NICENESS;
    if (child.pid === undefined || niceness === 0) return;
    const refused = setProcessNiceness(child.pid, niceness);
    if (!refused) return;
    // Most machines refuse an unprivileged user: only a niceness someone asked for is worth a warning.
    const log = configured === undefined ? this.logger.info.bind(this.logger) : this.logger.warn.bind(this.logger);
    log(
      { service: 'audit', niceness, reason: refused.message },
      'services.audit.niceness not applied (lowering it needs CAP_SYS_NICE): the audit service runs at normal priority, and on a saturated machine the event store can fall behind',
    );
  }

  async #startAdmin(): Promise<void> {
    const address = parseAddress(this.loaded.config.admin.listen)!;
    this.#admin = createServer((request, response) => {
      const path = (request.url ?? '/').split('?')[0];
      if (path === '/readyz' || path === '/healthz') {
        const ok = path === '/healthz' || this.ready;
        const services = Object.fromEntries([...this.#services.values()].map((service) => [service.name, { state: service.state, restarts: service.restarts, pid: service.child?.pid ?? null }]));
        void this.#auditConsumers().then((consumers) => {
          response.writeHead(ok ? 200 : 503, { 'content-type': 'application/json', 'cache-control': 'no-store' });
          response.end(JSON.stringify({ status: ok ? 'ready' : 'not ready', services, ...(consumers ? { consumers } : {}) }));
        });
        return;
      }
      response.writeHead(404, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ error: 'not found' }));
    });
    await new Promise<void>((resolve, reject) => {
      this.#admin!.once('error', reject);
      this.#admin!.listen(address.port, address.host, () => resolve());
    });
  }

  /**
   * Keys made once per deployment (see provideDeploymentKeys), handed to the children by folder:
   * events are signed, and the services can log in to a NATS that includes the generated
   * authorization, without any setup.
   */
  #provideKeys(): void {
    const { dir, written } = provideDeploymentKeys(this.loaded.config);
    if (written.length > 0) this.logger.info({ dir, keys: written }, 'generated per-deployment keys');
    this.#childEnv = { [KEYS_DIR_ENV]: dir };
  }

  /** Passes SIGHUP on: services re-read the config file and keep the old one if it is bad. */
  reload(): void {
    for (const service of this.#services.values()) service.child?.kill('SIGHUP');
  }

  /** The audit consumers' lag (store and each SIEM exporter), for /readyz details; never blocks it long. */
  async #auditConsumers(): Promise<unknown> {
    if (this.#services.get('audit')?.state !== 'ready') return undefined;
    try {
      const response = await fetch(`${apiBaseUrl(this.loaded.config.services.audit)}/healthz`, { signal: AbortSignal.timeout(500) });
      return ((await response.json()) as { consumers?: unknown }).consumers;
    } catch {
      return undefined;
    }
  }

  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    for (const name of [...servicesFor(this.loaded.config)].reverse()) {
      const service = this.#services.get(name);
      if (!service) continue;
      clearTimeout(service.restartTimer);
      await stopChild(service.child);
      service.state = 'stopped';
    }
    await new Promise<void>((resolve) => {
      if (!this.#admin) return resolve();
      this.#admin.closeAllConnections();
      this.#admin.close(() => resolve());
    });
  }
}

const stopChild = (child: ChildProcess | undefined, timeoutMs = 12_000): Promise<void> =>
  new Promise((resolve) => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
