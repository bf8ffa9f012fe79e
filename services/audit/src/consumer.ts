import { nanos, type NatsConnection } from '@nats-io/transport-node';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type Consumer, type JsMsg } from '@nats-io/jetstream';
import { decodeEvents, isJetStreamApiError, JetStreamErrorCode, type ProvenanceVerifier } from '@sluice/event-bus';
import type { CloudEvent } from '@sluice/contracts';
import { MAX_INDEXED_TEXT_BYTES, unindexableText, type RefusedEvent, type RejectedRecord } from '@sluice/event-store';


/** The last time text found to be a timestamp: the events of a batch mostly share their millisecond. */
let lastTimestamp = '';

/**
 * The times the store can keep: timestamptz takes the text toISOString writes only for years 1
 * to 9999 (year 0, a signed year are refused). Outside them the COPY fails and with it the
 * whole batch, again at every retry: the events behind it would never be stored.
 */
const EARLIEST_STORABLE_TIME = Date.parse('0001-01-01T00:00:00.000Z');
const LATEST_STORABLE_TIME = Date.parse('9999-12-31T23:59:59.999Z');

/**
 * Why an event cannot be stored (a foreign publisher on our subjects may send anything); such an
 * event is refused (kept as a rejected record where the consumer keeps them) and acknowledged with
 * its batch, so it can never block the events behind it.
 */
const unstorable = (event: CloudEvent): string | undefined => {
  for (const attribute of ['id', 'source', 'type', 'subject'] as const) {
    const value = (event as unknown as Record<string, unknown>)[attribute];
    if (typeof value !== 'string' || value === '') return `${attribute} is missing`;
  }
  const time = (event as unknown as Record<string, unknown>).time;
  if (typeof time !== 'string') return 'time is missing or not a timestamp';
  if (time === lastTimestamp) return undefined;
  const millis = Date.parse(time);
  if (Number.isNaN(millis)) return 'time is missing or not a timestamp';
  if (millis < EARLIEST_STORABLE_TIME || millis > LATEST_STORABLE_TIME) return 'time is outside the years 1 to 9999 the store keeps';
  lastTimestamp = time;
  return undefined;
};

/**
 * Nesting an event may have: deeper, hashing it overflows the stack (and PostgreSQL's jsonb
 * refuses it from some ten thousand levels), so the whole batch failed at every retry and the
 * events behind it were never stored. Events taken as written are never this deep (their
 * scanner follows 64 levels at most and leaves deeper ones to decodeEvents).
 */
const MAX_NESTING = 1_000;

/** Whether `value` holds arrays or objects more than `levels` deep; never goes deeper itself. */
const nestedDeeperThan = (value: unknown, levels: number): boolean => {
  if (value === null || typeof value !== 'object') return false;
  if (levels === 0) return true;
  if (Array.isArray(value)) {
    for (const inner of value) if (nestedDeeperThan(inner, levels - 1)) return true;
    return false;
  }
  const record = value as Record<string, unknown>;
  for (const key in record) if (nestedDeeperThan(record[key], levels - 1)) return true;
  return false;
};

const MAX_REJECTED_PAYLOAD = 64 * 1024;

const text = (value: unknown): string | undefined => (typeof value === 'string' && value !== '' ? value : undefined);

/** A refused event (or unreadable message) as the store keeps it; its key makes a retry store it once. */
const rejectedRecord = (message: JsMsg, index: number, reason: string, payload: string, signer: string | undefined, event?: CloudEvent): RejectedRecord => {
  const fields = (event ?? {}) as unknown as Record<string, unknown>;
  return {
    key: `${message.info.stream}:${message.seq}:${index}`,
    reason,
    natsSubject: message.subject,
    streamSeq: message.seq,
    payload: payload.length > MAX_REJECTED_PAYLOAD ? payload.slice(0, MAX_REJECTED_PAYLOAD) : payload,
    ...(signer === undefined ? {} : { claimedSigner: signer }),
    ...(text(fields.id) === undefined ? {} : { eventId: text(fields.id)! }),
    ...(text(fields.type) === undefined ? {} : { eventType: text(fields.type)! }),
    ...(text(fields.subject) === undefined ? {} : { sessionId: text(fields.subject)! }),
  };
};

