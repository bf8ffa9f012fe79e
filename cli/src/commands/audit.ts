import { parseArgs } from 'node:util';
import { apiBaseUrl, parsePointInTime } from '@sluice/config';
import { openEventStore, type EventStore, type SessionPage, type SessionQuery, type StoredEvent, type VerifyResult } from '@sluice/event-store';
import { resolveCliConfig } from '../config-resolution.js';
import { SluiceError, SluiceErrorCode } from '@sluice/contracts';

export interface Output {
  out(text: string): void;
  err(text: string): void;
}

export const stdio: Output = {
  out: (text) => void process.stdout.write(text),
  err: (text) => void process.stderr.write(text),
};

/** What the audit and replay commands read: the running audit service, else the store itself. */
export interface AuditSource {
  readonly via: string;
  verify(sessionId?: string): Promise<VerifyResult>;
  listSessions(query: SessionQuery): Promise<SessionPage>;
  sessionEvents(sessionId: string): Promise<readonly StoredEvent[]>;
  close(): Promise<void>;
}

class AuditApiError extends SluiceError {
  readonly code = SluiceErrorCode.AuditUnavailable;
  override readonly expose = true;
}

const httpSource = (base: string, token: string): AuditSource => {
  const get = async <T>(path: string, allow404 = false): Promise<T | undefined> => {
    const response = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}`, accept: 'application/json' }, signal: AbortSignal.timeout(30_000) });
    if (allow404 && response.status === 404) return undefined;
    if (response.status === 401 || response.status === 403) {
      const problem = (await response.json().catch(() => ({}))) as { code?: string; detail?: string };
      throw new AuditApiError(`audit service refused the token (${response.status} ${problem.code ?? ''}${problem.detail ? `: ${problem.detail}` : ''})`);
    }
    if (!response.ok) throw new AuditApiError(`audit service answered ${response.status} for ${path}`);
    return (await response.json()) as T;
  };
  return {
    via: base,
    verify: async (sessionId) => (await get<VerifyResult>(sessionId === undefined ? '/v1/verify' : `/v1/sessions/${encodeURIComponent(sessionId)}/verify`))!,
    listSessions: async (query) => {
      const params = new URLSearchParams();
      if (query.subject !== undefined) params.set('subject', query.subject);
      if (query.resource !== undefined) params.set('resource', query.resource);
      if (query.decision !== undefined) params.set('decision', query.decision);
      if (query.from !== undefined) params.set('from', query.from.toISOString());
      if (query.to !== undefined) params.set('to', query.to.toISOString());
      if (query.limit !== undefined) params.set('limit', String(query.limit));
      if (query.cursor !== undefined) params.set('cursor', query.cursor);
      return (await get<SessionPage>(`/v1/sessions?${params.toString()}`))!;
    },
    sessionEvents: async (sessionId) => {
      // The API answers a long session page by page; replay prints all of it.
      const events: StoredEvent[] = [];
      let after: string | undefined;
      do {
        const page = await get<{ events: StoredEvent[]; next?: string }>(`/v1/sessions/${encodeURIComponent(sessionId)}/events${after === undefined ? '' : `?after=${after}`}`, true);
        events.push(...(page?.events ?? []));
        after = page?.next;
      } while (after !== undefined);
      return events;
    },
    close: async () => undefined,
  };
};

const storeSource = (store: EventStore, via: string): AuditSource => ({
  via,
  verify: (sessionId) => store.verify({ sessionId }),
  listSessions: (query) => store.listSessions(query),
  sessionEvents: (sessionId) => store.sessionEvents(sessionId),
  close: () => store.close(),
});

/** The audit reader's token: `--token T`, else $SLUICE_TOKEN. */
export const readerToken = (argv: readonly string[]): string | undefined => {
  const { values } = parseArgs({ args: [...argv], options: { token: { type: 'string' } }, strict: false, allowPositionals: true });
  const token = (values.token as string | undefined) ?? process.env.SLUICE_TOKEN;
  return token === undefined || token === '' ? undefined : token;
};

/**
 * Prefers the running audit service, with the reader's token (an embedded PGlite store cannot be
 * opened by a second process). Without a token, or when the service does not answer, opens the
 * event store directly: that takes the database's own credentials, so it opens nothing the
 * database would not.
 */
export const openAuditSource = async (argv: readonly string[]): Promise<AuditSource> => {
  const { values } = parseArgs({ args: [...argv], options: { url: { type: 'string' } }, strict: false, allowPositionals: true });
  const token = readerToken(argv);
  if (typeof values.url === 'string') {
    if (token === undefined) throw new UsageError(`the audit service at ${values.url} needs an audit reader's token: --token T or SLUICE_TOKEN`);
    return httpSource(values.url.replace(/\/$/, ''), token);
  }
  const { config } = resolveCliConfig(argv);
  const base = apiBaseUrl(config.services.audit);
  let serviceAnswers = false;
  try {
    const response = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(1_500) });
    await response.body?.cancel();
    serviceAnswers = response.ok;
  } catch {
    // Not running here: read the store directly.
  }
  if (serviceAnswers && token !== undefined) return httpSource(base, token);
  if (serviceAnswers && !config.eventStore.url) {
    throw new UsageError(`the audit service at ${base} needs an audit reader's token: --token T or SLUICE_TOKEN`);
  }
  const store = await openEventStore({ url: config.eventStore.url, path: config.eventStore.path });
  return storeSource(store, config.eventStore.url ? 'event store (PostgreSQL)' : 'event store (embedded)');
};

