import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildEvent, type CommandExecuted } from './events.js';
import { writeExecutedEvent, type JsonSink } from './executed-event-bytes.js';

/** A sink that starts small and moves what it holds on every growth, as the publisher's arena does between chunks. */
const growingSink = (): JsonSink => {
  const sink: JsonSink = {
    buffer: new Uint8Array(8),
    offset: 0,
    reserve(bytes) {
      if (sink.offset + bytes <= sink.buffer.length) return;
      const next = new Uint8Array(sink.offset + bytes + 8);
      next.set(sink.buffer.subarray(0, sink.offset));
      sink.buffer = next;
    },
  };
  return sink;
};

const written = (fields: Parameters<typeof writeExecutedEvent>[1]): Buffer => {
  const sink = growingSink();
  writeExecutedEvent(sink, fields);
  return Buffer.from(sink.buffer.subarray(0, sink.offset));
};

/** The bytes JSON.stringify makes of buildEvent's event. */
const expected = (fields: Parameters<typeof writeExecutedEvent>[1]): Buffer => Buffer.from(JSON.stringify(buildEvent('command.executed', fields)), 'utf8');

/**
 * Byte for byte, as Buffer.equals compares: toEqual walks a Buffer through its generic equality
 * one index at a time (ten times this spec's time under the property test). A mismatch is shown
 * as text, then as hex for bytes that decode alike (a lone surrogate written raw).
 */
const expectSameBytes = (actual: Buffer, wanted: Buffer): void => {
  if (actual.equals(wanted)) return;
  expect(actual.toString('utf8')).toBe(wanted.toString('utf8'));
  expect(actual.toString('hex')).toBe(wanted.toString('hex'));
};

