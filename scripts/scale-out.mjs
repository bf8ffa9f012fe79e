// `node scripts/scale-out.mjs --config FILE [--dir DIR] [--offset 100]`: two of everything on a
// three-node NATS cluster, on this host. It writes the deployment's keys once (`sluice keys`, so
// NATS logs every service in with its own nkey), starts three nats-server nodes in one JetStream
// cluster on 127.0.0.1:14222-14224 (routes 14248-14250), then two `sluice up` from FILE: A as
// written, B with every port FILE names (admin, services, resources) moved up by --offset and no
// console. Both use the bus as a list of the three nodes and an R3 stream. Ctrl-C stops it all.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect as connectTcp } from 'node:net';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { parse, stringify } from 'yaml';

const root = new URL('..', import.meta.url).pathname;
const sluiceBin = join(root, 'cli/bin/sluice.js');
const natsServer = process.env.NATS_SERVER_BIN ?? 'nats-server';
const { values } = parseArgs({ options: { config: { type: 'string' }, dir: { type: 'string', default: '.sluice-scale' }, offset: { type: 'string', default: '100' } } });
if (!values.config) {
  process.stderr.write('usage: node scripts/scale-out.mjs --config FILE [--dir DIR] [--offset 100]\n');
  process.exit(2);
}
const dir = resolve(values.dir);
const offset = Number(values.offset);
const config = parse(readFileSync(values.config, 'utf8'));
const stream = config.bus?.stream ?? 'SLUICE_EVENTS';
const prefix = config.bus?.subjectPrefix ?? 'sluice.events';
const keys = join(dir, 'keys');
mkdirSync(keys, { recursive: true });

const made = spawnSync(process.execPath, [sluiceBin, 'keys', '--out', keys, '--stream', stream, '--prefix', prefix], { stdio: ['ignore', 'ignore', 'inherit'] });
if (made.status !== 0) process.exit(made.status ?? 1);

const NODES = [0, 1, 2];
const clientPort = (node) => 14222 + node;
const routePort = (node) => 14248 + node;
const children = [];
const started = (name, child) => {
  children.push({ name, child });
  child.once('exit', (code, signal) => process.stderr.write(`scale-out: ${name} exited (${signal ?? code})\n`));
  return child;
};
for (const node of NODES) {
  const store = join(dir, `nats-${node}`);
  mkdirSync(store, { recursive: true });
  const file = join(dir, `nats-${node}.conf`);
  const routes = NODES.filter((other) => other !== node).map((other) => `nats://127.0.0.1:${routePort(other)}`);
  writeFileSync(
    file,
    [
      `server_name: n${node}`,
      `listen: 127.0.0.1:${clientPort(node)}`,
      `jetstream { store_dir: ${JSON.stringify(store)} }`,
      `cluster { name: sluice, listen: 127.0.0.1:${routePort(node)}, routes: [${routes.join(', ')}] }`,
      // nats-server resolves an include against the including file's folder.
      `include ${JSON.stringify(relative(dir, join(keys, 'nats-auth.conf')))}`,
    ].join('\n'),
  );
  started(`nats-${node}`, spawn(natsServer, ['-c', file], { stdio: ['ignore', 'ignore', 'inherit'] }));
}

// Every node listening before any service dials it; one that exits ends the run.
const listening = (port) =>
  new Promise((done) => {
    const socket = connectTcp(port, '127.0.0.1');
    socket.once('connect', () => (socket.destroy(), done(true)));
    socket.once('error', () => done(false));
  });
for (const node of NODES) {
  const { child } = children[node];
  for (let deadline = Date.now() + 15_000; !(await listening(clientPort(node))); ) {
    if (child.exitCode !== null || Date.now() > deadline) {
      process.stderr.write(`scale-out: nats-${node} did not start\n`);
      for (const { child: other } of children) other.kill('SIGTERM');
      process.exit(1);
    }
    await new Promise((done) => setTimeout(done, 200));
  }
}

const shift = (address) => {
  const at = address.lastIndexOf(':');
  return `${address.slice(0, at)}:${Number(address.slice(at + 1)) + offset}`;
};
const shiftUrl = (url) => {
  const parsed = new URL(url);
  parsed.port = String(Number(parsed.port) + offset);
  return parsed.toString().replace(/\/$/, '');
};
const busList = NODES.map((node) => `nats://127.0.0.1:${clientPort(node)}`).join(',');
const common = {
  ...config,
  bus: { ...config.bus, url: busList },
  audit: { ...config.audit, stream: { ...config.audit?.stream, replicas: 3 } },
};
const services = config.services ?? {};
const instanceB = {
  ...common,
  admin: { listen: shift(config.admin?.listen ?? '127.0.0.1:7000') },
  services: {
    ...services,
    console: undefined,
    policy: { grpc: shift(services.policy?.grpc ?? '127.0.0.1:7101') },
    masking: { grpc: shift(services.masking?.grpc ?? '127.0.0.1:7102') },
    approval: {
      ...services.approval,
      grpc: shift(services.approval?.grpc ?? '127.0.0.1:7103'),
      http: shift(services.approval?.http ?? '127.0.0.1:7180'),
      ...(services.approval?.publicUrl ? { publicUrl: shiftUrl(services.approval.publicUrl) } : {}),
    },
    audit: { http: shift(services.audit?.http ?? '127.0.0.1:7190') },
  },
  resources: (config.resources ?? []).map((resource) => ({ ...resource, listen: shift(resource.listen) })),
};
delete instanceB.services.console;

const env = { ...process.env, SLUICE_KEYS_DIR: keys };
delete env.NATS_URL;
for (const [name, instance] of [
  ['a', common],
  ['b', instanceB],
]) {
  const cwd = join(dir, name);
  mkdirSync(cwd, { recursive: true });
  // Relative paths in the config ({ file: … } secrets) keep pointing where they did.
  const file = join(resolve(values.config, '..'), `.scale-out-${name}.yaml`);
  writeFileSync(file, stringify(instance));
  started(`sluice ${name}`, spawn(process.execPath, [sluiceBin, 'up', '--config', file], { cwd, env, stdio: 'inherit' }));
  // A first, so its audit service makes the R3 stream before B's services look for it.
  if (name === 'a') {
    const admin = config.admin?.listen ?? '127.0.0.1:7000';
    for (let ready = false; !ready; ) {
      await new Promise((done) => setTimeout(done, 500));
      ready = await fetch(`http://${admin}/readyz`).then((response) => response.ok, () => false);
    }
  }
}
process.stderr.write(`scale-out: A and B up; bus ${busList}; B's ports are A's + ${offset}. Ctrl-C stops everything.\n`);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  // Sluice first (it drains to the bus), then the NATS nodes.
  for (const group of [children.filter(({ name }) => name.startsWith('sluice')), children.filter(({ name }) => name.startsWith('nats'))]) {
    await Promise.all(
      group.map(({ child }) =>
        child.exitCode !== null || child.signalCode !== null ? undefined : new Promise((done) => (child.once('exit', done), child.kill('SIGTERM')))),
    );
  }
  process.exit(0);
};
process.on('SIGINT', () => void stop());
process.on('SIGTERM', () => void stop());
