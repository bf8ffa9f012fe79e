import type { PreparedStatementChange } from '@sluice/sql-classifier';
import type { Expect, Portal, Statement } from './expectations.js';

/**
 * The statements and portals the target holds for this session, as the server confirmed them
 * (ParseComplete, BindComplete, CloseComplete, a PREPARE's or DEALLOCATE's command tag).
 */
export class StatementRegistry {
  readonly #statements = new Map<string, Statement>();
  readonly #portals = new Map<string, Portal>();
  /** PREPAREd (SQL) and Parse'd (protocol) statements share one namespace on the server: name -> SQL. */
  readonly #prepared = new Map<string, string>();

  /** Every named statement the server holds, name -> SQL: what an EXECUTE or a Bind of it reads. */
  get prepared(): ReadonlyMap<string, string> {
    return this.#prepared;
  }

  statement(name: string): Statement | undefined {
    return this.#statements.get(name);
  }

  portal(name: string): Portal | undefined {
    return this.#portals.get(name);
  }

  /** ParseComplete, BindComplete, CloseComplete: the server now holds what the message asked. */
  confirm(head: Expect): void {
    if (head.kind === 'parse') {
      this.#statements.set(head.statement.name, head.statement);
      if (head.statement.name !== '') this.#prepared.set(head.statement.name, head.statement.text);
    } else if (head.kind === 'bind') {
      this.#portals.set(head.portal.name, head.portal);
    } else if (head.kind === 'close') {
      if (head.target === 'S') {
        this.#statements.delete(head.name);
        this.#prepared.delete(head.name);
      } else this.#portals.delete(head.name);
    }
  }

  /** The server drops its unnamed statement and portal as soon as a Parse or Bind of them arrives. */
  replaceUnnamed(statement: boolean, portal: boolean): void {
    if (statement) this.#statements.delete('');
    if (portal) this.#portals.delete('');
  }

  /** A PREPARE's or DEALLOCATE's command tag: `sql` is the text of the command that made the change. */
  applyPreparedChange(change: PreparedStatementChange, sql: string): void {
    if (change.change === 'prepare') {
      this.#prepared.set(change.name, sql);
      // The name now holds the SQL statement: a Bind of it is decided as its EXECUTE.
      this.#statements.delete(change.name);
    } else if (change.name === '*') this.#forgetNamedStatements();
    else {
      this.#prepared.delete(change.name);
      this.#statements.delete(change.name);
    }
  }

  forgetPortal(name: string): void {
    this.#portals.delete(name);
  }

  /** Portals end with their transaction (every ReadyForQuery outside one). */
  forgetPortals(): void {
    // Map#clear allocates a new table even for an empty map: not once per statement for nothing.
    if (this.#portals.size > 0) this.#portals.clear();
  }

  /** DISCARD ALL: the named statements and every portal are gone. */
  discardAll(): void {
    this.#forgetNamedStatements();
    this.#portals.clear();
  }

  #forgetNamedStatements(): void {
    for (const name of [...this.#statements.keys()]) if (name !== '') this.#statements.delete(name);
    this.#prepared.clear();
  }
}
