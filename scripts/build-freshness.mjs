// Whether `npm start` must build first: a package never built, or one whose sources changed after
// its last build (a `git pull`, an edit), which would otherwise run as the old code.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The newest modification time of the files under `path` that a build reads: specs are not built,
 * and a build that has nothing to do leaves its build info as it was.
 */
const newestIn = (path) => {
  if (!existsSync(path)) return 0;
  const stat = statSync(path);
  if (!stat.isDirectory()) return path.endsWith('.spec.ts') ? 0 : stat.mtimeMs;
  let newest = 0;
  for (const entry of readdirSync(path)) newest = Math.max(newest, newestIn(join(path, entry)));
  return newest;
};

/** Every TypeScript package of the repository at `root`: libs/*, services/* and cli. */
export const packagesOf = (root) =>
  [...['libs', 'services'].flatMap((group) => readdirSync(join(root, group)).map((name) => `${group}/${name}`)), 'cli'].filter((dir) =>
    existsSync(join(root, dir, 'tsconfig.json')),
  );

/**
 * Why the build at `root` is out of date (the first package found never built or changed since),
 * or undefined when every package's build is newer than its sources: its src/ and tsconfig.json,
 * and proto/ for libs/proto, which the build generates from it.
 */
export const staleBuild = (root) => {
  for (const dir of packagesOf(root)) {
    const buildInfo = join(root, dir, 'dist', 'tsconfig.tsbuildinfo');
    if (!existsSync(buildInfo)) return `${dir} is not built`;
    const sources = [join(root, dir, 'src'), join(root, dir, 'tsconfig.json'), ...(dir === 'libs/proto' ? [join(root, 'proto')] : [])];
    if (Math.max(...sources.map(newestIn)) > statSync(buildInfo).mtimeMs) return `${dir} changed since it was built`;
  }
  return undefined;
};
