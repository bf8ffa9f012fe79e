import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RuleConfig } from '@sluice/config';
import { compilePiiMasking } from './support/engine-ports.js';
import { startHttpFrontDoor, type HttpFrontDoor } from './support/http-proxy-harness.js';
import { rawExchange } from './support/raw-socket.js';

/**
 * Red team on the normal-form shortcut of request paths (branch http-speed): request targets
 * written raw, as node:http's parser lets them through, against an allow-`/public/**`,
 * deny-`/admin/**` policy and a real node:http target that records the path it is sent. The
 * target must see exactly the path decided, and never a path under /admin.
 */
const rules: RuleConfig[] = [
  { name: 'no-admin-paths', effect: 'deny', resources: ['billing-api'], paths: ['/admin/**'] },
  { name: 'public-read', effect: 'allow', subjects: { groups: ['agents'] }, actions: ['read'], paths: ['/public/**'] },
] as RuleConfig[];

describe('HTTP paths in normal form, written to reach a denied path', () => {
  let door: HttpFrontDoor;
  let token: string;

  beforeAll(async () => {
    door = await startHttpFrontDoor({ rules, masking: compilePiiMasking('http-path-shortcut') });
    token = await door.idp.mint({ sub: 'path-bot', groups: ['agents'] });
  });

  afterAll(async () => {
    await door.close();
  });

  const send = (target: string) =>
    rawExchange(door.port, `GET ${target} HTTP/1.1\r\nHost: billing\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`);

  it('forwards the fragment-free, query-kept path it decided, whatever follows `#` or `?`', async () => {
    const cases: Record<string, string> = {
      '/public/x#/../../admin/keys': '/public/x',
      '/public/x?/../../admin/keys': '/public/x?/../../admin/keys',
      '/public/x#?q=/../admin': '/public/x',
      '/public/x?a=1#/../../admin': '/public/x?a=1',
      "/public/a:b@c!$&'()*+,=/": "/public/a:b@c!$&'()*+,=/",
      '/public/.../admin': '/public/.../admin',
    };
    for (const [target, forwarded] of Object.entries(cases)) {
      door.target.seen.length = 0;
      const reply = await send(target);
      expect(reply, target).toMatch(/^HTTP\/1\.1 200 /);
      expect(door.target.seen.map((seen) => seen.url), target).toEqual([forwarded]);
    }
  });

  it('never sends a path under /admin, however it is written', async () => {
    door.target.seen.length = 0;
    const probes = [
      '/public/../admin/keys', '/public/%2e%2e/admin/keys', '/public/.%2E/ADMIN/keys', '//admin/keys', '/public/..//admin/keys',
      '/Admin/keys', '/%61dmin/keys', '/public/x/../../admin/keys', 'http://billing/admin/keys', '/public/x;/../../admin/keys',
      '/public/x%2F..%2F..%2Fadmin/keys', '/public\\..\\admin/keys', '/public/%252e%252e/admin/keys',
    ];
    for (const target of probes) expect(await send(target), target).toMatch(/^HTTP\/1\.1 (400|403) /);
    expect(door.target.seen).toEqual([]);
  });
});
