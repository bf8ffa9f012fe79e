// `npm start`: build when a package is not built or changed since (build-freshness.mjs), then `sluice demo` on the example config: it seeds the demo world
// (database shop, Redis keys, a billing API, the dev issuer) and runs every service. With
// SLUICE_CONFIG set it runs `sluice up` on that file instead, and seeds nothing.
// Ctrl-C or SIGTERM stops everything in order; so does the death of npm itself.
import { spawnSync, spawn } from 'node:child_process';
import { staleBuild } from './build-freshness.mjs';

const root = new URL('..', import.meta.url).pathname;
const stale = staleBuild(root);
if (stale !== undefined) {
  process.stderr.write(`sluice: building first (${stale})\n`);
  const build = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' });
  if (build.status !== 0) process.exit(build.status ?? 1);
}
// `npm start -- --config FILE [--key-prefix P]` runs the demo on another config (the tests do).
const extra = process.argv.slice(2);
const args = process.env.SLUICE_CONFIG
  ? ['up', '--config', process.env.SLUICE_CONFIG]
  : ['demo', ...(extra.includes('--config') ? [] : ['--config', `${root}deploy/sluice.example.yaml`]), ...extra];
// The IPC channel tells the child when this process is gone, however it went. npm runs us in the
// package folder, so .sluice/ (runtime info, demo secrets, dev issuer key) lands where the CLI looks.
const child = spawn(process.execPath, [`${root}cli/bin/sluice.js`, ...args], { cwd: process.cwd(), stdio: ['inherit', 'inherit', 'inherit', 'ipc'] });

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  // One SIGTERM: a terminal's Ctrl-C already reached the child too, and it stops once either way.
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
};
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, stop);
// npm does not pass a kill on to us (and the shell it runs us through outlives it): when npm goes,
// stop as if told to. The CLI's own watch, built above.
const { stopWhenLauncherExits } = await import(`${root}cli/dist/launcher-watch.js`);
stopWhenLauncherExits(stop);
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
