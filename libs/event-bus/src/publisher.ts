import { InvalidArgumentError, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, JetStreamApiError, type JetStreamClient } from '@nats-io/jetstream';
import { subjectForBatch, subjectForKind, kindOfType, type CloudEvent, type EventReduction, type JsonSink, type SluiceEventKind } from '@sluice/contracts';
import { EventArena, type EventBytes, type Frame } from './event-arena.js';
import type { MessageSigner } from './provenance.js';
import { jsonBytes, reduceEvent } from './reduction.js';

export interface PublisherSettings {
  /** Token naming the publisher in batch subjects (`proxy`, `policy`). */
  readonly source: string;
  readonly subjectPrefix: string;
  /** Events per NATS message at most. */
  readonly maxBatchEvents?: number;
  /** Bytes per NATS message at most; never more than the server's max_payload, whatever is set. */
  readonly maxBatchBytes?: number;
  /**
   * Bytes per event at most (its JSON); a larger event is published in its reduced form
   * (`data.reduced`). Never more than the server's max_payload, whatever is set.
   */
  readonly maxEventBytes?: number;
  /** Batches awaiting their ack at once. */
  readonly maxInFlight?: number;
  /** Events queued (not yet acked) beyond which the publisher reports itself unhealthy. */
  readonly maxQueuedEvents?: number;
  /** Bytes of events queued (not yet acked) beyond which the publisher reports itself unhealthy. */
  readonly maxQueuedBytes?: number;
  /**
   * How long a partial batch may wait for more events. Each JetStream publish costs a request
   * (and the client's bookkeeping) whatever its size, so a few milliseconds of gathering turns
   * one message per statement into one per many; nothing on the query path waits for it.
   */
  readonly maxDelayMs?: number;
  /** A publish failed; `retrying` false when retrying could not help (the events are reduced or split instead). */
  readonly onError?: (error: unknown, retrying: boolean) => void;
  /** An event goes out in its reduced form (or, when even that was refused, is dropped). */
  readonly onReduced?: (event: CloudEvent, reduction: EventReduction, dropped: boolean) => void;
  /** Signs every message (provenance); without it messages go unsigned and the audit store refuses them. */
  readonly signer?: MessageSigner;
}

/**
 * An event as its JSON's UTF-8 in the arena, written once when published. The event object itself
 * is not kept: a queued event lives until JetStream acknowledges it, long enough for the garbage
 * collector to move whatever it holds to the old generation, at thousands of events a second.
 * The rare path that needs it back (a refusal) parses the JSON.
 */
interface Queued extends EventBytes {
  /** The order it was published in (acknowledged() waits for everything up to one of these). */
  readonly ordinal: number;
  readonly id: string;
  /** end - start: the event's size on the wire. */
  readonly bytes: number;
  /** Already the reduced form: if the bus refuses this too, it is dropped (and reported). */
  readonly reduced: boolean;
  /** Whose share of the queue the event counts against, if anyone's. */
  readonly share: QueueShare | undefined;
}

const queued = (ordinal: number, id: string, at: EventBytes, reduced: boolean, share: QueueShare | undefined): Queued => ({
  chunk: at.chunk,
  start: at.start,
  end: at.end,
  ordinal,
  id,
  bytes: at.end - at.start,
  reduced,
  share,
});

/**
 * One owner's events not yet acknowledged (an agent's: all its sessions'). The publisher's queue
 * is shared by every session of the proxy and its limit makes them all fail closed; an owner past
 * its fair share (see EventPublisher.overShare) is paused by its adapter instead, so one agent
 * that makes events faster than the bus takes them slows only itself.
 */
export class QueueShare {
  events = 0;
  bytes = 0;
  /** Called once when the owner is back under half its share; set while it is paused. */
  #resumers: Array<() => void> | undefined;

