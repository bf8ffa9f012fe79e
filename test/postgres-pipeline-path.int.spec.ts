import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { encodeBind, encodeClose, encodeExecute, encodeFlush, encodeParse, encodeQuery, encodeSync } from '@sluice/codec-pg';
import { parseConfig } from '@sluice/config';
import { type RawPostgresSession, usePostgresFrontDoor, WAYS } from './support/postgres-proxy-harness.js';
import { searchPathFrontDoorOptions } from './support/search-path-fixture.js';

/*
 * Red team of search_path inside one extended-protocol pipeline (no Sync in between): an Execute
 * whose trigger (or view function) sets the path, then statements that name tables without their
 * schema. The proxy reads the path again only at the Sync; until then such a statement is decided
 * on every schema that holds a relation of its names. Raw protocol bytes, direct and through Sluice.
 * `all` may do anything but read other.t; `writers` may read and write an allow-list of tables, and
 * other.people.ssn is redacted for them.
 */

const database = `sluice_pp_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
const RESOURCE = 'pipeline-path-db';
const RAW_SSN = '123-45-6789';

const base = searchPathFrontDoorOptions(RESOURCE, database, 'pipeline-path-int');
const frontDoor = usePostgresFrontDoor(
  {
    ...base,
    config: parseConfig({
      resources: [{ name: RESOURCE, type: 'postgres', listen: '127.0.0.1:0', target: { host: '127.0.0.1', database }, credentials: { username: 'postgres' } }],
      masking: { profiles: { guarded: { detectors: [], strategy: 'redact', columns: [{ column: 'other.people.ssn', strategy: 'redact' }] } } },
      rules: [
        { name: 'everything', effect: 'allow', subjects: { groups: ['all'] }, resources: [RESOURCE], actions: ['read', 'write', 'ddl', 'admin'] },
        { name: 'writers', effect: 'allow', subjects: { groups: ['writers'] }, resources: [RESOURCE], actions: ['read', 'write'], tables: ['public.log', 'public.t', 'public.plain', 'public.people', 'other.people'], mask: 'guarded' },
        { name: 'not-the-other-t', effect: 'deny', tables: ['other.t'] },
      ],
    }),
    setupSql: `${base.setupSql}
      create table public.people (id int, ssn text); insert into public.people values (1, 'public-ssn');
      create table other.people (id int, ssn text); insert into other.people values (1, '${RAW_SSN}');`,
  },
  120_000,
);

/** Waits up to 3 s for `n` ReadyForQuery (or the close); never throws: a hang shows in the summary. */
const settle = async (session: RawPostgresSession, n: number): Promise<void> => {
  const deadline = Date.now() + 3000;
  while (session.count('ReadyForQuery') < n && !session.closed && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
};
const visible = (session: RawPostgresSession): string[] => session.summary().filter((line) => !line.startsWith('RowDescription'));

/** Each step's frames, then a wait for that many ReadyForQuery in all (after the startup's). */
type Step = { send: Buffer[]; readies: number };

/** Runs the same steps direct (as the superuser) and through Sluice (with `groups`); each one's summary and a trailing `open`/`closed`. */
const both = async (steps: Step[], groups = ['all']): Promise<{ direct: string[]; sluice: string[] }> => {
  const [direct, proxied] = await frontDoor.rawPair(groups);
  const out: string[][] = [];
  for (const session of [direct, proxied]) {
    for (const step of steps) {
      session.send(...step.send);
      await settle(session, step.readies + 1);
    }
    out.push([...visible(session), session.closed ? 'closed' : 'open']);
    // Each way starts from the same rows: what the direct run wrote must not show through Sluice.
    await frontDoor.direct.query('delete from log; delete from plain');
  }
  return { direct: out[0]!, sluice: out[1]! };
};

const SETS_PATH = [encodeParse('', "insert into log values ('other, public')"), encodeBind('', ''), encodeExecute('')];
const READ_T = [encodeParse('', 'select v from t'), encodeBind('', ''), encodeExecute('')];

describe('search_path changed by hidden code inside one extended-protocol pipeline', () => {
  it('a statement Parsed before the trigger, bound and executed after it in the pipeline: refused (PostgreSQL plans it again and reads other.t)', async () => {
    const seen = await both([{ send: [encodeParse('s1', 'select v from t'), ...SETS_PATH, encodeBind('', 's1'), encodeExecute(''), encodeSync()], readies: 1 }]);
    expect(seen.direct).toEqual(['ParseComplete', 'ParseComplete', 'BindComplete', 'CommandComplete INSERT 0 1', 'BindComplete', 'DataRow other', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
    expect(seen.sluice).toEqual(['ParseComplete', 'ParseComplete', 'BindComplete', 'CommandComplete INSERT 0 1', 'ErrorResponse 42501', 'ReadyForQuery I', 'open']);
  });

  it('a statement prepared in an earlier round trip, bound after the trigger in one pipeline: refused', async () => {
    const seen = await both([
      { send: [encodeParse('s2', 'select v from t'), encodeSync()], readies: 1 },
      { send: [...SETS_PATH, encodeBind('', 's2'), encodeExecute(''), encodeSync()], readies: 2 },
    ]);
    expect(seen.direct).toEqual(['ParseComplete', 'ReadyForQuery I', 'ParseComplete', 'BindComplete', 'CommandComplete INSERT 0 1', 'BindComplete', 'DataRow other', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
    expect(seen.sluice).toEqual(['ParseComplete', 'ReadyForQuery I', 'ParseComplete', 'BindComplete', 'CommandComplete INSERT 0 1', 'ErrorResponse 42501', 'ReadyForQuery I', 'open']);
  });

  it('a SQL PREPAREd statement EXECUTEd after the trigger in the pipeline: refused', async () => {
    const seen = await both([
      { send: [encodeQuery('prepare q as select v from t')], readies: 1 },
      { send: [...SETS_PATH, encodeParse('', 'execute q'), encodeBind('', ''), encodeExecute(''), encodeSync()], readies: 2 },
    ]);
    expect(seen.direct).toEqual(['CommandComplete PREPARE', 'ReadyForQuery I', 'ParseComplete', 'BindComplete', 'CommandComplete INSERT 0 1', 'ParseComplete', 'BindComplete', 'DataRow other', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
    expect(seen.sluice).toEqual(['CommandComplete PREPARE', 'ReadyForQuery I', 'ParseComplete', 'BindComplete', 'CommandComplete INSERT 0 1', 'ErrorResponse 42501', 'ReadyForQuery I', 'open']);
  });

  it('the INSERT and the read in two batches split by a Flush, one Sync at the end: refused', async () => {
    const seen = await both([
      { send: [...SETS_PATH, encodeFlush()], readies: 0 },
      { send: [...READ_T, encodeSync()], readies: 1 },
    ]);
    expect(seen.direct).toEqual(['ParseComplete', 'BindComplete', 'CommandComplete INSERT 0 1', 'ParseComplete', 'BindComplete', 'DataRow other', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
    expect(seen.sluice).toEqual(['ParseComplete', 'BindComplete', 'CommandComplete INSERT 0 1', 'ErrorResponse 42501', 'ReadyForQuery I', 'open']);
  });

  it('a simple Query sent after the INSERT before any Sync: refused', async () => {
    const seen = await both([{ send: [...SETS_PATH, encodeQuery('select v from t'), encodeSync()], readies: 2 }]);
    expect(seen.direct).toEqual(['ParseComplete', 'BindComplete', 'CommandComplete INSERT 0 1', 'DataRow other', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'ReadyForQuery I', 'open']);
    expect(seen.sluice).not.toContain('DataRow other');
    expect(seen.sluice).toContain('ErrorResponse 42501');
  });

  it('a view whose function sets the path, read in the pipeline, then a read of t: refused', async () => {
    const seen = await both([{ send: [encodeParse('', 'select path from sets_path'), encodeBind('', ''), encodeExecute(''), ...READ_T, encodeSync()], readies: 1 }]);
    expect(seen.direct).toEqual(['ParseComplete', 'BindComplete', 'DataRow other, public', 'CommandComplete SELECT 1', 'ParseComplete', 'BindComplete', 'DataRow other', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
    expect(seen.sluice).toEqual(['ParseComplete', 'BindComplete', 'DataRow other, public', 'CommandComplete SELECT 1', 'ErrorResponse 42501', 'ReadyForQuery I', 'open']);
  });

  it('a CTE over t after the trigger: refused; a read of public.t by its schema goes through, as direct', async () => {
    const seen = await both([
      { send: [...SETS_PATH, encodeParse('', 'with c as (select 1) select v from t, c'), encodeBind('', ''), encodeExecute(''), encodeSync()], readies: 1 },
      { send: [...SETS_PATH, encodeParse('', 'select v from public.t'), encodeBind('', ''), encodeExecute(''), encodeSync()], readies: 2 },
    ]);
    expect(seen.direct).toEqual(['ParseComplete', 'BindComplete', 'CommandComplete INSERT 0 1', 'ParseComplete', 'BindComplete', 'DataRow other', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'ParseComplete', 'BindComplete', 'CommandComplete INSERT 0 1', 'ParseComplete', 'BindComplete', 'DataRow public', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
    expect(seen.sluice).toEqual(['ParseComplete', 'BindComplete', 'CommandComplete INSERT 0 1', 'ErrorResponse 42501', 'ReadyForQuery I', 'ParseComplete', 'BindComplete', 'CommandComplete INSERT 0 1', 'ParseComplete', 'BindComplete', 'DataRow public', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
  });

  it('a portal bound before the trigger and executed after it reads what it was planned on (public.t), as direct', async () => {
    const seen = await both([{ send: [encodeParse('s3', 'select v from t'), encodeBind('p3', 's3'), ...SETS_PATH, encodeExecute('p3'), encodeSync()], readies: 1 }]);
    expect(seen.direct).toEqual(['ParseComplete', 'BindComplete', 'ParseComplete', 'BindComplete', 'CommandComplete INSERT 0 1', 'DataRow public', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
    expect(seen.sluice).toEqual(seen.direct);
  });

  // Each row's trigger sets the path it carries: log is public's alone, so every INSERT reads it.
  it('a driver-style batch: one INSERT statement into the triggered table bound and executed three times in one pipeline goes through, as direct', async () => {
    const batch = [encodeParse('ins', 'insert into log values ($1)'), ...['other, public', 'public', 'other, public'].flatMap((value) => [encodeBind('', 'ins', [value]), encodeExecute('')]), encodeClose('S', 'ins'), encodeSync()];
    for (const groups of [['all'], ['writers']]) {
      const seen = await both([{ send: batch, readies: 1 }], groups);
      const expected = ['ParseComplete', ...Array.from({ length: 3 }, () => ['BindComplete', 'CommandComplete INSERT 0 1']).flat(), 'CloseComplete', 'ReadyForQuery I', 'open'];
      expect(seen.direct).toEqual(expected);
      expect(seen.sluice).toEqual(expected);
    }
  });

  it('several INSERTs, each its own Parse, into the triggered table in one pipeline go through, as direct', async () => {
    const inserts = ['other, public', 'public', 'other, public'].flatMap((value) => [encodeParse('', `insert into log values ('${value}')`), encodeBind('', ''), encodeExecute('')]);
    for (const groups of [['all'], ['writers']]) {
      const seen = await both([{ send: [...inserts, encodeSync()], readies: 1 }], groups);
      const expected = [...Array.from({ length: 3 }, () => ['ParseComplete', 'BindComplete', 'CommandComplete INSERT 0 1']).flat(), 'ReadyForQuery I', 'open'];
      expect(seen.direct).toEqual(expected);
      expect(seen.sluice).toEqual(expected);
    }
  });

  it('writers: a column rule on other.people.ssn masks a value computed from an unqualified people after the trigger', async () => {
    const seen = await both([{ send: [...SETS_PATH, encodeParse('', 'select upper(ssn) from people'), encodeBind('', ''), encodeExecute(''), encodeSync()], readies: 1 }], ['writers']);
    expect(seen.direct).toContain(`DataRow ${RAW_SSN}`);
    expect(seen.sluice).not.toContain(`DataRow ${RAW_SSN}`);
    expect(seen.sluice.filter((line) => line.startsWith('DataRow'))).toHaveLength(1);
  });

  it('writers: copying the covered column out through an unqualified people after the trigger, into a table read unmasked: refused', async () => {
    const seen = await both([
      { send: [...SETS_PATH, encodeParse('', 'insert into plain select ssn from people'), encodeBind('', ''), encodeExecute(''), encodeSync()], readies: 1 },
      { send: [encodeQuery('select p from public.plain')], readies: 2 },
    ], ['writers']);
    expect(seen.direct).toContain(`DataRow ${RAW_SSN}`);
    expect(seen.sluice).not.toContain(`DataRow ${RAW_SSN}`);
    expect(seen.sluice.slice(0, 5)).toEqual(['ParseComplete', 'BindComplete', 'CommandComplete INSERT 0 1', 'ErrorResponse 42501', 'ReadyForQuery I']);
  });

  it('writers: a read after the trigger of a name the allow-list covers in one schema only (t: public.t, other.t) is refused', async () => {
    const seen = await both([{ send: [...SETS_PATH, ...READ_T, encodeSync()], readies: 1 }], ['writers']);
    expect(seen.sluice).toEqual(['ParseComplete', 'BindComplete', 'CommandComplete INSERT 0 1', 'ErrorResponse 42501', 'ReadyForQuery I', 'open']);
  });

  it('a built-in call such as count(*) earlier in the pipeline cannot change the path: the read of t after it goes through, as direct', async () => {
    const seen = await both([{ send: [encodeParse('', 'select count(*) from plain'), encodeBind('', ''), encodeExecute(''), ...READ_T, encodeSync()], readies: 1 }]);
    expect(seen.direct).toEqual(['ParseComplete', 'BindComplete', 'DataRow 0', 'CommandComplete SELECT 1', 'ParseComplete', 'BindComplete', 'DataRow public', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
    expect(seen.sluice).toEqual(seen.direct);
  });

  // postgres.js ends each query with a Sync: the path is read again between them. A guard that the
  // pipeline's decisions on an unknown path leave a real driver's pipelining as it was.
  it('postgres.js pipelining two writes into the triggered table, then a read of t: the writes go through, the read is refused', async () => {
    const outcomes: Record<string, string[]> = {};
    for (const way of WAYS) {
      const sql = await frontDoor.postgresJs(way, ['all']);
      try {
        const settled = await Promise.allSettled([sql`insert into log values (${'other, public'})`, sql`insert into log values (${'other, public'})`, sql`select v from t`]);
        outcomes[way] = settled.map((result) => (result.status === 'fulfilled' ? `rows ${JSON.stringify(result.value)}` : `error ${(result.reason as { code?: string }).code ?? ''}`));
      } finally {
        await sql.end();
        await frontDoor.direct.query('delete from log');
      }
    }
    expect(outcomes.direct).toEqual(['rows []', 'rows []', 'rows [{"v":"other"}]']);
    expect(outcomes.sluice).toEqual(['rows []', 'rows []', 'error 42501']);
  });

  describe('red team as writers (raw protocol bytes)', () => {
    it('the unnamed statement Parsed before a named INSERT runs, bound after it: refused', async () => {
      const seen = await both([{ send: [encodeParse('', 'select v from t'), encodeParse('ins2', "insert into log values ('other, public')"), encodeBind('p', 'ins2'), encodeExecute('p'), encodeBind('', ''), encodeExecute(''), encodeSync()], readies: 1 }], ['writers']);
      expect(seen.direct).toContain('DataRow other');
      expect(seen.sluice).toEqual(['ParseComplete', 'ParseComplete', 'BindComplete', 'CommandComplete INSERT 0 1', 'ErrorResponse 42501', 'ReadyForQuery I', 'open']);
    });

    it('a function call that sets the path, executed in the pipeline, then a read of t: refused', async () => {
      const seen = await both([{ send: [encodeParse('', "select public.setpath('other, public')"), encodeBind('', ''), encodeExecute(''), ...READ_T, encodeSync()], readies: 1 }]);
      expect(seen.direct).toEqual(['ParseComplete', 'BindComplete', 'DataRow other, public', 'CommandComplete SELECT 1', 'ParseComplete', 'BindComplete', 'DataRow other', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
      expect(seen.sluice).not.toContain('DataRow other');
    });

    it('a statement Parsed before a SET search_path in the pipeline, bound after it: refused (PostgreSQL plans it again on the new path)', async () => {
      const seen = await both([{ send: [encodeParse('s4', 'select v from t'), encodeParse('', 'set search_path = other, public'), encodeBind('', ''), encodeExecute(''), encodeBind('', 's4'), encodeExecute(''), encodeSync()], readies: 1 }], ['writers']);
      expect(seen.direct).toEqual(['ParseComplete', 'ParseComplete', 'BindComplete', 'CommandComplete SET', 'BindComplete', 'DataRow other', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
      expect(seen.sluice).toEqual(['ParseComplete', 'ParseComplete', 'BindComplete', 'CommandComplete SET', 'ErrorResponse 42501', 'ReadyForQuery I', 'open']);
    });

    it('a write, a DECLARE and a COPY naming t after the trigger: each refused (the server would write or read other.t)', async () => {
      for (const text of ['update t set v = v', 'declare c cursor with hold for select v from t', 'copy (select v from t) to stdout', 'select v from only t']) {
        const seen = await both([{ send: [...SETS_PATH, encodeParse('', text), encodeBind('', ''), encodeExecute(''), encodeSync()], readies: 1 }], ['writers']);
        expect(seen.sluice, text).toEqual(['ParseComplete', 'BindComplete', 'CommandComplete INSERT 0 1', 'ErrorResponse 42501', 'ReadyForQuery I', 'open']);
      }
    });

    it('a name no schema holds, with quotes in it: refused as every schema, the side connection unharmed', async () => {
      const seen = await both([{ send: [...SETS_PATH, encodeParse('', `select * from "x'']) or true; --"`), encodeBind('', ''), encodeExecute(''), encodeSync()], readies: 1 }, { send: [encodeQuery('select v from public.t')], readies: 2 }], ['writers']);
      expect(seen.direct.slice(0, 4)).toEqual(['ParseComplete', 'BindComplete', 'CommandComplete INSERT 0 1', 'ErrorResponse 42P01']);
      expect(seen.sluice).toEqual(['ParseComplete', 'BindComplete', 'CommandComplete INSERT 0 1', 'ErrorResponse 42501', 'ReadyForQuery I', 'DataRow public', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
      // Refused by the rules on every schema, not because the catalog read failed.
      const decided = frontDoor.events.findLast((e) => e.kind === 'command.decided' && String(e.data.command).includes('or true'));
      expect(JSON.stringify(decided?.data)).toContain('information_schema.x');
    });

    it("a TOAST table named without its schema after a trigger that puts pg_toast on the path: refused (it reads other.t's values)", async () => {
      const toast = String((await frontDoor.direct.query("select c.reltoastrelid::regclass::text as name from pg_class c where c.oid = 'other.t'::regclass")).rows[0].name).replace(/^pg_toast\./, '');
      const seen = await both([{ send: [encodeParse('', "insert into log values ('pg_toast, public')"), encodeBind('', ''), encodeExecute(''), encodeParse('', `select count(*) from ${toast}`), encodeBind('', ''), encodeExecute(''), encodeSync()], readies: 1 }]);
      expect(seen.direct).toEqual(['ParseComplete', 'BindComplete', 'CommandComplete INSERT 0 1', 'ParseComplete', 'BindComplete', 'DataRow 0', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
      expect(seen.sluice).toEqual(['ParseComplete', 'BindComplete', 'CommandComplete INSERT 0 1', 'ErrorResponse 42501', 'ReadyForQuery I', 'open']);
    });

    it('a catalog relation read after the trigger (psql-style introspection) still goes through, as direct', async () => {
      const seen = await both([{ send: [...SETS_PATH, encodeParse('', "select relname from pg_class where relname = 'log'"), encodeBind('', ''), encodeExecute(''), encodeSync()], readies: 1 }], ['writers']);
      expect(seen.direct).toEqual(['ParseComplete', 'BindComplete', 'CommandComplete INSERT 0 1', 'ParseComplete', 'BindComplete', 'DataRow log', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
      expect(seen.sluice).toEqual(seen.direct);
    });

    it('after the Sync the path is read again: the next pipeline reads other.t no more than direct does, and is refused', async () => {
      const seen = await both([{ send: [...SETS_PATH, encodeSync()], readies: 1 }, { send: [...READ_T, encodeSync()], readies: 2 }], ['writers']);
      expect(seen.direct).toEqual(['ParseComplete', 'BindComplete', 'CommandComplete INSERT 0 1', 'ReadyForQuery I', 'ParseComplete', 'BindComplete', 'DataRow other', 'CommandComplete SELECT 1', 'ReadyForQuery I', 'open']);
      expect(seen.sluice).toEqual(['ParseComplete', 'BindComplete', 'CommandComplete INSERT 0 1', 'ReadyForQuery I', 'ErrorResponse 42501', 'ReadyForQuery I', 'open']);
    });
  });
});
