import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { jetstreamManager } from '@nats-io/jetstream';
import { buildEvent, subjectWildcard, type CloudEvent } from '@sluice/contracts';
import { connectBus, ensureEventStream, EventPublisher, QueueShare, type NatsConnection, type PublisherSettings } from '@sluice/event-bus';

/**
 * The publisher's queue shares (EventPublisher.overShare) on a real NATS: a share counts its
 * owner's events until JetStream acknowledges them, through retries (a subject no stream takes:
 * the bus is away) and refusals (a stream whose max_msg_size the events exceed: split, reduced,
 * dropped).
 */
const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const run = randomUUID().slice(0, 8);
const streams: string[] = [];
const publishers: EventPublisher[] = [];
let nc: NatsConnection;

beforeAll(async () => {
  nc = await connectBus(NATS_URL, 'test');
});

afterAll(async () => {
  for (const publisher of publishers) await publisher.close(100);
  const manager = await jetstreamManager(nc);
  for (const stream of streams) await manager.streams.delete(stream).catch(() => undefined);
  await nc?.drain();
});

let count = 0;
/** A subject prefix of its own; with a stream taking it unless `stream` is false. */
const prefixed = async (stream = true): Promise<{ subjectPrefix: string; stream: string }> => {
  const id = `${run}${++count}`;
  const name = `SLUICE_QUEUE_SHARE_${id}`;
  const subjectPrefix = `queueshare.${id}.events`;
  streams.push(name);
  if (stream) await ensureEventStream(nc, { stream: name, subjectPrefix, duplicateWindowMs: 120_000 });
  return { subjectPrefix, stream: name };
};

const publisherOn = (subjectPrefix: string, settings: Partial<PublisherSettings>): EventPublisher => {
  const publisher = new EventPublisher(nc, { source: 'proxy', subjectPrefix, ...settings });
  publishers.push(publisher);
  return publisher;
};

let ordinal = 0;
const completed = (text = 'SELECT 1'): CloudEvent =>
  buildEvent('command.completed', { id: `e${run}-${++ordinal}`, source: 'test', subject: 's', time: new Date(0), sessionseq: ordinal, data: { commandId: `c${ordinal}`, outcome: text, ok: true, durationMs: 1 } });

