import { describe, expect, it } from 'vitest';
import { ReplyStream } from './reply-stream.js';

const args = (...words: string[]) => words.map((word) => Buffer.from(word));
const push = (kind: string, channel: string, count: number) =>
  ({ type: 'push', items: [{ type: 'bulk', value: Buffer.from(kind) }, { type: 'bulk', value: Buffer.from(channel) }, { type: 'integer', value: BigInt(count) }] }) as const;

describe('ReplyStream.identityLocked: when a re-authentication cannot end the session', () => {
  it('is free on a fresh connection and after EXEC or DISCARD', () => {
    const stream = new ReplyStream();
    expect(stream.identityLocked('AUTH')).toBeUndefined();
    stream.dispatch('MULTI', args('MULTI'), undefined, 2);
    expect(stream.identityLocked('AUTH')).toMatch(/^ERR AUTH inside MULTI/);
    stream.dispatch('EXEC', args('EXEC'), undefined, 2);
    expect(stream.identityLocked('AUTH')).toBeUndefined();
    stream.dispatch('MULTI', args('MULTI'), undefined, 2);
    stream.dispatch('DISCARD', args('DISCARD'), undefined, 2);
    expect(stream.identityLocked('HELLO')).toBeUndefined();
  });

  it('is locked in RESP2 subscriber mode until the last channel is gone', () => {
    const stream = new ReplyStream();
    stream.dispatch('SUBSCRIBE', args('SUBSCRIBE', 'news'), undefined, 2);
    expect(stream.identityLocked('AUTH')).toMatch(/unsubscribe first/);
    stream.streamed({ type: 'array', items: push('subscribe', 'news', 1).items });
    stream.streamed({ type: 'array', items: push('unsubscribe', 'news', 0).items });
    expect(stream.identityLocked('AUTH')).toBeUndefined();
  });

  it('is locked in RESP3 from the subscribe sent until no subscription is left', () => {
    const stream = new ReplyStream();
    stream.dispatch('SSUBSCRIBE', args('SSUBSCRIBE', 'shard'), undefined, 3);
    expect(stream.identityLocked('AUTH')).toMatch(/unsubscribe first/);
    stream.streamed(push('ssubscribe', 'shard', 1));
    stream.subscribeSettled();
    expect(stream.identityLocked('HELLO')).toMatch(/^ERR HELLO while subscribed/);
    stream.streamed(push('sunsubscribe', 'shard', 0));
    expect(stream.identityLocked('AUTH')).toBeUndefined();
  });

  it('is locked from CLIENT TRACKING ON until a plain CLIENT TRACKING OFF outside MULTI', () => {
    const stream = new ReplyStream();
    stream.dispatch('CLIENT', args('CLIENT', 'tracking', 'on', 'BCAST'), undefined, 3);
    expect(stream.identityLocked('AUTH')).toMatch(/CLIENT TRACKING is on/);
    // An OFF with options may be refused by Redis, leaving tracking on; one queued may be discarded.
    stream.dispatch('CLIENT', args('CLIENT', 'TRACKING', 'OFF', 'REDIRECT', '12'), undefined, 3);
    expect(stream.identityLocked('AUTH')).toMatch(/CLIENT TRACKING is on/);
    stream.dispatch('MULTI', args('MULTI'), undefined, 3);
    expect(stream.dispatch('CLIENT', args('CLIENT', 'TRACKING', 'OFF'), undefined, 3).queued).toBe(true);
    stream.dispatch('DISCARD', args('DISCARD'), undefined, 3);
    expect(stream.identityLocked('HELLO')).toMatch(/CLIENT TRACKING is on/);
    stream.dispatch('CLIENT', args('CLIENT', 'TRACKING', 'off'), undefined, 3);
    expect(stream.identityLocked('AUTH')).toBeUndefined();
    // Other CLIENT subcommands change nothing.
    stream.dispatch('CLIENT', args('CLIENT', 'SETNAME', 'x'), undefined, 3);
    expect(stream.identityLocked('AUTH')).toBeUndefined();
  });

  it('is locked after MONITOR', () => {
    const stream = new ReplyStream();
    stream.dispatch('MONITOR', args('MONITOR'), undefined, 2);
    expect(stream.identityLocked('AUTH')).toMatch(/MONITOR/);
  });
});
