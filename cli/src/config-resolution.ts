import { existsSync, readFileSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig, parseConfig, type SluiceConfig } from '@sluice/config';
import { SluiceError, SluiceErrorCode } from '@sluice/contracts';

/** Written by `sluice up` so later CLI commands in the same folder find the running deployment. */
export const RUNTIME_FILE = join('.sluice', 'runtime.json');

export interface RuntimeInfo {
  readonly configPath: string;
  readonly pid: number;
  readonly startedAt: string;
}

export const writeRuntimeInfo = (info: RuntimeInfo, cwd = process.cwd()): void => {
  mkdirSync(join(cwd, '.sluice'), { recursive: true });
  writeFileSync(join(cwd, RUNTIME_FILE), JSON.stringify(info, null, 2) + '\n');
};

export const removeRuntimeInfo = (cwd = process.cwd()): void => rmSync(join(cwd, RUNTIME_FILE), { force: true });

/** A CLI command that talks to a deployment found none: no --config, no runtime file here. */
export class NoDeploymentError extends SluiceError {
  readonly code = SluiceErrorCode.NoDeployment;
  override readonly expose = true;
  constructor() {
    super('no running deployment found in this folder: pass --config FILE or --url URL, or run the command in the folder where `sluice up` (or `npm start`) runs');
  }
}

export interface ResolvedCliConfig {
  readonly config: SluiceConfig;
  /** Where it came from: a file path, or `defaults`. */
  readonly source: string;
  readonly configDir: string;
}

/**
 * The config a CLI command (audit, replay, approvals) works against: `--config FILE`, else
 * $SLUICE_CONFIG, else the config of the `sluice up` running from this folder, else (only when
 * DATABASE_URL names the event store to read) the defaults; with none of them there is nothing to
 * talk to, and guessing loopback defaults would answer from an empty store as if all were well.
 */
export const resolveCliConfig = (argv: readonly string[], cwd = process.cwd()): ResolvedCliConfig => {
  const { values } = parseArgs({ args: [...argv], options: { config: { type: 'string', short: 'c' } }, strict: false, allowPositionals: true });
  const explicit = (values.config as string | undefined) ?? process.env.SLUICE_CONFIG;
  if (explicit) {
    const loaded = loadConfig(explicit);
    return { config: loaded.config, source: loaded.path, configDir: loaded.dir };
  }
  const runtimeFile = join(cwd, RUNTIME_FILE);
  if (existsSync(runtimeFile)) {
    try {
      const info = JSON.parse(readFileSync(runtimeFile, 'utf8')) as RuntimeInfo;
      if (existsSync(info.configPath)) {
        const loaded = loadConfig(info.configPath);
        return { config: loaded.config, source: loaded.path, configDir: loaded.dir };
      }
    } catch {
      // A stale or unreadable runtime file falls through to the defaults.
    }
  }
  if (!process.env.DATABASE_URL) throw new NoDeploymentError();
  return { config: parseConfig({}), source: 'defaults', configDir: resolve(cwd) };
};
