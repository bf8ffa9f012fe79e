// `npm start`: build when needed, then run every service on the example config.
import { spawnSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

const root = new URL('..', import.meta.url).pathname;
const built = ['cli', 'services/proxy', 'services/policy', 'services/masking', 'services/approval', 'services/audit'].every((dir) =>
  existsSync(`${root}${dir}/dist`),
);
if (!built) {
  const build = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' });
  if (build.status !== 0) process.exit(build.status ?? 1);
}
const config = process.env.SLUICE_CONFIG ?? `${root}deploy/sluice.example.yaml`;
const child = spawn(process.execPath, [`${root}cli/bin/sluice.js`, 'up', '--config', config], { cwd: root, stdio: 'inherit' });
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('exit', (code) => process.exit(code ?? 0));
