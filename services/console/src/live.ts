import { resolveBusLogin, type LoadedConfig } from '@sluice/config';
import { connectBus, type BusAuth, type NatsConnection } from '@sluice/event-bus';
import type { Logger } from '@sluice/telemetry';

/** Something about approvals changed; listeners re-read the inbox from the approval API. */
export type ApprovalsChanged = (approvalIds: readonly string[]) => void;

/**
 * The console reads the bus as the read-only SIEM role would (`siem.nk` that `sluice up`
 * generates): it only listens, and never trusts what it hears. A message only tells it to ask
 * the approval API again, so a forged or unsigned event can at most cause a refresh.
 */
export const consoleBusAuth = (loaded: LoadedConfig, env: NodeJS.ProcessEnv = process.env): BusAuth => resolveBusLogin(loaded, 'siem', env);

/** One event or a CloudEvents batch; anything unreadable is nothing. */
const eventsIn = (payload: Uint8Array): unknown[] => {
  try {
    const parsed: unknown = JSON.parse(new TextDecoder().decode(payload));
    return Array.isArray(parsed) ? parsed : [parsed];
  } catch {
    return [];
  }
};

const approvalIdsIn = (events: readonly unknown[]): string[] => {
  const ids: string[] = [];
  for (const event of events) {
    const type = (event as { type?: unknown })?.type;
    const id = (event as { data?: { approvalId?: unknown } })?.data?.approvalId;
    if (typeof type === 'string' && type.startsWith('sluice.approval.') && typeof id === 'string') ids.push(id);
  }
  return ids;
};

/**
 * Approval and policy events as they are published (plain NATS subscriptions on their subjects
 * and their services' batch subjects: no consumer to create, nothing acknowledged).
 */
export class ApprovalFeed {
  readonly #listeners = new Set<ApprovalsChanged>();
  #connection: NatsConnection | undefined;
  /** The policy service's version from the last `policy.changed` heard (shown, never trusted). */
  policyVersion: number | undefined;

  constructor(
    private readonly url: string,
    private readonly prefix: string,
    private readonly auth: BusAuth,
    private readonly logger: Logger,
  ) {}

  async start(): Promise<void> {
    this.#connection = await connectBus(this.url, 'console', this.auth);
    for (const subject of [`${this.prefix}.approval.>`, `${this.prefix}.batch.approval`, `${this.prefix}.policy.changed`, `${this.prefix}.batch.policy`]) {
      const subscription = this.#connection.subscribe(subject);
      void (async () => {
        for await (const message of subscription) {
          const events = eventsIn(message.data);
          const ids = approvalIdsIn(events);
          if (ids.length > 0) for (const listener of this.#listeners) listener(ids);
          for (const event of events) {
            const version = (event as { type?: unknown; data?: { version?: unknown } }).data?.version;
            if (String((event as { type?: unknown }).type).startsWith('sluice.policy.changed') && typeof version === 'number') this.policyVersion = version;
          }
        }
      })().catch((error: unknown) => this.logger.error({ err: error, subject }, 'approval feed stopped'));
    }
    await this.#connection.flush();
  }

  /** The bus connection, for the activity feed's own subscriptions. */
  get connection(): NatsConnection | undefined {
    return this.#connection;
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
