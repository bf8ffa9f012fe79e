import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KEYS_DIR_ENV, requireSecret, type LoadedConfig } from '@sluice/config';
import { connectBus, type BusAuth, type NatsConnection } from '@sluice/event-bus';
import type { Logger } from '@sluice/telemetry';

/** Something about approvals changed; listeners re-read the inbox from the approval API. */
export type ApprovalsChanged = (approvalIds: readonly string[]) => void;

/**
 * The console reads the bus as the read-only SIEM role would (`siem.nk` that `sluice up`
 * generates): it only listens, and never trusts what it hears. A message only tells it to ask
 * the approval API again, so a forged or unsigned event can at most cause a refresh.
 */
export const consoleBusAuth = (loaded: LoadedConfig, env: NodeJS.ProcessEnv = process.env): BusAuth => {
  const { tls } = loaded.config.bus;
  let seed: string | undefined;
  const dir = env[KEYS_DIR_ENV];
  if (dir) {
    try {
      seed = readFileSync(join(dir, 'siem.nk'), 'utf8').trim() || undefined;
    } catch {
      seed = undefined;
    }
  }
  const tlsFiles =
    tls === undefined
      ? undefined
      : {
          ...(tls.ca ? { ca: requireSecret(tls.ca, loaded.dir) } : {}),
          ...(tls.cert ? { cert: requireSecret(tls.cert, loaded.dir) } : {}),
          ...(tls.key ? { key: requireSecret(tls.key, loaded.dir) } : {}),
        };
  return { ...(seed ? { credential: { nkeySeed: seed } } : {}), ...(tlsFiles ? { tls: tlsFiles } : {}) };
};

const approvalIdsIn = (payload: Uint8Array): string[] => {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(payload));
  } catch {
    return [];
  }
  const events = Array.isArray(parsed) ? parsed : [parsed];
  const ids: string[] = [];
  for (const event of events) {
    const type = (event as { type?: unknown })?.type;
    const id = (event as { data?: { approvalId?: unknown } })?.data?.approvalId;
    if (typeof type === 'string' && type.startsWith('sluice.approval.') && typeof id === 'string') ids.push(id);
  }
  return ids;
};

/**
 * Approval events as they are published (plain NATS subscriptions on the approval subjects and
 * the approval service's batch subject: no consumer to create, nothing acknowledged).
 */
export class ApprovalFeed {
  readonly #listeners = new Set<ApprovalsChanged>();
  #connection: NatsConnection | undefined;

  constructor(
    private readonly url: string,
    private readonly prefix: string,
    private readonly auth: BusAuth,
    private readonly logger: Logger,
  ) {}

  async start(): Promise<void> {
    this.#connection = await connectBus(this.url, 'console', this.auth);
    for (const subject of [`${this.prefix}.approval.>`, `${this.prefix}.batch.approval`]) {
      const subscription = this.#connection.subscribe(subject);
      void (async () => {
        for await (const message of subscription) {
          const ids = approvalIdsIn(message.data);
          if (ids.length > 0) for (const listener of this.#listeners) listener(ids);
        }
      })().catch((error: unknown) => this.logger.error({ err: error, subject }, 'approval feed stopped'));
    }
    await this.#connection.flush();
  }

  listen(listener: ApprovalsChanged): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async stop(): Promise<void> {
    this.#listeners.clear();
    await this.#connection?.drain().catch(() => undefined);
  }
}
