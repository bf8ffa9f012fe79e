import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigInvalidError } from '@sluice/contracts';
import { loadConfig, parseConfig } from './load.js';

const oidc = { issuer: 'http://127.0.0.1:9000', audience: 'sluice' };
const resource = { name: 'db', type: 'postgres', listen: '127.0.0.1:15432', target: { host: '127.0.0.1', database: 'shop' }, credentials: { username: 'u' } };
const rule = { name: 'read', effect: 'allow', actions: ['read'] };

/** The one line `sluice up` prints after "invalid config: ". */
const problemWith = (document: unknown): string => {
  try {
    parseConfig(document);
  } catch (error) {
    if (error instanceof ConfigInvalidError) return error.message;
    throw error;
  }
  throw new Error('the config was accepted');
};

describe('a config a person got wrong is refused with the key they wrote', () => {
  it('names a misspelt required key as written, and the key it should be', () => {
    expect(problemWith({ rules: [{ name: 'read', efect: 'allow' }] })).toBe('rules[0].efect: unknown key efect, did you mean effect?');
    expect(problemWith({ identity: { oidc: [{ issuer: oidc.issuer, audiance: 'sluice' }] } })).toBe(
      'identity.oidc[0].audiance: unknown key audiance, did you mean audience?',
    );
    expect(problemWith({ resources: [{ ...resource, listen: undefined, listn: '127.0.0.1:1' }] })).toBe('resources[0].listn: unknown key listn, did you mean listen?');
  });

  it('names an unknown key that is no spelling of the missing one, and says what is missing', () => {
    expect(problemWith({ identity: { oidc: [{ issuer: oidc.issuer, aud: 'sluice' }] } })).toBe('identity.oidc[0].aud: unknown key aud (and audience is required)');
  });

  it('says "required" for a missing key, never zod\'s "Invalid input"', () => {
    expect(problemWith({ identity: { oidc: [{ issuer: oidc.issuer }] } })).toBe('identity.oidc[0].audience: required');
    expect(problemWith({ rules: [{ name: 'read' }] })).toBe('rules[0].effect: required, expected one of allow, deny, approve');
  });

  it('says what a listen address looks like when it is not a string', () => {
    expect(problemWith({ admin: { listen: 7000 } })).toBe('admin.listen: expected host:port, e.g. 127.0.0.1:7000');
  });

  it('keeps the messages that were already clear', () => {
    expect(problemWith({ rules: [{ ...rule, effect: 'permit' }] })).toBe('rules[0].effect: expected one of allow, deny, approve');
    expect(problemWith({ rulez: [] })).toBe('rulez: unknown key rulez');
    expect(() => parseConfig({ identity: { oidc: [oidc] }, resources: [resource], rules: [rule] })).not.toThrow();
  });
});

describe('a config file that cannot be read is named, with the reason', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const problemLoading = (name: string, text?: string): string => {
    const file = join(dir, name);
    if (text !== undefined) writeFileSync(file, text);
    try {
      loadConfig(file);
    } catch (error) {
      if (error instanceof ConfigInvalidError) return error.message;
      throw error;
    }
    throw new Error('the config was accepted');
  };

  it('says a missing file is missing', () => {
    expect(problemLoading('nope.yaml')).toBe(`${join(dir, 'nope.yaml')}: no such file`);
  });

  it('gives the line and column of a YAML error', () => {
    expect(problemLoading('broken.yaml', 'rules:\n  - name: x\n    effect: allow\n   bad: 1\n')).toBe(
      `${join(dir, 'broken.yaml')}: not valid YAML (line 4, column 1): Sequence item without - indicator`,
    );
  });

  it('refuses an empty file', () => {
    expect(problemLoading('empty.yaml', '# nothing yet\n')).toBe(`${join(dir, 'empty.yaml')}: empty file`);
  });
});
