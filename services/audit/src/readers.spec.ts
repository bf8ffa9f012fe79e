import { describe, expect, it } from 'vitest';
import { isAuditReader } from './readers.js';

const subject = (sub: string, groups: string[] = []) => ({ sub, groups, issuer: 'http://idp' });

describe('audit readers', () => {
  it('admits a subject whose group is listed', () => {
    expect(isAuditReader(subject('carol', ['compliance']), { groups: ['compliance'], subs: [] })).toBe(true);
  });
  it('admits a subject whose sub is listed', () => {
    expect(isAuditReader(subject('auditor-1'), { groups: [], subs: ['auditor-1'] })).toBe(true);
  });
  it('refuses a subject named nowhere', () => {
    expect(isAuditReader(subject('agent', ['support-agents']), { groups: ['compliance'], subs: ['auditor-1'] })).toBe(false);
  });
  it('refuses everyone when no readers are configured', () => {
    expect(isAuditReader(subject('root', ['admins', 'compliance']), { groups: [], subs: [] })).toBe(false);
  });
  it('refuses a listed name from an issuer other than the one the readers name', () => {
    const readers = { groups: ['compliance'], subs: ['auditor-1'], issuer: 'http://idp' };
    expect(isAuditReader(subject('carol', ['compliance']), readers)).toBe(true);
    expect(isAuditReader({ ...subject('carol', ['compliance']), issuer: 'http://ci' }, readers)).toBe(false);
    expect(isAuditReader({ ...subject('auditor-1'), issuer: 'http://ci' }, { ...readers, issuer: ['http://idp', 'http://other'] })).toBe(false);
  });
});
