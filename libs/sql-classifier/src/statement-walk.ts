import { parseSync } from 'libpg-query';
import { highestRisk, riskRank, actionRank, widestAction, type Action, type Risk } from '@sluice/contracts';
import type { ClassifyOptions } from './classification.js';
import {
  ADMIN_DROPS,
  ADMIN_RENAMES,
  constantText,
  defElemBoolean,
  defElems,
  isToastSchema,
  isWrittenValue,
  names,
  OBJECTS_ON_A_TABLE,
  RELATION_DROPS,
  ROLE_SETTINGS,
  returnsRows,
  ROLES_VIEW,
  ROW_CODE_ENABLES,
  ROW_MOVING_RENAMES,
  SESSION_STATE_ARGUMENT,
  SKIP_FUNCNAME,
  SKIP_RELATION,
  VALUE_SENDING_FUNCTIONS,
} from './statement-parts.js';
import { isLongStandingCatalogRelation } from './catalog-relations.js';
import { ANY_TABLE, CREDENTIAL_RELATIONS, isBuiltinOperator, isBuiltinOperatorExpression, isBuiltinType, isCataloguedFunction, pgCatalogSearchedFirst, STATISTICS_RELATIONS } from './catalogue.js';
import { functionBody, namedFunctions } from './function-bodies.js';
import { functionEffect } from './functions.js';
import { isObject, list, str, type Node } from './parse-tree.js';
import { guardedSettingReason, settingReadReason } from './settings.js';
import { transactionEffect, variableSetEffect, type ModeEffect } from './session-mode.js';
import { STATEMENT_KINDS } from './statements.js';
import { ancestorsOf, descendantsOf, foreignKeyReachOf } from './target-catalog.js';
import { boundsTargetRows, mergeIsBounded, upsertIsBounded, writeTarget } from './write-bounds.js';

export type Scope = ReadonlySet<string>;

export const EMPTY_SCOPE: Scope = new Set();
const MAX_EXECUTE_DEPTH = 3;

/** The walk of one top-level statement: accumulates the widest action, highest risk and the tables. */
export class StatementWalk {
  action: Action = 'read';
  risk: Risk = 'low';
  reason = 'reads';
  private raised = false;
  readonly reads = new Set<string>();
  readonly writes = new Set<string>();
  readonly functions = new Set<string>();
  /** Why the walk met code the catalogue does not vouch for, if it did. */
  unvouched: string | undefined;
  cacheable = true;
  prepares: string | undefined;
  deallocates: string | undefined;
  executes: string | undefined;
  /** Names the statement reads pg_catalog.pg_roles by (see settleRoleSettings). */
  private readonly roleRefs = new Set<string>();
  /** Single-name column references: a whole-row reference when the name is one of roleRefs. */
  private readonly bareNames = new Set<string>();
  private readsAnyColumnOfRoles = false;
  /** The walk met pg_notify or setval of a value computed at run time (VALUE_SENDING_FUNCTIONS). */
  private sendsComputedValue = false;

  constructor(
    private readonly pathSchemas: readonly string[],
    private readonly options: ClassifyOptions,
    private readonly depth: number,
  ) {}

  raise(action: Action, risk: Risk, why: string): void {
    const wider = actionRank(action) > actionRank(this.action) || (action === this.action && riskRank(risk) > riskRank(this.risk));
    if (wider || !this.raised) this.reason = why;
    this.raised = true;
    this.action = widestAction(this.action, action);
    this.risk = highestRisk(this.risk, risk);
  }

  visit(value: unknown, scope: Scope): void {
    if (Array.isArray(value)) {
      for (const item of value) this.visit(item, scope);
      return;
    }
    if (!isObject(value)) return;
    let tag = '';
    let count = 0;
    for (const key in value) {
      tag = key;
      if (++count > 1) break;
    }
    const first = tag.charCodeAt(0);
    // A wrapped node is `{ Tag: {...} }`: one key starting with an upper-case letter.
    if (count === 1 && first >= 65 && first <= 90 && isObject(value[tag])) this.node(tag, value[tag] as Node, scope);
    else this.fields(value, scope);
  }

  /** Visits a struct's fields (typed, unwrapped nodes included), minding WITH and SELECT INTO. */
  fields(node: Node, scope: Scope, skip?: ReadonlySet<string>): void {
    if (typeof node.relname === 'string') this.table(node, scope, this.reads);
    let inner = scope;
    if (isObject(node.withClause)) inner = this.withClause(node.withClause, scope);
    for (const key in node) {
      if (key === 'withClause' || skip?.has(key)) continue;
      const value = node[key];
      if (!isObject(value)) continue;
      if (key === 'intoClause') {
        this.raise('write', 'medium', 'SELECT … INTO creates and fills a table');
        this.table(value.rel, inner, this.writes);
        continue;
      }
      this.visit(value, inner);
    }
  }

