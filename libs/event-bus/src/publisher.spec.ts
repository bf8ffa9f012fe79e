import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EventArena, type EventBytes, type Frame } from './event-arena.js';
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
    const arena = new EventArena(256 * 1024);
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
    const arena = new EventArena(256 * 1024);
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

describe('EventArena batches', () => {
  /** What the arena holds of an event: its JSON, read back from where commit said it is. */
  const textOf = (event: EventBytes) => event.chunk.toString('utf8', event.start, event.end);
  const take = (arena: EventArena): Frame[] => {
    const frames: Frame[] = [];
    for (let frame = arena.takeFrame(); frame; frame = arena.takeFrame()) frames.push(frame);
    return frames;
  };

  it('frames the events written since the last close as one JSON array, a view of the bytes they were written in', () => {
    const arena = new EventArena();
    const events = ['{"a":1}', '{"b":"Zoë 東京 😀"}', '{"c":[1,2]}'];
    const written = events.map((json) => arena.writeText(json));
    expect(arena.hasClosed).toBe(false);
    arena.closeFrame();
    const [frame] = take(arena);
    expect(frame!.events).toBe(3);
    expect(frame!.payload.equals(Buffer.from(`[${events.join(',')}]`))).toBe(true);
    expect(frame!.payload.buffer).toBe(written[0]!.chunk.buffer);
    arena.writeText('{"d":4}');
    arena.closeFrame();
    expect(take(arena).map((next) => next.payload.toString('utf8'))).toEqual(['[{"d":4}]']);
  });

  it('starts a new batch with the event being written when asked, and leaves a discarded first event out of any batch', () => {
    const arena = new EventArena();
    arena.writeText('{"a":1}');
    arena.begin();
    arena.offset += arena.buffer.write('{"b":2}', arena.offset, 'latin1');
    arena.closeBeforeCurrent();
    const moved = arena.commit();
    expect(textOf(moved)).toBe('{"b":2}');
    arena.closeFrame();
    arena.begin();
    arena.offset += arena.buffer.write('junk', arena.offset, 'latin1');
    arena.discard();
    arena.closeFrame();
    expect(take(arena).map((frame) => [frame.payload.toString('utf8'), frame.events])).toEqual([
      ['[{"a":1}]', 1],
      ['[{"b":2}]', 1],
    ]);
  });

  it('reuses a chunk only once every event written in it is released and the arena has moved on', () => {
    const arena = new EventArena(1024);
    let index = 0;
    const json = (at: number) => JSON.stringify({ at, text: 'x'.repeat(100) });
    /** Events written until one goes in another chunk (that one last). */
    const untilNextChunk = (): EventBytes[] => {
      const from = arena.buffer;
      const events: EventBytes[] = [];
      while (arena.buffer === from) events.push(arena.writeText(json(index++)));
      return events;
    };
    const written = untilNextChunk();
    const firstChunk = written[0]!.chunk;
    const inFirst = written.filter((event) => event.chunk === firstChunk);
    for (const event of inFirst.slice(0, -1)) arena.release(event);
    // One event of the first chunk is still held: its bytes stay as written.
    expect(untilNextChunk().every((event) => event.chunk !== firstChunk)).toBe(true);
    expect(textOf(inFirst.at(-1)!)).toBe(json(inFirst.length - 1));
    arena.release(inFirst.at(-1)!);
    expect(untilNextChunk().at(-1)!.chunk).toBe(firstChunk);
  });

  it('gives every committed event in exactly one batch, in order, byte for byte, whatever the sizes, discards and closes (small chunks)', () => {
    const step = fc.oneof(
      fc.record({ kind: fc.constant('write' as const), json: fc.json({ maxDepth: 2 }), moveBefore: fc.boolean() }),
      fc.record({ kind: fc.constant('discard' as const), text: fc.string({ maxLength: 300 }) }),
      fc.record({ kind: fc.constant('close' as const) }),
      fc.record({ kind: fc.constant('release' as const), count: fc.nat({ max: 5 }) }),
    );
    fc.assert(
      fc.property(fc.array(step, { maxLength: 80 }), fc.integer({ min: 64, max: 2048 }), (steps, chunkBytes) => {
        const arena = new EventArena(chunkBytes);
        const committed: string[] = [];
        const held: EventBytes[] = [];
        const frames: Frame[] = [];
        for (const action of steps) {
          if (action.kind === 'write') {
            arena.begin();
            arena.reserve(action.json.length * 3);
            arena.offset += arena.buffer.write(action.json, arena.offset, 'utf8');
            if (action.moveBefore) arena.closeBeforeCurrent();
            const event = arena.commit();
            expect(textOf(event)).toBe(action.json);
            committed.push(action.json);
            held.push(event);
          } else if (action.kind === 'discard') {
            arena.begin();
            arena.reserve(action.text.length * 3);
            arena.offset += arena.buffer.write(action.text, arena.offset, 'utf8');
            arena.discard();
          } else if (action.kind === 'close') arena.closeFrame();
          else {
            // Released events are those of batches already taken (and sent): the oldest.
            frames.push(...take(arena));
            const taken = frames.reduce((sum, frame) => sum + frame.events, 0);
            const releasable = taken - (committed.length - held.length);
            for (const event of held.splice(0, Math.min(action.count, releasable))) arena.release(event);
          }
        }
        arena.closeFrame();
        frames.push(...take(arena));
        expect(frames.every((frame) => frame.events > 0)).toBe(true);
        expect(frames.reduce((sum, frame) => sum + frame.events, 0)).toBe(committed.length);
        let index = 0;
        for (const frame of frames) {
          const events = committed.slice(index, index + frame.events);
          index += frame.events;
          expect(frame.payload.toString('utf8')).toBe(`[${events.join(',')}]`);
        }
      }),
      { numRuns: 300 },
    );
  });
});
