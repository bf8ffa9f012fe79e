import { describe, expect, it } from 'vitest';
import { ConfigInvalidError } from '@sluice/contracts';
import { parseConfig } from './load.js';
import { DEFAULT_AUDIT_NICENESS } from './schema.js';

describe('services.audit.niceness in the config', () => {
  it('is absent unless configured (the supervisor then uses DEFAULT_AUDIT_NICENESS, -5)', () => {
    expect(parseConfig({}).services.audit.niceness).toBeUndefined();
    expect(parseConfig({ services: { audit: { http: '127.0.0.1:7190' } } }).services.audit.niceness).toBeUndefined();
    expect(DEFAULT_AUDIT_NICENESS).toBe(-5);
  });

  it('takes a niceness from -20 to 19; 0 leaves the audit service at the normal priority', () => {
    expect(parseConfig({ services: { audit: { niceness: 0 } } }).services.audit.niceness).toBe(0);
    expect(parseConfig({ services: { audit: { niceness: -20 } } }).services.audit.niceness).toBe(-20);
  });

  it.each([-21, 20, 1.5, 'high'])('names the key for %s', (niceness) => {
    let thrown: unknown;
    try {
      parseConfig({ services: { audit: { niceness } } });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ConfigInvalidError);
    expect((thrown as ConfigInvalidError).path).toBe('services.audit.niceness');
  });
});