export interface ConsumerLogger {
  info(object: object, message?: string): void;
  warn(object: object, message?: string): void;
  error(object: object, message?: string): void;
}

export interface DurableConsumerSettings<T = CloudEvent[]> {
  readonly stream: string;
  /** `audit-store`, `audit-export-<name>` */
  readonly durable: string;
  /** Messages handed to the handler at most at once (each may hold a batch of events). */
  readonly batchMessages: number;
  /** Bytes handed over at most at once (default 1 MiB, ~2,000 events): keeps transactions short and the event loop free. */
  readonly batchBytes?: number;
  /**
   * How long a batch may wait for more messages after its first arrived (default 0: it takes
   * what is there). Each batch costs the handler a fixed amount (a transaction) whatever its
   * size, so at a trickle of one message per publisher window a short wait makes one batch of
   * several. The messages are in the stream already: waiting delays storing, never risks it.
   */
  readonly gatherMs?: number;
  /**
   * CPU work on a batch that needs nothing from the batch before it (the event store's
   * prepare). When given, the next batch is taken, decoded and prepared while the current one
   * is handled, so that work overlaps the handler's I/O; without it, handle gets the events.
   * The batch taken ahead is checked against the handled sequences before the current one is
   * done, so a message redelivered meanwhile (after ack_wait) can reach the handler twice: only
   * for idempotent handlers (the store, idempotent by event id).
   */
  readonly prepare?: (events: CloudEvent[], signerOf: (event: CloudEvent) => string | undefined) => T | Promise<T>;
  /**
   * Reads a message's events straight from its bytes when they are exactly what a Sluice
   * publisher writes (the event store's readWrittenEvents), else undefined: then, or when any
   * event of the message would be refused, the message is decoded as any other.
   */
  readonly readWritten?: (payload: Uint8Array) => readonly CloudEvent[] | undefined;
  /**
   * Called with every genuine event of a fetched batch (prepared); acks follow only after it
   * resolves. The events it names as refused (by the store) are refused as the consumer refuses
   * events: kept through `onRejected` with the rest, before the acks.
   */
  readonly handle: (batch: T) => Promise<void | HandledBatch>;
  /**
   * Checks each message's signature: events of a message that is not provably from a Sluice
   * service allowed to publish them never reach `handle`. Without it every event is taken.
   */
  readonly provenance?: ProvenanceVerifier;
  /**
   * Receives what was refused (not genuine, unreadable, missing attributes), after `handle` and
   * before the acks; a failure retries the batch. Without it refusals are only logged.
   */
  readonly onRejected?: (records: readonly RejectedRecord[]) => Promise<void>;
  readonly logger: ConsumerLogger;
  readonly maxBackoffMs?: number;
}

/** What a handler could not take of a batch. */
export interface HandledBatch {
  /** Events refused on their own, by id, with why. */
  readonly refused: readonly RefusedEvent[];
}

export interface ConsumerState {
  readonly durable: string;
  /** Messages in the stream this consumer has not yet acknowledged. */
  readonly pending: number;
  readonly handledEvents: number;
  /** Events (or unreadable messages) refused as not genuine since start. */
  readonly refusedEvents: number;
  readonly failing: boolean;
  readonly lastError?: string;
}

const sleep = (ms: number, signal: { stopped: boolean }): Promise<void> =>
  new Promise((resolve) => {
    const started = Date.now();
    const tick = (): void => {
      if (signal.stopped || Date.now() - started >= ms) resolve();
      else setTimeout(tick, Math.min(100, ms));
    };
    tick();
  });

/** Where the events of one message start in its batch's events, and which of the message's events they are. */
interface MessageEvents {
  readonly message: JsMsg;
  readonly first: number;
  /** Each event's index in the message; absent when they are all of them, in order. */
  readonly indexes?: number[];
}

