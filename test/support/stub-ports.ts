import type { MaskCounts, ProfileMasker } from '@sluice/masking-engine';
import type { DenyDecision } from '@sluice/contracts';
import type { Decision } from '../../services/proxy/src/ports.js';

/**
 * In-process stand-ins for the proxy's own ports (policy, masking), for adapter tests that
 * exercise one protocol front door without the other services. Real parts (tokens, targets)
 * stay real.
 */
const bump = (counts: MaskCounts, name: string) => {
  counts[name] = (counts[name] ?? 0) + 1;
};

/** Masks emails (keeping the domain) and card-like digit runs (keeping the last 4). */
export const stubMaskText = (text: string, counts: MaskCounts): string =>
  text
    .replace(/[\w.+-]+@([\w-]+\.[\w.]+)/g, (_match, domain: string) => {
      bump(counts, 'email');
      return `***@${domain}`;
    })
    .replace(/\b(?:\d[ -]?){12,15}(\d{4})\b/g, (_match, last4: string) => {
      bump(counts, 'credit_card');
      return `****${last4}`;
    });

/** A masker named `pii`; with `columnRule`, matching column names (and JSON keys) are redacted whole. */
export const createStubMasker = (options: { columnRule?: RegExp } = {}): ProfileMasker => {
  const forced = (name: string) => options.columnRule?.test(name) ?? false;
  const walk = (value: unknown, counts: MaskCounts): unknown => {
    if (typeof value === 'string') return stubMaskText(value, counts);
    if (Array.isArray(value)) return value.map((item) => walk(item, counts));
    if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, forced(k) ? 'REDACTED' : walk(v, counts)]));
    return value;
  };
  return {
    name: 'pii',
    maskText: stubMaskText,
    maskJson: walk,
    // Redis and HTTP never carry PostgreSQL binary cells.
    maskBinaryCell: (value) => value,
    maskCell: (value, column, counts) => {
      if (column && forced(column.name)) {
        bump(counts, `column:${column.name}`);
        return 'REDACTED';
      }
      return stubMaskText(value, counts);
    },
    hasColumnRule: (column) => forced(column.name),
  };
};

/** A decision of `effect` by `rule`: allowed results are masked with `pii`, approvals go to `dba`. */
export const stubDecision = (effect: Decision['effect'], rule: string, extra: Partial<Omit<DenyDecision, 'effect'>> = {}): Decision => {
  const basis = { rule, reason: effect === 'deny' ? 'not allowed for this agent' : '', action: 'read' as const, risk: 'low' as const, tables: [], prepares: [], ...extra };
  switch (effect) {
    case 'allow':
      return { ...basis, effect, maskProfile: 'pii' };
    case 'approve':
      return { ...basis, effect, approvers: { groups: ['dba'], subs: [], minApprovals: 1 }, approvalTimeoutMs: 60_000, maskProfile: 'pii' };
    case 'deny':
      return { ...basis, effect };
  }
};

export const deferred = <T>() => {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((settle) => (resolve = settle));
  return { promise, resolve };
};
