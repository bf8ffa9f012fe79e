import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parseConfig } from '@sluice/config';
import { loadSqlClassifier } from '@sluice/sql-classifier';
import type { GovernedCommand } from '@sluice/contracts';
import { createPolicy, compileGlob, compilePathGlob, type Policy, type PolicySubject } from './policy.js';
import { classifyRedis, redisShape } from './redis-commands.js';

beforeAll(async () => {
  await loadSqlClassifier();
});

const RESOURCES = [
  { name: 'ledger', type: 'postgres', listen: '127.0.0.1:25432', target: { host: '127.0.0.1', database: 'ledger' }, credentials: { username: 'owner' } },
  { name: 'sessions', type: 'redis', listen: '127.0.0.1:26379', target: { host: '127.0.0.1' } },
  { name: 'crm', type: 'http', listen: '127.0.0.1:28080', target: { url: 'http://127.0.0.1:9999' } },
];

/** Given these rules (validated like a real config file)… */
const given = (rules: unknown[]): Policy => {
  const config = parseConfig({ resources: RESOURCES, masking: { profiles: { finance: {}, weak: {} } }, rules });
  return createPolicy(config.rules, config.resources, { approvalTimeoutMs: 60_000 });
};
const analyst: PolicySubject = { sub: 'analyst-bot', groups: ['analysts'] };
const migrator: PolicySubject = { sub: 'migrator-bot', groups: ['migrators'] };
const stranger: PolicySubject = { sub: 'stranger', groups: [] };
const sql = (text: string, searchPath?: string[]): GovernedCommand => ({ kind: 'sql', text, ...(searchPath ? { searchPath } : {}) });
const redis = (line: string): GovernedCommand => ({ kind: 'redis', args: line.split(' ').map((arg) => Buffer.from(arg)) });
const http = (method: string, path: string): GovernedCommand => ({ kind: 'http', method, path });

const RULES = [
  { name: 'analysts-read-reports', effect: 'allow', subjects: { groups: ['analysts'] }, resources: ['ledger'], actions: ['read'], tables: ['reports.*'], mask: 'finance' },
  { name: 'migrators-change', effect: 'allow', subjects: { subs: ['migrator-bot'] }, resources: ['ledger'], actions: ['read', 'write', 'ddl'] },
  { name: 'big-changes-need-owner', effect: 'approve', subjects: { groups: ['migrators'] }, resources: ['ledger'], risk: 'high', approvers: { groups: ['owners'], minApprovals: 2 }, timeout: '5m' },
  { name: 'no-salary-table', effect: 'deny', resources: ['ledger'], tables: ['hr.salaries'] },
  { name: 'nobody-admin', effect: 'deny', actions: ['admin'] },
  { name: 'analysts-session-keys', effect: 'allow', subjects: { groups: ['analysts'] }, resources: ['sessions'], keys: ['session:*'] },
  { name: 'analysts-crm-read', effect: 'allow', subjects: { groups: ['analysts'] }, resources: ['crm'], methods: ['GET', 'HEAD'], paths: ['/v1/**'] },
  { name: 'crm-no-exports', effect: 'deny', resources: ['crm'], paths: ['/v1/*/export'] },
];