describe('writeExecutedEvent', () => {
  // 'binary' units are whole code points, never a lone surrogate: those (and what JSON escapes) are mixed in.
  const unit = fc.oneof(fc.constantFrom('\ud800', '\udbff', '\udc00', '\udfff', '\u2028', '\u0000', '\u001f', '"', '\\', '\u007f'), fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }));
  const text = fc.string({ unit, maxLength: 12 });
  const number = fc.oneof(fc.double(), fc.integer(), fc.constantFrom(0, -0, 1e21, 5e-324, Number.NaN, Number.POSITIVE_INFINITY));
  const maybe = <T>(arbitrary: fc.Arbitrary<T>) => fc.option(arbitrary, { nil: undefined });
  const decision = fc.record({ action: text, decision: fc.constantFrom('allow', 'deny', 'approve' as const), protocol: fc.constantFrom('postgres', 'redis', 'http' as const), reason: text, resource: text, risk: text, rule: text, tables: maybe(fc.array(text, { maxLength: 3 })) });
  const outcome = fc.record({
    command: text,
    commandBytes: maybe(number),
    commandId: text,
    durationMs: number,
    error: maybe(fc.record({ code: text, message: text })),
    ok: fc.boolean(),
    outcome: text,
    result: maybe(
      fc.record({
        bytes: number,
        columns: fc.array(text, { maxLength: 3 }),
        maskedCounts: fc.dictionary(text, fc.integer(), { maxKeys: 3 }),
        rowCount: number,
        rows: fc.array(fc.array(fc.option(text), { maxLength: 3 }), { maxLength: 3 }),
        truncated: fc.boolean(),
      }),
    ),
    truncated: maybe(fc.boolean()),
  });
  type Decided = typeof decision extends fc.Arbitrary<infer T> ? T : never;
  type Outcome = typeof outcome extends fc.Arbitrary<infer T> ? T : never;
  /**
   * The audit port's literal: CommandExecuted's members in sorted order. Every member is named (a
   * member added to CommandExecuted fails to compile here until it is, and then this spec holds
   * writeExecutedEvent to writing it).
   */
  const executed = (d: Decided, o: Outcome): CommandExecuted => {
    const members: { [K in keyof CommandExecuted]-?: unknown } = {
      action: d.action,
      command: o.command,
      commandBytes: o.commandBytes,
      commandId: o.commandId,
      decision: d.decision,
      durationMs: o.durationMs,
      error: o.error,
      ok: o.ok,
      outcome: o.outcome,
      protocol: d.protocol,
      reason: d.reason,
      resource: d.resource,
      result: o.result,
      risk: d.risk,
      rule: d.rule,
      tables: d.tables,
      truncated: o.truncated,
    };
    return members as CommandExecuted;
  };

  it('writes exactly the JSON of buildEvent, for runs of commands under one decision and session and across them', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(decision, fc.array(outcome, { minLength: 1, maxLength: 3 }), text, maybe(fc.nat()), fc.integer({ min: 0, max: 4_102_444_800_000 })), { minLength: 1, maxLength: 3 }),
        (runs) => {
          for (const [d, outcomes, subject, sessionseq, millis] of runs) {
            for (const o of outcomes) {
              const fields = { id: `${millis}-id`, source: 'sluice/proxy', subject, time: new Date(millis), sessionseq, data: executed(d, o) };
              expectSameBytes(written(fields), expected(fields));
            }
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it('writes texts with quotes, backslashes, controls, lone and paired surrogates, and line separators as JSON.stringify does', () => {
    const texts = ['plain', 'say "hi"', 'C:\\path', 'line\nbreak\u0000', 'lone \ud800 high', 'lone \udc00 low', 'pair 😀', 'sep \u2028 \u2029', 'é ü', ''];
    for (const value of texts) {
      const data = executed(
        { action: value, decision: 'allow', protocol: 'postgres', reason: value, resource: value, risk: value, rule: value, tables: [value] },
        {
          command: value,
          commandBytes: undefined,
          commandId: value,
          durationMs: 0.125,
          error: undefined,
          ok: true,
          outcome: value,
          result: { bytes: 1, columns: [value, value], maskedCounts: value === '' ? {} : { [value]: 1 }, rowCount: 2, rows: [[value, null], [null, value]], truncated: false },
          truncated: undefined,
        },
      );
      const fields = { id: value, source: 'sluice/proxy', subject: value, time: new Date(0), sessionseq: 1, data };
      expectSameBytes(written(fields), expected(fields));
    }
  });

  it('refuses data not of its shape (a number for a text, a missing boolean, a row that is no array) instead of writing other JSON than JSON.stringify would', () => {
    const good = executed(
      { action: 'read', decision: 'allow', protocol: 'postgres', reason: 'r', resource: 'db', risk: 'low', rule: 'x', tables: undefined },
      { command: 'SELECT 1', commandBytes: undefined, commandId: 'c', durationMs: 1, error: undefined, ok: true, outcome: 'SELECT 1', result: { bytes: 1, columns: ['a'], maskedCounts: {}, rowCount: 1, rows: [['1']], truncated: false }, truncated: undefined },
    );
    const fields = (data: unknown) => ({ id: 'e', source: 'sluice/proxy', subject: 's', time: new Date(0), sessionseq: 1, data: data as CommandExecuted });
    expectSameBytes(written(fields(good)), expected(fields(good)));
    for (const bad of [{ ...good, command: 5 }, { ...good, ok: undefined }, { ...good, durationMs: '1' }, { ...good, result: { ...good.result, rows: ['1'] } }, { ...good, result: { ...good.result, columns: [1] } }, { ...good, result: { ...good.result, maskedCounts: null } }]) {
      expect(() => written(fields(bad))).toThrow(TypeError);
    }
  });

  it('writes durations, counts and sequence numbers as JSON.stringify does, whole, in thousandths or any other double', () => {
    const good = (durationMs: number, bytes: number, sessionseq: number) =>
      ({
        id: 'e',
        source: 'sluice/proxy',
        subject: 's',
        time: new Date(0),
        sessionseq,
        data: executed(
          { action: 'read', decision: 'allow', protocol: 'redis', reason: 'r', resource: 'db', risk: 'low', rule: 'x', tables: undefined },
          { command: 'GET k', commandBytes: undefined, commandId: 'c', durationMs, error: undefined, ok: true, outcome: 'OK', result: { bytes, columns: [], maskedCounts: {}, rowCount: bytes, rows: [], truncated: false }, truncated: undefined },
        ),
      }) as Parameters<typeof writeExecutedEvent>[1];
    const thousandths = fc.integer({ min: 0, max: 2 ** 31 * 1000 + 1000 }).map((m) => m / 1000);
    const rounded = fc.double({ min: 0, max: 1e7, noNaN: true }).map((ms) => Math.round(ms * 1000) / 1000);
    const any = fc.oneof(fc.double(), fc.integer(), fc.constantFrom(0, -0, 0.0005, 0.001, 0.1, 0.3, 1e-7, 2 ** 31 - 0.001, 2 ** 31, 2 ** 31 + 0.5, 1e21, 123456.789));
    fc.assert(
      fc.property(fc.oneof(thousandths, rounded, any), fc.oneof(fc.nat(), any), fc.oneof(fc.nat(), any), (durationMs, bytes, sessionseq) => {
        const fields = good(durationMs, bytes, sessionseq);
        expectSameBytes(written(fields), expected(fields));
      }),
      { numRuns: 5000 },
    );
  });

  it('writes every time as toISOString does, in or out of order, across minutes, days and years, before 1970 and past 9999', () => {
    const data = executed(
      { action: 'read', decision: 'allow', protocol: 'postgres', reason: 'r', resource: 'db', risk: 'low', rule: 'x', tables: undefined },
      { command: 'SELECT 1', commandBytes: undefined, commandId: 'c', durationMs: 1, error: undefined, ok: true, outcome: 'SELECT 1', result: undefined, truncated: undefined },
    );
    const at = (millis: number) => ({ id: 'e', source: 'sluice/proxy', subject: 's', time: new Date(millis), sessionseq: 1, data });
    const edges = [0, -1, 1, 59_999, 60_000, 60_001, -60_000, -60_001, 86_399_999, 1_767_225_599_999, 1_767_225_600_000, -62_198_755_200_001, 253_402_300_799_999, 253_402_300_800_000, 8.64e15, -8.64e15];
    // Out of order by a few milliseconds, as a busy proxy's events go out, and back over a minute's edge.
    const now = 1_800_000_059_990;
    const interleaved = [now, now + 3, now - 2, now + 11, now + 12, now, now + 15, now + 9, now + 10];
    const millis = fc.oneof(fc.integer({ min: -8.64e15, max: 8.64e15 }), fc.integer({ min: now - 100, max: now + 100 }));
    for (const time of [...edges, ...interleaved, ...fc.sample(millis, 2000)]) {
      expectSameBytes(written(at(time)), expected(at(time)));
    }
    expect(() => written(at(Number.NaN))).toThrow(RangeError);
  });
});
