import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModule, parseSync } from 'libpg-query';
import { classifySql, loadSqlClassifier, type SqlClassification } from '@sluice/sql-classifier';
import { dropDatabases } from './support/databases.js';
import { DIFFERENTIAL_SCHEMA, functionCallCorpus, generateCorpus, type CorpusEntry, type FunctionRow } from './support/sql-corpus.js';

/**
 * PostgreSQL as the oracle for the SQL classifier. Every statement of a generated corpus runs on a
 * scratch database inside `BEGIN READ ONLY` (then rolled back) as a role that is not a superuser:
 * - a statement the server refuses with 25006 (read-only transaction) changes something, so the
 *   classifier must not call it a read;
 * - for a plain query the classifier calls a read, every relation `EXPLAIN (VERBOSE, FORMAT JSON)`
 *   plans to scan must be among the classifier's tables (a partition counts as its parent's), or a
 *   `tables` allow-list would let through what it was meant to stop;
 * - for any statement the classifier calls a read and the server runs, every table the backend
 *   counted a scan of (pg_stat_xact_user_tables) must be among them too: this sees reads no plan shows.
 * A classification of "any table" (see readsAnyTable) satisfies both table checks.
 */

const SEED = 0x5eed_0009;
const MINIMUM_GENERATED = 2_000;
const SEARCH_PATH = ['public'];

/**
 * KNOWN-OPEN: misses that come from functions (operators, casts, domain checks, row-level security
 * policies and views all run functions) whose body writes, or reads tables the statement does not
 * name. They wait for the closed-by-default function catalogue (libs/sql-classifier/src/functions.ts
 * is being rewritten on another branch); once that is merged, remove the marks it fixes. The last
 * test below fails while a marked statement no longer disagrees. A mark covers the statement's
 * parse tree: the same statement with other comments, spacing or keyword case, nothing else.
 * Statement -> what the server saw and why the classifier cannot see it.
 */
const KNOWN_OPEN_FUNCTION_MISSES: ReadonlyMap<string, string> = new Map([
  ['SELECT o.log_order FROM orders o', '25006: attribute notation o.log_order calls log_order(o), which inserts; the parse tree has only a ColumnRef'],
  ['SELECT (o).log_order FROM orders o', '25006: attribute notation calls log_order(o), which inserts; the parse tree has only an A_Indirection'],
  ['SELECT * FROM guarded', "25006: guarded's forced row-level security policy calls bump(); nothing in the text"],
  ['SELECT count(*) FROM public.guarded', "25006: guarded's forced row-level security policy calls bump(); nothing in the text"],
  ['SELECT * FROM bumping', '25006: the view bumping calls bump(); nothing in the text'],
]);
/** The parse tree without source positions: the same for other comments, spacing and keyword case. */
const treeKey = (sql: string): string => {
  try {
    return JSON.stringify(parseSync(sql), (key, value: unknown) => (key === 'location' || key === 'stmt_location' || key === 'stmt_len' ? undefined : value));
  } catch {
    return sql;
  }
};
let knownOpenTrees = new Map<string, string>();
const knownOpenMark = (sql: string): string | undefined => knownOpenTrees.get(treeKey(sql));

interface ScanCount {
  readonly relation: string;
  readonly scans: number;
}
const SCAN_COUNTS = `SELECT schemaname || '.' || relname AS relation, (seq_scan + coalesce(idx_scan, 0))::int AS scans FROM pg_stat_xact_user_tables`;

interface Disagreement {
  readonly sql: string;
  readonly origin: string;
  readonly server: string;
  readonly classifier: string;
}

