/** What a command does, the widest of its parts (CONTRACT §2). Ordered from narrowest. */
export const ACTIONS = ['read', 'write', 'ddl', 'admin'] as const;
export type Action = (typeof ACTIONS)[number];

export const RISKS = ['low', 'medium', 'high', 'critical'] as const;
export type Risk = (typeof RISKS)[number];

/** What a classifier or a rule says of a command: its action, its risk, and why. */
export interface AssessedAction {
  readonly action: Action;
  readonly risk: Risk;
  /** Why the command got its action and risk, for explanations and audit. */
  readonly reason: string;
}

export const EFFECTS = ['allow', 'deny', 'approve'] as const;
export type Effect = (typeof EFFECTS)[number];

export const riskRank = (risk: Risk): number => RISKS.indexOf(risk);
export const actionRank = (action: Action): number => ACTIONS.indexOf(action);
export const widestAction = (a: Action, b: Action): Action => (actionRank(a) >= actionRank(b) ? a : b);
export const highestRisk = (a: Risk, b: Risk): Risk => (riskRank(a) >= riskRank(b) ? a : b);

/** The verified identity of an agent or approver. */
export interface Subject {
  readonly sub: string;
  readonly groups: readonly string[];
  readonly issuer: string;
}

export const PROTOCOLS = ['postgres', 'redis', 'http'] as const;
export type Protocol = (typeof PROTOCOLS)[number];

/**
 * Joins the mask profiles of a message's statements into the name of their union (`a+b`): the
 * policy names it, the masking engine builds it from the named profiles.
 */
export const PROFILE_SEPARATOR = '+';
