import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '@sluice/config';
import { usePostgresFrontDoor, type Way } from './support/postgres-proxy-harness.js';

/**
 * What a session reports of its own client_encoding, direct and through Sluice, with node-postgres
 * and postgres.js; and that a client_encoding change Sluice refuses is on the record as a denial.
 * The target session stays UTF8 while Sluice converts at its edge: what the agent is told must
 * still be the encoding of its session, as the server would say.
 */

const database = `sluice_fid_enc_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
const RESOURCE = 'fid-enc-db';

const frontDoor = usePostgresFrontDoor({
  config: parseConfig({
    resources: [{ name: RESOURCE, type: 'postgres', listen: '127.0.0.1:0', target: { host: '127.0.0.1', database }, credentials: { username: 'postgres' } }],
    rules: [{ name: 'everything', effect: 'allow', subjects: { groups: ['all'] }, resources: [RESOURCE], actions: ['read', 'write', 'ddl', 'admin'] }],
  }),
  database,
  hashKey: 'fid-enc-int',
  setupSql: 'create table t (id int)',
}, 120_000);

describe('SHOW client_encoding reports the session encoding, direct and through Sluice', () => {
  it('node-postgres: after SET client_encoding, SHOW (simple and extended) and SHOW ALL say LATIN1', async () => {
    const seen: Record<Way, unknown[]> = { direct: [], sluice: [] };
    for (const way of ['direct', 'sluice'] as const) {
      const client = await frontDoor.pgClient(way, ['all']);
      try {
        await client.query("set client_encoding to 'latin1'");
        seen[way].push((await client.query('show client_encoding')).rows);
        seen[way].push((await client.query({ name: `show-enc-${way}`, text: 'SHOW client_encoding' })).rows);
        const all = await client.query('show all');
        seen[way].push(all.rows.filter((row: { name: string }) => row.name === 'client_encoding').map((row: { setting: string }) => row.setting));
        await client.query('reset client_encoding');
        seen[way].push((await client.query('show client_encoding')).rows);
      } finally {
        await client.end();
      }
    }
    expect(seen.direct).toEqual([[{ client_encoding: 'LATIN1' }], [{ client_encoding: 'LATIN1' }], ['LATIN1'], [{ client_encoding: 'UTF8' }]]);
    expect(seen.sluice).toEqual(seen.direct);
  });

  it('postgres.js: a client_encoding asked for at startup is what SHOW reports', async () => {
    const seen: Record<Way, unknown[]> = { direct: [], sluice: [] };
    for (const way of ['direct', 'sluice'] as const) {
      const sql = await frontDoor.postgresJs(way, ['all'], { client_encoding: 'WIN1252' });
      try {
        seen[way].push([...(await sql`show client_encoding`)]);
        seen[way].push([...(await sql.unsafe('show client_encoding', [], { prepare: false }))]);
      } finally {
        await sql.end();
      }
    }
    expect(seen.direct).toEqual([[{ client_encoding: 'WIN1252' }], [{ client_encoding: 'WIN1252' }]]);
    expect(seen.sluice).toEqual(seen.direct);
  });
});

describe('a client_encoding change Sluice refuses', () => {
  it('is recorded as a command.decided deny with its refusal, simple and extended', async () => {
    const client = await frontDoor.pgClient('sluice', ['all']);
    try {
      await client.query('begin');
      await expect(client.query("set client_encoding to 'latin2'")).rejects.toMatchObject({ code: '0A000' });
      await client.query('rollback');
      await expect(client.query({ name: 'enc-extended', text: "set client_encoding to 'win1251'" })).rejects.toMatchObject({ code: '0A000' });
    } finally {
      await client.end();
    }
    for (const text of ["set client_encoding to 'latin2'", "set client_encoding to 'win1251'"]) {
      const decided = frontDoor.events.find((e) => e.kind === 'command.decided' && e.data.command === text);
      expect(decided?.data.decision, text).toBe('deny');
      const completed = frontDoor.events.find((e) => e.kind === 'command.completed' && e.data.commandId === decided?.data.commandId);
      expect(completed?.data, text).toMatchObject({ outcome: 'REFUSED', error: { code: '0A000' } });
    }
  });
});