const until = async (condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> => {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
};

describe('a share of the publisher queue', () => {
  it('counts its events and bytes until acknowledged, and resumes its owner once, under half its part', async () => {
    const { subjectPrefix } = await prefixed();
    // Batches of 2, one at a time: the share falls by 2 at each acknowledgement.
    const publisher = publisherOn(subjectPrefix, { maxQueuedEvents: 40, maxBatchEvents: 2, maxInFlight: 1, maxDelayMs: 0 });
    const share = new QueueShare();
    const other = new QueueShare();
    for (let index = 0; index < 20; index++) publisher.publish(completed(), share);
    expect(share.events).toBe(20);
    expect(share.bytes).toBeGreaterThan(0);
    // Alone with events queued, a share may have half the queue: 20 of 40.
    expect(publisher.overShare(share)).toBe(true);
    expect(publisher.overShare(other)).toBe(false);
    const resumedWith: number[] = [];
    share.whenUnder(() => resumedWith.push(share.events));
    await publisher.flush();
    // Not resumed while 10 (half its part) or more were left: at the first event under it.
    expect(resumedWith).toEqual([9]);
    expect(share.waiting).toBe(false);
    expect({ events: share.events, bytes: share.bytes }).toEqual({ events: 0, bytes: 0 });
  });

  it('splits the queue between the shares with events queued, a part kept free', async () => {
    const { subjectPrefix } = await prefixed();
    // Nothing is sent before the checks (a long gathering delay).
    const publisher = publisherOn(subjectPrefix, { maxQueuedEvents: 30, maxDelayMs: 10_000 });
    const [first, second] = [new QueueShare(), new QueueShare()];
    for (let index = 0; index < 10; index++) publisher.publish(completed(), first);
    expect(publisher.overShare(first)).toBe(false);
    publisher.publish(completed(), second);
    // Two shares with events: a third of 30 each.
    expect(publisher.overShare(first)).toBe(true);
    expect(publisher.overShare(second)).toBe(false);
    // Events to come count as queued.
    expect(publisher.overShare(second, 9)).toBe(true);
    // Bytes count as events do.
    const byBytes = publisherOn(subjectPrefix, { maxQueuedBytes: 2_000, maxDelayMs: 10_000 });
    const share = new QueueShare();
    byBytes.publish(completed('x'.repeat(1_200)), share);
    expect(byBytes.overShare(share)).toBe(true);
    await Promise.all([publisher.flush(), byBytes.flush()]);
  });

  it('gives a share that comes late at most half of the room the others left, so shares taken one after another never fill the queue', async () => {
    const { subjectPrefix } = await prefixed();
    const publisher = publisherOn(subjectPrefix, { maxQueuedEvents: 120, maxDelayMs: 10_000 });
    const shares = [new QueueShare(), new QueueShare(), new QueueShare(), new QueueShare()];
    // Each takes all it may while it is the last to come: 1/2, then what is left of 1/3, 1/4, 1/5.
    for (const share of shares) while (!publisher.overShare(share)) publisher.publish(completed(), share);
    expect(shares.map((share) => share.events)).toEqual([60, 30, 15, 8]);
    expect(publisher.pending).toBeLessThan(120);
    expect(publisher.healthy).toBe(true);
    await publisher.flush();
  });

  it('keeps its count through retries, and through refusals split, reduced and dropped, to zero once all are done with', async () => {
    // No stream takes the subject yet: every publish fails and is retried (the bus is away).
    const { subjectPrefix, stream } = await prefixed(false);
    const errors: boolean[] = [];
    const dropped = vi.fn();
    const publisher = publisherOn(subjectPrefix, {
      maxBatchEvents: 4,
      maxDelayMs: 0,
      onError: (_error, retrying) => errors.push(retrying),
      onReduced: (_event, _reduction, gone) => gone && dropped(),
    });
    const share = new QueueShare();
    for (let index = 0; index < 4; index++) publisher.publish(completed('y'.repeat(100)), share);
    publisher.publish(completed(), undefined);
    const queuedBytes = share.bytes;
    void publisher.flush();
    await until(() => errors.length > 0, 'a failed publish');
    expect(errors.every((retrying) => retrying)).toBe(true);
    expect(publisher.healthy).toBe(false);
    expect({ events: share.events, bytes: share.bytes }).toEqual({ events: 4, bytes: queuedBytes });
    // The bus is back with a stream that refuses every message as too large (max_msg_size): halves,
    // then each event alone, then its reduced form, which is refused too and dropped.
    await (await jetstreamManager(nc)).streams.add({ name: stream, subjects: [subjectWildcard(subjectPrefix)], max_msg_size: 64 });
    await until(() => publisher.pending === 0, 'every event done with');
    expect(errors.filter((retrying) => !retrying).length).toBeGreaterThan(0);
    expect(dropped).toHaveBeenCalledTimes(5);
    expect({ events: share.events, bytes: share.bytes }).toEqual({ events: 0, bytes: 0 });
  }, 30_000);

  it('is counted again from zero by the next owner when it ran empty (no count left behind)', async () => {
    const { subjectPrefix } = await prefixed();
    const publisher = publisherOn(subjectPrefix, { maxQueuedEvents: 10, maxDelayMs: 0 });
    const [first, second] = [new QueueShare(), new QueueShare()];
    publisher.publish(completed(), first);
    publisher.publish(completed(), second);
    await publisher.flush();
    // Both ran empty: a share alone again has half the queue, not a third.
    for (let index = 0; index < 4; index++) publisher.publish(completed(), first);
    expect(publisher.overShare(first)).toBe(false);
    publisher.publish(completed(), first);
    expect(publisher.overShare(first)).toBe(true);
    await publisher.flush();
  });
});
