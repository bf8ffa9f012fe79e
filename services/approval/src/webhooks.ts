import { createHmac } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { Backoff, pause, type Logger } from '@sluice/service-runtime';
import type { KnownApproval } from './approval.js';

export interface WebhookTarget {
  readonly url: string;
  /** HMAC key of `X-Sluice-Signature`; no header when undefined. */
  readonly secret: string | undefined;
}

export interface WebhookSettings {
  readonly attempts?: number;
  readonly firstBackoffMs?: number;
  readonly timeoutMs?: number;
}

/** The JSON body approvers' systems receive (CONTRACT §4). */
export const webhookPayload = (approval: KnownApproval, decisionUrl: string) => ({
  id: approval.id,
  resource: approval.request.resource,
  /** The agent that asked. */
  subject: approval.request.subject.sub,
  /** With its issuer: another issuer may name an agent the same. */
  requester: approval.request.subject,
  sessionId: approval.sessionId,
  command: approval.request.command,
  commandHash: approval.request.commandHash,
  risk: approval.request.risk,
  rule: approval.request.rule,
  action: approval.request.action ?? null,
  requestedAt: approval.requestedAt,
  expiresAt: approval.request.expiresAt,
  decisionUrl,
  approvers: approval.request.approvers,
  /** The agent's own words (untrusted text): show it as text, never as markup. */
  justification: approval.request.justification ?? null,
});

/** `sha256=<hex HMAC-SHA256 of the raw body>`. */
export const signBody = (secret: string, body: string | Buffer): string =>
  `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;

/**
 * Posts each new request to every configured webhook, each on its own with retries and backoff:
 * a dead endpoint delays nobody, and the request it announces never waits for it.
 */
export class WebhookNotifier {
  readonly #inFlight = new Set<Promise<void>>();
  readonly #abort = new AbortController();

  constructor(
    private readonly targets: readonly WebhookTarget[],
    private readonly logger: Logger,
    private readonly settings: WebhookSettings = {},
  ) {}

  notify(approval: KnownApproval, decisionUrl: string): void {
    if (this.targets.length === 0 || this.#abort.signal.aborted) return;
    const body = JSON.stringify(webhookPayload(approval, decisionUrl));
    for (const target of this.targets) {
      const delivery = this.#deliver(target, body, approval.id).finally(() => this.#inFlight.delete(delivery));
      this.#inFlight.add(delivery);
    }
  }

  /** Gives pending deliveries up to `graceMs`, then aborts them. */
  async close(graceMs = 1_000): Promise<void> {
    const all = Promise.allSettled([...this.#inFlight]);
    await Promise.race([all, sleep(graceMs, undefined, { ref: false })]);
    this.#abort.abort();
    await all;
  }

  async #deliver(target: WebhookTarget, body: string, approvalId: string): Promise<void> {
    const attempts = this.settings.attempts ?? 5;
    const timeoutMs = this.settings.timeoutMs ?? 5_000;
    const backoff = new Backoff({ initialMs: this.settings.firstBackoffMs ?? 250, maxMs: 10_000 });
    const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'sluice-approval' };
    if (target.secret !== undefined) headers['x-sluice-signature'] = signBody(target.secret, body);
    for (let attempt = 1; attempt <= attempts; attempt += 1) {
      if (this.#abort.signal.aborted) return;
      try {
        const response = await request(target.url, {
          method: 'POST',
          headers,
          body,
          signal: AbortSignal.any([this.#abort.signal, AbortSignal.timeout(timeoutMs)]),
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
        });
        await response.body.dump();
        if (response.statusCode < 300) return;
        // A 4xx other than 408/429 will not change on retry.
        if (response.statusCode < 500 && response.statusCode !== 408 && response.statusCode !== 429) {
          this.logger.warn({ url: target.url, status: response.statusCode, approvalId }, 'webhook refused the approval request');
          return;
        }
        this.logger.warn({ url: target.url, status: response.statusCode, attempt, approvalId }, 'webhook failed; retrying');
      } catch (error) {
        if (this.#abort.signal.aborted) return;
        this.logger.warn({ url: target.url, err: error, attempt, approvalId }, 'webhook unreachable; retrying');
      }
      if (attempt < attempts) {
        await pause(backoff.next(), this.#abort.signal);
      }
    }
    this.logger.error({ url: target.url, approvalId }, 'webhook gave up after retries');
  }
}
