import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RuleConfig } from '@sluice/config';
import { MAX_JSON_DEPTH } from '@sluice/masking-engine';
import { compilePiiMasking, UNDETECTABLE_SSN } from './support/engine-ports.js';
import { call, startHttpFrontDoor, type HttpFrontDoor, type TargetRoutes } from './support/http-proxy-harness.js';

/**
 * Red team on masking's JSON depth check moving into the walk (536773a), through the HTTP front
 * door: a document deeper than MAX_JSON_DEPTH must be withheld (or masked whole), whatever its
 * content type and layout. UNDETECTABLE_SSN is masked only by the `(?i)ssn` column rule.
 */
const rules: RuleConfig[] = [{ name: 'masked-read', effect: 'allow', subjects: { groups: ['masked-agents'] }, actions: ['read'], mask: 'pii' }] as RuleConfig[];

/** A document nested `levels` arrays deep around `inner`, pretty-printed (one member or bracket a line). */
const deepPretty = (levels: number, inner: unknown): string => JSON.stringify({ deep: Array.from({ length: levels }).reduce<unknown>((node) => [node], 0), ...(inner as object) }, null, 1);

/** Covered members the line-by-line text scan does not see once pretty-printed: a key spelled with an escape, an object under a covered key. */
const COVERED = { ssn: UNDETECTABLE_SSN, holder: { ssn: { value: UNDETECTABLE_SSN } } };

const routes: TargetRoutes = (req, res) => {
  const url = new URL(req.url!, 'http://target');
  const levels = Number(url.searchParams.get('levels') ?? '1');
  const type = url.searchParams.get('type') ?? 'application/json';
  if (url.pathname === '/deep-pretty') {
    res.writeHead(200, { 'content-type': type });
    return res.end(deepPretty(levels, COVERED).replace('"ssn": "', '"\\u0073sn": "'));
  }
  if (url.pathname === '/deep-one-line') {
    res.writeHead(200, { 'content-type': type });
    return res.end(JSON.stringify({ deep: Array.from({ length: levels }).reduce<unknown>((node) => [node], 0), ssn: UNDETECTABLE_SSN }));
  }
  if (url.pathname === '/cut-document') {
    // A document cut short (a log tail, a truncated export): not JSON, so its covered members are found in the text.
    res.writeHead(200, { 'content-type': type });
    const whole = JSON.stringify({ name: 'Ann', ...COVERED, tail: 'x'.repeat(40) }, null, 1).replace('"ssn": "', '"\\u0073sn": "');
    return res.end(whole.slice(0, -20));
  }
  return undefined;
};

describe('an HTTP body nested past the masking depth limit', () => {
  let door: HttpFrontDoor;
  let token: string;

  beforeAll(async () => {
    door = await startHttpFrontDoor({ rules, masking: compilePiiMasking('dataplane-http'), routes });
    token = await door.idp.mint({ sub: 'deep-agent', groups: ['masked-agents'] });
  });
  afterAll(() => door.close());

  it('masks a covered member of a document within the limit, in every layout', async () => {
    for (const path of ['/deep-pretty', '/deep-one-line']) {
      for (const type of ['application/json', 'text/plain', 'application/x-ndjson']) {
        const reply = await call(door.port, `${path}?levels=${MAX_JSON_DEPTH - 8}&type=${encodeURIComponent(type)}`, { token });
        expect(reply.status, `${path} ${type}`).toBe(200);
        expect(reply.body, `${path} ${type}`).not.toContain(UNDETECTABLE_SSN);
      }
    }
  });

  it('withholds a document past the limit, pretty-printed or not, JSON or text', async () => {
    for (const path of ['/deep-pretty', '/deep-one-line']) {
      for (const type of ['application/json', 'text/plain', 'application/x-ndjson']) {
        const reply = await call(door.port, `${path}?levels=${MAX_JSON_DEPTH + 8}&type=${encodeURIComponent(type)}`, { token });
        expect(reply.body, `${path} ${type}`).not.toContain(UNDETECTABLE_SSN);
        expect(reply.status, `${path} ${type}`).toBe(503);
      }
    }
  });
});

describe('an HTTP body holding a JSON document cut short', () => {
  let door: HttpFrontDoor;

  beforeAll(async () => {
    door = await startHttpFrontDoor({ rules, masking: compilePiiMasking('dataplane-http-cut'), routes });
  });
  afterAll(() => door.close());

  it('masks a covered member whose name is written with an escape, or whose value is an object', async () => {
    const token = await door.idp.mint({ sub: 'cut-agent', groups: ['masked-agents'] });
    for (const type of ['application/json', 'text/plain', 'application/x-ndjson']) {
      const reply = await call(door.port, `/cut-document?type=${encodeURIComponent(type)}`, { token });
      expect(reply.body, type).not.toContain(UNDETECTABLE_SSN);
      if (reply.status === 200) expect(reply.body, type).toContain('Ann');
    }
  });
});