  /** CTE names shadow tables: a non-recursive CTE sees only those before it. */
  private withClause(clause: Node, scope: Scope): Scope {
    const ctes = Array.isArray(clause.ctes) ? (clause.ctes as { CommonTableExpr?: Node }[]) : [];
    const all = new Set(scope);
    for (const cte of ctes) {
      const name = str(cte.CommonTableExpr?.ctename);
      if (name) all.add(name);
    }
    const visible = new Set(scope);
    for (const cte of ctes) {
      const expr = cte.CommonTableExpr;
      if (!expr) continue;
      this.visit(expr.ctequery, clause.recursive ? all : visible);
      const name = str(expr.ctename);
      if (name) visible.add(name);
    }
    return all;
  }

  private table(rangeVar: unknown, scope: Scope, into: Set<string>): void {
    if (!isObject(rangeVar)) return;
    const relname = str(rangeVar.relname);
    if (!relname) return;
    const schema = str(rangeVar.schemaname);
    // pg_stats and the like hold sample values of every table's columns: reading them reads any
    // table, so a deny on one table denies them and only an allow-list with `*` grants them.
    const catalogName = (schema === undefined || schema === 'pg_catalog') && !scope.has(relname);
    if (STATISTICS_RELATIONS.has(relname) && catalogName) this.reads.add(ANY_TABLE);
    if (CREDENTIAL_RELATIONS.has(relname) && catalogName) this.raise('admin', 'critical', `${relname} holds password hashes or connection secrets`);
    // A TOAST table holds the out-of-line values of some other table (pg_class.reltoastrelid says
    // which): reading pg_toast.pg_toast_<oid> reads that table's large values under another name.
    if (isToastSchema(schema) || (schema === undefined && this.pathSchemas.some(isToastSchema))) this.reads.add(ANY_TABLE);
    if (relname === ROLES_VIEW && catalogName) {
      const alias = isObject(rangeVar.alias) ? rangeVar.alias : undefined;
      this.roleRefs.add(str(alias?.aliasname) ?? relname);
      // An alias list renames columns: `pg_roles AS r(a, …, cfg)` reads rolconfig as cfg.
      if (list(alias?.colnames).length > 0) this.readsAnyColumnOfRoles = true;
    }
    // ONLY (inh absent in a parsed RangeVar) reads the table alone; anything else reads its children too.
    const only = rangeVar.inh !== true && rangeVar.location !== undefined;
    if (schema) {
      this.relation(into, `${schema}.${relname}`, only);
      return;
    }
    if (scope.has(relname)) return;
    // pg_catalog is searched before the path: a catalog relation's name is read from there.
    if (isLongStandingCatalogRelation(relname) && pgCatalogSearchedFirst(this.options.searchPath)) {
      into.add(`pg_catalog.${relname}`);
      return;
    }
    // The server reads the first schema of the path that holds the name; which one that is the
    // classifier cannot know, so every candidate is reported: an allow-list must cover them all,
    // and a deny on any of them denies.
    for (const schema of this.pathSchemas) this.relation(into, `${schema}.${relname}`, only);
    // pg_catalog is searched before the path: a `pg_` name may be either, so report both.
    if (relname.startsWith('pg_')) into.add(`pg_catalog.${relname}`);
  }

  /**
   * A relation and what the target's inheritance makes of it: a read or write of a parent reaches
   * its children and partitions (unless ONLY), and a rule on a parent covers its children, so the
   * parents are named too (a deny on a partitioned table denies reading a partition directly).
   */
  private relation(into: Set<string>, name: string, only: boolean): void {
    into.add(name);
    const catalog = this.options.catalog;
    if (!catalog) return;
    for (const parent of ancestorsOf(catalog, name)) into.add(parent);
    if (!only) for (const child of descendantsOf(catalog, name)) into.add(child);
  }

