import { status as GrpcStatus, type ServerErrorResponse } from '@grpc/grpc-js';
import { PUBLIC_ERROR_TEXT, publicErrorOf, SluiceError, SluiceErrorCode } from '@sluice/contracts';
import type { Logger } from '@sluice/telemetry';

/** The gRPC status of each error code; a code not listed is INTERNAL. */
const STATUS_BY_CODE: Partial<Record<SluiceErrorCode, GrpcStatus>> = {
  [SluiceErrorCode.NotFound]: GrpcStatus.NOT_FOUND,
  [SluiceErrorCode.InvalidArgument]: GrpcStatus.INVALID_ARGUMENT,
  [SluiceErrorCode.ConfigInvalid]: GrpcStatus.INVALID_ARGUMENT,
  [SluiceErrorCode.ProtocolMalformed]: GrpcStatus.INVALID_ARGUMENT,
  [SluiceErrorCode.IllegalTransition]: GrpcStatus.FAILED_PRECONDITION,
  [SluiceErrorCode.SelfApproval]: GrpcStatus.PERMISSION_DENIED,
  [SluiceErrorCode.NotAnApprover]: GrpcStatus.PERMISSION_DENIED,
  [SluiceErrorCode.NotAnAuditReader]: GrpcStatus.PERMISSION_DENIED,
  [SluiceErrorCode.PolicyDenied]: GrpcStatus.PERMISSION_DENIED,
  [SluiceErrorCode.TokenInvalid]: GrpcStatus.UNAUTHENTICATED,
  [SluiceErrorCode.TokenExpired]: GrpcStatus.UNAUTHENTICATED,
  [SluiceErrorCode.LimitExceeded]: GrpcStatus.RESOURCE_EXHAUSTED,
  [SluiceErrorCode.TooManyConnections]: GrpcStatus.RESOURCE_EXHAUSTED,
  [SluiceErrorCode.PolicyUnavailable]: GrpcStatus.UNAVAILABLE,
  [SluiceErrorCode.ApprovalUnavailable]: GrpcStatus.UNAVAILABLE,
  [SluiceErrorCode.MaskingUnavailable]: GrpcStatus.UNAVAILABLE,
  [SluiceErrorCode.AuditUnavailable]: GrpcStatus.UNAVAILABLE,
  [SluiceErrorCode.UpstreamFailed]: GrpcStatus.UNAVAILABLE,
};

export interface GrpcErrorOptions {
  /** Where the internal detail goes: every error is logged with its cause before it is answered. */
  readonly logger: Pick<Logger, 'error' | 'warn'>;
  /** What the call was doing, for the log line. */
  readonly during: string;
  /**
   * How an error Sluice did not raise on purpose is answered (default INTERNAL): an approval
   * service whose bus is down answers UNAVAILABLE, so the proxy retries and denies meanwhile.
   */
  readonly unexpected?: { readonly status: GrpcStatus; readonly code: SluiceErrorCode };
}

/**
 * The one error boundary of every gRPC service: an error becomes a status whose details are
 * `<code>: <public text>`. The error's own message reaches the peer only when the error is marked
 * `expose`; anything else (stack, cause, SQL, a dependency's text) is logged, never sent.
 */
export const toGrpcError = (error: unknown, options: GrpcErrorOptions): ServerErrorResponse => {
  if (!(error instanceof SluiceError)) {
    options.logger.error({ err: error }, `${options.during} failed`);
    const { status, code } = options.unexpected ?? { status: GrpcStatus.INTERNAL, code: SluiceErrorCode.Internal };
    return statusError(status, code, PUBLIC_ERROR_TEXT[code]);
  }
  const { code, message } = publicErrorOf(error);
  const status = STATUS_BY_CODE[code] ?? GrpcStatus.INTERNAL;
  if (status === GrpcStatus.INTERNAL || status === GrpcStatus.UNAVAILABLE) options.logger.warn({ err: error, code }, `${options.during} failed`);
  return statusError(status, code, message);
};

/** The gRPC error for a request a handler refuses itself; `message` is written for the caller. */
export const invalidArgument = (message: string): ServerErrorResponse => statusError(GrpcStatus.INVALID_ARGUMENT, SluiceErrorCode.InvalidArgument, message);

const statusError = (status: GrpcStatus, code: SluiceErrorCode, message: string): ServerErrorResponse => {
  const details = `${code}: ${message}`;
  return Object.assign(new Error(details), { code: status, details });
};
