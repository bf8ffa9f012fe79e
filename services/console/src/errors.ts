import { SluiceError, SluiceErrorCode } from '@sluice/contracts';

/** Codes of the console's own refusals (its edge is a browser: they become a page, never a stack). */
export const ConsoleErrorCode = {
  SignInFailed: SluiceErrorCode.ConsoleSignIn,
  Csrf: SluiceErrorCode.ConsoleCsrf,
  Backend: SluiceErrorCode.ConsoleBackend,
  MalformedPath: SluiceErrorCode.ConsoleMalformedPath,
} as const;
export type ConsoleErrorCode = (typeof ConsoleErrorCode)[keyof typeof ConsoleErrorCode];

export abstract class ConsoleError extends SluiceError {
  abstract override readonly code: ConsoleErrorCode;
  abstract readonly status: number;
}

/** Sign-in failed (state, issuer answer, token): the message is safe to show. */
export class SignInError extends ConsoleError {
  readonly code = ConsoleErrorCode.SignInFailed;
  readonly status = 400;
}

/** A state-changing request without the session's CSRF token, or from another origin. */
export class CsrfError extends ConsoleError {
  readonly code = ConsoleErrorCode.Csrf;
  readonly status = 403;
}

/** The approval or audit API could not be reached or answered something unexpected. */
export class BackendError extends ConsoleError {
  readonly code = ConsoleErrorCode.Backend;
  readonly status = 502;
}

/** A path whose id is not valid percent-encoding: the caller's mistake, not the console failing. */
export class MalformedPathError extends ConsoleError {
  readonly code = ConsoleErrorCode.MalformedPath;
  readonly status = 400;
  constructor() {
    super('the address is not valid percent-encoding');
  }
}