  /**
   * A DELETE or UPDATE of a table's rows changes the tables whose foreign keys act on it (ON
   * DELETE CASCADE, ON UPDATE SET NULL…) without naming them: they count as written, so a rule on
   * them sees the write. Only the catalog knows them (none without its facts).
   */
  private changesThroughForeignKeys(relation: unknown, scope: Scope): void {
    const catalog = this.options.catalog;
    // Without acting foreign keys in the facts, a new one reaching a table names it (ALTER TABLE it ADD …).
    if (!catalog?.foreignKeyDependents || catalog.foreignKeyDependents.size === 0) return;
    // A rename, INHERIT or ATTACH PARTITION not yet committed is not in the facts: the write may
    // reach any referenced table under another name, so any table's foreign keys (fail closed).
    if (catalog.uncommittedChanges) {
      this.writes.add(ANY_TABLE);
      return;
    }
    const targets = new Set<string>();
    this.table(relation, scope, targets);
    // A view or rule rewrites the write onto tables the facts do not tie to it: their foreign keys act too.
    if ([...targets].some((target) => catalog.rewritingRelations.has(target))) {
      this.writes.add(ANY_TABLE);
      return;
    }
    for (const target of targets) for (const dependent of foreignKeyReachOf(catalog, target)) this.relation(this.writes, dependent, false);
  }

  /**
   * A write whose expressions hand a computed value to pg_notify or setval may hand over its
   * target's columns: it reads its target, as with RETURNING.
   */
  private readsTargetIfSent(n: Node, scope: Scope): void {
    if (this.sendsComputedValue) this.table(n.relation, scope, this.reads);
  }

  /**
   * A write through a view, or to a relation whose rules or INSTEAD OF triggers rewrite it, does
   * what the rewrite says, not what the WHERE picks: it cannot count as bounded.
   */
  private rewrittenWrite(verb: string): void {
    const catalog = this.options.catalog;
    if (!catalog) return;
    if (catalog.uncommittedChanges) {
      this.raise('write', 'high', `${verb} after a schema change not yet committed: a view, rule or trigger may rewrite it`);
      return;
    }
    const target = [...this.writes].find((name) => catalog.rewritingRelations.has(name));
    if (target) this.raise('write', 'high', `${verb} on ${target}, a view or a relation whose rules or triggers rewrite writes: it may change any rows`);
  }

  /**
   * CREATE FUNCTION/PROCEDURE names, as tables, what its body reads and writes when a SQL body
   * says so; any other body may read any table. CREATE TRIGGER, OPERATOR, CAST … name a function
   * the server will call later: unless the catalogue vouches for it, it may read any table.
   */
  private definesCode(tag: string, n: Node): void {
    if (tag === 'CreateFunctionStmt') {
      const body = functionBody(n);
      if ('opaque' in body) {
        this.unvouched ??= body.opaque;
        this.reads.add(ANY_TABLE);
        return;
      }
      const inner = new StatementWalk(this.pathSchemas, this.options, this.depth + 1);
      inner.visit(body.statements, EMPTY_SCOPE);
      for (const table of [...inner.reads, ...inner.writes]) this.reads.add(table);
      for (const fn of inner.functions) this.functions.add(fn);
      this.unvouched ??= inner.unvouched;
      return;
    }
    for (const parts of namedFunctions(tag, n)) {
      if (isCataloguedFunction(parts, this.options.searchPath)) continue;
      this.unvouched ??= `${parts.join('.')}() is not on the catalogue of functions that read no table`;
      this.reads.add(ANY_TABLE);
    }
  }

  /** `x.name` or `(x).name`: a call of the target's `name(x)` when the catalog has one (attribute notation). */
  private attributeCall(name: string | undefined): void {
    const catalog = this.options.catalog;
    if (name === undefined || !catalog || (!catalog.uncommittedChanges && !catalog.rowFunctions.has(name))) return;
    this.mayDoAnything(`.${name} may call the target's function ${name}() in attribute notation`);
  }

  private relations(list: unknown, scope: Scope, into: Set<string>): void {
    if (Array.isArray(list)) for (const item of list) this.table((item as { RangeVar?: unknown }).RangeVar ?? item, scope, into);
  }

  /**
   * Something whose code the catalogue does not vouch for (a user function, a cast to a user
   * type, a user operator, table_to_xml): it may read any table and may write, so it fails every
   * `tables` allow-list, is refused to a read-only subject and is at least high risk.
   */
  private mayDoAnything(why: string): void {
    this.unvouched ??= why;
    this.reads.add(ANY_TABLE);
    this.raise('write', 'high', why);
  }

