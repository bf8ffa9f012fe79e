import { describe, expect, it } from 'vitest';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { ConfigInvalidError, DependencyUnavailableError, PUBLIC_ERROR_TEXT, SluiceError, SluiceErrorCode, TokenInvalidError, UpstreamFailedError } from '@sluice/contracts';
import { invalidArgument, toGrpcError } from './grpc-status.js';

/** A not-found whose message names internals (as a store's error might). */
class NotFoundSample extends SluiceError {
  readonly code = SluiceErrorCode.NotFound;
}

const logged: unknown[] = [];
const logger = { error: (fields: unknown) => void logged.push(fields), warn: (fields: unknown) => void logged.push(fields) };

describe('toGrpcError', () => {
  it('never sends an internal message to the peer: the code and its fixed text go, the detail is logged', () => {
    logged.length = 0;
    const secret = 'password authentication failed for user "svc" at 10.0.0.5';
    const error = toGrpcError(new UpstreamFailedError(secret), { logger, during: 'decide' });
    expect(error.code).toBe(GrpcStatus.UNAVAILABLE);
    expect(error.details).toBe(`${SluiceErrorCode.UpstreamFailed}: ${PUBLIC_ERROR_TEXT[SluiceErrorCode.UpstreamFailed]}`);
    expect(JSON.stringify(error)).not.toContain('10.0.0.5');
    expect(error.message).not.toContain('10.0.0.5');
    expect((logged[0] as { err: Error }).err.message).toContain('10.0.0.5');
  });

  it('answers an error Sluice did not raise on purpose as INTERNAL (or the given status), its text logged only', () => {
    logged.length = 0;
    const error = toGrpcError(new TypeError("Cannot read properties of undefined (reading 'sql')"), { logger, during: 'decide' });
    expect(error).toMatchObject({ code: GrpcStatus.INTERNAL, details: `${SluiceErrorCode.Internal}: ${PUBLIC_ERROR_TEXT[SluiceErrorCode.Internal]}` });
    expect(error.details).not.toContain('reading');
    expect(logged).toHaveLength(1);
    const unavailable = toGrpcError(new Error('nats: timeout'), {
      logger,
      during: 'approve',
      unexpected: { status: GrpcStatus.UNAVAILABLE, code: SluiceErrorCode.ApprovalUnavailable },
    });
    expect(unavailable).toMatchObject({ code: GrpcStatus.UNAVAILABLE, details: `${SluiceErrorCode.ApprovalUnavailable}: ${PUBLIC_ERROR_TEXT[SluiceErrorCode.ApprovalUnavailable]}` });
  });

  it('sends the message of an error marked expose, and maps codes to statuses', () => {
    expect(toGrpcError(new TokenInvalidError('the token has no sub'), { logger, during: 'x' })).toMatchObject({
      code: GrpcStatus.UNAUTHENTICATED,
      details: `${SluiceErrorCode.TokenInvalid}: the token has no sub`,
    });
    expect(toGrpcError(new ConfigInvalidError('rules[0].effect', 'one of allow, deny, approve'), { logger, during: 'x' }).code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(toGrpcError(new DependencyUnavailableError(SluiceErrorCode.PolicyUnavailable, 'socket hang up'), { logger, during: 'x' })).toMatchObject({
      code: GrpcStatus.UNAVAILABLE,
      details: `${SluiceErrorCode.PolicyUnavailable}: ${PUBLIC_ERROR_TEXT[SluiceErrorCode.PolicyUnavailable]}`,
    });
    expect(toGrpcError(new NotFoundSample('approval a-1 (row 17 of approvals_v2)'), { logger, during: 'x' })).toMatchObject({
      code: GrpcStatus.NOT_FOUND,
      details: `${SluiceErrorCode.NotFound}: ${PUBLIC_ERROR_TEXT[SluiceErrorCode.NotFound]}`,
    });
  });

  it('answers a refused request with its own (caller-facing) text', () => {
    expect(invalidArgument('one of sql, redis or http is required')).toMatchObject({
      code: GrpcStatus.INVALID_ARGUMENT,
      details: `${SluiceErrorCode.InvalidArgument}: one of sql, redis or http is required`,
    });
  });
});
