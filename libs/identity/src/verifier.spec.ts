import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SluiceErrorCode } from '@sluice/contracts';
import { startTestIssuer, type TestIssuer } from '../../../test/support/oidc.js';
import { createTokenVerifier, MAX_SUBJECT_BYTES, MAX_TOKEN_CHARS, readGroups, type TokenVerifier } from './verifier.js';

describe('createTokenVerifier', () => {
  let idp: TestIssuer;
  let verifier: TokenVerifier;
  beforeAll(async () => {
    idp = await startTestIssuer();
    verifier = createTokenVerifier([{ issuer: idp.issuer, audience: 'sluice', groupsClaim: 'groups', clockTolerance: 5_000 }]);
  });
  afterAll(() => idp.close());

  const rejection = async (token: string) => {
    try {
      await verifier.verify(token);
    } catch (error) {
      return (error as { code?: string }).code;
    }
    return 'accepted';
  };

  it('accepts a valid token and reads subject, groups and expiry', async () => {
    const verified = await verifier.verify(await idp.mint({ sub: 'agent-7', groups: ['support-agents'] }));
    expect(verified.subject).toEqual({ sub: 'agent-7', groups: ['support-agents'], issuer: idp.issuer });
    expect(verified.expiresAt!.getTime()).toBeGreaterThan(Date.now());
  });

  it('refuses garbage, expired, not-yet-valid, foreign-signed, wrong-audience, wrong-issuer, alg none and HS256 tokens', async () => {
    expect(await rejection('not-a-token')).toBe(SluiceErrorCode.TokenInvalid);
    expect(await rejection(await idp.mint({ sub: 'a', expiresIn: -120 }))).toBe(SluiceErrorCode.TokenExpired);
    expect(await rejection(await idp.mint({ sub: 'a', notBefore: 600 }))).toBe(SluiceErrorCode.TokenInvalid);
    expect(await rejection(await idp.mint({ sub: 'a', foreignKey: true }))).toBe(SluiceErrorCode.TokenInvalid);
    expect(await rejection(await idp.mint({ sub: 'a', aud: 'another-api' }))).toBe(SluiceErrorCode.TokenInvalid);
    expect(await rejection(await idp.mint({ sub: 'a', iss: 'http://127.0.0.1:1' }))).toBe(SluiceErrorCode.TokenInvalid);
    expect(await rejection(idp.mintUnsigned({ sub: 'a' }))).toBe(SluiceErrorCode.TokenInvalid);
    expect(await rejection(await idp.mintSymmetric({ sub: 'a' }))).toBe(SluiceErrorCode.TokenInvalid);
  });

  it('refuses a token longer than PostgreSQL takes in an authentication message before decoding any of it', async () => {
    const padded = await idp.mint({ sub: 'a', extraClaims: { pad: 'x'.repeat(MAX_TOKEN_CHARS) } });
    expect(padded.length).toBeGreaterThan(MAX_TOKEN_CHARS);
    expect(await rejection(padded)).toBe(SluiceErrorCode.TokenInvalid);
    expect(await rejection(`${'e'.repeat(20)}.${'e'.repeat(32 * 1024 * 1024)}.x`)).toBe(SluiceErrorCode.TokenInvalid);
    // A large but plausible token (many groups) still passes.
    const groups = Array.from({ length: 600 }, (_, index) => `group-${index}-of-a-large-directory`);
    expect((await verifier.verify(await idp.mint({ sub: 'a', groups }))).subject.groups).toHaveLength(600);
  });

  it('refuses a subject longer than MAX_SUBJECT_BYTES of UTF-8, which the event store could not index', async () => {
    expect((await verifier.verify(await idp.mint({ sub: 's'.repeat(MAX_SUBJECT_BYTES) }))).subject.sub).toHaveLength(MAX_SUBJECT_BYTES);
    expect(await rejection(await idp.mint({ sub: 's'.repeat(MAX_SUBJECT_BYTES + 1) }))).toBe(SluiceErrorCode.TokenInvalid);
    // Counted in bytes: 342 three-byte characters are 1026 bytes.
    expect(await rejection(await idp.mint({ sub: '\u20ac'.repeat(342) }))).toBe(SluiceErrorCode.TokenInvalid);
  });

  it('accepts tokens signed with a rotated key without a restart', async () => {
    // A fresh verifier: the JWKS refetch on an unknown kid is rate-limited per verifier.
    const rotating = createTokenVerifier([{ issuer: idp.issuer, audience: 'sluice', jwksCooldown: 100 }]);
    await rotating.verify(await idp.mint({ sub: 'before' }));
    await idp.rotateKey();
    await new Promise((resolve) => setTimeout(resolve, 150));
    const verified = await rotating.verify(await idp.mint({ sub: 'after' }));
    expect(verified.subject.sub).toBe('after');
  });

  it('reads groups from a dotted claim path', () => {
    expect(readGroups({ realm_access: { roles: ['dba', 'ops'] } }, 'realm_access.roles')).toEqual(['dba', 'ops']);
    expect(readGroups({ groups: 'a b' }, 'groups')).toEqual(['a', 'b']);
    expect(readGroups({}, 'groups')).toEqual([]);
  });
});

describe('the verified-token memory', () => {
  it('answers a repeated token without a new check and refuses it once it has expired', async () => {
    const idp = await startTestIssuer();
    let clock = Date.now();
    const verifier = createTokenVerifier([{ issuer: idp.issuer, audience: 'sluice', clockTolerance: 0 }], { now: () => clock });
    const token = await idp.mint({ sub: 'repeat', expiresIn: 60 });
    const first = await verifier.verify(token);
    await idp.close();
    // The issuer is gone: only the memory can answer now.
    expect(await verifier.verify(token)).toBe(first);
    clock += 61_000;
    await expect(verifier.verify(token)).rejects.toMatchObject({ code: SluiceErrorCode.TokenExpired });
  });
});