  private funcCall(call: Node, scope: Scope): void {
    const exact = names(call.funcname);
    const parts = exact.map((part) => part.toLowerCase());
    const bare = parts[parts.length - 1] ?? '';
    const written = parts.join('.');
    this.functions.add(written);
    const effect = functionEffect(bare);
    const kept = SESSION_STATE_ARGUMENT.get(bare);
    if (kept !== undefined && !isWrittenValue((Array.isArray(call.args) ? call.args : [])[kept])) {
      this.raise('admin', 'critical', `${bare}() keeps a value computed at run time in the session, past masking`);
    }
    if (VALUE_SENDING_FUNCTIONS.has(bare) && (Array.isArray(call.args) ? call.args : []).some((arg) => !isWrittenValue(arg))) this.sendsComputedValue = true;
    if (bare === 'current_setting') {
      // Refused or allowed by its constant (the setting's name): a decision of one name must not
      // answer another of the same shape, so it is never kept (the policy cache keys by shape).
      this.cacheable = false;
      const args = Array.isArray(call.args) ? call.args : [];
      const secret = settingReadReason(constantText(args[0]));
      if (secret) this.raise('admin', 'critical', `current_setting(): ${secret}`);
    }
    if (bare === 'set_config') {
      this.cacheable = false;
      const args = Array.isArray(call.args) ? call.args : [];
      const setting = constantText(args[0])?.toLowerCase();
      const guarded = setting === undefined ? undefined : guardedSettingReason(setting, constantText(args[1]));
      if (setting === undefined) this.raise('admin', 'critical', 'set_config of a setting named at run time');
      else if (guarded) this.raise('admin', 'critical', `set_config('${setting}'): ${guarded}`);
      if (exact.length > 1 && exact[0] !== 'pg_catalog') this.mayDoAnything(`${written}() is not the built-in set_config`);
    } else if (effect) {
      this.raise(effect.action, effect.risk, `${bare}() ${effect.why}`);
    } else if (!isCataloguedFunction(exact, this.options.searchPath)) {
      this.mayDoAnything(`${exact.join('.')}() is not on the catalogue of functions that read no table`);
    }
    if (this.overloadsBuiltin(exact)) this.mayDoAnything(`${written}() may run a user's overload of the built-in ${bare}()`);
    this.fields(call, scope, SKIP_FUNCNAME);
  }

  /** A cast to a type outside pg_catalog may run a user's input, cast or domain-check function. */
  private typeCast(n: Node, scope: Scope): void {
    const typeName = isObject(n.typeName) ? n.typeName : undefined;
    const parts = names(typeName?.names);
    if (parts.length > 0 && !isBuiltinType(parts, this.options.searchPath)) this.mayDoAnything(`a cast to ${parts.join('.')} may run code the catalogue does not vouch for`);
    this.fields(n, scope);
  }

  /** An operator outside the built-in symbols (or qualified elsewhere) runs a user's function. */
  private operator(n: Node, scope: Scope): void {
    const kind = str(n.kind);
    const parts = names(n.name);
    if (!isBuiltinOperatorExpression(kind, parts, this.options.searchPath)) this.mayDoAnything(`operator ${parts.join('.')} is not a built-in operator`);
    // BETWEEN runs as `>=` and `<=`, each looked up by name like any other operator.
    const run = kind !== undefined && kind.includes('BETWEEN') ? [['>='], ['<=']] : [parts];
    for (const op of run) this.overloadedOperator(op);
    this.fields(n, scope);
  }

  /**
   * True when `parts` is an unqualified name the target also has outside pg_catalog
   * (TargetCatalogFacts.overloadedBuiltins): PostgreSQL picks among every overload on the path by
   * argument types, pg_catalog first only between equal matches, so the built-in is not vouched.
   * A name qualified with pg_catalog resolves there alone; one qualified elsewhere is not built in.
   */
  private overloadsBuiltin(parts: readonly string[]): boolean {
    const name = parts.length === 1 ? parts[0] : undefined;
    return name !== undefined && this.options.catalog?.overloadedBuiltins?.has(name) === true;
  }

  private overloadedOperator(parts: readonly string[]): void {
    if (this.overloadsBuiltin(parts)) this.mayDoAnything(`operator ${parts.join('.')} may run a user's overload of the built-in operator`);
  }

