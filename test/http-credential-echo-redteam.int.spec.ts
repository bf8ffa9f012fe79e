import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RuleConfig } from '@sluice/config';
import { compilePiiMasking } from './support/engine-ports.js';
import { call, startHttpFrontDoor, type HttpFrontDoor, type TargetRoutes } from './support/http-proxy-harness.js';

/**
 * Red team on the echoed-credential scrub (branch http-speed's one-pass and cut-and-prepend
 * scrubbing): a real target that echoes the credential Sluice injects in the forms real servers
 * write it in, with and without a masking profile. The agent must never be able to read it back.
 */
const rules: RuleConfig[] = [
  { name: 'masked-read', effect: 'allow', subjects: { groups: ['masked-agents'] }, actions: ['read'], mask: 'pii' },
  { name: 'unmasked-read', effect: 'allow', subjects: { groups: ['unmasked-agents'] }, actions: ['read'] },
] as RuleConfig[];

/** A base64-like secret: `/`, `+` and `=` are what JSON and HTML encoders escape in their own ways. */
const SECRET = 'k3y/Ab+Cd9=ef/GH+ij0';
/** Pieces of the secret an agent could join back together; none may reach it. */
const LEAKS = ['k3y', 'Ab+Cd9', 'GH+ij0', 'Cd9=ef', 'Ab\\u002BCd9', 'Ab\\u002bCd9'];

/** Every escape of each non-alphanumeric character of `text`, as `escape` writes it. */
const escapeSymbols = (text: string, escape: (char: string) => string): string => text.replace(/[^A-Za-z0-9]/g, escape);
const hex = (char: string): string => char.charCodeAt(0).toString(16).padStart(2, '0');

const echoForms: Record<string, (value: string) => string> = {
  // PHP's json_encode escapes every `/` by default.
  'php-json': (value) => JSON.stringify({ auth: value }).replaceAll('/', '\\/'),
  // .NET's System.Text.Json escapes `+` (and HTML-sensitive characters) as \u002B.
  'dotnet-json': (value) => `{"auth":"${escapeSymbols(value, (char) => (/[+&<>'`]/.test(char) ? `\\u00${hex(char).toUpperCase()}` : char))}"}`,
  // An encoder escaping every symbol, in lower-case hex.
  'json-all-escaped': (value) => `{"auth":"${escapeSymbols(value, (char) => `\\u00${hex(char)}`)}"}`,
  'percent-lower': (value) => `auth=${escapeSymbols(value, (char) => `%${hex(char)}`)}`,
  'percent-form': (value) => `auth=${encodeURIComponent(value).replaceAll('%20', '+')}`,
  // Go's html/template writes `+` as &#43;.
  'html-entities': (value) => `<pre>${escapeSymbols(value, (char) => `&#${char.charCodeAt(0)};`)}</pre>`,
  'html-hex-entities': (value) => `<pre>${escapeSymbols(value, (char) => `&#x${hex(char)};`)}</pre>`,
  'upper-case': (value) => `AUTH: ${value.toUpperCase()}`,
  base64: (value) => `dump=${Buffer.from(`GET / HTTP/1.1\r\nauthorization: ${value}\r\n\r\n`).toString('base64')}`,
  'base64-shifted': (value) => `dump=${Buffer.from(`x-a: 1\r\nauthorization: ${value}\r\n`).toString('base64')}`,
  'base64url-shifted': (value) => `dump=${Buffer.from(`xy: ${value}`).toString('base64url')}`,
  'utf-16': (value) => Buffer.from(`auth: ${value}`, 'utf16le').toString('latin1'),
};

/** The whole-JSON read limit of the front door (maxJsonBytes), small so a body passes it cheaply. */
const WHOLE_READ_LIMIT = 4096;

const routes: TargetRoutes = (req, res) => {
  const auth = String(req.headers.authorization);
  const url = new URL(req.url!, 'http://target');
  const form = echoForms[url.pathname.slice(1)];
  if (form) {
    const body = Buffer.from(form(auth), url.pathname === '/utf-16' ? 'latin1' : 'utf8');
    res.writeHead(200, { 'content-type': url.searchParams.get('type') ?? 'text/plain' });
    return res.end(body);
  }
  if (url.pathname === '/past-the-whole-read') {
    // A JSON body past maxJsonBytes with the escaped credential across the cut (at the offset asked).
    const echoed = JSON.stringify(auth).replaceAll('/', '\\/').replaceAll('+', '\\u002B');
    const at = Number(url.searchParams.get('at'));
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(`{"pad":"${'x'.repeat(at)}","auth":${echoed},"more":"${'y'.repeat(WHOLE_READ_LIMIT)}"}`);
  }
  if (url.pathname === '/double-encoding') {
    // Two Content-Encoding headers: the body is gzip inside identity (a client decodes it).
    res.setHeader('content-type', 'text/plain');
    res.setHeader('content-encoding', ['identity', 'gzip']);
    res.writeHead(200);
    return res.end(gzipSync(`auth=${auth}`));
  }
  if (url.pathname === '/gzip-twice') {
    res.setHeader('content-type', 'text/plain');
    res.setHeader('content-encoding', ['gzip', 'gzip']);
    res.writeHead(200);
    return res.end(gzipSync(gzipSync(`auth=${auth}`)));
  }
  return undefined;
};

