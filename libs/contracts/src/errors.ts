export const SluiceErrorCode = {
  ConfigInvalid: 'ERR_CONFIG_INVALID',
  TokenInvalid: 'ERR_TOKEN_INVALID',
  TokenExpired: 'ERR_TOKEN_EXPIRED',
  PolicyDenied: 'ERR_POLICY_DENIED',
  PolicyUnavailable: 'ERR_POLICY_UNAVAILABLE',
  ApprovalDenied: 'ERR_APPROVAL_DENIED',
  ApprovalExpired: 'ERR_APPROVAL_EXPIRED',
  ApprovalUnavailable: 'ERR_APPROVAL_UNAVAILABLE',
  MaskingUnavailable: 'ERR_MASKING_UNAVAILABLE',
  AuditUnavailable: 'ERR_AUDIT_UNAVAILABLE',
  ProtocolMalformed: 'ERR_PROTOCOL_MALFORMED',
  UpstreamFailed: 'ERR_UPSTREAM_FAILED',
  SqlUnparseable: 'ERR_SQL_UNPARSEABLE',
  IllegalTransition: 'ERR_ILLEGAL_TRANSITION',
  SelfApproval: 'ERR_SELF_APPROVAL',
  NotAnApprover: 'ERR_NOT_AN_APPROVER',
  NotAnAuditReader: 'ERR_NOT_AN_AUDIT_READER',
  NotFound: 'ERR_NOT_FOUND',
  ChainBroken: 'ERR_CHAIN_BROKEN',
  /** A statement or message larger than the listener's `limits` allow. */
  LimitExceeded: 'ERR_LIMIT_EXCEEDED',
  /** More connections than the listener's `limits` allow (for the listener, or for one subject). */
  TooManyConnections: 'ERR_TOO_MANY_CONNECTIONS',
} as const;
export type SluiceErrorCode = (typeof SluiceErrorCode)[keyof typeof SluiceErrorCode];

/**
 * Base of every error Sluice raises on purpose. `expose` says whether the message may reach
 * the agent or approver; anything else becomes a generic message at the edge.
 */
export abstract class SluiceError extends Error {
  abstract readonly code: SluiceErrorCode;
  readonly expose: boolean = false;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class ProtocolMalformedError extends SluiceError {
  readonly code = SluiceErrorCode.ProtocolMalformed;
}

export class TokenInvalidError extends SluiceError {
  readonly code = SluiceErrorCode.TokenInvalid;
  override readonly expose = true;
}

export class TokenExpiredError extends SluiceError {
  readonly code = SluiceErrorCode.TokenExpired;
  override readonly expose = true;
}

export class ConfigInvalidError extends SluiceError {
  readonly code = SluiceErrorCode.ConfigInvalid;
  override readonly expose = true;
  /** @param path the offending key path, e.g. `rules[0].effect` */
  constructor(
    readonly path: string,
    readonly expected: string,
  ) {
    super(`${path || '(root)'}: ${expected}`);
  }
}

/** The target (database, Redis, HTTP API) failed or refused; the message is for the log and audit only. */
export class UpstreamFailedError extends SluiceError {
  readonly code = SluiceErrorCode.UpstreamFailed;
}

export class DependencyUnavailableError extends SluiceError {
  constructor(
    readonly code:
      | typeof SluiceErrorCode.PolicyUnavailable
      | typeof SluiceErrorCode.MaskingUnavailable
      | typeof SluiceErrorCode.ApprovalUnavailable
      | typeof SluiceErrorCode.AuditUnavailable,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}