interface TakenBatch<T> {
  readonly messages: JsMsg[];
  readonly events: CloudEvent[];
  /** One per message with events, in order: a refused event's message is found from it. */
  readonly origins: MessageEvents[];
  readonly rejected: RejectedRecord[];
  readonly signers: WeakMap<CloudEvent, string>;
  /** Absent when there is no prepare step or it threw (it is then retried with the handler). */
  readonly prepared?: { readonly value: T };
}

/**
 * A durable JetStream pull consumer that hands batches to a handler and acknowledges (AckAll on
 * the last message) only after the handler succeeded; on failure the same batch is retried with
 * backoff, so nothing is lost and, because redeliveries at or below the last handled stream
 * sequence are dropped, nothing is handed over twice by this process.
 */
export class DurableConsumer<T = CloudEvent[]> {
  private feeder: Promise<void> | undefined;
  private readonly buffer: JsMsg[] = [];
  /** When each buffered message arrived (Date.now()), in the buffer's order. */
  private readonly arrivals: number[] = [];
  private bufferedBytes = 0;
  private wake: (() => void) | undefined;
  private readonly signal = { stopped: false };
  private loop: Promise<void> | undefined;
  /** Stream sequences handled here recently: a redelivery of one (lost ack) is acked, not handled again. */
  private readonly handledSeqs = new Set<number>();
  private handledEvents = 0;
  private refusedEvents = 0;
  private failing = false;
  private lastError: string | undefined;
  private pending = 0;
  private infoTimer: NodeJS.Timeout | undefined;
  /** The confirmation of the last batch's ack, awaited before the next batch's acks and at stop. */
  private acking: Promise<void> = Promise.resolve();

  constructor(
    private readonly nc: NatsConnection,
    private readonly settings: DurableConsumerSettings<T>,
  ) {}

  private get batchBytes(): number {
    return this.settings.batchBytes ?? 1024 * 1024;
  }

  async start(): Promise<void> {
    const jsm = await jetstreamManager(this.nc);
    const config = {
      durable_name: this.settings.durable,
      // Explicit, not All: acking a later message must never acknowledge one an earlier
      // instance took and did not handle (it is redelivered after ack_wait instead).
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: nanos(30_000),
      max_ack_pending: Math.max(1_000, this.settings.batchMessages * 4),
    };
    try {
      await jsm.consumers.info(this.settings.stream, this.settings.durable);
    } catch (error) {
      // Only a missing consumer is created; any other answer (no permission, no stream) is the caller's to see.
      if (!isJetStreamApiError(error, JetStreamErrorCode.ConsumerNotFound)) throw error;
      await jsm.consumers.add(this.settings.stream, config);
    }
    const consumer = await jetstream(this.nc).consumers.get(this.settings.stream, this.settings.durable);
    this.feeder = this.feed(consumer);
    this.loop = this.run();
    const refresh = (): void => {
      // Asked of the server each time: info(true) answers what the consumer knew when it was got.
      consumer
        .info()
        .then((info) => {
          this.pending = info.num_pending + info.num_ack_pending;
        })
        .catch(() => undefined);
    };
    refresh();
    this.infoTimer = setInterval(refresh, 2_000);
    this.infoTimer.unref();
  }

  /**
   * Bounded fetches rather than consume(): when we stop, no pull request is left open on the
   * server, so no message is delivered to a subscription that is gone (it would wait ack_wait).
   */
  private async feed(consumer: Consumer): Promise<void> {
    while (!this.signal.stopped) {
      if (this.buffer.length >= this.settings.batchMessages * 2 || this.bufferedBytes >= this.batchBytes * 4) {
        await sleep(10, this.signal);
        continue;
      }
      try {
        const messages = await consumer.fetch({ max_messages: Math.min(this.settings.batchMessages, 100), expires: 1_000 });
        for await (const message of messages) {
          this.buffer.push(message);
          this.arrivals.push(Date.now());
          this.bufferedBytes += message.data.length;
          this.wake?.();
        }
      } catch (error) {
        if (this.signal.stopped) break;
        this.settings.logger.warn({ err: error, consumer: this.settings.durable }, 'fetch failed; retrying');
        await sleep(500, this.signal);
      }
    }
  }

