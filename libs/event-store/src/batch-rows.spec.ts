import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildEvent, isoTime, type CloudEvent } from '@sluice/contracts';
import { BatchBytes } from './batch-bytes.js';
import { appendCopyRow, chain, copyDataChunks, eventRow, type ChainLink, type CopyRow, type StoredOfBatch } from './batch-rows.js';
import { GENESIS_HASH } from './chain.js';
import { COPY_DATA_HEADER_BYTES } from './copy-in.js';
import { readWrittenEvents } from './written-events.js';

const receivedAt = new Date('2026-05-06T07:08:09.010Z');

const executed = (index: number, session: string, text: string): CloudEvent =>
  buildEvent('command.executed', {
    id: `0b1c2d3e-${index}`,
    source: 'proxy',
    subject: session,
    time: new Date(Date.UTC(2026, 0, 2, 3, 4, 5, index)),
    sessionseq: index,
    data: {
      action: 'read',
      command: text,
      commandId: `c${index}`,
      decision: 'allow',
      durationMs: 0.41,
      ok: true,
      outcome: 'SELECT 1',
      protocol: 'postgres',
      reason: text,
      resource: text === '' ? 'db' : text,
      result: { bytes: 1, columns: ['a'], maskedCounts: { email: index }, rowCount: 1, rows: [[text]], truncated: false },
      risk: 'low',
      rule: 'readers',
    },
  });

/** An event as the audit service gets it: taken as written when its bytes allow, else parsed. */
const received = (event: CloudEvent): CloudEvent => readWrittenEvents(Buffer.from(JSON.stringify(event), 'utf8'))?.[0] ?? event;

/** The rows of the CopyData messages among `chunks`, each message whole (its header's length) and ending a row. */
const copyDataRows = (chunks: readonly Buffer[]): string[][] => {
  const bytes = Buffer.concat(chunks);
  const rows: string[][] = [];
  for (let at = 0; at < bytes.length; ) {
    expect(bytes[at]).toBe(0x64);
    const end = at + 1 + bytes.readInt32BE(at + 1);
    const data = bytes.subarray(at + COPY_DATA_HEADER_BYTES, end);
    // COPY's text format has no way to write NUL.
    expect(data.includes(0)).toBe(false);
    expect(data[data.length - 1]).toBe(0x0a);
    for (const line of data.subarray(0, data.length - 1).toString('utf8').split('\n')) rows.push(line.split('\t'));
    at = end;
  }
  return rows;
};

/** A field as PostgreSQL reads COPY's text format (the escapes copyField writes; any other is a failure). */
const fieldValue = (field: string): string | null => {
  if (field === '\\N') return null;
  return field.replace(/\\(.)/gsu, (_, escaped: string) => {
    const plain = { '\\': '\\', n: '\n', r: '\r', t: '\t' }[escaped];
    if (plain === undefined) throw new Error(`unexpected escape \\${escaped}`);
    return plain;
  });
};

/** What each row must read as: the event's columns, then its chain fields. */
const expectedRow = (event: CloudEvent, link: ChainLink<CopyRow>): (string | number | null)[] => {
  const { row } = eventRow(event, receivedAt, 'proxy');
  return [
    row.id, row.session_id, row.type, row.kind, row.source, isoTime(row.time), row.data, row.ext, row.resource, row.subject_sub,
    row.command_id, row.approval_id, row.decision, String(row.masked_values), row.signed_by, link.sessionSeq, link.hash, link.prevHash,
  ];
};

const readRow = (fields: readonly string[]): (string | number | null)[] => {
  expect(fields).toHaveLength(18);
  const values = fields.map(fieldValue);
  return [...values.slice(0, 15), Number(values[15]), ...values.slice(16)];
};

/** Prepares `events` as the store does (two buffers) and chains them to `stored`. */
const chained = (events: readonly CloudEvent[], stored: readonly StoredOfBatch[]) => {
  const bytes = new BatchBytes(16);
  const copyText = new BatchBytes(16);
  const rows = events.map((event) => appendCopyRow(bytes, received(event), receivedAt, 'proxy', copyText));
  const links = chain(rows, (prevHash, row) => bytes.chainHash(prevHash, row.at, row.split), stored);
  return { copyText, links, chunks: copyDataChunks(copyText, links) };
};