describe('decisions', () => {
  const policy = given(RULES);

  it('lets a tables allow-list read the catalog relations that only describe objects (psql \\d, ORMs)', () => {
    const describeTable = "SELECT c.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_class c JOIN pg_attribute a ON a.attrelid = c.oid WHERE c.relname = 'monthly'";
    expect(policy.decide(analyst, 'ledger', sql(describeTable))).toMatchObject({ effect: 'allow', rule: 'analysts-read-reports', tables: ['pg_catalog.pg_attribute', 'pg_catalog.pg_class'] });
    expect(policy.decide(analyst, 'ledger', sql('SELECT table_name, column_name FROM information_schema.columns'))).toMatchObject({ effect: 'allow' });
  });
  it('keeps catalog relations that hold sample values, settings or secrets under a tables allow-list', () => {
    expect(policy.decide(analyst, 'ledger', sql('SELECT * FROM information_schema.user_mapping_options'))).toMatchObject({ effect: 'deny', rule: '' });
    // pg_settings holds primary_conninfo (a replication password on a standby): reading it is admin.
    expect(policy.decide(analyst, 'ledger', sql('SELECT * FROM pg_settings'))).toMatchObject({ effect: 'deny', rule: 'nobody-admin' });
    // pg_stats and pg_statistic hold every table's sample values, pg_stat_activity every session's
    // statement text: they count as reading any table, so they also meet the deny rule on salaries.
    for (const text of ['SELECT * FROM pg_catalog.pg_stats', 'SELECT * FROM pg_statistic', 'SELECT * FROM pg_stat_activity']) {
      expect(policy.decide(analyst, 'ledger', sql(text))).toMatchObject({ effect: 'deny', rule: 'no-salary-table' });
    }
  });
  it('grants open catalog relations to a read only: a write through a tables allow-list must name them', () => {
    const writer = given([{ name: 'orders-change', effect: 'allow', subjects: { groups: ['analysts'] }, resources: ['ledger'], actions: ['read', 'write', 'ddl'], tables: ['public.orders'] }]);
    for (const text of ["UPDATE pg_catalog.pg_proc SET prosrc = 'select 1' WHERE proname = 'f'", 'DELETE FROM pg_catalog.pg_class WHERE false', 'INSERT INTO public.orders SELECT oid FROM pg_class']) {
      expect(writer.decide(analyst, 'ledger', sql(text))).toMatchObject({ effect: 'deny', rule: '' });
    }
    expect(writer.decide(analyst, 'ledger', sql('SELECT relname FROM pg_class'))).toMatchObject({ effect: 'allow', rule: 'orders-change' });
  });
  it('lets a deny rule guard an open catalog relation all the same', () => {
    const guarded = given([...RULES, { name: 'no-catalog', effect: 'deny', resources: ['ledger'], tables: ['pg_catalog.*'] }]);
    expect(guarded.decide(analyst, 'ledger', sql('SELECT relname FROM pg_class'))).toMatchObject({ effect: 'deny', rule: 'no-catalog' });
  });

  it('allows a read of an allowed table with the rule mask profile when every table matches', () => {
    const decision = policy.decide(analyst, 'ledger', sql('SELECT * FROM monthly', ['reports']));
    expect(decision).toMatchObject({ effect: 'allow', rule: 'analysts-read-reports', action: 'read', risk: 'low', maskProfile: 'finance', tables: ['reports.monthly'] });
  });
  it('denies by default when one table of a read lies outside the allow rule tables', () => {
    const decision = policy.decide(analyst, 'ledger', sql('SELECT * FROM reports.monthly JOIN public.users ON true'));
    expect(decision).toMatchObject({ effect: 'deny', rule: '' });
  });
  it('denies a write for a read-only subject even inside a CTE', () => {
    const decision = policy.decide(analyst, 'ledger', sql('WITH x AS (DELETE FROM reports.monthly WHERE id = 1 RETURNING *) SELECT * FROM x'));
    expect(decision).toMatchObject({ effect: 'deny', action: 'write' });
  });
  it('lets a deny on one table win over an allow when the command touches that table among others', () => {
    const decision = policy.decide(migrator, 'ledger', sql('UPDATE public.bonus SET x = 1 WHERE id IN (SELECT id FROM hr.salaries)'));
    expect(decision).toMatchObject({ effect: 'deny', rule: 'no-salary-table' });
  });
  it('holds a high-risk change for approval with the rule approvers and timeout', () => {
    const decision = policy.decide(migrator, 'ledger', sql('DELETE FROM public.events'));
    expect(decision).toMatchObject({ effect: 'approve', rule: 'big-changes-need-owner', risk: 'high', approvers: { groups: ['owners'], subs: [], minApprovals: 2 }, approvalTimeoutMs: 300_000 });
  });
  it("masks a granted command with every profile of the subject's allow rules on the resource", () => {
    const held = given([
      { name: 'ops-read', effect: 'allow', subjects: { groups: ['ops'] }, resources: ['ledger'], actions: ['read'], mask: 'finance' },
      { name: 'ops-write', effect: 'allow', subjects: { groups: ['ops'] }, resources: ['ledger'], actions: ['write'], mask: 'weak' },
      { name: 'others-read', effect: 'allow', subjects: { groups: ['analysts'] }, resources: ['ledger'], actions: ['read'] },
      { name: 'ops-mass-changes', effect: 'approve', subjects: { groups: ['ops'] }, resources: ['ledger'], risk: 'high', approvers: { groups: ['owners'] } },
    ]);
    const decision = held.decide({ sub: 'ops-bot', groups: ['ops'] }, 'ledger', sql('UPDATE public.events SET note = note RETURNING *'));
    expect(decision).toMatchObject({ effect: 'approve', maskProfile: 'finance+weak' });
    // Held for a subject no allow rule names: nothing it would have seen unheld, no profile.
    const unnamed = given([{ name: 'held', effect: 'approve', resources: ['ledger'], risk: 'high', approvers: { groups: ['owners'] } }]);
    expect(unnamed.decide(stranger, 'ledger', sql('DELETE FROM public.events'))).toMatchObject({ effect: 'approve', maskProfile: undefined });
  });
  it('allows a bounded change without approval', () => {
    expect(policy.decide(migrator, 'ledger', sql('DELETE FROM public.events WHERE id = 3')).effect).toBe('allow');
  });
  it('denies admin statements to everyone, naming the rule', () => {
    expect(policy.decide(migrator, 'ledger', sql('SET ROLE postgres'))).toMatchObject({ effect: 'deny', rule: 'nobody-admin', action: 'admin', risk: 'critical' });
  });
  it('decides a multi-statement message as a whole: one denied part denies all', () => {
    const decision = policy.decide(migrator, 'ledger', sql("INSERT INTO public.t VALUES (1); SELECT pg_terminate_backend(1)"));
    expect(decision).toMatchObject({ effect: 'deny', rule: 'nobody-admin', action: 'admin' });
  });
  it('holds the whole message when one part needs approval', () => {
    expect(policy.decide(migrator, 'ledger', sql('SELECT 1; TRUNCATE public.t')).effect).toBe('approve');
  });
  it('masks a held command, once granted, with the profiles its allow rules carry: an approval never unmasks', () => {
    const masked = given([
      { name: 'read-masked', effect: 'allow', subjects: { groups: ['analysts'] }, resources: ['ledger'], actions: ['read', 'write'], mask: 'finance' },
      { name: 'mass-changes', effect: 'approve', subjects: { groups: ['analysts'] }, resources: ['ledger'], risk: 'high', approvers: { groups: ['owners'] } },
      { name: 'held-weak', effect: 'approve', subjects: { groups: ['analysts'] }, resources: ['sessions'], approvers: { groups: ['owners'] }, mask: 'weak' },
      { name: 'sessions-masked', effect: 'allow', subjects: { groups: ['analysts'] }, resources: ['sessions'], mask: 'finance' },
    ]);
    // A read of masked columns rides along with a delete that needs a human: the read stays masked.
    expect(masked.decide(analyst, 'ledger', sql('SELECT ssn FROM public.people; DELETE FROM public.scratch'))).toMatchObject({ effect: 'approve', maskProfile: 'finance' });
    expect(masked.decide(analyst, 'ledger', sql('WITH d AS (DELETE FROM public.scratch RETURNING 1) SELECT ssn FROM public.people'))).toMatchObject({ effect: 'approve', maskProfile: 'finance' });
    // An approve rule that outranks a masked allow rule: both profiles apply.
    expect(masked.decide(analyst, 'sessions', redis('GET session:1'))).toMatchObject({ effect: 'approve', maskProfile: 'finance+weak' });
  });
  it('denies unparseable SQL before any rule, with the parser message', () => {
    const decision = policy.decide(migrator, 'ledger', sql('SELEC 1'));
    expect(decision.effect).toBe('deny');
    expect(decision.rule).toBe('');
    expect(decision.reason).toMatch(/syntax error/);
  });
  it('denies a subject no rule names', () => {
    expect(policy.decide(stranger, 'ledger', sql('SELECT 1')).effect).toBe('deny');
  });
  it('denies commands for an unknown resource or the wrong protocol', () => {
    expect(policy.decide(migrator, 'nowhere', sql('SELECT 1')).effect).toBe('deny');
    expect(policy.decide(analyst, 'sessions', sql('SELECT 1')).effect).toBe('deny');
  });
  it('reports PREPARE names so the proxy can track them', () => {
    expect(policy.decide(migrator, 'ledger', sql('PREPARE p AS INSERT INTO public.t VALUES ($1)')).prepares).toEqual(['p']);
  });
});