  /**
   * Operators the server looks up by name without an A_Expr in the text: `x IN (select …)` and
   * `op ANY/ALL (select …)`, a simple CASE's `=`, and the `=` of JOIN … USING and NATURAL JOIN.
   */
  private implicitOperators(tag: string, n: Node): void {
    if (tag === 'SubLink') {
      // `x IN (select …)` leaves the name out: the server runs it as `= ANY`.
      const parts = names(n.operName).length > 0 ? names(n.operName) : str(n.subLinkType) === 'ANY_SUBLINK' ? ['='] : [];
      if (parts.length === 0) return;
      if (!isBuiltinOperator(parts, this.options.searchPath)) this.mayDoAnything(`operator ${parts.join('.')} is not a built-in operator`);
      this.overloadedOperator(parts);
    } else if ((tag === 'CaseExpr' && n.arg !== undefined) || (tag === 'JoinExpr' && (n.isNatural === true || list(n.usingClause).length > 0))) {
      this.overloadedOperator(['=']);
    }
  }

  /** ORDER BY … USING op calls the operator's function for every comparison. */
  private sortBy(n: Node, scope: Scope): void {
    const parts = names(n.useOp);
    if (parts.length > 0 && !isBuiltinOperator(parts, this.options.searchPath)) this.mayDoAnything(`ORDER BY … USING ${parts.join('.')} is not a built-in operator`);
    this.fields(n, scope);
  }

  /**
   * pg_roles is open to a `tables` allow-list for psql's `\du`, but its rolconfig column is
   * pg_db_role_setting's per-role settings (ALTER ROLE … SET app.api_key = …) of every role in the
   * cluster: a statement that may read it (by name, `*`, a whole-row reference or an alias list)
   * reads pg_db_role_setting, which stays under the rules.
   */
  settleRoleSettings(): void {
    if (this.roleRefs.size === 0) return;
    const wholeRow = [...this.bareNames].some((name) => this.roleRefs.has(name));
    if (this.readsAnyColumnOfRoles || wholeRow) this.reads.add(ROLE_SETTINGS);
  }

  private columnRef(n: Node, scope: Scope): void {
    const fields = list(n.fields);
    const last = fields[fields.length - 1];
    if (isObject(last) && isObject(last.A_Star)) this.readsAnyColumnOfRoles = true;
    const parts = names(fields);
    if (parts[parts.length - 1] === 'rolconfig') this.readsAnyColumnOfRoles = true;
    if (fields.length === 1 && parts[0]) this.bareNames.add(parts[0]);
    if (parts.length > 1) this.attributeCall(parts[parts.length - 1]);
    this.fields(n, scope);
  }

