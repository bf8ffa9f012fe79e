import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { buildEvent, type CloudEvent } from '@sluice/contracts';
import { connectBus, decodeEvents, ensureEventStream, EventPublisher, type NatsConnection } from '@sluice/event-bus';

const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

describe('event bus', () => {
  const run = randomUUID().slice(0, 8);
  const stream = `TEST_BUS_${run}`;
  const subjectPrefix = `test.bus.${run}`;
  let nc: NatsConnection;

  beforeAll(async () => {
    nc = await connectBus(NATS_URL, 'test');
    await ensureEventStream(nc, { stream, subjectPrefix, duplicateWindowMs: 60_000 });
  });
  afterAll(async () => {
    await (await jetstreamManager(nc)).streams.delete(stream);
    await nc.drain();
  });

  const event = (i: number) =>
    buildEvent('command.completed', {
      id: randomUUID(),
      source: 'test',
      subject: `session-${i % 7}`,
      time: new Date(),
      sessionseq: i,
      // Text beyond ASCII (two, three and four UTF-8 bytes a character) in some: a batch is UTF-8.
      data: { commandId: `c${i}`, outcome: i % 3 === 0 ? `SELECT 'é€😀' ${i}` : 'SELECT 1', ok: true, durationMs: 1 },
    });

  it('delivers every published event once, batched into fewer messages, in publish order', async () => {
    const publisher = new EventPublisher(nc, { source: 'proxy', subjectPrefix });
    const sent = Array.from({ length: 2_000 }, (_, i) => event(i));
    for (const item of sent) publisher.publish(item);
    await publisher.flush();
    expect(publisher.pending).toBe(0);

    const info = await (await jetstreamManager(nc)).streams.info(stream);
    expect(info.state.messages).toBeLessThan(sent.length / 10);
    const consumer = await jetstream(nc).consumers.get(stream);
    const received: CloudEvent[] = [];
    const messages = await consumer.fetch({ max_messages: info.state.messages, expires: 2_000 });
    for await (const message of messages) {
      expect(message.subject).toBe(`${subjectPrefix}.batch.proxy`);
      received.push(...decodeEvents(message.data));
      if (received.length >= sent.length) break;
    }
    expect(received).toEqual(sent);
  });

  it('publishes a single event on its kind subject and drops a duplicate by message id', async () => {
    const publisher = new EventPublisher(nc, { source: 'approval', subjectPrefix });
    const single = event(1);
    await publisher.publishNow(single);
    await publisher.publishNow(single);
    // nats-server 2.9 (Debian) has no multi-subject filters: count by subject from the stream info.
    const info = await (await jetstreamManager(nc)).streams.info(stream, { subjects_filter: `${subjectPrefix}.command.completed` });
    expect(info.state.subjects?.[`${subjectPrefix}.command.completed`]).toBe(1);
  });

  it('acknowledged() sends at once what waits and resolves when the stream has every event published before it', async () => {
    // A long gathering delay: only acknowledged() makes the partial batch go.
    const publisher = new EventPublisher(nc, { source: 'proxy', subjectPrefix, maxDelayMs: 60_000 });
    const before = (await (await jetstreamManager(nc)).streams.info(stream)).state.messages;
    const sent = Array.from({ length: 5 }, (_, i) => event(i));
    for (const item of sent) publisher.publish(item);
    await publisher.acknowledged();
    expect(publisher.pending).toBe(0);
    expect((await (await jetstreamManager(nc)).streams.info(stream)).state.messages).toBeGreaterThan(before);
    // Nothing published since: it resolves at once.
    await publisher.acknowledged();
    await publisher.close();
  });
});