  /** Calls `resume` once the share has fallen back under half its limit. */
  whenUnder(resume: () => void): void {
    (this.#resumers ??= []).push(resume);
  }

  /** The resumers waiting, taken (each is called once). */
  takeResumers(): Array<() => void> | undefined {
    const resumers = this.#resumers;
    this.#resumers = undefined;
    return resumers;
  }

  get waiting(): boolean {
    return this.#resumers !== undefined;
  }
}

/** An event's JSON in a buffer of its own (not queued in the arena's batches). */
const alone = (json: string): EventBytes => {
  const chunk = Buffer.from(json, 'utf8');
  return { chunk, start: 0, end: chunk.length };
};

interface Batch {
  readonly subject: string;
  readonly payload: Uint8Array;
  readonly msgID: string;
  readonly count: number;
  readonly items: readonly Queued[];
}

/** NATS's default max_payload, assumed until the server has said its own. */
const DEFAULT_MAX_PAYLOAD = 1024 * 1024;
/** `[` and `]` around a batch. */
const BATCH_FRAMING_BYTES = 2;
/** NATS counts headers against max_payload with the payload: room for the provenance signature's. */
const SIGNATURE_HEADER_BYTES = 1024;

/**
 * The largest event JSON a server with this max_payload carries in one message: what is left
 * after the batch's brackets and, when messages are signed, the signature headers.
 */
export const eventRoom = (maxPayload: number, signed: boolean): number =>
  maxPayload - BATCH_FRAMING_BYTES - (signed ? SIGNATURE_HEADER_BYTES : 0);
/**
 * Why a publish failed: the bus refused this message (retrying cannot help), or anything else
 * (the bus is away, or a failure not recognised: retried, failing closed, never dropped).
 */
type PublishFailure = 'rejected' | 'retryable';

/**
 * `[event,event,…]` as UTF-8, the events' bytes as the arena holds them: runs of events queued one
 * after another (their commas between them) are copied at once, into one buffer of the exact size.
 */
export const batchPayload = (events: readonly EventBytes[]): Buffer => {
  let size = BATCH_FRAMING_BYTES + Math.max(0, events.length - 1);
  for (const event of events) size += event.end - event.start;
  const payload = Buffer.allocUnsafe(size);
  let offset = 0;
  payload[offset++] = 0x5b; // [
  let index = 0;
  while (index < events.length) {
    const first = events[index]!;
    let end = first.end;
    let next = index + 1;
    while (next < events.length && events[next]!.chunk === first.chunk && events[next]!.start === end + 1) end = events[next++]!.end;
    if (index > 0) payload[offset++] = 0x2c; // ,
    offset += first.chunk.copy(payload, offset, first.start, end);
    index = next;
  }
  payload[offset++] = 0x5d; // ]
  return payload;
};

/**
 * Publishes CloudEvents to JetStream without ever blocking the data path: events queue, go out as
 * CloudEvents JSON batches (one NATS message per batch, the first event's id and count as the
 * message id so a retried batch is dropped as a duplicate), with several acks in flight.
 */
export class EventPublisher {
  readonly #js: JetStreamClient;
  readonly #settings: Required<Omit<PublisherSettings, 'onError' | 'onReduced' | 'signer'>> & Pick<PublisherSettings, 'onError' | 'onReduced' | 'signer'>;
  readonly #nc: NatsConnection;
  #queue: Queued[] = [];
  readonly #arena = new EventArena();
  readonly #retry: Batch[] = [];
  #inFlight = 0;
  #unacked = 0;
  #queuedBytes = 0;
  #failing = false;
  #scheduled = false;
  #closed = false;
  #idle: Array<() => void> = [];
  #retryTimer: NodeJS.Timeout | undefined;
  #published = 0;
  /** Shares with events queued: the queue is split between them (and a share's worth kept free). */
  #activeShares = 0;
  readonly #sending = new Set<Batch>();
  #waiters: Array<{ readonly upTo: number; readonly resolve: () => void; readonly reject: (error: Error) => void }> = [];

  constructor(nc: NatsConnection, settings: PublisherSettings) {
    this.#nc = nc;
    this.#js = jetstream(nc, { timeout: 5_000 });
    this.#settings = {
      maxBatchEvents: 500,
      maxBatchBytes: 512 * 1024,
      maxEventBytes: 256 * 1024,
      maxInFlight: 32,
      maxQueuedEvents: 100_000,
      maxQueuedBytes: 64 * 1024 * 1024,
      maxDelayMs: 25,
      ...settings,
    };
  }

  /** The payload bytes a message may carry: the server's max_payload (it may differ after a reconnect to another server) less its headers. */
  get #maxPayload(): number {
    return (this.#nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD) - (this.#settings.signer ? SIGNATURE_HEADER_BYTES : 0);
  }

