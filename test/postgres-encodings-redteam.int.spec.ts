import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { BackendMessage } from '@sluice/codec-pg';
import { parseConfig } from '@sluice/config';
import { usePostgresFrontDoor, RawPostgresSession } from './support/postgres-proxy-harness.js';

/**
 * Red team of the client-encoding conversion (issue 19): an agent holding a read-only grant (with
 * a masking profile, and a deny rule on one table) tries to make the target run a write, read the
 * denied table, get a masked value back unmasked, or make Sluice and the target read its bytes in
 * different encodings. Every probe is kept: those that held as proof, those that broke as
 * regression tests of their fix.
 */

const database = `sluice_enc_rt_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
const RESOURCE = 'enc-rt-db';
const EMAIL = 'rene.dupont@example.com';
const STATEMENT_LIMIT = 3000;

const frontDoor = usePostgresFrontDoor({
  config: parseConfig({
    resources: [
      {
        name: RESOURCE,
        type: 'postgres',
        listen: '127.0.0.1:0',
        // Small enough that a text growing threefold in UTF-8 (WIN1252 € is one byte, three in UTF-8) passes it.
        limits: { maxStatementBytes: STATEMENT_LIMIT },
        target: { host: '127.0.0.1', database },
        credentials: { username: 'postgres' },
      },
    ],
    // The attacker's grant: read only, masked, one table denied; writers only to set up COPY probes.
    masking: { profiles: { pii: { detectors: ['email'], strategy: 'redact', columns: [{ match: '(?i)ssn', strategy: 'redact' }] } } },
    rules: [
      { name: 'deny-secrets', effect: 'deny', resources: [RESOURCE], tables: ['public.secrets'] },
      ...(
        [
          ['attacker', ['readers'], ['read'], 'pii'],
          ['copy-writer', ['writers'], ['read', 'write'], undefined],
        ] as const
      ).map(([name, groups, actions, mask]) => ({ name, effect: 'allow', subjects: { groups: [...groups] }, resources: [RESOURCE], actions: [...actions], ...(mask ? { mask } : {}) })),
    ],
  }),
  database,
  hashKey: 'encodings-redteam-int',
  setupSql: [
    'create table people (id int primary key, name text, email text, ssn text)',
    `insert into people values (1, 'ソニー', '${EMAIL}', '912-34-5678')`,
    'create table victim (id int primary key)',
    'insert into victim select g from generate_series(1, 5) g',
    "create table secrets (id int, secret text); insert into secrets values (1, 'TOP-SECRET')",
    'create table sink (t text)',
  ].join(';\n'),
}, 60_000);

const victims = async (): Promise<number> => (await frontDoor.direct.query('select count(*)::int as n from victim')).rows[0].n as number;

/** A frontend message of `code` whose body is `parts`, bytes as given. */
const message = (code: string, ...parts: Buffer[]): Buffer => {
  const length = Buffer.alloc(4);
  length.writeInt32BE(4 + parts.reduce((n, part) => n + part.length, 0));
  return Buffer.concat([Buffer.from(code, 'latin1'), length, ...parts]);
};
const query = (sql: Buffer | string): Buffer => message('Q', typeof sql === 'string' ? Buffer.from(sql, 'utf8') : sql, Buffer.from([0]));

/** Sends simple queries back to back (a pipeline) and waits for as many ReadyForQuery (or the close). */
const pipeline = async (session: RawPostgresSession, ...sqls: (Buffer | string)[]): Promise<void> => {
  const before = session.count('ReadyForQuery');
  session.send(...sqls.map(query));
  await session.readyCount(before + sqls.length);
};

const since = (session: RawPostgresSession, from: number): BackendMessage[] => session.messages.slice(from);
const rowsHex = (messages: readonly BackendMessage[]): string[] =>
  messages.flatMap((m) => (m.type === 'DataRow' ? [m.values.map((v) => (v === null ? 'NULL' : v.toString('hex'))).join('|')] : []));
const codes = (messages: readonly BackendMessage[]): string[] => messages.flatMap((m) => (m.type === 'ErrorResponse' ? [m.fields.C ?? ''] : []));
const statuses = (messages: readonly BackendMessage[]): string[] =>
  messages.flatMap((m) => (m.type === 'ParameterStatus' && m.name === 'client_encoding' ? [m.value] : []));

/** `SELECT current_setting('client_encoding')` as the target session sees it (the proxy never rewrites it). */
const targetEncoding = async (session: RawPostgresSession): Promise<string | undefined> => {
  const from = session.messages.length;
  // A value computed from the setting: Sluice reports the agent's encoding only for the setting itself.
  await pipeline(session, "select current_setting('client_encoding') || ''");
  const row = since(session, from).find((m) => m.type === 'DataRow');
  return row?.type === 'DataRow' ? row.values[0]?.toString('latin1') : undefined;
};

describe('the target session never leaves UTF8', () => {
  it('refuses a text whose first statement keeps the encoding and a later one switches it (UTF8 agent)', async () => {
    const session = await frontDoor.openRaw(['readers']);
    const from = session.messages.length;
    await pipeline(session, "set client_encoding to 'UTF8'; set client_encoding to 'SJIS'; select name from people");
    expect(codes(since(session, from))).toEqual(['0A000']);
    expect(rowsHex(since(session, from))).toEqual([]);
    expect(session.closed).toBe(false);
    expect(await targetEncoding(session)).toBe('UTF8');
  });

  it('refuses RESET then SET NAMES in one text (SJIS agent): the target would send LATIN1 the proxy reads as UTF-8, and an error later in the text rolls the switch back unreported', async () => {
    const session = await frontDoor.openRaw(['readers'], [['client_encoding', 'SJIS']]);
    const from = session.messages.length;
    await pipeline(session, "reset client_encoding; set client_encoding to 'SJIS'; set names 'LATIN1'; select name from people");
    expect(codes(since(session, from))).toEqual(['0A000']);
    expect(session.closed).toBe(false);
    expect(await targetEncoding(session)).toBe('UTF8');
  });

  it('refuses RESET ALL / DISCARD ALL followed by SET NAMES in one text', async () => {
    const session = await frontDoor.openRaw(['readers']);
    const from = session.messages.length;
    await pipeline(session, "reset all; set names 'GBK'", "discard all; set names 'BIG5'");
    const refused = codes(since(session, from));
    expect(refused).toHaveLength(2);
    for (const code of refused) expect(['0A000', '42501']).toContain(code);
    expect(await targetEncoding(session)).toBe('UTF8');
  });

  it("keeps set_config('client_encoding', …) to anything but UTF8 admin, alone or in a function call argument", async () => {
    const session = await frontDoor.openRaw(['readers']);
    const from = session.messages.length;
    await pipeline(session, "select set_config('client_encoding', 'SJIS', false)", "select set_config(lower('CLIENT_ENCODING'), 'SJIS', false)");
    expect(codes(since(session, from))).toEqual(['42501', '42501']);
    expect(await targetEncoding(session)).toBe('UTF8');
  });
});

describe('what the target sends is what the agent would get direct', () => {
  /** The error codes and rows of `sql` direct (after SET client_encoding) and through Sluice (asked for at startup). */
  const bothWays = async (encoding: string, sql: string): Promise<{ direct: BackendMessage[]; sluice: BackendMessage[] }> => {
    const tracked: RawPostgresSession[] = [];
    const direct = await RawPostgresSession.openDirect(database, (s) => tracked.push(s));
    try {
      await pipeline(direct, `set client_encoding to '${encoding}'`);
      const from = direct.messages.length;
      await pipeline(direct, sql);
      const sluice = await frontDoor.openRaw(['readers'], [['client_encoding', encoding]]);
      const start = sluice.messages.length;
      await pipeline(sluice, sql);
      return { direct: since(direct, from), sluice: since(sluice, start) };
    } finally {
      for (const session of tracked) session.socket.destroy();
    }
  };

  it.each([
    ['EUC_JP', 165],
    ['EUC_JP', 8254],
    ['EUC_CN', 8208],
    ['EUC_KR', 44034],
  ])('answers %s a character it has no form for (U+%s) with 22P05, never bytes outside the EUC form (a 0x5C trail byte)', async (encoding, codePoint) => {
    const { direct, sluice } = await bothWays(encoding, `select chr(${codePoint})`);
    expect(codes(direct)).toEqual(['22P05']);
    expect(codes(sluice)).toEqual(['22P05']);
    expect(rowsHex(sluice)).toEqual([]);
  });

  it('gives SJIS ¥ as 0x5C, as the server does', async () => {
    const { direct, sluice } = await bothWays('SJIS', 'select chr(165)');
    expect(rowsHex(direct)).toEqual(['5c']);
    expect(rowsHex(sluice)).toEqual(rowsHex(direct));
  });

  it('masks the email and the ssn column, and keeps the denied table denied, for an SJIS agent', async () => {
    const session = await frontDoor.openRaw(['readers'], [['client_encoding', 'SJIS']]);
    const from = session.messages.length;
    // ソ is 0x83 0x5C in SJIS: a byte-wise reader would take its trail byte for a backslash.
    const sony = Buffer.from([0x83, 0x5c]);
    await pipeline(
      session,
      Buffer.concat([Buffer.from("select email, ssn, name = '"), sony, Buffer.from([0x83, 0x6a, 0x81, 0x5b]), Buffer.from("' from people")]),
      Buffer.concat([Buffer.from("select E'"), sony, Buffer.from("', secret from secrets")]),
    );
    const rows = rowsHex(since(session, from)).map((row) => row.split('|').map((hex) => Buffer.from(hex, 'hex').toString('latin1')));
    expect(rows).toHaveLength(1);
    expect(rows[0]![0]).not.toContain('example.com');
    expect(rows[0]![1]).not.toContain('5678');
    expect(codes(since(session, from))).toEqual(['42501']);
  });
});

describe('a multi-byte character whose trail byte is \\ cannot smuggle a statement', () => {
  it.each([
    ['SJIS', [0x83, 0x5c]],
    ['BIG5', [0xa5, 0x5c]],
    ['GBK', [0x81, 0x5c]],
    ['GB18030', [0x81, 0x5c]],
  ])('%s: E\'<lead 0x5C>\' ends the string for Sluice as for the server, so the DELETE after it is decided (denied)', async (encoding, bytes) => {
    const session = await frontDoor.openRaw(['readers'], [['client_encoding', encoding]]);
    const from = session.messages.length;
    const char = Buffer.from(bytes);
    await pipeline(
      session,
      Buffer.concat([Buffer.from("select E'"), char, Buffer.from("'; delete from victim; --'")]),
      Buffer.concat([Buffer.from("select E'"), char, Buffer.from("''; delete from victim; select '")]),
    );
    // The first is a read and a denied DELETE; the second one string literal to both (a read).
    expect(codes(since(session, from))).toEqual(['42501']);
    expect(rowsHex(since(session, from))).toEqual([`${char.toString('hex')}${Buffer.from("'; delete from victim; select ").toString('hex')}`]);
    expect(await victims()).toBe(5);
    // On the record as the text that ran: the decoded character, not its bytes.
    const decoded = `select E'${new TextDecoder(encoding === 'SJIS' ? 'shift_jis' : encoding.toLowerCase()).decode(char)}'; delete from victim; --'`;
    const recorded = frontDoor.events.filter((e) => e.kind === 'command.decided').map((e) => String(e.data.command));
    expect(recorded).toContain(decoded);
  });
});

