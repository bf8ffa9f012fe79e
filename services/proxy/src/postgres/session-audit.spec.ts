import { describe, expect, it } from 'vitest';
import type { AuditPort } from '../ports.js';
import { RelayingAudit } from './session-audit.js';

const port = (log: string[], failOn?: string): AuditPort => ({
  healthy: true,
  record: (_sessionId, kind) => {
    if (kind === failOn) throw new Error('publisher is closed');
    log.push(`record ${kind}`);
  },
});

describe('RelayingAudit', () => {
  it('records what the relay recorded after it returns, in order, and records at once outside a relay', () => {
    const log: string[] = [];
    const audit = new RelayingAudit(port(log));
    audit.relaying(() => {
      audit.record('s', 'result.returned', { commandId: 'c', columns: [], rows: [], rowCount: 0 } as never);
      audit.relaying(() => audit.record('s', 'command.completed', {} as never), () => log.push('failed'));
      log.push('written');
    }, () => log.push('failed'));
    audit.record('s', 'session.ended', {} as never);
    expect(log).toEqual(['written', 'record result.returned', 'record command.completed', 'record session.ended']);
  });

  it('records what was made before a relay that throws, and tells `failed` when recording throws', () => {
    const log: string[] = [];
    const audit = new RelayingAudit(port(log, 'command.completed'));
    expect(() =>
      audit.relaying(() => {
        audit.record('s', 'result.returned', {} as never);
        throw new Error('relay failed');
      }, () => log.push('failed')),
    ).toThrow('relay failed');
    audit.relaying(() => audit.record('s', 'command.completed', {} as never), (error) => log.push(`failed: ${(error as Error).message}`));
    expect(log).toEqual(['record result.returned', 'failed: publisher is closed']);
  });
});
