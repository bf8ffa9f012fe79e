/** Who an approval rule names: groups, subs, the issuers they must come from, and how many distinct approvers it needs. */
export interface ApproverRule {
  readonly groups: readonly string[];
  readonly subs: readonly string[];
  /** Absent or empty: any configured issuer (requests stored before issuers existed have none). */
  readonly issuers?: readonly string[];
  readonly minApprovals: number;
}

export interface ApproverIdentity {
  readonly sub: string;
  readonly groups: readonly string[];
  readonly issuer: string;
}

/**
 * Whether an identity is one of a rule's approvers. The approval service decides with it, and the
 * console shows a person only the requests it lets them decide: one test for both. A rule that
 * names no approvers names nobody: the request can only expire. (Taking it as "anyone" would let
 * any identity of the issuer, another agent included, release a held command.)
 */
export const mayDecide = (rule: ApproverRule, approver: ApproverIdentity): boolean =>
  (rule.issuers === undefined || rule.issuers.length === 0 || rule.issuers.includes(approver.issuer)) &&
  (rule.subs.includes(approver.sub) || approver.groups.some((group) => rule.groups.includes(group)));