describe('startup and COPY', () => {
  it('takes client_encoding from options=-c as the server does, and the target stays UTF8', async () => {
    const session = await frontDoor.openRaw(['readers'], [['options', '-c client_encoding=SJIS']]);
    expect(statuses(session.messages)).toEqual(['SJIS']);
    expect(await targetEncoding(session)).toBe('UTF8');
    const from = session.messages.length;
    await pipeline(session, Buffer.from([...Buffer.from("select '"), 0x83, 0x5c, ...Buffer.from("'::text")]));
    expect(rowsHex(since(session, from))).toEqual(['835c']);
  });

  it('joins an SJIS character split across two CopyData messages, and fails a COPY ending inside a character with 22021, storing nothing', async () => {
    const session = await frontDoor.openRaw(['writers'], [['client_encoding', 'SJIS']]);
    const copy = async (...chunks: Buffer[]): Promise<BackendMessage[]> => {
      const from = session.messages.length;
      const ready = session.count('ReadyForQuery');
      session.send(query('copy sink from stdin'));
      await new Promise((resolve) => setTimeout(resolve, 300));
      session.send(...chunks.map((chunk) => message('d', chunk)), message('c'));
      await session.readyCount(ready + 1);
      return since(session, from);
    };
    expect(codes(await copy(Buffer.from([0x83]), Buffer.from([0x5c, 0x0a])))).toEqual([]);
    expect(codes(await copy(Buffer.from([0x41, 0x0a, 0x83])))).toEqual(['22021']);
    const stored = await frontDoor.direct.query('select t from sink order by t');
    expect(stored.rows.map((row: { t: string }) => row.t)).toEqual(['ソ']);
  });
});

