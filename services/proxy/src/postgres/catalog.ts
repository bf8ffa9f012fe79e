import { connectUpstream, type UpstreamOptions } from './upstream.js';
import type { Socket } from 'node:net';
import { createHash } from 'node:crypto';
import { decodeBackend, encodeQuery, encodeTerminate, type FrameReader } from '@sluice/codec-pg';
import { isSqlClassifierLoaded, targetCatalogFacts, type TargetCatalogFacts, type ViewDefinition } from '@sluice/sql-classifier';

/** How long a table's column names are trusted before they are read again (renames are rare). */
const TTL_MS = 60_000;

/** How long the catalog facts decisions use are trusted; a session's own DDL refreshes them sooner. */
const FACTS_TTL_MS = 30_000;

/**
 * The facts of the target's catalog the classifier needs (see TargetCatalogFacts), one row per
 * fact: `f` a function callable in attribute notation (one argument, or one without a default,
 * of a composite, domain or pseudo type such as record or anyelement, which a row fits, or
 * VARIADIC over such a type: `p.f` calls f(VARIADIC ARRAY[p])), `r` a
 * view or a relation whose rules or INSTEAD OF triggers rewrite writes, `t` a table with a trigger
 * of the user's (whose function a write runs unseen), `i` a child or partition
 * and its parent, `o` the name of a function or operator outside pg_catalog and
 * information_schema that pg_catalog has too (a user overload of a built-in name, which an
 * unqualified call may pick by its argument types), `v` a view or materialized view with its
 * definition and column names. pg_catalog's own functions and views are the classifier's
 * catalogue's business.
 */
const FACTS_QUERY =
  "select 'f', p.proname, null from pg_catalog.pg_proc p join pg_catalog.pg_type t on t.oid in (p.proargtypes[0], p.provariadic) " +
  "where p.pronargs >= 1 and p.pronargs - p.pronargdefaults <= 1 and t.typtype in ('c', 'd', 'p') " +
  "and p.pronamespace <> 'pg_catalog'::pg_catalog.regnamespace " +
  "union select 'r', n.nspname || '.' || c.relname, null from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace " +
  "where n.nspname not in ('pg_catalog', 'information_schema') and (c.relkind = 'v' or (c.relhasrules and c.relkind <> 'v') " +
  'or exists (select 1 from pg_catalog.pg_trigger g where g.tgrelid = c.oid and (g.tgtype & 64) <> 0)) ' +
  "union select 'o', p.proname, null from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace " +
  "where n.nspname not in ('pg_catalog', 'information_schema') and exists (select 1 from pg_catalog.pg_proc b " +
  "where b.proname = p.proname and b.pronamespace = 'pg_catalog'::pg_catalog.regnamespace) " +
  "union select 'o', o.oprname, null from pg_catalog.pg_operator o join pg_catalog.pg_namespace n on n.oid = o.oprnamespace " +
  "where n.nspname not in ('pg_catalog', 'information_schema') and exists (select 1 from pg_catalog.pg_operator b " +
  "where b.oprname = o.oprname and b.oprnamespace = 'pg_catalog'::pg_catalog.regnamespace) " +
  "union select 't', n.nspname || '.' || c.relname, null from pg_catalog.pg_trigger g join pg_catalog.pg_class c on c.oid = g.tgrelid " +
  'join pg_catalog.pg_namespace n on n.oid = c.relnamespace where not g.tgisinternal ' +
  "union select 'i', cn.nspname || '.' || c.relname, pn.nspname || '.' || p.relname from pg_catalog.pg_inherits h " +
  'join pg_catalog.pg_class c on c.oid = h.inhrelid join pg_catalog.pg_namespace cn on cn.oid = c.relnamespace ' +
  'join pg_catalog.pg_class p on p.oid = h.inhparent join pg_catalog.pg_namespace pn on pn.oid = p.relnamespace ' +
  "where c.relkind in ('r', 'p', 'f') " +
  // Foreign keys whose ON DELETE/UPDATE action changes the referencing table's rows.
  "union select 'k', rn.nspname || '.' || r.relname, dn.nspname || '.' || d.relname from pg_catalog.pg_constraint k " +
  'join pg_catalog.pg_class r on r.oid = k.conrelid join pg_catalog.pg_namespace rn on rn.oid = r.relnamespace ' +
  'join pg_catalog.pg_class d on d.oid = k.confrelid join pg_catalog.pg_namespace dn on dn.oid = d.relnamespace ' +
  "where k.contype = 'f' and (k.confdeltype in ('c', 'n', 'd') or k.confupdtype in ('c', 'n', 'd')) " +
  // Views and materialized views: [definition, [column names in order]], for their columns' lineage.
  // pg_get_viewdef takes an ACCESS SHARE lock on the view and every relation its rule reads: where
  // one of them is held or awaited ACCESS EXCLUSIVE (a TRUNCATE or ALTER in an open transaction, a
  // REFRESH MATERIALIZED VIEW), it would wait, and every decision with it. Such a view's definition
  // is left out (null: its columns are any column until the facts are read again).
  "union select 'v', n.nspname || '.' || c.relname, pg_catalog.json_build_array(case when exists (select from pg_catalog.pg_locks l " +
  "where l.locktype = 'relation' and l.mode = 'AccessExclusiveLock' and l.database = (select oid from pg_catalog.pg_database where datname = pg_catalog.current_database()) " +
  "and (l.relation = c.oid or l.relation in (select d.refobjid from pg_catalog.pg_rewrite r join pg_catalog.pg_depend d on d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass and d.objid = r.oid " +
  "where r.ev_class = c.oid))) then null else pg_catalog.pg_get_viewdef(c.oid) end, " +
  '(select pg_catalog.json_agg(a.attname order by a.attnum) from pg_catalog.pg_attribute a where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped))::text ' +
  'from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace ' +
  "where c.relkind in ('v', 'm') and n.nspname not in ('pg_catalog', 'information_schema') order by 1, 2, 3";

