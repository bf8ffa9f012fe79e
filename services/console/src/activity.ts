import type { LoadedConfig } from '@sluice/config';
import { resolveProvenanceKeys } from '@sluice/config';
import type { CloudEvent } from '@sluice/contracts';
import { createProvenanceVerifier, type NatsConnection, type ProvenanceVerifier } from '@sluice/event-bus';
import type { Logger } from '@sluice/telemetry';
import { html, type SafeHtml } from './html.js';

/** A string field of an event as text; anything else (absent, or not a string) as empty. */
const textOf = (value: unknown): string => (typeof value === 'string' ? value : '');

/** One decided command as the activity page lists it. */
export interface ActivityItem {
  readonly time: string;
  readonly sessionId: string;
  readonly agent: string;
  readonly resource: string;
  readonly command: string;
  readonly decision: string;
  readonly rule: string;
  readonly risk: string;
}

export interface ActivityCounts {
  allow: number;
  deny: number;
  approve: number;
}

const KEPT_ITEMS = 200;
/** Sessions whose agent is remembered (from session.started) to name it on each command. */
const KEPT_SESSIONS = 5_000;

/**
 * Commands as the proxy decides them, for the activity page: only messages a Sluice service
 * provably signed are shown (the same provenance check the audit store makes), since anyone who
 * may publish on the bus could otherwise put words in an agent's mouth on an auditor's screen.
 * Subscribed only while someone watches: the proxy's batches are the busiest subject.
 */
export class ActivityFeed {
  readonly #items: ActivityItem[] = [];
  readonly #agents = new Map<string, string>();
  readonly #listeners = new Set<(item: ActivityItem) => void>();
  readonly #verifier: ProvenanceVerifier;
  readonly counts: ActivityCounts = { allow: 0, deny: 0, approve: 0 };
  #unsubscribe: (() => void) | undefined;
  /** Resolves once the server has the subscriptions (a stream is opened only after it). */
  subscribed: Promise<void> = Promise.resolve();
  /** Set when no provenance keys are known: nothing can be shown as genuine. */
  readonly unverifiable: boolean;

  constructor(
    loaded: LoadedConfig,
    private readonly connection: () => NatsConnection | undefined,
    private readonly prefix: string,
    private readonly logger: Logger,
  ) {
    const keys = resolveProvenanceKeys(loaded);
    this.unverifiable = Object.keys(keys.publicKeysPem).length === 0;
    this.#verifier = createProvenanceVerifier(keys.publicKeysPem);
  }

  get items(): readonly ActivityItem[] {
    return this.#items;
  }

  watch(listener: (item: ActivityItem) => void): () => void {
    this.#listeners.add(listener);
    if (!this.#unsubscribe) this.#subscribe();
    return () => {
      this.#listeners.delete(listener);
      if (this.#listeners.size === 0) {
        this.#unsubscribe?.();
        this.#unsubscribe = undefined;
      }
    };
  }

  #subscribe(): void {
    const nc = this.connection();
    if (!nc) return;
    const subscriptions = [`${this.prefix}.session.started`, `${this.prefix}.command.>`, `${this.prefix}.batch.proxy`].map((subject) => {
      const subscription = nc.subscribe(subject);
      void (async () => {
        for await (const message of subscription) this.#take(message.data, message.headers);
      })().catch((error: unknown) => this.logger.warn({ err: error, subject }, 'activity feed stopped'));
      return subscription;
    });
    this.#unsubscribe = () => subscriptions.forEach((subscription) => subscription.unsubscribe());
    this.subscribed = nc.flush().catch(() => undefined);
  }

  #take(payload: Uint8Array, headers: Parameters<ProvenanceVerifier['checkMessage']>[1]): void {
    const provenance = this.#verifier.checkMessage(payload, headers);
    if (!provenance.genuine) return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(new TextDecoder().decode(payload));
    } catch {
      return;
    }
    for (const event of (Array.isArray(parsed) ? parsed : [parsed]) as CloudEvent[]) {
      if (typeof event?.type !== 'string' || this.#verifier.refuseEvent(provenance.signer, event)) continue;
      const kind = event.type.replace(/^sluice\./, '').replace(/\.v\d+$/, '');
      const data = (event.data ?? {}) as unknown as Record<string, unknown>;
      if (kind === 'session.started') {
        if (this.#agents.size >= KEPT_SESSIONS) this.#agents.delete(this.#agents.keys().next().value!);
        this.#agents.set(event.subject, textOf((data.subject as { sub?: unknown } | undefined)?.sub));
        continue;
      }
      if (kind !== 'command.decided' && kind !== 'command.executed') continue;
      const decision = textOf(data.decision);
      const item: ActivityItem = {
        time: event.time,
        sessionId: event.subject,
        agent: this.#agents.get(event.subject) ?? '',
        resource: textOf(data.resource),
        command: textOf(data.command),
        decision,
        rule: textOf(data.rule),
        risk: textOf(data.risk),
      };
      if (decision === 'allow' || decision === 'deny' || decision === 'approve') this.counts[decision] += 1;
      this.#items.unshift(item);
      if (this.#items.length > KEPT_ITEMS) this.#items.pop();
      for (const listener of this.#listeners) listener(item);
    }
  }
}

export const activityRow = (item: ActivityItem): SafeHtml => html`<tr data-decision="${item.decision}"><td><time datetime="${item.time}">${item.time}</time></td><td>${item.agent}</td><td>${item.resource}</td>
<td><code class="command-inline">${item.command}</code></td><td><span class="decision decision-${item.decision}">${item.decision}</span></td><td>${item.rule || (item.decision === 'deny' ? 'no rule: default deny' : '')}</td><td>${item.risk}</td><td><a href="/sessions/${encodeURIComponent(item.sessionId)}">session</a></td></tr>`;

export const activityCounts = (counts: ActivityCounts): SafeHtml => html`<span>${counts.allow} allowed</span> · <span class="decision-deny">${counts.deny} denied</span> · <span class="decision-approve">${counts.approve} held</span>`;

export const activityPage = (feed: ActivityFeed): SafeHtml => html`<h1>Live activity</h1>
<p>Commands as the gateway decides them, while this page is open (counts since the console started watching): <strong id="activity-counts">${activityCounts(feed.counts)}</strong></p>
${feed.unverifiable ? html`<p class="error" role="alert">No provenance keys are known to the console: no event can be shown as genuine.</p>` : ''}
<form class="search" id="activity-filters"><label>Filter <input id="activity-filter" type="search" placeholder="agent, resource, command, rule"></label>
<label>Decision <select id="activity-decision"><option value="">any</option><option>allow</option><option>deny</option><option>approve</option></select></label></form>
<p class="live" id="live-state" aria-live="polite">Live updates connecting…</p>
<table><thead><tr><th>Time</th><th>Agent</th><th>Resource</th><th>Command</th><th>Decision</th><th>Rule</th><th>Risk</th><th>Session</th></tr></thead>
<tbody id="activity" data-live="/activity/live">${feed.items.map(activityRow)}</tbody></table>`;
