/**
 * CPU of recording one Redis GET, in process: the audit port's three records (decided, completed,
 * result) merged into one command.executed written into an event arena, as the proxy does, with
 * the bus left out (batches framed and released as the publisher does). `npx tsx --conditions=development bench/record-micro.ts [--commands 400000] [--rounds 5]`
 */
import { parseArgs } from 'node:util';
import { EventArena, type EventBytes } from '../libs/event-bus/src/event-arena.js';
import { createAuditPort } from '../services/proxy/src/audit-port.js';

const { values } = parseArgs({ options: { commands: { type: 'string', default: '400000' }, rounds: { type: 'string', default: '5' } } });
const commands = Number(values.commands);
const recording = { maxRows: 100, maxBytes: 65_536, maxRowBytes: 16_384, maxCommandBytes: 16_384, maxEventBytes: 262_144 };
const arena = new EventArena();
const pending: EventBytes[] = [];
const sent: EventBytes[][] = [];
let events = 0;
const port = createAuditPort(
  {
    healthy: true,
    acknowledged: async () => undefined,
    publish: () => void (events += 1),
    publishWritten(_id, write, value) {
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
  },
  { source: 'sluice/proxy', recording },
);
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

const figures: number[] = [];
for (let index = 0; index < Number(values.rounds); index++) figures.push(await round());
figures.sort((a, b) => a - b);
console.log(`µs of CPU per recorded command, rounds: ${figures.map((figure) => figure.toFixed(2)).join(' ')}; median ${figures[Math.floor(figures.length / 2)]!.toFixed(2)} (${events} events)`);
