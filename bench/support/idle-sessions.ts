import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import pg from 'pg';
import { PG_HOST } from './targets.js';

/** What idle authenticated sessions cost the proxy, per session, from its resident memory. */
export interface IdleSessionsResult {
  readonly protocol: 'redis' | 'postgres';
  /** Sessions asked for and sessions that logged in and stayed open. */
  readonly wanted: number;
  readonly opened: number;
  /** Why fewer were opened than wanted (a server's connection limit), if so. */
  readonly limitedBy?: string;
  readonly rssBeforeKiB: number;
  readonly rssAfterKiB: number;
  /** (after − before) / opened: an upper bound, since the garbage of the logins is in it too. */
  readonly perSessionKiB: number;
  readonly error?: string;
}

/** Issue 12's target: <= 64 KB per idle authenticated session at 2,000 sessions. */
export const IDLE_SESSION_TARGET_KIB = 64;

/** VmRSS of a process in KiB. @see https://man7.org/linux/man-pages/man5/proc_pid_status.5.html */
export const residentKiB = (pid: number): number => {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]);
};

const settle = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The proxy's RSS once it has been still for a while (lazy frees and JIT settle), as the median of samples. */
const settledResident = async (pid: number): Promise<number> => {
  await settle(3_000);
  const samples: number[] = [];
  for (let i = 0; i < 5; i++) {
    samples.push(residentKiB(pid));
    await settle(200);
  }
  return samples.sort((a, b) => a - b)[2]!;
};

/** One Redis session logged in with `AUTH <token>`, left open and idle. */
const redisSession = (port: number, token: string): Promise<Socket> =>
  new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    let reply = '';
    const fail = (error: Error) => {
      socket.destroy();
      reject(error);
    };
    socket.setTimeout(30_000, () => fail(new Error('no answer to AUTH within 30 s')));
    socket.once('error', fail);
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      if (!reply.includes('\r\n')) return;
      socket.removeAllListeners('data');
      socket.setTimeout(0);
      if (reply.startsWith('+OK')) resolve(socket);
      else fail(new Error(`AUTH answered ${reply.trim()}`));
    });
    socket.write(`*2\r\n$4\r\nAUTH\r\n$${Buffer.byteLength(token)}\r\n${token}\r\n`);
  });

/** Opens `count` sessions `concurrency` at a time; stops at the first failure and says why. */
const openSessions = async <T>(count: number, concurrency: number, open: () => Promise<T>): Promise<{ sessions: T[]; error?: string }> => {
  const sessions: T[] = [];
  let error: string | undefined;
  let next = 0;
  const worker = async () => {
    while (error === undefined && next < count) {
      next++;
      try {
        sessions.push(await open());
      } catch (caught) {
        error ??= (caught as Error).message;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { sessions, ...(error === undefined ? {} : { error }) };
};

/** How many more connections the PostgreSQL server takes, keeping a margin for everything else. */
export const freePostgresConnections = async (database: string, user: string, margin = 15): Promise<number> => {
  const client = new pg.Client({ host: PG_HOST, port: 5432, user, database });
  await client.connect();
  try {
    const { rows } = await client.query<{ max: number; used: number }>(
      "SELECT current_setting('max_connections')::int AS max, (SELECT count(*)::int FROM pg_stat_activity) AS used",
    );
    return Math.max(0, rows[0]!.max - rows[0]!.used - margin);
  } finally {
    await client.end();
  }
};

export const measureRedisIdleSessions = async (options: { proxyPid: number; port: number; token: string; count: number }): Promise<IdleSessionsResult> => {
  const rssBeforeKiB = await settledResident(options.proxyPid);
  const { sessions, error } = await openSessions(options.count, 50, () => redisSession(options.port, options.token));
  try {
    const rssAfterKiB = await settledResident(options.proxyPid);
    return result('redis', options.count, sessions.length, rssBeforeKiB, rssAfterKiB, error);
  } finally {
    for (const socket of sessions) socket.destroy();
  }
};

export const measurePostgresIdleSessions = async (options: {
  proxyPid: number;
  port: number;
  database: string;
  user: string;
  token: string;
  count: number;
  limitedBy?: string;
}): Promise<IdleSessionsResult> => {
  const rssBeforeKiB = await settledResident(options.proxyPid);
  const { sessions, error } = await openSessions(options.count, 10, async () => {
    const client = new pg.Client({ host: '127.0.0.1', port: options.port, database: options.database, user: options.user, password: options.token });
    client.on('error', () => undefined);
    await client.connect();
    return client;
  });
  try {
    const rssAfterKiB = await settledResident(options.proxyPid);
    return { ...result('postgres', options.count, sessions.length, rssBeforeKiB, rssAfterKiB, error), ...(options.limitedBy ? { limitedBy: options.limitedBy } : {}) };
  } finally {
    await Promise.all(sessions.map((client) => client.end().catch(() => undefined)));
  }
};

const result = (protocol: IdleSessionsResult['protocol'], wanted: number, opened: number, rssBeforeKiB: number, rssAfterKiB: number, error: string | undefined): IdleSessionsResult => ({
  protocol,
  wanted,
  opened,
  rssBeforeKiB,
  rssAfterKiB,
  perSessionKiB: opened === 0 ? Number.NaN : (rssAfterKiB - rssBeforeKiB) / opened,
  ...(error === undefined ? {} : { error }),
});
