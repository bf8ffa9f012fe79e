import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { buildEvent } from '@sluice/contracts';
import { canonicalJson, chainHash, GENESIS_HASH, joinEvent, normalizeEvent, splitEvent } from './chain.js';

const event = buildEvent('session.ended', {
  id: 'e1',
  source: 'proxy',
  subject: 's1',
  time: new Date('2026-01-02T03:04:05.678Z'),
  sessionseq: 4,
  data: { resource: 'db', reason: 'client closed', commands: 2, durationMs: 10 },
});

describe('hash chain', () => {
  it('hashes the previous hash followed by the RFC 8785 JSON of the event', () => {
    const expected = createHash('sha256').update(GENESIS_HASH + canonicalJson(event)).digest('hex');
    expect(chainHash(GENESIS_HASH, event)).toBe(expected);
  });

  it('canonical JSON sorts keys whatever order they were written in', () => {
    expect(canonicalJson({ b: 1, a: [true, null, 'x'] })).toBe('{"a":[true,null,"x"],"b":1}');
  });

  it('leaves an event Sluice built unchanged when normalising it', () => {
    expect(normalizeEvent(event, new Date())).toEqual(event);
  });

  it('rebuilds exactly the stored form from the columns, extension attributes included', () => {
    const normalized = normalizeEvent({ ...event, traceparent: '00-abc' } as never, new Date());
    expect(joinEvent(splitEvent(normalized))).toEqual(normalized);
  });

  it('replaces U+0000, which PostgreSQL cannot store, when an event carries one', () => {
    const normalized = normalizeEvent({ ...event, data: { ...event.data, reason: 'a\u0000b' } }, new Date());
    expect((normalized.data as { reason: string }).reason).toBe('a\uFFFDb');
  });

  it('normalises a foreign time to ISO milliseconds when an event has another format', () => {
    const normalized = normalizeEvent({ ...event, time: '2026-01-02T03:04:05Z' }, new Date());
    expect(normalized.time).toBe('2026-01-02T03:04:05.000Z');
  });
});
