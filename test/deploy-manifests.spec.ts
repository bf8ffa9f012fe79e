import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import { parseAddress, parseConfig, type SluiceConfig } from '@sluice/config';
import { REPO_ROOT } from './support/sluice.js';

/**
 * The Kubernetes manifests and the image, read as an operator's tools would (no cluster here):
 * every file parses, and names and ports agree with the config they carry.
 */
const K8S = join(REPO_ROOT, 'deploy/k8s');

interface Manifest {
  readonly file: string;
  readonly kind: string;
  readonly metadata: { readonly name: string };
  readonly spec?: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- arbitrary manifests, probed key by key below
  readonly data?: Record<string, string>;
}

const kustomization = parse(readFileSync(join(K8S, 'kustomization.yaml'), 'utf8')) as {
  resources: string[];
  secretGenerator: Array<{ name: string; files: string[] }>;
};

const manifests: Manifest[] = kustomization.resources.flatMap((file) =>
  parseAllDocuments(readFileSync(join(K8S, file), 'utf8')).map((document) => {
    expect(document.errors, file).toEqual([]);
    return { file, ...(document.toJS() as Omit<Manifest, 'file'>) };
  }),
);
const find = (kind: string, name: string): Manifest => {
  const found = manifests.find((manifest) => manifest.kind === kind && manifest.metadata.name === name);
  if (!found) throw new Error(`no ${kind} ${name}`);
  return found;
};
const config: SluiceConfig = parseConfig(parse(find('ConfigMap', 'sluice-config').data!['sluice.yaml']!));
const generated = new Map(kustomization.secretGenerator.map((secret) => [secret.name, secret.files.map((file) => file.split('=')[0]!.split('/').pop()!)]));

const container = (name: string) => find('Deployment', name).spec.template.spec.containers[0];
const servicePorts = (name: string): number[] => find('Service', name).spec.ports.map((port: { port: number }) => port.port);
const SERVICES = ['proxy', 'policy', 'masking', 'approval', 'audit'] as const;

describe('Kubernetes manifests (deploy/k8s)', () => {
  it('lists every manifest file in the kustomization, and every one parses', () => {
    const files = readdirSync(K8S).filter((file) => file.endsWith('.yaml') && file !== 'kustomization.yaml');
    expect([...kustomization.resources].sort()).toEqual(files.sort());
    expect(manifests.length).toBeGreaterThan(10);
  });

  it('runs each service as a Deployment with a Service, the proxy twice, probed on /readyz where SLUICE_HEALTH_LISTEN serves it', () => {
    for (const name of SERVICES) {
      const deployment = find('Deployment', name);
      const main = container(name);
      expect(main.command).toEqual(['node', `/app/services/${name}/dist/main.js`]);
      expect(existsSync(join(REPO_ROOT, 'services', name, 'src', 'main.ts'))).toBe(true);
      const healthListen = main.env.find((entry: { name: string }) => entry.name === 'SLUICE_HEALTH_LISTEN').value as string;
      const healthPort = main.ports.find((port: { name: string }) => port.name === main.readinessProbe.httpGet.port).containerPort;
      expect(main.readinessProbe.httpGet.path).toBe('/readyz');
      expect(parseAddress(healthListen)?.port).toBe(healthPort);
      expect(main.args).toEqual(['--config', '/etc/sluice/sluice.yaml']);
      expect(find('Service', name).spec.selector).toEqual(deployment.spec.selector.matchLabels);
      expect(deployment.spec.template.spec.securityContext.runAsNonRoot).toBe(true);
    }
    expect(find('Deployment', 'proxy').spec.replicas).toBe(2);
  });

  it("gives each gRPC service the config's name and port: its Service, its pod's hostname, its container port", () => {
    for (const name of ['policy', 'masking', 'approval'] as const) {
      const address = parseAddress(config.services[name].grpc)!;
      expect(address.host).toBe(name);
      expect(find('Deployment', name).spec.template.spec.hostname).toBe(name);
      expect(servicePorts(name)).toContain(address.port);
      expect(container(name).ports.map((port: { containerPort: number }) => port.containerPort)).toContain(address.port);
    }
    expect(servicePorts('approval')).toContain(parseAddress(config.services.approval.http)!.port);
    expect(servicePorts('audit')).toContain(parseAddress(config.services.audit.http)!.port);
    for (const resource of config.resources) {
      const port = parseAddress(resource.listen)!.port;
      expect(servicePorts('proxy')).toContain(port);
      expect(container('proxy').ports.map((entry: { containerPort: number }) => entry.containerPort)).toContain(port);
    }
  });

  it('mounts each service only its own keys, every one of them generated, and never the CA private key', () => {
    expect(generated.get('sluice-tls')).not.toContain('ca.key');
    for (const name of SERVICES) {
      const sources = find('Deployment', name).spec.template.spec.volumes.find((volume: { name: string }) => volume.name === 'keys').projected.sources as Array<{
        secret: { name: string; items: Array<{ key: string; path: string }> };
      }>;
      for (const { secret } of sources) for (const item of secret.items) expect(generated.get(secret.name), `${name}: ${secret.name}/${item.key}`).toContain(item.key);
      const paths = sources.flatMap(({ secret }) => secret.items.map((item) => item.path));
      if (name !== 'audit') expect(paths).toEqual(expect.arrayContaining(['tls/ca.crt', `tls/${name}.crt`, `tls/${name}.key`]));
      if (name !== 'masking') expect(paths).toEqual(expect.arrayContaining([`${name}.key`, `${name}.nk`]));
      for (const path of paths) {
        const owner = path.replace(/^tls\//, '').split('.')[0];
        if (!path.endsWith('.pub') && path !== 'tls/ca.crt') expect(owner, `${name} mounts ${path}`).toBe(name);
      }
    }
  });

  it('runs NATS as a three-node JetStream cluster behind the bus address, and makes the event stream with three replicas', () => {
    const nats = find('StatefulSet', 'nats');
    expect(nats.spec.replicas).toBe(3);
    const bus = new URL(config.bus.url);
    expect(servicePorts(bus.hostname)).toContain(Number(bus.port));
    const natsConf = find('ConfigMap', 'nats-config').data!['nats.conf']!;
    expect(natsConf).toMatch(/jetstream/);
    for (let node = 0; node < 3; node += 1) expect(natsConf).toContain(`nats://nats-${node}.${nats.spec.serviceName}:6222`);
    const script = find('Deployment', 'audit').spec.template.spec.initContainers[0].command.join(' ') as string;
    expect(script).toContain(`stream add ${config.bus.stream} --subjects '${config.bus.subjectPrefix}.>'`);
    expect(script).toContain('--replicas 3');
  });
});

describe('the image (deploy/Dockerfile)', () => {
  const dockerfile = readFileSync(join(REPO_ROOT, 'deploy/Dockerfile'), 'utf8');
  const instructions = dockerfile.split('\n').filter((line) => line.trim() !== '' && !line.trimStart().startsWith('#'));

  it('builds in one stage and runs in another, as a user that is not root, with no failure hidden', () => {
    expect(instructions.filter((line) => line.startsWith('FROM '))).toHaveLength(2);
    expect(instructions.some((line) => /^USER (node|[1-9]\d*)\b/.test(line))).toBe(true);
    expect(dockerfile).not.toMatch(/\|\|\s*true/);
    expect(readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8')).toMatch(/node_modules/);
  });
});