describe('decisions over texts of one shape', () => {
  const policy = given(RULES);

  it('decides a new literal in the SELECT list alike, and may be kept under the shape', () => {
    const decisions = [7, 8, -1].map((n) => policy.decide(analyst, 'ledger', sql(`SELECT ${n} AS n, 'agent${n}@example.com' AS email, total FROM reports.monthly WHERE id = ${n}`)));
    for (const decision of decisions) expect(decision).toEqual(decisions[0]);
    expect(decisions[0]).toMatchObject({ effect: 'allow', rule: 'analysts-read-reports', cacheable: true });
  });

  it('never keeps under the shape a decision a literal in the SELECT list changes', () => {
    const texts = ["SELECT current_setting('application_name') AS n", "SELECT current_setting('primary_conninfo') AS n"];
    const [harmless, secret] = texts.map((text) => policy.decide(analyst, 'ledger', sql(text)));
    expect(harmless?.effect).not.toBe(secret?.effect);
    expect(harmless?.cacheable).toBe(false);
    expect(secret?.cacheable).toBe(false);
  });
});

describe('functions the catalogue does not vouch for', () => {
  const policy = given(RULES);

  it('fails a tables allow-list: table_to_xml may read any table', () => {
    const decision = policy.decide(analyst, 'ledger', sql("SELECT table_to_xml('hr.salaries', true, true, '')", ['reports']));
    expect(decision).toMatchObject({ effect: 'deny', rule: 'no-salary-table', risk: 'high', tables: ['*'] });
  });
  it('is denied by default under an allow-list when no deny rule names a table', () => {
    const policy = given([RULES[0]]);
    expect(policy.decide(analyst, 'ledger', sql('SELECT * FROM monthly, my_report(1)', ['reports']))).toMatchObject({ effect: 'deny', rule: '' });
  });
  it('is granted only by a tables glob of a bare *', () => {
    // An unknown function may write as well as read anything: the rule must allow writes too.
    const policy = given([{ ...RULES[0], actions: ['read', 'write'], tables: ['*'] }]);
    expect(policy.decide(analyst, 'ledger', sql('SELECT my_report(1)')).effect).toBe('allow');
    expect(given([{ ...RULES[0], actions: ['read', 'write'], tables: ['*.*'] }]).decide(analyst, 'ledger', sql('SELECT my_report(1)')).effect).toBe('deny');
  });
  it('holds for approval under a high-risk approve rule', () => {
    const policy = given(RULES.filter((rule) => rule.name !== 'no-salary-table'));
    expect(policy.decide(migrator, 'ledger', sql('SELECT my_report(1)')).effect).toBe('approve');
  });
});

describe('mask profiles of a message with several statements', () => {
  it('uses the union of the profiles of its parts, not the first', () => {
    const policy = given([
      { name: 'orders-weak', effect: 'allow', subjects: { groups: ['analysts'] }, resources: ['ledger'], actions: ['read'], tables: ['public.orders'], mask: 'weak' },
      { name: 'people-finance', effect: 'allow', subjects: { groups: ['analysts'] }, resources: ['ledger'], actions: ['read'], tables: ['public.people'], mask: 'finance' },
    ]);
    const decision = policy.decide(analyst, 'ledger', sql('SELECT 1 FROM orders LIMIT 0; SELECT ssn FROM people'));
    expect(decision).toMatchObject({ effect: 'allow', maskProfile: 'finance+weak' });
    expect(policy.decide(analyst, 'ledger', sql('SELECT 1 FROM orders'))).toMatchObject({ effect: 'allow', maskProfile: 'weak' });
  });
});

