import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = new URL('../../../', import.meta.url).pathname;

interface Workspace {
  readonly name: string;
  readonly dir: string;
  readonly tags: readonly string[];
  readonly internalDeps: readonly string[];
}

const workspaces: Workspace[] = ['libs', 'services']
  .flatMap((group) => readdirSync(join(root, group)).map((name) => join(group, name)))
  .concat(['cli'])
  .filter((dir) => existsSync(join(root, dir, 'package.json')))
  .map((dir) => {
    const manifest = JSON.parse(readFileSync(join(root, dir, 'package.json'), 'utf8')) as {
      name: string;
      dependencies?: Record<string, string>;
      nx?: { tags?: string[] };
    };
    return {
      name: manifest.name,
      dir,
      tags: manifest.nx?.tags ?? [],
      internalDeps: Object.keys(manifest.dependencies ?? {}).filter((dep) => dep.startsWith('@sluice/')),
    };
  });
const byName = new Map(workspaces.map((workspace) => [workspace.name, workspace]));
const typeOf = (name: string) => byName.get(name)?.tags.find((tag) => tag.startsWith('type:'));

describe('the dependency direction the folders promise', () => {
  it('tags every workspace with its type', () => {
    for (const workspace of workspaces) expect(typeOf(workspace.name), workspace.dir).toBeDefined();
  });

  it('keeps libs free of services and the CLI', () => {
    for (const workspace of workspaces.filter((candidate) => ['type:lib', 'type:codec'].includes(typeOf(candidate.name)!))) {
      for (const dep of workspace.internalDeps) expect(['type:lib', 'type:codec'], `${workspace.name} -> ${dep}`).toContain(typeOf(dep));
    }
  });

  it('lets codecs depend on codecs only', () => {
    for (const workspace of workspaces.filter((candidate) => typeOf(candidate.name) === 'type:codec')) {
      for (const dep of workspace.internalDeps) expect(typeOf(dep), `${workspace.name} -> ${dep}`).toBe('type:codec');
    }
  });

  it('keeps contracts free of every other workspace', () => {
    expect(byName.get('@sluice/contracts')!.internalDeps).toEqual([]);
  });

  it('never lets a service import another service', () => {
    for (const workspace of workspaces.filter((candidate) => typeOf(candidate.name) === 'type:service')) {
      for (const dep of workspace.internalDeps) expect(typeOf(dep), `${workspace.name} -> ${dep}`).not.toBe('type:service');
    }
  });
});