const database = `sluice_diff_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
const role = database;
const ADMIN = { host: '127.0.0.1', port: 5432, user: 'postgres', database: 'postgres' };

let corpus: CorpusEntry[] = [];
let refusedCount = 0;
let explainedCount = 0;
let scannedCount = 0;
let unparsedCount = 0;
const refusedAsRead: Disagreement[] = [];
const tablesMissed: Disagreement[] = [];
const scansMissed: Disagreement[] = [];

/** `schema.relation` of every scan in an EXPLAIN (VERBOSE, FORMAT JSON) plan, subplans included. */
const plannedRelations = (plan: unknown, into = new Set<string>()): Set<string> => {
  if (Array.isArray(plan)) for (const item of plan) plannedRelations(item, into);
  else if (typeof plan === 'object' && plan !== null) {
    const node = plan as Record<string, unknown>;
    if (typeof node['Relation Name'] === 'string') into.add(`${String(node.Schema)}.${node['Relation Name']}`);
    for (const value of Object.values(node)) plannedRelations(value, into);
  }
  return into;
};

/** The classifier's way of saying "this may read any table" (a function it cannot see into). */
const readsAnyTable = (classification: Extract<SqlClassification, { ok: true }>): boolean =>
  classification.tables.includes('*') || (classification as { anyTable?: unknown }).anyTable === true;

const describeClassification = (classification: SqlClassification): string =>
  classification.ok ? `${classification.action}/${classification.risk} tables=[${classification.tables.join(', ')}] (${classification.reason})` : `unparsed: ${classification.error}`;

const isPlainQuery = (classification: SqlClassification): classification is Extract<SqlClassification, { ok: true }> =>
  classification.ok && classification.action === 'read' && classification.statements.length === 1 && classification.statements[0]!.type === 'SelectStmt';

beforeAll(async () => {
  await loadSqlClassifier();
  await loadModule();
  knownOpenTrees = new Map([...KNOWN_OPEN_FUNCTION_MISSES.keys()].map((sql) => [treeKey(sql), sql]));
  expect(knownOpenTrees.size).toBe(KNOWN_OPEN_FUNCTION_MISSES.size);
  const admin = new pg.Client(ADMIN);
  await admin.connect();
  await admin.query(`CREATE ROLE ${role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE`);
  await admin.query(`CREATE DATABASE ${database} OWNER ${role}`);
  const owner = new pg.Client({ ...ADMIN, user: role, database });
  await owner.connect();
  await owner.query(DIFFERENTIAL_SCHEMA);
  await owner.end();
  // Session defaults that DISCARD ALL comes back to after each statement: read-only, bounded in time.
  for (const setting of ["default_transaction_read_only = on", "statement_timeout = '5s'", "lock_timeout = '2s'"]) {
    await admin.query(`ALTER ROLE ${role} IN DATABASE ${database} SET ${setting}`);
  }
  await admin.end();

  const oracle = new pg.Client({ ...ADMIN, user: role, database });
  await oracle.connect();
  const functions = await oracle.query<{ schema: string; name: string; quoted_name: string; argument_type: string | null }>(`
    SELECT n.nspname AS schema, p.proname AS name, quote_ident(p.proname) AS quoted_name, CASE WHEN p.pronargs = 1 THEN format_type(p.proargtypes[0], NULL) END AS argument_type
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname IN ('pg_catalog', 'public') AND p.prokind = 'f' AND p.pronargs <= 1
      AND p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype, 'internal'::regtype)
    ORDER BY 1, 2, 3`);
  const functionRows: FunctionRow[] = functions.rows.map((row) => ({ schema: row.schema, name: row.name, quotedName: row.quoted_name, argumentType: row.argument_type ?? undefined }));
  const parents = new Map<string, string[]>();
  const inherits = await oracle.query<{ child: string; parent: string }>(`
    SELECT cn.nspname || '.' || c.relname AS child, pn.nspname || '.' || p.relname AS parent
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
    JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace`);
  for (const row of inherits.rows) parents.set(row.child, [...(parents.get(row.child) ?? []), row.parent]);
  const withinTables = (relation: string, tables: readonly string[]): boolean =>
    tables.includes(relation) || (parents.get(relation) ?? []).some((parent) => withinTables(parent, tables));

  const generated = generateCorpus(SEED, MINIMUM_GENERATED);
  const generatedTexts = new Set(generated.map((entry) => entry.sql));
  corpus = [...generated, ...functionCallCorpus(functionRows).filter((entry) => !generatedTexts.has(entry.sql))];
  for (const entry of corpus) {
    if (entry.prepare) {
      // PREPARE only plans; it runs outside the judged transaction and lives until DISCARD ALL.
      const prepared = await oracle.query(entry.prepare.sql).then(
        () => true,
        () => false,
      );
      if (!prepared) {
        await oracle.query('DISCARD ALL');
        continue;
      }
    }
    const classification = classifySql(entry.sql, {
      searchPath: SEARCH_PATH,
      ...(entry.prepare ? { preparedStatements: new Map([[entry.prepare.name, entry.prepare.sql]]) } : {}),
    });
    if (!classification.ok) unparsedCount++;
    // The backend's per-table scan counters outlive a rolled-back transaction until they are
    // flushed: what this statement scanned is the difference from the counts taken here.
    const started = (await oracle.query(`BEGIN READ ONLY; ${SCAN_COUNTS}`)) as unknown as pg.QueryResult<ScanCount>[];
    const before = new Map(started[1]!.rows.map((row) => [row.relation, row.scans]));
    let code: string | undefined;
    await oracle.query(entry.sql).catch((error: unknown) => {
      code = (error as { code?: string }).code ?? 'no code';
    });
    if (code === '25006') {
      refusedCount++;
      if (classification.ok && classification.action === 'read') {
        refusedAsRead.push({ sql: entry.sql, origin: entry.origin, server: '25006', classifier: describeClassification(classification) });
      }
    }
    if (code === undefined && classification.ok && classification.action === 'read' && !readsAnyTable(classification)) {
      // What the statement really scanned in this transaction: catches reads through views,
      // functions and policies that no plan shows.
      const after = await oracle.query<ScanCount>(SCAN_COUNTS);
      scannedCount++;
      const scanned = after.rows.filter((row) => row.scans > (before.get(row.relation) ?? 0)).map((row) => row.relation);
      const missed = scanned.filter((relation) => !withinTables(relation, classification.tables));
      if (missed.length > 0) {
        scansMissed.push({ sql: entry.sql, origin: entry.origin, server: `scanned ${missed.join(', ')}`, classifier: describeClassification(classification) });
      }
    }
    if (code === undefined && isPlainQuery(classification) && !readsAnyTable(classification)) {
      const explained = await oracle.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (VERBOSE, FORMAT JSON) ${entry.sql}`).then(
        (result) => result.rows[0]?.['QUERY PLAN'],
        () => undefined,
      );
      if (explained !== undefined) {
        explainedCount++;
        const missed = [...plannedRelations(explained)].filter((relation) => !withinTables(relation, classification.tables));
        if (missed.length > 0) {
          tablesMissed.push({ sql: entry.sql, origin: entry.origin, server: `scans ${missed.join(', ')}`, classifier: describeClassification(classification) });
        }
      }
    }
    await oracle.query('ROLLBACK');
    await oracle.query('DISCARD ALL');
  }
  await oracle.end();
  // One line for whoever reads the CI log: how much the oracle judged and how much disagreed.
  console.info(
    `classifier differential: ${corpus.length} statements (${corpus.filter((entry) => entry.origin.startsWith('pg_proc')).length} pg_proc calls), ${refusedCount} refused with 25006, ${explainedCount} plain queries explained, ` +
      `${unparsedCount} unparsed, ${refusedAsRead.length} refused writes classified read, ${tablesMissed.length} with planned tables missed, ` +
      `${scansMissed.length} of ${scannedCount} reads with scanned tables missed ` +
      `(${KNOWN_OPEN_FUNCTION_MISSES.size} marked known-open)`,
  );
}, 240_000);

