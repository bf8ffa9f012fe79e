import { randomUUID } from 'node:crypto';
import postgres from 'postgres';
import { describe, expect, it, vi } from 'vitest';
import { encodeBind, encodeCopyData, encodeCopyDone, encodeExecute, encodeParse, encodeQuery, encodeSync } from '@sluice/codec-pg';
import { searchPathFrontDoorOptions } from './support/search-path-fixture.js';
import { usePostgresFrontDoor, type Way, WAYS } from './support/postgres-proxy-harness.js';

/**
 * search_path changed by code a statement does not show (a trigger fired by an INSERT, a view's
 * function, a cursor's function run by FETCH), direct and through Sluice, with node-postgres and
 * postgres.js. Direct, the next unqualified name reads the schema the code chose; through Sluice
 * that is the table decided on, so a deny on it holds. Before, Sluice kept the path it had read
 * last and decided on the other schema's table.
 */

const database = `sluice_fid_path_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
const RESOURCE = 'fid-path-db';

const frontDoor = usePostgresFrontDoor(searchPathFrontDoorOptions(RESOURCE, database, 'fid-path-int'), 120_000);

/** The rows, or the SQLSTATE of the error. */
const outcome = async (promise: Promise<{ rows: unknown[] } | readonly unknown[]>): Promise<unknown> => {
  try {
    const result = await promise;
    return 'rows' in result ? result.rows : [...result];
  } catch (error) {
    return (error as { code?: string }).code;
  }
};

describe('search_path set by code the statement does not show', () => {
  it('node-postgres: after a trigger (simple and extended INSERT), a view read and a FETCH set it, the next unqualified name is decided on the table the server reads', async () => {
    const seen: Record<Way, unknown[]> = { direct: [], sluice: [] };
    for (const way of WAYS) {
      const client = await frontDoor.pgClient(way, ['all']);
      const read = (): Promise<unknown> => outcome(client.query('select v from t'));
      const reset = async (): Promise<void> => {
        await client.query('set search_path = public');
      };
      try {
        seen[way].push(await read());
        await client.query("insert into log values ('other, public')");
        seen[way].push(await read());
        await reset();
        await client.query('insert into log values ($1)', ['other, public']);
        seen[way].push(await read());
        await reset();
        seen[way].push(await outcome(client.query('select path from sets_path')));
        seen[way].push(await read());
        await reset();
        await client.query('begin');
        await client.query('declare c cursor for select path from public.sets_path');
        seen[way].push(await read());
        seen[way].push(await outcome(client.query('fetch 1 from c')));
        seen[way].push(await read());
        await client.query('rollback');
      } finally {
        await client.end();
      }
    }
    expect(seen.direct).toEqual([[{ v: 'public' }], [{ v: 'other' }], [{ v: 'other' }], [{ path: 'other, public' }], [{ v: 'other' }], [{ v: 'public' }], [{ path: 'other, public' }], [{ v: 'other' }]]);
    // The deny on other.t holds wherever the server would read it.
    expect(seen.sluice).toEqual([[{ v: 'public' }], '42501', '42501', [{ path: 'other, public' }], '42501', [{ v: 'public' }], [{ path: 'other, public' }], '42501']);
  });

  it('postgres.js: after an INSERT whose trigger sets search_path, the next query is decided on the table the server reads', async () => {
    const seen: Record<Way, unknown[]> = { direct: [], sluice: [] };
    for (const way of WAYS) {
      const sql =
        way === 'direct'
          ? postgres({ host: '127.0.0.1', port: 5432, user: 'postgres', database, max: 1, onnotice: () => {} })
          : postgres({ host: '127.0.0.1', port: frontDoor.port, user: 'agent', database: RESOURCE, pass: await frontDoor.token(['all']), max: 1, onnotice: () => {} });
      try {
        seen[way].push(await outcome(sql`select v from t`));
        await sql`insert into log values (${'other, public'})`;
        seen[way].push(await outcome(sql`select v from t`));
      } finally {
        await sql.end();
      }
    }
    expect(seen.direct).toEqual([[{ v: 'public' }], [{ v: 'other' }]]);
    expect(seen.sluice).toEqual([[{ v: 'public' }], '42501']);
  });

  it('a message that sets search_path and then writes a table named without its schema is refused, as one that reads it is (the write went to the other schema past its deny)', async () => {
    const written: Record<Way, unknown> = { direct: undefined, sluice: undefined };
    const check = await frontDoor.pgClient('direct', ['all']);
    try {
      for (const way of WAYS) {
        const client = await frontDoor.pgClient(way, ['all']);
        try {
          written[way] = await client.query("set search_path = other, public; insert into t values ('written')").then(() => 'done', (error: { code?: string }) => error.code);
        } finally {
          await client.end();
        }
        written[way] = [written[way], (await check.query("delete from other.t where v = 'written' returning v")).rowCount];
      }
    } finally {
      await check.end();
    }
    expect(written.direct).toEqual(['done', 1]);
    expect(written.sluice).toEqual(['42501', 0]);
  });

  it('after COPY FROM STDIN fires a trigger that sets it (simple and extended), the next unqualified name is decided on the table the server reads', async () => {
    const starts = {
      simple: [encodeQuery('copy log from stdin')],
      extended: [encodeParse('', 'copy log from stdin'), encodeBind('', ''), encodeExecute(''), encodeSync()],
    };
    for (const start of Object.values(starts)) {
      const [direct, proxied] = await frontDoor.rawPair(['all']);
      for (const session of [direct, proxied]) {
        session.send(...start);
        await vi.waitFor(() => expect(session.count('CopyInResponse')).toBe(1));
        session.send(encodeCopyData('other, public\n'), encodeCopyDone(), ...(start.length > 1 ? [encodeSync()] : []), encodeQuery('select v from t'));
        await session.readyCount(3);
      }
      const read = (session: typeof direct) => session.summary().filter((line) => line.startsWith('DataRow') || line.startsWith('ErrorResponse'));
      expect(read(direct)).toEqual(['DataRow other']);
      expect(read(proxied)).toEqual(['ErrorResponse 42501']);
    }
    await frontDoor.direct.query('delete from log');
  });
});
