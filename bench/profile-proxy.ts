/**
 * A CPU profile of every Sluice process while one agent runs N sequential statements:
 *   npx tsx --conditions=development bench/profile-proxy.ts [--statements 3000] [--dir /tmp/sluice-prof]
 * Prints the proxy's top functions by self time; the .cpuprofile files open in Chrome DevTools.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startTestIssuer } from '../test/support/oidc.js';
import { freePort } from '../test/support/ports.js';
import { startSluice } from '../test/support/sluice.js';

const { values } = parseArgs({ options: { statements: { type: 'string', default: '3000' }, dir: { type: 'string', default: '/tmp/sluice-prof' } } });
const statements = Number(values.statements);
const dir = values.dir!;
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const topFunctions = (profile: Profile, count = 25): string[] => {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map<string, number>();
  profile.samples.forEach((id, index) => {
    const frame = byId.get(id)!.callFrame;
    const key = `${frame.functionName || '(anonymous)'} ${frame.url.replace(/^.*\/(node_modules|work\/main)\//, '')}:${frame.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + (profile.timeDeltas[index] ?? 0));
  });
  const total = [...self.values()].reduce((sum, value) => sum + value, 0);
  return [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([key, micros]) => `${((100 * micros) / total).toFixed(1).padStart(5)}%  ${key}`);
};

const idp = await startTestIssuer();
const port = await freePort();
const sluice = await startSluice(
  {
    identity: { oidc: [{ issuer: idp.issuer, audience: 'sluice' }] },
    eventStore: { url: 'postgres://postgres@127.0.0.1:5432/sluice_profile' },
    bus: { url: 'nats://127.0.0.1:4222', stream: 'SLUICE_PROFILE', subjectPrefix: 'profile.events' },
    resources: [{ name: 'db', type: 'postgres', listen: `127.0.0.1:${port}`, target: { host: '127.0.0.1', database: 'postgres' }, credentials: { username: 'postgres' } }],
    masking: { profiles: { pii: { detectors: ['credit_card', 'email', 'phone', 'us_ssn', 'iban', 'ipv4', 'jwt', 'secret'] } } },
    rules: [{ name: 'readers', effect: 'allow', actions: ['read'], mask: 'pii' }],
  },
  { env: { LOG_LEVEL: 'warn' }, nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}`] },
);
const client = new pg.Client({ host: '127.0.0.1', port, user: 'bench', database: 'x', password: await idp.mint({ sub: 'bench', expiresIn: 3600 }) });
await client.connect();
const started = process.hrtime.bigint();
for (let index = 0; index < statements; index++) await client.query(process.env.PROFILE_SQL ?? `SELECT ${index % 100} AS n, 'someone@example.com' AS email`);
const elapsedMs = Number(process.hrtime.bigint() - started) / 1e6;
await client.end();
await sluice.stop();
await idp.close();
console.log(`${statements} statements in ${elapsedMs.toFixed(0)} ms (${((1000 * elapsedMs) / statements).toFixed(0)} µs each)`);
for (const file of readdirSync(dir).filter((name) => name.endsWith('.cpuprofile'))) {
  const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Profile;
  const urls = new Set(profile.nodes.map((node) => node.callFrame.url));
  if (![...urls].some((url) => url.includes('services/proxy/'))) continue;
  console.log(`\nproxy profile ${file}:`);
  for (const line of topFunctions(profile)) console.log(line);
}
