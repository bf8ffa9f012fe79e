import { spawn, type ChildProcess } from 'node:child_process';
import { get as httpGet, type ClientRequest } from 'node:http';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { connectBus } from '@sluice/event-bus';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accessibilityViolations, tabTo } from '../support/accessibility.js';
import { createDatabase, deleteStreams, dropDatabases } from '../support/databases.js';
import { startSecuredNats, type SecuredNats } from '../support/nats-server.js';
import { startOidcProvider, type RealIdp } from '../support/oidc-provider.js';
import { startTestIssuer, type TestIssuer } from '../support/oidc.js';
import { freePorts } from '../support/ports.js';
import { runCommand } from '../support/run.js';
import { allocateServicePorts, REPO_ROOT, servicesSection, SLUICE_BIN, startSluice, type RunningSluice } from '../support/sluice.js';

const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];
/** Screenshots of each page, kept after the run for people to look at. */
const SCREENSHOTS = join(REPO_ROOT, 'test-results', 'console');
/** An agent's SQL that would script the approver's browser if the console ever rendered it as HTML. */
/** A picture of the page for the record (under test-results/console), and no accessibility violation on it. */
const pictureAndAccessibility = async (page: Page, file: string, options: { fullPage: boolean } = { fullPage: true }): Promise<void> => {
  await page.screenshot({ path: join(SCREENSHOTS, file), fullPage: options.fullPage });
  expect(await accessibilityViolations(page)).toEqual([]);
};

const XSS = `<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>`;
/** What an agent says to its approvers, in a leading SQL comment: agent-written text as well. */
const JUSTIFICATION = `ticket 42: purge test orders ${XSS}`;

