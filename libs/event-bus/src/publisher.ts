import type { MsgHdrs, NatsConnection } from '@nats-io/transport-node';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { subjectForBatch, subjectForKind, kindOfType, type CloudEvent, type SluiceEventKind } from '@sluice/contracts';
import type { MessageSigner } from './provenance.js';

export interface PublisherSettings {
  /** Token naming the publisher in batch subjects (`proxy`, `policy`). */
  readonly source: string;
  readonly subjectPrefix: string;
  /** Events per NATS message at most. */
  readonly maxBatchEvents?: number;
  /** Bytes per NATS message at most (JetStream's default max payload is 1 MiB). */
  readonly maxBatchBytes?: number;
  /** Batches awaiting their ack at once. */
  readonly maxInFlight?: number;
  /** Events queued (not yet acked) beyond which the publisher reports itself unhealthy. */
  readonly maxQueuedEvents?: number;
  /**
   * How long a partial batch may wait for more events. Each JetStream publish costs a request
   * (and the client's bookkeeping) whatever its size, so a few milliseconds of gathering turns
   * one message per statement into one per many; nothing on the query path waits for it.
   */
  readonly maxDelayMs?: number;
  readonly onError?: (error: unknown) => void;
  /** Signs every message (provenance); without it messages go unsigned and the audit store refuses them. */
  readonly signer?: MessageSigner;
}

interface Batch {
  readonly subject: string;
  readonly payload: Uint8Array;
  readonly msgID: string;
  readonly count: number;
}

const encoder = new TextEncoder();

/**
 * Publishes CloudEvents to JetStream without ever blocking the data path: events queue, go out as
 * CloudEvents JSON batches (one NATS message per batch, the first event's id and count as the
 * message id so a retried batch is dropped as a duplicate), with several acks in flight.
 */
export class EventPublisher {
  readonly #js: JetStreamClient;
  readonly #settings: Required<Omit<PublisherSettings, 'onError' | 'signer'>> & Pick<PublisherSettings, 'onError' | 'signer'>;
  #queue: CloudEvent[] = [];
  readonly #retry: Batch[] = [];
  #inFlight = 0;
  #unacked = 0;
  #failing = false;
  #scheduled = false;
  #closed = false;
  #idle: Array<() => void> = [];
  #retryTimer: NodeJS.Timeout | undefined;

  constructor(nc: NatsConnection, settings: PublisherSettings) {
    this.#js = jetstream(nc, { timeout: 5_000 });
    this.#settings = {
      maxBatchEvents: 500,
      maxBatchBytes: 512 * 1024,
      maxInFlight: 32,
      maxQueuedEvents: 100_000,
      maxDelayMs: 25,
      ...settings,
    };
  }

  /** False while the bus is not taking events or too many wait: callers fail closed. */
  get healthy(): boolean {
    return !this.#closed && !this.#failing && this.#unacked < this.#settings.maxQueuedEvents;
  }

  /** Events accepted but not yet acknowledged by JetStream. */
  get pending(): number {
    return this.#unacked;
  }

  publish(event: CloudEvent): void {
    if (this.#closed) throw new Error('publisher is closed');
    this.#queue.push(event);
    this.#unacked += 1;
    if (this.#queue.length >= this.#settings.maxBatchEvents) this.#pump(false);
    else this.#schedule();
  }

  /** Publishes one event on its own subject and waits for the ack (low-volume, must-be-stored events). */
  async publishNow(event: CloudEvent): Promise<void> {
    const kind = kindOfType(event.type) as SluiceEventKind;
    const payload = encoder.encode(JSON.stringify(event));
    await this.#js.publish(subjectForKind(kind, this.#settings.subjectPrefix), payload, { msgID: event.id, ...this.#signed(payload) });
  }

  /** Resolves once every event published so far is acknowledged. */
  flush(): Promise<void> {
    this.#pump(true);
    if (this.#unacked === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  async close(timeoutMs = 5_000): Promise<void> {
    await Promise.race([this.flush(), new Promise((resolve) => setTimeout(resolve, timeoutMs).unref())]);
    this.#closed = true;
    clearTimeout(this.#retryTimer);
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setTimeout(() => {
      this.#scheduled = false;
      this.#pump(true);
    }, this.#settings.maxDelayMs);
  }

  /**
   * Sends retries and full batches; a partial batch only when `partial` (the gathering delay is
   * over, or a flush): an ack arriving must not send the next few events on their own.
   */
  #pump(partial: boolean): void {
    while (this.#inFlight < this.#settings.maxInFlight) {
      const full = this.#queue.length >= this.#settings.maxBatchEvents;
      const batch = this.#retry.shift() ?? (full || partial ? this.#takeBatch() : undefined);
      if (!batch) break;
      this.#send(batch);
    }
    if (this.#queue.length > 0) this.#schedule();
  }

  #takeBatch(): Batch | undefined {
    if (this.#queue.length === 0) return undefined;
    const queue = this.#queue;
    const parts: string[] = [];
    let bytes = 2;
    let taken = 0;
    // Indexing, then one splice: shift() per event is a memmove of the whole queue each time.
    while (taken < queue.length && taken < this.#settings.maxBatchEvents) {
      const json = JSON.stringify(queue[taken]);
      if (taken > 0 && bytes + json.length + 1 > this.#settings.maxBatchBytes) break;
      parts.push(json);
      bytes += json.length + 1;
      taken += 1;
    }
    const first = queue[0]!;
    if (taken === queue.length) this.#queue = [];
    else queue.splice(0, taken);
    return {
      subject: subjectForBatch(this.#settings.source, this.#settings.subjectPrefix),
      payload: Buffer.from(`[${parts.join(',')}]`, 'utf8'),
      msgID: `${first.id}+${taken}`,
      count: taken,
    };
  }

  #send(batch: Batch): void {
    this.#inFlight += 1;
    this.#js.publish(batch.subject, batch.payload, { msgID: batch.msgID, ...this.#signed(batch.payload) }).then(
      () => {
        this.#inFlight -= 1;
        this.#failing = false;
        this.#unacked -= batch.count;
        // While someone waits in flush(), what is left goes at once.
        this.#pump(this.#idle.length > 0);
        this.#notifyIdle();
      },
      (error: unknown) => {
        this.#inFlight -= 1;
        this.#failing = true;
        this.#settings.onError?.(error);
        this.#retry.unshift(batch);
        clearTimeout(this.#retryTimer);
        this.#retryTimer = setTimeout(() => this.#pump(false), 500);
      },
    );
  }

  #signed(payload: Uint8Array): { headers?: MsgHdrs } {
    return this.#settings.signer ? { headers: this.#settings.signer.headersFor(payload) } : {};
  }

  #notifyIdle(): void {
    if (this.#unacked !== 0) return;
    const waiting = this.#idle;
    this.#idle = [];
    for (const resolve of waiting) resolve();
  }
}

const decoder = new TextDecoder();

/** A NATS message carries one CloudEvent or a CloudEvents JSON batch (an array). */
export const decodeEvents = (data: Uint8Array): CloudEvent[] => {
  const parsed: unknown = JSON.parse(decoder.decode(data));
  const events = Array.isArray(parsed) ? parsed : [parsed];
  return events.filter((event): event is CloudEvent => typeof event === 'object' && event !== null && typeof (event as CloudEvent).id === 'string');
};