describe('redis decisions', () => {
  const policy = given(RULES);
  it('allows keys that all match the rule globs', () => {
    expect(policy.decide(analyst, 'sessions', redis('MGET session:1 session:2'))).toMatchObject({ effect: 'allow', action: 'read' });
  });
  it('denies when one key lies outside the globs', () => {
    expect(policy.decide(analyst, 'sessions', redis('MGET session:1 secrets:1')).effect).toBe('deny');
  });
  it('denies KEYS * for a subject limited to a key prefix', () => {
    expect(policy.decide(analyst, 'sessions', redis('KEYS *')).effect).toBe('deny');
    expect(policy.decide(analyst, 'sessions', redis('KEYS session:*')).effect).toBe('allow');
  });
  it("grants no pattern with a class or an escape by the rule glob of the same text: the glob reads `[` and `\\` literally, Redis does not", () => {
    const literal = given([{ name: 'brackets', effect: 'allow', resources: ['sessions'], actions: ['read'], keys: ['br:[ab]*', 'br:\\*', 'br:x*'] }]);
    for (const pattern of ['br:[ab]*', 'br:\\*']) {
      expect(literal.decide(analyst, 'sessions', redis(`KEYS ${pattern}`)).effect, pattern).toBe('deny');
      expect(literal.decide(analyst, 'sessions', redis(`SCAN 0 MATCH ${pattern}`)).effect, pattern).toBe('deny');
    }
    expect(literal.decide(analyst, 'sessions', redis('KEYS br:x*')).effect).toBe('allow');
    // The keys Redis lists for `br:[ab]*` are not granted one by one either.
    expect(literal.decide(analyst, 'sessions', redis('GET br:a1')).effect).toBe('deny');
  });
  it('decides key patterns (SORT BY/GET, SCAN MATCH, RANDOMKEY) on every key they can match', () => {
    expect(policy.decide(analyst, 'sessions', redis('SORT session:ids BY nosort GET secrets:*')).effect).toBe('deny');
    expect(policy.decide(analyst, 'sessions', redis('SORT session:ids BY nosort GET session:*->name')).effect).toBe('allow');
    expect(policy.decide(analyst, 'sessions', redis('SORT session:ids BY nosort GET #')).effect).toBe('allow');
    expect(policy.decide(analyst, 'sessions', redis('SCAN 0 MATCH session:* MATCH *')).effect).toBe('deny');
    expect(policy.decide(analyst, 'sessions', redis('SCAN 0 COUNT 10')).effect).toBe('deny');
    expect(policy.decide(analyst, 'sessions', redis('RANDOMKEY')).effect).toBe('deny');
    expect(classifyRedis(['XREADGROUP', 'GROUP', 'streams', 'c', 'STREAMS', 'secret', '>'])).toMatchObject({ keys: ['secret'] });
    expect(classifyRedis(['SORT', 'src', 'BY', 'w_*', 'GET', 'o_*->f', 'GET', '#'])).toMatchObject({ keys: ['src'], keyPatterns: ['w_*', 'o_*'] });
    expect(classifyRedis(['SLOWLOG', 'GET'])).toMatchObject({ action: 'admin' });
    expect(policy.decide(analyst, 'sessions', redis('CLIENT TRACKING ON BCAST')).effect).toBe('deny');
    expect(policy.decide(analyst, 'sessions', redis('CLIENT TRACKING ON BCAST PREFIX session:')).effect).toBe('allow');
    expect(classifyRedis(['CLIENT', 'REPLY', 'OFF'])).toMatchObject({ action: 'admin' });
  });
  it('denies FLUSHALL as admin', () => {
    expect(policy.decide(analyst, 'sessions', redis('FLUSHALL'))).toMatchObject({ effect: 'deny', rule: 'nobody-admin', risk: 'critical' });
  });
  it('classifies commands by name, subcommand and keys', () => {
    expect(classifyRedis(['GET', 'k'].map((a) => Buffer.from(a)))).toMatchObject({ action: 'read', risk: 'low', keys: ['k'] });
    expect(classifyRedis(['set', 'k', 'v'])).toMatchObject({ action: 'write', risk: 'medium', keys: ['k'] });
    expect(classifyRedis(['DEL', 'a', 'b'])).toMatchObject({ action: 'write', risk: 'high', keys: ['a', 'b'] });
    expect(classifyRedis(['MSET', 'a', '1', 'b', '2'])).toMatchObject({ keys: ['a', 'b'], risk: 'high' });
    expect(classifyRedis(['CLIENT', 'KILL', 'ID', '1'])).toMatchObject({ action: 'admin' });
    expect(classifyRedis(['CLIENT', 'SETNAME', 'x'])).toMatchObject({ action: 'read' });
    expect(classifyRedis(['CONFIG', 'GET', '*'])).toMatchObject({ action: 'admin' });
    expect(classifyRedis(['EVAL', 'return 1', '0'])).toMatchObject({ action: 'admin' });
    expect(classifyRedis(['ZUNIONSTORE', 'dst', '2', 'a', 'b'])).toMatchObject({ action: 'write', keys: ['dst', 'a', 'b'] });
    expect(classifyRedis(['XREAD', 'COUNT', '2', 'STREAMS', 's1', 's2', '0', '0'])).toMatchObject({ action: 'read', keys: ['s1', 's2'] });
    expect(classifyRedis(['SORT', 'src', 'STORE', 'dst'])).toMatchObject({ action: 'write', keys: ['src', 'dst'] });
    expect(classifyRedis(['NOSUCHCOMMAND'])).toMatchObject({ action: 'admin', risk: 'critical' });
    expect(classifyRedis(['constructor'])).toMatchObject({ action: 'admin' });
  });
});

describe('http decisions', () => {
  const policy = given(RULES);
  it('allows GET below a ** glob and denies other methods', () => {
    expect(policy.decide(analyst, 'crm', http('GET', '/v1/contacts/7'))).toMatchObject({ effect: 'allow', action: 'read' });
    expect(policy.decide(analyst, 'crm', http('POST', '/v1/contacts'))).toMatchObject({ effect: 'deny', action: 'write' });
  });
  it('judges the normalized path, so dot segments cannot dodge a deny', () => {
    expect(policy.decide(analyst, 'crm', http('GET', '/v1/contacts/x/../export')).rule).toBe('crm-no-exports');
    expect(policy.decide(analyst, 'crm', http('GET', '/v1/contacts//%65xport')).rule).toBe('crm-no-exports');
  });
  it('denies a path that cannot be normalized safely', () => {
    expect(policy.decide(analyst, 'crm', http('GET', '/v1/a%2Fb')).effect).toBe('deny');
    for (const path of ['/v1/contacts;x/7', '/v1/contacts%3Bx/7', '/v1/a%252Fb']) expect(policy.decide(analyst, 'crm', http('GET', path)).effect).toBe('deny');
  });
  it('matches path globs case-insensitively', () => {
    expect(policy.decide(analyst, 'crm', http('GET', '/V1/Contacts/EXPORT')).rule).toBe('crm-no-exports');
  });
  it('matches * to one segment and ** to any number', () => {
    expect(compilePathGlob('/v1/*/export').test('/v1/a/export')).toBe(true);
    expect(compilePathGlob('/v1/*/export').test('/v1/a/b/export')).toBe(false);
    expect(compilePathGlob('/admin/**').test('/admin')).toBe(true);
    expect(compilePathGlob('/admin/**').test('/admin/a/b')).toBe(true);
    expect(compilePathGlob('/admin/**').test('/administrator')).toBe(false);
  });
});

