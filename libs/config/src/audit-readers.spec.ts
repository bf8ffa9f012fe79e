import { describe, expect, it } from 'vitest';
import { ConfigInvalidError } from '@sluice/contracts';
import { parseConfig } from './load.js';

describe('audit.readers in the config', () => {
  it('defaults to nobody when absent', () => {
    expect(parseConfig({}).audit.readers).toEqual({ groups: [], subs: [] });
  });

  it('takes groups and subs', () => {
    expect(parseConfig({ audit: { readers: { groups: ['compliance'], subs: ['auditor-1'] } } }).audit.readers).toEqual({ groups: ['compliance'], subs: ['auditor-1'] });
  });

  it('names the key path when readers is not a list of names', () => {
    expect(() => parseConfig({ audit: { readers: { groups: 'compliance' } } })).toThrow(ConfigInvalidError);
    try {
      parseConfig({ audit: { readers: { group: ['compliance'] } } });
    } catch (error) {
      expect((error as ConfigInvalidError).path).toBe('audit.readers.group');
    }
    expect.assertions(2);
  });
});
