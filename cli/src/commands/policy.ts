import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { KEYS_DIR_ENV, loadConfig, readGeneratedServiceTls, resolveServiceTls, type ServiceTls } from '@sluice/config';
import { grpcClientChannelOptions, grpcClientCredentials } from '@sluice/service-runtime';
import { createPolicy, type Explanation, type Policy, type PolicySubject } from '@sluice/policy-engine';
import { requestPolicyReload } from '@sluice/policy';
import { loadSqlClassifier } from '@sluice/sql-classifier';
import { ACTIONS, EFFECTS, RISKS, type GovernedCommand } from '@sluice/contracts';

export const USAGE = `usage: sluice policy explain --config FILE --sub S [--groups a,b] [--issuer URL] --resource R [--search-path a,b] "SQL" | --redis "GET k" | --http "GET /path" [--json]
       sluice policy test --config FILE CASES.yaml
       sluice policy reload --config FILE
`;

const out = (text: string): void => {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
};
const usage = (problem: string): number => {
  process.stderr.write(`sluice policy: ${problem}\n${USAGE}`);
  return 2;
};

/** The rules of a config file, and its identity.oidc issuers (a subject's issuer must be one). */
const policyOf = (file: string): { policy: Policy; issuers: readonly string[] } => {
  const { config } = loadConfig(file);
  return {
    policy: createPolicy(config.rules, config.resources, { approvalTimeoutMs: config.services.approval.timeout }),
    issuers: config.identity.oidc.map((entry) => entry.issuer),
  };
};

/** Without an issuer a rule scoped to one guards (deny, approve) but does not grant: name it to see what its tokens get. */
const subjectOf = (sub: string, groups: readonly string[], issuer: string | undefined): PolicySubject => ({ sub, groups, ...(issuer === undefined ? {} : { issuer }) });
const unknownIssuer = (issuer: string | undefined, issuers: readonly string[]): boolean => issuer !== undefined && !issuers.includes(issuer);

const splitList = (text: string | undefined): string[] => (text ?? '').split(',').map((item) => item.trim()).filter(Boolean);

/** `GET key` -> Redis args; `GET /path` -> HTTP method and path. */
const redisCommand = (text: string | readonly string[]): GovernedCommand => ({
  kind: 'redis',
  args: (typeof text === 'string' ? text.trim().split(/\s+/) : text).map((arg) => Buffer.from(String(arg))),
});
const httpCommand = (text: string): GovernedCommand | undefined => {
  const [method, path, ...rest] = text.trim().split(/\s+/);
  return method && path && rest.length === 0 ? { kind: 'http', method, path } : undefined;
};

const printExplanation = (explanation: Explanation): void => {
  const { decision } = explanation;
  out(`decision: ${decision.effect}${decision.rule ? ` (rule "${decision.rule}")` : ' (no rule: default deny)'}`);
  out(`reason:   ${decision.reason}`);
  out(`action:   ${decision.action}   risk: ${decision.risk}${decision.tables.length ? `   tables: ${decision.tables.join(', ')}` : ''}`);
  if (decision.effect === 'allow' && decision.maskProfile) out(`mask:     ${decision.maskProfile}`);
  if (decision.effect === 'approve') {
    const issuers = decision.approvers.issuers?.length ? ` from [${decision.approvers.issuers.join(', ')}]` : '';
    out(`approvers: groups [${decision.approvers.groups.join(', ')}] subs [${decision.approvers.subs.join(', ')}]${issuers}, ${decision.approvers.minApprovals} needed`);
  }
  if (explanation.sql && !explanation.sql.ok) out(`classification: unparseable (${explanation.sql.error})`);
  if (explanation.sql?.ok) {
    out(`classification: ${explanation.sql.action}/${explanation.sql.risk}, ${explanation.sql.cacheable ? 'cacheable' : 'not cacheable'}`);
    explanation.sql.statements.forEach((statement, index) => {
      out(`  statement ${index + 1}: ${statement.type} ${statement.action}/${statement.risk}: ${statement.reason}`);
      if (statement.reads.length) out(`    reads:     ${statement.reads.join(', ')}`);
      if (statement.writes.length) out(`    writes:    ${statement.writes.join(', ')}`);
      if (statement.functions.length) out(`    functions: ${statement.functions.join(', ')}`);
    });
  }
  for (const { part, verdicts } of explanation.parts) {
    out(`rules for ${part.summary} (${part.action}/${part.risk}${part.keys ? `, keys ${part.keys.join(' ')}` : ''}):`);
    for (const verdict of verdicts) {
      const applies = !verdict.failed || !/^(subjects|resources):/.test(verdict.failed);
      const mark = verdict.matched ? 'matched' : applies ? 'nearly ' : 'no     ';
      out(`  ${mark}  ${verdict.rule} (${verdict.effect})${verdict.failed ? `: ${verdict.failed}` : ''}`);
    }
  }
};