/** `1h`, `30m`, `7d`, `2w`, an ISO time or epoch milliseconds. */
export const parseSince = (text: string, now = Date.now()): Date => {
  const date = parsePointInTime(text, now);
  if (date === undefined) throw new UsageError(`not a time or duration: ${text} (try 1h, 7d or 2026-01-01T00:00:00Z)`);
  return date;
};

export class UsageError extends SluiceError {
  readonly code = SluiceErrorCode.Usage;
  override readonly expose = true;
}

/** Fixed-width text table; cells are single-line. */
export const formatTable = (headers: readonly string[], rows: readonly (readonly string[])[], maxWidth = 60): string => {
  const clean = (cell: string): string => {
    const line = cell.replace(/[\r\n\t]+/g, ' ');
    return line.length > maxWidth ? `${line.slice(0, maxWidth - 1)}…` : line;
  };
  const cells = [headers.map(clean), ...rows.map((row) => row.map(clean))];
  const widths = headers.map((_, column) => Math.max(...cells.map((row) => (row[column] ?? '').length)));
  const render = (row: readonly string[]): string => row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd();
  return [render(cells[0]!), widths.map((width) => '-'.repeat(width)).join('  '), ...cells.slice(1).map(render)].join('\n') + '\n';
};

const verify = async (argv: readonly string[], io: Output): Promise<number> => {
  const { values } = parseArgs({ args: [...argv], options: { session: { type: 'string' }, json: { type: 'boolean' }, config: { type: 'string', short: 'c' }, url: { type: 'string' }, token: { type: 'string' } }, allowPositionals: true });
  const source = await openAuditSource(argv);
  try {
    const result = await source.verify(values.session);
    // A session whose only events were rejected (not genuine) is known, and is what verify must name.
    if (values.session !== undefined && result.events === 0 && result.ok) {
      io.err(`sluice audit: no events for session ${values.session} in ${source.via}: check the id with \`sluice audit query\`\n`);
      return 1;
    }
    if (values.json) io.out(`${JSON.stringify(result)}\n`);
    if (result.ok) {
      if (!values.json) io.out(`audit verify: OK, ${result.events} events in ${result.sessions} chains intact\n`);
      return 0;
    }
    const broken = result.firstBroken;
    // An older audit service answers without `kind`: its only failure was a broken chain.
    const kind = broken.kind ?? 'chain';
    if (!values.json) {
      if (kind === 'chain') io.out(`audit verify: BROKEN at event ${broken.id} (seq ${broken.seq}) in session ${broken.sessionId}: ${broken.reason}\n`);
      else {
        const counts = `${result.rejected ?? 0} rejected, ${result.unsigned ?? 0} unsigned`;
        const where = kind === 'rejected' ? `rejected record seq ${broken.seq}` : `seq ${broken.seq}`;
        io.out(`audit verify: NOT GENUINE: event ${broken.id} (${where}) in session ${broken.sessionId}: ${kind}: ${broken.reason} (${counts}; chains intact)\n`);
      }
    }
    io.err(kind === 'chain' ? `sluice: event chain broken at event ${broken.id} (seq ${broken.seq})\n` : `sluice: ${kind} event ${broken.id} in the audit trail\n`);
    return 1;
  } finally {
    await source.close();
  }
};