describe('describeSession', () => {
  it('is read-only when every granting rule grants only read', () => {
    expect(given(RULES).describeSession(analyst, 'ledger')).toEqual({ mayConnect: true, readOnly: true });
  });
  it('is read-write when a granting rule has no actions list', () => {
    const policy = given([...RULES, { name: 'analysts-anything', effect: 'approve', subjects: { groups: ['analysts'] }, resources: ['ledger'] }]);
    expect(policy.describeSession(analyst, 'ledger')).toEqual({ mayConnect: true, readOnly: false });
  });
  it('is read-write for a subject allowed to write', () => {
    expect(given(RULES).describeSession(migrator, 'ledger')).toEqual({ mayConnect: true, readOnly: false });
  });
  it('may not connect when no rule could allow anything', () => {
    expect(given(RULES).describeSession(stranger, 'ledger').mayConnect).toBe(false);
    expect(given(RULES).describeSession(migrator, 'nowhere').mayConnect).toBe(false);
  });
});

describe('explain', () => {
  it('lists the matching rule and why the others failed', () => {
    const explanation = given(RULES).explain(analyst, 'ledger', sql('DELETE FROM reports.monthly'));
    expect(explanation.decision.effect).toBe('deny');
    const verdicts = explanation.parts[0]!.verdicts;
    expect(verdicts.find((verdict) => verdict.rule === 'analysts-read-reports')?.failed).toMatch(/^actions:/);
    expect(verdicts.find((verdict) => verdict.rule === 'migrators-change')?.failed).toMatch(/^subjects:/);
  });
});

describe('fail closed', () => {
  it('denies whatever text does not parse, even under an allow-everything rule', () => {
    const policy = given([{ name: 'everything', effect: 'allow' }]);
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (text) => {
        const decision = policy.decide(migrator, 'ledger', sql(text));
        if (decision.reason.startsWith('unparseable')) expect(decision.effect).toBe('deny');
        else expect(decision.effect).toBe('allow');
      }),
      { numRuns: 300 },
    );
  });
});

describe('subjects scoped to an issuer', () => {
  const config = parseConfig({
    identity: { oidc: [{ issuer: 'https://idp.example.com', audience: 'sluice' }, { issuer: 'https://ci.example.com', audience: 'sluice' }] },
    resources: RESOURCES,
    rules: [
      { name: 'company-analysts', effect: 'allow', subjects: { groups: ['analysts'], issuer: 'https://idp.example.com' }, resources: ['ledger'], actions: ['read'] },
      { name: 'anyone-from-ci-reads-crm', effect: 'allow', subjects: { issuer: 'https://ci.example.com' }, resources: ['crm'], methods: ['GET'] },
    ],
  });
  const policy = createPolicy(config.rules, config.resources, { approvalTimeoutMs: 60_000 });

  it('matches only identities from the named issuer', () => {
    expect(policy.decide({ ...analyst, issuer: 'https://idp.example.com' }, 'ledger', sql('SELECT 1')).effect).toBe('allow');
    expect(policy.decide({ ...analyst, issuer: 'https://ci.example.com' }, 'ledger', sql('SELECT 1')).effect).toBe('deny');
    expect(policy.decide(analyst, 'ledger', sql('SELECT 1')).effect).toBe('deny');
  });

  it('takes an issuer alone as everyone from it', () => {
    expect(policy.decide({ ...stranger, issuer: 'https://ci.example.com' }, 'crm', http('GET', '/x')).effect).toBe('allow');
    expect(policy.decide({ ...stranger, issuer: 'https://idp.example.com' }, 'crm', http('GET', '/x')).effect).toBe('deny');
  });

  it('says in the explanation that the issuer did not match', () => {
    const explanation = JSON.stringify(policy.explain({ ...analyst, issuer: 'https://ci.example.com' }, 'ledger', sql('SELECT 1')));
    expect(explanation).toContain('issuer https://ci.example.com not in [https://idp.example.com]');
  });

  it('applies a deny or approve rule scoped to an issuer to a subject whose issuer is unknown (fail closed both ways)', () => {
    const guarded = parseConfig({
      identity: { oidc: [{ issuer: 'https://idp.example.com', audience: 'sluice' }, { issuer: 'https://ci.example.com', audience: 'sluice' }] },
      resources: RESOURCES,
      rules: [
        { name: 'everyone-reads', effect: 'allow', resources: ['ledger'], actions: ['read'] },
        { name: 'ci-may-not-read-ledger', effect: 'deny', subjects: { issuer: 'https://ci.example.com' }, resources: ['ledger'] },
        { name: 'ci-reads-crm-held', effect: 'approve', subjects: { issuer: 'https://ci.example.com' }, resources: ['crm'], approvers: { groups: ['dba'] } },
        { name: 'company-reads-crm', effect: 'allow', subjects: { issuer: 'https://idp.example.com' }, resources: ['crm'], mask: 'pii' },
      ],
      masking: { profiles: { pii: { detectors: ['email'] } } },
    });
    const engine = createPolicy(guarded.rules, guarded.resources, { approvalTimeoutMs: 60_000 });
    expect(engine.decide({ ...stranger, issuer: 'https://idp.example.com' }, 'ledger', sql('SELECT 1')).effect).toBe('allow');
    expect(engine.decide({ ...stranger, issuer: 'https://ci.example.com' }, 'ledger', sql('SELECT 1')).effect).toBe('deny');
    // No issuer given: the guard still applies, the grant does not.
    expect(engine.decide(stranger, 'ledger', sql('SELECT 1'))).toMatchObject({ effect: 'deny', rule: 'ci-may-not-read-ledger' });
    const held = engine.decide(stranger, 'crm', http('GET', '/x'));
    expect(held).toMatchObject({ effect: 'approve', rule: 'ci-reads-crm-held' });
    // What a held command may show is masked as for every identity it may be.
    expect(held.effect === 'approve' && held.maskProfile).toBe('pii');
    expect(engine.describeSession(stranger, 'crm')).toEqual({ mayConnect: false, readOnly: true });
  });

  it('hands the approvers\' issuers to the approval service', () => {
    const held = parseConfig({
      identity: { oidc: [{ issuer: 'https://idp.example.com', audience: 'sluice' }] },
      resources: RESOURCES,
      rules: [{ name: 'hold', effect: 'approve', resources: ['ledger'], approvers: { groups: ['dba'], issuer: 'https://idp.example.com' } }],
    });
    const decision = createPolicy(held.rules, held.resources, { approvalTimeoutMs: 60_000 }).decide(analyst, 'ledger', sql('SELECT 1'));
    expect(decision.effect === 'approve' && decision.approvers.issuers).toEqual(['https://idp.example.com']);
  });
});

