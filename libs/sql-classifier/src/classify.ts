import { parseSync } from 'libpg-query';
import { highestRisk, riskRank, actionRank, widestAction, type Action, type Risk } from '@sluice/contracts';
import type { ClassifyOptions, SqlClassification, StatementClassification } from './classification.js';
import { assertLoaded, isSqlClassifierLoaded } from './parser.js';
import type { Node } from './parse-tree.js';
import { pathSchemasOf } from './statement-parts.js';
import { EMPTY_SCOPE, StatementWalk } from './statement-walk.js';
export type { ClassifyOptions, SqlClassification, StatementClassification } from './classification.js';
export { fingerprintSql, isSqlClassifierLoaded, loadSqlClassifier, normalizeSql } from './parser.js';

const classifyWithDepth = (text: string, options: ClassifyOptions, depth: number): SqlClassification => {
  assertLoaded();
  let tree: { stmts?: { stmt?: Node }[] };
  try {
    // PostgreSQL answers an empty query with EmptyQueryResponse; the WASM parser refuses it.
    tree = text.trim() === '' ? { stmts: [] } : parseSync(text);
  } catch (error) {
    return { ok: false, error: error instanceof Error ? error.message : String(error) };
  }
  const pathSchemas = pathSchemasOf(options.searchPath);
  const statements: StatementClassification[] = [];
  let action: Action = 'read';
  let risk: Risk = 'low';
  let reason = 'reads';
  let cacheable = true;
  const tables = new Set<string>();
  let walkOptions = options;
  for (const raw of tree.stmts ?? []) {
    const walk = new StatementWalk(pathSchemas, walkOptions, depth);
    const stmt = raw.stmt ?? {};
    const type = Object.keys(stmt)[0] ?? 'EmptyStmt';
    walk.visit(stmt, EMPTY_SCOPE);
    walk.settleRoleSettings();
    // A function, view, rule or trigger created earlier in the text is not in the catalog yet.
    if (options.catalog && (walk.action === 'ddl' || walk.action === 'admin')) walkOptions = { ...options, catalog: { ...options.catalog, uncommittedChanges: true } };
    if (statements.length === 0 || actionRank(walk.action) > actionRank(action) || (walk.action === action && riskRank(walk.risk) > riskRank(risk))) {
      reason = walk.reason;
    }
    action = widestAction(action, walk.action);
    risk = highestRisk(risk, walk.risk);
    cacheable &&= walk.cacheable;
    for (const table of walk.reads) tables.add(table);
    for (const table of walk.writes) tables.add(table);
    statements.push({
      type,
      action: walk.action,
      risk: walk.risk,
      reason: walk.reason,
      reads: [...walk.reads],
      writes: [...walk.writes],
      functions: [...walk.functions],
      ...(walk.prepares === undefined ? {} : { prepares: walk.prepares }),
      ...(walk.deallocates === undefined ? {} : { deallocates: walk.deallocates }),
      ...(walk.executes === undefined ? {} : { executes: walk.executes }),
    });
  }
  return { ok: true, action, risk, reason, statements, tables: [...tables].sort(), cacheable };
};

/**
 * Classifies a SQL message from the real PostgreSQL grammar. Every statement and every node
 * under it is walked; unparseable text gives `{ ok: false }` (callers deny: fail closed).
 * Requires loadSqlClassifier() to have resolved.
 */
export const classifySql = (text: string, options: ClassifyOptions = {}): SqlClassification => {
  try {
    return classifyWithDepth(text, options, 0);
  } catch (error) {
    if (!isSqlClassifierLoaded()) throw error;
    // A tree shape the walk did not expect must deny, not crash the caller.
    return { ok: false, error: `classifier failure: ${error instanceof Error ? error.message : String(error)}` };
  }
};
