import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { loadConfig, type RuleConfig, type SluiceConfig } from '@sluice/config';
import { html, type SafeHtml } from './html.js';

/** What `sluice policy explain --json` prints (the parts the page shows). */
export interface Explanation {
  readonly decision: {
    readonly effect: string;
    readonly rule: string;
    readonly reason: string;
    readonly action: string;
    readonly risk: string;
    readonly tables: readonly string[];
    readonly maskProfile?: string;
  };
  readonly sql?: { readonly ok: boolean; readonly error?: string };
  readonly parts: readonly {
    readonly part: { readonly summary: string; readonly action: string; readonly risk: string };
    readonly verdicts: readonly { readonly rule: string; readonly effect: string; readonly matched: boolean; readonly failed?: string }[];
  }[];
}

const SLUICE_CLI = fileURLToPath(new URL('../../../cli/bin/sluice.js', import.meta.url));
const EXPLAIN_TIMEOUT_MS = 15_000;
/**
 * Explains running at once. Each is a Node process (~100 MB, up to 15 s) started by a plain GET,
 * so without a cap a burst of requests (or of cross-site top-level navigations, which carry the
 * Lax cookie) would exhaust the host the proxies run on.
 */
export const MAX_CONCURRENT_EXPLAINS = 2;
let explainsRunning = 0;

/** What the explain box was asked: the same inputs as `sluice policy explain`. */
export interface ExplainQuery {
  readonly sub: string;
  readonly groups: string;
  /** One of identity.oidc, or empty: rules scoped to an issuer then guard but do not grant. */
  readonly issuer?: string;
  readonly resource: string;
  readonly kind: 'sql' | 'redis' | 'http';
  readonly command: string;
}

export interface PolicyView {
  readonly rules: readonly RuleConfig[];
  readonly resources: readonly string[];
  readonly issuers: readonly string[];
  /** sha256 of the rules as loaded: changes exactly when the rules do. */
  readonly fingerprint: string;
  /** The policy service's version from the last `policy.changed` event the console saw, if any. */
  readonly version: number | undefined;
  readonly explanation?: Explanation;
  readonly problem?: string;
}

/**
 * The command as `sluice policy explain` arguments. Values go as `--opt=value` and the SQL after
 * `--`, so a text starting with a dash stays a value; execFile runs no shell.
 */
const explainArguments = (query: ExplainQuery): string[] | undefined => {
  const text = query.command.trim();
  if (!text) return undefined;
  if (query.kind === 'redis') return [`--redis=${text}`];
  if (query.kind === 'http') return text.split(/\s+/).length === 2 ? [`--http=${text}`] : undefined;
  return ['--', text];
};

/** Runs the CLI's explain, the one implementation of it, in a child process. */
const runExplain = (configPath: string, query: ExplainQuery, command: readonly string[]): Promise<Explanation> =>
  new Promise((resolve, reject) => {
    const args = [SLUICE_CLI, 'policy', 'explain', `--config=${configPath}`, `--sub=${query.sub}`, `--groups=${query.groups}`, ...(query.issuer ? [`--issuer=${query.issuer}`] : []), `--resource=${query.resource}`, '--json', ...command];
    execFile(process.execPath, args, { timeout: EXPLAIN_TIMEOUT_MS, maxBuffer: 4 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) return reject(new Error(stderr.trim().split('\n')[0] || 'policy explain failed'));
      try {
        resolve(JSON.parse(stdout) as Explanation);
      } catch {
        reject(new Error('policy explain printed no JSON'));
      }
    });
  });

/**
 * The rules in force, read from the config file at each view (a reload shows at once), and the
 * explain box answered by `sluice policy explain` itself: the same policy code and SQL grammar.
 */
export const policyView = async (configPath: string, version: number | undefined, query: ExplainQuery | undefined): Promise<PolicyView> => {
  let config: SluiceConfig;
  try {
    config = loadConfig(configPath).config;
  } catch (error) {
    return { rules: [], resources: [], issuers: [], fingerprint: '', version, problem: `the config cannot be read: ${(error as Error).message}` };
  }
  const base = {
    rules: config.rules,
    resources: config.resources.map((resource) => resource.name),
    issuers: config.identity.oidc.map((entry) => entry.issuer),
    fingerprint: createHash('sha256').update(JSON.stringify(config.rules)).digest('hex').slice(0, 16),
    version,
  };
  if (!query) return base;
  const command = explainArguments(query);
  if (!query.sub || !query.resource || !command) return { ...base, problem: 'give a subject, a resource and a command (HTTP: METHOD /path)' };
  if (explainsRunning >= MAX_CONCURRENT_EXPLAINS) return { ...base, problem: 'other explanations are running; try again in a moment' };
  explainsRunning += 1;
  try {
    return { ...base, explanation: await runExplain(configPath, query, command) };
  } catch (error) {
    return { ...base, problem: `explain failed: ${(error as Error).message}` };
  } finally {
    explainsRunning -= 1;
  }
};

