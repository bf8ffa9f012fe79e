import { parseArgs } from 'node:util';
import { kindOfType } from '@sluice/contracts';
import type { StoredEvent } from '@sluice/event-store';
import { formatTable, openAuditSource, stdio, UsageError, type Output } from './audit.js';

type Data = Record<string, unknown>;

// Objects print as JSON, not as `[object Object]`.
const str = (value: unknown, fallback = ''): string => {
  if (typeof value === 'string') return value;
  if (value === undefined || value === null) return fallback;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return JSON.stringify(value) ?? fallback;
};

const offset = (ms: number): string => `+${(ms / 1000).toFixed(3)}s`.padStart(10);

const INDENT = ' '.repeat(12);

const decidedLines = (data: Data, at: string): string[] => [
  `${at}  > ${str(data.command)}`,
  `${INDENT}decision: ${str(data.decision)} by rule ${str(data.rule, '-')} (action ${str(data.action)}, risk ${str(data.risk)})${data.reason ? `: ${str(data.reason)}` : ''}`,
];

const completedLines = (data: Data, at: string): string[] => {
  const error = data.error as Data | undefined;
  return [`${at}    completed: ${str(data.outcome)}${data.ok === false ? ` FAILED${error ? ` ${str(error.code)} ${str(error.message)}` : ''}` : ''} (${str(data.durationMs, '?')} ms)`];
};

const returnedLines = (data: Data, at: string): string[] => {
  const columns = Array.isArray(data.columns) ? (data.columns as unknown[]).map((column) => str(column)) : [];
  const rows = Array.isArray(data.rows) ? (data.rows as unknown[][]) : [];
  const masked = Object.entries((data.maskedCounts ?? {}) as Record<string, number>)
    .map(([name, count]) => `${name}: ${count}`)
    .join(', ');
  const lines = [`${at}    returned ${str(data.rowCount, String(rows.length))} row(s)${data.truncated ? ` (recorded ${rows.length}, truncated)` : ''}${masked ? `, masked ${masked}` : ''}`];
  if (columns.length > 0 && rows.length > 0) {
    const table = formatTable(columns, rows.map((row) => columns.map((_, index) => (row[index] === null || row[index] === undefined ? 'NULL' : str(row[index])))), 40);
    for (const line of table.trimEnd().split('\n')) lines.push(`${INDENT}${line}`);
  }
  return lines;
};

/** One event as lines of text; commands, decisions, approvals, completions and returned data. */
export const describeEvent = (event: StoredEvent, startMs: number): string[] => {
  const data = (event.data ?? {}) as unknown as Data;
  const at = offset(Date.parse(event.time) - startMs);
  const kind = kindOfType(event.type) ?? event.type;
  switch (kind) {
    case 'session.started': {
      const subject = (data.subject ?? {}) as Data;
      const groups = Array.isArray(subject.groups) ? subject.groups.join(',') : '';
      return [`${at}  session started: ${str(subject.sub, '?')}${groups ? ` [${groups}]` : ''} -> ${str(data.resource)} (${str(data.protocol)}) from ${str(data.client, '?')}${data.readOnly ? ', read-only' : ''}`];
    }
    case 'session.rejected':
      return [`${at}  session rejected on ${str(data.resource)}: ${str(data.code)} ${str(data.reason)}`];
    case 'session.ended':
      return [`${at}  session ended: ${str(data.reason)} (${str(data.commands, '0')} commands, ${str(data.durationMs, '?')} ms)`];
    case 'command.decided':
      return decidedLines(data, at);
    case 'command.executed':
      // A command that ran without a hold: its decision, outcome and result in one event.
      return [...decidedLines(data, at), ...completedLines(data, at), ...(data.result ? returnedLines((data.result ?? {}) as Data, at) : [])];
    case 'approval.requested':
      return [`${at}    approval ${str(data.approvalId)} requested (rule ${str(data.rule)}, expires ${str(data.expiresAt)})`];
    case 'approval.decided':
      return [`${at}    approval ${str(data.approvalId)}: ${str(data.decision)} by ${str(data.approver)} via ${str(data.via)}${data.reason ? ` ("${str(data.reason)}")` : ''}${data.final ? '' : ' (more approvals needed)'}`];
    case 'approval.expired':
      return [`${at}    approval ${str(data.approvalId)} expired`];
    case 'approval.cancelled':
      return [`${at}    approval ${str(data.approvalId)} cancelled: ${str(data.reason)}`];
    case 'approval.executed':
      return [`${at}    approval ${str(data.approvalId)} executed`];
    case 'command.completed':
      return completedLines(data, at);
    case 'result.returned':
      return returnedLines(data, at);
    default:
      return [`${at}  ${kind}`];
  }
};

export const USAGE = `usage: sluice replay <session-id> [--speed N] [--json] [--token T]
  prints a session's commands, decisions and returned data in order (--speed 0, the default,
  prints without waiting; N replays N times faster than it happened)
  where: the deployment running in this folder, else --config FILE, or --url URL of the audit service
  --token T (or $SLUICE_TOKEN): an audit reader's OIDC access token (audit.readers)
`;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** `sluice replay <session-id> [--speed N] [--json]`: the session as it happened. */
export const run = async (argv: readonly string[], io: Output = stdio): Promise<number> => {
  let values: { speed?: string | undefined; json?: boolean | undefined };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: [...argv],
      options: { speed: { type: 'string' }, json: { type: 'boolean' }, config: { type: 'string', short: 'c' }, url: { type: 'string' }, token: { type: 'string' } },
      allowPositionals: true,
    }));
  } catch (error) {
    io.err(`sluice replay: ${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  const sessionId = positionals[0];
  const speed = values.speed === undefined ? 0 : Number(values.speed);
  if (!sessionId || !Number.isFinite(speed) || speed < 0) {
    io.err(`sluice replay: ${sessionId ? '--speed expects a number >= 0' : 'the session id is required'}\n${USAGE}`);
    return 2;
  }
  try {
    const source = await openAuditSource(argv);
    let events: readonly StoredEvent[];
    try {
      events = await source.sessionEvents(sessionId);
    } finally {
      await source.close();
    }
    if (events.length === 0) {
      io.err(`sluice replay: no events for session ${sessionId}: find its id with \`sluice audit query\`\n`);
      return 1;
    }
    const startMs = Date.parse(events[0]!.time);
    let previousMs = startMs;
    if (!values.json) io.out(`session ${sessionId}: ${events.length} events from ${events[0]!.time}\n`);
    for (const event of events) {
      const eventMs = Date.parse(event.time);
      if (speed > 0 && eventMs > previousMs) await sleep(Math.min((eventMs - previousMs) / speed, 60_000));
      previousMs = Math.max(previousMs, eventMs);
      if (values.json) io.out(`${JSON.stringify({ offsetMs: eventMs - startMs, ...event })}\n`);
      else io.out(`${describeEvent(event, startMs).join('\n')}\n`);
    }
    return 0;
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(`sluice replay: ${error.message}\n`);
      return 2;
    }
    io.err(`sluice replay: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
};
