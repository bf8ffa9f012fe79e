// Writes each workspace's tsconfig.json from its package.json dependencies, so project
// references always follow the dependency graph.
import { readFileSync, writeFileSync, readdirSync, existsSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const dirs = ['libs', 'services'].flatMap((d) => readdirSync(join(root, d)).map((n) => join(d, n))).concat(['cli']);
const byName = new Map();
for (const dir of dirs) {
  const file = join(root, dir, 'package.json');
  if (!existsSync(file)) continue;
  byName.set(JSON.parse(readFileSync(file, 'utf8')).name, dir);
}
for (const [name, dir] of byName) {
  const pkg = JSON.parse(readFileSync(join(root, dir, 'package.json'), 'utf8'));
  if (pkg.exports) pkg.exports['.'] = { types: './dist/index.d.ts', development: './src/index.ts', default: './dist/index.js' };
  writeFileSync(join(root, dir, 'package.json'), JSON.stringify(pkg, null, 2) + '\n');
  const refs = Object.keys(pkg.dependencies ?? {}).filter((d) => byName.has(d)).map((d) => ({ path: relative(dir, byName.get(d)) }));
  const tsconfig = {
    extends: relative(dir, 'tsconfig.base.json'),
    compilerOptions: { rootDir: 'src', outDir: 'dist', tsBuildInfoFile: 'dist/tsconfig.tsbuildinfo' },
    include: ['src/**/*.ts'],
    exclude: ['src/**/*.spec.ts'],
    references: refs,
  };
  writeFileSync(join(root, dir, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2) + '\n');
}
writeFileSync(join(root, 'tsconfig.build.json'), JSON.stringify({ files: [], references: [...byName.values()].map((p) => ({ path: p })) }, null, 2) + '\n');
