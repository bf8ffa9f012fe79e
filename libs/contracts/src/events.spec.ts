import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildEvent, executedEventJson, type CommandExecuted } from './events.js';

const eventAt = (time: Date) =>
  buildEvent('command.completed', { id: 'e', source: 'test', subject: 's', time, sessionseq: 1, data: { commandId: 'c', outcome: 'OK', ok: true, durationMs: 1 } });

describe('buildEvent', () => {
  it('stamps each event with its own time, events of one millisecond and of others alike', () => {
    const first = new Date('2026-11-27T06:00:00.001Z');
    const second = new Date('2026-11-27T06:00:00.002Z');
    expect([first, first, second, first].map((time) => eventAt(time).time)).toEqual([
      '2026-11-27T06:00:00.001Z',
      '2026-11-27T06:00:00.001Z',
      '2026-11-27T06:00:00.002Z',
      '2026-11-27T06:00:00.001Z',
    ]);
  });

  it('refuses an invalid time, as toISOString does', () => {
    expect(() => eventAt(new Date(Number.NaN))).toThrow(RangeError);
  });
});

describe('executedEventJson', () => {
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
   * executedEventJson to writing it).
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
              expect(executedEventJson(fields)).toBe(JSON.stringify(buildEvent('command.executed', fields)));
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
      expect(executedEventJson(fields)).toBe(JSON.stringify(buildEvent('command.executed', fields)));
    }
  });
});