/**
 * pg_get_viewdef leaves out the schema of a relation the reading session's search_path finds:
 * with only pg_catalog on it, every other relation is printed with its schema, so a definition
 * reads the same whatever the role's default path (what is left unqualified is pg_catalog's).
 */
const FACTS_TEXT = `set search_path = pg_catalog; ${FACTS_QUERY}`;

/** A `v` row's view; one whose text cannot be read has no columns known, which masking reads as any column. */
const viewDefinition = (name: string, described: string | null): ViewDefinition => {
  try {
    const [definition, columns] = JSON.parse(described ?? '') as [unknown, unknown];
    if (typeof definition === 'string' && Array.isArray(columns) && columns.every((column) => typeof column === 'string')) return { name, columns, definition };
  } catch {
    // Falls through to no columns known.
  }
  return { name, columns: [], definition: '' };
};

/** Where a relation name may be read from, as last read (see TableCatalog.schemasHolding). */
interface NameHolders {
  readonly fetchedAt: number;
  /** The #factsGeneration its read began in: a schema change ended since makes it stale. */
  readonly generation: number;
  /** Every schema holding a relation of the name, pg_catalog and temporary schemas included. */
  readonly schemas: readonly string[];
}

/**
 * Schemas that add nothing to an unknown path (see schemasHolding): pg_catalog (the classifier
 * resolves its names itself) and temporary ones (the session's own rows; another session's are
 * out of its reach). TOAST schemas do count: reading a TOAST table reads any table.
 */
const addsNothing = (schema: string): boolean => schema === 'pg_catalog' || schema.startsWith('pg_temp_');

/** One TOAST schema per temporary one: every schema of the database lists pg_toast alone for them. */
const isTemporaryToast = (schema: string): boolean => schema.startsWith('pg_toast_temp_');

/** Relation names asked about at once; a text naming more is answered with every schema. */
const MAX_NAMES_ASKED = 64;

/** Relation names whose holders are kept at most. */
const MAX_NAMES_KEPT = 10_000;

const quoteLiteral = (text: string): string => `'${text.replaceAll("'", "''")}'`;

interface TableColumns {
  readonly fetchedAt: number;
  /** The #namesGeneration its read began in: one from before a rename may name the relation's old name. */
  readonly generation: number;
  /** attnum -> `schema.table.column`. */
  readonly columns: ReadonlyMap<number, string>;
}

/**
 * Resolves a RowDescription's (table OID, attribute number) to `schema.table.column`, so column
 * rules written that way apply. Table OIDs are database-wide: one cache per resource, filled
 * through one side connection with the resource's credentials that runs only this catalog query.
 */