describe('the agent cannot get past Sluice by the order or size of its messages', () => {
  it('refuses a SET client_encoding pipelined right behind a BEGIN, before the BEGIN is answered (the ROLLBACK would undo it on the server)', async () => {
    const session = await frontDoor.openRaw(['readers']);
    const from = session.messages.length;
    await pipeline(session, 'begin', "set client_encoding to 'LATIN1'", 'rollback');
    expect(codes(since(session, from))).toEqual(['0A000']);
    expect(statuses(since(session, from))).toEqual([]);
  });

  it('measures maxStatementBytes on the UTF-8 the target gets, not the bytes the agent sent', async () => {
    const session = await frontDoor.openRaw(['readers'], [['client_encoding', 'WIN1252']]);
    const from = session.messages.length;
    const euros = Buffer.alloc(1200, 0x80);
    await pipeline(session, Buffer.concat([Buffer.from("select '"), euros, Buffer.from("' as e")]));
    expect(codes(since(session, from))).toEqual(['54000']);
  });
});

describe('values in errors and binary parameters', () => {
  it('masks an email the server quotes in an error, for an SJIS agent as for a UTF8 one', async () => {
    for (const parameters of [[], [['client_encoding', 'SJIS']]] as [string, string][][]) {
      const session = await frontDoor.openRaw(['readers'], parameters);
      const from = session.messages.length;
      await pipeline(session, 'select email::int from people');
      const errors = since(session, from).flatMap((m) => (m.type === 'ErrorResponse' ? [JSON.stringify(m.fields)] : []));
      expect(errors).toHaveLength(1);
      expect(errors[0]).not.toContain('example.com');
    }
  });

  it('refuses a binary parameter of an undeclared type that carries non-ASCII bytes (it cannot know how to convert it)', async () => {
    const session = await frontDoor.openRaw(['readers'], [['client_encoding', 'SJIS']]);
    const from = session.messages.length;
    const int16 = (n: number): Buffer => Buffer.from([n >> 8, n & 0xff]);
    const value = Buffer.from([0x83, 0x5c]);
    const length = Buffer.alloc(4);
    length.writeInt32BE(value.length);
    const ready = session.count('ReadyForQuery');
    session.send(
      message('P', Buffer.from('\0select $1 as v\0'), int16(0)),
      message('B', Buffer.from('\0\0'), int16(1), int16(1), int16(1), length, value, int16(0)),
      message('E', Buffer.from('\0'), Buffer.alloc(4)),
      message('S'),
    );
    await session.readyCount(ready + 1);
    expect(codes(since(session, from))).toEqual(['0A000']);
    expect(rowsHex(since(session, from))).toEqual([]);
  });
});
