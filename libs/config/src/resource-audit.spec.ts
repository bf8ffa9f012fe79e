import { describe, expect, it } from 'vitest';
import { ConfigInvalidError } from '@sluice/contracts';
import { parseConfig } from './load.js';

const db = { name: 'db', type: 'postgres', listen: '127.0.0.1:15432', target: { host: '127.0.0.1', database: 'shop' }, credentials: { username: 'shop' } };

describe('resources[].audit.wait in the config', () => {
  it('is absent (commands never wait) unless set, and takes none or ack', () => {
    expect(parseConfig({ resources: [db] }).resources[0]!.audit).toBeUndefined();
    expect(parseConfig({ resources: [{ ...db, audit: {} }] }).resources[0]!.audit).toEqual({ wait: 'none' });
    expect(parseConfig({ resources: [{ ...db, audit: { wait: 'ack' } }] }).resources[0]!.audit).toEqual({ wait: 'ack' });
  });

  it('refuses any other value, naming the key and the values it takes', () => {
    let refused: unknown;
    try {
      parseConfig({ resources: [{ ...db, audit: { wait: 'always' } }] });
    } catch (error) {
      refused = error;
    }
    expect(refused).toBeInstanceOf(ConfigInvalidError);
    expect((refused as ConfigInvalidError).path).toBe('resources[0].audit.wait');
    expect((refused as Error).message).toMatch(/none .* or ack/);
  });
});
