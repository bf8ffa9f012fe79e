import { describe, expect, it } from 'vitest';
import { mayDecide } from './approvers.js';

describe('mayDecide', () => {
  const dba = { sub: 'dba-1', groups: ['dba'], issuer: 'https://idp.example.com' };

  it('takes any issuer when the rule names none (and requests stored before issuers were kept)', () => {
    expect(mayDecide({ groups: ['dba'], subs: [], minApprovals: 1 }, { ...dba, issuer: 'https://ci.example.com' })).toBe(true);
    expect(mayDecide({ groups: ['dba'], subs: [], issuers: [], minApprovals: 1 }, dba)).toBe(true);
  });

  it('refuses the same sub or group from an issuer the rule does not name', () => {
    const rule = { groups: ['dba'], subs: ['dba-1'], issuers: ['https://idp.example.com'], minApprovals: 1 };
    expect(mayDecide(rule, dba)).toBe(true);
    expect(mayDecide(rule, { ...dba, issuer: 'https://ci.example.com' })).toBe(false);
    expect(mayDecide(rule, { ...dba, issuer: '' })).toBe(false);
  });

  it('still needs the sub or a group when the issuer matches', () => {
    expect(mayDecide({ groups: ['dba'], subs: [], issuers: ['https://idp.example.com'], minApprovals: 1 }, { ...dba, groups: ['agents'] })).toBe(false);
  });
});
