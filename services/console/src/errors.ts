/** Codes of the console's own refusals (its edge is a browser: they become a page, never a stack). */
export const ConsoleErrorCode = {
  SignInFailed: 'ERR_CONSOLE_SIGN_IN',
  Csrf: 'ERR_CONSOLE_CSRF',
  Backend: 'ERR_CONSOLE_BACKEND',
  MalformedPath: 'ERR_CONSOLE_MALFORMED_PATH',
} as const;
export type ConsoleErrorCode = (typeof ConsoleErrorCode)[keyof typeof ConsoleErrorCode];

export abstract class ConsoleError extends Error {
  abstract readonly code: ConsoleErrorCode;
  abstract readonly status: number;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
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