describe('the web console in a real browser: sign-in, live approvals inbox, session replay', () => {
  const run = randomUUID().slice(0, 8);
  const targetDb = `sluice_e2e_console_${run}`;
  const storeDb = `sluice_e2e_consolestore_${run}`;
  const stream = `SLUICE_E2E_CONSOLE_${run}`;
  let agents: TestIssuer;
  let people: RealIdp;
  let sluice: RunningSluice;
  let browser: Browser;
  let consoleUrl: string;
  let pgPort: number;

  beforeAll(async () => {
    mkdirSync(SCREENSHOTS, { recursive: true });
    await createDatabase(
      targetDb,
      `CREATE TABLE orders (id int PRIMARY KEY, total numeric); INSERT INTO orders SELECT g, g FROM generate_series(1, 20) g;
       CREATE TABLE refunds (id int PRIMARY KEY); INSERT INTO refunds SELECT g FROM generate_series(1, 5) g; CREATE TABLE archive (id int);`,
    );
    const ports = await allocateServicePorts();
    const [consolePort, proxyPort] = (await freePorts(2)) as [number, number];
    pgPort = proxyPort;
    consoleUrl = `http://127.0.0.1:${consolePort}`;
    agents = await startTestIssuer();
    people = await startOidcProvider([], 'sluice', { clientId: 'sluice-console', secret: 'console-test-secret', redirectUri: `${consoleUrl}/callback` });
    sluice = await startSluice(
      {
        bus: { url: 'nats://127.0.0.1:4222', stream, subjectPrefix: `e2econsole.${run}.events` },
        eventStore: { url: `postgres://postgres@127.0.0.1:5432/${storeDb}` },
        identity: { oidc: [{ issuer: agents.issuer, audience: 'sluice' }, { issuer: people.issuer, audience: 'sluice' }] },
        services: {
          ...servicesSection(ports),
          console: {
            http: `127.0.0.1:${consolePort}`,
            publicUrl: consoleUrl,
            oidc: { issuer: people.issuer, clientId: 'sluice-console', clientSecret: { env: 'E2E_CONSOLE_SECRET' }, resource: 'urn:sluice:gateway' },
          },
        },
        resources: [{ name: 'orders-db', type: 'postgres', listen: `127.0.0.1:${pgPort}`, target: { host: '127.0.0.1', database: targetDb }, credentials: { username: 'postgres' } }],
        audit: { readers: { groups: ['compliance'] } },
        rules: [
          { name: 'operators-change', effect: 'allow', subjects: { groups: ['operators'] }, resources: ['orders-db'], actions: ['read', 'write'] },
          { name: 'refunds-need-two-dbas', effect: 'approve', subjects: { groups: ['operators'] }, resources: ['orders-db'], tables: ['public.refunds'], approvers: { groups: ['dba'], minApprovals: 2 } },
          { name: 'archive-expires-fast', effect: 'approve', subjects: { groups: ['operators'] }, resources: ['orders-db'], tables: ['public.archive'], timeout: '8s', approvers: { groups: ['dba'] } },
          { name: 'mass-changes-need-dba', effect: 'approve', subjects: { groups: ['operators'] }, resources: ['orders-db'], risk: 'high', approvers: { groups: ['dba'] } },
        ],
      },
      { ports, env: { E2E_CONSOLE_SECRET: 'console-test-secret', NATS_URL: '', DATABASE_URL: '' } },
    );
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_FLAGS });
  });

  afterAll(async () => {
    await browser?.close();
    await sluice?.stop();
    await Promise.all([agents?.close(), people?.close()]);
    await dropDatabases([targetDb, storeDb]);
    await deleteStreams([stream]);
  });

  const agentClient = async (sub: string) => {
    const client = new pg.Client({ host: '127.0.0.1', port: pgPort, user: sub, database: 'orders-db', password: await agents.mint({ sub, groups: ['operators'] }) });
    await client.connect();
    return client;
  };

  const signIn = async (username: string, groups: string): Promise<{ context: BrowserContext; page: Page }> => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    const page = await context.newPage();
    await page.goto(consoleUrl);
    await page.click('text=Sign in');
    await page.fill('input[name=username]', username);
    await page.fill('input[name=groups]', groups);
    await page.click('button[type=submit]');
    await page.waitForURL((url) => url.origin === consoleUrl && url.pathname !== '/callback');
    return { context, page };
  };

  /** Runs `steps` in a browser context signed in as `username`, closed afterwards whatever happens. */
  const signedIn = async (username: string, groups: string, steps: (session: { context: BrowserContext; page: Page }) => Promise<void>): Promise<void> => {
    const session = await signIn(username, groups);
    try {
      await steps(session);
    } finally {
      await session.context.close();
    }
  };

  it('shows a held command live to a DBA, as text, and runs it once the DBA approves in the browser', async () => {
    await signedIn('dba-alice', 'dba', async ({ context, page }) => {
      await page.waitForURL(`${consoleUrl}/approvals`);
      const cookies = await context.cookies(consoleUrl);
      expect(cookies.find((cookie) => cookie.name === 'sluice_console')).toMatchObject({ httpOnly: true, sameSite: 'Lax' });
      await page.getByText('Live: new requests appear here').waitFor();
      await pictureAndAccessibility(page, 'approvals-empty.png');

      const agent = await agentClient('ops-bot');
      const held = agent.query(`/* justification: ${JUSTIFICATION} */ DELETE FROM orders -- ${XSS}`);
      const card = page.locator('article.approval');
      await card.waitFor({ timeout: 20_000 });
      expect(await card.locator('pre.command').textContent()).toBe(`/* justification: ${JUSTIFICATION} */ DELETE FROM orders -- ${XSS}`);
      // The agent's justification, shown as its text, next to what the approver decides on.
      expect(await card.locator('q.justification').textContent()).toBe(JUSTIFICATION);
      expect(await card.textContent()).toContain('mass-changes-need-dba');
      expect(await card.textContent()).toContain('ops-bot');
      expect(await card.locator('.progress').textContent()).toBe('0 of 1 approval');
      expect(await card.locator('time.countdown').textContent()).toMatch(/^\d+ min \d\d s$/);
      // Screen readers hear of it without reading the whole inbox again.
      expect(await page.locator('#announcer').textContent()).toBe('New approval request: high write on orders-db');
      expect(await page.evaluate(() => (globalThis as unknown as { __xss?: number }).__xss)).toBeUndefined();
      expect(await page.locator('main img, main script').count()).toBe(0);
      await pictureAndAccessibility(page, 'approvals-pending.png');

      // By keyboard alone: the skip link first, then Tab to the reason, type it, Tab to Approve, Enter.
      await page.reload();
      await tabTo(page, page.locator('a.skip'), 1);
      await tabTo(page, card.locator('input[name=reason]'));
      await page.keyboard.type('cleanup agreed in ticket 42');
      await tabTo(page, card.locator('button.approve'), 1);
      await page.keyboard.press('Enter');
      await page.waitForURL(`${consoleUrl}/approvals?done=approve`);
      const result = await held;
      expect(result.rowCount).toBe(20);
      await agent.end();
      await page.locator('section[aria-labelledby=history-title] td', { hasText: 'dba-alice' }).first().waitFor();
      await pictureAndAccessibility(page, 'approvals-history.png');
    });
  });

  it('denies from the browser: the agent gets the denial naming the approval', async () => {
    await signedIn('dba-bert', 'dba', async ({ page }) => {
      const agent = await agentClient('ops-bot-2');
      const held = agent.query('UPDATE orders SET total = 0').then(
        () => undefined,
        (error: { code?: string; message: string }) => error,
      );
      const card = page.locator('article.approval', { hasText: 'UPDATE orders SET total = 0' });
      await card.waitFor({ timeout: 20_000 });
      await card.locator('input[name=reason]').fill('no');
      await card.locator('button.deny').click();
      await page.waitForURL(`${consoleUrl}/approvals?done=deny`);
      const denied = await held;
      expect(denied?.code).toBe('42501');
      expect(denied?.message).toMatch(/approval [0-9a-f-]{36}/);
      await agent.end();
    });
  });

  it("needs two approvers where the rule says so: progress and who approved, live, on both approvers' pages", async () => {
    const hana = await signIn('dba-hana', 'dba');
    const ivan = await signIn('dba-ivan', 'dba');
    try {
      await hana.page.getByText('Live: new requests appear here').waitFor();
      await ivan.page.getByText('Live: new requests appear here').waitFor();
      const agent = await agentClient('ops-bot-5');
      const held = agent.query('/* justification: duplicate refunds from the import */ DELETE FROM refunds');
      const cardOf = (page: Page) => page.locator('article.approval', { hasText: 'DELETE FROM refunds' });
      await cardOf(hana.page).waitFor({ timeout: 20_000 });
      expect(await cardOf(hana.page).locator('.progress').textContent()).toBe('0 of 2 approvals');
      await cardOf(hana.page).locator('input[name=reason]').fill('checked the import log');
      await cardOf(hana.page).locator('button.approve').click();
      await hana.page.waitForURL(`${consoleUrl}/approvals?done=approve`);
      // Hana's approval is in, the request still waits: she cannot decide it again, Ivan sees who approved.
      expect(await cardOf(hana.page).locator('.progress').textContent()).toBe('1 of 2 approvals');
      expect(await cardOf(hana.page).locator('.waiting').textContent()).toBe('You approved this; it waits for 1 more approver.');
      expect(await cardOf(hana.page).locator('button').count()).toBe(0);
      await hana.page.screenshot({ path: join(SCREENSHOTS, 'approvals-n-of-m.png'), fullPage: true });
      await cardOf(ivan.page).locator('.progress', { hasText: '1 of 2 approvals' }).waitFor({ timeout: 20_000 });
      expect(await cardOf(ivan.page).locator('.by').textContent()).toBe('(dba-hana: checked the import log)');
      expect(await accessibilityViolations(hana.page)).toEqual([]);
      // The decision API's rules hold from the console too: a second decision by Hana is refused.
      const csrf = await hana.page.locator('form[action="/logout"] input[name=csrf]').inputValue();
      const id = await cardOf(hana.page).getAttribute('data-approval-id');
      const again = await hana.page.request.post(`${consoleUrl}/approvals/${id}/decision`, { form: { csrf, decision: 'approve', reason: 'twice' }, maxRedirects: 0 });
      expect(again.status()).toBe(409);

      await cardOf(ivan.page).locator('input[name=reason]').fill('agreed');
      await cardOf(ivan.page).locator('button.approve').click();
      expect((await held).rowCount).toBe(5);
      await agent.end();
      // Hana's page moves it to History by itself, with both names.
      await cardOf(hana.page).waitFor({ state: 'detached', timeout: 20_000 });
      const row = hana.page.locator('section[aria-labelledby=history-title] tr', { hasText: 'DELETE FROM refunds' });
      await row.waitFor();
      expect(await row.textContent()).toContain('2 of 2');
      expect(await row.textContent()).toContain('dba-ivan: approve (agreed)');
    } finally {
      await Promise.all([hana.context.close(), ivan.context.close()]);
    }
  });

  it('counts a request down, and moves it to History as expired when nobody decides in time', async () => {
    await signedIn('dba-jo', 'dba', async ({ page }) => {
      await page.getByText('Live: new requests appear here').waitFor();
      const agent = await agentClient('ops-bot-6');
      const held = agent.query('DELETE FROM archive').then(
        () => undefined,
        (error: { code?: string; message: string }) => error,
      );
      const card = page.locator('article.approval', { hasText: 'DELETE FROM archive' });
      await card.waitFor({ timeout: 20_000 });
      const countdown = card.locator('time.countdown');
      const first = await countdown.textContent();
      expect(first).toMatch(/^\d s$/);
      await page.waitForFunction((before) => {
        const shown = (globalThis as unknown as { document: { querySelector(selector: string): { textContent: string } | null } }).document.querySelector('article.approval time.countdown');
        return shown !== null && shown.textContent !== before;
      }, first);
      const expired = await held;
      expect(expired?.code).toBe('42501');
      expect(expired?.message).toMatch(/expired/);
      await agent.end();
      await card.waitFor({ state: 'detached', timeout: 20_000 });
      const row = page.locator('section[aria-labelledby=history-title] tr', { hasText: 'DELETE FROM archive' });
      expect(await row.locator('.status').textContent()).toBe('expired');
    });
  });

  it('moves a request to history live when another approver decides it elsewhere', async () => {
    await signedIn('dba-fay', 'dba', async ({ page }) => {
      await page.getByText('Live: new requests appear here').waitFor();
      const agent = await agentClient('ops-bot-4');
      const held = agent.query('UPDATE orders SET total = total + 1');
      const card = page.locator('article.approval', { hasText: 'UPDATE orders SET total = total + 1' });
      await card.waitFor({ timeout: 20_000 });
      const id = await card.getAttribute('data-approval-id');
      const decided = await fetch(`http://127.0.0.1:${sluice.ports.approvalHttp}/v1/approvals/${id}/decision`, {
        method: 'POST',
        headers: { authorization: `Bearer ${await agents.mint({ sub: 'dba-gus', groups: ['dba'] })}`, 'content-type': 'application/json' },
        body: JSON.stringify({ decision: 'approve', reason: 'from the CLI' }),
      });
      expect(decided.status).toBe(200);
      expect((await held).command).toBe('UPDATE');
      await agent.end();
      await card.waitFor({ state: 'detached', timeout: 20_000 });
      await page.locator('section[aria-labelledby=history-title] td', { hasText: 'dba-gus' }).first().waitFor();
    });
  });

  it('gives someone who is neither approver nor audit reader nothing to see or do', async () => {
    await signedIn('dev-dora', 'developers', async ({ page }) => {
      await expect(page.getByRole('heading', { name: 'Nothing for you here' }).isVisible()).resolves.toBe(true);
      expect(await page.locator('nav a').count()).toBe(0);
      expect((await page.goto(`${consoleUrl}/approvals`))?.status()).toBe(403);
      expect((await page.goto(`${consoleUrl}/sessions`))?.status()).toBe(403);
      expect((await page.goto(`${consoleUrl}/policy`))?.status()).toBe(403);
      expect((await page.goto(`${consoleUrl}/approvals/live`))?.status()).toBe(403);
      expect(await page.locator('article.approval').count()).toBe(0);
      await page.goto(consoleUrl);
      await pictureAndAccessibility(page, 'nothing.png');
    });
  });

  it('red team: an agent whose token subject carries HTML and SSE field lines scripts nobody, and malformed ids get 400', async () => {
    await signedIn('dba-erin', 'dba', async ({ context, page }) => {
      await page.waitForURL(`${consoleUrl}/approvals`);
      await page.getByText('Live: new requests appear here').waitFor();
      // A line break in a value sent over SSE would end the data field and start fields of its own.
      const sub = `ops-evil\nevent: inbox\ndata: {"html":"<img src=x onerror=window.__xss=3>"}\n\n${XSS}`;
      const agent = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'ops-evil', database: 'orders-db', password: await agents.mint({ sub, groups: ['operators'] }) });
      await agent.connect();
      const held = agent.query(`UPDATE orders SET total = total -- ${XSS}`).then(
        () => undefined,
        (error: { code?: string }) => error,
      );
      const card = page.locator('article.approval', { hasText: 'UPDATE orders SET total = total' });
      await card.waitFor({ timeout: 20_000 });
      const shownAgent = await card.locator('dd').first().textContent();
      expect(shownAgent).toContain('ops-evil');
      expect(shownAgent).toContain(XSS);
      expect(await card.textContent()).toContain('<img src=x onerror=window.__xss=3>');
      expect(await page.evaluate(() => (globalThis as unknown as { __xss?: number }).__xss)).toBeUndefined();
      expect(await page.locator('main img, main script').count()).toBe(0);
      expect(await page.locator('article.approval').count()).toBe(1);

      // Live streams per web session are bounded: each one re-reads the inbox on every event.
      const cookie = (await context.cookies(consoleUrl)).map(({ name, value }) => `${name}=${value}`).join('; ');
      const streams: ClientRequest[] = [];
      const openStream = () =>
        new Promise<number>((resolve, reject) => {
          const request = httpGet(`${consoleUrl}/approvals/live`, { headers: { cookie, accept: 'text/event-stream' } }, (answer) => resolve(answer.statusCode ?? 0));
          request.on('error', reject);
          streams.push(request);
        });
      const statuses: number[] = [];
      for (let index = 0; index < 12; index += 1) statuses.push(await openStream());
      for (const stream of streams) stream.destroy();
      // The page's own EventSource holds one of them.
      expect(statuses.filter((code) => code === 200).length).toBeLessThanOrEqual(8);
      expect(statuses).toContain(429);

      const csrf = await page.locator('form[action="/logout"] input[name=csrf]').inputValue();
      const malformed = await page.request.post(`${consoleUrl}/approvals/%E0%A4%A/decision`, { form: { csrf, decision: 'approve', reason: 'x' }, maxRedirects: 0 });
      expect(malformed.status()).toBe(400);
      await card.locator('input[name=reason]').fill('no');
      await card.locator('button.deny').click();
      await page.waitForURL(`${consoleUrl}/approvals?done=deny`);
      expect((await held)?.code).toBe('42501');
      await agent.end();
    });
    const reader = await signIn('auditor-ann', 'compliance');
    try {
      expect((await reader.page.goto(`${consoleUrl}/sessions/%E0%A4%A`))?.status()).toBe(400);
      // Never framed, no inline script anywhere, not even on error pages or the assets.
      for (const path of ['/', '/sessions', '/sessions/%E0%A4%A', '/no-such-page', '/assets/console.js']) {
        const answer = await reader.page.request.get(`${consoleUrl}${path}`, { maxRedirects: 0 });
        const headers = answer.headers();
        expect(headers['content-security-policy'], path).toContain("frame-ancestors 'none'");
        expect(headers['content-security-policy'], path).toContain("script-src 'self'");
        expect(headers['content-security-policy'], path).not.toContain('unsafe-inline');
        expect(headers['x-frame-options'], path).toBe('DENY');
        expect(headers['x-content-type-options'], path).toBe('nosniff');
      }
    } finally {
      await reader.context.close();
    }
    // Signed in, but named by no approve rule: the console itself refuses to pass on a decision.
    const outsider = await signIn('dev-dan', 'developers');
    try {
      const csrf = await outsider.page.locator('form[action="/logout"] input[name=csrf]').inputValue();
      const decided = await outsider.page.request.post(`${consoleUrl}/approvals/any/decision`, { form: { csrf, decision: 'approve', reason: 'x' }, maxRedirects: 0 });
      expect(decided.status()).toBe(403);
    } finally {
      await outsider.context.close();
    }
  });

  it('shows the rules in force and explains a command for a subject, as the CLI does', async () => {
    await signedIn('dba-erin', 'dba', async ({ page }) => {
      await page.click('nav >> text=Policy');
      await page.waitForURL(`${consoleUrl}/policy`);
      expect(await page.locator('table tbody tr').count()).toBe(4);
      await page.getByLabel('Subject').fill('ops-bot');
      await page.getByLabel('Groups').fill('operators');
      await page.getByLabel('Command').fill(`DELETE FROM orders -- ${XSS}`);
      await page.click('button:has-text("Explain")');
      const explained = page.locator('section.explanation');
      await explained.waitFor();
      expect(await explained.locator('h2').textContent()).toContain('approve by rule mass-changes-need-dba');
      expect(await page.getByLabel('Command').inputValue()).toBe(`DELETE FROM orders -- ${XSS}`);
      expect(await page.evaluate(() => (globalThis as unknown as { __xss?: number }).__xss)).toBeUndefined();
      await pictureAndAccessibility(page, 'policy.png');
    });
  });

  it('shows an audit reader each decision live, only from signed events, with counts and filters', async () => {
    await signedIn('carl-auditor', 'compliance', async ({ page }) => {
      await page.click('nav >> text=Activity');
      await page.getByText('Live: decisions appear here').waitFor();
      const agent = await agentClient('ops-bot-3');
      await agent.query('SELECT count(*) FROM orders');
      await agent.query(`CREATE TABLE console_denied (id int) -- ${XSS}`).catch(() => undefined);
      await agent.end();
      const rows = page.locator('#activity tr');
      await rows.filter({ hasText: 'CREATE TABLE console_denied' }).waitFor({ timeout: 20_000 });
      await rows.filter({ hasText: 'SELECT count(*)' }).waitFor();
      expect(await rows.filter({ hasText: 'CREATE TABLE console_denied' }).locator('.decision').textContent()).toBe('deny');
      expect(await rows.filter({ hasText: 'CREATE TABLE console_denied' }).textContent()).toContain('ops-bot-3');
      expect(await page.locator('#activity-counts').textContent()).toMatch(/1 denied/);
      expect(await page.evaluate(() => (globalThis as unknown as { __xss?: number }).__xss)).toBeUndefined();
      await page.selectOption('#activity-decision', 'deny');
      expect(await rows.filter({ hasText: 'SELECT count(*)' }).isHidden()).toBe(true);
      await pictureAndAccessibility(page, 'activity.png');
      await page.selectOption('#activity-decision', '');

      // A message nobody signed, published as if the proxy had decided it, is not shown.
      const nc = await connectBus('nats://127.0.0.1:4222', 'test-forger');
      const forged = { specversion: '1.0', id: randomUUID(), source: 'proxy', type: 'sluice.command.decided.v1', subject: 'forged-session', time: new Date().toISOString(), datacontenttype: 'application/json', data: { command: 'FORGED COMMAND', decision: 'allow', rule: 'x', resource: 'orders-db', risk: 'low' } };
      nc.publish(`e2econsole.${run}.events.command.decided`, JSON.stringify(forged));
      await nc.flush();
      await nc.drain();
      const again = await agentClient('ops-bot-3');
      await again.query('SELECT 1 AS after_forgery');
      await again.end();
      await rows.filter({ hasText: 'after_forgery' }).waitFor({ timeout: 20_000 });
      expect(await rows.filter({ hasText: 'FORGED COMMAND' }).count()).toBe(0);
    });
  });

  it('refuses a decision without the session CSRF token, and after sign-out', async () => {
    await signedIn('dba-carl', 'dba', async ({ page }) => {
      const forged = await page.request.post(`${consoleUrl}/approvals/any/decision`, { form: { decision: 'approve', reason: 'x' }, maxRedirects: 0 });
      expect(forged.status()).toBe(403);
      await page.click('text=Sign out');
      await page.waitForURL(`${consoleUrl}/`);
      expect((await page.request.get(`${consoleUrl}/approvals`, { maxRedirects: 0 })).status()).toBe(303);
    });
  });

  it('lets an audit reader find the session, replay it, and see a tampered event pointed at', async () => {
    await signedIn('carol', 'compliance', async ({ page }) => {
      await page.waitForURL(`${consoleUrl}/sessions`);
      await page.fill('input[name=subject]', 'ops-bot');
      await page.click('button:has-text("Search")');
      const link = page.locator('table a').first();
      await link.waitFor();
      await pictureAndAccessibility(page, 'sessions.png');
      await link.click();
      await page.locator('.verified').waitFor();
      const timeline = await page.locator('.timeline').textContent();
      for (const part of ['session.started', 'approval.requested', 'approval.decided', 'dba-alice', 'cleanup agreed in ticket 42', 'mass-changes-need-dba', `justification: ${JUSTIFICATION}`]) {
        expect(timeline).toContain(part);
      }
      expect(await page.locator('.timeline pre.command').first().textContent()).toContain(XSS);
      expect(await page.evaluate(() => (globalThis as unknown as { __xss?: number }).__xss)).toBeUndefined();
      await pictureAndAccessibility(page, 'session-replay.png');

      const sessionId = decodeURIComponent(new URL(page.url()).pathname.split('/').pop()!);
      const store = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:5432/${storeDb}` });
      await store.connect();
      const { rows } = await store.query<{ id: string }>(`SELECT id FROM sluice.events WHERE session_id = $1 AND type LIKE 'sluice.approval.decided%' LIMIT 1`, [sessionId]);
      await store.query('ALTER TABLE sluice.events DISABLE TRIGGER ALL');
      await store.query(`UPDATE sluice.events SET data = jsonb_set(data, '{reason}', '"forged"') WHERE id = $1`, [rows[0]!.id]);
      await store.query('ALTER TABLE sluice.events ENABLE TRIGGER ALL');
      await store.end();
      await page.reload();
      await page.locator('p.tampered').waitFor();
      expect(await page.locator('li.event.broken').getAttribute('id')).toBe(`event-${rows[0]!.id}`);
      await pictureAndAccessibility(page, 'session-tampered.png');
    });
  });
});

describe('the web console with the development issuer (the quick start)', () => {
  let devIdp: ChildProcess;
  let sluice: RunningSluice;
  let browser: Browser;
  let consoleUrl: string;
  const folder = mkdtempSync(join(tmpdir(), 'sluice-dev-idp-'));
  const run = randomUUID().slice(0, 8);
  const stream = `SLUICE_E2E_CONSOLE_DEV_${run}`;

  beforeAll(async () => {
    const [idpPort, consolePort] = (await freePorts(2)) as [number, number];
    consoleUrl = `http://127.0.0.1:${consolePort}`;
    devIdp = spawn(process.execPath, [SLUICE_BIN, 'dev-idp', '--port', String(idpPort)], { cwd: folder, stdio: 'ignore' });
    const issuer = `http://127.0.0.1:${idpPort}`;
    for (let attempt = 0; ; attempt += 1) {
      const answered = await fetch(`${issuer}/.well-known/openid-configuration`).then((response) => response.ok, () => false);
      if (answered) break;
      if (attempt > 100) throw new Error('sluice dev-idp did not start');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const ports = await allocateServicePorts();
    sluice = await startSluice(
      {
        bus: { url: 'nats://127.0.0.1:4222', stream, subjectPrefix: `e2econsoledev.${run}.events` },
        identity: { oidc: [{ issuer, audience: 'sluice' }] },
        services: { ...servicesSection(ports), console: { http: `127.0.0.1:${consolePort}`, oidc: { clientId: 'sluice-console' } } },
        audit: { readers: { groups: ['compliance'] } },
        rules: [{ name: 'risky-needs-dba', effect: 'approve', risk: 'high', approvers: { groups: ['dba'] } }],
      },
      { ports, env: { NATS_URL: '', DATABASE_URL: '' } },
    );
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_FLAGS });
  });

  afterAll(async () => {
    await browser?.close();
    await sluice?.stop();
    devIdp?.kill('SIGTERM');
    rmSync(folder, { recursive: true, force: true });
    await deleteStreams([stream]);
  });

  it('signs a person in through the dev issuer form, with the groups typed there', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
    try {
      const page = await context.newPage();
      await page.goto(consoleUrl);
      await pictureAndAccessibility(page, 'sign-in.png', { fullPage: false });
      await page.click('text=Sign in');
      await page.getByLabel('User name').fill('dana');
      await page.getByLabel('Groups (comma separated)').fill('dba, compliance');
      await page.click('button[type=submit]');
      await page.waitForURL(`${consoleUrl}/approvals`);
      expect(await page.locator('nav a').allTextContents()).toEqual(['Approvals', 'Sessions', 'Activity', 'Policy']);
      expect(await page.locator('.who').textContent()).toBe('dana');
    } finally {
      await context.close();
    }
  });
});

