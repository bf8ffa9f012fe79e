import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import { encodeExecute, encodeSync, type BackendMessage } from '@sluice/codec-pg';
import { COLUMN_REDACTED } from '@sluice/masking-engine';
import { parseConfig } from '@sluice/config';
import { usePostgresFrontDoor, RawPostgresSession } from './support/postgres-proxy-harness.js';

/**
 * Every client encoding PostgreSQL supports, through Sluice as direct: psql with PGCLIENTENCODING,
 * raw protocol sessions that SET client_encoding, node-postgres and postgres.js. Sluice converts
 * at its edge (the target session stays UTF8), so rules and masking read the text as decoded, and
 * a multi-byte character whose trail byte is `\` or `'` cannot split a statement differently for
 * Sluice and the server.
 */

const database = `sluice_encodings_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
const RESOURCE = 'encodings-db';
const EMAIL = 'rene.dupont@example.com';
/** A contact with an é and an email in it: the email detector (ASCII addresses) finds the address inside. */
const CONTACT = `René Dupont <${EMAIL}>`;

const frontDoor = usePostgresFrontDoor({
  config: parseConfig({
    resources: [{ name: RESOURCE, type: 'postgres', listen: '127.0.0.1:0', target: { host: '127.0.0.1', database }, credentials: { username: 'postgres' } }],
    masking: { profiles: { pii: { detectors: ['email'], strategy: 'redact', columns: [{ match: '(?i)ssn', strategy: 'redact' }] } } },
    rules: [
      { name: 'no-secrets', effect: 'deny', resources: [RESOURCE], tables: ['public.secrets'] },
      { name: 'readers', effect: 'allow', subjects: { groups: ['readers'] }, resources: [RESOURCE], actions: ['read'], mask: 'pii' },
      { name: 'writers', effect: 'allow', subjects: { groups: ['writers'] }, resources: [RESOURCE], actions: ['read', 'write', 'ddl'] },
    ],
  }),
  database,
  hashKey: 'encodings-int',
  setupSql: `create table people (id int primary key, name text, email text, ssn text);
     insert into people values (1, 'José Müller', '${CONTACT}', '912-34-5678');
     create table notes (id serial primary key, note text);
     insert into notes (note) values ('euro €');
     create table victim (id int primary key);
     insert into victim select g from generate_series(1, 5) g;
     create table secrets (id int, secret text);
     insert into secrets values (1, 'TOP-SECRET');`,
}, 60_000);

const latin1 = (text: string): Buffer => Buffer.from(text, 'latin1');

/** psql reading `script` (bytes in `encoding`) from stdin, direct or through Sluice: its stdout and stderr as bytes. */
const psql = async (script: Buffer, encoding: string, through: boolean, groups = ['readers']): Promise<{ out: Buffer; err: Buffer }> => {
  const env: NodeJS.ProcessEnv = { ...process.env, PGCLIENTENCODING: encoding, PGCONNECT_TIMEOUT: '10', PGSSLMODE: 'disable', PGOPTIONS: '' };
  const args = ['-X', '-q', '-At', '-h', '127.0.0.1', '-f', '-'];
  if (through) {
    env.PGPASSWORD = await frontDoor.token(groups);
    args.push('-p', String(frontDoor.port), '-U', 'agent', '-d', RESOURCE);
  } else args.push('-p', '5432', '-U', 'postgres', '-d', database);
  return new Promise((resolve, reject) => {
    const child = spawn('psql', args, { env });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', reject);
    child.on('close', () => resolve({ out: Buffer.concat(out), err: Buffer.concat(err) }));
    child.stdin.end(script);
  });
};

/** Both ways, the same psql script: what direct and through Sluice printed. */
const bothWays = async (script: Buffer, encoding: string, groups?: string[]) => ({
  direct: await psql(script, encoding, false),
  sluice: await psql(script, encoding, true, groups),
});

const victims = async (): Promise<number> => (await frontDoor.direct.query('select count(*)::int as n from victim')).rows[0].n as number;

const values = (messages: readonly BackendMessage[]): string[] =>
  messages.flatMap((m) => (m.type === 'DataRow' ? [m.values.map((v) => (v === null ? 'NULL' : v.toString('hex'))).join('|')] : []));

const statuses = (messages: readonly BackendMessage[], name: string): string[] =>
  messages.flatMap((m) => (m.type === 'ParameterStatus' && m.name === name ? [m.value] : []));

/** A raw session direct and one through Sluice, each given the same messages; resolves once each has `ready` ReadyForQuery. */
const rawBothWays = async (groups: string[], run: (session: RawPostgresSession) => Promise<void>): Promise<{ direct: RawPostgresSession; sluice: RawPostgresSession }> => {
  const tracked: RawPostgresSession[] = [];
  const direct = await RawPostgresSession.openDirect(database, (s) => tracked.push(s));
  const sluice = await frontDoor.openRaw(groups);
  try {
    await run(direct);
    await run(sluice);
  } finally {
    for (const session of tracked) session.socket.destroy();
  }
  return { direct, sluice };
};

/** A frontend message of `code` whose body is `parts`, bytes as given (the codec's encoders write UTF-8). */
const message = (code: string, ...parts: Buffer[]): Buffer => {
  const body = Buffer.concat(parts);
  const header = Buffer.alloc(5);
  header[0] = code.charCodeAt(0);
  header.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([header, body]);
};
const NUL = Buffer.from([0]);

/** Sends one simple query of raw bytes and waits for its ReadyForQuery. */
const rawQuery = async (session: RawPostgresSession, sql: Buffer): Promise<void> => {
  const before = session.count('ReadyForQuery');
  session.send(message('Q', sql, NUL));
  await session.readyCount(before + 1);
};

const afterLogin = (session: RawPostgresSession): BackendMessage[] => session.messages.slice(session.messages.findIndex((m) => m.type === 'ReadyForQuery') + 1);

describe('psql with PGCLIENTENCODING, direct and through Sluice', () => {
  it('reads a LATIN1 row as direct, with client_encoding reported as LATIN1', async () => {
    const { direct, sluice } = await bothWays(latin1("select name from people where name = 'José Müller';\n\\encoding\nshow server_encoding;\n"), 'LATIN1');
    expect(direct.out).toEqual(latin1('José Müller\nLATIN1\nUTF8\n'));
    expect(sluice.out).toEqual(direct.out);
  });

  it('writes a LATIN1 literal that the target stores as the UTF-8 text it means', async () => {
    const { sluice } = await bothWays(latin1("insert into notes (note) values ('crème brûlée');\nselect note from notes where note = 'crème brûlée' limit 1;\n"), 'LATIN1', ['writers']);
    expect(sluice.out).toEqual(latin1('crème brûlée\n'));
    const stored = await frontDoor.direct.query("select count(*)::int as n from notes where note = 'crème brûlée'");
    expect(stored.rows[0].n).toBe(2);
  });

  it('masks an email with é and a ssn column as it does for UTF-8, and the masked value stays valid LATIN1', async () => {
    const script = latin1('select name, email, ssn from people;\n');
    const sluice = await psql(script, 'LATIN1', true);
    const utf8 = await psql(Buffer.from('select name, email, ssn from people;\n'), 'UTF8', true);
    expect(sluice.err.toString()).toBe('');
    expect(sluice.out.toString('latin1')).toBe(utf8.out.toString('utf8'));
    expect(sluice.out.toString('latin1')).not.toContain(EMAIL);
    expect(sluice.out.toString('latin1')).toContain(`|${COLUMN_REDACTED}`);
    expect(sluice.out.toString('latin1').startsWith('José Müller|René Dupont <')).toBe(true);
  });

  it('refuses a denied table and answers an error naming a non-ASCII identifier in LATIN1, as direct', async () => {
    const denied = await psql(latin1('select * from secrets;\n'), 'LATIN1', true);
    expect(denied.err.toString('latin1')).toContain('permission denied');
    // Writers' rule masks nothing: the readers' profile would mask the quoted name in the error.
    const { direct, sluice } = await bothWays(latin1('select * from "tablé_absente";\n'), 'LATIN1', ['writers']);
    expect(direct.err.toString('latin1')).toContain('relation "tablé_absente" does not exist');
    expect(sluice.err).toEqual(direct.err);
  });

  it('copies in and out in LATIN1 as direct', async () => {
    const script = latin1("create temp table t (a text, b text);\ncopy t from stdin with (format csv);\nçà,\"ü\nö\"\nñ,x\n\\.\ncopy t to stdout with (format csv);\ncopy t to stdout;\n");
    const { direct, sluice } = await bothWays(script, 'LATIN1', ['writers']);
    expect(direct.err.toString()).toBe('');
    expect(direct.out).toEqual(latin1('çà,"ü\nö"\nñ,x\nçà\tü\\nö\nñ\tx\n'));
    expect(sluice.out).toEqual(direct.out);
    expect(sluice.err.toString()).toBe('');
  });

  it('fails a COPY FROM STDIN whose data is not valid in the client encoding with 22021, as direct, and nothing of it is stored', async () => {
    const script = Buffer.concat([Buffer.from('create temp table t (a text);\ncopy t from stdin;\nok\nx'), Buffer.from([0x82, 0x27]), Buffer.from('\n\\.\nselect count(*) from t;\n')]);
    const { direct, sluice } = await bothWays(script, 'SJIS', ['writers']);
    expect(direct.err.toString()).toContain('invalid byte sequence for encoding "SJIS": 0x82 0x27');
    expect(sluice.err.toString()).toContain('invalid byte sequence for encoding "SJIS": 0x82 0x27');
    expect(sluice.out).toEqual(direct.out);
    expect(direct.out.toString()).toBe('0\n');
  });

  it('answers a character LATIN1 has no equivalent for with the server\'s 22P05, as direct', async () => {
    const { direct, sluice } = await bothWays(latin1("select note from notes where note like 'euro%';\nselect 'still here';\n"), 'LATIN1');
    expect(direct.err.toString()).toContain('character with byte sequence 0xe2 0x82 0xac in encoding "UTF8" has no equivalent in encoding "LATIN1"');
    expect(sluice.err.toString()).toContain('character with byte sequence 0xe2 0x82 0xac in encoding "UTF8" has no equivalent in encoding "LATIN1"');
    expect(sluice.out).toEqual(direct.out);
  });

  it('reads an SJIS and a GBK row as direct', async () => {
    for (const [encoding, bytes] of [
      ['SJIS', Buffer.from([0x95, 0x5c])],
      ['GBK', Buffer.from([0xbf, 0x5c])],
      ['BIG5', Buffer.from([0xa4, 0x5c])],
    ] as const) {
      const script = Buffer.concat([Buffer.from("select '"), bytes, Buffer.from("' as c, length('"), bytes, Buffer.from("');\n")]);
      const { direct, sluice } = await bothWays(script, encoding);
      expect(direct.out).toEqual(Buffer.concat([bytes, Buffer.from('|1\n')]));
      expect(sluice.out).toEqual(direct.out);
    }
  });
});

describe('SET client_encoding mid-session, raw protocol', () => {
  it('switches conversion where the server does, reports it by ParameterStatus, and RESET goes back to UTF8', async () => {
    const { direct, sluice } = await rawBothWays(['readers'], async (session) => {
      await rawQuery(session, Buffer.from("set client_encoding to 'latin1'"));
      await rawQuery(session, latin1("select 'é' as c, length('é') as n"));
      await rawQuery(session, Buffer.from('reset client_encoding'));
      await rawQuery(session, Buffer.from("select 'é' as c"));
      await rawQuery(session, Buffer.from("set names 'WIN1252'"));
      await rawQuery(session, latin1("select 'é' as c"));
    });
    expect(values(afterLogin(sluice))).toEqual(values(afterLogin(direct)));
    expect(values(afterLogin(direct))).toEqual(['e9|31', 'c3a9', 'e9']);
    expect(statuses(afterLogin(sluice), 'client_encoding')).toEqual(statuses(afterLogin(direct), 'client_encoding'));
    expect(statuses(afterLogin(direct), 'client_encoding')).toEqual(['LATIN1', 'UTF8', 'WIN1252']);
    expect(sluice.summary()).toEqual(direct.summary());
  });

  it('answers bytes that are not valid in the client encoding with 22021, leaving the transaction as the server does', async () => {
    const { direct, sluice } = await rawBothWays(['readers'], async (session) => {
      await rawQuery(session, Buffer.from("set client_encoding to 'SJIS'"));
      await rawQuery(session, Buffer.from('begin'));
      await rawQuery(session, Buffer.concat([Buffer.from("select '"), Buffer.from([0x82, 0x27]), Buffer.from("'")]));
      await rawQuery(session, Buffer.from('select 1'));
      await rawQuery(session, Buffer.from('rollback'));
    });
    expect(sluice.summary()).toEqual(direct.summary());
    expect(sluice.errors().map((e) => [e.C, e.M])).toEqual(direct.errors().map((e) => [e.C, e.M]));
    expect(direct.errors()[0]).toMatchObject({ C: '22021', M: 'invalid byte sequence for encoding "SJIS": 0x82 0x27' });
    expect(frontDoor.events.some((e) => e.kind === 'command.decided' && e.data.command === '[not valid in client_encoding SJIS]')).toBe(true);
  });

  it('converts the extended protocol too: Parse text and a text Bind parameter in LATIN1', async () => {
    const { direct, sluice } = await rawBothWays(['readers'], async (session) => {
      await rawQuery(session, Buffer.from("set client_encoding to 'LATIN1'"));
      const before = session.count('ReadyForQuery');
      const parse = message('P', NUL, latin1("select name from people where name = $1 or name = 'José'"), NUL, Buffer.from([0, 0]));
      const param = latin1('José Müller');
      const bind = message('B', NUL, NUL, Buffer.from([0, 0, 0, 1, 0, 0, 0, param.length]), param, Buffer.from([0, 0]));
      session.send(parse, bind, encodeExecute(''), encodeSync());
      await session.readyCount(before + 1);
    });
    expect(values(afterLogin(direct))).toEqual([latin1('José Müller').toString('hex')]);
    expect(values(afterLogin(sluice))).toEqual(values(afterLogin(direct)));
  });

  it('converts binary-format text values, passes binary numbers as they are, and refuses a binary array with 0A000 naming its column', async () => {
    const binaryRow = async (session: RawPostgresSession, sql: string): Promise<void> => {
      const before = session.count('ReadyForQuery');
      session.send(message('P', NUL, latin1(sql), NUL, Buffer.from([0, 0])), message('B', NUL, NUL, Buffer.from([0, 0, 0, 0, 0, 1, 0, 1])), encodeExecute(''), encodeSync());
      await session.readyCount(before + 1);
    };
    const { direct, sluice } = await rawBothWays(['readers'], async (session) => {
      await rawQuery(session, Buffer.from("set client_encoding to 'LATIN1'"));
      await binaryRow(session, "select 'é'::text as t, 'ü'::varchar as v, 233::int4 as n");
      await binaryRow(session, "select array['é'] as tags");
    });
    const rows = values(afterLogin(direct));
    expect(rows[0]).toBe(['e9', 'fc', '000000e9'].join('|'));
    expect(values(afterLogin(sluice))).toEqual([rows[0]]);
    expect(sluice.errors()).toEqual([expect.objectContaining({ C: '0A000', M: expect.stringContaining('column "tags"') })]);
  });

  it('refuses a SET client_encoding the proxy cannot convert (0A000) or that the server has no name for (22023), and the session goes on', async () => {
    const session = await frontDoor.openRaw(['readers']);
    await rawQuery(session, Buffer.from("set client_encoding to 'EUC_TW'"));
    await rawQuery(session, Buffer.from("set client_encoding to 'klingon'"));
    await rawQuery(session, Buffer.from("select 'é'"));
    expect(session.errors().map((e) => e.C)).toEqual(['0A000', '22023']);
    expect(session.errors()[0]?.M).toContain('EUC_TW');
    expect(values(afterLogin(session))).toEqual(['c3a9']);
  });
});

describe('multi-byte trail bytes cannot smuggle a statement past a read-only grant', () => {
  // Each character's trail byte is `\`: read as single bytes, E'…\' would escape the quote and the
  // DELETE would sit inside the string; read in the client encoding it is a statement of its own.
  it.each([
    ['SJIS', [0x95, 0x5c]],
    ['GBK', [0xbf, 0x5c]],
    ['BIG5', [0xa4, 0x5c]],
  ])('%s: a character ending in 0x5C before a quote', async (encoding, bytes) => {
    const before = await victims();
    const session = await frontDoor.openRaw(['readers']);
    await rawQuery(session, Buffer.from(`set client_encoding to '${encoding}'`));
    await rawQuery(session, Buffer.concat([Buffer.from("select E'"), Buffer.from(bytes), Buffer.from("'; delete from victim; --'")]));
    await rawQuery(session, Buffer.concat([Buffer.from("select '"), Buffer.from(bytes), Buffer.from("'; delete from victim; --'")]));
    expect(session.errors().map((e) => e.C)).toEqual(['42501', '42501']);
    expect(session.count('CommandComplete')).toBe(1);
    expect(await victims()).toBe(before);
  });

  it.each([
    ['SJIS', [0x81, 0x27]],
    ['GBK', [0x81, 0x27]],
    ['BIG5', [0xa4, 0x27]],
  ])('%s: a lead byte before a quote is an invalid sequence (22021), never passed on', async (encoding, bytes) => {
    const before = await victims();
    const session = await frontDoor.openRaw(['writers']);
    await rawQuery(session, Buffer.from(`set client_encoding to '${encoding}'`));
    await rawQuery(session, Buffer.concat([Buffer.from("select 'x"), Buffer.from(bytes), Buffer.from("; delete from victim; --'")]));
    expect(session.errors().map((e) => e.C)).toEqual(['22021']);
    expect(await victims()).toBe(before);
  });
});

describe('drivers', () => {
  it('node-postgres (which always asks for UTF8 at startup) after SET client_encoding: ASCII as direct, LATIN1 reported', async () => {
    const seen: unknown[] = [];
    for (const config of [
      { host: '127.0.0.1', port: 5432, user: 'postgres', database },
      { host: '127.0.0.1', port: frontDoor.port, user: 'agent', database: RESOURCE, password: await frontDoor.token(['readers']) },
    ]) {
      const client = new pg.Client(config);
      const reported: string[] = [];
      (client as unknown as { connection: NodeJS.EventEmitter }).connection.on('parameterStatus', (m: { parameterName: string; parameterValue: string }) => {
        if (m.parameterName === 'client_encoding') reported.push(m.parameterValue);
      });
      await client.connect();
      await client.query("set client_encoding to 'LATIN1'");
      const { rows } = await client.query('select id, length(name) as n from people');
      seen.push({ rows, reported });
      await client.end();
    }
    expect(seen[0]).toEqual({ rows: [{ id: 1, n: 11 }], reported: ['UTF8', 'LATIN1'] });
    expect(seen[1]).toEqual(seen[0]);
  });

  it('postgres.js (UTF8 only, extended protocol) reads non-ASCII text as direct, and a SET client_encoding over the extended protocol is refused', async () => {
    const sql = postgres({ host: '127.0.0.1', port: frontDoor.port, user: 'agent', database: RESOURCE, password: await frontDoor.token(['readers']), max: 1, onnotice: () => {} });
    try {
      expect(await sql`select name from people where name = ${'José Müller'}`).toEqual([{ name: 'José Müller' }]);
      await expect(sql`set client_encoding to 'LATIN1'`).rejects.toMatchObject({ code: '0A000' });
      expect(await sql`select 'é' as c`).toEqual([{ c: 'é' }]);
    } finally {
      await sql.end();
    }
  });

  it('keeps UTF8 sessions byte for byte as they were (no conversion)', async () => {
    const client = await frontDoor.connect(['readers']);
    const { rows } = await client.query("select name, 'é€' as c from people");
    expect(rows).toEqual([{ name: 'José Müller', c: 'é€' }]);
  });
});
