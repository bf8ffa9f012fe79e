import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { AxeResults, RunOptions } from 'axe-core';
import type { Locator, Page } from 'playwright-core';

/** axe-core from node_modules: a library run in the page, nothing fetched at run time. */
const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/** The little of the browser's globals used here (the tests compile without the DOM library). */
interface BrowserElement {
  readonly tagName: string;
  readonly id: string;
  readonly textContent: string | null;
}
interface BrowserGlobals {
  readonly document: { readonly activeElement: BrowserElement | null; readonly body: BrowserElement };
  getComputedStyle(element: BrowserElement): { readonly outlineStyle: string; readonly outlineWidth: string; readonly boxShadow: string };
  readonly axe: { run(context: unknown, options: unknown): Promise<AxeResults> };
}

/** WCAG 2.0/2.1/2.2 level A and AA rules (contrast, labels, names, landmarks, ...). */
const WCAG_AA: RunOptions = { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'] }, resultTypes: ['violations'] };

/**
 * The page's WCAG A/AA violations, one line each (rule, help, elements): empty when it passes.
 * axe is evaluated through the DevTools protocol, so the page's own CSP (script-src 'self') stays
 * as it is and is not what lets it run.
 */
export const accessibilityViolations = async (page: Page): Promise<string[]> => {
  if (!(await page.evaluate(() => 'axe' in globalThis))) await page.evaluate(AXE_SOURCE);
  const results = await page.evaluate(
    (options) => {
      const browser = globalThis as unknown as BrowserGlobals;
      return browser.axe.run(browser.document, options);
    },
    WCAG_AA,
  );
  return results.violations.map((violation) => `${violation.id}: ${violation.help} (${violation.nodes.map((node) => node.target.join(' ')).join(', ')})`);
};

/**
 * Presses Tab from where the focus is until `target` has it, as a keyboard user would, and
 * answers how many presses it took; fails when it is not reached in `maxPresses`. Each control
 * passed on the way must show where the focus is (an outline or a box shadow).
 */
export const tabTo = async (page: Page, target: Locator, maxPresses = 40): Promise<number> => {
  for (let presses = 1; presses <= maxPresses; presses += 1) {
    await page.keyboard.press('Tab');
    const focus = await page.evaluate(() => {
      const browser = globalThis as unknown as BrowserGlobals;
      const element = browser.document.activeElement;
      if (!element || element === browser.document.body) return undefined;
      const style = browser.getComputedStyle(element);
      return {
        label: `${element.tagName.toLowerCase()}${element.id ? `#${element.id}` : ''} "${(element.textContent ?? '').trim().slice(0, 30)}"`,
        visible: (style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2) || style.boxShadow !== 'none',
      };
    });
    if (focus && !focus.visible) throw new Error(`the focus on ${focus.label} is not visible`);
    if (await target.evaluate((element) => element === (globalThis as unknown as BrowserGlobals).document.activeElement)) return presses;
  }
  throw new Error(`Tab did not reach the control in ${maxPresses} presses`);
};
