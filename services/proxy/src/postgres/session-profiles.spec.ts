import { beforeAll, describe, expect, it } from 'vitest';
import { loadSqlClassifier } from '@sluice/sql-classifier';
import { SessionProfiles } from './session-profiles.js';

describe('SessionProfiles: the facts a FETCH\'s rows derive from', () => {
  beforeAll(() => loadSqlClassifier());

  it('are those of its cursor\'s DECLARE, and never current for a cursor no DECLARE opened', () => {
    const profiles = new SessionProfiles(() => undefined);
    profiles.command('declare c cursor with hold for select x from v', undefined, 3);
    expect(profiles.command('fetch all from c', undefined, 7).factsEpoch).toBe(3);
    expect(profiles.command('select 1', undefined, 7).factsEpoch).toBe(7);
    expect(profiles.command('fetch all from nobody', undefined, 7).factsEpoch).toBe(-1);
  });
});
