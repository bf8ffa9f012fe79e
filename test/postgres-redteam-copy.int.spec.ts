import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { encodeBind, encodeCopyData, encodeCopyDone, encodeCopyFail, encodeExecute, encodeParse, encodeQuery, encodeSync } from '@sluice/codec-pg';
import { type RawPostgresSession, usePostgresFrontDoor } from './support/postgres-proxy-harness.js';
import { searchPathFrontDoorOptions } from './support/search-path-fixture.js';

/**
 * Red team of search_path around COPY FROM: a trigger fired by the COPY (or a function its WHERE
 * calls) sets search_path, and the statements after it must be decided on the path the server
 * then reads, or refused; the proxy's own read of the path must never reach the target while it
 * is in COPY mode (a hang, or a broken session where the server direct would go on).
 */

const database = `sluice_rt_copy_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
const RESOURCE = 'rt-copy-db';

const frontDoor = usePostgresFrontDoor(searchPathFrontDoorOptions(RESOURCE, database, 'rt-copy-int'), 120_000);

const PATH_ROW = encodeCopyData('other, public\n');

/** Waits up to `ms` for `n` ReadyForQuery (or the close); never throws: a hang shows in the summary. */
const settle = async (session: RawPostgresSession, n: number, ms = 3000): Promise<void> => {
  const deadline = Date.now() + ms;
  while (session.count('ReadyForQuery') < n && !session.closed && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
};
const waitCopyIn = async (session: RawPostgresSession, n = 1): Promise<void> => {
  const deadline = Date.now() + 3000;
  while (session.count('CopyInResponse') < n && !session.closed && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
};
const visible = (session: RawPostgresSession): string[] => session.summary().filter((line) => !line.startsWith('RowDescription'));

type Step = { send: Buffer[]; copyIns?: number; readies?: number };

/** Runs the same steps direct and through Sluice; returns each one's summary (a trailing `open`/`closed`). */
const both = async (steps: Step[]): Promise<{ direct: string[]; sluice: string[] }> => {
  const [direct, proxied] = await frontDoor.rawPair(['all']);
  const out: string[][] = [];
  for (const session of [direct, proxied]) {
    for (const step of steps) {
      session.send(...step.send);
      if (step.copyIns !== undefined) await waitCopyIn(session, step.copyIns);
      if (step.readies !== undefined) await settle(session, step.readies + 1);
    }
    out.push([...visible(session), session.closed ? 'closed' : 'open']);
  }
  await frontDoor.direct.query('delete from log');
  return { direct: out[0]!, sluice: out[1]! };
};

describe('search_path around COPY FROM (and other code a statement does not show)', () => {
  it('one message `COPY log FROM STDIN; SELECT v FROM t`: the SELECT is refused (it read other.t past the deny)', async () => {
    const seen = await both([{ send: [encodeQuery('copy log from stdin; select v from t')], copyIns: 1 }, { send: [PATH_ROW, encodeCopyDone()], readies: 1 }]);
    expect(seen.direct).toEqual(['CopyInResponse', 'CommandComplete COPY 1', 'DataRow other', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
    expect(seen.sluice).toEqual(['ErrorResponse 42501', 'ReadyForQuery I', 'open']);
  });
  it('one message `INSERT INTO log ...; SELECT v FROM t`: the SELECT is refused (it read other.t past the deny)', async () => {
    const seen = await both([{ send: [encodeQuery("insert into log values ('other, public'); select v from t")], readies: 1 }]);
    expect(seen.direct).toEqual(['CommandComplete INSERT 0 1', 'DataRow other', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
    expect(seen.sluice).toEqual(['ErrorResponse 42501', 'ReadyForQuery I', 'open']);
  });
  it('one message calling a function that sets the path, then reading t: refused', async () => {
    const seen = await both([{ send: [encodeQuery("select public.setpath('other, public'); select v from t")], readies: 1 }]);
    expect(seen.direct).toEqual(['DataRow other, public', 'CommandComplete SELECT 1', 'DataRow other', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
    expect(seen.sluice).toEqual(['ErrorResponse 42501', 'ReadyForQuery I', 'open']);
  });
  it('one message reading a view (or FETCHing a cursor over it) whose function sets the path, then reading t: refused (it read other.t)', async () => {
    const seen = await both([{ send: [encodeQuery('select path from sets_path; select v from t')], readies: 1 }, { send: [encodeQuery('set search_path = public'), encodeQuery('begin; declare c cursor for select path from public.sets_path; fetch c; select v from t; commit')], readies: 3 }]);
    expect(seen.direct).toEqual(['DataRow other, public', 'CommandComplete SELECT 1', 'DataRow other', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'CommandComplete SET', 'ReadyForQuery I', 'CommandComplete BEGIN', 'CommandComplete DECLARE CURSOR', 'DataRow other, public', 'CommandComplete FETCH 1', 'DataRow other', 'CommandComplete SELECT 1', 'CommandComplete COMMIT', 'ReadyForQuery I', 'open']);
    expect(seen.sluice).toEqual(['ErrorResponse 42501', 'ReadyForQuery I', 'CommandComplete SET', 'ReadyForQuery I', 'ErrorResponse 42501', 'ReadyForQuery I', 'open']);
  });
  // In a pipeline, a statement after a write whose trigger may set the path (before the Sync that
  // reads it again) is decided on every schema holding its unqualified names: other.t is denied.
  it('extended INSERT whose trigger sets the path, then Parse/Bind/Execute before the Sync: the read of other.t is refused', async () => {
    const seen = await both([{ send: [encodeParse('', "insert into log values ('other, public')"), encodeBind('', ''), encodeExecute(''), encodeParse('', 'select v from t'), encodeBind('', ''), encodeExecute(''), encodeSync()], readies: 1 }]);
    expect(seen.direct).toEqual(['ParseComplete', 'BindComplete', 'CommandComplete INSERT 0 1', 'ParseComplete', 'BindComplete', 'DataRow other', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
    expect(seen.sluice).toEqual(['ParseComplete', 'BindComplete', 'CommandComplete INSERT 0 1', 'ErrorResponse 42501', 'ReadyForQuery I', 'open']);
  });
  it('COPY FROM STDIN inside a transaction: the next read is decided on the path the trigger set', async () => {
    const seen = await both([{ send: [encodeQuery('begin')], readies: 1 }, { send: [encodeQuery('copy log from stdin')], copyIns: 1 }, { send: [PATH_ROW, encodeCopyDone()], readies: 2 }, { send: [encodeQuery('select v from t')], readies: 3 }, { send: [encodeQuery('commit'), encodeQuery('select v from t')], readies: 5 }]);
    expect(seen.direct).toEqual(['CommandComplete BEGIN', 'ReadyForQuery T', 'CopyInResponse', 'CommandComplete COPY 1', 'ReadyForQuery T', 'DataRow other', 'CommandComplete SELECT 1', 'ReadyForQuery T', 'CommandComplete COMMIT', 'ReadyForQuery I', 'DataRow other', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
    expect(seen.sluice).toEqual(['CommandComplete BEGIN', 'ReadyForQuery T', 'CopyInResponse', 'CommandComplete COPY 1', 'ReadyForQuery T', 'ErrorResponse 42501', 'ReadyForQuery E', 'CommandComplete ROLLBACK', 'ReadyForQuery I', 'DataRow public', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
  });
  it('COPY FROM STDIN that fails before copy-in (a bad column, a missing table): the session goes on as direct', async () => {
    const seen = await both([{ send: [encodeQuery('copy log (nosuch) from stdin'), encodeQuery('select v from t')], readies: 2 }, { send: [encodeQuery('copy nosuch from stdin'), encodeQuery('select v from t')], readies: 4 }]);
    expect(seen.direct).toEqual(['ErrorResponse 42703', 'ReadyForQuery I', 'DataRow public', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'ErrorResponse 42P01', 'ReadyForQuery I', 'DataRow public', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
    expect(seen.sluice).toEqual(['ErrorResponse 42703', 'ReadyForQuery I', 'DataRow public', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'ErrorResponse 42P01', 'ReadyForQuery I', 'DataRow public', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
  });
  it('CopyFail instead of CopyDone: the server rolls the path back, the proxy reads it again, as direct', async () => {
    const seen = await both([{ send: [encodeQuery('copy log from stdin')], copyIns: 1 }, { send: [PATH_ROW, encodeCopyFail('no'), encodeQuery('select v from t')], readies: 2 }]);
    expect(seen.direct).toEqual(['CopyInResponse', 'ErrorResponse 57014', 'ReadyForQuery I', 'DataRow public', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
    expect(seen.sluice).toEqual(['CopyInResponse', 'ErrorResponse 57014', 'ReadyForQuery I', 'DataRow public', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
  });
  it('a Query in the middle of copy data: the server answers 08P01 and closes, as direct; no hang', async () => {
    const seen = await both([{ send: [encodeQuery('copy log from stdin')], copyIns: 1 }, { send: [PATH_ROW, encodeQuery('select v from t')], readies: 1 }, { send: [encodeQuery('select v from t')], readies: 2 }]);
    expect(seen.direct).toEqual(['CopyInResponse', 'ErrorResponse 08P01', 'ErrorResponse 08P01', 'closed']);
    expect(seen.sluice).toEqual(['CopyInResponse', 'ErrorResponse 08P01', 'ErrorResponse 08P01', 'closed']);
  });
  it('a Parse in the middle of copy data: the server answers 08P01 and closes, as direct; no hang', async () => {
    const seen = await both([{ send: [encodeQuery('copy log from stdin')], copyIns: 1 }, { send: [PATH_ROW, encodeParse('', 'select v from t'), encodeBind('', ''), encodeExecute(''), encodeSync()], readies: 1 }, { send: [encodeQuery('select v from t')], readies: 3 }]);
    expect(seen.direct).toEqual(['CopyInResponse', 'ErrorResponse 08P01', 'ErrorResponse 08P01', 'closed']);
    expect(seen.sluice).toEqual(['CopyInResponse', 'ErrorResponse 08P01', 'ErrorResponse 08P01', 'closed']);
  });
  it('extended COPY, then a Query before the CopyDone: the server answers 08P01 and closes, as direct; no hang', async () => {
    const seen = await both([{ send: [encodeParse('', 'copy log from stdin'), encodeBind('', ''), encodeExecute(''), encodeSync()], copyIns: 1 }, { send: [PATH_ROW, encodeQuery('select v from t')] , readies: 0 }, { send: [encodeSync(), encodeQuery('select v from t')], readies: 2 }]);
    expect(seen.direct).toEqual(['ParseComplete', 'BindComplete', 'CopyInResponse', 'ErrorResponse 08P01', 'ErrorResponse 08P01', 'closed']);
    expect(seen.sluice).toEqual(['ParseComplete', 'BindComplete', 'CopyInResponse', 'ErrorResponse 08P01', 'ErrorResponse 08P01', 'closed']);
  });
  it('extended COPY with a Parse/Bind/Execute pipelined before its copy data: the server answers 08P01, as direct', async () => {
    const seen = await both([{ send: [encodeParse('', 'copy log from stdin'), encodeBind('', ''), encodeExecute(''), encodeParse('', 'select v from t'), encodeBind('', ''), encodeExecute(''), encodeSync()], copyIns: 1 }, { send: [PATH_ROW, encodeCopyDone(), encodeSync(), encodeQuery('select v from t')], readies: 3 }]);
    expect(seen.direct).toEqual(['ParseComplete', 'BindComplete', 'CopyInResponse', 'ErrorResponse 08P01', 'ErrorResponse 08P01', 'closed']);
    expect(seen.sluice).toEqual(['ParseComplete', 'BindComplete', 'CopyInResponse', 'ErrorResponse 08P01', 'ErrorResponse 08P01', 'closed']);
  });
  it('extended COPY, CopyDone, then Parse/Bind/Execute before the Sync: refused (it read other.t past the deny)', async () => {
    const seen = await both([{ send: [encodeParse('', 'copy log from stdin'), encodeBind('', ''), encodeExecute('')], copyIns: 1 }, { send: [PATH_ROW, encodeCopyDone(), encodeParse('', 'select v from t'), encodeBind('', ''), encodeExecute(''), encodeSync(), encodeQuery('select v from t')], readies: 2 }]);
    expect(seen.direct).toEqual(['ParseComplete', 'BindComplete', 'CopyInResponse', 'CommandComplete COPY 1', 'ParseComplete', 'BindComplete', 'DataRow other', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'DataRow other', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
    expect(seen.sluice).toEqual(['ParseComplete', 'BindComplete', 'CopyInResponse', 'CommandComplete COPY 1', 'ErrorResponse 42501', 'ReadyForQuery I', 'DataRow public', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
  });
  it('COPY FROM STDIN in FORMAT binary: the next read is decided on the path the trigger set', async () => {
    const header = Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8)]);
    const value = Buffer.from('other, public');
    const row = Buffer.alloc(2 + 4 + value.length);
    row.writeInt16BE(1, 0);
    row.writeInt32BE(value.length, 2);
    value.copy(row, 6);
    const trailer = Buffer.from([0xff, 0xff]);
    const seen = await both([{ send: [encodeQuery('copy log from stdin (format binary)')], copyIns: 1 }, { send: [encodeCopyData(Buffer.concat([header, row, trailer])), encodeCopyDone(), encodeQuery('select v from t')], readies: 2 }]);
    expect(seen.direct).toEqual(['CopyInResponse', 'CommandComplete COPY 1', 'ReadyForQuery I', 'DataRow other', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
    expect(seen.sluice).toEqual(['CopyInResponse', 'CommandComplete COPY 1', 'ReadyForQuery I', 'ErrorResponse 42501', 'ReadyForQuery I', 'open']);
  });
  it('two COPYs in one message, the second naming its table without a schema: refused', async () => {
    const seen = await both([{ send: [encodeQuery('copy plain from stdin; copy log from stdin')], copyIns: 1 }, { send: [encodeCopyData('x\n'), encodeCopyDone()], copyIns: 2 }, { send: [PATH_ROW, encodeCopyDone(), encodeQuery('select v from t')], readies: 2 }]);
    expect(seen.direct).toEqual(['CopyInResponse', 'CommandComplete COPY 1', 'CopyInResponse', 'CommandComplete COPY 1', 'ReadyForQuery I', 'DataRow other', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
    expect(seen.sluice).toEqual(['ErrorResponse 42501', 'ReadyForQuery I', 'DataRow public', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
  });
  it('COPY FROM PROGRAM (the proxy logs in to the target as a superuser): the path is read after it', async () => {
    const seen = await both([{ send: [encodeQuery("copy log from program 'echo other, public'"), encodeQuery('select v from t')], readies: 2 }, { send: [encodeQuery("set search_path = public; copy log from program 'echo other, public'; select v from t")], readies: 3 }]);
    expect(seen.direct).toEqual(['CommandComplete COPY 1', 'ReadyForQuery I', 'DataRow other', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'CommandComplete SET', 'CommandComplete COPY 1', 'DataRow other', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
    expect(seen.sluice).toEqual(['CommandComplete COPY 1', 'ReadyForQuery I', 'ErrorResponse 42501', 'ReadyForQuery I', 'ErrorResponse 42501', 'ReadyForQuery I', 'open']);
  });
  it('COPY FROM PROGRAM in a DO block: the path is read after it', async () => {
    const seen = await both([{ send: [encodeQuery("do $$ begin execute 'copy log from program ''echo other, public'''; end $$"), encodeQuery('select v from t')], readies: 2 }]);
    expect(seen.direct).toEqual(['CommandComplete DO', 'ReadyForQuery I', 'DataRow other', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
    expect(seen.sluice).toEqual(['CommandComplete DO', 'ReadyForQuery I', 'ErrorResponse 42501', 'ReadyForQuery I', 'open']);
  });
  it('COPY FROM STDIN whose WHERE calls a function that sets the path: refused', async () => {
    const seen = await both([{ send: [encodeQuery("copy plain from stdin where public.setpath('other, public') is not null")], copyIns: 1 }, { send: [encodeCopyData('x\n'), encodeCopyDone(), encodeQuery('select v from t')], readies: 2 }]);
    expect(seen.direct).toEqual(['CopyInResponse', 'CommandComplete COPY 1', 'ReadyForQuery I', 'DataRow other', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
    expect(seen.sluice).toEqual(['ErrorResponse 42501', 'ReadyForQuery I', 'DataRow public', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
  });
});
