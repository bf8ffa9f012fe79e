import { randomUUID } from 'node:crypto';
import type net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { encodeBind, encodeCopyDone, encodeCopyData, encodeExecute, encodeFlush, encodeParse, encodeQuery, encodeSync } from '@sluice/codec-pg';
import { kindOfType, type CloudEvent } from '@sluice/contracts';
import { connectBus, decodeEvents, ensureEventStream, EventPublisher, type NatsConnection } from '@sluice/event-bus';
import { compileMasking } from '@sluice/masking-engine';
import { createPolicy } from '@sluice/policy-engine';
import { loadSqlClassifier } from '@sluice/sql-classifier';
import { createAuditPort, type RecordingAuditPort } from '../services/proxy/src/audit-port.js';
import { createPostgresAdapter, type PostgresAdapter } from '../services/proxy/src/postgres/adapter.js';
import type { PostgresResourceConfig } from '@sluice/config';
import { createDatabase, dropDatabases } from './support/databases.js';
import { startTestIssuer, type TestIssuer } from './support/oidc.js';
import { createPostgresPorts, enginePolicyPort, listenPostgresProxy, RawPostgresSession, waitFor } from './support/postgres-proxy-harness.js';
import { RAW_SSN, RED_TEAM_RESOURCE, RED_TEAM_SEED_SQL, redTeamConfig } from './support/postgres-red-team.js';
import { waitUntil } from './support/wait.js';

/**
 * Red team on the audit port releasing a command whose result came before its completion at the
 * completion (9acaca7): a read-only agent orders its commands so results, completions, errors,
 * COPY and the session's end come in every order the protocol allows, through the real
 * PostgreSQL adapter, the real audit port and publisher on a real NATS JetStream. Every command
 * must be recorded once (one decision, at most one completion), each result with its own command
 * (its row count), and each session's sequence without a gap.
 */
const run = randomUUID().slice(0, 8);
const database = `sluice_audit_order_${run}`;
const stream = `RT_AUDIT_ORDER_${run}`;
const subjectPrefix = `rtauditorder.${run}.events`;
const recording = { maxRows: 100, maxBytes: 65_536, maxRowBytes: 16_384, maxCommandBytes: 16_384, maxEventBytes: 262_144 };

/** Each statement's text names the rows it returns, so a result recorded with another command shows. */
const rowsOf = (text: string): number | undefined => {
  const counts = [...text.matchAll(/generate_series\(1, (\d+)\)/g)].map((match) => Number(match[1]));
  return counts.length > 0 ? Math.max(...counts) : undefined;
};