afterAll(async () => {
  await dropDatabases([database], [role]);
});

const unexpected = (found: readonly Disagreement[]): Disagreement[] => found.filter((miss) => knownOpenMark(miss.sql) === undefined);

describe('the SQL classifier against PostgreSQL as the oracle', () => {
  it('runs a seeded corpus of at least 2,000 statements and the server refuses hundreds of them as writes', () => {
    expect(corpus.length).toBeGreaterThanOrEqual(MINIMUM_GENERATED);
    expect(refusedCount).toBeGreaterThan(300);
    expect(explainedCount).toBeGreaterThan(300);
    expect(scannedCount).toBeGreaterThan(300);
    expect(unparsedCount).toBeLessThan(corpus.length / 20);
  });

  it('classifies every statement the server refuses in a read-only transaction as a write, ddl or admin, never a read', () => {
    expect(unexpected(refusedAsRead)).toEqual([]);
  });

  it('names every table EXPLAIN plans to scan for a plain query among the classifier tables', () => {
    expect(unexpected(tablesMissed)).toEqual([]);
  });

  it('names every table a read actually scanned (pg_stat_xact_user_tables) among the classifier tables', () => {
    expect(unexpected(scansMissed)).toEqual([]);
  });

  it('still disagrees on every statement marked known-open (remove a mark once its miss is fixed)', () => {
    const stillMissed = new Set([...refusedAsRead, ...tablesMissed, ...scansMissed].map((miss) => knownOpenMark(miss.sql)));
    expect([...KNOWN_OPEN_FUNCTION_MISSES.keys()].filter((sql) => !stillMissed.has(sql))).toEqual([]);
  });
});
