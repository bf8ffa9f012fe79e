import {
  failClosedDecision,
  highestRisk,
  normalizeHttpPath,
  PROFILE_SEPARATOR,
  riskRank,
  widestAction,
  type Action,
  type ApproverRule,
  type Decision,
  type Effect,
  type GovernedCommand,
  type Risk,
} from '@sluice/contracts';
import type { ResourceConfig, RuleConfig } from '@sluice/config';
import { ANY_TABLE, classifySql, isOpenCatalogRelation, type SqlClassification } from '@sluice/sql-classifier';
import { classifyRedis, redisShape } from './redis-commands.js';

/** The subject as the policy sees it; `issuer` matters only to rules whose subjects name one. */
export interface PolicySubject {
  readonly sub: string;
  readonly groups: readonly string[];
  readonly issuer?: string;
}


/** Who may release a held command (the rule's `approvers`). */
export type Approvers = ApproverRule;

/** A decision (the union on `effect` in @sluice/contracts) and whether it may be cached. */
export type PolicyDecision = Decision & {
  /** The same decision holds for any command with the same normalized text. */
  readonly cacheable: boolean;
  /**
   * Redis: the decision holds for every command of the same `redisShape` whose keys each match
   * the same of these globs (every key glob of the rules on the resource, sorted); absent when the
   * command has no shape.
   */
  readonly redisKeyGlobs?: readonly string[];
};

/** One decidable part of a command: a SQL statement, or the whole Redis/HTTP command. */
export interface CommandPart {
  readonly summary: string;
  readonly action: Action;
  readonly risk: Risk;
  readonly reason: string;
  readonly tables?: readonly string[];
  readonly keys?: readonly string[];
  /** Redis glob patterns the command reads keys by (KEYS, SCAN MATCH, SORT BY/GET). */
  readonly keyPatterns?: readonly string[];
  readonly method?: string;
  readonly path?: string;
  /**
   * What a write or DDL part reads on its way (INSERT … SELECT's source, RETURNING's table, LPOP's
   * list, RENAME's source): a deny or approve rule on `read` guards the part through these tables
   * or keys, since the part takes their values out as a read would.
   */
  readonly reads?: { readonly tables?: readonly string[]; readonly keys?: readonly string[] };
}

export interface RuleVerdict {
  readonly rule: string;
  readonly effect: Effect;
  readonly matched: boolean;
  /** The first matcher that failed, e.g. `actions: write not in [read]`. */
  readonly failed?: string;
}

export interface Explanation {
  readonly decision: PolicyDecision;
  /** The parser's verdict for SQL (undefined for Redis/HTTP). */
  readonly sql?: SqlClassification;
  readonly parts: readonly { readonly part: CommandPart; readonly verdicts: readonly RuleVerdict[] }[];
}

export interface SessionDescription {
  readonly mayConnect: boolean;
  readonly readOnly: boolean;
}

export interface Policy {
  decide(subject: PolicySubject, resource: string, command: GovernedCommand): PolicyDecision;
  explain(subject: PolicySubject, resource: string, command: GovernedCommand): Explanation;
  describeSession(subject: PolicySubject, resource: string): SessionDescription;
  readonly rules: number;
}

export interface PolicyOptions {
  /** How long an approval may wait when the rule sets no timeout. */
  readonly approvalTimeoutMs: number;
}

const escapeRegExp = (text: string): string => text.replace(/[.+^${}()|[\]\\]/g, '\\$&');