describe('the web console on a secured bus (NATS users from `sluice keys`)', () => {
  const run = randomUUID().slice(0, 8);
  const targetDb = `sluice_e2e_consolesec_${run}`;
  const stream = `SLUICE_E2E_CONSOLE_SEC_${run}`;
  const subjectPrefix = `e2econsolesec.${run}.events`;
  let keysDir: string;
  let nats: SecuredNats;
  let agents: TestIssuer;
  let people: RealIdp;
  let sluice: RunningSluice;
  let browser: Browser;
  let consoleUrl: string;
  let pgPort: number;

  beforeAll(async () => {
    await createDatabase(targetDb, `CREATE TABLE notes (id int PRIMARY KEY); INSERT INTO notes SELECT g FROM generate_series(1, 5) g;`);
    keysDir = join(mkdtempSync(join(tmpdir(), 'sluice-e2e-console-keys-')), 'keys');
    expect((await runCommand(process.execPath, [SLUICE_BIN, 'keys', '--out', keysDir, '--stream', stream, '--prefix', subjectPrefix])).status).toBe(0);
    nats = await startSecuredNats(readFileSync(join(keysDir, 'nats-auth.conf'), 'utf8'));
    const [consolePort, proxyPort] = (await freePorts(2)) as [number, number];
    pgPort = proxyPort;
    consoleUrl = `http://127.0.0.1:${consolePort}`;
    agents = await startTestIssuer();
    people = await startOidcProvider([], 'sluice', { clientId: 'sluice-console', secret: 'console-test-secret', redirectUri: `${consoleUrl}/callback` });
    const ports = await allocateServicePorts();
    sluice = await startSluice(
      {
        bus: { url: nats.url, stream, subjectPrefix },
        identity: { oidc: [{ issuer: agents.issuer, audience: 'sluice' }, { issuer: people.issuer, audience: 'sluice' }] },
        services: {
          ...servicesSection(ports),
          console: { http: `127.0.0.1:${consolePort}`, oidc: { issuer: people.issuer, clientId: 'sluice-console', clientSecret: { env: 'E2E_CONSOLE_SECRET' }, resource: 'urn:sluice:gateway' } },
        },
        resources: [{ name: 'notes-db', type: 'postgres', listen: `127.0.0.1:${pgPort}`, target: { host: '127.0.0.1', database: targetDb }, credentials: { username: 'postgres' } }],
        rules: [
          { name: 'ops-write', effect: 'allow', subjects: { groups: ['operators'] }, actions: ['read', 'write'] },
          { name: 'mass-needs-dba', effect: 'approve', subjects: { groups: ['operators'] }, risk: 'high', approvers: { groups: ['dba'] } },
        ],
      },
      { ports, env: { SLUICE_KEYS_DIR: keysDir, E2E_CONSOLE_SECRET: 'console-test-secret', NATS_URL: '', DATABASE_URL: '' } },
    );
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_FLAGS });
  });

  afterAll(async () => {
    await browser?.close();
    await sluice?.stop();
    await Promise.all([agents?.close(), people?.close()]);
    await nats?.stop();
    await dropDatabases([targetDb]);
    if (keysDir) rmSync(join(keysDir, '..'), { recursive: true, force: true });
  });

  it('logs in to NATS as the read-only reader and still shows a held command live', async () => {
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      await page.goto(`${consoleUrl}/login`);
      await page.fill('input[name=username]', 'dba-sec');
      await page.fill('input[name=groups]', 'dba');
      await page.click('button[type=submit]');
      await page.waitForURL(`${consoleUrl}/approvals`);
      await page.getByText('Live: new requests appear here').waitFor();
      const agent = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'ops', database: 'notes-db', password: await agents.mint({ sub: 'ops', groups: ['operators'] }) });
      await agent.connect();
      const held = agent.query('DELETE FROM notes');
      const card = page.locator('article.approval');
      await card.waitFor({ timeout: 20_000 });
      await card.locator('input[name=reason]').fill('ok');
      await card.locator('button.approve').click();
      expect((await held).rowCount).toBe(5);
      await agent.end();
    } finally {
      await context.close();
    }
  });
});
