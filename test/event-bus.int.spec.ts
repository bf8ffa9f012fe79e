import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { buildEvent, writeExecutedEvent, type CloudEvent } from '@sluice/contracts';
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

  it('delivers events written into its queue, events their writer could not write and events it serialised itself in one order, each byte for byte as JSON.stringify writes it', async () => {
    // A stream of its own: nats-server 2.9 has no multi-subject filters to tell this test's batches from the others'.
    const writtenStream = `${stream}_WRITTEN`;
    const writtenPrefix = `test.written.${run}`;
    await ensureEventStream(nc, { stream: writtenStream, subjectPrefix: writtenPrefix, duplicateWindowMs: 60_000 });
    const publisher = new EventPublisher(nc, { source: 'proxy', subjectPrefix: writtenPrefix });
    const executed = (i: number): Parameters<typeof writeExecutedEvent>[1] => ({
      id: randomUUID(),
      source: 'sluice/proxy',
      subject: `session-${i % 7}`,
      time: new Date(),
      sessionseq: i,
      data: {
        action: 'read',
        // Every fifth a text the writer cannot take (a number): it goes the general way, in its place.
        command: (i % 5 === 0 ? i : i % 3 === 0 ? `SELECT 'é€😀 "${i}"'` : `SELECT ${i}`) as string,
        commandId: `c${i}`,
        decision: 'allow',
        durationMs: (i % 1000) / 1000,
        ok: true,
        outcome: 'SELECT 1',
        protocol: 'postgres',
        reason: 'rule readers allows read',
        resource: 'db',
        result: { bytes: 12, columns: ['abalance'], maskedCounts: {}, rowCount: 1, rows: [[String(i)], [null]], truncated: false },
        risk: 'low',
        rule: 'readers',
        tables: ['public.t'],
      },
    });
    const sent: CloudEvent[] = [];
    // Some 1.5 MB of events: several of the queue's chunks, and batches that end inside one.
    for (let i = 0; i < 2_500; i++) {
      if (i % 4 === 0) {
        const plain = event(i);
        sent.push(plain);
        publisher.publish(plain);
        continue;
      }
      const fields = executed(i);
      sent.push(buildEvent('command.executed', fields));
      publisher.publishWritten(fields.id, writeExecutedEvent, fields, (value) => buildEvent('command.executed', value));
    }
    await publisher.flush();
    const consumer = await jetstream(nc).consumers.get(writtenStream);
    const received: CloudEvent[] = [];
    const messages = await consumer.fetch({ max_messages: 1_000, expires: 2_000 });
    for await (const message of messages) {
      const events = decodeEvents(message.data);
      expect(Buffer.from(message.data).equals(Buffer.from(JSON.stringify(events), 'utf8'))).toBe(true);
      received.push(...events);
      if (received.length >= sent.length) break;
    }
    await (await jetstreamManager(nc)).streams.delete(writtenStream);
    expect(received.length).toBe(sent.length);
    const mismatch = received.findIndex((event, index) => JSON.stringify(event) !== JSON.stringify(sent[index]));
    expect(mismatch === -1 ? undefined : [JSON.stringify(received[mismatch]), JSON.stringify(sent[mismatch])]).toBeUndefined();
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