/** Tables and keys: `*` any run of characters, `?` one. */
export const compileGlob = (glob: string): RegExp =>
  new RegExp(`^${escapeRegExp(glob).replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 's');

/** A character beyond ASCII as its percent-encoded UTF-8 bytes; a lone surrogate half as a byte no path holds. */
const encodeNonAscii = (char: string): string => {
  try {
    return encodeURIComponent(char);
  } catch {
    return '%FF';
  }
};

/** Paths: `*` one segment, `**` any number; a trailing `/**` also matches the bare prefix; case-insensitive. */
export const compilePathGlob = (glob: string): RegExp => {
  let body = '';
  for (let index = 0; index < glob.length; index++) {
    const char = glob[index]!;
    if (glob.startsWith('/**', index) && index + 3 === glob.length) {
      body += '(?:/.*)?';
      break;
    }
    if (glob.startsWith('**', index)) {
      body += '.*';
      index++;
    } else if (char === '*') body += '[^/]*';
    else if (char === '?') body += '[^/]';
    // Normal paths keep non-ASCII characters percent-encoded (UTF-8, upper case): so does the glob.
    else if (char.charCodeAt(0) > 0x7e) {
      const point = String.fromCodePoint(glob.codePointAt(index)!);
      // Case-insensitive beyond ASCII too (`Ü` for `ü`): targets that ignore case fold these as well.
      const forms = [...new Set([point, point.toLowerCase(), point.toUpperCase()])].map(encodeNonAscii);
      body += forms.length === 1 ? forms[0]! : `(?:${forms.join('|')})`;
      index += point.length - 1;
    }
    else body += escapeRegExp(char);
  }
  // Case-insensitive: many targets route /ADMIN like /admin, and a guard must not be dodged by case.
  return new RegExp(`^${body}$`, 'is');
};

interface CompiledRule {
  readonly config: RuleConfig;
  readonly groups: ReadonlySet<string> | undefined;
  readonly subs: ReadonlySet<string> | undefined;
  readonly issuers: ReadonlySet<string> | undefined;
  readonly resources: readonly RegExp[] | undefined;
  readonly tables: readonly RegExp[] | undefined;
  readonly keys: readonly RegExp[] | undefined;
  readonly paths: readonly RegExp[] | undefined;
  readonly methods: ReadonlySet<string> | undefined;
}

const compileRule = (config: RuleConfig): CompiledRule => {
  const subs = [...(config.subjects?.subs ?? []), ...(config.subjects?.sub === undefined ? [] : [config.subjects.sub].flat())];
  const groups = config.subjects?.groups ?? [];
  const anyone = groups.length === 0 && subs.length === 0;
  return {
    config,
    groups: anyone ? undefined : new Set(groups),
    subs: anyone ? undefined : new Set(subs),
    issuers: config.subjects?.issuer === undefined ? undefined : new Set([config.subjects.issuer].flat()),
    resources: config.resources?.map(compileGlob),
    tables: config.tables?.map(compileGlob),
    keys: config.keys?.map(compileGlob),
    paths: config.paths?.map(compilePathGlob),
    methods: config.methods ? new Set(config.methods.map((method) => method.toUpperCase())) : undefined,
  };
};

/**
 * A rule naming issuers matches only identities from them: another issuer may mint the same names.
 * A subject whose issuer is not known (an explanation asked without one, a caller that sent none)
 * fails closed both ways: a rule that grants (`grant`) does not match it, a rule that guards
 * (`guard`: deny, approve, the masks a held command may show) does.
 */
const issuerMatches = (rule: CompiledRule, subject: PolicySubject, unknown: 'grant' | 'guard'): boolean =>
  rule.issuers === undefined || (subject.issuer === undefined ? unknown === 'guard' : rule.issuers.has(subject.issuer));

const subjectMatches = (rule: CompiledRule, subject: PolicySubject, unknown: 'grant' | 'guard'): boolean =>
  issuerMatches(rule, subject, unknown) &&
  (rule.groups === undefined || rule.subs!.has(subject.sub) || subject.groups.some((group) => rule.groups!.has(group)));

/** How a rule treats an unknown issuer when it decides a command: an allow grants, a deny or approve guards. */
const roleOf = (rule: CompiledRule): 'grant' | 'guard' => (rule.config.effect === 'allow' ? 'grant' : 'guard');

const resourceMatches = (rule: CompiledRule, resource: string): boolean =>
  rule.resources === undefined || rule.resources.some((glob) => glob.test(resource));

/** compileGlob('*'): the one table glob that grants ANY_TABLE. */
const ANY_TABLE_GLOB = compileGlob('*').source;

const list = (items: readonly string[]): string => `[${items.join(', ')}]`;

/**
 * Names on a command must match a rule's globs. An allow rule grants only what it names, so
 * every table (key) must match; a deny or approve rule guards what it names, so one is enough:
 * otherwise adding an unrelated table to a query would slip past the guard. ANY_TABLE (a function
 * the catalogue does not vouch for may read any table) is granted only by a bare `*` and is
 * guarded by every glob: it may be the very table a deny rule names.
 */
const namesMatch = (effect: Effect, globs: readonly RegExp[], names: readonly string[], anyName?: string): boolean => {
  const matches = (name: string): boolean =>
    name === anyName ? (effect === 'allow' ? globs.some((glob) => glob.source === ANY_TABLE_GLOB) : true) : globs.some((glob) => glob.test(name));
  return effect === 'allow' ? names.every(matches) : names.some(matches);
};

/** The characters of a glob before its first wildcard (Redis globs: `*`, `?`, `[…]`, `\` escapes). */
const literalPrefix = (glob: string): string => /^[^*?[\\]*/.exec(glob)![0];
const hasWildcard = (glob: string): boolean => /[*?[\\]/.test(glob);

/**
 * Key patterns (a pattern stands for every key it can match). An allow rule grants a pattern
 * only when every key it can match is covered: the rule's glob is `*`, the pattern is the same
 * text, or the glob is `prefix*` and the pattern's fixed start begins with that prefix. A deny
 * or approve rule guards a pattern unless the two can be shown never to match the same key
 * (neither fixed start is a prefix of the other).
 */
const patternsMatch = (effect: Effect, globs: readonly string[], patterns: readonly string[]): boolean => {
  const covers = (glob: string, pattern: string): boolean => {
    // The same text covers itself only without `[` or `\`: a rule's glob reads them literally,
    // Redis's pattern as a class or an escape (KEYS k[ab]* lists ka1, which k[ab]* does not grant).
    if (glob === '*' || (glob === pattern && !/[[\\]/.test(pattern))) return true;
    if (!hasWildcard(pattern)) return compileGlob(glob).test(pattern);
    const prefix = glob.slice(0, -1);
    return glob.endsWith('*') && !hasWildcard(prefix) && literalPrefix(pattern).startsWith(prefix);
  };
  const mayOverlap = (glob: string, pattern: string): boolean => {
    if (!hasWildcard(pattern)) return compileGlob(glob).test(pattern);
    const ours = literalPrefix(pattern);
    const theirs = literalPrefix(glob);
    return ours.startsWith(theirs) || theirs.startsWith(ours);
  };
  return effect === 'allow'
    ? patterns.every((pattern) => globs.some((glob) => covers(glob, pattern)))
    : patterns.some((pattern) => globs.some((glob) => mayOverlap(glob, pattern)));
};

/** The part as the read it does on its way, for a guard on `read` to match; undefined when it reads nothing stored. */
const readSideOf = (part: CommandPart): CommandPart | undefined => {
  const reads = part.reads;
  if (reads === undefined || (reads.tables?.length ?? 0) + (reads.keys?.length ?? 0) + (part.keyPatterns?.length ?? 0) === 0) return undefined;
  return asReadOf(part, {
    ...(part.tables ? { tables: reads.tables ?? [] } : {}),
    ...(part.keys ? { keys: reads.keys ?? [], keyPatterns: part.keyPatterns ?? [] } : {}),
  });
};

/** The part as a read of these tables or keys: what a guard on `read` is matched against. */
const asReadOf = (part: CommandPart, names: Pick<CommandPart, 'tables' | 'keys' | 'keyPatterns'>): CommandPart => ({
  summary: part.summary,
  action: 'read',
  risk: part.risk,
  reason: part.reason,
  ...names,
});

/** Undefined when the rule matches; otherwise the first matcher that failed. */
const failedMatcher = (rule: CompiledRule, subject: PolicySubject, resource: string, part: CommandPart): string | undefined => {
  const config = rule.config;
  if (!subjectMatches(rule, subject, roleOf(rule))) {
    if (rule.issuers !== undefined && !issuerMatches(rule, subject, roleOf(rule))) {
      return `subjects: issuer ${subject.issuer ?? '(none given)'} not in ${list([...rule.issuers])}`;
    }
    return `subjects: ${subject.sub} (groups ${list(subject.groups)}) not listed`;
  }
  if (!resourceMatches(rule, resource)) return `resources: ${resource} not in ${list(config.resources ?? [])}`;
  if (config.actions && !config.actions.includes(part.action)) {
    const readSide = config.effect !== 'allow' && config.actions.includes('read') ? readSideOf(part) : undefined;
    if (readSide === undefined) return `actions: ${part.action} not in ${list(config.actions)}`;
    const failed = failedMatcher(rule, subject, resource, readSide);
    return failed === undefined ? undefined : `actions: ${part.action} not in ${list(config.actions)}; what it reads: ${failed}`;
  }
  if (config.risk && riskRank(part.risk) < riskRank(config.risk)) return `risk: ${part.risk} is below ${config.risk}`;
  if (rule.tables) {
    if (!part.tables) return 'tables: the command is not SQL';
    // An allow-list grants a read of the catalog relations that only describe objects (psql's \d,
    // ORMs' introspection). Only a read: with superuser credentials an UPDATE of pg_proc or
    // pg_class would rewrite code and tables. Deny and approve rules still see them.
    const readsCatalog = config.effect === 'allow' && part.action === 'read';
    const tables = readsCatalog ? part.tables.filter((table) => !isOpenCatalogRelation(table)) : part.tables;
    if (!namesMatch(config.effect, rule.tables, tables, ANY_TABLE)) return `tables: ${list(part.tables)} do not match ${list(config.tables ?? [])}`;
  }
  if (rule.keys) {
    if (!part.keys) return 'keys: the command is not a Redis command';
    const patterns = part.keyPatterns ?? [];
    const literal = namesMatch(config.effect, rule.keys, part.keys);
    const byPattern = patterns.length > 0 && patternsMatch(config.effect, config.keys ?? [], patterns);
    // An allow rule must cover the literal keys and every pattern; a guard needs one of either.
    const matched = config.effect === 'allow' ? literal && (patterns.length === 0 || byPattern) : literal || byPattern;
    if (!matched) return `keys: ${list([...part.keys, ...patterns])} do not match ${list(config.keys ?? [])}`;
  }
  if (rule.methods) {
    if (part.method === undefined) return 'methods: the command is not HTTP';
    if (!rule.methods.has(part.method)) return `methods: ${part.method} not in ${list([...rule.methods])}`;
  }
  if (rule.paths) {
    if (part.path === undefined) return 'paths: the command is not HTTP';
    const path = part.path;
    if (!rule.paths.some((glob) => glob.test(path))) return `paths: ${path} does not match ${list(config.paths ?? [])}`;
  }
  return undefined;
};

const EFFECT_ORDER: readonly Effect[] = ['deny', 'approve', 'allow'];

/**
 * The profile of a message whose statements were allowed by different rules: the union of their
 * profiles (the masking engine builds `a+b` from `a` and `b`), so a later statement's results
 * never get a weaker profile than their own rule's. A part allowed without a profile adds nothing.
 */
const unionOfProfiles = (profiles: readonly (string | undefined)[]): string | undefined => {
  const distinct = [...new Set(profiles.filter((profile): profile is string => profile !== undefined))].sort();
  return distinct.length === 0 ? undefined : distinct.join(PROFILE_SEPARATOR);
};

const HTTP_ACTIONS: Readonly<Record<string, { action: Action; risk: Risk }>> = {
  GET: { action: 'read', risk: 'low' },
  HEAD: { action: 'read', risk: 'low' },
  OPTIONS: { action: 'read', risk: 'low' },
  POST: { action: 'write', risk: 'medium' },
  PUT: { action: 'write', risk: 'medium' },
  PATCH: { action: 'write', risk: 'medium' },
  DELETE: { action: 'write', risk: 'medium' },
};

type Classified =
  | { readonly ok: true; readonly parts: readonly CommandPart[]; readonly cacheable: boolean; readonly prepares: readonly string[]; readonly sql?: SqlClassification }
  | { readonly ok: false; readonly reason: string; readonly sql?: SqlClassification };

const REFUSED_PART: CommandPart = { summary: '', action: 'admin', risk: 'critical', reason: '' };

/** Splits a command into decidable parts; refusals (unparseable SQL, bad paths) need no rule. */
export const classifyCommand = (command: GovernedCommand): Classified => {
  switch (command.kind) {
    case 'sql': {
      const sql = classifySql(command.text, {
        ...(command.searchPath ? { searchPath: command.searchPath } : {}),
        ...(command.preparedStatements ? { preparedStatements: command.preparedStatements } : {}),
        ...(command.catalog ? { catalog: command.catalog } : {}),
      });
      if (!sql.ok) return { ok: false, reason: `unparseable SQL: ${sql.error}`, sql };
      const parts: CommandPart[] =
        sql.statements.length === 0
          ? [{ summary: '(empty query)', action: 'read', risk: 'low', reason: 'empty query', tables: [] }]
          : sql.statements.map((statement) => ({
              summary: statement.type,
              action: statement.action,
              risk: statement.risk,
              reason: statement.reason,
              tables: [...new Set([...statement.reads, ...statement.writes])].sort(),
              ...(statement.action !== 'read' && statement.reads.length > 0 ? { reads: { tables: statement.reads } } : {}),
            }));
      const prepares = sql.statements.flatMap((statement) => (statement.prepares === undefined ? [] : [statement.prepares]));
      return { ok: true, parts, cacheable: sql.cacheable, prepares, sql };
    }
    case 'redis': {
      const redis = classifyRedis(command.args);
      return {
        ok: true,
        parts: [
          {
            summary: redis.command,
            action: redis.action,
            risk: redis.risk,
            reason: redis.reason,
            keys: redis.keys,
            keyPatterns: redis.keyPatterns,
            ...(redis.readKeys === undefined ? {} : { reads: { keys: redis.readKeys } }),
          },
        ],
        cacheable: true,
        prepares: [],
      };
    }
    case 'http': {
      const method = command.method.toUpperCase();
      const path = normalizeHttpPath(command.path);
      if (path === undefined) return { ok: false, reason: 'the request path cannot be normalized safely' };
      const known = (Object.hasOwn(HTTP_ACTIONS, method) ? HTTP_ACTIONS[method] : undefined) ?? { action: 'admin' as const, risk: 'critical' as const };
      return {
        ok: true,
        parts: [{ summary: `${method} ${path}`, action: known.action, risk: known.risk, reason: `HTTP ${method}`, method, path }],
        cacheable: true,
        prepares: [],
      };
    }
  }
};

const UTF8_ENCODER = new TextEncoder();
const UTF8_DECODER = new TextDecoder();

const PROTOCOL_OF_KIND = { sql: 'postgres', redis: 'redis', http: 'http' } as const;

/** Builds the rule engine over validated config rules (CONTRACT §2). Pure: no I/O, no clock. */
export const createPolicy = (rules: readonly RuleConfig[], resources: readonly ResourceConfig[], options: PolicyOptions): Policy => {
  const compiled = rules.map(compileRule);
  const byEffect = new Map(EFFECT_ORDER.map((effect) => [effect, compiled.filter((rule) => rule.config.effect === effect)]));
  const resourceTypes = new Map(resources.map((resource) => [resource.name, resource.type]));

  const refusal = (reason: string, cacheable: boolean): PolicyDecision => ({ ...failClosedDecision(reason), cacheable });

  const decidePart = (subject: PolicySubject, resource: string, part: CommandPart): { effect: Effect; rule: CompiledRule | undefined } => {
    for (const effect of EFFECT_ORDER) {
      const rule = byEffect.get(effect)!.find((candidate) => failedMatcher(candidate, subject, resource, part) === undefined);
      if (rule) return { effect, rule };
    }
    return { effect: 'deny', rule: undefined };
  };

  /**
   * Does a SQL part that is not a read touch a table whose reads a deny or approve rule guards for
   * this subject? Its rows can come back in the server's error texts (a constraint's `Failing row
   * contains (…)`, a cast's `invalid input syntax … "value"`), which the guard cannot foresee.
   */
  const touchesReadGuardedTable = (subject: PolicySubject, resource: string, part: CommandPart): boolean => {
    if (part.action === 'read' || !part.tables || part.tables.length === 0) return false;
    const asRead = asReadOf(part, { tables: part.tables });
    return (['deny', 'approve'] as const).some((effect) =>
      byEffect.get(effect)!.some((rule) => rule.config.actions?.includes('read') === true && failedMatcher(rule, subject, resource, asRead) === undefined),
    );
  };

  const decideClassified = (subject: PolicySubject, resource: string, command: GovernedCommand, classified: Classified): PolicyDecision => {
    const type = resourceTypes.get(resource);
    if (type === undefined) return refusal(`unknown resource "${resource}"`, true);
    if (type !== PROTOCOL_OF_KIND[command.kind]) return refusal(`resource "${resource}" does not take ${command.kind} commands`, true);
    if (!classified.ok) return refusal(classified.reason, false);
    let action: Action = 'read';
    let risk: Risk = 'low';
    for (const part of classified.parts) {
      action = widestAction(action, part.action);
      risk = highestRisk(risk, part.risk);
    }
    const tables = [...new Set(classified.parts.flatMap((part) => part.tables ?? []))].sort();
    const outcomes = classified.parts.map((part) => ({ part, ...decidePart(subject, resource, part) }));
    // The message is decided as a whole: one denied part denies all; one held part holds all.
    const deciding =
      outcomes.find((outcome) => outcome.effect === 'deny') ??
      outcomes.find((outcome) => outcome.effect === 'approve') ??
      outcomes.find((outcome) => outcome.rule?.config.mask !== undefined) ??
      outcomes[0]!;
    const rule = deciding.rule?.config;
    const multi = classified.parts.length > 1 ? ` (statement ${outcomes.indexOf(deciding) + 1} of ${classified.parts.length})` : '';
    const what = `${deciding.part.reason}: ${deciding.part.action}/${deciding.part.risk}${multi}`;
    const reason = !rule
      ? `no rule allows ${deciding.part.action} on ${resource} for ${subject.sub}; ${what}`
      : `rule "${rule.name}" ${deciding.effect === 'allow' ? 'allows' : deciding.effect === 'deny' ? 'denies' : 'holds for approval'}: ${what}`;
    const basis = { rule: rule?.name ?? '', reason, action, risk, tables, cacheable: classified.cacheable, prepares: classified.prepares };
    const withheld = deciding.effect !== 'deny' && classified.parts.some((part) => touchesReadGuardedTable(subject, resource, part)) ? { withholdServerTexts: true } : {};
    switch (deciding.effect) {
      case 'allow':
        return { ...basis, effect: 'allow', maskProfile: unionOfProfiles(outcomes.map((outcome) => outcome.rule?.config.mask)), ...withheld };
      case 'approve':
        return {
          ...basis,
          ...withheld,
          effect: 'approve',
          // Every profile the subject's allow rules on this resource name: what they would see
          // unheld, whichever of those rules would have let the command through; and any approve
          // rule's own `mask`.
          maskProfile: unionOfProfiles([
            ...(byEffect.get('allow') ?? []).filter((allow) => subjectMatches(allow, subject, 'guard') && resourceMatches(allow, resource)).map((allow) => allow.config.mask),
            ...outcomes.map((outcome) => outcome.rule?.config.mask),
          ]),
          approvers: {
            groups: rule?.approvers?.groups ?? [],
            subs: rule?.approvers?.subs ?? [],
            issuers: [rule?.approvers?.issuer ?? []].flat(),
            minApprovals: rule?.approvers?.minApprovals ?? 1,
          },
          approvalTimeoutMs: rule?.timeout ?? options.approvalTimeoutMs,
        };
      case 'deny':
        return { ...basis, effect: 'deny' };
    }
  };

  /**
   * The key globs a Redis decision on the resource can depend on: those of every rule on it,
   * whatever its subjects (more globs than needed only split the cache finer).
   */
  const keyGlobsByResource = new Map<string, readonly string[] | null>();
  const keyGlobsOf = (resource: string): readonly string[] | undefined => {
    let globs = keyGlobsByResource.get(resource);
    if (globs === undefined) {
      const all = [...new Set(compiled.filter((rule) => resourceMatches(rule, resource)).flatMap((rule) => rule.config.keys ?? []))].sort();
      // The globs travel as UTF-8: one that does not survive it (a lone surrogate half, which may
      // match half of a key's emoji here) would split keys differently in the proxy. No shape then.
      globs = all.every((glob) => UTF8_DECODER.decode(UTF8_ENCODER.encode(glob)) === glob) ? all : null;
      keyGlobsByResource.set(resource, globs);
    }
    return globs ?? undefined;
  };

  return {
    rules: compiled.length,
    decide: (subject, resource, command) => {
      const decision = decideClassified(subject, resource, command, classifyCommand(command));
      if (command.kind !== 'redis' || !decision.cacheable || redisShape(command.args) === undefined) return decision;
      const redisKeyGlobs = keyGlobsOf(resource);
      return redisKeyGlobs === undefined ? decision : { ...decision, redisKeyGlobs };
    },
    explain: (subject, resource, command) => {
      const classified = classifyCommand(command);
      const decision = decideClassified(subject, resource, command, classified);
      const parts = classified.ok ? classified.parts : [{ ...REFUSED_PART, summary: '(refused)', reason: classified.reason }];
      return {
        decision,
        ...(classified.sql ? { sql: classified.sql } : {}),
        parts: parts.map((part) => ({
          part,
          verdicts: compiled.map((rule) => {
            const failed = failedMatcher(rule, subject, resource, part);
            return { rule: rule.config.name, effect: rule.config.effect, matched: failed === undefined, ...(failed ? { failed } : {}) };
          }),
        })),
      };
    },
    describeSession: (subject, resource) => {
      if (!resourceTypes.has(resource)) return { mayConnect: false, readOnly: true };
      const granting = compiled.filter(
        (rule) => rule.config.effect !== 'deny' && subjectMatches(rule, subject, 'grant') && resourceMatches(rule, resource),
      );
      return {
        mayConnect: granting.length > 0,
        // No actions list means every action: such a rule makes the session read-write.
        readOnly: granting.every((rule) => rule.config.actions !== undefined && rule.config.actions.every((action) => action === 'read')),
      };
    },
  };
};