  node(tag: string, n: Node, scope: Scope): void {
    this.implicitOperators(tag, n);
    switch (tag) {
      case 'ColumnRef':
        this.columnRef(n, scope);
        return;
      case 'RangeVar':
        this.table(n, scope, this.reads);
        return;
      case 'FuncCall':
        this.funcCall(n, scope);
        return;
      case 'TypeCast':
        this.typeCast(n, scope);
        return;
      case 'A_Expr':
        this.operator(n, scope);
        return;
      case 'A_Indirection':
        for (const name of names(n.indirection)) this.attributeCall(name);
        this.fields(n, scope);
        return;
      case 'SortBy':
        this.sortBy(n, scope);
        return;
      case 'LockingClause':
        this.raise('write', 'medium', 'SELECT … FOR UPDATE/SHARE locks rows');
        this.fields(n, scope);
        return;
      case 'VariableShowStmt': {
        const secret = settingReadReason(str(n.name));
        if (secret) this.raise('admin', 'critical', `SHOW: ${secret}`);
        return;
      }
      case 'SelectStmt':
      case 'DeclareCursorStmt':
      case 'ConstraintsSetStmt':
      case 'ClosePortalStmt':
      case 'FetchStmt':
      case 'ListenStmt':
      case 'UnlistenStmt':
        this.fields(n, scope);
        return;
      case 'InsertStmt':
        if (upsertIsBounded(n)) this.raise('write', 'medium', 'INSERT');
        else this.raise('write', 'high', 'INSERT … ON CONFLICT DO UPDATE of rows a query picks, not constants');
        this.changesRows(n, scope, 'INSERT', isObject(n.onConflictClause) && str(n.onConflictClause.action) === 'ONCONFLICT_UPDATE');
        return;
      case 'UpdateStmt':
      case 'DeleteStmt': {
        const verb = tag === 'UpdateStmt' ? 'UPDATE' : 'DELETE';
        const target = writeTarget(n.relation, tag === 'UpdateStmt' ? n.fromClause : n.usingClause);
        if (boundsTargetRows(n.whereClause, target)) this.raise('write', 'medium', `${verb} with a WHERE that picks rows by constants`);
        else this.raise('write', 'high', `${verb} without a WHERE that picks the target's rows by constants`);
        this.changesRows(n, scope, verb, true);
        return;
      }
      case 'MergeStmt':
        if (mergeIsBounded(n)) this.raise('write', 'medium', 'MERGE changing only rows picked by constants');
        else this.raise('write', 'high', "MERGE that may change target rows not picked by constants");
        this.changesRows(n, scope, 'MERGE', true);
        return;
      case 'CopyStmt':
        this.copy(n, scope);
        return;
      case 'ExplainStmt':
        this.explain(n, scope);
        return;
      case 'PrepareStmt':
        this.prepares = str(n.name);
        this.visit(n.query, scope);
        return;
      case 'ExecuteStmt':
        this.execute(n, scope);
        return;
      case 'DeallocateStmt':
        this.deallocates = n.isall ? '*' : str(n.name);
        return;
      case 'TransactionStmt':
        this.modeChange(transactionEffect(n));
        return;
      case 'VariableSetStmt':
        this.modeChange(variableSetEffect(n));
        return;
      case 'DiscardStmt':
        if (n.target === 'DISCARD_ALL') this.raise('admin', 'critical', "DISCARD ALL resets the session's role and read-only mode");
        return;
      case 'CallStmt':
        this.raise('write', 'medium', 'CALL runs a procedure that may change data');
        if (isObject(n.funccall)) this.funcCall(n.funccall, scope);
        return;
      case 'NotifyStmt':
        this.raise('write', 'medium', 'NOTIFY signals other sessions');
        return;
      case 'LockStmt':
        this.raise('write', 'medium', 'LOCK takes table locks');
        this.relations(n.relations, scope, this.writes);
        return;
      case 'TruncateStmt':
        this.raise('ddl', 'high', 'TRUNCATE empties tables');
        this.relations(n.relations, scope, this.writes);
        this.cascades(n);
        return;
      case 'DropStmt':
        this.drop(n);
        return;
      case 'CreateStmt':
      case 'IndexStmt':
      case 'CreateTrigStmt':
      case 'RuleStmt':
        this.raise('ddl', 'medium', STATEMENT_KINDS[tag]?.why ?? tag);
        this.table(n.relation, scope, this.writes);
        // A rule's actions and a trigger's WHEN and function see the table's rows (OLD, NEW) on
        // every later write and may copy them out (ON UPDATE … DO ALSO INSERT INTO t VALUES (old.x)).
        if (tag === 'RuleStmt' || tag === 'CreateTrigStmt') this.table(n.relation, scope, this.reads);
        if (tag === 'CreateTrigStmt') this.definesCode(tag, n);
        this.fields(n, scope, SKIP_RELATION);
        return;
      case 'CreateFunctionStmt':
      case 'DefineStmt':
      case 'CreateCastStmt':
      case 'CreateTransformStmt':
      case 'CreateOpClassStmt':
      case 'AlterOpFamilyStmt': {
        const kind = STATEMENT_KINDS[tag]!;
        this.raise(kind.action, kind.risk, kind.why);
        this.definesCode(tag, n);
        // A body's statements are classified above, as what the function will read; not run now.
        if (tag === 'CreateFunctionStmt') this.visit(n.parameters, scope);
        else this.fields(n, scope);
        return;
      }
      case 'AlterTableStmt':
        this.alterTable(n, scope);
        return;
      case 'CreateForeignTableStmt':
        this.raise('ddl', 'medium', STATEMENT_KINDS[tag]?.why ?? tag);
        this.fields(n, scope);
        // Its rows come from whatever table its server and options name (postgres_fdw's
        // table_name on a loopback server may be a guarded one): reading it may read any table.
        this.reads.add(ANY_TABLE);
        return;
      case 'CreateTableAsStmt':
        this.raise('ddl', 'medium', n.objtype === 'OBJECT_MATVIEW' ? 'CREATE MATERIALIZED VIEW' : 'CREATE TABLE … AS');
        this.table(isObject(n.into) ? n.into.rel : undefined, scope, this.writes);
        this.visit(n.query, scope);
        return;
      case 'ViewStmt':
        this.raise('ddl', 'medium', 'CREATE VIEW');
        this.table(n.view, scope, this.writes);
        this.visit(n.query, scope);
        return;
      case 'CommentStmt':
      case 'SecLabelStmt':
      case 'AlterExtensionContentsStmt': {
        const kind = STATEMENT_KINDS[tag];
        if (kind) this.raise(kind.action, kind.risk, kind.why);
        this.namedObjectTable(str(n.objtype) ?? '', n.object);
        return;
      }
      case 'RenameStmt':
        if (ADMIN_RENAMES.has(str(n.renameType) ?? '')) this.raise('admin', 'critical', 'renames a role, database or server-level object');
        else this.raise('ddl', 'medium', 'ALTER … RENAME');
        this.table(n.relation, scope, this.writes);
        if (ROW_MOVING_RENAMES.has(str(n.renameType) ?? '')) this.table(n.relation, scope, this.reads);
        // Renaming a schema moves every table in it under new names: which ones, the text does not say.
        if (str(n.renameType) === 'OBJECT_SCHEMA') this.reads.add(ANY_TABLE);
        return;
      default: {
        const kind = STATEMENT_KINDS[tag];
        if (kind) {
          this.raise(kind.action, kind.risk, kind.why);
          // Any other statement's CASCADE (ALTER DOMAIN … DROP CONSTRAINT … CASCADE) too.
          this.cascades(n);
          this.fields(n, scope);
        } else if (tag.endsWith('Stmt')) {
          this.raise('admin', 'critical', `${tag} is not a statement Sluice knows`);
        } else {
          this.fields(n, scope);
        }
      }
    }
  }

