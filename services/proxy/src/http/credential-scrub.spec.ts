import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { credentialNeedles, CredentialScrubStream, scrubText } from './credential-scrub.js';

const SECRET = 'Bearer s3cr3t-t0ken';

const scrub = async (chunks: readonly Buffer[]): Promise<string> => {
  const out: Buffer[] = [];
  for await (const chunk of Readable.from(chunks).pipe(new CredentialScrubStream(credentialNeedles([SECRET, 's3cr3t-t0ken'])))) out.push(chunk as Buffer);
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
    const needles = credentialNeedles(['a/b"c d?']);
    expect(scrubText('x a/b\\"c d? y', needles)).toBe('x [REDACTED:credential] y');
    expect(scrubText('q=a%2Fb%22c%20d%3F', needles)).toBe('q=[REDACTED:credential]');
    expect(scrubText('nothing here', needles)).toBe('nothing here');
  });

  it('ignores secrets too short to search for', () => {
    expect(credentialNeedles(['abc'])).toEqual([]);
  });
});