describe('the audit port under every order of results, completions and ends', () => {
  let nc: NatsConnection;
  let issuer: TestIssuer;
  let publisher: EventPublisher;
  let audit: RecordingAuditPort;
  let adapter: PostgresAdapter;
  let server: net.Server;
  let port: number;
  const sessions: RawPostgresSession[] = [];
  let approvalsRequested = 0;

  beforeAll(async () => {
    await loadSqlClassifier();
    nc = await connectBus('nats://127.0.0.1:4222', 'rt-audit-order');
    await ensureEventStream(nc, { stream, subjectPrefix, duplicateWindowMs: 60_000 });
    issuer = await startTestIssuer();
    await createDatabase(database, RED_TEAM_SEED_SQL);
    const config = redTeamConfig(database, ['public.secrets']);
    const resource = config.resources[0] as PostgresResourceConfig;
    publisher = new EventPublisher(nc, { source: 'proxy', subjectPrefix });
    audit = createAuditPort(publisher, { source: 'sluice/proxy', recording });
    const ports = createPostgresPorts({
      issuer,
      policy: enginePolicyPort(createPolicy(config.rules, config.resources, { approvalTimeoutMs: 60_000 })),
      masking: compileMasking(config.masking, { hashKey: 'audit-order' }),
      record: () => undefined,
      maxRows: recording.maxRows,
      // A held command waits until its session gives it up.
      approvals: {
        request: async () => {
          approvalsRequested++;
          return { approvalId: `appr-${randomUUID().slice(0, 8)}`, expiresAt: new Date(Date.now() + 60_000) };
        },
        awaitDecision: async (_approvalId, signal) => {
          await new Promise((resolve) => (signal.aborted ? resolve(undefined) : signal.addEventListener('abort', resolve, { once: true })));
          return { outcome: 'cancelled', approvers: [], reason: 'the hold was given up' };
        },
        consume: async () => false,
      },
    });
    adapter = createPostgresAdapter({ ...resource, target: { ...resource.target, port: 5432, ssl: false } }, { secretsDir: process.cwd() });
    ({ server, port } = await listenPostgresProxy(adapter, { ...ports, audit }));
  }, 60_000);

  afterAll(async () => {
    for (const session of sessions) session.socket.destroy();
    await adapter?.close();
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
    await publisher?.close();
    await (await jetstreamManager(nc)).streams.delete(stream).catch(() => undefined);
    await nc?.drain();
    await issuer?.close();
    await dropDatabases([database]);
  });

  const open = (groups = ['readers']): Promise<RawPostgresSession> =>
    RawPostgresSession.open(port, RED_TEAM_RESOURCE, () => issuer.mint({ sub: `audit-order-${run}`, groups }), (session) => sessions.push(session));

  /** Every event on the stream so far, once the publisher has sent what it has. */
  const published = async (): Promise<CloudEvent[]> => {
    await publisher.flush();
    const info = await (await jetstreamManager(nc)).streams.info(stream);
    const consumer = await jetstream(nc).consumers.get(stream);
    const events: CloudEvent[] = [];
    let messages = 0;
    for await (const message of await consumer.fetch({ max_messages: info.state.messages, expires: 2_000 })) {
      events.push(...decodeEvents(message.data));
      if (++messages >= info.state.messages) break;
    }
    return events;
  };

  it('records each command once, its result with it, in a gapless sequence', async () => {
    const step = (text: string, maxRows = 0): Buffer[] => [encodeParse('', text), encodeBind('', ''), encodeExecute('', maxRows)];

    // Pipelined extended queries: results then completions, one erroring mid-pipeline, then a Sync.
    const pipelined = await open();
    await pipelined.run('select 1');
    pipelined.send(
      ...step('select g from generate_series(1, 3) g'),
      ...step('select g, ssn from people, generate_series(1, 17) g'),
      encodeSync(),
      ...step('select g from generate_series(1, 4) g'),
      ...step('select 1 / 0 from generate_series(1, 1)'),
      ...step('select g from generate_series(1, 9) g'),
      encodeSync(),
      ...step('select g from generate_series(1, 5) g'),
      encodeSync(),
    );
    await pipelined.readyCount(5);
    expect(pipelined.errors().map((error) => error.C)).toEqual(['22012']);

    // Simple queries: several statements in one, an error stopping the rest, COPY out and a COPY in refused.
    const simple = await open();
    await simple.run(
      'select g from generate_series(1, 6) g; select g from generate_series(1, 7) g',
      'select g from generate_series(1, 2) g; select 1 / 0; select g from generate_series(1, 8) g',
      'copy (select g from generate_series(1, 11) g) to stdout',
      'select g from generate_series(1, 12) g',
    );
    simple.send(encodeQuery('copy victim from stdin'), encodeCopyData('9\t9\n'), encodeCopyDone());
    await simple.readyCount(6);
    await simple.run('select g from generate_series(1, 13) g');

    // A portal read in parts: a result per Execute.
    const portal = await open();
    await portal.run('select 1');
    portal.send(encodeParse('', 'select g from generate_series(1, 10) g'), encodeBind('', ''), encodeExecute('', 4), encodeExecute('', 4), encodeExecute('', 0), encodeSync());
    await portal.readyCount(3);
    expect(portal.rows()).toHaveLength(11);

    // Sessions ending mid-command: a result sent and a statement still running; a pipeline still
    // being decided; a row sent of a statement still sending rows.
    const hangup = await open();
    await hangup.run('select 1');
    hangup.send(...step('select g from generate_series(1, 14) g'), encodeSync(), ...step('select count(*) from generate_series(1, 30000000)'), encodeSync());
    await waitFor(() => hangup.count('ReadyForQuery') >= 3);
    expect(hangup.errors()).toEqual([]);
    hangup.socket.destroy();
    const undecided = await open();
    await undecided.run('select 1');
    undecided.send(...step('select g from generate_series(1, 15) g'), encodeFlush(), ...step('select g from generate_series(1, 16) g'), encodeSync());
    undecided.socket.destroy();
    // An agent whose rules hold risky writes for a human: an allowed read decided beside a held
    // delete, and the agent hangs up while the delete waits.
    const held = await open(['changers']);
    await held.run('select 1');
    held.send(...step('select g from generate_series(1, 18) g'), ...step('delete from victim'), encodeSync());
    await waitFor(() => approvalsRequested === 1);
    held.socket.destroy();
    const midRow = await open();
    midRow.send(encodeQuery('select g from generate_series(1, 20000000) g'));
    await waitFor(() => midRow.count('DataRow') >= 1);
    midRow.socket.destroy();

    for (const session of [pipelined, simple, portal]) session.socket.end(Buffer.from([0x58, 0, 0, 0, 4]));
    let events: CloudEvent[] = [];
    await waitUntil(
      async () => {
        events = await published();
        return events.filter((event) => kindOfType(event.type) === 'session.ended').length >= 7;
      },
      30_000,
      'every session ended in the record',
    );
    expect(JSON.stringify(events)).not.toContain(RAW_SSN);

    const bySession = new Map<string, CloudEvent[]>();
    for (const event of events) bySession.set(event.subject, [...(bySession.get(event.subject) ?? []), event]);
    expect(bySession.size).toBe(7);
    for (const [session, ofSession] of bySession) {
      const sequences = ofSession.map((event) => event.sessionseq);
      expect(sequences, session + JSON.stringify(ofSession.map((e) => [e.type, e.sessionseq, (e.data as unknown as Record<string, unknown>).commandId, (e.data as unknown as Record<string, unknown>).command ?? (e.data as unknown as Record<string, unknown>).reason, (e.data as unknown as Record<string, unknown>).error, (e.data as unknown as Record<string, unknown>).decision])))
        .toEqual(Array.from({ length: ofSession.length }, (_, index) => index + 1));
      expect(kindOfType(ofSession.at(-1)!.type), session).toBe('session.ended');
    }

    type Seen = { text?: string; decisions: number; completions: number; results: number[]; after: boolean };
    const commands = new Map<string, Seen>();
    const seen = (id: string): Seen => {
      let entry = commands.get(id);
      if (!entry) commands.set(id, (entry = { decisions: 0, completions: 0, results: [], after: false }));
      return entry;
    };
    const ended = new Set<string>();
    for (const event of events) {
      const kind = kindOfType(event.type);
      const data = event.data as unknown as Record<string, unknown>;
      const id = data.commandId as string | undefined;
      if (kind === 'session.ended') ended.add(event.subject);
      if (!id) continue;
      const entry = seen(id);
      if (ended.has(event.subject)) entry.after = true;
      if (kind === 'command.executed' || kind === 'command.decided') {
        entry.decisions++;
        entry.text = data.command as string;
      }
      if (kind === 'command.executed' || kind === 'command.completed') entry.completions++;
      const result = kind === 'command.executed' ? (data.result as { rowCount: number } | undefined) : kind === 'result.returned' ? (data as { rowCount: number }) : undefined;
      if (result) entry.results.push(result.rowCount);
    }
    for (const [id, entry] of commands) {
      const label = `${id} ${entry.text}`;
      expect(entry.decisions, label).toBe(1);
      expect(entry.completions, label).toBeLessThanOrEqual(1);
      expect(entry.after, label).toBe(false);
      const rows = rowsOf(entry.text ?? '');
      if (rows === undefined) continue;
      // A result is never another command's: its rows are this text's.
      for (const count of entry.results) expect(count, label).toBeLessThanOrEqual(rows);
    }
    // Decided beside a held command the agent gave up: never sent, ended in the record as not run.
    const besideHeld = [...commands.values()].find((command) => command.text?.includes('generate_series(1, 18)'));
    expect(besideHeld).toMatchObject({ decisions: 1, completions: 1, results: [] });
    // A portal read in parts: each Execute a command of its own, with its part of the rows.
    const parts = [...commands.values()].filter((command) => command.text?.includes('generate_series(1, 10)'));
    expect(parts.map((part) => part.results).flat()).toEqual([4, 4, 2]);
    for (const part of parts) expect(part.completions).toBe(1);
    // Every statement that ran to its end has its completion and its result in the record (of
    // several in one Query, the last one's).
    for (const rows of [3, 17, 4, 5, 7, 11, 12, 13, 14]) {
      const entry = [...commands.values()].find((command) => command.text?.includes(`generate_series(1, ${rows})`) && command.completions === 1);
      expect(entry, `generate_series(1, ${rows})`).toBeDefined();
      expect(entry!.results.at(-1), `generate_series(1, ${rows})`).toBe(rows);
    }
  }, 60_000);
});