describe('CASCADE, which reaches tables the text does not name', () => {
  const policy = given([
    { name: 'changers', effect: 'allow', resources: ['ledger'], actions: ['read', 'write', 'ddl'] },
    { name: 'ledger-untouchable', effect: 'deny', resources: ['ledger'], tables: ['books.ledger'] },
  ]);
  it('meets a deny on any table: TRUNCATE, DROP of a table, type or schema, ALTER TABLE … DROP', () => {
    for (const text of [
      'TRUNCATE public.accounts CASCADE',
      'DROP TABLE public.accounts CASCADE',
      'DROP TYPE public.mood CASCADE',
      'DROP SCHEMA books CASCADE',
      'ALTER TABLE public.accounts DROP COLUMN id CASCADE',
      'DROP DOMAIN public.cents CASCADE',
      'ALTER DOMAIN public.cents DROP CONSTRAINT positive CASCADE',
      'ALTER TYPE public.money_pair ALTER ATTRIBUTE a TYPE bigint CASCADE',
      'ALTER TYPE public.money_pair ADD ATTRIBUTE b int CASCADE',
      'DROP FUNCTION public.next_id() CASCADE',
      'DROP SEQUENCE public.s CASCADE',
      'drop   type "public"."mood" cascade',
    ]) {
      expect(policy.decide(analyst, 'ledger', sql(text)), text).toMatchObject({ effect: 'deny', rule: 'ledger-untouchable' });
    }
  });
  it('leaves the same statements without CASCADE to the tables they name', () => {
    for (const text of ['TRUNCATE public.accounts', 'DROP TABLE public.accounts', 'DROP SCHEMA books', 'ALTER TABLE public.accounts DROP COLUMN id', 'DROP DOMAIN public.cents', 'ALTER DOMAIN public.cents DROP CONSTRAINT positive']) {
      expect(policy.decide(analyst, 'ledger', sql(text)), text).toMatchObject({ effect: 'allow', rule: 'changers' });
    }
  });
});

