import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '@sluice/config';
import { usePostgresFrontDoor, type Way, WAYS } from './support/postgres-proxy-harness.js';

/**
 * What a session reports of its own settings, direct and through Sluice, with node-postgres,
 * postgres.js and psql: client_encoding as current_setting() and pg_settings give it (the target
 * session stays UTF8 while Sluice converts at its edge), and a startup application_name in the
 * client's own encoding (the server takes a startup packet's bytes unconverted).
 */

const execFileAsync = promisify(execFile);
const database = `sluice_fid_report_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
const RESOURCE = 'fid-report-db';

const frontDoor = usePostgresFrontDoor({
  config: parseConfig({
    resources: [{ name: RESOURCE, type: 'postgres', listen: '127.0.0.1:0', target: { host: '127.0.0.1', database }, credentials: { username: 'postgres' } }],
    masking: { profiles: { everything: { detectors: [], strategy: 'redact', columns: [{ match: '.*', strategy: 'redact' }] } } },
    rules: [
      { name: 'everything', effect: 'allow', subjects: { groups: ['all'] }, resources: [RESOURCE], actions: ['read', 'write', 'ddl', 'admin'] },
      { name: 'masked', effect: 'allow', subjects: { groups: ['masked'] }, resources: [RESOURCE], actions: ['read'], mask: 'everything' },
    ],
  }),
  database,
  hashKey: 'fid-report-int',
  setupSql: 'create table t (id int)',
}, 120_000);

/** psql with a LATIN1 terminal: `appName` is written with bash's $'…' so its bytes reach libpq as they are. */
const psqlLatin1 = async (way: Way, appName: string, sql: string): Promise<string> => {
  const [port, user, db] = way === 'direct' ? ['5432', 'postgres', database] : [String(frontDoor.port), 'agent', RESOURCE];
  const env = { ...process.env, PGPASSWORD: way === 'direct' ? '' : await frontDoor.token(['all']), PGCLIENTENCODING: 'LATIN1', PGCONNECT_TIMEOUT: '10', PGSSLMODE: 'disable' };
  const script = `PGAPPNAME=$'${appName}' exec psql -X -q -At -h 127.0.0.1 -p ${port} -U ${user} -d ${db} -c "${sql}"`;
  const { stdout } = await execFileAsync('bash', ['-c', script], { env, timeout: 30_000, encoding: 'latin1' });
  return stdout.trim();
};

describe('client_encoding as current_setting() and pg_settings report it, direct and through Sluice', () => {
  it("node-postgres: after SET client_encoding, current_setting('client_encoding') and pg_settings say LATIN1 (simple and extended)", async () => {
    const seen: Record<Way, unknown[]> = { direct: [], sluice: [] };
    for (const way of WAYS) {
      const client = await frontDoor.pgClient(way, ['all']);
      try {
        await client.query("set client_encoding to 'latin1'");
        seen[way].push((await client.query("select current_setting('client_encoding') as e, pg_catalog.current_setting('client_encoding', true) as f")).rows);
        seen[way].push((await client.query({ name: `cur-${way}`, text: "select current_setting('client_encoding') as e, $1::int as n", values: [1] })).rows);
        seen[way].push((await client.query("select name, setting, reset_val from pg_settings where name in ('client_encoding', 'server_encoding') order by name")).rows);
        seen[way].push((await client.query("select setting as s, reset_val from pg_catalog.pg_settings where name = 'client_encoding'")).rows);
        seen[way].push((await client.query({ name: `set-${way}`, text: 'select setting from pg_settings where name = $1', values: ['client_encoding'] })).rows);
        await client.query('reset client_encoding');
        seen[way].push((await client.query("select current_setting('client_encoding') as e")).rows);
      } finally {
        await client.end();
      }
    }
    expect(seen.direct).toEqual([
      [{ e: 'LATIN1', f: 'LATIN1' }],
      [{ e: 'LATIN1', n: 1 }],
      [
        { name: 'client_encoding', setting: 'LATIN1', reset_val: 'UTF8' },
        { name: 'server_encoding', setting: 'UTF8', reset_val: 'UTF8' },
      ],
      [{ s: 'LATIN1', reset_val: 'UTF8' }],
      [{ setting: 'LATIN1' }],
      [{ e: 'UTF8' }],
    ]);
    // A parameter in place of the name is not read: that pg_settings row keeps the target's UTF8.
    expect(seen.sluice).toEqual([...seen.direct.slice(0, 4), [{ setting: 'UTF8' }], seen.direct[5]]);
  });

  it('postgres.js: a client_encoding asked for at startup is what current_setting() and pg_settings report, reset_val included', async () => {
    const seen: Record<Way, unknown[]> = { direct: [], sluice: [] };
    for (const way of WAYS) {
      const sql = await frontDoor.postgresJs(way, ['all'], { client_encoding: 'WIN1252' });
      try {
        seen[way].push([...(await sql`select current_setting('client_encoding') as e`)]);
        seen[way].push([...(await sql`select setting, reset_val from pg_settings where name = 'client_encoding'`)]);
        seen[way].push([...(await sql.unsafe("select current_setting('client_encoding') as e", [], { prepare: false }))]);
      } finally {
        await sql.end();
      }
    }
    expect(seen.direct).toEqual([[{ e: 'WIN1252' }], [{ setting: 'WIN1252', reset_val: 'WIN1252' }], [{ e: 'WIN1252' }]]);
    expect(seen.sluice).toEqual(seen.direct);
  });

  it("never replaces a masked value: under a profile masking every column, current_setting('client_encoding') stays masked", async () => {
    const client = await frontDoor.pgClient('sluice', ['masked']);
    try {
      await client.query("set client_encoding to 'latin1'");
      const rows = (await client.query("select current_setting('client_encoding') as e")).rows as { e: string }[];
      expect(rows[0]!.e).not.toBe('LATIN1');
      expect(rows[0]!.e).not.toBe('UTF8');
    } finally {
      await client.end();
    }
  });
});

describe('a startup application_name in the client encoding, direct and through Sluice', () => {
  it("psql with PGCLIENTENCODING=LATIN1: a LATIN1 'é' reaches the server as the client's byte, cleaned by the server as direct", async () => {
    const sql = 'select application_name from pg_stat_activity where pid = pg_backend_pid()';
    const seen: Record<Way, string> = { direct: '', sluice: '' };
    for (const way of WAYS) seen[way] = await psqlLatin1(way, 'caf\\xe9', sql);
    expect(seen.direct).toBe('caf?');
    expect(seen.sluice).toBe(seen.direct);
    // On the record as the agent meant it: read in its client encoding.
    const started = frontDoor.events.filter((e) => e.kind === 'session.started').map((e) => (e.data.parameters as Record<string, string> | undefined)?.application_name);
    expect(started).toContain('café');
  });

  it("postgres.js with client_encoding LATIN1 (it writes its startup packet in UTF-8): the server's reading, the same both ways", async () => {
    const seen: Record<Way, unknown[]> = { direct: [], sluice: [] };
    for (const way of WAYS) {
      const sql = await frontDoor.postgresJs(way, ['all'], { client_encoding: 'LATIN1', application_name: 'café' });
      try {
        seen[way].push([...(await sql`select application_name from pg_stat_activity where pid = pg_backend_pid()`)]);
      } finally {
        await sql.end();
      }
    }
    expect(seen.direct).toEqual([[{ application_name: 'caf??' }]]);
    expect(seen.sluice).toEqual(seen.direct);
  });
});
