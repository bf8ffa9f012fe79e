import { BackendCode, encodeErrorResponse, encodeNoticeFields, encodeParse } from '@sluice/codec-pg';
import { SluiceErrorCode } from '@sluice/contracts';
import { sqlSyntaxError } from '@sluice/sql-classifier';
import type { HoldResult } from '../governance/approval-hold.js';
import type { Decision } from '../ports.js';
import type { Refusal } from './expectations.js';
import { SqlState } from './sqlstate.js';

/**
 * Sent to the target in place of a refused command. It fails in parse analysis (an invalid
 * integer literal) wherever it runs, needs no privilege and no extension, works in a read-only
 * transaction, and reads plainly in the server log. Named, so the agent's unnamed statement stays.
 */
export const TARGET_REFUSAL = encodeParse('sluice_refused', "select 'sluice: command refused'::pg_catalog.int4");

/** A statement the agent cancelled while the proxy held it, answered as the server answers a cancelled one. */
export const CANCELLED: Refusal = { code: SqlState.QueryCanceled, message: 'canceling statement due to user request' };

/** The ErrorResponse the agent gets for a refusal. */
export const refusalMessage = (refusal: Refusal): Buffer => {
  if (refusal.position === undefined) return encodeErrorResponse({ severity: 'ERROR', code: refusal.code, message: refusal.message });
  return encodeNoticeFields(BackendCode.ErrorResponse, { S: 'ERROR', V: 'ERROR', C: refusal.code, M: refusal.message, P: String(refusal.position) });
};

export const denialMessage = (decision: Decision, resourceName: string): string => {
  if (decision.rule) return `permission denied by rule "${decision.rule}": ${decision.reason}`;
  return `permission denied: ${decision.reason || `no rule allows ${decision.action} on ${resourceName}`}`;
};

/** A denial as the agent sees it: SQL the parser cannot read gets the server's own syntax error (42601). */
export const denial = (decision: Decision, text: string, resourceName: string): Refusal => {
  if (decision.rule === '') {
    const syntax = sqlSyntaxError(text);
    if (syntax) return { code: SqlState.SyntaxError, message: syntax.message, ...(syntax.position !== undefined ? { position: syntax.position } : {}) };
  }
  return { code: SqlState.InsufficientPrivilege, message: denialMessage(decision, resourceName) };
};

/** Undefined when the hold was granted (and consumed), else the refusal naming why. */
export const approvalRefusal = (result: HoldResult): Refusal | undefined => {
  if (result.granted) return undefined;
  if (result.code === SluiceErrorCode.ApprovalUnavailable) return { code: SqlState.InsufficientPrivilege, message: 'permission denied: the approval could not be obtained' };
  if (result.outcome === 'used') return { code: SqlState.InsufficientPrivilege, message: `permission denied: approval ${result.approvalId} was already used` };
  const by = result.approvers.length > 0 ? ` by ${result.approvers.join(', ')}` : '';
  const why = result.reason ? `: ${result.reason}` : '';
  return { code: SqlState.InsufficientPrivilege, message: `permission denied: approval ${result.approvalId ?? '-'} ${result.outcome}${by}${why}` };
};