describe('guards on read over writes that take stored values out', () => {
  // A deny (or approve) rule limited to `read` would otherwise let a write carry the values out: in
  // its reply (GETSET, LPOP, INCRBY k 0, UPDATE … RETURNING) or into a key or table the agent reads.
  const policy = given([
    { name: 'writers', effect: 'allow', resources: ['sessions', 'ledger'], actions: ['read', 'write', 'ddl'] },
    { name: 'secrets-unread', effect: 'deny', resources: ['sessions'], actions: ['read'], keys: ['secret:*'] },
    { name: 'salaries-unread', effect: 'deny', resources: ['ledger'], actions: ['read'], tables: ['hr.salaries'] },
    { name: 'payroll-read-held', effect: 'approve', resources: ['ledger'], actions: ['read'], tables: ['hr.payroll'], approvers: { groups: ['owners'] } },
  ]);
  const denied = { effect: 'deny', rule: 'secrets-unread' };

  it('denies Redis writes whose reply carries the value of a guarded key', () => {
    for (const line of ['GETSET secret:a x', 'GETDEL secret:a', 'GETEX secret:a', 'SET secret:a x GET', 'SET secret:a x nx get', 'LPOP secret:q', 'INCRBY secret:n 0', 'HINCRBYFLOAT secret:h f 0', 'ZINCRBY secret:z 0 m', 'SPOP secret:s', 'BITFIELD secret:b GET u8 0', 'BLPOP other secret:q 1']) {
      expect(policy.decide(analyst, 'sessions', redis(line)), line).toMatchObject(denied);
    }
  });
  it('denies Redis writes that copy a guarded key into another one', () => {
    for (const line of ['RENAME secret:a public:a', 'COPY secret:a public:a', 'LMOVE secret:q public:q LEFT LEFT', 'SUNIONSTORE public:s secret:s', 'ZRANGESTORE public:z secret:z 0 -1', 'SORT secret:l STORE public:l', 'BITOP OR public:b secret:b']) {
      expect(policy.decide(analyst, 'sessions', redis(line)), line).toMatchObject(denied);
    }
  });
  it('still lets writes into a guarded key through, and writes that only write', () => {
    for (const line of ['SET secret:a x', 'SET secret:a x NX', 'RENAME public:a secret:a', 'SUNIONSTORE secret:s public:s', 'DEL secret:a', 'LPUSH secret:q v', 'GETSET public:a x']) {
      expect(policy.decide(analyst, 'sessions', redis(line)), line).toMatchObject({ effect: 'allow', rule: 'writers' });
    }
  });
  it('denies SQL writes that read a guarded table: RETURNING, INSERT … SELECT, CREATE TABLE … AS', () => {
    for (const text of [
      'UPDATE hr.salaries SET amount = amount WHERE id = 1 RETURNING amount',
      'DELETE FROM hr.salaries WHERE id = 1 RETURNING *',
      'INSERT INTO public.copy SELECT * FROM hr.salaries',
      'CREATE TABLE public.copy AS SELECT * FROM hr.salaries',
      'UPDATE public.t SET x = (SELECT amount FROM hr.salaries LIMIT 1) WHERE id = 1',
    ]) {
      expect(policy.decide(analyst, 'ledger', sql(text)), text).toMatchObject({ effect: 'deny', rule: 'salaries-unread' });
    }
    expect(policy.decide(analyst, 'ledger', sql('UPDATE hr.salaries SET amount = 1 WHERE id = 1'))).toMatchObject({ effect: 'allow', rule: 'writers' });
    expect(policy.decide(analyst, 'ledger', sql('INSERT INTO hr.salaries SELECT * FROM public.t'))).toMatchObject({ effect: 'allow', rule: 'writers' });
  });
  it('denies SQL writes on a guarded table that hand a value of its rows to pg_notify or setval (a listener or the sequence reads it)', () => {
    for (const text of [
      "UPDATE hr.salaries SET amount = amount WHERE id = 1 AND pg_notify('ch', name) IS NULL",
      "UPDATE hr.salaries SET amount = amount WHERE id = 1 AND pg_notify(name, 'x') IS NULL",
      "UPDATE hr.salaries SET amount = amount WHERE id = 1 AND setval('public.s', amount) IS NULL",
      "DELETE FROM hr.salaries WHERE id = 1 AND pg_catalog.pg_notify('ch', name) IS NULL",
      "INSERT INTO hr.salaries VALUES (1) ON CONFLICT (id) DO UPDATE SET amount = 1 WHERE pg_notify('ch', hr.salaries.name) IS NULL",
      "MERGE INTO hr.salaries t USING (VALUES (1)) v(id) ON t.id = v.id WHEN MATCHED AND pg_notify('ch', t.name) IS NULL THEN UPDATE SET amount = 1",
      "WITH w AS (UPDATE hr.salaries SET amount = amount WHERE id = 1 AND pg_notify('ch', name) IS NULL) SELECT 1",
      "EXPLAIN ANALYZE UPDATE hr.salaries SET amount = amount WHERE id = 1 AND setval('public.s', amount) IS NULL",
    ]) {
      expect(policy.decide(analyst, 'ledger', sql(text)), text).toMatchObject({ effect: 'deny', rule: 'salaries-unread' });
    }
    for (const text of ["UPDATE hr.salaries SET amount = 1 WHERE id = 1 AND pg_notify('ch', 'x') IS NULL", "UPDATE hr.salaries SET amount = 1 WHERE id = 1 AND setval('public.s', $1) IS NULL", "UPDATE public.t SET x = 1 WHERE pg_notify('ch', x::text) IS NULL"]) {
      expect(policy.decide(analyst, 'ledger', sql(text)), text).toMatchObject({ effect: 'allow', rule: 'writers' });
    }
  });
  it('holds for approval a write that reads a table whose reads are held', () => {
    expect(policy.decide(analyst, 'ledger', sql('INSERT INTO public.copy SELECT * FROM hr.payroll'))).toMatchObject({ effect: 'approve', rule: 'payroll-read-held' });
  });
  it('asks the proxy to withhold the server texts of a write on a table whose reads are guarded (they can quote its rows)', () => {
    expect(policy.decide(analyst, 'ledger', sql('UPDATE hr.salaries SET amount = 1 WHERE id = 1'))).toMatchObject({ effect: 'allow', withholdServerTexts: true });
    expect(policy.decide(analyst, 'ledger', sql('INSERT INTO hr.payroll VALUES (1)'))).toMatchObject({ effect: 'allow', withholdServerTexts: true });
    for (const [resource, command] of [['ledger', sql('UPDATE public.t SET x = 1 WHERE id = 1')], ['ledger', sql('SELECT 1')], ['sessions', redis('SET secret:a x')]] as const) {
      expect(policy.decide(analyst, resource, command)).not.toHaveProperty('withholdServerTexts');
    }
  });
  it('says in the explanation that the write was guarded through what it reads', () => {
    const verdicts = policy.explain(analyst, 'sessions', redis('SET public:a x GET')).parts[0]!.verdicts;
    expect(verdicts.find((verdict) => verdict.rule === 'secrets-unread')?.failed).toMatch(/^actions: write not in \[read\]; what it reads: keys: \[public:a\] do not match/);
  });
});

