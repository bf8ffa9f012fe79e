import { describe, expect, it } from 'vitest';
import { batchPayload } from './publisher.js';

const joined = (jsons: readonly string[]): Buffer => Buffer.from(`[${jsons.join(',')}]`, 'utf8');

describe('batchPayload', () => {
  it('is the events as one JSON array in UTF-8, byte for byte', () => {
    const events = [
      JSON.stringify({ id: 'a', data: { body: '{"email":"a***@example.com"}' } }),
      JSON.stringify({ id: 'b', data: { name: 'Zoë Ångström', city: '東京', mood: '😀', lone: '\ud800' } }),
      JSON.stringify({ id: 'c' }),
    ];
    const payload = batchPayload(events);
    expect(payload.equals(joined(events))).toBe(true);
    expect(JSON.parse(payload.toString('utf8'))).toEqual(events.map((json) => JSON.parse(json)));
  });

  it('frames a single event and no event alike', () => {
    expect(batchPayload(['{"id":"a"}']).toString('utf8')).toBe('[{"id":"a"}]');
    expect(batchPayload([]).toString('utf8')).toBe('[]');
  });

  it('fills its buffer exactly, however many multi-byte characters the events hold', () => {
    const events = Array.from({ length: 50 }, (_, index) => JSON.stringify({ index, text: 'ü€😀'.repeat(index) }));
    const payload = batchPayload(events);
    expect(payload.length).toBe(joined(events).length);
    expect(payload.equals(joined(events))).toBe(true);
  });
});
