import { describe, expect, it } from 'vitest';
import { ConfigInvalidError } from '@sluice/contracts';
import { parseConfig } from './load.js';

const identity = { oidc: [{ issuer: 'https://idp.example.com', audience: 'sluice' }, { issuer: 'https://ci.example.com', audience: 'sluice' }] };
const pathOf = (document: unknown): string | undefined => {
  try {
    parseConfig(document);
    return undefined;
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigInvalidError);
    return (error as ConfigInvalidError).path;
  }
};

describe('issuer beside subjects, approvers and audit readers', () => {
  it('takes one issuer or a list of configured ones', () => {
    const config = parseConfig({
      identity,
      audit: { readers: { groups: ['compliance'], issuer: 'https://idp.example.com' } },
      rules: [{ name: 'r', effect: 'approve', subjects: { groups: ['agents'], issuer: ['https://idp.example.com', 'https://ci.example.com'] }, approvers: { groups: ['dba'], issuer: 'https://idp.example.com' } }],
    });
    expect(config.rules[0]!.subjects?.issuer).toEqual(['https://idp.example.com', 'https://ci.example.com']);
    expect(config.audit.readers.issuer).toBe('https://idp.example.com');
  });

  it('names the key of an issuer that is not one of identity.oidc (a typo would silently shut everyone out)', () => {
    expect(pathOf({ identity, rules: [{ name: 'r', effect: 'allow', subjects: { issuer: 'https://idp.example.com/' } }] })).toBe('rules[0].subjects.issuer');
    expect(pathOf({ identity, rules: [{ name: 'r', effect: 'approve', approvers: { groups: ['dba'], issuer: ['https://ci.example.com', 'https://other'] } }] })).toBe('rules[0].approvers.issuer[1]');
    expect(pathOf({ identity, audit: { readers: { groups: ['c'], issuer: 'https://other' } } })).toBe('audit.readers.issuer');
    expect(
      pathOf({ identity, approval: { slack: { botToken: { env: 'SLACK_BOT' }, signingSecret: { env: 'SLACK_SIGNING' }, channel: '#c', users: { U1: { sub: 'dba-1', groups: ['dba'], issuer: 'https://other' } } } } }),
    ).toBe('approval.slack.users.U1.issuer');
  });

  it('refuses an identity.oidc issuer listed twice (tokens find their entry by exact iss: the second would never be used)', () => {
    const twice = { oidc: [...identity.oidc, { issuer: 'https://idp.example.com', audience: 'sluice-dev', groupsClaim: 'roles' }] };
    expect(pathOf({ identity: twice })).toBe('identity.oidc[2].issuer');
    // Another spelling is another issuer: tokens must carry it exactly.
    expect(pathOf({ identity: { oidc: [...identity.oidc, { issuer: 'https://idp.example.com/', audience: 'sluice' }] } })).toBeUndefined();
  });

  it('refuses an empty issuer list', () => {
    expect(pathOf({ identity, rules: [{ name: 'r', effect: 'allow', subjects: { issuer: [] } }] })).toBe('rules[0].subjects.issuer');
  });
});
