import { describe, expect, it } from 'vitest';
import { EventArena } from './event-arena.js';
import { batchPayload } from './publisher.js';

const joined = (jsons: readonly string[]): Buffer => Buffer.from(`[${jsons.join(',')}]`, 'utf8');

describe('batchPayload', () => {
  it('is the events as one JSON array in UTF-8, byte for byte', () => {
    const arena = new EventArena();
    const events = [
      JSON.stringify({ id: 'a', data: { body: '{"email":"a***@example.com"}' } }),
      JSON.stringify({ id: 'b', data: { name: 'Zoë Ångström', city: '東京', mood: '😀', lone: '\ud800' } }),
      JSON.stringify({ id: 'c' }),
    ];
    const payload = batchPayload(events.map((json) => arena.writeText(json)));
    expect(payload.equals(joined(events))).toBe(true);
    expect(JSON.parse(payload.toString('utf8'))).toEqual(events.map((json) => JSON.parse(json)));
  });

  it('frames a single event and no event alike', () => {
    expect(batchPayload([new EventArena().writeText('{"id":"a"}')]).toString('utf8')).toBe('[{"id":"a"}]');
    expect(batchPayload([]).toString('utf8')).toBe('[]');
  });

  it('fills its buffer exactly, however many multi-byte characters the events hold', () => {
    const arena = new EventArena();
    const events = Array.from({ length: 50 }, (_, index) => JSON.stringify({ index, text: 'ü€😀'.repeat(index) }));
    const payload = batchPayload(events.map((json) => arena.writeText(json)));
    expect(payload.length).toBe(joined(events).length);
    expect(payload.equals(joined(events))).toBe(true);
  });

  it('joins events that are not neighbours in the arena, and events across its chunks, as it joins neighbours', () => {
    const arena = new EventArena();
    const events = Array.from({ length: 40 }, (_, index) => JSON.stringify({ index, text: 'x'.repeat(index % 3 === 0 ? 30_000 : 10) }));
    const written = events.map((json) => arena.writeText(json));
    expect(new Set(written.map((event) => event.chunk)).size).toBeGreaterThan(1);
    const picked = [0, 2, 3, 4, 7, 8, 20, 21, 22, 39];
    expect(batchPayload(picked.map((index) => written[index]!)).equals(joined(picked.map((index) => events[index]!)))).toBe(true);
    expect(batchPayload(written).equals(joined(events))).toBe(true);
  });
});

describe('EventArena', () => {
  it('moves an event written in part to a new chunk when it outgrows the current one, keeping what was written', () => {
    const arena = new EventArena();
    const first = arena.writeText('x'.repeat(80_000));
    arena.begin();
    arena.reserve(10);
    arena.buffer.write('{"a":', arena.offset, 'latin1');
    arena.offset += 5;
    arena.reserve(200_000);
    arena.buffer.write('1}', arena.offset, 'latin1');
    arena.offset += 2;
    const second = arena.commit();
    expect(second.chunk).not.toBe(first.chunk);
    expect(second.chunk.toString('utf8', second.start, second.end)).toBe('{"a":1}');
    expect(first.chunk.toString('utf8', first.start, first.end)).toBe('x'.repeat(80_000));
  });

  it('drops what was written of a discarded event: the next event takes its place', () => {
    const arena = new EventArena();
    const first = arena.writeText('{"a":1}');
    arena.begin();
    arena.reserve(4);
    arena.buffer.write('junk', arena.offset, 'latin1');
    arena.offset += 4;
    arena.discard();
    const second = arena.writeText('{"b":2}');
    expect(second.start).toBe(first.end + 1);
    expect(batchPayload([first, second]).toString('utf8')).toBe('[{"a":1},{"b":2}]');
  });
});