const query = async (argv: readonly string[], io: Output): Promise<number> => {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      subject: { type: 'string' },
      resource: { type: 'string' },
      since: { type: 'string' },
      until: { type: 'string' },
      decision: { type: 'string' },
      limit: { type: 'string' },
      json: { type: 'boolean' },
      config: { type: 'string', short: 'c' },
      url: { type: 'string' },
      token: { type: 'string' },
      quiet: { type: 'boolean', short: 'q' },
    },
    allowPositionals: true,
  });
  const limit = values.limit === undefined ? 100 : Number(values.limit);
  if (!Number.isInteger(limit) || limit < 1) throw new UsageError('--limit must be a positive integer');
  const source = await openAuditSource(argv);
  try {
    const page = await source.listSessions({
      subject: values.subject,
      resource: values.resource,
      decision: values.decision,
      from: values.since === undefined ? undefined : parseSince(values.since),
      to: values.until === undefined ? undefined : parseSince(values.until),
      limit,
    });
    if (values.json) {
      io.out(`${JSON.stringify(page, null, 2)}\n`);
      return 0;
    }
    if (values.quiet) {
      io.out(page.sessions.map((session) => `${session.session_id}\n`).join(''));
      return 0;
    }
    if (page.sessions.length === 0) {
      io.out('no sessions match\n');
      return 0;
    }
    io.out(
      formatTable(
        ['SESSION', 'SUBJECT', 'RESOURCE', 'PROTOCOL', 'STARTED', 'ENDED', 'COMMANDS', 'DENIED', 'APPROVALS', 'MASKED'],
        page.sessions.map((session) => [
          session.session_id,
          session.subject ?? '-',
          session.resource ?? '-',
          session.protocol ?? '-',
          session.started_at,
          session.ended_at ?? (session.rejected ? 'rejected' : 'open'),
          String(session.commands),
          String(session.denials),
          String(session.approvals),
          String(session.masked_values),
        ]),
        80,
      ),
    );
    if (page.next) io.out(`(more: use --limit to see more sessions)\n`);
    return 0;
  } finally {
    await source.close();
  }
};

export const USAGE = `usage: sluice audit verify [--session ID] [--json] [--token T]
       sluice audit query [--subject S] [--resource R] [--since 1h|ISO] [--until …] [--decision allow|deny|approve] [--limit N] [--json | -q] [--token T]
  -q prints only the session ids, newest first
  where: the deployment running in this folder, else --config FILE, or --url URL of the audit service
  --token T (or $SLUICE_TOKEN): an audit reader's OIDC access token (audit.readers), for the audit service's API
`;

/** `sluice audit verify|query …`; argv starts with the subcommand. */
export const run = async (argv: readonly string[], io: Output = stdio): Promise<number> => {
  const [subcommand, ...rest] = argv;
  try {
    if (subcommand === 'verify') return await verify(rest, io);
    if (subcommand === 'query') return await query(rest, io);
    io.err(`sluice audit: unknown subcommand "${subcommand ?? ''}"\n${USAGE}`);
    return 2;
  } catch (error) {
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      io.err(`sluice audit: ${(error as Error).message}\n${USAGE}`);
      return 2;
    }
    io.err(`sluice audit: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
};
