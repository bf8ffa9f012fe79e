import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import type { z } from 'zod';
import { ConfigInvalidError } from '@sluice/contracts';
import { configSchema, DETECTOR_NAMES, type SluiceConfig } from './schema.js';

export interface LoadedConfig {
  readonly config: SluiceConfig;
  /** Absolute path of the file, and its folder (relative secret files resolve against it). */
  readonly path: string;
  readonly dir: string;
}

const formatPath = (path: readonly PropertyKey[]): string =>
  path.reduce<string>((text, key) => (typeof key === 'number' ? `${text}[${key}]` : text ? `${text}.${String(key)}` : String(key)), '');

/** The value at an issue's path in the document (zod 4 issues do not carry their input). */
const valueAt = (document: unknown, path: readonly PropertyKey[]): unknown =>
  path.reduce<unknown>((value, key) => (value !== null && typeof value === 'object' ? (value as Record<PropertyKey, unknown>)[key] : undefined), document);

/** zod's own wording starts "Invalid input"; a message the schema set says what was expected. */
const isCustomMessage = (message: string): boolean => !/^Invalid input/.test(message);

const describeIssue = (issue: z.core.$ZodIssue, document: unknown): string => {
  if (issue.code === 'unrecognized_keys') return `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.join(', ')}`;
  const detail = isCustomMessage(issue.message) ? issue.message : issue.code === 'invalid_type' ? `expected ${issue.expected}` : undefined;
  if (valueAt(document, issue.path) === undefined) return detail ? `required, ${detail}` : 'required';
  return detail ?? issue.message;
};

