import type { Action, Risk } from '@sluice/contracts';
import { asksReadWrite, constantText, defElems } from './statement-parts.js';
import { str, type Node } from './parse-tree.js';
import { guardedSettingReason } from './settings.js';

/** What a statement that sets the session's or a transaction's mode does to its classification. */
export interface ModeEffect {
  readonly raise?: { readonly action: Action; readonly risk: Risk; readonly why: string };
  /** False when its decision depends on more than the statement's shape (the values it sets). */
  readonly cacheable: boolean;
}

/** BEGIN, START TRANSACTION, COMMIT, … (TransactionStmt). */
export const transactionEffect = (n: Node): ModeEffect => {
  const kind = str(n.kind);
  if (kind === 'TRANS_STMT_PREPARE' || kind === 'TRANS_STMT_COMMIT_PREPARED' || kind === 'TRANS_STMT_ROLLBACK_PREPARED') {
    return { raise: { action: 'admin', risk: 'critical', why: 'two-phase commit acts on transactions beyond this statement' }, cacheable: true };
  }
  const cacheable = !(Array.isArray(n.options) && n.options.length > 0);
  if (asksReadWrite(n.options)) return { raise: { action: 'write', risk: 'medium', why: 'a READ WRITE transaction lifts the read-only mode' }, cacheable };
  return { cacheable };
};

/** SET, RESET, SET TRANSACTION, SET SESSION CHARACTERISTICS (VariableSetStmt). */
export const variableSetEffect = (n: Node): ModeEffect => {
  const kind = str(n.kind);
  const name = (str(n.name) ?? '').toLowerCase();
  if (kind === 'VAR_RESET_ALL') return { raise: { action: 'admin', risk: 'critical', why: "RESET ALL resets the session's role and read-only mode" }, cacheable: false };
  if (kind === 'VAR_SET_MULTI') {
    if (name === 'transaction' && asksReadWrite(n.args)) return { raise: { action: 'write', risk: 'medium', why: 'SET TRANSACTION READ WRITE lifts the read-only mode' }, cacheable: false };
    if (name === 'session characteristics' && defElems(n.args).some((option) => option.name === 'transaction_read_only')) {
      return { raise: { action: 'admin', risk: 'critical', why: "SET SESSION CHARACTERISTICS changes the session's read-only mode" }, cacheable: false };
    }
    return { cacheable: false };
  }
  // Only `SET name TO <one constant>` has a known value; RESET, DEFAULT and lists count as unknown.
  const args = Array.isArray(n.args) ? n.args : [];
  const value = kind === 'VAR_SET_VALUE' && args.length === 1 ? constantText(args[0]) : undefined;
  const guarded = guardedSettingReason(name, value, 'set');
  if (guarded) return { raise: { action: 'admin', risk: 'critical', why: `${kind === 'VAR_RESET' ? 'RESET' : 'SET'} ${name}: ${guarded}` }, cacheable: false };
  return { cacheable: false };
};