  /** The largest event JSON that goes out as it is; a batch of one such event still fits the server. */
  get maxEventBytes(): number {
    return Math.min(this.#settings.maxEventBytes, eventRoom(this.#nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD, this.#settings.signer !== undefined));
  }

  /** False while the bus is not taking events or too many wait: callers fail closed. */
  get healthy(): boolean {
    return (
      !this.#closed &&
      !this.#failing &&
      this.#unacked < this.#settings.maxQueuedEvents &&
      this.#queuedBytes < this.#settings.maxQueuedBytes
    );
  }

  /**
   * Is this share past its part of the queue? Each share with events queued may hold up to
   * 1/(n+1) of the events and bytes the queue holds before it is unhealthy (n: those shares), so
   * that all of them together stay under the limit with a share's worth to spare for what an
   * owner makes before its adapter pauses it; and never more than half of what the other shares
   * leave free. Without that bound, owners that came one after another kept what they took
   * while n was smaller (1/2, then 1/3, then 1/4: more than the whole queue with three), and the
   * queue filled for everyone; with it the queue is never full of shares' events, and an owner
   * that came late still has half the room left. `coming` are events the owner has made that
   * are not queued yet (decisions kept back for their outcome). `fraction` 0.5 asks whether it
   * is under half of that (when a paused owner resumes).
   */
  overShare(share: QueueShare, coming = 0, fraction = 1): boolean {
    const parts = Math.max(1, this.#activeShares) + 1;
    const { maxQueuedEvents, maxQueuedBytes } = this.#settings;
    const events = Math.min(maxQueuedEvents / parts, (maxQueuedEvents - (this.#unacked - share.events)) / 2);
    const bytes = Math.min(maxQueuedBytes / parts, (maxQueuedBytes - (this.#queuedBytes - share.bytes)) / 2);
    return share.events + coming >= Math.max(1, events * fraction) || share.bytes >= Math.max(1, bytes * fraction);
  }

  /** Events accepted but not yet acknowledged by JetStream. */
  get pending(): number {
    return this.#unacked;
  }

  /** Queues an event; `share`, when given, is whose part of the queue it counts against until acknowledged. */
  publish(event: CloudEvent, share?: QueueShare): void {
    if (this.#closed) throw new Error('publisher is closed');
    this.#enqueue(this.#bounded(event, ++this.#published, share));
  }

  /**
   * publish() for an event `write` writes as its JSON's UTF-8 straight into the queue (exactly
   * JSON.stringify's text of `event(value)`, as writeExecutedEvent writes it). `event` builds the
   * event only if it must be reduced, or if `write` throws (data it does not know how to write):
   * then it goes the way publish() takes.
   */
  publishWritten<T>(id: string, write: (sink: JsonSink, value: T) => void, value: T, event: (value: T) => CloudEvent, share?: QueueShare): void {
    if (this.#closed) throw new Error('publisher is closed');
    const arena = this.#arena;
    arena.begin();
    try {
      write(arena, value);
    } catch {
      arena.discard();
      this.publish(event(value), share);
      return;
    }
    const bytes = arena.written;
    if (bytes > this.maxEventBytes) {
      arena.discard();
      this.#enqueue(this.#tooLarge(event(value), bytes, ++this.#published, share));
      return;
    }
    this.#enqueue(queued(++this.#published, id, this.#commit(), false, share));
  }

  /**
   * Ends the event written in the arena within its batch's bounds: one that would take the open
   * batch past the bytes a message may carry starts the next batch, and a batch of as many events
   * as one may hold is closed.
   */
  #commit(): EventBytes {
    const arena = this.#arena;
    if (arena.frameBytes > Math.min(this.#settings.maxBatchBytes, this.#maxPayload)) arena.closeBeforeCurrent();
    const bytes = arena.commit();
    if (arena.frameEvents >= this.#settings.maxBatchEvents) arena.closeFrame();
    return bytes;
  }

  /** A whole event's JSON queued in the arena. */
  #queueText(json: string): EventBytes {
    const arena = this.#arena;
    arena.begin();
    // A UTF-8 byte count is at most three per UTF-16 unit.
    arena.reserve(json.length * 3);
    arena.offset += arena.buffer.write(json, arena.offset, 'utf8');
    return this.#commit();
  }

  #enqueue(item: Queued): void {
    this.#queue.push(item);
    this.#unacked += 1;
    this.#queuedBytes += item.bytes;
    const share = item.share;
    if (share) {
      if (share.events++ === 0) this.#activeShares += 1;
      share.bytes += item.bytes;
    }
    if (this.#arena.hasClosed) this.#pump(false);
    else this.#schedule();
  }

  /** Publishes one event on its own subject and waits for the ack (low-volume, must-be-stored events). */
  async publishNow(event: CloudEvent): Promise<void> {
    const kind = kindOfType(event.type) as SluiceEventKind;
    // Not queued: its bytes must not sit among the queued batches'.
    const item = this.#bounded(event, 0, undefined, alone);
    const payload = item.chunk.subarray(item.start, item.end);
    await this.#js.publish(subjectForKind(kind, this.#settings.subjectPrefix), payload, { msgID: event.id, ...this.#signed(payload) });
  }

  /** The event serialised into the arena, in its reduced form when it is larger than an event may be. */
  #bounded(event: CloudEvent, ordinal: number, share: QueueShare | undefined, place: (json: string) => EventBytes = (json) => this.#queueText(json)): Queued {
    let json: string;
    try {
      json = JSON.stringify(event);
    } catch (error) {
      // A malformed event (not JSON) is a refusal retrying cannot fix: recorded reduced, never thrown at the session.
      const reduced = reduceEvent(event, 'rejected', 0, this.maxEventBytes, `not JSON: ${error instanceof Error ? error.message : String(error)}`);
      this.#settings.onReduced?.(reduced.event, reduced.reduction, false);
      return queued(ordinal, event.id, place(reduced.json), true, share);
    }
    // A UTF-8 byte count is at most three per UTF-16 unit: most events need no count.
    const bytes = json.length * 3 <= this.maxEventBytes ? json.length : jsonBytes(json);
    if (bytes > this.maxEventBytes) return this.#tooLarge(event, bytes, ordinal, share, place);
    return queued(ordinal, event.id, place(json), false, share);
  }

  #tooLarge(event: CloudEvent, bytes: number, ordinal: number, share: QueueShare | undefined, place: (json: string) => EventBytes = (json) => this.#queueText(json)): Queued {
    const reduced = reduceEvent(event, 'too_large', bytes, this.maxEventBytes);
    this.#settings.onReduced?.(reduced.event, reduced.reduction, false);
    return queued(ordinal, event.id, place(reduced.json), true, share);
  }

  /**
   * Resolves once every event published so far is acknowledged by JetStream (sending what waits
   * at once, not after the gathering delay); rejects if the bus refused one of them even reduced.
   * Unlike flush(), events published later are not waited for.
   */
  acknowledged(): Promise<void> {
    const upTo = this.#published;
    if (this.#oldestUnacked() > upTo) return Promise.resolve();
    const waiting = new Promise<void>((resolve, reject) => this.#waiters.push({ upTo, resolve, reject }));
    this.#pump(true);
    return waiting;
  }

  /** The ordinal of the oldest event not yet acknowledged (one past the last published when none). */
  #oldestUnacked(): number {
    let oldest = this.#queue[0]?.ordinal ?? this.#published + 1;
    for (const batch of this.#sending) oldest = Math.min(oldest, batch.items[0]!.ordinal);
    for (const batch of this.#retry) oldest = Math.min(oldest, batch.items[0]!.ordinal);
    return oldest;
  }

  #notifyWaiters(): void {
    if (this.#waiters.length === 0) return;
    const oldest = this.#oldestUnacked();
    const still = this.#waiters.filter((waiter) => waiter.upTo >= oldest);
    if (still.length === this.#waiters.length) return;
    const done = this.#waiters.filter((waiter) => waiter.upTo < oldest);
    this.#waiters = still;
    for (const waiter of done) waiter.resolve();
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
    const waiting = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiting) waiter.reject(new Error('publisher is closed'));
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
      const batch = this.#retry.shift() ?? this.#takeBatch(partial);
      if (!batch) break;
      this.#send(batch);
    }
    if (this.#queue.length > 0) this.#schedule();
  }

  /** The oldest closed batch; with `partial`, the open one closed if none is. */
  #takeBatch(partial: boolean): Batch | undefined {
    if (partial && !this.#arena.hasClosed) this.#arena.closeFrame();
    const frame = this.#arena.takeFrame();
    if (!frame) return undefined;
    // A batch's events are the next ones queued, in order. Indexing, then one splice: shift()
    // per event is a memmove of the whole queue each time.
    const queue = this.#queue;
    const items = frame.events === queue.length ? queue : queue.slice(0, frame.events);
    if (frame.events === queue.length) this.#queue = [];
    else queue.splice(0, frame.events);
    return this.#framed(frame, items);
  }

  /** A batch sent as the arena framed it: its payload is a view of the bytes its events were written in. */
  #framed(frame: Frame, items: readonly Queued[]): Batch {
    return { subject: subjectForBatch(this.#settings.source, this.#settings.subjectPrefix), payload: frame.payload, msgID: `${items[0]!.id}+${items.length}`, count: items.length, items };
  }

  #batchOf(items: readonly Queued[]): Batch {
    return {
      subject: subjectForBatch(this.#settings.source, this.#settings.subjectPrefix),
      payload: batchPayload(items),
      msgID: `${items[0]!.id}+${items.length}`,
      count: items.length,
      items,
    };
  }

  #send(batch: Batch): void {
    this.#inFlight += 1;
    this.#sending.add(batch);
    this.#js.publish(batch.subject, batch.payload, { msgID: batch.msgID, ...this.#signed(batch.payload) }).then(
      () => {
        this.#inFlight -= 1;
        this.#sending.delete(batch);
        this.#failing = false;
        this.#settle(batch);
        this.#notifyWaiters();
        // While someone waits in flush() or acknowledged(), what is left goes at once.
        this.#pump(this.#idle.length > 0 || this.#waiters.length > 0);
        this.#notifyIdle();
      },
      (error: unknown) => {
        this.#inFlight -= 1;
        this.#sending.delete(batch);
        const retrying = classifyPublishFailure(error) === 'retryable';
        this.#settings.onError?.(error, retrying);
        if (retrying) {
          // Only a bus that is away holds recording back (and commands are refused meanwhile).
          this.#failing = true;
          this.#retry.unshift(batch);
          clearTimeout(this.#retryTimer);
          this.#retryTimer = setTimeout(() => this.#pump(false), 500);
          return;
        }
        this.#refused(batch, error);
        this.#notifyWaiters();
        this.#pump(this.#idle.length > 0 || this.#waiters.length > 0);
        this.#notifyIdle();
      },
    );
  }

  /** The batch's events are done with: stored, or given up on (reported). */
  #settle(batch: Batch): void {
    this.#unacked -= batch.count;
    for (const item of batch.items) {
      this.#queuedBytes -= item.bytes;
      this.#arena.release(item);
      const share = item.share;
      if (!share) continue;
      share.bytes -= item.bytes;
      if (--share.events === 0) this.#activeShares -= 1;
      if (share.waiting && !this.overShare(share, 0, 0.5)) for (const resume of share.takeResumers()!) resume();
    }
  }

  /**
   * The bus refused the batch for a reason retrying cannot fix: a batch is split in halves (the
   * others in it flow on), a single event goes out in its reduced form, a refused reduced form is
   * dropped and reported. Never retried as it was, so one event cannot hold the rest back.
   */
  #refused(batch: Batch, error: unknown): void {
    if (batch.count > 1) {
      const half = Math.ceil(batch.count / 2);
      this.#retry.unshift(this.#batchOf(batch.items.slice(0, half)), this.#batchOf(batch.items.slice(half)));
      return;
    }
    const item = batch.items[0]!;
    const message = error instanceof Error ? error.message : String(error);
    const event = JSON.parse(item.chunk.toString('utf8', item.start, item.end)) as CloudEvent;
    if (item.reduced) {
      this.#settle(batch);
      this.#settings.onReduced?.(event, { reason: 'rejected', originalBytes: item.bytes, dropped: ['*'], error: message }, true);
      // Whoever waits for this event's acknowledgement learns it was lost.
      const lost = this.#waiters.filter((waiter) => waiter.upTo >= item.ordinal);
      this.#waiters = this.#waiters.filter((waiter) => waiter.upTo < item.ordinal);
      for (const waiter of lost) waiter.reject(new Error(`the bus refused event ${item.id}: ${message}`));
      return;
    }
    const reduced = reduceEvent(event, 'rejected', item.bytes, this.maxEventBytes, message);
    // The replacement goes out on its own, not among the queued batches; the event it replaces is done with.
    const replacement = queued(item.ordinal, item.id, alone(reduced.json), true, item.share);
    this.#arena.release(item);
    this.#queuedBytes += replacement.bytes - item.bytes;
    if (item.share) item.share.bytes += replacement.bytes - item.bytes;
    this.#settings.onReduced?.(reduced.event, reduced.reduction, false);
    this.#retry.unshift(this.#batchOf([replacement]));
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

/**
 * Only a failure that says this message is refused (larger than max_payload, refused by the
 * stream's API with a 4xx) is 'rejected'. Failures that can pass (no connection, no JetStream
 * answering, a timeout) and any failure not recognised are retried: unknown means fail closed.
 */
const classifyPublishFailure = (error: unknown): PublishFailure => {
  // The client refuses a payload over the server's max_payload before sending it.
  if (error instanceof InvalidArgumentError) return 'rejected';
  // JetStream's API answered for this message: 4xx (e.g. larger than the stream's max_msg_size).
  if (error instanceof JetStreamApiError && error.status >= 400 && error.status < 500) return 'rejected';
  return 'retryable';
};

const decoder = new TextDecoder();

/** A NATS message carries one CloudEvent or a CloudEvents JSON batch (an array). */
export const decodeEvents = (data: Uint8Array): CloudEvent[] => {
  const parsed: unknown = JSON.parse(decoder.decode(data));
  const events = Array.isArray(parsed) ? parsed : [parsed];
  return events.filter((event): event is CloudEvent => typeof event === 'object' && event !== null && typeof (event as CloudEvent).id === 'string');
};
