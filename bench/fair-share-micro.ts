/**
 * CPU of the audit queue's fair-share bookkeeping per Redis command, in process: what the Redis
 * adapter asks of the audit port for each command it takes (AuditPort.coming +2, the backlog
 * check, AuditPort.coming -2 once dispatched), for one agent with many sessions open, one of them
 * pipelining. `npx tsx --conditions=development bench/fair-share-micro.ts [--sessions 500] [--commands 2000000] [--rounds 5]`
 * The publisher is left out: its share is never over, so every check answers false as most do.
 */
import { parseArgs } from 'node:util';
import type { QueueShare } from '@sluice/event-bus';
import { createAuditPort } from '../services/proxy/src/audit-port.js';

const { values } = parseArgs({ options: { sessions: { type: 'string', default: '500' }, commands: { type: 'string', default: '2000000' }, rounds: { type: 'string', default: '5' } } });
const commands = Number(values.commands);
const recording = { maxRows: 100, maxBytes: 65_536, maxRowBytes: 16_384, maxCommandBytes: 16_384, maxEventBytes: 262_144 };
const publisher = {
  healthy: true,
  acknowledged: async (): Promise<void> => undefined,
  publish: (): void => undefined,
  overShare: (share: QueueShare, coming = 0): boolean => share.events + coming >= 1e12,
};
const port = createAuditPort(publisher, { source: 'sluice/proxy', recording });
const sessions = Array.from({ length: Number(values.sessions) }, (_, index) => `session-${index}`);
for (const session of sessions) port.record(session, 'session.started', { resource: 'kv', protocol: 'redis', subject: { sub: 'agent', groups: [], issuer: 'i' }, client: 'c', readOnly: false });
const busy = sessions[0]!;
const resume = (): void => undefined;

const round = (): number => {
  const before = process.cpuUsage();
  // As -P 16 arrives: sixteen commands taken (each checked first), then dispatched.
  for (let done = 0; done < commands; done += 16) {
    for (let index = 0; index < 16; index++) {
      if (port.backlogged(busy, resume)) throw new Error('held');
      port.coming(busy, 2);
    }
    for (let index = 0; index < 16; index++) port.coming(busy, -2);
  }
  const used = process.cpuUsage(before);
  return ((used.user + used.system) * 1000) / commands;
};

const results: number[] = [];
for (let index = 0; index < Number(values.rounds); index++) results.push(round());
const sorted = [...results].sort((a, b) => a - b);
console.log(`${sessions.length} sessions: ns per command ${results.map((ns) => ns.toFixed(1)).join(' ')} (median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(1)})`);
