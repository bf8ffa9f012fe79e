import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
// @ts-expect-error: a plain .mjs script of the repository, without types
import { packagesOf, staleBuild } from '../scripts/build-freshness.mjs';

/** A repository of three packages, each built at t=2000 from sources of t=1000. */
const repository = (): string => {
  const root = mkdtempSync(join(tmpdir(), 'sluice-freshness-'));
  const file = (path: string, seconds: number): void => {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), '');
    utimesSync(join(root, path), seconds, seconds);
  };
  for (const dir of ['libs/proto', 'services/proxy', 'cli']) {
    file(`${dir}/tsconfig.json`, 1000);
    file(`${dir}/src/index.ts`, 1000);
    file(`${dir}/dist/tsconfig.tsbuildinfo`, 2000);
  }
  file('proto/sluice/policy.proto', 1000);
  return root;
};

describe('npm start: whether to build first', () => {
  const roots: string[] = [];
  afterEach(() => {
    for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
  });
  const fresh = (): string => {
    const root = repository();
    roots.push(root);
    return root;
  };
  const touch = (root: string, path: string, seconds: number): void => {
    writeFileSync(join(root, path), 'changed');
    utimesSync(join(root, path), seconds, seconds);
  };

  it('finds every package, and builds nothing when each build is newer than its sources', () => {
    const root = fresh();
    expect(packagesOf(root)).toEqual(['libs/proto', 'services/proxy', 'cli']);
    expect(staleBuild(root)).toBeUndefined();
  });

  it('builds when a package was never built, or a source, its tsconfig or proto/ changed after its build (a git pull)', () => {
    const unbuilt = fresh();
    rmSync(join(unbuilt, 'cli/dist'), { recursive: true });
    expect(staleBuild(unbuilt)).toBe('cli is not built');
    const edited = fresh();
    touch(edited, 'services/proxy/src/index.ts', 3000);
    expect(staleBuild(edited)).toBe('services/proxy changed since it was built');
    const configured = fresh();
    touch(configured, 'cli/tsconfig.json', 3000);
    expect(staleBuild(configured)).toBe('cli changed since it was built');
    const protocol = fresh();
    touch(protocol, 'proto/sluice/policy.proto', 3000);
    expect(staleBuild(protocol)).toBe('libs/proto changed since it was built');
  });

  it('does not build for a changed spec, which the build leaves out (its build info would never catch up)', () => {
    const root = fresh();
    writeFileSync(join(root, 'services/proxy/src/index.spec.ts'), '');
    utimesSync(join(root, 'services/proxy/src/index.spec.ts'), 3000, 3000);
    expect(staleBuild(root)).toBeUndefined();
  });
});
