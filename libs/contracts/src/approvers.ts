/** Who an approval rule names: groups, subs, and how many distinct approvers it needs. */
export interface ApproverRule {
  readonly groups: readonly string[];
  readonly subs: readonly string[];
  readonly minApprovals: number;
}

export interface ApproverIdentity {
  readonly sub: string;
  readonly groups: readonly string[];
}

/**
 * Whether an identity is one of a rule's approvers. The approval service decides with it, and the
 * console shows a person only the requests it lets them decide: one test for both. A rule that
 * names no approvers names nobody: the request can only expire. (Taking it as "anyone" would let
 * any identity of the issuer, another agent included, release a held command.)
 */
export const mayDecide = (rule: ApproverRule, approver: ApproverIdentity): boolean => {
  return rule.subs.includes(approver.sub) || approver.groups.some((group) => rule.groups.includes(group));
};