  state(): ConsumerState {
    return {
      durable: this.settings.durable,
      pending: this.pending,
      handledEvents: this.handledEvents,
      refusedEvents: this.refusedEvents,
      failing: this.failing,
      ...(this.lastError === undefined ? {} : { lastError: this.lastError }),
    };
  }

  private async nextBatch(): Promise<JsMsg[]> {
    while (this.buffer.length === 0 && !this.signal.stopped) {
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, 250);
      });
      this.wake = undefined;
    }
    await this.gather();
    // Let messages that arrived in the same tick join the batch.
    await new Promise((resolve) => setImmediate(resolve));
    if (this.signal.stopped) return [];
    let count = 0;
    let bytes = 0;
    while (count < this.buffer.length && count < this.settings.batchMessages && (count === 0 || bytes + this.buffer[count]!.data.length <= this.batchBytes)) {
      bytes += this.buffer[count]!.data.length;
      count += 1;
    }
    this.bufferedBytes -= bytes;
    this.arrivals.splice(0, count);
    return this.buffer.splice(0, count);
  }

  /** Waits until the oldest buffered message is gatherMs old, or a full batch is buffered. */
  private async gather(): Promise<void> {
    const gatherMs = this.settings.gatherMs ?? 0;
    while (!this.signal.stopped && this.buffer.length > 0 && this.buffer.length < this.settings.batchMessages && this.bufferedBytes < this.batchBytes) {
      const left = this.arrivals[0]! + gatherMs - Date.now();
      if (left <= 0) return;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, left);
      });
      this.wake = undefined;
    }
  }

  private async take(decodeFailures: Set<number>): Promise<TakenBatch<T> | undefined> {
    const messages = (await this.nextBatch()).filter((message) => {
      if (!this.handledSeqs.has(message.seq)) return true;
      message.ack();
      return false;
    });
    if (messages.length === 0) return undefined;
    const events: CloudEvent[] = [];
    const origins: MessageEvents[] = [];
    const rejected: RejectedRecord[] = [];
    const signers = new WeakMap<CloudEvent, string>();
    const lookahead = this.settings.prepare !== undefined;
    const provenance = this.settings.provenance;
    for (const message of messages) {
      // Taken ahead, this runs while the previous batch is being handled: one message per turn
      // of the event loop, so that batch's replies are not held up behind our parsing.
      if (lookahead) await new Promise((resolve) => setImmediate(resolve));
      const origin = provenance?.checkMessage(message.data, message.headers);
      const refuse = (reason: string, index: number, payload: string, event?: CloudEvent): void => {
        rejected.push(rejectedRecord(message, index, reason, payload, origin?.genuine ? origin.signer : origin?.claimedSigner, event));
      };
      /** A genuine event the store cannot take for its data: this record is its only copy, kept whole (its message fit the bus). */
      const keepWhole = (reason: string, index: number, payload: string, event: CloudEvent): void => {
        rejected.push({ ...rejectedRecord(message, index, reason, '', origin?.genuine ? origin.signer : undefined, event), payload });
      };
      if (origin === undefined || origin.genuine) {
        const written = this.settings.readWritten?.(message.data);
        const signer = origin?.signer;
        // Whether the signer may publish an event depends on its type alone: asked once per type in a row.
        let allowedType: string | undefined;
        const allowed = (event: CloudEvent): boolean => {
          if (signer === undefined || event.type === allowedType) return true;
          if (provenance!.refuseEvent(signer, event) !== undefined) return false;
          allowedType = event.type;
          return true;
        };
        if (written !== undefined && written.every((event) => unstorable(event) === undefined && allowed(event))) {
          if (written.length > 0) origins.push({ message, first: events.length });
          for (const event of written) {
            events.push(event);
            if (signer !== undefined) signers.set(event, signer);
          }
          continue;
        }
      }
      let decoded: CloudEvent[];
      try {
        decoded = decodeEvents(message.data);
      } catch (error) {
        // Not JSON: nothing can ever be made of it. Refused, acknowledged with the rest.
        if (!decodeFailures.has(message.seq)) {
          decodeFailures.add(message.seq);
          this.settings.logger.error({ err: error, consumer: this.settings.durable, seq: message.seq, subject: message.subject }, 'undecodable message refused');
        }
        refuse(origin && !origin.genuine ? `${origin.reason}; not JSON` : 'not JSON', 0, Buffer.from(message.data).toString('utf8'));
        continue;
      }
      if (decoded.length === 0) {
        // JSON, but no event with an id in it: nothing to store, still not to be lost.
        refuse(origin && !origin.genuine ? `${origin.reason}; no event with an id` : 'no event with an id', 0, Buffer.from(message.data).toString('utf8'));
        continue;
      }
      const fromMessage: MessageEvents = { message, first: events.length, indexes: [] };
      origins.push(fromMessage);
      decoded.forEach((event, index) => {
        const tooDeep = nestedDeeperThan(event, MAX_NESTING);
        const unindexable = tooDeep ? undefined : unindexableText(event);
        const dataProblem =
          unstorable(event) ??
          (tooDeep ? `nested more than ${MAX_NESTING} levels deep` : undefined) ??
          (unindexable === undefined ? undefined : `${unindexable} is longer than the ${MAX_INDEXED_TEXT_BYTES} bytes the store indexes`);
        const provenanceProblem = origin === undefined ? undefined : origin.genuine ? provenance!.refuseEvent(origin.signer, event) : origin.reason;
        const problem = dataProblem ?? provenanceProblem;
        if (problem === undefined) {
          events.push(event);
          fromMessage.indexes!.push(index);
          if (origin?.genuine) signers.set(event, origin.signer);
          return;
        }
        this.settings.logger.error({ consumer: this.settings.durable, seq: message.seq, subject: message.subject, id: event.id, problem }, 'event refused');
        // JSON.stringify overflows the stack on such an event too: the message's own text is kept instead.
        const payload = tooDeep ? Buffer.from(message.data).toString('utf8') : JSON.stringify(event);
        if (provenanceProblem === undefined) keepWhole(problem, index, payload, event);
        else refuse(problem, index, payload, event);
      });
    }
    const prepare = this.settings.prepare;
    if (prepare === undefined || events.length === 0) return { messages, events, origins, rejected, signers };
    try {
      return { messages, events, origins, rejected, signers, prepared: { value: await prepare(events, (event) => signers.get(event)) } };
    } catch {
      return { messages, events, origins, rejected, signers };
    }
  }

  /**
   * The events the handler refused, as records keyed like the consumer's own refusals (a
   * message's key and the event's index in it): a retried batch refuses each once.
   */
  private refusedByHandler(taken: TakenBatch<T>, refused: readonly RefusedEvent[]): RejectedRecord[] {
    return refused.map(({ id, reason }) => {
      // The first event with the id: the store keeps that one of repeated ids.
      const position = taken.events.findIndex((event) => event.id === id);
      const event = taken.events[position];
      const origin = taken.origins.findLast((candidate) => candidate.first <= position);
      if (event === undefined || origin === undefined) throw new Error(`the handler refused an event not in its batch: ${id}`);
      const index = origin.indexes?.[position - origin.first] ?? position - origin.first;
      const { message } = origin;
      this.settings.logger.error({ consumer: this.settings.durable, seq: message.seq, subject: message.subject, id, problem: reason }, 'event refused by the store');
      // A genuine event whose only copy is now this record: kept whole (its message fit the bus), not cut as a stranger's text is.
      return { ...rejectedRecord(message, index, reason, '', taken.signers.get(event), event), payload: JSON.stringify(event) };
    });
  }

  private prepared(taken: TakenBatch<T>): T | Promise<T> {
    if (taken.prepared) return taken.prepared.value;
    // Without a prepare step T is CloudEvent[] (the settings' default).
    return this.settings.prepare ? this.settings.prepare(taken.events, (event) => taken.signers.get(event)) : (taken.events as unknown as T);
  }

  private async run(): Promise<void> {
    const decodeFailures = new Set<number>();
    const lookahead = this.settings.prepare !== undefined;
    let next: Promise<TakenBatch<T> | undefined> | undefined;
    try {
      while (!this.signal.stopped) {
        const taken = await (next ?? this.take(decodeFailures));
        next = undefined;
        if (taken === undefined) continue;
        // Taken now, its decoding and preparing run while this batch's handler waits on I/O.
        // It is handled only after this one, so the order of the stream is kept.
        if (lookahead) next = this.take(decodeFailures);
        const { messages: batch, events } = taken;
        let rejected = taken.rejected;
        let backoff = 200;
        for (;;) {
          try {
            const handled = events.length > 0 ? await this.settings.handle(await this.prepared(taken)) : undefined;
            // Asked afresh at each try: a retry refuses the same events under the same keys.
            rejected = handled && handled.refused.length > 0 ? [...taken.rejected, ...this.refusedByHandler(taken, handled.refused)] : taken.rejected;
            if (rejected.length > 0) await this.settings.onRejected?.(rejected);
            this.failing = false;
            break;
          } catch (error) {
            this.failing = true;
            this.lastError = error instanceof Error ? error.message : String(error);
            this.settings.logger.warn({ err: error, consumer: this.settings.durable, events: events.length, retryInMs: backoff }, 'batch not handled; retrying');
            for (const message of batch) message.working();
            if (this.signal.stopped) return this.release(batch);
            await sleep(backoff, this.signal);
            if (this.signal.stopped) return this.release(batch);
            backoff = Math.min(backoff * 2, this.settings.maxBackoffMs ?? 30_000);
          }
        }
        const last = batch[batch.length - 1]!;
        for (const message of batch) {
          this.handledSeqs.add(message.seq);
          if (message !== last) message.ack();
        }
        while (this.handledSeqs.size > 100_000) this.handledSeqs.delete(this.handledSeqs.values().next().value!);
        this.handledEvents += events.length - (rejected.length - taken.rejected.length);
        this.refusedEvents += rejected.length;
        // One confirmation in flight at most: the previous batch's (long answered by now).
        await this.acking;
        // Acks go out in order on one connection: once the last is confirmed, all are. The next
        // batch does not wait for the confirmation (a round trip to the server): an ack that is
        // lost is a redelivery, dropped here by seq or stored once by an idempotent handler.
        this.acking = last.ackAck().then(
          () => undefined,
          (error: unknown) => {
            // Redelivered later; the handler's side effect is idempotent (store) or deduplicated by seq.
            this.settings.logger.warn({ err: error, consumer: this.settings.durable }, 'ack not confirmed');
          },
        );
      }
    } finally {
      await this.acking;
      // A batch taken ahead and never handled goes back at once, in order.
      const ahead = await next?.catch(() => undefined);
      if (ahead) this.release(ahead.messages);
    }
  }

  /** Hands messages back so the next instance gets them now, in order, not after ack_wait. */
  private release(messages: readonly JsMsg[]): void {
    for (const message of messages) message.nak();
  }

  /** Stops taking messages, waits for the batch in hand and hands back the rest. */
  async stop(): Promise<void> {
    this.signal.stopped = true;
    clearInterval(this.infoTimer);
    this.wake?.();
    await this.loop;
    await this.feeder;
    this.release(this.buffer.splice(0));
    this.arrivals.length = 0;
    this.bufferedBytes = 0;
    await this.nc.flush().catch(() => undefined);
  }
}
