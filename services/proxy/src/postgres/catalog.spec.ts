import { describe, expect, it } from 'vitest';
import { TableCatalog } from './catalog.js';

const catalog = (): TableCatalog => new TableCatalog(() => ({ host: '127.0.0.1', port: 1, database: 'none', user: 'none' }) as never);

describe('TableCatalog.factsCurrent', () => {
  it('holds for facts taken at the epoch now while no schema change is in flight', () => {
    const target = catalog();
    expect(target.factsCurrent(target.schemaEpoch)).toBe(true);
  });

  it('fails from the moment a schema change is let through until long after it ends, for facts taken before it ends', () => {
    const target = catalog();
    const before = target.schemaEpoch;
    target.schemaChangeBegan();
    const during = target.schemaEpoch;
    // Its commit may land before a statement decided now runs: nothing taken now is current.
    expect(target.factsCurrent(before)).toBe(false);
    expect(target.factsCurrent(during)).toBe(false);
    target.schemaChangeEnded();
    expect(target.factsCurrent(before)).toBe(false);
    expect(target.factsCurrent(during)).toBe(false);
    expect(target.factsCurrent(target.schemaEpoch)).toBe(true);
  });

  it('fails while any of two sessions\' schema changes is in flight', () => {
    const target = catalog();
    target.schemaChangeBegan();
    target.schemaChangeBegan();
    target.schemaChangeEnded();
    expect(target.factsCurrent(target.schemaEpoch)).toBe(false);
    target.schemaChangeEnded();
    expect(target.factsCurrent(target.schemaEpoch)).toBe(true);
  });
});
