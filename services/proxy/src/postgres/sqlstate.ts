import { SluiceError } from '@sluice/contracts';

/**
 * SQLSTATE codes the proxy answers with.
 * @see https://www.postgresql.org/docs/current/errcodes-appendix.html
 */
export const SqlState = {
  /** insufficient_privilege: a policy denial. */
  InsufficientPrivilege: '42501',
  /** invalid_password: authentication failed (bad, expired token). */
  InvalidPassword: '28P01',
  /** invalid_authorization_specification: no rule lets this subject use the resource. */
  InvalidAuthorization: '28000',
  /** system_error: a governance dependency (masking, audit) cannot do its part. */
  SystemError: '58000',
  /** cannot_connect_now. */
  CannotConnectNow: '57P03',
  /** connection_failure: the target is unreachable or the link to it broke. */
  ConnectionFailure: '08006',
  /** protocol_violation. */
  ProtocolViolation: '08P01',
  /** syntax_error: SQL the parser cannot read, answered as the server would. */
  SyntaxError: '42601',
  /** program_limit_exceeded: a statement or message beyond the listener's `limits`. */
  ProgramLimitExceeded: '54000',
  /** too_many_connections: beyond the listener's `limits` (for it, or for one subject). */
  TooManyConnections: '53300',
  /** query_canceled: a CancelRequest applied to a statement the proxy still held. */
  QueryCanceled: '57014',
  /** feature_not_supported. */
  FeatureNotSupported: '0A000',
} as const;

/** An error the agent gets as an ErrorResponse with this SQLSTATE; its message is written to be shown. */
export abstract class SqlStateError extends SluiceError {
  override readonly expose = true;
  constructor(
    readonly sqlstate: string,
    message: string,
  ) {
    super(message);
  }
}
