import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { headers as natsHeaders, type Msg } from '@nats-io/transport-node';
import { connectBus, type NatsConnection } from '@sluice/event-bus';

/*
 * The NATS client is patched (patches/@nats-io+nats-core+*.patch, applied by npm's postinstall):
 * a message whose payload spans socket reads is received into one buffer of the payload's size,
 * not into one grown by doubling. These check, with a real nats-server, that such messages still
 * arrive whole and in order, and that the patch is in place.
 */

const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

/** `length` bytes that differ from one message to the next (a misplaced chunk cannot go unseen). */
const payloadOf = (index: number, length: number): Uint8Array => {
  const bytes = new Uint8Array(length);
  // xorshift32, seeded by the message's index.
  let state = (index + 1) * 0x9e3779b1;
  for (let at = 0; at < length; at += 1) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    bytes[at] = state & 0xff;
  }
  return bytes;
};

/** Receives `count` messages on `subject` in order. */
const receive = (nc: NatsConnection, subject: string, count: number): Promise<Msg[]> => {
  const subscription = nc.subscribe(subject, { max: count });
  return (async () => {
    const messages: Msg[] = [];
    for await (const message of subscription) messages.push(message);
    return messages;
  })();
};

describe('NATS messages that span socket reads', () => {
  let publisher: NatsConnection;
  let subscriber: NatsConnection;

  beforeAll(async () => {
    publisher = await connectBus(NATS_URL, 'test-split-publisher');
    subscriber = await connectBus(NATS_URL, 'test-split-subscriber');
  });
  afterAll(async () => {
    await publisher.drain();
    await subscriber.drain();
  });

  it('receives a message as large as the server takes whole, in a buffer of its own size', async () => {
    const subject = `test.split.${randomUUID()}`;
    // Many 64 KiB socket reads: the parser copies each into the buffer it took at the first one.
    const length = subscriber.info!.max_payload - 1024;
    const received = receive(subscriber, subject, 1);
    await subscriber.flush();
    publisher.publish(subject, payloadOf(0, length));
    await publisher.flush();
    const [message] = await received;
    expect(message!.data.byteLength).toBe(length);
    expect(Buffer.from(message!.data).equals(Buffer.from(payloadOf(0, length)))).toBe(true);
    // Unpatched, the buffer was grown by doubling: the message sat in one up to twice its size.
    expect(message!.data.buffer.byteLength).toBe(length);
  });

  it('receives back-to-back messages of every size, with and without headers, whole and in order', async () => {
    const subject = `test.split.${randomUUID()}`;
    // Sizes from empty to a few socket reads, so that reads end anywhere in a message.
    const sizes = Array.from({ length: 300 }, (_, index) => (index % 7 === 0 ? 0 : (index * 7_919) % 200_000));
    const received = receive(subscriber, subject, sizes.length);
    await subscriber.flush();
    sizes.forEach((size, index) => {
      if (index % 2 === 0) {
        publisher.publish(subject, payloadOf(index, size));
        return;
      }
      const headers = natsHeaders();
      headers.set('Test-Index', String(index));
      headers.set('Test-Padding', 'x'.repeat(index * 13));
      publisher.publish(subject, payloadOf(index, size), { headers });
    });
    await publisher.flush();
    const messages = await received;
    expect(messages).toHaveLength(sizes.length);
    messages.forEach((message, index) => {
      expect(Buffer.from(message.data).equals(Buffer.from(payloadOf(index, sizes[index]!))), `message ${index}`).toBe(true);
      if (index % 2 === 1) {
        expect(message.headers?.get('Test-Index')).toBe(String(index));
        expect(message.headers?.get('Test-Padding')).toBe('x'.repeat(index * 13));
      } else expect(message.headers).toBeUndefined();
    });
  });
});