  /**
   * INSERT, UPDATE, DELETE, MERGE: the target is written (rows it references through foreign keys
   * too when `throughForeignKeys`), read back when RETURNING returns rows, and the rest walked.
   */
  private changesRows(n: Node, scope: Scope, verb: string, throughForeignKeys: boolean): void {
    this.table(n.relation, scope, this.writes);
    if (throughForeignKeys) this.changesThroughForeignKeys(n.relation, scope);
    if (returnsRows(n)) this.table(n.relation, scope, this.reads);
    this.rewrittenWrite(verb);
    this.fields(n, scope, SKIP_RELATION);
    this.readsTargetIfSent(n, scope);
  }

  private copy(n: Node, scope: Scope): void {
    const filename = str(n.filename);
    if (n.is_program) {
      this.cacheable = false;
      this.raise('admin', 'critical', 'COPY … PROGRAM runs a shell command on the server');
    } else if (filename !== undefined) {
      this.cacheable = false;
      this.raise('admin', 'critical', 'COPY to or from a server file');
    } else if (n.is_from) {
      this.raise('write', 'medium', 'COPY FROM STDIN loads rows');
    }
    this.table(n.relation, scope, n.is_from ? this.writes : this.reads);
    this.visit(n.query, scope);
    this.visit(n.whereClause, scope);
  }

  private explain(n: Node, scope: Scope): void {
    const options = defElems(n.options);
    if (options.some((option) => option.arg !== undefined)) this.cacheable = false;
    // The server reads every ANALYZE option and keeps the last (`EXPLAIN (ANALYZE false, ANALYZE
    // true)` runs the statement): any one that is not plainly false counts, and so does an
    // unreadable value, since the statement would run.
    const analyze = options.some((option) => option.name === 'analyze' && defElemBoolean(option.arg) !== false);
    if (analyze) {
      this.visit(n.query, scope);
      return;
    }
    // Without ANALYZE nothing runs: keep the tables and functions named, not the action.
    const planned = new StatementWalk(this.pathSchemas, this.options, this.depth);
    planned.visit(n.query, scope);
    for (const table of planned.reads) this.reads.add(table);
    for (const table of planned.writes) this.reads.add(table);
    for (const fn of planned.functions) this.functions.add(fn);
    this.cacheable &&= planned.cacheable;
    // The planner folds IMMUTABLE functions (and estimates with STABLE ones) by running them.
    if (planned.unvouched) this.mayDoAnything(`planning may run it: ${planned.unvouched}`);
  }

  private execute(n: Node, scope: Scope): void {
    this.cacheable = false;
    const name = str(n.name) ?? '';
    this.executes = name;
    this.visit(n.params, scope);
    const text = this.options.preparedStatements?.get(name);
    if (text === undefined || this.depth >= MAX_EXECUTE_DEPTH) {
      this.raise('admin', 'critical', `EXECUTE of unknown prepared statement "${name}"`);
      return;
    }
    let tree: { stmts?: { stmt?: Node }[] };
    try {
      tree = parseSync(text);
    } catch {
      this.raise('admin', 'critical', `prepared statement "${name}" does not parse`);
      return;
    }
    const inner = new StatementWalk(this.pathSchemas, this.options, this.depth + 1);
    for (const raw of tree.stmts ?? []) {
      const prepared = (raw.stmt as { PrepareStmt?: Node } | undefined)?.PrepareStmt;
      // The session may have recorded the whole PREPARE statement or just its body.
      if (prepared && str(prepared.name) === name) inner.visit(prepared.query, EMPTY_SCOPE);
      else inner.visit(raw.stmt, EMPTY_SCOPE);
    }
    this.raise(inner.action, inner.risk, `EXECUTE ${name}: ${inner.reason}`);
    for (const table of inner.reads) this.reads.add(table);
    for (const table of inner.writes) this.writes.add(table);
    for (const fn of inner.functions) this.functions.add(fn);
  }

