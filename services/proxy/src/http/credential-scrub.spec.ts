import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { credentialPattern, CredentialNotScrubbed, CredentialScrubStream, scrubCredentials, scrubText } from './credential-scrub.js';

const SECRET = 'Bearer s3cr3t-t0ken';

const scrub = async (chunks: readonly Buffer[]): Promise<string> => {
  const out: Buffer[] = [];
  for await (const chunk of Readable.from(chunks).pipe(new CredentialScrubStream(credentialPattern([SECRET, 's3cr3t-t0ken'])!))) out.push(chunk as Buffer);
  return Buffer.concat(out).toString('utf8');
};

describe('credential scrubbing', () => {
  it('replaces a credential split across two chunks at every offset', async () => {
    const body = Buffer.from(`{"authorization":"${SECRET}","again":"s3cr3t-t0ken"} tail`);
    for (let cut = 0; cut <= body.length; cut++) {
      const text = await scrub([body.subarray(0, cut), body.subarray(cut)]);
      expect(text, `cut at ${cut}`).not.toContain('s3cr3t-t0ken');
      expect(text).toBe('{"authorization":"[REDACTED:credential]","again":"[REDACTED:credential]"} tail');
    }
  });

  it('replaces JSON-escaped and percent-encoded forms, and leaves other text as it is', () => {
    const needles = credentialPattern(['a/b"c d?']);
    expect(scrubText('x a/b\\"c d? y', needles)).toBe('x [REDACTED:credential] y');
    expect(scrubText('q=a%2Fb%22c%20d%3F', needles)).toBe('q=[REDACTED:credential]');
    expect(scrubText('nothing here', needles)).toBe('nothing here');
  });

  it('replaces escaped, entity-encoded, upper-cased, UTF-16 and base64 forms split across two chunks at every offset', async () => {
    const forms = [
      'Bearer s3cr3t\\u002dt0ken',
      'Bearer\\u0020s3cr3t-t0ken',
      'bearer%20S3CR3T%2dT0KEN',
      'Bearer&#32;s3cr3t&#x2D;t0ken',
      Buffer.from('Bearer s3cr3t-t0ken', 'utf16le').toString('latin1'),
      Buffer.from('x: Bearer s3cr3t-t0ken').toString('base64'),
    ];
    for (const form of forms) {
      const body = Buffer.from(`[${form}] tail`, 'latin1');
      for (let cut = 0; cut <= body.length; cut++) {
        expect(await scrub([body.subarray(0, cut), body.subarray(cut)]), `${form} cut at ${cut}`).toMatch(/^\[.*\[REDACTED:credential\].*\] tail$/);
      }
    }
  });

  it('refuses a body holding a form it finds but cannot replace, and leaves look-alikes as they are', () => {
    const pattern = credentialPattern([SECRET, 's3cr3t-t0ken']);
    expect(() => scrubCredentials(Buffer.from('x s3cr3t&#x000000002d;t0ken y'), pattern)).toThrow(CredentialNotScrubbed);
    expect(scrubText('s3cr3t&#x000000002d;t0ken', pattern)).toBe('[REDACTED:credential]');
    const lookAlike = Buffer.from('s3cr3t and t0ken, S3CR3T_T0KEN, s3cr3t-t0ke');
    expect(scrubCredentials(lookAlike, pattern)).toBe(lookAlike);
  });

  it('ignores secrets too short to search for', () => {
    expect(credentialPattern(['abc'])).toBeUndefined();
  });
});
