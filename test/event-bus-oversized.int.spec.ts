import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstream, jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { buildEvent, type CloudEvent } from '@sluice/contracts';
import { connectBus, decodeEvents, ensureEventStream, EventPublisher, type NatsConnection } from '@sluice/event-bus';

const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

type Reduced = { reduced?: { reason: string; originalBytes: number; dropped: string[] }; truncated?: boolean };

/** Events of a stream in order (bounded: the stream holds few messages here). */
const storedEvents = async (nc: NatsConnection, stream: string): Promise<CloudEvent[]> => {
  const info = await (await jetstreamManager(nc)).streams.info(stream);
  const consumer = await jetstream(nc).consumers.get(stream);
  const events: CloudEvent[] = [];
  if (info.state.messages === 0) return events;
  const messages = await consumer.fetch({ max_messages: info.state.messages, expires: 2_000 });
  let seen = 0;
  for await (const message of messages) {
    events.push(...decodeEvents(message.data));
    if (++seen >= info.state.messages) break;
  }
  return events;
};

const completed = (i: number): CloudEvent =>
  buildEvent('command.completed', {
    id: randomUUID(),
    source: 'test',
    subject: `session-${i}`,
    time: new Date(),
    sessionseq: i,
    data: { commandId: `c${i}`, outcome: 'SELECT 1', ok: true, durationMs: 1 },
  });

const resultOf = (i: number, cell: string): CloudEvent =>
  buildEvent('result.returned', {
    id: randomUUID(),
    source: 'test',
    subject: `session-${i}`,
    time: new Date(),
    sessionseq: i,
    data: { commandId: `c${i}`, columns: ['repeat'], rows: [[cell]], rowCount: 1, bytes: cell.length, truncated: false, maskedCounts: {} },
  });

