import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { dropDatabases } from './support/databases.js';
import { freePort } from './support/ports.js';
import { runCommand } from './support/run.js';
import { allocateServicePorts, REPO_ROOT, servicesSection, SLUICE_BIN } from './support/sluice.js';

/** The CLI as a user runs it, in a folder of our choosing, without the test runner's deployment hints. */
const sluice = (args: readonly string[], cwd: string) => {
  const env = { ...process.env };
  delete env.SLUICE_CONFIG;
  delete env.DATABASE_URL;
  return runCommand(process.execPath, [SLUICE_BIN, ...args], { cwd, env });
};

const COMMANDS: readonly (readonly string[])[] = [
  ['up'],
  ['demo'],
  ['proxy'],
  ['policy'],
  ['masking'],
  ['approval'],
  ['audit'],
  ['policy', 'explain'],
  ['policy', 'test'],
  ['policy', 'reload'],
  ['audit', 'verify'],
  ['audit', 'query'],
  ['replay'],
  ['approvals', 'list'],
  ['approve'],
  ['deny'],
  ['dev-idp'],
  ['token'],
];

describe('the sluice CLI behaves like a good CLI', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-cli-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('prints its version with --version and status 0', async () => {
    const result = await sluice(['--version'], dir);
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/^sluice \d+\.\d+\.\d+/);
  });

  it.each(COMMANDS.map((command) => command.join(' ')))('prints the usage of "%s" for --help and -h with status 0', async (line) => {
    const command = line.split(' ');
    for (const flag of ['--help', '-h']) {
      const result = await sluice([...command, flag], dir);
      expect(result.status, `${command.join(' ')} ${flag}: ${result.stderr}`).toBe(0);
      expect(result.stdout).toMatch(/^usage: sluice/);
      expect(result.stdout).toContain(command[0] === 'approve' || command[0] === 'deny' ? `sluice ${command[0]}` : `sluice ${command.join(' ')}`);
      expect(result.stderr).toBe('');
    }
  });

  it.each(['policy explain', 'policy test', 'audit verify', 'audit query'])('"%s --help" is about the subcommand, not the service of the same name', async (line) => {
    const result = await sluice([...line.split(' '), '--help'], dir);
    expect(result.status).toBe(0);
    expect(result.stdout).not.toContain('runs the');
    expect(result.stdout.match(/^usage:/gm)).toHaveLength(1);
  });

  it.each(['policy', 'audit'])('"%s --help" shows the subcommands and the service', async (command) => {
    const result = await sluice([command, '--help'], dir);
    expect(result.stdout).toContain(`sluice ${command} --config FILE`);
    expect(result.stdout).toContain(`runs the ${command} service alone`);
    expect(result.stdout).toContain(command === 'policy' ? 'sluice policy explain' : 'sluice audit verify');
  });

  it.each(['audit query', 'audit verify', 'replay some-session', 'approvals list --token t'])(
    'outside a deployment folder "%s" says how to point it at one',
    async (line) => {
      const result = await sluice(line.split(' '), dir);
      expect(result.status).toBe(1);
      expect(result.stderr).toContain('no running deployment found in this folder: pass --config FILE or --url URL');
      expect(result.stderr).not.toMatch(/TypeError|Cannot read properties/);
    },
  );

  it('says the issuer is not running when a token is asked of a stopped one', async () => {
    const port = await freePort();
    const result = await sluice(['token', '--sub', 'agent-1', '--issuer', `http://127.0.0.1:${port}`], dir);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`no issuer answers at http://127.0.0.1:${port}`);
    expect(result.stderr).toContain('npx sluice dev-idp');
  });

  it('refuses an empty config file', async () => {
    writeFileSync(join(dir, 'empty.yaml'), '');
    const result = await sluice(['up', '--config', 'empty.yaml'], dir);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/^sluice: invalid config: .*empty/);
  });

  it('reports a port that is not a number as "expected a port number", not as missing', async () => {
    writeFileSync(
      join(dir, 'six.yaml'),
      'resources:\n  - { name: db, type: postgres, listen: "127.0.0.1:1", target: { host: h, port: "six", database: d }, credentials: { username: u } }\n',
    );
    const result = await sluice(['up', '--config', 'six.yaml'], dir);
    expect(result.status).toBe(2);
    expect(result.stderr.trim()).toBe('sluice: invalid config: resources[0].target.port: expected a port number (1-65535)');
  });

  it('validates a policy cases file like the config: a misspelt expectation is an error naming its key', async () => {
    writeFileSync(join(dir, 'rules.yaml'), stringify({ resources: [{ name: 'db', type: 'postgres', listen: '127.0.0.1:1', target: { host: 'h', database: 'd' }, credentials: { username: 'u' } }], rules: [] }));
    writeFileSync(join(dir, 'cases.yaml'), stringify([{ sub: 'a', resource: 'db', sql: 'SELECT 1', expect: 'alow' }]));
    const result = await sluice(['policy', 'test', '--config', 'rules.yaml', 'cases.yaml'], dir);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('[0].expect: expected one of allow, deny, approve, got "alow"');
    writeFileSync(join(dir, 'cases.yaml'), stringify([{ sub: 'a', resource: 'db', sql: 'SELECT 1', expect: 'deny', rulle: 'x' }]));
    const unknownKey = await sluice(['policy', 'test', '--config', 'rules.yaml', 'cases.yaml'], dir);
    expect(unknownKey.status).toBe(2);
    expect(unknownKey.stderr).toContain('[0].rulle: unknown key');
  });

  it('explains and tests a decision for a named issuer, and refuses an issuer that is not configured', async () => {
    const [company, ci] = ['https://idp.example.com', 'https://ci.example.com'];
    writeFileSync(
      join(dir, 'issuers.yaml'),
      stringify({
        identity: { oidc: [{ issuer: company, audience: 'sluice' }, { issuer: ci, audience: 'sluice' }] },
        resources: [{ name: 'db', type: 'postgres', listen: '127.0.0.1:1', target: { host: 'h', database: 'd' }, credentials: { username: 'u' } }],
        rules: [
          { name: 'agents-read', effect: 'allow', subjects: { groups: ['agents'] }, actions: ['read'] },
          { name: 'ci-never-reads-secrets', effect: 'deny', subjects: { issuer: ci }, tables: ['public.secrets'] },
          { name: 'company-deletes-held', effect: 'approve', subjects: { issuer: company }, risk: 'high', approvers: { groups: ['dba'], issuer: company } },
        ],
      }),
    );
    const explain = (...args: string[]) => sluice(['policy', 'explain', '--config', 'issuers.yaml', '--sub', 'a', '--groups', 'agents', '--resource', 'db', ...args], dir);
    const asCompany = await explain('--issuer', company, 'SELECT * FROM secrets');
    expect(asCompany.stdout).toContain('decision: allow');
    const asCi = await explain('--issuer', ci, 'SELECT * FROM secrets');
    expect(asCi.stdout).toContain('decision: deny (rule "ci-never-reads-secrets")');
    // No issuer named: a rule scoped to one still guards.
    expect((await explain('SELECT * FROM secrets')).stdout).toContain('decision: deny (rule "ci-never-reads-secrets")');
    expect((await explain('--issuer', company, 'DELETE FROM orders')).stdout).toContain(`approvers: groups [dba] subs [] from [${company}], 1 needed`);
    const unknown = await explain('--issuer', `${company}/`, 'SELECT 1');
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain('--issuer must be one of identity.oidc');

    writeFileSync(
      join(dir, 'issuer-cases.yaml'),
      stringify([
        { sub: 'a', groups: ['agents'], issuer: company, resource: 'db', sql: 'SELECT * FROM secrets', expect: 'allow' },
        { sub: 'a', groups: ['agents'], issuer: ci, resource: 'db', sql: 'SELECT * FROM secrets', expect: 'deny', rule: 'ci-never-reads-secrets' },
      ]),
    );
    const cases = await sluice(['policy', 'test', '--config', 'issuers.yaml', 'issuer-cases.yaml'], dir);
    expect(cases.status, cases.stdout + cases.stderr).toBe(0);
    writeFileSync(join(dir, 'issuer-cases.yaml'), stringify([{ sub: 'a', issuer: 'https://nobody.example.com', resource: 'db', sql: 'SELECT 1', expect: 'deny' }]));
    const misnamed = await sluice(['policy', 'test', '--config', 'issuers.yaml', 'issuer-cases.yaml'], dir);
    expect(misnamed.status).toBe(1);
    expect(misnamed.stdout + misnamed.stderr).toContain('issuer https://nobody.example.com is not one of identity.oidc');
  });

  describe('against an event store', () => {
    const database = `sluice_cli_${process.pid}`;
    beforeAll(async () => {
      const ports = await allocateServicePorts();
      writeFileSync(
        join(dir, 'store.yaml'),
        stringify({ admin: { listen: `127.0.0.1:${ports.admin}` }, services: servicesSection(ports), eventStore: { url: `postgres://postgres@127.0.0.1:5432/${database}` } }),
      );
    });
    afterAll(() => dropDatabases([database]));

    it('treats an unknown session as an error in audit verify and replay', async () => {
      const verify = await sluice(['audit', 'verify', '--config', 'store.yaml', '--session', 'nope'], dir);
      expect(verify.status).toBe(1);
      expect(verify.stderr).toContain('no events for session nope');
      const replay = await sluice(['replay', 'nope', '--config', 'store.yaml'], dir);
      expect(replay.status).toBe(1);
      expect(replay.stderr).toContain('no events for session nope');
      const all = await sluice(['audit', 'verify', '--config', 'store.yaml'], dir);
      expect(all.status, all.stderr).toBe(0);
    });
  });

  it('runs from the repository root as `npx sluice` does', async () => {
    const result = await runCommand(process.execPath, [SLUICE_BIN, '--version'], { cwd: REPO_ROOT });
    expect(result.status).toBe(0);
  });
});
