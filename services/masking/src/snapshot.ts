import { randomBytes } from 'node:crypto';
import { readSecret, SecretUnavailableError, type LoadedConfig } from '@sluice/config';
import { compileMasking, encodeMaskingSnapshot, type CompiledMasking } from '@sluice/masking-engine';

/** One version of the masking profiles, as served to watchers and used by MaskValues. */
export interface ProfilesVersion {
  readonly version: bigint;
  readonly json: string;
  readonly compiled: CompiledMasking;
}

export type HashKeySource = 'config' | 'generated';

/**
 * Resolves the hash key: the configured secret, or the key generated at service start when none
 * is configured. A configured key that cannot be read is an error: silently falling back to a
 * random key would change every hash the agents join on.
 */
export const resolveHashKey = (loaded: LoadedConfig, generated: string): { readonly key: string; readonly source: HashKeySource } => {
  const ref = loaded.config.masking.hashKey;
  if (!ref) return { key: generated, source: 'generated' };
  const key = readSecret(ref, loaded.dir);
  if (key === undefined || key === '') throw new SecretUnavailableError(ref);
  return { key, source: 'config' };
};

export const generateHashKey = (): string => randomBytes(32).toString('hex');

/** Builds a version: compiling here also proves the config compiles before anyone is sent it. */
export const buildVersion = (loaded: LoadedConfig, hashKey: string, version: bigint): ProfilesVersion => {
  const config = loaded.config.masking;
  return {
    version,
    json: encodeMaskingSnapshot({ config, hashKey }),
    compiled: compileMasking(config, { hashKey }),
  };
};