describe('the publisher with events larger than the bus takes', () => {
  const run = randomUUID().slice(0, 8);
  const streams: string[] = [];
  let nc: NatsConnection;

  beforeAll(async () => {
    nc = await connectBus(NATS_URL, 'test');
  });
  afterAll(async () => {
    const jsm = await jetstreamManager(nc);
    for (const stream of streams) await jsm.streams.delete(stream).catch(() => undefined);
    await nc.drain();
  });

  it('publishes a 3 MB event in its reduced form and every event around it as it is, staying healthy', async () => {
    const stream = `TEST_OVERSIZED_${run}_A`;
    const subjectPrefix = `test.oversized.${run}.a`;
    streams.push(stream);
    await ensureEventStream(nc, { stream, subjectPrefix, duplicateWindowMs: 60_000 });
    const reductions: string[] = [];
    const publisher = new EventPublisher(nc, { source: 'proxy', subjectPrefix, onReduced: (_event, reduction) => reductions.push(reduction.reason) });
    expect(publisher.maxEventBytes).toBeLessThanOrEqual(nc.info!.max_payload);

    const big = resultOf(2, 'x'.repeat(3 * 1024 * 1024));
    // A multi-byte text is longer in UTF-8 than in UTF-16 units: sizes are counted in bytes.
    const wide = resultOf(3, 'é'.repeat(200 * 1024));
    const sent = [completed(1), big, wide, completed(4)];
    for (const event of sent) publisher.publish(event);
    await publisher.flush();
    expect(publisher.healthy).toBe(true);
    expect(reductions).toEqual(['too_large', 'too_large']);

    const stored = await storedEvents(nc, stream);
    expect(stored.map((event) => event.id)).toEqual(sent.map((event) => event.id));
    const bigStored = stored[1]!.data as unknown as Reduced & { commandId: string };
    expect(bigStored.commandId).toBe('c2');
    expect(bigStored.truncated).toBe(true);
    expect(bigStored.reduced).toMatchObject({ reason: 'too_large', dropped: ['rows'] });
    expect(bigStored.reduced!.originalBytes).toBeGreaterThan(3 * 1024 * 1024);
    expect(stored[1]!.sessionseq).toBe(2);
    expect((stored[0]!.data as unknown as Reduced).reduced).toBeUndefined();
    expect((stored[3]!.data as unknown as Reduced).reduced).toBeUndefined();
  });

  it('keeps every batch within the server max_payload whatever maxBatchBytes says, reducing nothing that fits', async () => {
    const stream = `TEST_OVERSIZED_${run}_E`;
    const subjectPrefix = `test.oversized.${run}.e`;
    streams.push(stream);
    await ensureEventStream(nc, { stream, subjectPrefix, duplicateWindowMs: 60_000 });
    const reductions: string[] = [];
    const publisher = new EventPublisher(nc, { source: 'proxy', subjectPrefix, maxBatchBytes: 64 * 1024 * 1024, onReduced: (_event, reduction) => reductions.push(reduction.reason) });
    // Twenty events of 200 KB: one batch by maxBatchBytes, 4 MB in all, four times max_payload.
    const sent = Array.from({ length: 20 }, (_, i) => resultOf(i, String(i % 10).repeat(200 * 1024)));
    for (const event of sent) publisher.publish(event);
    await publisher.flush();
    expect(publisher.healthy).toBe(true);
    expect(reductions).toEqual([]);
    const info = await (await jetstreamManager(nc)).streams.info(stream);
    expect(info.state.messages).toBeGreaterThan(1);
    expect(info.state.bytes / info.state.messages).toBeLessThanOrEqual(nc.info!.max_payload + 1024);
    expect((await storedEvents(nc, stream)).map((event) => event.id)).toEqual(sent.map((event) => event.id));
  });

  it('splits a batch the stream refuses and reduces only the event it refuses, the others flowing on', async () => {
    const stream = `TEST_OVERSIZED_${run}_B`;
    const subjectPrefix = `test.oversized.${run}.b`;
    streams.push(stream);
    // The stream refuses messages over 8 KiB: a refusal retrying cannot fix.
    await (await jetstreamManager(nc)).streams.add({
      name: stream,
      subjects: [`${subjectPrefix}.>`],
      storage: StorageType.Memory,
      retention: RetentionPolicy.Limits,
      max_msg_size: 8 * 1024,
    });
    const errors: boolean[] = [];
    const publisher = new EventPublisher(nc, { source: 'proxy', subjectPrefix, onError: (_error, retrying) => errors.push(retrying) });
    const sent = [completed(1), completed(2), resultOf(3, 'y'.repeat(20 * 1024)), completed(4), completed(5)];
    for (const event of sent) publisher.publish(event);
    const started = Date.now();
    await publisher.flush();
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(publisher.healthy).toBe(true);
    expect(errors.length).toBeGreaterThan(0);
    expect(errors.every((retrying) => !retrying)).toBe(true);

    const stored = await storedEvents(nc, stream);
    expect(stored.map((event) => event.id).sort()).toEqual(sent.map((event) => event.id).sort());
    const refused = stored.find((event) => event.id === sent[2]!.id)!.data as unknown as Reduced;
    expect(refused.reduced).toMatchObject({ reason: 'rejected', dropped: ['rows'] });
    for (const event of stored.filter((item) => item.id !== sent[2]!.id)) expect((event.data as unknown as Reduced).reduced).toBeUndefined();

    // The publisher goes on as before: the next events are stored too.
    publisher.publish(completed(6));
    await publisher.flush();
    expect((await storedEvents(nc, stream)).length).toBe(sent.length + 1);
  });

  it('records an event that is not JSON in its reduced form instead of throwing at the session', async () => {
    const stream = `TEST_OVERSIZED_${run}_F`;
    const subjectPrefix = `test.oversized.${run}.f`;
    streams.push(stream);
    await ensureEventStream(nc, { stream, subjectPrefix, duplicateWindowMs: 60_000 });
    const publisher = new EventPublisher(nc, { source: 'proxy', subjectPrefix });
    const malformed = { ...completed(1), data: { commandId: 'c1', outcome: 'SELECT 1', ok: true, durationMs: 10n } } as unknown as CloudEvent;
    expect(() => publisher.publish(malformed)).not.toThrow();
    publisher.publish(completed(2));
    await publisher.flush();
    const stored = await storedEvents(nc, stream);
    expect(stored).toHaveLength(2);
    expect((stored[0]!.data as unknown as Reduced & { commandId: string }).commandId).toBe('c1');
    expect((stored[0]!.data as unknown as Reduced).reduced).toMatchObject({ reason: 'rejected', dropped: ['durationMs'] });
  });

  it('retries while no stream takes its events (commands are refused) and recovers by itself once one does', async () => {
    const stream = `TEST_OVERSIZED_${run}_C`;
    const subjectPrefix = `test.oversized.${run}.c`;
    streams.push(stream);
    const publisher = new EventPublisher(nc, { source: 'proxy', subjectPrefix, maxQueuedEvents: 3 });
    const sent = [completed(1), completed(2)];
    for (const event of sent) publisher.publish(event);
    const flushed = publisher.flush();
    const unhealthyBy = Date.now() + 5_000;
    while (publisher.healthy && Date.now() < unhealthyBy) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(publisher.healthy).toBe(false);

    await ensureEventStream(nc, { stream, subjectPrefix, duplicateWindowMs: 60_000 });
    await flushed;
    expect(publisher.healthy).toBe(true);
    expect((await storedEvents(nc, stream)).map((event) => event.id)).toEqual(sent.map((event) => event.id));
  });

  it('reports itself unhealthy once its bounded buffer is full (back-pressure), whatever the count', async () => {
    const subjectPrefix = `test.oversized.${run}.d`;
    const publisher = new EventPublisher(nc, { source: 'proxy', subjectPrefix, maxQueuedBytes: 100 * 1024 });
    expect(publisher.healthy).toBe(true);
    publisher.publish(resultOf(1, 'z'.repeat(120 * 1024)));
    expect(publisher.healthy).toBe(false);
    await publisher.close(100);
  });
});
