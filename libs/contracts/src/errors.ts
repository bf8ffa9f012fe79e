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
  /** A request a service cannot take (a missing or contradictory field). */
  InvalidArgument: 'ERR_INVALID_ARGUMENT',
  /** Anything Sluice did not raise on purpose: a bug, or a failure with no code of its own. */
  Internal: 'ERR_INTERNAL',
  /** The peer closed the connection in the middle of an exchange. */
  ConnectionClosed: 'ERR_CONNECTION_CLOSED',
  /** A `{ env }` / `{ file }` secret the configuration names is unset or unreadable. */
  SecretUnavailable: 'ERR_SECRET_UNAVAILABLE',
  /** A provenance (event signing) key is not a usable PEM key. */
  ProvenanceKey: 'ERR_PROVENANCE_KEY',
  /** The masking service sent a profile snapshot the proxy cannot read. */
  MaskingSnapshotInvalid: 'ERR_MASKING_SNAPSHOT_INVALID',
  /** Console: sign-in failed (state, issuer answer, token). */
  ConsoleSignIn: 'ERR_CONSOLE_SIGN_IN',
  /** Console: a form post without a valid CSRF token. */
  ConsoleCsrf: 'ERR_CONSOLE_CSRF',
  /** Console: a backend (audit, approval service) failed. */
  ConsoleBackend: 'ERR_CONSOLE_BACKEND',
  /** Console: a path the console cannot read. */
  ConsoleMalformedPath: 'ERR_CONSOLE_MALFORMED_PATH',
  /** Audit API: a query it cannot read (a bad time, limit or cursor). */
  BadRequest: 'ERR_BAD_REQUEST',
  /** Audit: a SIEM exporter's destination refused or failed a delivery (it is retried). */
  ExportFailed: 'ERR_EXPORT_FAILED',
  /** CLI: a command line it cannot run (unknown flag, missing argument). */
  Usage: 'ERR_USAGE',
  /** CLI: no running deployment in this folder, and no --config or --url. */
  NoDeployment: 'ERR_NO_DEPLOYMENT',
  /** CLI: `sluice demo` could not build its demo world. */
  Demo: 'ERR_DEMO',
  /** CLI: `sluice demo` could not seed its Redis. */
  DemoRedis: 'ERR_DEMO_REDIS',
  /** CLI: the development issuer (`sluice dev-idp`) could not start or sign. */
  DevIdp: 'ERR_DEV_IDP',
  /** CLI: a command failed talking to a service (the message says which and why). */
  CliFailed: 'ERR_CLI_FAILED',
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

/** A statement, message or body larger than a configured limit allows. */
export class LimitExceededError extends SluiceError {
  readonly code = SluiceErrorCode.LimitExceeded;
}

/** The peer closed the connection in the middle of an exchange. */
export class ConnectionClosedError extends SluiceError {
  readonly code = SluiceErrorCode.ConnectionClosed;
  constructor(message = 'connection closed', options?: ErrorOptions) {
    super(message, options);
  }
}

/** A result Sluice could not make safe to show (masking unavailable or failed): withheld, never sent raw. */
export class ResultWithheldError extends SluiceError {
  readonly code = SluiceErrorCode.MaskingUnavailable;
}

/** A request a service cannot take; its message names the field and is safe to show the caller. */
export class InvalidArgumentError extends SluiceError {
  readonly code = SluiceErrorCode.InvalidArgument;
  override readonly expose = true;
}

/**
 * The fixed text a peer (an agent, an approver, another service) sees for a code when the error's
 * own message may not leave the process (`expose` false): internal detail goes to the log only.
 */
export const PUBLIC_ERROR_TEXT: Readonly<Record<SluiceErrorCode, string>> = {
  ERR_CONFIG_INVALID: 'the configuration is not valid',
  ERR_TOKEN_INVALID: 'the token is not valid',
  ERR_TOKEN_EXPIRED: 'the token has expired',
  ERR_POLICY_DENIED: 'denied by policy',
  ERR_POLICY_UNAVAILABLE: 'the policy service is unavailable',
  ERR_APPROVAL_DENIED: 'the approval was denied',
  ERR_APPROVAL_EXPIRED: 'the approval expired',
  ERR_APPROVAL_UNAVAILABLE: 'the approval service is unavailable',
  ERR_MASKING_UNAVAILABLE: 'masking is unavailable',
  ERR_AUDIT_UNAVAILABLE: 'the audit trail is unavailable',
  ERR_PROTOCOL_MALFORMED: 'malformed request',
  ERR_UPSTREAM_FAILED: 'the target failed',
  ERR_SQL_UNPARSEABLE: 'the SQL text cannot be parsed',
  ERR_ILLEGAL_TRANSITION: 'not allowed in the current state',
  ERR_SELF_APPROVAL: 'a requester cannot approve their own request',
  ERR_NOT_AN_APPROVER: 'not an approver of this request',
  ERR_NOT_AN_AUDIT_READER: 'not an audit reader',
  ERR_NOT_FOUND: 'not found',
  ERR_CHAIN_BROKEN: 'the audit chain is broken',
  ERR_LIMIT_EXCEEDED: 'over a configured limit',
  ERR_TOO_MANY_CONNECTIONS: 'too many connections',
  ERR_INVALID_ARGUMENT: 'invalid argument',
  ERR_INTERNAL: 'internal error',
  ERR_CONNECTION_CLOSED: 'the connection closed',
  ERR_SECRET_UNAVAILABLE: 'a configured secret is unavailable',
  ERR_PROVENANCE_KEY: 'a provenance key is not usable',
  ERR_MASKING_SNAPSHOT_INVALID: 'the masking profiles cannot be read',
  ERR_CONSOLE_SIGN_IN: 'sign-in failed',
  ERR_CONSOLE_CSRF: 'the form expired; reload and try again',
  ERR_CONSOLE_BACKEND: 'a backend service failed',
  ERR_CONSOLE_MALFORMED_PATH: 'malformed path',
  ERR_BAD_REQUEST: 'bad request',
  ERR_EXPORT_FAILED: 'an export failed',
  ERR_USAGE: 'usage error',
  ERR_NO_DEPLOYMENT: 'no running deployment found',
  ERR_DEMO: 'the demo could not be set up',
  ERR_DEMO_REDIS: 'the demo Redis could not be seeded',
  ERR_DEV_IDP: 'the development issuer failed',
  ERR_CLI_FAILED: 'the command failed',
};

/** What a peer may be told of an error: its code and either its message (`expose`) or the code's fixed text. */
export const publicErrorOf = (error: unknown): { readonly code: SluiceErrorCode; readonly message: string } => {
  if (error instanceof SluiceError) return { code: error.code, message: error.expose ? error.message : PUBLIC_ERROR_TEXT[error.code] };
  return { code: SluiceErrorCode.Internal, message: PUBLIC_ERROR_TEXT[SluiceErrorCode.Internal] };
};

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
