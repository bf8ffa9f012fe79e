import { describe, expect, it, vi } from 'vitest';
import { InvalidArgumentError, type NatsConnection } from '@nats-io/transport-node';
import { buildEvent, type CloudEvent } from '@sluice/contracts';

/** Each publish waits here until the spec answers it: acknowledged, or failed. */
const publishes: Array<{ readonly payload: Uint8Array; readonly ack: () => void; readonly fail: (error: unknown) => void }> = [];

vi.mock('@nats-io/jetstream', async (importOriginal) => ({
  ...(await importOriginal<Record<string, unknown>>()),
  jetstream: () => ({
    publish: (_subject: string, payload: Uint8Array) =>
      new Promise((resolve, reject) => publishes.push({ payload, ack: () => resolve({ seq: 1 }), fail: reject })),
  }),
}));

const { EventPublisher, QueueShare } = await import('./publisher.js');

const connection = { info: { max_payload: 1024 * 1024 } } as unknown as NatsConnection;
const turn = () => new Promise((resolve) => setImmediate(resolve));

let ordinal = 0;
const completed = (text = 'SELECT 1'): CloudEvent =>
  buildEvent('command.completed', { id: `e${++ordinal}`, source: 'test', subject: 's', time: new Date(0), sessionseq: ordinal, data: { commandId: `c${ordinal}`, outcome: text, ok: true, durationMs: 1 } });

/** Sends what is queued now and answers every publish waiting with `answer`. */
const answerAll = async (publisher: InstanceType<typeof EventPublisher>, answer: 'ack' | Error): Promise<void> => {
  void publisher.flush();
  await turn();
  while (publishes.length > 0) {
    for (const waiting of publishes.splice(0)) {
      if (answer === 'ack') waiting.ack();
      else waiting.fail(answer);
    }
    await turn();
  }
};

describe('a share of the publisher queue', () => {
  it('counts its events and bytes until acknowledged, and resumes its owner once, under half its part', async () => {
    const publisher = new EventPublisher(connection, { source: 'proxy', subjectPrefix: 'x', maxQueuedEvents: 40, maxBatchEvents: 2, maxInFlight: 1, maxDelayMs: 0 });
    const share = new QueueShare();
    const other = new QueueShare();
    for (let index = 0; index < 20; index++) publisher.publish(completed(), share);
    expect(share.events).toBe(20);
    expect(share.bytes).toBeGreaterThan(0);
    // Alone with events queued, a share may have half the queue: 20 of 40.
    expect(publisher.overShare(share)).toBe(true);
    expect(publisher.overShare(other)).toBe(false);
    const resumed = vi.fn();
    share.whenUnder(resume);
    function resume() {
      resumed(share.events);
    }
    // One batch of 2 acknowledged at a time: not resumed while 10 (half its part) or more are left.
    void publisher.flush();
    await turn();
    for (let acked = 0; acked < 5; acked++) {
      publishes.shift()!.ack();
      await turn();
    }
    expect(share.events).toBe(10);
    expect(resumed).not.toHaveBeenCalled();
    await answerAll(publisher, 'ack');
    expect(resumed).toHaveBeenCalledTimes(1);
    expect(resumed).toHaveBeenCalledWith(9);
    expect(share.waiting).toBe(false);
    expect({ events: share.events, bytes: share.bytes }).toEqual({ events: 0, bytes: 0 });
  });

  it('splits the queue between the shares with events queued, a part kept free', () => {
    const publisher = new EventPublisher(connection, { source: 'proxy', subjectPrefix: 'x', maxQueuedEvents: 30, maxDelayMs: 10_000 });
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
    const byBytes = new EventPublisher(connection, { source: 'proxy', subjectPrefix: 'x', maxQueuedBytes: 2_000, maxDelayMs: 10_000 });
    const share = new QueueShare();
    byBytes.publish(completed('x'.repeat(1_200)), share);
    expect(byBytes.overShare(share)).toBe(true);
  });

  it('keeps its count through retries, and through refusals split, reduced and dropped, to zero once all are done with', async () => {
    const dropped = vi.fn();
    const publisher = new EventPublisher(connection, { source: 'proxy', subjectPrefix: 'x', maxBatchEvents: 4, maxDelayMs: 0, onReduced: (_event, _reduction, gone) => gone && dropped() });
    const share = new QueueShare();
    for (let index = 0; index < 4; index++) publisher.publish(completed('y'.repeat(100)), share);
    publisher.publish(completed(), undefined);
    const queuedBytes = share.bytes;
    // The bus is away: retried as it was, still counted.
    await answerAllOnce(publisher, new Error('no responders'));
    expect({ events: share.events, bytes: share.bytes }).toEqual({ events: 4, bytes: queuedBytes });
    await new Promise((resolve) => setTimeout(resolve, 600));
    // Refused (too large, say): halves, then each event alone, then its reduced form, which is refused too and dropped.
    await answerAll(publisher, new InvalidArgumentError('too large'));
    expect(dropped).toHaveBeenCalledTimes(5);
    expect({ events: share.events, bytes: share.bytes }).toEqual({ events: 0, bytes: 0 });
    expect(publisher.pending).toBe(0);
  });

  it('is counted again from zero by the next owner when it ran empty (no count left behind)', async () => {
    const publisher = new EventPublisher(connection, { source: 'proxy', subjectPrefix: 'x', maxQueuedEvents: 10, maxDelayMs: 0 });
    const [first, second] = [new QueueShare(), new QueueShare()];
    publisher.publish(completed(), first);
    publisher.publish(completed(), second);
    await answerAll(publisher, 'ack');
    // Both ran empty: a share alone again has half the queue, not a third.
    for (let index = 0; index < 4; index++) publisher.publish(completed(), first);
    expect(publisher.overShare(first)).toBe(false);
    publisher.publish(completed(), first);
    expect(publisher.overShare(first)).toBe(true);
    await answerAll(publisher, 'ack');
  });
});

/** Sends what is queued and fails each publish waiting once (retries come later). */
const answerAllOnce = async (publisher: InstanceType<typeof EventPublisher>, error: Error): Promise<void> => {
  void publisher.flush();
  await turn();
  for (const waiting of publishes.splice(0)) waiting.fail(error);
  await turn();
};
