import { describe, expect, it } from 'vitest';
import { buildEvent } from './events.js';

const eventAt = (time: Date) =>
  buildEvent('command.completed', { id: 'e', source: 'test', subject: 's', time, sessionseq: 1, data: { commandId: 'c', outcome: 'OK', ok: true, durationMs: 1 } });

describe('buildEvent', () => {
  it('stamps each event with its own time, events of one millisecond and of others alike', () => {
    const first = new Date('2026-11-27T06:00:00.001Z');
    const second = new Date('2026-11-27T06:00:00.002Z');
    expect([first, first, second, first].map((time) => eventAt(time).time)).toEqual([
      '2026-11-27T06:00:00.001Z',
      '2026-11-27T06:00:00.001Z',
      '2026-11-27T06:00:00.002Z',
      '2026-11-27T06:00:00.001Z',
    ]);
  });

  it('refuses an invalid time, as toISOString does', () => {
    expect(() => eventAt(new Date(Number.NaN))).toThrow(RangeError);
  });
});