const hexHash = fc.stringMatching(/^[0-9a-f]{64}$/);
/** Texts a stored hash could be read back as (PostgreSQL text holds no NUL). */
const oddHash = fc.string({ unit: 'binary', maxLength: 70 }).filter((text) => !text.includes('\u0000'));
const text = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom('back\\slash', 'tab\there', 'new\nline', 'carriage\rreturn', 'nul\u0000byte', 'é € 😀 דּ', '\\N', '\\\\t', '\u2028'),
);

describe('rows sent by COPY', () => {
  it('sends each chained row as PostgreSQL reads it, escapes, NUL and non-ASCII included, in place or gathered', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ session: fc.constantFrom('s1', 's2', 'tab\tsession', 'é'), text }), { minLength: 1, maxLength: 12 }),
        fc.array(fc.record({ session: fc.constantFrom('s1', 's2', 'tab\tsession', 'é'), hash: fc.oneof(hexHash, oddHash), seq: fc.oneof(fc.integer({ min: 1, max: 99 }), fc.constant(9_999_999_998), fc.constant(2 ** 40)) }), { maxLength: 3 }),
        fc.array(fc.nat(11), { maxLength: 2 }),
        (specs, heads, storedIndexes) => {
          const events = specs.map(({ session, text }, index) => executed(index, session, text));
          const stored: StoredOfBatch[] = [
            ...heads.map(({ session, hash, seq }) => ({ id: null, session_id: session, hash, session_seq: seq })),
            ...storedIndexes.filter((index) => index < events.length).map((index) => ({ id: events[index]!.id, session_id: null, hash: null, session_seq: null })),
          ];
          const { links, chunks } = chained(events, stored);
          const byId = new Map(events.map((event) => [event.id, event]));
          expect(copyDataRows(chunks).map(readRow)).toEqual(links.map((link) => expectedRow(byId.get(link.prepared.id)!, link)));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('sends rows that lie back to back where they lie, with their chain fields written into their room', () => {
    const events = [0, 1, 2, 3].map((index) => executed(index, `s${index % 2}`, 'SELECT 1'));
    const { copyText, links, chunks } = chained(events, [{ id: null, session_id: 's1', hash: 'a'.repeat(64), session_seq: 41 }]);
    expect(chunks).toHaveLength(2);
    expect(chunks[0]).toHaveLength(COPY_DATA_HEADER_BYTES);
    // A view of the prepared bytes, not a copy.
    expect(chunks[1]!.buffer).toBe(copyText.view(0, 0).buffer);
    const rows = copyDataRows(chunks);
    expect(rows.map((row) => row[15])).toEqual(['0000000001', '0000000042', '0000000002', '0000000043']);
    expect(rows.map((row) => row[17])).toEqual([GENESIS_HASH, 'a'.repeat(64), links[0]!.hash, links[1]!.hash]);
  });

  it('copies the rows instead when some were stored already or a head read back is no hash as the store writes them', () => {
    const events = [0, 1, 2].map((index) => executed(index, 's', 'SELECT 1'));
    const skipping = chained(events, [{ id: events[1]!.id, session_id: null, hash: null, session_seq: null }]);
    expect(skipping.chunks).toHaveLength(1);
    expect(copyDataRows(skipping.chunks).map((row) => row[0])).toEqual([events[0]!.id, events[2]!.id]);
    const odd = chained(events, [{ id: null, session_id: 's', hash: 'a\tb\\c\nd', session_seq: 7 }]);
    expect(odd.chunks).toHaveLength(1);
    expect(copyDataRows(odd.chunks).map(readRow)[0]!.slice(15)).toEqual([8, odd.links[0]!.hash, 'a\tb\\c\nd']);
  });

  it('splits a large batch into CopyData messages of about a MiB, each holding whole rows', () => {
    const long = 'x'.repeat(2000);
    const events = Array.from({ length: 1200 }, (_, index) => executed(index, `s${index % 8}`, long));
    const { links, chunks } = chained(events, []);
    const messages = chunks.filter((chunk, index) => index % 2 === 1);
    expect(messages.length).toBeGreaterThan(2);
    for (const message of messages) expect(message.length).toBeLessThanOrEqual(1024 * 1024);
    expect(copyDataRows(chunks).map((row) => row[0])).toEqual(links.map((link) => link.prepared.id));
  });
});
