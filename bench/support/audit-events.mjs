// What the audit benchmarks (audit-cpu.mjs, store-cpu.mjs) feed the audit trail: pgbench -S
// statements recorded as the proxy records them, and CPU time read from /proc.
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { buildEvent } from '@sluice/contracts';
import { timeOrderedId } from '@sluice/event-bus';

/** One query as the server's superuser, on a client of its own: other work on a shared server may end idle connections. */
export const asAdmin = async (query, parameters) => {
  const admin = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres' });
  admin.on('error', () => undefined);
  await admin.connect();
  try {
    return (await admin.query(query, parameters)).rows;
  } finally {
    await admin.end().catch(() => undefined);
  }
};

/** CPU time of a process (user + system) in µs. */
/** A process's minor page faults so far (each first touch of fresh memory is one, in the kernel's time). */
export const minorFaults = (pid) => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[7]);

/** A process's CPU time in the kernel so far, in µs. */
export const systemMicros = (pid) => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[12]) * 10_000;

export const cpuMicros = (pid) => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
};

/**
 * `event(index)`: the index-th command's `command.executed` with `dataOf(index)` as its data,
 * spread over `sessions` sessions, each numbered on in its own sequence.
 */
const executedEvents = (run, sessions, dataOf) => {
  const seqs = new Array(sessions).fill(0);
  return (index) => {
    const session = index % sessions;
    seqs[session] += 1;
    return buildEvent('command.executed', {
      id: timeOrderedId(),
      source: 'proxy',
      subject: `${run}-session-${session}-7a6b5c4d-3e2f-1a0b-9c8d-7e6f5a4b3c2d`,
      time: new Date(),
      sessionseq: seqs[session],
      data: dataOf(index),
    });
  };
};

/** The index-th statement of a pgbench -S run, as the proxy records a SELECT (members in sorted order, as services/proxy/src/audit-port.ts writes them). */
export const pgbenchStatementEvents = (run, sessions) =>
  executedEvents(run, sessions, (index) => ({
    action: 'read',
    command: `SELECT abalance FROM pgbench_accounts WHERE aid = ${1 + ((index * 7919) % 100_000)};`,
    commandId: timeOrderedId(),
    decision: 'allow',
    durationMs: 0.41,
    ok: true,
    outcome: 'SELECT 1',
    protocol: 'postgres',
    reason: 'allowed by readers',
    resource: 'db',
    result: { bytes: 1, columns: ['abalance'], maskedCounts: {}, rowCount: 1, rows: [['0']], truncated: false },
    risk: 'low',
    rule: 'readers',
    tables: ['pgbench_accounts'],
  }));

/** A 1 KB JSON response body with masked PII, as the HTTP adapter records it (text). */
const HTTP_BODY = JSON.stringify({
  customers: Array.from({ length: 8 }, (_, index) => ({ id: 1000 + index, name: `Customer ${index}`, email: `c***${index}@example.com`, phone: '+1-***-***-0142', note: 'tier "gold"\tsince 2019' })),
}).slice(0, 1024);

/** The index-th request's, as the proxy records an HTTP GET whose 1 KB JSON body was masked (the body recorded as text). */
export const httpRequestEvents = (run, sessions) =>
  executedEvents(run, sessions, (index) => ({
    action: 'read',
    command: `GET /api/customers?page=${index % 500}`,
    commandId: timeOrderedId(),
    decision: 'allow',
    durationMs: 1.37,
    ok: true,
    outcome: '200',
    protocol: 'http',
    reason: 'allowed by readers',
    resource: 'api',
    result: { bytes: HTTP_BODY.length, columns: ['body'], maskedCounts: { email: 8, phone: 8 }, rowCount: 1, rows: [[HTTP_BODY]], truncated: false },
    risk: 'low',
    rule: 'readers',
  }));
