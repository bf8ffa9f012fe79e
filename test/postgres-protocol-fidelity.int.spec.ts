import { randomUUID } from 'node:crypto';
import pg from 'pg';
import postgres from 'postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeBind, encodeClose, encodeDescribe, encodeExecute, encodeParse, encodeQuery, encodeSync } from '@sluice/codec-pg';
import { parseConfig } from '@sluice/config';
import { openClient, usePostgresFrontDoor, type RawPostgresSession, waitFor as pollUntil } from './support/postgres-proxy-harness.js';

/**
 * PostgreSQL fidelity of the extended protocol and the backend key, tried with raw protocol bytes,
 * node-postgres and postgres.js against the real server, direct and through Sluice: pipelines
 * without a Sync, SQL cursors used as portals, cancel and terminate by the key a client was given.
 */

const database = `sluice_pg_protocol_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
const RESOURCE = 'protocol-db';

const frontDoor = usePostgresFrontDoor({
  config: parseConfig({
    resources: [{ name: RESOURCE, type: 'postgres', listen: '127.0.0.1:0', target: { host: '127.0.0.1', database }, credentials: { username: 'postgres' } }],
    rules: [
      { name: 'writers-change', effect: 'allow', subjects: { groups: ['writers'] }, actions: ['read', 'write', 'ddl'] },
      { name: 'never-admin', effect: 'deny', actions: ['admin'] },
    ],
  }),
  database,
  hashKey: 'protocol-fidelity',
  setupSql: 'create table ledger (id serial primary key, note text);',
});

/** Every answer gets 5 s. */
const waitFor = (condition: () => boolean, timeoutMs = 5_000): Promise<void> => pollUntil(condition, timeoutMs);
const token = (): Promise<string> => frontDoor.token(['writers']);
const count = async (): Promise<number> => (await frontDoor.direct.query('select count(*)::int as n from ledger')).rows[0].n as number;
const directly = (): pg.ClientConfig => ({ host: '127.0.0.1', port: 5432, user: 'postgres', database });
const throughSluice = async (): Promise<pg.ClientConfig> => ({ host: '127.0.0.1', port: frontDoor.port, user: 'agent', database: RESOURCE, password: await token() });
const clients: pg.Client[] = [];
const open = (config: pg.ClientConfig): Promise<pg.Client> => openClient(config, clients);

afterAll(async () => {
  for (const client of clients) await client.end().catch(() => {});
});

/** The same raw protocol session straight to the server and through Sluice (a writer), in that order. */
const rawPair = (): Promise<[RawPostgresSession, RawPostgresSession]> => frontDoor.rawPair(['writers']);

describe('PostgreSQL fidelity: pipelines without a Sync', () => {
  it('answers an error in the middle of a pipeline before its Sync, ignores the rest up to it, and goes on, as direct', async () => {
    const seen: string[][] = [];
    for (const session of await rawPair()) {
      session.send(encodeParse('', 'select 1/0'), encodeBind('', ''), encodeExecute(''));
      await waitFor(() => session.count('ErrorResponse') > 0);
      // Sent after the error came back: the server skips it up to the Sync.
      session.send(encodeParse('', 'select 2'), encodeBind('', ''), encodeExecute(''), encodeSync());
      await session.readyCount(2);
      session.send(encodeQuery('select 3'));
      await session.readyCount(3);
      seen.push(session.summary());
    }
    expect(seen[0]).toContain('ErrorResponse 22012');
    expect(seen[0]).toContain('DataRow 3');
    expect(seen[1]).toEqual(seen[0]);
  });

  it("sends a pipeline's rows before its Sync once the server does (a result larger than its buffer)", async () => {
    const seen: string[][] = [];
    for (const session of await rawPair()) {
      session.send(encodeParse('', 'select g from generate_series(1, 5000) g'), encodeBind('', ''), encodeExecute(''));
      await waitFor(() => session.count('DataRow') > 1000);
      session.send(encodeSync());
      await session.readyCount(2);
      seen.push(session.summary());
    }
    expect(seen[0]).toHaveLength(5004);
    expect(seen[0]!.slice(-2)).toEqual(['CommandComplete SELECT 5000', 'ReadyForQuery I']);
    expect(seen[1]).toEqual(seen[0]);
  });

  it('runs the allowed messages before a refused one, then aborts the transaction, so COMMIT keeps none of it, as a failing one direct', async () => {
    const before = await count();
    const seen: string[][] = [];
    const insert = [encodeParse('', "insert into ledger (note) values ('pipelined')"), encodeBind('', ''), encodeExecute('')];
    const [straight, sluice] = await rawPair();
    for (const [session, failing] of [[straight, 'selec 1'], [sluice, 'selec 1'], [sluice, 'select pg_terminate_backend(1)']] as const) {
      const ready = session.count('ReadyForQuery');
      session.send(encodeQuery('begin'), ...insert, encodeParse('', failing), encodeBind('', ''), encodeExecute(''), encodeSync(), encodeQuery('commit'));
      await session.readyCount(ready + 3);
      seen.push(session.summary().slice(-7));
      expect(await count()).toBe(before);
    }
    expect(seen[0]).toEqual(['ParseComplete', 'BindComplete', 'CommandComplete INSERT 0 1', 'ErrorResponse 42601', 'ReadyForQuery E', 'CommandComplete ROLLBACK', 'ReadyForQuery I']);
    expect(seen[1]).toEqual(seen[0]);
    expect(seen[2]).toEqual(seen[0]!.map((message) => message.replace('42601', '42501')));
  });
});

describe('PostgreSQL fidelity: SQL cursors used as portals', () => {
  it('answers Describe, Execute with a row limit, MOVE, FETCH and Close of a DECLAREd cursor as direct', async () => {
    const seen: string[][] = [];
    for (const session of await rawPair()) {
      const step = async (...messages: Buffer[]): Promise<void> => {
        const ready = session.count('ReadyForQuery');
        session.send(...messages);
        await session.readyCount(ready + 1);
      };
      await step(encodeQuery("begin; declare c cursor for select g, 'row ' || g as label from generate_series(1, 6) g"));
      await step(encodeDescribe('P', 'c'), encodeExecute('c', 2), encodeSync());
      await step(encodeParse('', 'move 1 in c'), encodeBind('', ''), encodeExecute(''), encodeSync());
      await step(encodeExecute('c', 1), encodeSync());
      await step(encodeQuery('fetch 1 from c'));
      await step(encodeExecute('c'), encodeSync());
      await step(encodeClose('P', 'c'), encodeSync());
      await step(encodeQuery('fetch 1 from c'));
      await step(encodeQuery('rollback'));
      seen.push(session.summary());
    }
    expect(seen[0]).toContain('DataRow 2|row 2');
    expect(seen[0]).toContain('CommandComplete MOVE 1');
    expect(seen[0]).toContain('ErrorResponse 34000');
    expect(seen[1]).toEqual(seen[0]);
  });

  it('describes and fetches a WITH HOLD cursor through its portal after the transaction ends, as direct', async () => {
    const seen: string[][] = [];
    for (const session of await rawPair()) {
      session.send(encodeQuery('declare h cursor with hold for select g from generate_series(1, 3) g'));
      await session.readyCount(2);
      session.send(encodeDescribe('P', 'h'), encodeExecute('h'), encodeClose('P', 'h'), encodeSync());
      await session.readyCount(3);
      seen.push(session.summary());
    }
    expect(seen[0]).toEqual(['CommandComplete DECLARE CURSOR', 'ReadyForQuery I', 'RowDescription g', 'DataRow 1', 'DataRow 2', 'DataRow 3', 'CommandComplete SELECT 3', 'CloseComplete', 'ReadyForQuery I']);
    expect(seen[1]).toEqual(seen[0]);
  });

  it('refuses a portal that is neither bound nor a cursor the server confirmed', async () => {
    const [, sluice] = await rawPair();
    sluice.send(encodeDescribe('P', 'nosuch'), encodeSync());
    await sluice.readyCount(2);
    expect(sluice.errors().map((e) => e.C)).toEqual(['42501']);
  });
});

describe('PostgreSQL fidelity: backend key, cancel and terminate', () => {
  it("gives the target backend's own pid: BackendKeyData, pg_backend_pid() and a NOTIFY's sender agree, as direct", async () => {
    for (const config of [directly(), await throughSluice()]) {
      const client = await open(config);
      const given = (client as unknown as { processID: number }).processID;
      const { rows } = await client.query('select pg_backend_pid() as pid');
      expect(rows[0].pid).toBe(given);
      const notified: number[] = [];
      client.on('notification', (message) => notified.push(message.processId));
      await client.query('listen fidelity_pid');
      await client.query('notify fidelity_pid');
      await waitFor(() => notified.length > 0);
      expect(notified).toEqual([given]);
    }
  });

  it('lets tooling terminate the backend by the pid the client was given: the client gets 57P01, as direct', async () => {
    const seen: string[][] = [];
    for (const config of [directly(), await throughSluice()]) {
      const client = new pg.Client(config);
      const errors: string[] = [];
      client.on('error', (error: Error) => errors.push((error as { code?: string }).code ?? error.message));
      await client.connect();
      await frontDoor.direct.query('select pg_terminate_backend($1)', [(client as unknown as { processID: number }).processID]);
      await waitFor(() => errors.length > 0);
      await new Promise((resolve) => setTimeout(resolve, 200));
      seen.push(errors);
    }
    expect(seen[0]![0]).toBe('57P01');
    expect(seen[1]).toEqual(seen[0]);
  });

  it("cancels the client's own running query with the key it was given (postgres.js), 57014 as direct", async () => {
    const cancelled = async (sql: postgres.Sql): Promise<string | undefined> => {
      // The connection is open first: what is cancelled is a running query, not a login.
      await sql`select 1`;
      const running = sql`select pg_sleep(5)`.execute();
      await new Promise((resolve) => setTimeout(resolve, 300));
      running.cancel();
      try {
        await running;
      } catch (error) {
        return (error as { code?: string }).code;
      }
      return undefined;
    };
    const directSql = postgres({ host: '127.0.0.1', port: 5432, user: 'postgres', database, max: 1 });
    const sluiceSql = postgres({ host: '127.0.0.1', port: frontDoor.port, user: 'agent', database: RESOURCE, pass: await token(), max: 1 });
    try {
      expect(await cancelled(directSql)).toBe('57014');
      expect(await cancelled(sluiceSql)).toBe('57014');
      expect(await sluiceSql`select 1 as one`).toEqual([{ one: 1 }]);
    } finally {
      await directSql.end({ timeout: 1 });
      await sluiceSql.end({ timeout: 1 });
    }
  });
});

describe('PostgreSQL fidelity with postgres.js: pipelined queries', () => {
  const opened: postgres.Sql[] = [];
  afterAll(async () => {
    for (const sql of opened) await sql.end({ timeout: 1 }).catch(() => {});
  });
  const directSql = (): postgres.Sql => {
    const sql = postgres({ host: '127.0.0.1', port: 5432, user: 'postgres', database, max: 1, onnotice: () => {} });
    opened.push(sql);
    return sql;
  };
  const sluiceSql = async (): Promise<postgres.Sql> => {
    const sql = postgres({ host: '127.0.0.1', port: frontDoor.port, user: 'agent', database: RESOURCE, pass: await token(), max: 1, onnotice: () => {} });
    opened.push(sql);
    return sql;
  };

  it('reads a result in chunks through a cursor over the unnamed portal (Execute with a row limit, PortalSuspended), as direct', async () => {
    const read = async (sql: postgres.Sql): Promise<number[][]> => {
      const chunks: number[][] = [];
      for await (const rows of sql`select g from generate_series(1, ${7}::int) g`.cursor(3)) chunks.push(rows.map((row) => row.g as number));
      return chunks;
    };
    const expected = await read(directSql());
    expect(expected).toEqual([[1, 2, 3], [4, 5, 6], [7]]);
    expect(await read(await sluiceSql())).toEqual(expected);
  });

  it('answers a pipeline of queries with one failing and one refused in the middle as direct: each gets its own answer', async () => {
    const run = async (sql: postgres.Sql): Promise<unknown[]> => {
      const settled = await Promise.allSettled([
        sql`select ${1}::int as n`,
        sql`select 1/${0}::int as n`,
        sql`select ${3}::int as n`,
        sql.unsafe('selec 4'),
        sql`select n from generate_series(${1}::int, ${3}::int) n`,
        sql`select * from ${sql('ledger')} where id < ${0}`,
      ]);
      return settled.map((result) => (result.status === 'fulfilled' ? [...result.value] : (result.reason as { code?: string }).code));
    };
    const expected = await run(directSql());
    expect(expected).toEqual([[{ n: 1 }], '22012', [{ n: 3 }], '42601', [{ n: 1 }, { n: 2 }, { n: 3 }], []]);
    expect(await run(await sluiceSql())).toEqual(expected);
  });

});