export class TableCatalog {
  readonly #tables = new Map<number, TableColumns>();
  readonly #options: () => UpstreamOptions;
  #connection: Promise<{ socket: Socket; reader: FrameReader }> | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #now: () => number;
  #facts: { readonly fetchedAt: number; readonly facts: TargetCatalogFacts } | undefined;
  /** Bumped by schemaChangeEnded: a read started before it is not used after it. */
  #factsGeneration = 0;
  #factsRead: { readonly generation: number; readonly read: Promise<TargetCatalogFacts> } | undefined;
  /** The facts built last, kept past schemaChangeEnded: rows of the same version are not built again. */
  #lastBuilt: TargetCatalogFacts | undefined;
  /** Sessions with a schema change let through whose transaction has not ended (see factsCurrent). */
  #changesInFlight = 0;
  /** Bumped when a schema change begins and when one ends (see factsCurrent). */
  #schemaEpoch = 0;
  /**
   * Bumped when a schema change ends and when the facts read differ from the last: table OIDs
   * resolved before are read again, so a view renamed to another's name (two swapped) is not
   * matched by the name its OID had.
   */
  #namesGeneration = 0;

  /** Relation name -> the schemas holding one (see schemasHolding). */
  readonly #holders = new Map<string, NameHolders>();
  /** Every schema of the database, as NameHolders of no name. */
  #everySchema: NameHolders | undefined;

  constructor(options: () => UpstreamOptions, now: () => number = Date.now) {
    this.#options = options;
    this.#now = now;
  }

