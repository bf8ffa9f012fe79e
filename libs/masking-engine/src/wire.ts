import type { MaskingConfig } from '@sluice/config';
import { SluiceError, SluiceErrorCode } from '@sluice/contracts';

/**
 * The masking config as the masking service streams it to the proxy (WatchProfiles
 * `masking_config_json`): the config's masking section with `hashKey` replaced by the resolved key,
 * so that both sides hash alike.
 */
export interface MaskingSnapshot {
  readonly config: MaskingConfig;
  readonly hashKey: string;
}

export class MaskingSnapshotInvalidError extends SluiceError {
  readonly code = SluiceErrorCode.MaskingSnapshotInvalid;
}

export const encodeMaskingSnapshot = ({ config, hashKey }: MaskingSnapshot): string => JSON.stringify({ ...config, hashKey });

export const decodeMaskingSnapshot = (json: string): MaskingSnapshot => {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    throw new MaskingSnapshotInvalidError('masking config is not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null) throw new MaskingSnapshotInvalidError('masking config is not an object');
  const { hashKey, ...config } = parsed as Record<string, unknown>;
  if (typeof hashKey !== 'string' || hashKey.length === 0) throw new MaskingSnapshotInvalidError('masking config carries no hash key');
  if (typeof config.defaultRegion !== 'string' || !Array.isArray(config.detectors) || typeof config.profiles !== 'object' || config.profiles === null) {
    throw new MaskingSnapshotInvalidError('masking config lacks defaultRegion, detectors or profiles');
  }
  return { config: config as unknown as MaskingConfig, hashKey };
};
