import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_CONCURRENT_EXPLAINS, policyPage, policyView, type ExplainQuery } from './policy-page.js';

/** The explain box runs the real CLI in a child process: these probes try to steer that command. */
describe('the policy explain box', () => {
  let dir: string;
  let configPath: string;
  let evilPath: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-console-explain-'));
    configPath = join(dir, 'sluice.yaml');
    evilPath = join(dir, 'evil.yaml');
    const resource = { name: 'shop-db', type: 'postgres', listen: '127.0.0.1:15432', target: { host: '127.0.0.1', port: 5432, database: 'shop' }, credentials: { username: 'shop' } };
    writeFileSync(configPath, JSON.stringify({ resources: [resource], rules: [{ name: 'readers', effect: 'allow', subjects: { groups: ['readers'] }, actions: ['read'] }] }));
    // What an injected --config would load instead: everything allowed.
    writeFileSync(evilPath, JSON.stringify({ resources: [resource], rules: [{ name: 'evil-allow-all', effect: 'allow' }] }));
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps every field a value of its own option: no --config, --redis or positional can be injected', async () => {
    const probes: ExplainQuery[] = [
      { sub: `--config=${evilPath}`, groups: `x --config=${evilPath}`, resource: 'shop-db', kind: 'sql', command: 'DROP TABLE orders' },
      { sub: 'agent', groups: '', resource: 'shop-db', kind: 'sql', command: `--config=${evilPath} DROP TABLE orders` },
      { sub: 'agent', groups: '', resource: `shop-db --config=${evilPath}`, kind: 'sql', command: 'DROP TABLE orders' },
      { sub: 'agent', groups: '', resource: 'shop-db', kind: 'redis', command: `FLUSHALL --config=${evilPath}` },
    ];
    let explained = 0;
    for (const probe of probes) {
      const view = await policyView(configPath, undefined, probe);
      expect(JSON.stringify(view)).not.toContain('evil-allow-all');
      if (view.explanation) {
        explained += 1;
        expect(view.explanation.decision.effect).toBe('deny');
      }
    }
    // The probes did run the CLI (a refusal for a malformed command would prove nothing).
    expect(explained).toBeGreaterThanOrEqual(2);
  }, 120_000);

  it('explains for the issuer chosen, shows each rule\'s issuer, and keeps the issuer field a value too', async () => {
    const scoped = join(dir, 'scoped.yaml');
    const [company, ci] = ['https://idp.example.com', 'https://ci.example.com'];
    writeFileSync(
      scoped,
      JSON.stringify({
        identity: { oidc: [{ issuer: company, audience: 'sluice' }, { issuer: ci, audience: 'sluice' }] },
        resources: [{ name: 'shop-db', type: 'postgres', listen: '127.0.0.1:15432', target: { host: '127.0.0.1', port: 5432, database: 'shop' }, credentials: { username: 'shop' } }],
        rules: [{ name: 'company-readers', effect: 'allow', subjects: { groups: ['readers'], issuer: company }, actions: ['read'] }],
      }),
    );
    const ask = (issuer: string) => policyView(scoped, undefined, { sub: 'agent', groups: 'readers', issuer, resource: 'shop-db', kind: 'sql', command: 'SELECT 1' });
    expect((await ask(company)).explanation?.decision).toMatchObject({ effect: 'allow', rule: 'company-readers' });
    expect((await ask(ci)).explanation?.decision.effect).toBe('deny');
    const injected = await ask(`x --config=${evilPath}`);
    expect(JSON.stringify(injected)).not.toContain('evil-allow-all');
    expect(injected.problem).toContain('--issuer must be one of identity.oidc');
    const page = policyPage(await ask(company), undefined).text;
    expect(page).toContain(`groups readers; from ${company}`);
    expect(page).toContain(`<option>${ci}</option>`);
  }, 120_000);

  it(`runs at most ${MAX_CONCURRENT_EXPLAINS} explains at once; the rest are told to retry`, async () => {
    const query: ExplainQuery = { sub: 'agent', groups: 'readers', resource: 'shop-db', kind: 'sql', command: 'SELECT 1' };
    const views = await Promise.all(Array.from({ length: MAX_CONCURRENT_EXPLAINS + 3 }, () => policyView(configPath, undefined, query)));
    const explained = views.filter((view) => view.explanation !== undefined);
    const busy = views.filter((view) => view.problem?.includes('try again'));
    expect(explained).toHaveLength(MAX_CONCURRENT_EXPLAINS);
    expect(busy).toHaveLength(3);
    expect(explained[0]!.explanation!.decision).toMatchObject({ effect: 'allow', rule: 'readers' });
  }, 120_000);
});