/** Edits (insert, delete, replace) from one key to another: a misspelt key is a few edits away. */
const editDistance = (from: string, to: string): number => {
  let previous = Array.from({ length: to.length + 1 }, (_, index) => index);
  for (let i = 1; i <= from.length; i++) {
    const current = [i];
    for (let j = 1; j <= to.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (from[i - 1] === to[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[to.length]!;
};

const samePath = (a: readonly PropertyKey[], b: readonly PropertyKey[]): boolean => a.length === b.length && a.every((key, index) => key === b[index]);

/**
 * A misspelt required key gives two issues: the key the user wrote is unknown, and the one meant
 * is missing. The first alone ("rules[0].effect: expected one of …") names a key that is not in
 * the file; the user's own spelling, with the key it should be, is what they can find and fix.
 */
const misspeltKey = (issues: readonly z.core.$ZodIssue[], document: unknown): { path: PropertyKey[]; message: string } | undefined => {
  const first = issues[0]!;
  const meant = first.path.at(-1);
  if (first.code === 'unrecognized_keys' || typeof meant !== 'string' || valueAt(document, first.path) !== undefined) return undefined;
  const parent = first.path.slice(0, -1);
  const unknown = issues.find((issue): issue is z.core.$ZodIssueUnrecognizedKeys => issue.code === 'unrecognized_keys' && samePath(issue.path, parent));
  if (unknown === undefined) return undefined;
  const [closest] = [...unknown.keys].sort((a, b) => editDistance(a, meant) - editDistance(b, meant));
  const similar = editDistance(closest!, meant) <= Math.max(2, Math.floor(meant.length / 3));
  return {
    path: [...parent, closest!],
    message: similar ? `unknown key ${closest}, did you mean ${meant}?` : `unknown key ${closest} (and ${meant} is ${describeIssue(first, document)})`,
  };
};

/** Validates a parsed document; the first problem becomes a ConfigInvalidError naming its key path. */
export const parseConfig = (document: unknown): SluiceConfig => {
  const result = configSchema.safeParse(document ?? {});
  if (!result.success) {
    const misspelt = misspeltKey(result.error.issues, document);
    if (misspelt) throw new ConfigInvalidError(formatPath(misspelt.path), misspelt.message);
    const issue = result.error.issues[0]!;
    const path = issue.code === 'unrecognized_keys' && issue.keys.length === 1 ? [...issue.path, issue.keys[0]!] : issue.path;
    throw new ConfigInvalidError(formatPath(path), describeIssue(issue, document));
  }
  checkReferences(result.data);
  return applyEnvironment(result.data);
};

/** Cross-references the schema alone cannot check: names that must exist and be unique. */
const checkReferences = (config: SluiceConfig): void => {
  const resourceNames = new Map<string, number>();
  const listeners = new Map<string, number>();
  config.resources.forEach((resource, index) => {
    if (resourceNames.has(resource.name)) {
      throw new ConfigInvalidError(`resources[${index}].name`, `duplicate resource name "${resource.name}"`);
    }
    resourceNames.set(resource.name, index);
    if (listeners.has(resource.listen)) {
      throw new ConfigInvalidError(`resources[${index}].listen`, `address ${resource.listen} is already used by resources[${listeners.get(resource.listen)}]`);
    }
    listeners.set(resource.listen, index);
  });
  const customDetectors = new Set(config.masking.detectors.map((detector) => detector.name));
  config.masking.detectors.forEach((detector, index) => {
    try {
      new RegExp(detector.pattern.replace(/^\(\?i\)/, ''), 'u');
    } catch (error) {
      throw new ConfigInvalidError(`masking.detectors[${index}].pattern`, `a valid regular expression (${(error as Error).message})`);
    }
  });
  for (const [name, profile] of Object.entries(config.masking.profiles)) {
    profile.detectors.forEach((detector, index) => {
      if (!(DETECTOR_NAMES as readonly string[]).includes(detector) && !customDetectors.has(detector)) {
        throw new ConfigInvalidError(
          `masking.profiles.${name}.detectors[${index}]`,
          `one of ${DETECTOR_NAMES.join(', ')} or a custom detector name, got "${detector}"`,
        );
      }
    });
    profile.columns.forEach((column, index) => {
      if (!column.match && !column.column) {
        throw new ConfigInvalidError(`masking.profiles.${name}.columns[${index}]`, 'expected match (a column-name regex) or column (schema.table.column)');
      }
      if (column.match) {
        try {
          new RegExp(column.match.replace(/^\(\?i\)/, ''));
        } catch (error) {
          throw new ConfigInvalidError(`masking.profiles.${name}.columns[${index}].match`, `a valid regular expression (${(error as Error).message})`);
        }
      }
    });
  }
  const issuers = new Set<string>();
  config.identity.oidc.forEach((entry, index) => {
    // Tokens are matched to an entry by their exact `iss`: a second entry for the same issuer (its
    // own audience or groupsClaim) would never be used.
    if (issuers.has(entry.issuer)) throw new ConfigInvalidError(`identity.oidc[${index}].issuer`, `an issuer not listed before, got "${entry.issuer}" again`);
    issuers.add(entry.issuer);
  });
  const checkIssuers = (key: string, issuer: string | readonly string[] | undefined): void => {
    [issuer ?? []].flat().forEach((name, issuerIndex) => {
      if (!issuers.has(name)) {
        const at = typeof issuer === 'string' ? key : `${key}[${issuerIndex}]`;
        throw new ConfigInvalidError(at, `the issuer of an identity.oidc entry (${[...issuers].join(', ') || 'none configured'}), got "${name}"`);
      }
    });
  };
  checkIssuers('audit.readers.issuer', config.audit.readers.issuer);
  for (const [user, mapped] of Object.entries(config.approval.slack?.users ?? {})) checkIssuers(`approval.slack.users.${user}.issuer`, mapped.issuer);
  const ruleNames = new Map<string, number>();
  config.rules.forEach((rule, index) => {
    if (ruleNames.has(rule.name)) {
      throw new ConfigInvalidError(`rules[${index}].name`, `duplicate rule name "${rule.name}" (also rules[${ruleNames.get(rule.name)}])`);
    }
    ruleNames.set(rule.name, index);
    rule.resources?.forEach((name, resourceIndex) => {
      if (!resourceNames.has(name)) {
        throw new ConfigInvalidError(`rules[${index}].resources[${resourceIndex}]`, `the name of a resource, got "${name}"`);
      }
    });
    checkIssuers(`rules[${index}].subjects.issuer`, rule.subjects?.issuer);
    checkIssuers(`rules[${index}].approvers.issuer`, rule.approvers?.issuer);
    if (rule.mask !== undefined && !(rule.mask in config.masking.profiles)) {
      throw new ConfigInvalidError(`rules[${index}].mask`, `the name of a masking profile, got "${rule.mask}"`);
    }
  });
};

/** NATS_URL and DATABASE_URL override the file (CONTRACT §1). */
const applyEnvironment = (config: SluiceConfig): SluiceConfig => ({
  ...config,
  bus: { ...config.bus, url: process.env.NATS_URL || config.bus.url },
  eventStore: { ...config.eventStore, url: process.env.DATABASE_URL || config.eventStore.url },
});

export const loadConfig = (file: string): LoadedConfig => {
  const path = resolve(file);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new ConfigInvalidError(path, code === 'ENOENT' ? 'no such file' : `cannot be read (${code ?? 'unreadable'})`);
  }
  let document: unknown;
  try {
    // prettyErrors gives the error its line and column; its message then ends with them, said our way below.
    document = parseYaml(text, { prettyErrors: true });
  } catch (error) {
    if (error instanceof YAMLParseError) {
      const line = error.linePos?.[0];
      const reason = error.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
      throw new ConfigInvalidError(path, `not valid YAML${line ? ` (line ${line.line}, column ${line.col})` : ''}: ${reason}`);
    }
    throw error;
  }
  // An empty file parses as null: refuse it rather than start a gateway with nothing configured.
  if (document === null || document === undefined) throw new ConfigInvalidError(path, 'empty file');
  return { config: parseConfig(document), path, dir: dirname(path) };
};
