import { connectUpstream, type UpstreamOptions } from './upstream.js';
import type { Socket } from 'node:net';
import { decodeBackend, encodeQuery, encodeTerminate, type FrameReader } from '@sluice/codec-pg';

/** How long a table's column names are trusted before they are read again (renames are rare). */
const TTL_MS = 60_000;

interface TableColumns {
  readonly fetchedAt: number;
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

  constructor(options: () => UpstreamOptions, now: () => number = Date.now) {
    this.#options = options;
    this.#now = now;
  }

  /** The table OIDs of these that are not known (or known too long ago). */
  missing(tableOids: Iterable<number>): number[] {
    const now = this.#now();
    const missing = new Set<number>();
    for (const oid of tableOids) {
      if (oid === 0) continue;
      const known = this.#tables.get(oid);
      if (!known || now - known.fetchedAt > TTL_MS) missing.add(oid);
    }
    return [...missing];
  }

  /** `schema.table.column`, or undefined when the column is not a table column (or unknown). */
  qualifiedName(tableOid: number, attnum: number): string | undefined {
    if (tableOid === 0 || attnum <= 0) return undefined;
    return this.#tables.get(tableOid)?.columns.get(attnum);
  }

  /** Reads the columns of these tables; queries are serialised on the one side connection. */
  resolve(tableOids: readonly number[]): Promise<void> {
    const run = this.#queue.then(() => this.#fetch(tableOids));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #fetch(tableOids: readonly number[]): Promise<void> {
    const oids = this.missing(tableOids);
    if (oids.length === 0) return;
    // OIDs are integers from the protocol, so the literal below cannot carry anything else.
    const list = oids.map((oid) => String(Math.trunc(oid))).join(',');
    const sql =
      'select a.attrelid::int8, a.attnum, n.nspname, c.relname, a.attname from pg_catalog.pg_attribute a ' +
      'join pg_catalog.pg_class c on c.oid = a.attrelid join pg_catalog.pg_namespace n on n.oid = c.relnamespace ' +
      `where a.attrelid = any('{${list}}'::oid[]) and a.attnum > 0 and not a.attisdropped`;
    let rows: (string | null)[][];
    try {
      rows = await this.#query(sql);
    } catch (error) {
      this.close();
      throw error;
    }
    const fetchedAt = this.#now();
    const byTable = new Map<number, Map<number, string>>(oids.map((oid) => [oid, new Map()]));
    for (const [relid, attnum, schema, table, column] of rows) {
      byTable.get(Number(relid))?.set(Number(attnum), `${schema}.${table}.${column}`);
    }
    for (const [oid, columns] of byTable) this.#tables.set(oid, { fetchedAt, columns });
  }

  async #query(sql: string): Promise<(string | null)[][]> {
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