const explain = async (argv: string[]): Promise<number> => {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      sub: { type: 'string' },
      groups: { type: 'string', default: '' },
      issuer: { type: 'string' },
      resource: { type: 'string' },
      redis: { type: 'string' },
      http: { type: 'string' },
      'search-path': { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  if (!values.config) return usage('--config FILE is required');
  if (!values.sub) return usage('--sub is required');
  if (!values.resource) return usage('--resource is required');
  let command: GovernedCommand | undefined;
  if (values.redis !== undefined) command = redisCommand(values.redis);
  else if (values.http !== undefined) command = httpCommand(values.http);
  else if (positionals.length > 0) {
    const searchPath = splitList(values['search-path']);
    command = { kind: 'sql', text: positionals.join(' '), ...(searchPath.length ? { searchPath } : {}) };
  }
  if (!command) return usage('give a SQL text, --redis "CMD args" or --http "METHOD /path"');
  const { policy, issuers } = policyOf(values.config);
  if (unknownIssuer(values.issuer, issuers)) return usage(`--issuer must be one of identity.oidc (${issuers.join(', ') || 'none configured'})`);
  await loadSqlClassifier();
  const subject = subjectOf(values.sub, splitList(values.groups), values.issuer);
  const explanation = policy.explain(subject, values.resource, command);
  if (values.json) out(JSON.stringify(explanation, null, 2));
  else printExplanation(explanation);
  return 0;
};

interface PolicyCase {
  readonly name?: string;
  readonly sub: string;
  readonly groups?: readonly string[] | string;
  readonly issuer?: string;
  readonly resource: string;
  readonly sql?: string;
  readonly redis?: string | readonly string[];
  readonly http?: string;
  readonly searchPath?: readonly string[];
  readonly expect: 'allow' | 'deny' | 'approve';
  readonly rule?: string;
  readonly action?: string;
  readonly risk?: string;
}

const CASE_KEYS: Record<string, 'string' | 'list' | 'command'> = {
  name: 'string',
  sub: 'string',
  groups: 'list',
  issuer: 'string',
  resource: 'string',
  sql: 'command',
  redis: 'command',
  http: 'command',
  searchPath: 'list',
  expect: 'string',
  rule: 'string',
  action: 'string',
  risk: 'string',
};
const CASE_ENUMS: Record<string, readonly string[]> = { expect: EFFECTS, action: ACTIONS, risk: RISKS };

/**
 * Checks a cases file as strictly as the config: a misspelt key or value (`expect: alow`) would
 * otherwise make a case that can never fail. Returns the first problem as `path: expected …`.
 */
export const caseProblem = (testCase: unknown, index: number): string | undefined => {
  const at = `[${index}]`;
  if (typeof testCase !== 'object' || testCase === null || Array.isArray(testCase)) return `${at}: expected a case { sub, resource, expect, sql|redis|http }`;
  const record = testCase as Record<string, unknown>;
  for (const [key, value] of Object.entries(record)) {
    const kind = CASE_KEYS[key];
    if (!kind) return `${at}.${key}: unknown key (expected one of ${Object.keys(CASE_KEYS).join(', ')})`;
    const isList = Array.isArray(value) && value.every((item) => typeof item === 'string');
    if (kind === 'string' && typeof value !== 'string') return `${at}.${key}: expected a string`;
    if (kind === 'list' && typeof value !== 'string' && !isList) return `${at}.${key}: expected a list of strings`;
    if (kind === 'command' && typeof value !== 'string' && !(key === 'redis' && isList)) return `${at}.${key}: expected a string`;
    const allowed = CASE_ENUMS[key];
    if (allowed && !allowed.includes(value as string)) return `${at}.${key}: expected one of ${allowed.join(', ')}, got "${String(value)}"`;
  }
  for (const key of ['sub', 'resource', 'expect']) if (record[key] === undefined) return `${at}.${key}: required`;
  const commands = ['sql', 'redis', 'http'].filter((key) => record[key] !== undefined);
  if (commands.length !== 1) return `${at}: expected exactly one of sql, redis, http${commands.length ? ` (got ${commands.join(', ')})` : ''}`;
  if (typeof record.http === 'string' && !httpCommand(record.http)) return `${at}.http: expected "METHOD /path"`;
  return undefined;
};

const runCases = async (argv: string[]): Promise<number> => {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { config: { type: 'string', short: 'c' } } });
  if (!values.config) return usage('--config FILE is required');
  const file = positionals[0];
  if (!file) return usage('the CASES.yaml file is required');
  let document: unknown;
  try {
    document = parseYaml(readFileSync(file, 'utf8'));
  } catch (error) {
    process.stderr.write(`sluice policy test: ${file}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : `not valid YAML: ${(error as Error).message.split('\n')[0]}`}\n`);
    return 2;
  }
  const cases = (Array.isArray(document) ? document : (document as { cases?: unknown } | null)?.cases) as PolicyCase[] | undefined;
  if (!Array.isArray(cases) || cases.length === 0) return usage(`${file}: expected a non-empty list of cases (or { cases: [...] })`);
  const problem = cases.map((testCase, index) => caseProblem(testCase, index)).find((found) => found !== undefined);
  if (problem !== undefined) {
    process.stderr.write(`sluice policy test: invalid cases file ${file}: ${problem}\n`);
    return 2;
  }
  const { policy, issuers } = policyOf(values.config);
  await loadSqlClassifier();
  let passed = 0;
  let failed = 0;
  cases.forEach((testCase, index) => {
    const label = testCase.name ?? `case ${index + 1}`;
    const problems: string[] = [];
    let command: GovernedCommand | undefined;
    if (typeof testCase.sql === 'string') command = { kind: 'sql', text: testCase.sql, ...(testCase.searchPath ? { searchPath: testCase.searchPath } : {}) };
    else if (testCase.redis !== undefined) command = redisCommand(testCase.redis);
    else if (typeof testCase.http === 'string') command = httpCommand(testCase.http);
    if (!command || !testCase.sub || !testCase.resource || !testCase.expect) {
      problems.push('needs sub, resource, expect and one of sql, redis, http');
    } else {
      const groups = typeof testCase.groups === 'string' ? splitList(testCase.groups) : [...(testCase.groups ?? [])];
      if (unknownIssuer(testCase.issuer, issuers)) problems.push(`issuer ${String(testCase.issuer)} is not one of identity.oidc`);
      const decision = policy.decide(subjectOf(String(testCase.sub), groups, testCase.issuer), testCase.resource, command);
      if (decision.effect !== testCase.expect) problems.push(`expected ${testCase.expect}, got ${decision.effect} (${decision.reason})`);
      if (testCase.rule !== undefined && decision.rule !== testCase.rule) problems.push(`expected rule "${testCase.rule}", got "${decision.rule}"`);
      if (testCase.action !== undefined && decision.action !== testCase.action) problems.push(`expected action ${testCase.action}, got ${decision.action}`);
      if (testCase.risk !== undefined && decision.risk !== testCase.risk) problems.push(`expected risk ${testCase.risk}, got ${decision.risk}`);
    }
    if (problems.length === 0) {
      passed += 1;
      out(`PASS ${label}`);
    } else {
      failed += 1;
      out(`FAIL ${label}: ${problems.join('; ')}`);
    }
  });
  out(`${passed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
};

const DEFAULT_POLICY_ADDRESS = '127.0.0.1:7101';

/**
 * The service's address, even from a file the service will refuse: reloading a broken file must
 * reach the service so that it answers why it keeps the previous rules.
 */
const policyAddressOf = (file: string): string => {
  try {
    return loadConfig(file).config.services.policy.grpc;
  } catch {
    try {
      const document = parseYaml(readFileSync(file, 'utf8'), { uniqueKeys: false }) as { services?: { policy?: { grpc?: unknown } } } | null;
      const grpc = document?.services?.policy?.grpc;
      return typeof grpc === 'string' ? grpc : DEFAULT_POLICY_ADDRESS;
    } catch {
      return DEFAULT_POLICY_ADDRESS;
    }
  }
};

/**
 * The operator's certificate for the policy service's mutual TLS: services.tls when the file
 * loads, else the keys folder a `sluice up` in this folder generated ($SLUICE_KEYS_DIR or
 * ./.sluice/keys), as for the service itself.
 */
const operatorTlsOf = (file: string): ServiceTls => {
  const keysDir = process.env[KEYS_DIR_ENV] || resolve(join('.sluice', 'keys'));
  try {
    const tls = resolveServiceTls(loadConfig(file), 'operator', { ...process.env, [KEYS_DIR_ENV]: keysDir });
    if (tls !== undefined) return tls;
  } catch {
    // A file the service will refuse: the generated certificates still reach it, to hear why.
  }
  return readGeneratedServiceTls(keysDir, 'operator');
};

const reload = async (argv: string[]): Promise<number> => {
  const { values } = parseArgs({ args: argv, allowPositionals: false, options: { config: { type: 'string', short: 'c' } } });
  if (!values.config) return usage('--config FILE is required');
  const address = policyAddressOf(values.config);
  let tls: ServiceTls;
  try {
    tls = operatorTlsOf(values.config);
  } catch (error) {
    process.stderr.write(`sluice policy reload: no certificate to reach the policy service: ${(error as Error).message}\n`);
    return 1;
  }
  try {
    const answer = await requestPolicyReload(address, { credentials: grpcClientCredentials(tls, 'policy'), channelOptions: grpcClientChannelOptions(tls, 'policy') });
    if (!answer.ok) {
      process.stderr.write(`sluice policy reload: rejected, the previous rules stay: ${answer.error}\n`);
      return 1;
    }
    out(`policy reloaded: version ${answer.version}`);
    return 0;
  } catch (error) {
    process.stderr.write(`sluice policy reload: the policy service at ${address} did not answer: ${(error as Error).message}\n`);
    return 1;
  }
};

/** `sluice policy explain|test|reload …`; returns the exit code. */
export const run = async (argv: string[]): Promise<number> => {
  const [subcommand, ...rest] = argv;
  try {
    switch (subcommand) {
      case 'explain':
        return await explain(rest);
      case 'test':
        return await runCases(rest);
      case 'reload':
        return await reload(rest);
      default:
        return usage(`unknown subcommand "${subcommand ?? ''}"`);
    }
  } catch (error) {
    // parseArgs rejects unknown options with a TypeError carrying a code.
    if ((error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) return usage((error as Error).message);
    throw error;
  }
};
