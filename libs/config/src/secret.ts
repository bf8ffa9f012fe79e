import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { SluiceError, SluiceErrorCode } from '@sluice/contracts';

/** A secret is never literal in the config: it names an environment variable or a file. */
export type SecretRef =
  | { readonly env: string; readonly prefix?: string }
  | { readonly file: string; readonly prefix?: string };

export class SecretUnavailableError extends SluiceError {
  readonly code = SluiceErrorCode.SecretUnavailable;
  constructor(readonly ref: SecretRef) {
    super('env' in ref ? `environment variable ${ref.env} is not set` : `secret file ${ref.file} cannot be read`);
  }
}

/** Reads a secret now; undefined when the variable is unset or the file missing. */
export const readSecret = (ref: SecretRef | undefined, baseDir = process.cwd()): string | undefined => {
  if (!ref) return undefined;
  let value: string | undefined;
  if ('env' in ref) value = process.env[ref.env];
  else {
    try {
      value = readFileSync(resolve(baseDir, ref.file), 'utf8').replace(/\r?\n$/, '');
    } catch {
      value = undefined;
    }
  }
  return value === undefined ? undefined : (ref.prefix ?? '') + value;
};

/** Like readSecret, but a missing secret is an error naming where it was looked for. */
export const requireSecret = (ref: SecretRef, baseDir = process.cwd()): string => {
  const value = readSecret(ref, baseDir);
  if (value === undefined) throw new SecretUnavailableError(ref);
  return value;
};