describe('HTTP echoed credentials against a red team', () => {
  let door: HttpFrontDoor;
  let maskedToken: string;
  let unmaskedToken: string;

  beforeAll(async () => {
    process.env.REDTEAM_ECHO_TOKEN = SECRET;
    door = await startHttpFrontDoor({
      rules,
      masking: compilePiiMasking('http-echo-redteam'),
      routes,
      credentials: { headers: { Authorization: { env: 'REDTEAM_ECHO_TOKEN', prefix: 'Bearer ' } } },
      adapterOptions: { maxJsonBytes: WHOLE_READ_LIMIT },
    });
    maskedToken = await door.idp.mint({ sub: 'masked-bot', groups: ['masked-agents'] });
    unmaskedToken = await door.idp.mint({ sub: 'plain-bot', groups: ['unmasked-agents'] });
  });

  afterAll(async () => {
    await door.close();
  });

  const expectNoLeak = (text: string) => {
    for (const leak of LEAKS) expect(text.toLowerCase()).not.toContain(leak.toLowerCase());
  };

  for (const form of Object.keys(echoForms)) {
    for (const type of ['text/plain', 'application/json', 'text/html']) {
      it(`scrubs the credential echoed as ${form} (${type}), masked or not`, async () => {
        for (const token of [maskedToken, unmaskedToken]) {
          const reply = await call(door.port, `/${form}?type=${encodeURIComponent(type)}`, { token });
          expect(reply.status).toBe(200);
          expect(reply.body).toContain('[REDACTED:credential]');
          // What an agent would decode: the body as it came, as base64 and as UTF-16.
          const raw = Buffer.from(reply.body, 'latin1');
          expectNoLeak(reply.body);
          expectNoLeak(raw.toString('utf16le'));
          for (const match of reply.body.match(/[A-Za-z0-9+/_-]{8,}={0,2}/g) ?? []) {
            for (const shift of ['', 'A', 'AA']) expectNoLeak(Buffer.from(shift + match, 'base64').toString('latin1'));
          }
        }
      });
    }
  }

  it('scrubs an escaped credential across the cut of a JSON body past the whole-read limit', async () => {
    for (let at = WHOLE_READ_LIMIT - 140; at <= WHOLE_READ_LIMIT; at += 7) {
      const reply = await call(door.port, `/past-the-whole-read?at=${at}`, { token: unmaskedToken });
      expect(reply.status).toBe(200);
      expect(reply.body).toContain('"auth":"[REDACTED:credential]"');
      expectNoLeak(reply.body);
    }
  });

  it('never hands over a body under two Content-Encoding headers it did not decode both of', async () => {
    for (const path of ['/double-encoding', '/gzip-twice']) {
      for (const token of [maskedToken, unmaskedToken]) {
        const reply = await call(door.port, path, { token });
        expect(reply.status).toBe(403);
        expect(reply.body).not.toContain(SECRET);
      }
    }
  });

});

describe('HTTP echoed credentials after the secret file is rotated', () => {
  let door: HttpFrontDoor;
  let token: string;
  const directory = mkdtempSync(join(tmpdir(), 'sluice-rotation-'));
  const secretFile = join(directory, 'target-token');
  /** What the target saw last: it answers a later request with it, as a cache would. */
  let remembered = '';

  beforeAll(async () => {
    writeFileSync(secretFile, 'before-rotation-5be1c0ffee');
    door = await startHttpFrontDoor({
      rules,
      masking: compilePiiMasking('http-echo-rotation'),
      routes: (req, res) => {
        if (req.url === '/remember') remembered = String(req.headers.authorization);
        if (req.url !== '/replay' && req.url !== '/remember') return undefined;
        res.writeHead(200, { 'content-type': 'text/plain' });
        return res.end(`seen earlier: ${remembered}`);
      },
      credentials: { headers: { Authorization: { file: secretFile, prefix: 'Bearer ' } } },
    });
    token = await door.idp.mint({ sub: 'plain-bot', groups: ['unmasked-agents'] });
  });

  afterAll(async () => {
    await door.close();
    rmSync(directory, { recursive: true, force: true });
  });

  it('still scrubs a value injected before the rotation when the target echoes it after', async () => {
    expect((await call(door.port, '/remember', { token })).body).toBe('seen earlier: [REDACTED:credential]');
    writeFileSync(secretFile, 'after-rotation-0ddba11cafe');
    const reply = await call(door.port, '/replay', { token });
    expect(reply.body).not.toContain('before-rotation');
    expect(reply.body).toBe('seen earlier: [REDACTED:credential]');
  });
});
