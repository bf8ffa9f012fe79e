// CPU of the NATS client's inbound parser alone, per message, on what the audit service reads in
// a backlog: back-to-back JetStream messages (a signed batch of events each, SIZE bytes) arriving
// in 64 KiB socket reads, so that most of them span two reads or more. No server: the bytes are
// made here and handed to the client's Parser as the socket would hand them over. Compares the
// patched client (patches/) with the one on npm when run in a worktree without the patch.
//   node bench/nats-parser.mjs   (SIZE=50000 MESSAGES=2000 ROUNDS=20)
import { readFileSync } from 'node:fs';
import { Parser } from '@nats-io/nats-core/internal';

const minorFaults = () => Number(readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ')[7]);

const SIZE = Number(process.env.SIZE ?? 50_000);
const MESSAGES = Number(process.env.MESSAGES ?? 2_000);
const ROUNDS = Number(process.env.ROUNDS ?? 20);
const READ_BYTES = 64 * 1024;

const headers = 'NATS/1.0\r\nSluice-Signer: proxy\r\nSluice-Signature-Scheme: ed25519-sha256\r\nSluice-Signature: ' + 'A'.repeat(88) + '\r\n\r\n';
const record = (index) => {
  const reply = `$JS.ACK.AUDIT.audit-store.1.${index + 1}.${index + 1}.1764300000000000000.0`;
  const payload = 'x'.repeat(SIZE);
  return `HMSG audit.events.proxy.command.executed 1 ${reply} ${headers.length} ${headers.length + payload.length}\r\n${headers}${payload}\r\n`;
};
const stream = Buffer.from(Array.from({ length: MESSAGES }, (_, index) => record(index)).join(''), 'latin1');
// Each read a buffer of its own, as a socket's are.
const reads = [];
for (let at = 0; at < stream.length; at += READ_BYTES) reads.push(Uint8Array.prototype.slice.call(stream, at, at + READ_BYTES));

let received = 0;
const dispatcher = { push: (event) => (received += event.data ? 1 : 0) };
const perMessage = [];
const faultsBefore = minorFaults();
for (let round = 0; round < ROUNDS; round += 1) {
  const parser = new Parser(dispatcher);
  received = 0;
  const before = process.cpuUsage();
  for (const read of reads) parser.parse(read);
  const used = process.cpuUsage(before);
  if (received !== MESSAGES) throw new Error(`parsed ${received} of ${MESSAGES} messages`);
  perMessage.push((used.user + used.system) / MESSAGES);
}
const faults = (minorFaults() - faultsBefore) / (MESSAGES * ROUNDS);
perMessage.sort((a, b) => a - b);
const median = perMessage[Math.floor(perMessage.length / 2)];
console.log(`nats-parser: ${MESSAGES} messages of ${SIZE} bytes in ${READ_BYTES / 1024} KiB reads; CPU µs per message: median ${median.toFixed(2)} (min ${perMessage[0].toFixed(2)}), ${(median / (SIZE / 1000)).toFixed(3)} per KB; ${faults.toFixed(1)} page faults per message`);