  private modeChange(effect: ModeEffect): void {
    if (!effect.cacheable) this.cacheable = false;
    if (effect.raise) this.raise(effect.raise.action, effect.raise.risk, effect.raise.why);
  }

  /**
   * CASCADE reaches objects the text does not name: TRUNCATE … CASCADE empties every table whose
   * foreign keys point at the named ones, DROP … CASCADE drops the views, columns (of a dropped
   * type) and constraints that depend on the objects, DROP SCHEMA … CASCADE every table in it.
   * Which tables, only the catalog knows: it may write any table, so a deny on one guards it.
   */
  private cascades(n: Node): void {
    if (str(n.behavior) === 'DROP_CASCADE') this.writes.add(ANY_TABLE);
  }

  private drop(n: Node): void {
    const removeType = str(n.removeType) ?? '';
    if (ADMIN_DROPS.has(removeType)) this.raise('admin', 'critical', `DROP of a server-level object (${removeType})`);
    else this.raise('ddl', 'high', 'DROP removes objects and their data');
    this.cascades(n);
    if (!RELATION_DROPS.has(removeType) || !Array.isArray(n.objects)) return;
    for (const object of n.objects) {
      const parts = names((object as { List?: { items?: unknown } }).List?.items);
      const relname = parts[parts.length - 1];
      if (!relname) continue;
      const schema = parts.length > 1 ? parts[parts.length - 2] : undefined;
      this.table({ relname, ...(schema ? { schemaname: schema } : {}) }, EMPTY_SCOPE, this.writes);
    }
  }

  /** The table a COMMENT, SECURITY LABEL or ALTER EXTENSION ADD/DROP names, so `tables` rules see it. */
  private namedObjectTable(objtype: string, object: unknown): void {
    const onTable = OBJECTS_ON_A_TABLE.has(objtype);
    if (!onTable && !RELATION_DROPS.has(objtype)) return;
    const parts = names(isObject(object) && isObject(object.List) ? object.List.items : undefined);
    const relationParts = onTable ? parts.slice(0, -1) : parts;
    const relname = relationParts[relationParts.length - 1];
    if (!relname) return;
    const schema = relationParts.length > 1 ? relationParts[relationParts.length - 2] : undefined;
    this.table({ relname, ...(schema ? { schemaname: schema } : {}) }, EMPTY_SCOPE, this.writes);
  }

  private alterTable(n: Node, scope: Scope): void {
    const commands = Array.isArray(n.cmds) ? (n.cmds as { AlterTableCmd?: Node }[]) : [];
    this.raise('ddl', 'medium', 'ALTER TABLE');
    for (const command of commands) {
      const subtype = str(command.AlterTableCmd?.subtype);
      if (subtype === 'AT_ChangeOwner') this.raise('admin', 'critical', 'ALTER … OWNER TO hands the object to another role');
      else if (subtype === 'AT_DropColumn' || subtype === 'AT_DropConstraint') this.raise('ddl', 'high', 'ALTER TABLE … DROP');
      if (command.AlterTableCmd) this.cascades(command.AlterTableCmd);
    }
    this.table(n.relation, scope, this.writes);
    const subtypes = commands.map((command) => str(command.AlterTableCmd?.subtype) ?? '');
    // INHERIT makes the table a child: a read of the parent then returns its rows. Enabling a rule
    // or trigger runs code that sees its rows (OLD, NEW), as creating one does.
    if (subtypes.some((subtype) => subtype === 'AT_AddInherit' || ROW_CODE_ENABLES.has(subtype))) this.table(n.relation, scope, this.reads);
    // A foreign table's options say which remote table (and columns) its rows come from.
    if (subtypes.some((subtype) => subtype === 'AT_GenericOptions' || subtype === 'AT_AlterColumnGenericOptions')) this.reads.add(ANY_TABLE);
    this.fields(n, scope, SKIP_RELATION);
  }
}
