import { describe, expect, it } from 'vitest';
import { parseConfig, type LoadedConfig } from '@sluice/config';
import { decodeMaskingSnapshot } from '@sluice/masking-engine';
import { buildVersion, resolveHashKey } from './snapshot.js';

const loaded = (masking: unknown): LoadedConfig => ({ config: parseConfig({ masking }), path: '/nowhere/sluice.yaml', dir: '/nowhere' });

describe('masking profiles snapshot', () => {
  it('uses the key generated at start when no hash key is configured', () => {
    expect(resolveHashKey(loaded({}), 'generated-key')).toEqual({ key: 'generated-key', source: 'generated' });
  });

  it('reads the configured hash key from its environment variable', () => {
    process.env.SLUICE_SNAPSHOT_SPEC_KEY = 'from-env';
    try {
      expect(resolveHashKey(loaded({ hashKey: { env: 'SLUICE_SNAPSHOT_SPEC_KEY' } }), 'generated')).toEqual({ key: 'from-env', source: 'config' });
    } finally {
      delete process.env.SLUICE_SNAPSHOT_SPEC_KEY;
    }
  });

  it('refuses a configured hash key that cannot be read rather than hashing with another key', () => {
    expect(() => resolveHashKey(loaded({ hashKey: { env: 'SLUICE_SNAPSHOT_SPEC_UNSET' } }), 'generated')).toThrow(
      expect.objectContaining({ code: 'ERR_SECRET_UNAVAILABLE' }),
    );
  });

  it('serialises the masking section with the resolved key in place of the secret reference', () => {
    const version = buildVersion(loaded({ profiles: { pii: { detectors: ['email'] } } }), 'the-key', 7n);
    const decoded = decodeMaskingSnapshot(version.json);
    expect(decoded.hashKey).toBe('the-key');
    expect(Object.keys(decoded.config.profiles)).toEqual(['pii']);
    expect(version.version).toBe(7n);
    expect(version.compiled.profile('pii')!.maskText('a@b.io', {})).toBe('a***@b.io');
  });
});
