import { describe, expect, it } from 'vitest';
import { alertsFor } from './alerts.js';

const record = (index: number, overrides: object = {}) => ({
  key: `S:1:${index}`,
  reason: 'unsigned',
  natsSubject: 'sluice.events.command.decided',
  streamSeq: 1,
  payload: '{}',
  eventId: `e${index}`,
  eventType: 'sluice.command.decided.v1',
  ...overrides,
});

describe('alerts for refused records', () => {
  it('raises one event.rejected per record, with an id that a retry repeats', () => {
    const [alert] = alertsFor([record(0)], new Date(0));
    expect(alert).toMatchObject({ id: 'rejected:S:1:0', type: 'sluice.event.rejected.v1', subject: 'audit', data: { reason: 'unsigned', eventId: 'e0' } });
  });

  it('raises none for a refused alert, so alerts never feed on themselves', () => {
    expect(alertsFor([record(0, { eventType: 'sluice.event.rejected.v1' })], new Date(0))).toEqual([]);
  });

  it("keeps a forger's long fields short, and raises at most a hundred per batch", () => {
    const [alert] = alertsFor([record(0, { eventId: 'x'.repeat(900_000) })], new Date(0));
    expect(JSON.stringify(alert).length).toBeLessThan(2_000);
    expect(alertsFor(Array.from({ length: 500 }, (_, index) => record(index)), new Date(0))).toHaveLength(100);
  });
});
