import { describe, expect, it } from 'vitest';
import { headers } from '@nats-io/transport-node';
import { buildEvent, SIGNATURE_HEADER, SIGNER_HEADER } from '@sluice/contracts';
import { createHash, createPrivateKey, sign } from 'node:crypto';
import { createMessageSigner, createProvenanceVerifier, DIGEST_SIGNATURE_SCHEME, generateSigningKeyPair, ProvenanceKeyError, publicKeyPemOf, SIGNATURE_SCHEME_HEADER } from './provenance.js';
import { decodeEvents } from './publisher.js';

const proxy = generateSigningKeyPair();
const approval = generateSigningKeyPair();
const verifier = createProvenanceVerifier({ proxy: proxy.publicKeyPem, approval: approval.publicKeyPem });
const payload = new TextEncoder().encode('[{"id":"e1"}]');

describe('message provenance', () => {
  it('names the signer of a message signed with its key', () => {
    expect(verifier.checkMessage(payload, createMessageSigner('proxy', proxy.privateKeyPem).headersFor(payload))).toEqual({ genuine: true, signer: 'proxy' });
  });

  it('refuses an unsigned message, an unknown signer, a signer without a key, and a signature of other bytes', () => {
    expect(verifier.checkMessage(payload, undefined)).toEqual({ genuine: false, reason: 'unsigned' });
    const forged = headers();
    forged.set(SIGNER_HEADER, 'root');
    forged.set(SIGNATURE_HEADER, 'AAAA');
    expect(verifier.checkMessage(payload, forged)).toMatchObject({ genuine: false, reason: 'signed by an unknown signer' });
    const policy = generateSigningKeyPair();
    expect(verifier.checkMessage(payload, createMessageSigner('policy', policy.privateKeyPem).headersFor(payload))).toMatchObject({ genuine: false, reason: 'no public key configured for signer policy' });
    const other = createMessageSigner('proxy', proxy.privateKeyPem).headersFor(new TextEncoder().encode('[]'));
    expect(verifier.checkMessage(payload, other)).toMatchObject({ genuine: false, reason: 'bad signature for signer proxy' });
  });

  it('signs the digest of the bytes and names the scheme, so that signing costs little per byte', () => {
    const signed = createMessageSigner('proxy', proxy.privateKeyPem).headersFor(payload);
    expect(signed.get(SIGNATURE_SCHEME_HEADER)).toBe(DIGEST_SIGNATURE_SCHEME);
    expect(verifier.checkMessage(new TextEncoder().encode('[{"id":"e2"}]'), signed)).toMatchObject({ genuine: false, reason: 'bad signature for signer proxy' });
  });

  it('still names the signer of a message signed over its bytes, as publishers signed before the digest scheme', () => {
    const legacy = headers();
    legacy.set(SIGNER_HEADER, 'proxy');
    legacy.set(SIGNATURE_HEADER, sign(null, payload, createPrivateKey(proxy.privateKeyPem)).toString('base64'));
    expect(verifier.checkMessage(payload, legacy)).toEqual({ genuine: true, signer: 'proxy' });
    // The scheme header cannot turn that signature into one over a digest, nor the other way round.
    legacy.set(SIGNATURE_SCHEME_HEADER, DIGEST_SIGNATURE_SCHEME);
    expect(verifier.checkMessage(payload, legacy)).toMatchObject({ genuine: false, reason: 'bad signature for signer proxy' });
    const digestSigned = createMessageSigner('proxy', proxy.privateKeyPem).headersFor(payload);
    digestSigned.delete(SIGNATURE_SCHEME_HEADER);
    expect(verifier.checkMessage(payload, digestSigned)).toMatchObject({ genuine: false, reason: 'bad signature for signer proxy' });
  });

  it('refuses a signature scheme it does not know when a message names one', () => {
    const signed = createMessageSigner('proxy', proxy.privateKeyPem).headersFor(payload);
    signed.set(SIGNATURE_SCHEME_HEADER, 'none');
    expect(verifier.checkMessage(payload, signed)).toMatchObject({ genuine: false, reason: 'unknown signature scheme for signer proxy' });
  });

  it('vouches, for a digest signature replayed without its scheme, only for the label and digest, which are no events', () => {
    const signed = createMessageSigner('proxy', proxy.privateKeyPem).headersFor(payload);
    const labelAndDigest = Buffer.concat([Buffer.from('sluice provenance ed25519-sha256\n'), createHash('sha256').update(payload).digest()]);
    signed.delete(SIGNATURE_SCHEME_HEADER);
    expect(verifier.checkMessage(labelAndDigest, signed)).toEqual({ genuine: true, signer: 'proxy' });
    // No JSON: the consumer refuses such a message as unreadable, never stores an event from it.
    expect(() => decodeEvents(labelAndDigest)).toThrow();
  });

  it("refuses the approval key's signature when a message claims to be the proxy's", () => {
    const signed = createMessageSigner('approval', approval.privateKeyPem).headersFor(payload);
    signed.set(SIGNER_HEADER, 'proxy');
    expect(verifier.checkMessage(payload, signed)).toMatchObject({ genuine: false, reason: 'bad signature for signer proxy' });
  });

  it('lets a signer vouch only for its own kinds of event', () => {
    const decided = buildEvent('approval.decided', { id: 'a', source: 's', subject: 'x', time: new Date(), data: { approvalId: 'a', decision: 'approve', approver: 'd', reason: '', final: true, via: 'api' } });
    expect(verifier.refuseEvent('approval', decided)).toBeUndefined();
    expect(verifier.refuseEvent('proxy', decided)).toBe('signer proxy may not publish sluice.approval.decided.v1');
    expect(verifier.refuseEvent('proxy', { ...decided, type: 'something.else' })).toBe('signer proxy may not publish something.else');
  });

  it('takes Ed25519 keys only', () => {
    expect(() => createMessageSigner('proxy', 'not a key')).toThrow(ProvenanceKeyError);
    expect(publicKeyPemOf(proxy.privateKeyPem)).toBe(proxy.publicKeyPem);
  });

  describe('red team: altering a genuinely signed batch', () => {
    const batch = '[{"id":"e1","type":"sluice.command.decided.v1"},{"id":"e2","type":"sluice.command.completed.v1"}]';
    const signed = createMessageSigner('proxy', proxy.privateKeyPem).headersFor(new TextEncoder().encode(batch));

    it('refuses the same events reordered, or re-encoded with a duplicate key that a parser would read differently', () => {
      const reordered = '[{"id":"e2","type":"sluice.command.completed.v1"},{"id":"e1","type":"sluice.command.decided.v1"}]';
      expect(verifier.checkMessage(new TextEncoder().encode(reordered), signed)).toMatchObject({ genuine: false });
      const duplicated = '[{"id":"e1","type":"sluice.command.decided.v1","type":"sluice.approval.decided.v1"},{"id":"e2","type":"sluice.command.completed.v1"}]';
      expect(verifier.checkMessage(new TextEncoder().encode(duplicated), signed)).toMatchObject({ genuine: false });
      expect(verifier.checkMessage(new TextEncoder().encode(`${batch} `), signed)).toMatchObject({ genuine: false });
    });

    it('vouches for the very bytes wherever they are replayed (subject and msg id are not signed): consumers dedupe by event id', () => {
      // What makes a replay harmless is downstream: the store keeps each event id once, and the
      // approval aggregate counts one decision per approver (approval.spec.ts, nats-security).
      expect(verifier.checkMessage(new TextEncoder().encode(batch), signed)).toEqual({ genuine: true, signer: 'proxy' });
      expect(decodeEvents(new TextEncoder().encode(batch)).map((event) => event.id)).toEqual(['e1', 'e2']);
    });
  });
});
