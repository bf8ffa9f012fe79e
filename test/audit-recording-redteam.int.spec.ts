import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstreamManager } from '@nats-io/jetstream';
import { encodeCommand } from '@sluice/codec-resp';
import { connectBus, decodeEvents, type NatsConnection } from '@sluice/event-bus';
import { openEventStore, readWrittenEvents, type EventStore } from '@sluice/event-store';
import { createDatabase, deleteStreams, dropDatabases } from './support/databases.js';
import { startTestIssuer, type TestIssuer } from './support/oidc.js';
import { freePorts } from './support/ports.js';
import { startSluice, type RunningSluice } from './support/sluice.js';
import { waitUntil } from './support/wait.js';

/**
 * Red team of the recording path (the proxy writing command.executed bytes itself) and of the
 * audit reader (events stored from their own bytes), as an agent holding a valid read-only token:
 * SQL texts, Redis arguments and HTTP requests and answers built to break the JSON, the COPY text
 * or the chain. Every command must be stored with what ran and its decision, no raw value a
 * masking profile covers may reach NATS or the store, the chains verify, and the general path
 * stores exactly what the fast path stored from the same messages.
 */

const run = randomUUID().slice(0, 8);
const targetDb = `sluice_rt_audit_${run}`;
/** A target in SQL_ASCII: the server takes and returns any bytes, UTF-8 or not. */
const asciiDb = `sluice_rt_auditascii_${run}`;
const storeDb = `sluice_rt_auditstore_${run}`;
const replayDb = `sluice_rt_auditreplay_${run}`;
const stream = `SLUICE_RT_AUDIT_${run}`;
const subjectPrefix = `rtaudit.${run}.events`;
const keyPrefix = `rt-audit:${run}:`;

/** Values the masking profile covers (an email detector, an ssn column): never raw in NATS or the store. */
const EMAIL = `zed.${run}@example.com`;
const SSN = '078-05-1120';

/** Texts built to break a hand-written JSON writer or a byte scanner. */
const INJECTION = '"},"decision":"deny","rule":"x","command":"SELECT 2';
const AWKWARD = `tab\t nl\n cr\r bs\\ q" ctl\u0001\u001f del\u007f ls\u2028 ps\u2029 é€😀 </script> \\u0000 \\"`;

const ADMIN = { host: '127.0.0.1', port: 5432, user: 'postgres' };

interface StoredRow {
  readonly seq: string;
  readonly id: string;
  readonly session_id: string;
  readonly session_seq: number;
  readonly type: string;
  readonly kind: string;
  readonly source: string;
  readonly time: Date;
  readonly data: string | null;
  readonly ext: string;
  readonly hash: string;
  readonly prev_hash: string;
  readonly resource: string | null;
  readonly subject_sub: string | null;
  readonly command_id: string | null;
  readonly approval_id: string | null;
  readonly decision: string | null;
  readonly masked_values: number;
}

const storedRows = async (database: string): Promise<StoredRow[]> => {
  const client = new pg.Client({ ...ADMIN, database });
  await client.connect();
  try {
    const { rows } = await client.query<StoredRow>(
      `SELECT seq, id, session_id, session_seq, type, kind, source, time, data::text AS data, ext::text AS ext, hash, prev_hash,
              resource, subject_sub, command_id, approval_id, decision, masked_values
         FROM sluice.events ORDER BY seq`,
    );
    return rows;
  } finally {
    await client.end();
  }
};

/** Every message of the stream, raw, in stream order. */
const streamMessages = async (nc: NatsConnection): Promise<{ subject: string; data: Uint8Array }[]> => {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(stream);
  const messages: { subject: string; data: Uint8Array }[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq += 1) {
    const message = await jsm.streams.getMessage(stream, { seq }).catch(() => undefined);
    if (message) messages.push({ subject: message.subject, data: message.data });
  }
  return messages;
};

/** Raw RESP on a socket: logs in with the first command, then sends the others' bytes at once and collects the replies until quiet. */
const respExchange = (port: number, [login, ...commands]: readonly Buffer[]): Promise<Buffer> =>
  new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(login!));
    const chunks: Buffer[] = [];
    let loggedIn = false;
    socket.on('data', () => {
      if (loggedIn) return;
      loggedIn = true;
      socket.write(Buffer.concat(commands));
    });
    let timer = setTimeout(() => socket.destroy(), 1_500);
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      clearTimeout(timer);
      timer = setTimeout(() => socket.destroy(), 400);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
    socket.on('error', () => undefined);
  });