describe('Redis decisions by shape (what the proxy may reuse for another key)', () => {
  it('gives a shape to commands whose keys sit at fixed positions and whose options change nothing', () => {
    expect(redisShape(['GET', 'session:1'])).toEqual({ shape: 'GET 2', keys: ['session:1'] });
    expect(redisShape(['mset', 'a', '1', 'b', '2'])).toEqual({ shape: 'MSET 5', keys: ['a', 'b'] });
    expect(redisShape(['OBJECT', 'encoding', 'k'])).toEqual({ shape: 'OBJECT ENCODING 3', keys: ['k'] });
    expect(redisShape(['PING'])).toEqual({ shape: 'PING 1', keys: [] });
  });

  it('gives no shape where other arguments or patterns decide: SORT, KEYS, SCAN, numkeys, streams, COPY, GEORADIUS, CLIENT, unknown commands', () => {
    for (const args of [
      ['SORT', 'k', 'STORE', 'd'],
      ['SORT_RO', 'k', 'BY', 'w_*'],
      ['KEYS', 'session:*'],
      ['SCAN', '0', 'MATCH', 'x*'],
      ['SINTERCARD', '2', 'a', 'b'],
      ['XREAD', 'STREAMS', 's', '0'],
      ['COPY', 'a', 'b', 'DB', '1'],
      ['GEORADIUS', 'g', '0', '0', '1', 'km', 'STORE', 'd'],
      ['CLIENT', 'TRACKING', 'on', 'BCAST'],
      ['NOSUCHCOMMAND', 'k'],
    ]) {
      expect(redisShape(args), args.join(' ')).toBeUndefined();
    }
  });

  it("says which key globs a decision by shape depends on: every rule's on the resource, whatever its subjects", () => {
    const policy = given([...RULES, { name: 'no-admin-keys', effect: 'deny', subjects: { groups: ['nobody'] }, resources: ['sessions'], keys: ['session:admin*'] }]);
    expect(policy.decide(analyst, 'sessions', redis('GET session:1'))).toMatchObject({ effect: 'allow', redisKeyGlobs: ['session:*', 'session:admin*'] });
    expect(policy.decide(analyst, 'sessions', redis('KEYS session:*')).redisKeyGlobs).toBeUndefined();
    expect(policy.decide(analyst, 'ledger', sql('SELECT 1')).redisKeyGlobs).toBeUndefined();
  });

  it('keeps no shape on a resource with a key glob that UTF-8 cannot carry to the proxy (a lone surrogate half)', () => {
    // `\uD83D*` matches the first half of 😀 here; sent as UTF-8 it would arrive as `\uFFFD*`.
    const policy = given([...RULES, { name: 'half-emoji', effect: 'deny', resources: ['sessions'], keys: ['\uD83D*'] }]);
    expect(policy.decide(analyst, 'sessions', redis('GET \u{1F600}')).effect).toBe('deny');
    expect(policy.decide(analyst, 'sessions', redis('GET session:1'))).toMatchObject({ effect: 'allow' });
    expect(policy.decide(analyst, 'sessions', redis('GET session:1')).redisKeyGlobs).toBeUndefined();
  });

  it('decides every command of a shape alike when its keys match the same key globs (property)', () => {
    const globs = ['a*', 'a:b*', '*z', 'a?c', '*'];
    const keyArb = fc.stringMatching(/^[abcz:]{0,5}$/);
    const ruleArb = fc.record({
      effect: fc.constantFrom('allow', 'deny', 'approve'),
      keys: fc.subarray(globs, { minLength: 1, maxLength: 3 }),
      actions: fc.constantFrom(['read'], ['read', 'write'], ['write']),
    });
    const commandArb = fc.oneof(
      fc.tuple(keyArb).map(([k]) => ['GET', k]),
      fc.tuple(keyArb, keyArb).map(([k, v]) => ['SET', k, v]),
      fc.tuple(keyArb, keyArb).map(([k1, k2]) => ['MGET', k1, k2]),
      fc.tuple(keyArb, keyArb).map(([k1, k2]) => ['MSET', k1, 'v', k2, 'w']),
      fc.tuple(keyArb, keyArb).map(([k1, k2]) => ['DEL', k1, k2]),
      fc.tuple(keyArb, keyArb, fc.constantFrom('GET', 'get', 'NX', 'XX')).map(([k, v, option]) => ['SET', k, v, option]),
      fc.tuple(keyArb, keyArb).map(([k1, k2]) => ['RENAME', k1, k2]),
      fc.tuple(keyArb, keyArb).map(([k1, k2]) => ['SUNIONSTORE', k1, k2]),
      fc.tuple(keyArb).map(([k]) => ['LPOP', k]),
      fc.tuple(keyArb).map(([k]) => ['SETBIT', k, '7', '1']),
      // ZADD … INCR answers with the score: one length, with and without it, and a member named incr.
      fc.tuple(keyArb, fc.constantFrom('INCR', 'incr', 'CH', 'XX', 'NX')).map(([k, option]) => ['ZADD', k, option, '0', 'm']),
      fc.tuple(keyArb, fc.constantFrom('incr', 'm', 'n')).map(([k, member]) => ['ZADD', k, '0', member]),
    );
    fc.assert(
      fc.property(fc.array(ruleArb, { minLength: 1, maxLength: 4 }), commandArb, commandArb, (rules, first, second) => {
        const policy = given(
          rules.map((rule, index) => ({
            name: `r${index}`,
            effect: rule.effect,
            resources: ['sessions'],
            keys: rule.keys,
            actions: rule.actions,
            ...(rule.effect === 'approve' ? { approvers: { groups: ['owners'] } } : {}),
          })),
        );
        const one = policy.decide(analyst, 'sessions', { kind: 'redis', args: first });
        const other = policy.decide(analyst, 'sessions', { kind: 'redis', args: second });
        const shapeOf = (args: string[]) => {
          const shape = redisShape(args)!;
          const compiled = one.redisKeyGlobs!.map(compileGlob);
          return `${shape.shape}|${shape.keys.map((key) => compiled.map((glob) => (glob.test(key) ? 1 : 0)).join('')).join('|')}`;
        };
        if (shapeOf(first) !== shapeOf(second)) return;
        expect(other).toEqual(one);
      }),
      { numRuns: 500, seed: 12 },
    );
  });
});