  /** The table OIDs of these that are not known (or known too long ago). */
  missing(tableOids: Iterable<number>): number[] {
    const now = this.#now();
    // Made only when a table is missing: every masked result asks, and all are known almost always.
    let missing: Set<number> | undefined;
    for (const oid of tableOids) {
      if (oid === 0) continue;
      const known = this.#tables.get(oid);
      if (!known || now - known.fetchedAt > TTL_MS || known.generation !== this.#namesGeneration) (missing ??= new Set()).add(oid);
    }
    return missing ? [...missing] : [];
  }

  /** `schema.table.column`, or undefined when the column is not a table column (or unknown). */
  qualifiedName(tableOid: number, attnum: number): string | undefined {
    if (tableOid === 0 || attnum <= 0) return undefined;
    return this.#tables.get(tableOid)?.columns.get(attnum);
  }

  /**
   * The schemas an unqualified name among `relnames` may be read from when the session's
   * search_path is not known (code a pipelined statement ran may have changed it): for each name,
   * every schema that holds a relation of that name, or every schema of the database when none
   * does (the name may be made before it is read; TOAST schemas then only for a TOAST table's
   * name). A name held by pg_catalog too puts pg_catalog last (the path may list it after another
   * schema). pg_catalog alone and a temporary schema (the session's own rows) add nothing, as on
   * a known path; a TOAST schema does (the classifier counts reading it as reading any table).
   * `relnames` undefined: every schema. `uncommitted`: the session changed the schema in a
   * transaction not committed, which this read cannot see: every name counts as held nowhere.
   * Trusted as long as the catalog facts are; rejects when the read fails.
   */
  async schemasHolding(relnames: readonly string[] | undefined, uncommitted = false): Promise<string[]> {
    const asked = relnames && relnames.length <= MAX_NAMES_ASKED ? relnames : undefined;
    const now = this.#now();
    const current = (known: NameHolders | undefined): known is NameHolders =>
      known !== undefined && now - known.fetchedAt <= FACTS_TTL_MS && known.generation === this.#factsGeneration;
    const missing = asked && !uncommitted ? asked.filter((name) => !current(this.#holders.get(name))) : [];
    if (!current(this.#everySchema) || missing.length > 0) {
      const read = this.#queue.then(() => this.#readHolders(missing));
      this.#queue = read.catch(() => undefined);
      await read;
    }
    const schemas = this.#everySchema?.schemas ?? [];
    const everyFor = (name: string | undefined): string[] =>
      schemas.filter((schema) => !addsNothing(schema) && !isTemporaryToast(schema) && (!schema.startsWith('pg_toast') || name === undefined || name.startsWith('pg_toast')));
    if (!asked) return everyFor(undefined);
    const path: string[] = [];
    let shadowsCatalog = false;
    for (const name of asked) {
      const holders = uncommitted ? [] : (this.#holders.get(name)?.schemas ?? []);
      const candidates = holders.length === 0 ? everyFor(name) : holders.filter((schema) => !addsNothing(schema));
      if (holders.includes('pg_catalog') && candidates.length > 0) shadowsCatalog = true;
      for (const schema of candidates) if (!path.includes(schema)) path.push(schema);
    }
    if (shadowsCatalog) path.push('pg_catalog');
    return path;
  }

  async #readHolders(relnames: readonly string[]): Promise<void> {
    const generation = this.#factsGeneration;
    // Names come from a parse tree, so they hold no NUL; the target reads literals with
    // standard_conforming_strings on (the proxy refuses a session where it is off).
    const list = relnames.map(quoteLiteral).join(', ');
    const sql =
      "select 's', null, n.nspname from pg_catalog.pg_namespace n" +
      (relnames.length === 0
        ? ''
        : " union all select 'n', c.relname, n.nspname from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace " +
          `where c.relname = any (array[${list}]::pg_catalog.text[]) and c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')`);
    const rows = await this.#query(sql);
    const fetchedAt = this.#now();
    const held = new Map<string, string[]>(relnames.map((name) => [name, []]));
    // Names are the agent's to choose: the map is bounded, and read again after a clear.
    if (this.#holders.size + held.size > MAX_NAMES_KEPT) this.#holders.clear();
    const schemas: string[] = [];
    for (const [kind, relname, schema] of rows) {
      if (typeof schema !== 'string') continue;
      if (kind === 's') schemas.push(schema);
      else if (kind === 'n' && typeof relname === 'string') held.get(relname)?.push(schema);
    }
    for (const [name, holders] of held) this.#holders.set(name, { fetchedAt, generation, schemas: holders });
    this.#everySchema = { fetchedAt, generation, schemas };
  }

  /** Reads the columns of these tables; queries are serialised on the one side connection. */
  resolve(tableOids: readonly number[]): Promise<void> {
    const run = this.#queue.then(() => this.#fetch(tableOids));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /**
   * The catalog facts decisions are made with: read again after FACTS_TTL_MS, or after
   * schemaChangeEnded. A read that fails rejects (the caller refuses: fail closed).
   */
  facts(): Promise<TargetCatalogFacts> {
    const known = this.cachedFacts();
    if (known) return Promise.resolve(known);
    const generation = this.#factsGeneration;
    if (this.#factsRead?.generation === generation) return this.#factsRead.read;
    const read = this.#queue.then(() => this.#readFacts(generation));
    this.#queue = read.catch(() => undefined);
    this.#factsRead = { generation, read };
    const settled = (): void => {
      if (this.#factsRead?.read === read) this.#factsRead = undefined;
    };
    read.then(settled, settled);
    return read;
  }

  /** The facts when they are current, without a promise (a decision that waits for nothing); else undefined. */
  cachedFacts(): TargetCatalogFacts | undefined {
    const known = this.#facts;
    return known && this.#now() - known.fetchedAt <= FACTS_TTL_MS ? known.facts : undefined;
  }

  /** Where schema changes are: take it before the facts a decision is made with (see factsCurrent). */
  get schemaEpoch(): number {
    return this.#schemaEpoch;
  }

  /** A session's DDL or admin statement was let through: until its transaction ends, see factsCurrent. */
  schemaChangeBegan(): void {
    this.#changesInFlight++;
    this.#schemaEpoch++;
  }

  /** That session's transaction ended (or the session did): the next decision reads the facts again. */
  schemaChangeEnded(): void {
    this.#changesInFlight = Math.max(0, this.#changesInFlight - 1);
    this.#schemaEpoch++;
    this.#namesGeneration++;
    this.#factsGeneration++;
    this.#facts = undefined;
  }

  /**
   * Whether facts taken at schemaEpoch `epoch` still describe the views a statement reads when its
   * result arrives: no schema change has begun or ended since, and none is in flight. A statement
   * decided with facts from before another session's commit may run after it (sent in the same
   * turn, or pipelined behind others), and a holdable cursor keeps rows of the views it was
   * declared over: their columns derive from definitions the facts may no longer hold.
   */
  factsCurrent(epoch: number): boolean {
    return this.#changesInFlight === 0 && epoch === this.#schemaEpoch;
  }

  async #readFacts(generation: number): Promise<TargetCatalogFacts> {
    const rows = await this.#query(FACTS_TEXT);
    const version = createHash('sha256').update(JSON.stringify(rows)).digest('base64url').slice(0, 16);
    // The same rows: the facts already built from them (each view definition is parsed once per version).
    const previous = this.#lastBuilt;
    if (previous?.version === version) {
      if (generation === this.#factsGeneration) this.#facts = { fetchedAt: this.#now(), facts: previous };
      return previous;
    }
    // Other facts: a relation may have been renamed (directly on the target) since OIDs were resolved.
    if (previous) this.#namesGeneration++;
    const pick = (kind: string): (string | null)[][] => rows.filter((row) => row[0] === kind);
    const facts = targetCatalogFacts({
      rowFunctions: pick('f').map((row) => row[1] ?? ''),
      overloadedBuiltins: pick('o').map((row) => row[1] ?? ''),
      rewritingRelations: pick('r').map((row) => row[1] ?? ''),
      triggeredRelations: pick('t').map((row) => row[1] ?? ''),
      inheritance: pick('i').map((row) => [row[1] ?? '', row[2] ?? ''] as const),
      foreignKeyActions: pick('k').map((row) => [row[1] ?? '', row[2] ?? ''] as const),
      views: pick('v').map((row) => viewDefinition(row[1] ?? '', row[2] ?? null)),
      version,
    });
    // Built before the parser was loaded, every view column is any column: built again next time.
    if (isSqlClassifierLoaded()) this.#lastBuilt = facts;
    if (generation === this.#factsGeneration) this.#facts = { fetchedAt: this.#now(), facts };
    return facts;
  }

  async #fetch(tableOids: readonly number[]): Promise<void> {
    const oids = this.missing(tableOids);
    if (oids.length === 0) return;
    const generation = this.#namesGeneration;
    // OIDs are integers from the protocol, so the literal below cannot carry anything else.
    const list = oids.map((oid) => String(Math.trunc(oid))).join(',');
    const sql =
      'select a.attrelid::int8, a.attnum, n.nspname, c.relname, a.attname from pg_catalog.pg_attribute a ' +
      'join pg_catalog.pg_class c on c.oid = a.attrelid join pg_catalog.pg_namespace n on n.oid = c.relnamespace ' +
      `where a.attrelid = any('{${list}}'::oid[]) and a.attnum > 0 and not a.attisdropped`;
    const rows = await this.#query(sql);
    const fetchedAt = this.#now();
    const byTable = new Map<number, Map<number, string>>(oids.map((oid) => [oid, new Map()]));
    for (const [relid, attnum, schema, table, column] of rows) {
      byTable.get(Number(relid))?.set(Number(attnum), `${schema}.${table}.${column}`);
    }
    for (const [oid, columns] of byTable) this.#tables.set(oid, { fetchedAt, generation, columns });
  }

  /** The rows of one query on the catalog's connection; a failed one (an error, a timeout) closes it, its state unknown. */
  async #query(sql: string): Promise<(string | null)[][]> {
    try {
      return await this.#send(sql);
    } catch (error) {
      this.close();
      throw error;
    }
  }

  async #send(sql: string): Promise<(string | null)[][]> {
    this.#connection ??= connectUpstream(this.#options()).then((connection) => {
      connection.socket.on('error', () => this.close());
      connection.socket.on('close', () => {
        this.#connection = undefined;
      });
      return { socket: connection.socket, reader: connection.reader };
    });
    const { socket, reader } = await this.#connection;
    return new Promise((resolve, reject) => {
      const rows: (string | null)[][] = [];
      let error: string | undefined;
      const timer = setTimeout(() => finish(new Error('catalog query timed out')), 5_000);
      const finish = (failure?: Error): void => {
        clearTimeout(timer);
        socket.off('data', onData);
        socket.off('close', onClose);
        if (failure) reject(failure);
        else if (error !== undefined) reject(new Error(`catalog query failed: ${error}`));
        else resolve(rows);
      };
      const onClose = (): void => finish(new Error('catalog connection closed'));
      const onData = (chunk: Buffer): void => {
        try {
          for (const frame of reader.push(chunk)) {
            const message = decodeBackend(frame);
            if (message.type === 'DataRow') rows.push(message.values.map((v) => (v === null ? null : v.toString('utf8'))));
            else if (message.type === 'ErrorResponse') error = `${message.fields.C ?? ''} ${message.fields.M ?? ''}`;
            else if (message.type === 'ReadyForQuery') finish();
          }
        } catch (failure) {
          finish(failure as Error);
        }
      };
      socket.on('data', onData);
      socket.once('close', onClose);
      socket.write(encodeQuery(sql));
    });
  }

  close(): void {
    const connection = this.#connection;
    this.#connection = undefined;
    void connection
      ?.then(({ socket }) => {
        if (socket.writable) socket.end(encodeTerminate());
        setTimeout(() => socket.destroy(), 1000).unref();
      })
      .catch(() => undefined);
  }
}
