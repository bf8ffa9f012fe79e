/**
 * CPU of recording one Redis GET, in process: the audit port's three records (decided, completed,
 * result) merged into one command.executed written into an event arena, as the proxy does, with
 * the bus left out (batches framed and released as the publisher does). `npx tsx --conditions=development bench/record-micro.ts [--commands 400000] [--rounds 5]`
 * --pg: a pgbench -S statement instead, as the PostgreSQL adapter records it (decided, result,
 * completed; eight sessions, one statement each per turn, as pgbench -S -c 8 arrives); with
 * --direct the same command.executed written straight into the arena, without the three records
 * and their merging: the floor an adapter that recorded an allowed command once would reach.
 */
import { parseArgs } from 'node:util';
import { writeExecutedEvent } from '../libs/contracts/src/index.js';
import { EventArena, type EventBytes } from '../libs/event-bus/src/event-arena.js';
import { timeOrderedId } from '../libs/event-bus/src/ids.js';
import { createAuditPort } from '../services/proxy/src/audit-port.js';

const { values } = parseArgs({
  options: { commands: { type: 'string', default: '400000' }, rounds: { type: 'string', default: '5' }, pg: { type: 'boolean', default: false }, direct: { type: 'boolean', default: false } },
});
const commands = Number(values.commands);
const recording = { maxRows: 100, maxBytes: 65_536, maxRowBytes: 16_384, maxCommandBytes: 16_384, maxEventBytes: 262_144 };
const arena = new EventArena();
const pending: EventBytes[] = [];
const sent: EventBytes[][] = [];
let events = 0;
/** The publisher's queue as the proxy's: events written into an arena, the bus left out. */
const publisher = {
  healthy: true,
  acknowledged: async (): Promise<void> => undefined,
  publish: (): void => void (events += 1),
  publishWritten<T>(_id: string, write: (sink: EventArena, value: T) => void, value: T): void {
    arena.begin();
    write(arena, value);
    pending.push(arena.commit());
    events += 1;
    // As the publisher does: batches of 500 events, released once acknowledged (16 batches later).
    if (arena.frameEvents >= 500) arena.closeFrame();
    for (let frame = arena.takeFrame(); frame; frame = arena.takeFrame()) {
      sent.push(pending.splice(0, frame.events));
      if (sent.length > 16) for (const event of sent.shift()!) arena.release(event);
    }
  },
};
const port = createAuditPort(publisher, { source: 'sluice/proxy', recording });
const sessions = Array.from({ length: 50 }, (_, index) => `0195f3a2-7c1e-7000-8000-0000000000${String(index).padStart(2, '0')}`);
let next = 0;
const commandId = () => `0195f3a2-7c1e-7${(next++ % 4096).toString(16).padStart(3, '0')}-8000-00000000abcd`;
const turn = () => new Promise((resolve) => setImmediate(resolve));
const value = Buffer.from('xxx');
/** Durations as the Redis adapter records them (whole microseconds); RAW=1: as clock differences. */
const duration = process.env.RAW ? (ms: number) => ms : (ms: number) => Math.round(ms * 1000) / 1000;

const round = async (): Promise<number> => {
  const before = process.cpuUsage();
  for (let done = 0; done < commands; ) {
    // Like -c 50 -P 16: every session's 16 commands decided, then answered, in one turn.
    for (const session of sessions) {
      const started = performance.now();
      const ids: string[] = [];
      for (let index = 0; index < 16; index++) {
        const id = commandId();
        ids.push(id);
        port.record(session, 'command.decided', { commandId: id, resource: 'kv', protocol: 'redis', command: 'GET key:__rand_int__', action: 'read', risk: 'low', decision: 'allow', rule: 'readers', reason: '', tables: undefined, truncated: undefined, commandBytes: undefined });
      }
      for (const id of ids) {
        port.record(session, 'command.completed', { commandId: id, outcome: 'bulk', ok: true, error: undefined, durationMs: duration(performance.now() - started) });
        port.record(session, 'result.returned', { commandId: id, columns: ['value'], rows: [[value.toString('utf8')]], rowCount: 1, bytes: 9, truncated: false, maskedCounts: {} });
      }
      done += 16;
    }
    await turn();
  }
  const used = process.cpuUsage(before);
  return (used.user + used.system) / commands;
};

const pgSessions = sessions.slice(0, 8);
/** One decision for every statement, as the policy port's cache hands the same one out. */
const pgDecision = { resource: 'db', protocol: 'postgres', action: 'read', risk: 'low', decision: 'allow', rule: 'readers', reason: 'allowed by rule readers', tables: ['public.pgbench_accounts'] } as const;
let sessionseq = 0;

const pgRound = async (): Promise<number> => {
  const before = process.cpuUsage();
  for (let done = 0; done < commands; ) {
    for (const session of pgSessions) {
      const id = commandId();
      const started = performance.now();
      const command = `SELECT abalance FROM pgbench_accounts WHERE aid = ${1 + (done++ % 100_000)};`;
      const result = { commandId: id, columns: ['abalance'], rows: [['0']], rowCount: 1, bytes: 1, truncated: false, maskedCounts: {} };
      const durationMs = duration(performance.now() - started);
      if (values.direct) {
        // Built as the audit port builds it: one literal, members in sorted order.
        const executed = {
          action: pgDecision.action,
          command,
          commandBytes: undefined,
          commandId: id,
          decision: pgDecision.decision,
          durationMs,
          error: undefined,
          ok: true,
          outcome: 'SELECT 1',
          protocol: pgDecision.protocol,
          reason: pgDecision.reason,
          resource: pgDecision.resource,
          result: { bytes: result.bytes, columns: result.columns, maskedCounts: result.maskedCounts, rowCount: result.rowCount, rows: result.rows, truncated: result.truncated },
          risk: pgDecision.risk,
          rule: pgDecision.rule,
          tables: pgDecision.tables,
          truncated: undefined,
        };
        publisher.publishWritten(id, writeExecutedEvent, { id: timeOrderedId(), source: 'sluice/proxy', subject: session, time: new Date(), sessionseq: ++sessionseq, data: executed });
        continue;
      }
      port.record(session, 'command.decided', { commandId: id, ...pgDecision, command, truncated: undefined, commandBytes: undefined });
      port.record(session, 'result.returned', result);
      port.record(session, 'command.completed', { commandId: id, outcome: 'SELECT 1', ok: true, error: undefined, durationMs });
    }
    await turn();
  }
  const used = process.cpuUsage(before);
  return (used.user + used.system) / commands;
};

const figures: number[] = [];
for (let index = 0; index < Number(values.rounds); index++) figures.push(await (values.pg ? pgRound() : round()));
figures.sort((a, b) => a - b);
console.log(`µs of CPU per recorded command, rounds: ${figures.map((figure) => figure.toFixed(2)).join(' ')}; median ${figures[Math.floor(figures.length / 2)]!.toFixed(2)} (${events} events)`);