const bytes = (...parts: (string | number[])[]): Buffer => Buffer.concat(parts.map((part) => (typeof part === 'string' ? Buffer.from(part, 'utf8') : Buffer.from(part))));

describe('the recording and audit path against an agent with a read-only token', () => {
  let idp: TestIssuer;
  let sluice: RunningSluice;
  let api: Server;
  let nc: NatsConnection;
  let store: EventStore;
  let token: string;
  let pgPort: number;
  let redisPort: number;
  let httpPort: number;
  let asciiPort: number;

  const pgAgent = async (): Promise<pg.Client> => {
    const client = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'rt-agent', database: 'db', password: token });
    client.on('error', () => undefined);
    await client.connect();
    return client;
  };

  beforeAll(async () => {
    await createDatabase(
      targetDb,
      `CREATE TABLE people (id int PRIMARY KEY, email text, ssn text, note text);
       INSERT INTO people VALUES (1, '${EMAIL}', '${SSN}', $n$${INJECTION}$n$), (2, 'x', 'y', E'${AWKWARD.replaceAll('\\', '\\\\').replaceAll("'", "''")}');`,
    );
    const admin = new pg.Client({ ...ADMIN, database: 'postgres' });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${asciiDb} ENCODING 'SQL_ASCII' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'`);
    await admin.end();
    const ascii = new pg.Client({ ...ADMIN, database: asciiDb });
    await ascii.connect();
    await ascii.query(`CREATE TABLE people (id int PRIMARY KEY, email text, ssn text, note text)`);
    await ascii.query(`INSERT INTO people VALUES (1, '${EMAIL}', '${SSN}', E'\\xff\\xfe ${EMAIL} \\xc3')`);
    await ascii.end();
    idp = await startTestIssuer();
    api = createServer((request, response) => {
      const url = request.url ?? '/';
      if (url.startsWith('/raw')) {
        // Bytes that are no UTF-8, controls, a JSON-looking injection and a covered value.
        response.writeHead(200, { 'content-type': 'text/plain', 'x-echo': 'a"b\\c' });
        response.end(bytes('ok ', [0xff, 0xfe, 0x00, 0xed, 0xa0, 0x80], ` ${INJECTION} ${AWKWARD} mail ${EMAIL}`));
        return;
      }
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ path: url, email: EMAIL, note: AWKWARD, inj: INJECTION }));
    });
    await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
    const apiPort = (api.address() as { port: number }).port;
    [pgPort, redisPort, httpPort, asciiPort] = (await freePorts(4)) as [number, number, number, number];
    sluice = await startSluice(
      {
        identity: { oidc: [{ issuer: idp.issuer, audience: 'sluice' }] },
        eventStore: { url: `postgres://postgres@127.0.0.1:5432/${storeDb}` },
        bus: { url: 'nats://127.0.0.1:4222', stream, subjectPrefix },
        resources: [
          { name: 'db', type: 'postgres', listen: `127.0.0.1:${pgPort}`, target: { host: '127.0.0.1', database: targetDb }, credentials: { username: 'postgres' } },
          { name: 'ascii', type: 'postgres', listen: `127.0.0.1:${asciiPort}`, target: { host: '127.0.0.1', database: asciiDb }, credentials: { username: 'postgres' } },
          { name: 'kv', type: 'redis', listen: `127.0.0.1:${redisPort}`, target: { host: '127.0.0.1', port: 6379 } },
          { name: 'api', type: 'http', listen: `127.0.0.1:${httpPort}`, target: { url: `http://127.0.0.1:${apiPort}` } },
        ],
        masking: { profiles: { sensitive: { detectors: ['email', 'us_ssn'], strategy: 'redact', columns: [{ match: '(?i)ssn', strategy: 'redact' }] } } },
        rules: [{ name: 'agents-read', effect: 'allow', subjects: { groups: ['agents'] }, actions: ['read'], mask: 'sensitive' }],
      },
      { env: { NATS_URL: '', DATABASE_URL: '' } },
    );
    token = await idp.mint({ sub: 'rt-agent', groups: ['agents'] });
    nc = await connectBus('nats://127.0.0.1:4222', 'rt-audit');
  }, 120_000);

  afterAll(async () => {
    await store?.close().catch(() => undefined);
    await sluice?.stop();
    await nc?.drain().catch(() => undefined);
    await idp?.close();
    await new Promise((resolve) => (api ? api.close(resolve) : resolve(undefined)));
    await dropDatabases([targetDb, asciiDb, storeDb, replayDb]);
    await deleteStreams([stream]);
  });

  /** Commands the agent ran and must find in sluice.events: a marker in the recorded text and the decision. */
  const expected: { marker: string; decision: 'allow' | 'deny' }[] = [];

  it('runs SQL texts, Redis arguments and HTTP requests that try to break the record, as a read-only agent', async () => {
    const client = await pgAgent();
    const probes = [
      `SELECT $q$${INJECTION}$q$ AS p1_`,
      `SELECT '${AWKWARD.replaceAll("'", "''")}' AS p2_`,
      `SELECT E'\\x01\\x1f\\u2028\\\\' AS p3_, note FROM people`,
      'SELECT id, email, ssn, note FROM people ORDER BY id -- p4_',
      `SELECT repeat(E'\\x01"\\\\', 200000) AS p5_`,
      `SELECT 'p6_ ${'\u0001'.repeat(60_000)}'`,
    ];
    for (const [index, text] of probes.entries()) {
      const result = await client.query(text);
      expect(result.rows.length, text.slice(0, 40)).toBeGreaterThan(0);
      expected.push({ marker: `p${index + 1}_`, decision: 'allow' });
    }
    const people = await client.query('SELECT email, ssn FROM people WHERE id = 1 -- p7_');
    expected.push({ marker: 'p7_', decision: 'allow' });
    expect(JSON.stringify(people.rows)).not.toContain(EMAIL);
    expect(JSON.stringify(people.rows)).not.toContain(SSN);
    await expect(client.query(`DELETE FROM people WHERE note = $q$${INJECTION}$q$ -- p8_`)).rejects.toThrow();
    expected.push({ marker: 'p8_', decision: 'deny' });
    // A NUL inside a Query message: the server would read the text only up to it.
    await client.query('SELECT 1 AS p9_\u0000; DELETE FROM people').catch(() => undefined);
    await client.end();
    const direct = new pg.Client({ ...ADMIN, database: targetDb });
    await direct.connect();
    expect((await direct.query('SELECT count(*)::int AS n FROM people')).rows[0].n).toBe(2);
    await direct.end();

    // SQL_ASCII: bytes that are no UTF-8 in the text and in what comes back, around a covered value.
    const asciiClient = new pg.Client({ host: '127.0.0.1', port: asciiPort, user: 'rt-agent', database: 'ascii', password: token });
    asciiClient.on('error', () => undefined);
    await asciiClient.connect();
    // The rows hold bytes that are no UTF-8: the proxy cannot read (so mask) them and fails the command.
    const refused = await asciiClient.query(`SELECT email, ssn, note AS ascii12 FROM people`).then(
      () => undefined,
      (error: Error) => error,
    );
    expect(refused).toBeInstanceOf(Error);
    expect(refused!.message).not.toContain(EMAIL);
    // A literal whose escape makes no UTF-8: the parser cannot read it, so it is denied (and recorded).
    await expect(asciiClient.query(`SELECT E'\\xff' AS ascii13`)).rejects.toThrow();
    await asciiClient.end();
    expected.push({ marker: 'ascii12', decision: 'allow' }, { marker: 'ascii13', decision: 'deny' });

    const login = encodeCommand(['AUTH', token]);
    const redisProbes = [
      encodeCommand(['GET', `${keyPrefix}r1 ${INJECTION}`]),
      encodeCommand(['GET', Buffer.concat([Buffer.from(`${keyPrefix}r2-`), Buffer.from([0xff, 0x00, 0x0d, 0x0a, 0xed, 0xa0, 0x80, 0x22, 0x5c])])]),
      encodeCommand(['SET', `${keyPrefix}r3`, `${INJECTION}${AWKWARD}`]),
      encodeCommand(['ECHO', Buffer.concat([Buffer.from('r4 '), Buffer.alloc(300_000, 0x01)])]),
      encodeCommand(['GET', `${keyPrefix}r5-${'\u2028'.repeat(10)}`]),
    ];
    await respExchange(redisPort, [login, ...redisProbes]);
    expected.push({ marker: 'r1', decision: 'allow' }, { marker: 'r2-', decision: 'allow' }, { marker: 'r3', decision: 'deny' }, { marker: 'r5-', decision: 'allow' });

    const asAgent = { headers: { authorization: `Bearer ${token}`, 'x-note': 'h"\\1' } };
    const json = await fetch(`http://127.0.0.1:${httpPort}/h1/%22%5C%00%FF%E2%80%A8?q=%22}%2C%22decision%22:%22deny&e=${encodeURIComponent(EMAIL)}`, asAgent);
    expect(await json.text()).not.toContain(EMAIL);
    expected.push({ marker: '/h1/', decision: 'deny' });
    const query = await fetch(`http://127.0.0.1:${httpPort}/h4?ssn=${SSN}&email=${encodeURIComponent(EMAIL)}&note=%22%7D%2C%22rule%22%3A%22x`, asAgent);
    expect(await query.text()).not.toContain(EMAIL);
    expected.push({ marker: '/h4', decision: 'allow' });
    const raw = await fetch(`http://127.0.0.1:${httpPort}/raw/h2`, asAgent);
    expect(await raw.text()).not.toContain(EMAIL);
    expected.push({ marker: '/raw/h2', decision: 'allow' });
    const denied = await fetch(`http://127.0.0.1:${httpPort}/h3`, { ...asAgent, method: 'DELETE' });
    expect(denied.status).toBe(403);
    expected.push({ marker: '/h3', decision: 'deny' });
  }, 60_000);

  it('stores every command with its decision, and the chains verify', async () => {
    store = await openEventStore({ url: `postgres://postgres@127.0.0.1:5432/${storeDb}` });
    const decisionsOf = (rows: readonly StoredRow[], marker: string): string[] =>
      rows
        .filter((row) => (row.kind === 'command.executed' || row.kind === 'command.decided') && row.data !== null)
        .filter((row) => ((JSON.parse(row.data!) as { command?: string }).command ?? '').includes(marker))
        .map((row) => row.decision ?? '?');
    const missing = async (): Promise<string[]> => {
      const stored = await storedRows(storeDb);
      return expected.filter(({ marker }) => decisionsOf(stored, marker).length === 0).map(({ marker }) => marker);
    };
    await waitUntil(async () => (await missing()).length === 0, 30_000, 'every probe stored').catch(() => undefined);
    const rows = await storedRows(storeDb);
    if ((await missing()).length > 0) console.log(rows.map((row) => `${row.kind} ${row.decision} ${row.data?.slice(0, 300)}`).join('\n'));
    expect(await missing()).toEqual([]);
    for (const { marker, decision } of expected) expect(decisionsOf(rows, marker), marker).toEqual([decision]);
    // What ran is what is stored: the injection stays inside the command's text.
    const injected = rows.find((row) => row.data?.includes('AS p1_'))!;
    expect((JSON.parse(injected.data!) as { command: string; decision: string }).command).toBe(`SELECT $q$${INJECTION}$q$ AS p1_`);
    expect((JSON.parse(injected.data!) as { decision: string }).decision).toBe('allow');
    expect(await store.verify()).toMatchObject({ ok: true });
  }, 60_000);

  /** The stored command events whose recorded text holds `marker`, once they are there. */
  const storedCommands = async (marker: string, count: number): Promise<{ command: string; decision: string; data: Record<string, unknown> }[]> => {
    const find = async () =>
      (await storedRows(storeDb))
        .filter((row) => (row.kind === 'command.executed' || row.kind === 'command.decided') && row.data !== null)
        .map((row) => ({ data: JSON.parse(row.data!) as Record<string, unknown> & { command: string }, decision: row.decision ?? '?' }))
        .filter(({ data }) => typeof data.command === 'string' && data.command.includes(marker))
        .map(({ data, decision }) => ({ command: data.command, decision, data }));
    await waitUntil(async () => (await find()).length >= count, 20_000, `${count} commands with ${marker} stored`);
    return find();
  };

  /** A command's recorded result: under command.executed, or its own result.returned (a command slower than the merge window). */
  const recordedResult = async (command: Record<string, unknown>): Promise<{ reduced?: unknown; rows?: string[][]; truncated?: boolean; columns?: string[] }> => {
    if (command.result !== undefined || command.reduced !== undefined) return { ...(command.result as object), reduced: command.reduced };
    const find = async () => (await storedRows(storeDb)).find((row) => row.kind === 'result.returned' && row.command_id === command.commandId);
    await waitUntil(async () => (await find()) !== undefined, 20_000, 'the result stored');
    return JSON.parse((await find())!.data!) as { reduced?: unknown; rows?: string[][] };
  };

  it('records Redis keys that differ only in bytes that are not UTF-8, or in a NUL, as different commands', async () => {
    const key = (tail: number[] | string) => Buffer.concat([Buffer.from(`${keyPrefix}bin-`), typeof tail === 'string' ? Buffer.from(tail, 'utf8') : Buffer.from(tail)]);
    const keys = [key([0xff]), key([0xfe]), key('\uFFFD'), key([0x00]), key([0xc3]), key('\\xff')];
    const login = encodeCommand(['AUTH', token]);
    await respExchange(redisPort, [login, ...keys.map((name) => encodeCommand(['GET', name]))]);
    const recorded = await storedCommands(`${keyPrefix}bin-`, keys.length);
    expect(recorded).toHaveLength(keys.length);
    // Each key the agent read can be told from the others in the record.
    expect(new Set(recorded.map(({ command }) => command)).size).toBe(keys.length);
  }, 60_000);

  it('keeps the rows of a result whose values JSON escapes (control characters) in the record, cut to the bounds, not dropped whole', async () => {
    const client = await pgAgent();
    // 16,000 control characters a row: within maxRowBytes as UTF-8, six times that as JSON.
    const { rows } = await client.query(`SELECT 'm10' AS m10, email, repeat(chr(1), 16000) AS pad FROM people, generate_series(1, 6) ORDER BY id`);
    expect(rows).toHaveLength(12);
    await client.end();
    const [recorded] = await storedCommands(`'m10'`, 1);
    const result = await recordedResult(recorded!.data);
    expect(result.reduced).toBeUndefined();
    expect(result.truncated).toBe(true);
    expect(result.rows!.length).toBeGreaterThan(0);
    expect(result.rows![0]![0]).toBe('m10');
    expect(result.rows![0]![1]).toMatch(/REDACTED/);
  }, 60_000);

  it('keeps the rows of a result whose column names JSON escapes in the record, not dropped whole', async () => {
    const client = await pgAgent();
    // 1,000 columns named with 62 control characters each: 62 bytes of name, 372 of JSON.
    const columns = Array.from({ length: 1_000 }, (_, index) => `${index === 0 ? "'m11'" : 'email'} AS "${String(index).padStart(4, '0')}${'\u0001'.repeat(58)}"`);
    const { rows } = await client.query(`SELECT ${columns.join(', ')} FROM people WHERE id = 1`);
    expect(rows).toHaveLength(1);
    await client.end();
    const [recorded] = await storedCommands(`'m11'`, 1);
    const result = await recordedResult(recorded!.data);
    expect(result.reduced).toBeUndefined();
    expect(result.rows![0]![0]).toBe('m11');
    expect(result.rows![0]![1]).toMatch(/REDACTED/);
  }, 60_000);

  it('lets no raw value the profile covers reach NATS or the store', async () => {
    for (const message of await streamMessages(nc)) {
      const text = Buffer.from(message.data).toString('utf8');
      expect(text, message.subject).not.toContain(EMAIL);
      expect(text, message.subject).not.toContain(SSN);
    }
    for (const row of await storedRows(storeDb)) {
      expect(`${row.data}${row.ext}`).not.toContain(EMAIL);
      expect(`${row.data}${row.ext}`).not.toContain(SSN);
    }
  }, 60_000);

  it('stores the same rows and hashes from the same messages by the general path as the audit service stored', async () => {
    const messages = await streamMessages(nc);
    // The recording path's messages are taken as written: the fast path is what the service ran.
    expect(messages.some((message) => readWrittenEvents(message.data) !== undefined)).toBe(true);
    await dropDatabases([replayDb]);
    const replay = await openEventStore({ url: `postgres://postgres@127.0.0.1:5432/${replayDb}` });
    try {
      for (const message of messages) await replay.append(decodeEvents(message.data));
    } finally {
      await replay.close();
    }
    const strip = ({ seq: _seq, ...row }: StoredRow) => row;
    expect((await storedRows(replayDb)).map(strip)).toEqual((await storedRows(storeDb)).map(strip));
  }, 60_000);
});