const list = (items: readonly string[] | undefined): string => (items && items.length > 0 ? items.join(', ') : '');
/** A rule's `issuer` as shown: without it a rule scoped to one would read as if it took every issuer's tokens. */
const fromIssuers = (issuer: string | readonly string[] | undefined): string => (issuer === undefined ? '' : `from ${list([issuer].flat())}`);

const ruleRow = (rule: RuleConfig): SafeHtml => {
  const subjects = [
    list(rule.subjects?.groups) && `groups ${list(rule.subjects?.groups)}`,
    list(rule.subjects?.subs) && `subs ${list(rule.subjects?.subs)}`,
    fromIssuers(rule.subjects?.issuer),
  ]
    .filter(Boolean)
    .join('; ');
  const matchers = [
    rule.actions ? `actions ${list(rule.actions)}` : '',
    rule.risk ? `risk ≥ ${rule.risk}` : '',
    rule.tables ? `tables ${list(rule.tables)}` : '',
    rule.keys ? `keys ${list(rule.keys)}` : '',
    rule.paths ? `paths ${list(rule.paths)}` : '',
    rule.methods ? `methods ${list(rule.methods)}` : '',
  ].filter(Boolean);
  const named = [list(rule.approvers?.groups), list(rule.approvers?.subs)].filter(Boolean).join('; ');
  const approverIssuers = fromIssuers(rule.approvers?.issuer);
  const approvers =
    rule.effect !== 'approve' ? '' : named ? `${named}${approverIssuers ? ` ${approverIssuers}` : ''} (${rule.approvers?.minApprovals ?? 1} needed)` : 'nobody: its requests can only expire';
  return html`<tr><td><strong>${rule.name}</strong></td><td><span class="decision decision-${rule.effect}">${rule.effect}</span></td><td>${subjects || 'everyone'}</td><td>${list(rule.resources) || 'every resource'}</td><td>${matchers.join(' · ')}</td><td>${rule.mask ?? ''}</td><td>${approvers}</td></tr>`;
};

const explanationBlock = (explanation: Explanation): SafeHtml => {
  const { decision } = explanation;
  return html`<section aria-labelledby="explained" class="explanation"><h2 id="explained">Decision: <span class="decision decision-${decision.effect}">${decision.effect}</span> ${decision.rule ? html`by rule <strong>${decision.rule}</strong>` : '(no rule: default deny)'}</h2>
<p>${decision.reason}</p><p>action <strong>${decision.action}</strong> · risk <strong>${decision.risk}</strong>${decision.tables.length ? html` · tables ${decision.tables.join(', ')}` : ''}${decision.maskProfile ? html` · mask ${decision.maskProfile}` : ''}</p>
${explanation.sql && !explanation.sql.ok ? html`<p class="error">SQL not parseable: ${explanation.sql.error}</p>` : ''}
${explanation.parts.map(
  ({ part, verdicts }) => html`<h3>${part.summary} (${part.action}/${part.risk})</h3><ul>${verdicts.map(
    (verdict) => html`<li>${verdict.matched ? html`<strong>matched</strong>` : 'no'} ${verdict.rule} (${verdict.effect})${verdict.failed ? html`: ${verdict.failed}` : ''}</li>`,
  )}</ul>`,
)}</section>`;
};

export const policyPage = (view: PolicyView, query: ExplainQuery | undefined): SafeHtml => html`<h1>Policy</h1>
<p>${view.rules.length} rules · fingerprint <code>${view.fingerprint}</code>${view.version === undefined ? '' : html` · policy version ${view.version}`}</p>
${view.problem ? html`<p class="error" role="alert">${view.problem}</p>` : ''}
<table><thead><tr><th>Rule</th><th>Effect</th><th>Subjects</th><th>Resources</th><th>Matches</th><th>Mask</th><th>Approvers</th></tr></thead><tbody>${view.rules.map(ruleRow)}</tbody></table>
<h2>Explain a command</h2>
<form method="get" action="/policy" class="search">
<label>Subject <input name="sub" value="${query?.sub ?? ''}" required></label>
<label>Groups <input name="groups" value="${query?.groups ?? ''}"></label>
<label>Issuer <select name="issuer"><option value="">(none: scoped rules only guard)</option>${view.issuers.map((issuer) => html`<option${query?.issuer === issuer ? html` selected` : ''}>${issuer}</option>`)}</select></label>
<label>Resource <select name="resource">${view.resources.map((name) => html`<option${query?.resource === name ? html` selected` : ''}>${name}</option>`)}</select></label>
<label>Kind <select name="kind">${(['sql', 'redis', 'http'] as const).map((kind) => html`<option value="${kind}"${query?.kind === kind ? html` selected` : ''}>${kind}</option>`)}</select></label>
<label class="wide">Command <input name="command" value="${query?.command ?? ''}" required></label>
<button type="submit">Explain</button></form>
${view.explanation ? explanationBlock(view.explanation) : ''}`;
