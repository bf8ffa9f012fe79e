import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ConfigInvalidError } from '@sluice/contracts';
import { boundEventData, boundRows, checkRecordingFits, cutText } from './recording.js';

const bounds = { maxRows: 3, maxBytes: 100, maxRowBytes: 40, maxCommandBytes: 64, maxEventBytes: 262_144 };

describe('recording bounds', () => {
  it('cuts a text to its byte limit on a character boundary, keeping its original size', () => {
    const cut = cutText('é'.repeat(10), 5);
    expect(cut).toEqual({ text: 'éé', truncated: true, bytes: 20 });
    expect(cutText('😀😀', 6)).toEqual({ text: '😀', truncated: true, bytes: 8 });
    expect(cutText('short', 5)).toEqual({ text: 'short', truncated: false, bytes: 5 });
  });

  it('records a 3 MB command text cut to maxCommandBytes, marked truncated with its size', () => {
    const command = `SELECT '${'x'.repeat(3 * 1024 * 1024)}'`;
    const data = boundEventData(
      'command.decided',
      { commandId: 'c', resource: 'db', protocol: 'postgres', command, action: 'read', risk: 'low', decision: 'allow', rule: 'r', reason: 'ok' },
      bounds,
    );
    expect(Buffer.byteLength(data.command)).toBe(64);
    expect(data.truncated).toBe(true);
    expect(data.commandBytes).toBe(command.length);
  });

  it('keeps the command whole and cuts the table list to its first 4 KiB of names when a statement names thousands of tables', () => {
    const limit = { maxRows: 100, maxBytes: 65_536, maxRowBytes: 16_384, maxCommandBytes: 16_384, maxEventBytes: 262_144 };
    const decided = (command: string, tables: string[]) =>
      boundEventData('command.decided', { commandId: 'c', resource: 'db', protocol: 'postgres', command, action: 'write', risk: 'high', decision: 'allow', rule: 'r', reason: 'ok', tables }, limit);
    const tables = Array.from({ length: 5_000 }, (_, index) => `public.${'t'.repeat(50)}${index}`);
    const command = `DELETE FROM accounts USING ${tables.slice(0, 200).join(', ')}`;
    const recorded = decided(command, tables);
    expect(recorded.command).toBe(command);
    expect(recorded.truncated).toBe(true);
    expect(recorded.commandBytes).toBe(command.length);
    expect(recorded.tables).toEqual(tables.slice(0, recorded.tables!.length));
    expect(recorded.tables!.length).toBeGreaterThan(10);
    expect(Buffer.byteLength(JSON.stringify(recorded.tables))).toBeLessThanOrEqual(4_096);
    // One name longer than the budget keeps its beginning; names of control characters count as JSON writes them.
    expect(Buffer.byteLength(JSON.stringify(decided('x', ['n'.repeat(10_000)]).tables))).toBeLessThanOrEqual(4_096);
    expect(Buffer.byteLength(JSON.stringify(decided('x', Array.from({ length: 100 }, () => '\u0001'.repeat(20))).tables))).toBeLessThanOrEqual(4_096);
    // A usual list goes as it is, the same object.
    const few = { commandId: 'c', resource: 'db', protocol: 'postgres' as const, command: 'x', action: 'read' as const, risk: 'low' as const, decision: 'allow' as const, rule: 'r', reason: 'ok', tables: ['public.a', 'public.b'] };
    expect(boundEventData('command.decided', few, limit)).toBe(few);
  });

  it('cuts a first result row larger than the budget instead of keeping it whole', () => {
    const data = boundEventData(
      'result.returned',
      { commandId: 'c', columns: ['a', 'b'], rows: [['y'.repeat(12 << 20), 'z'], ['1', '2']], rowCount: 2, bytes: 12 << 20, truncated: false, maskedCounts: {} },
      bounds,
    );
    expect(data.truncated).toBe(true);
    expect(data.rows[0]).toEqual(['y'.repeat(40), '']);
    expect(data.rows[1]).toEqual(['1', '2']);
  });

  it('bounds the JSON an event carries of a result, not only its UTF-8: control characters, quotes, many empty cells and column names', () => {
    const limit = { maxRows: 100, maxBytes: 65_536, maxRowBytes: 16_384, maxCommandBytes: 16_384, maxEventBytes: 262_144 };
    const control = '\u0001'.repeat(16_000);
    const shapes = [
      Array.from({ length: 12 }, () => ['m10', 'x', control]),
      Array.from({ length: 100 }, () => ['"\\'.repeat(5_000)]),
      Array.from({ length: 100 }, () => Array.from({ length: 1_664 }, () => null)),
      Array.from({ length: 100 }, () => Array.from({ length: 1_664 }, () => '')),
    ];
    for (const rows of shapes) {
      const data = { commandId: 'c', columns: [], rows, rowCount: rows.length, bytes: 0, truncated: false, maskedCounts: {} };
      const recorded = boundEventData('result.returned', data, limit);
      expect(recorded.truncated).toBe(true);
      expect(recorded.rows.length).toBeGreaterThan(0);
      expect(Buffer.byteLength(JSON.stringify(recorded.rows))).toBeLessThanOrEqual(limit.maxBytes + 2);
    }
    const names = Array.from({ length: 1_000 }, (_, index) => `${index}${'\u0001'.repeat(58)}`);
    const wide = { commandId: 'c', columns: names, rows: [names.map(() => 'v')], rowCount: 1, bytes: 0, truncated: false, maskedCounts: {} };
    const recordedWide = boundEventData('result.returned', wide, limit);
    expect(recordedWide.truncated).toBe(true);
    expect(recordedWide.columns).toHaveLength(1_000);
    expect(recordedWide.columns[0]).toBe(names[0]);
    expect(recordedWide.rows[0]).toEqual(names.map(() => 'v'));
    expect(Buffer.byteLength(JSON.stringify(recordedWide.columns)) + Buffer.byteLength(JSON.stringify(recordedWide.rows))).toBeLessThanOrEqual(limit.maxBytes + 4);
    const command = '\u0001'.repeat(16_384);
    const decided = boundEventData('command.decided', { commandId: 'c', resource: 'db', protocol: 'postgres', command, action: 'read', risk: 'low', decision: 'allow', rule: 'r', reason: 'ok' }, limit);
    expect(Buffer.byteLength(JSON.stringify(decided.command))).toBeLessThanOrEqual(limit.maxCommandBytes + 2);
    expect(decided).toMatchObject({ truncated: true, commandBytes: 16_384 });
  });

  it('keeps the JSON of recorded rows within maxBytes and of each row\'s texts within maxRowBytes, whatever their texts', () => {
    const unit = fc.oneof(fc.constantFrom('\ud800', '\udfff', '😀', '\u0000', '\u0001', '\n', '"', '\\', 'é', '€', 'a'), fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }));
    const wide = fc.string({ unit, maxLength: 30 });
    fc.assert(
      fc.property(fc.array(fc.array(fc.option(wide, { nil: null }), { maxLength: 5 }), { maxLength: 8 }), limits, (rows, limit) => {
        const bounded = boundRows(rows, limit);
        expect(Buffer.byteLength(JSON.stringify(bounded.rows))).toBeLessThanOrEqual(limit.maxBytes + 2);
        // A row's texts as JSON (without the quotes, commas and brackets around them).
        for (const row of bounded.rows) expect(row.reduce((sum, value) => sum + (value === null ? 0 : Buffer.byteLength(JSON.stringify(value)) - 2), 0)).toBeLessThanOrEqual(limit.maxRowBytes);
      }),
      { numRuns: 500 },
    );
  });

  it('leaves events within the bounds as they are', () => {
    const data = { commandId: 'c', columns: ['a'], rows: [['1']], rowCount: 1, bytes: 1, truncated: false, maskedCounts: {} };
    expect(boundEventData('result.returned', data, bounds)).toBe(data);
  });

  it('refuses limits that do not fit the bus, naming the key', () => {
    expect(() => checkRecordingFits({ ...bounds, maxEventBytes: 2 << 20 }, 1 << 20)).toThrow(ConfigInvalidError);
    try {
      checkRecordingFits({ ...bounds, maxEventBytes: 2 << 20 }, 1 << 20);
    } catch (error) {
      expect((error as ConfigInvalidError).path).toBe('audit.recording.maxEventBytes');
    }
    expect(() => checkRecordingFits({ ...bounds, maxCommandBytes: 300_000 }, 1 << 20)).toThrow(/maxCommandBytes/);
    expect(() => checkRecordingFits(bounds, 1 << 20)).not.toThrow();
  });

  const text = (maxLength: number) => fc.string({ unit: 'binary', maxLength });
  const limits = fc.record({ maxRows: fc.nat(6), maxBytes: fc.nat(120), maxRowBytes: fc.nat(60), maxCommandBytes: fc.nat(80), maxEventBytes: fc.constant(262_144) });

  it('keeps a result as it is exactly when boundRows cuts nothing, whatever its texts and bounds', () => {
    fc.assert(
      fc.property(fc.array(fc.array(fc.option(text(24), { nil: null }), { maxLength: 4 }), { maxLength: 7 }), limits, (rows, limit) => {
        const data = { commandId: 'c', columns: [], rows, rowCount: rows.length, bytes: 0, truncated: false, maskedCounts: {} };
        const bounded = boundRows(rows, limit);
        const out = boundEventData('result.returned', data, limit);
        if (bounded.truncated) expect(out).toEqual({ ...data, rows: bounded.rows, truncated: true });
        else expect(out).toBe(data);
      }),
      { numRuns: 2_000 },
    );
  });

  it('keeps a result or a decision as it is exactly when nothing is cut, with lone surrogates, 4-byte characters and texts at the bounds', () => {
    // 'binary' units are whole code points: a lone surrogate (3 bytes once encoded) never comes from them.
    const unit = fc.oneof(fc.constantFrom('\ud800', '\udfff', '😀', '\u2028', '\u0000', 'é', '€', 'a'), fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }));
    const wide = (maxLength: number) => fc.string({ unit, maxLength });
    fc.assert(
      fc.property(fc.array(fc.array(fc.option(wide(24), { nil: null }), { maxLength: 4 }), { maxLength: 7 }), wide(40), limits, (rows, command, limit) => {
        const data = { commandId: 'c', columns: [], rows, rowCount: rows.length, bytes: 0, truncated: false, maskedCounts: {} };
        const bounded = boundRows(rows, limit);
        const out = boundEventData('result.returned', data, limit);
        if (bounded.truncated) expect(out).toEqual({ ...data, rows: bounded.rows, truncated: true });
        else expect(out).toBe(data);
        const decided = { commandId: 'c', resource: 'db', protocol: 'postgres' as const, command, action: 'read' as const, risk: 'low' as const, decision: 'allow' as const, rule: 'r', reason: 'ok' };
        const cut = cutText(command, limit.maxCommandBytes);
        const recorded = boundEventData('command.decided', decided, limit);
        if (cut.truncated) expect(recorded).toEqual({ ...decided, command: cut.text, truncated: true, commandBytes: cut.bytes });
        else expect(recorded).toBe(decided);
      }),
      { numRuns: 3_000 },
    );
    // Exactly at the bound: a command of maxCommandBytes bytes in 4-byte characters is kept whole, one byte more is cut.
    const at = { ...bounds, maxCommandBytes: 64 };
    const decided = (command: string) => ({ commandId: 'c', resource: 'db', protocol: 'postgres' as const, command, action: 'read' as const, risk: 'low' as const, decision: 'allow' as const, rule: 'r', reason: 'ok' });
    const whole = decided('😀'.repeat(16));
    expect(boundEventData('command.decided', whole, at)).toBe(whole);
    expect(boundEventData('command.decided', decided(`${'😀'.repeat(16)}a`), at)).toMatchObject({ command: '😀'.repeat(16), truncated: true, commandBytes: 65 });
    expect(boundEventData('command.decided', decided('\ud800'.repeat(22)), at)).toMatchObject({ truncated: true, commandBytes: 66 });
  });

  it('keeps a decision as it is exactly when neither its command nor its reason is cut, whatever their texts', () => {
    fc.assert(
      fc.property(text(40), text(1_000), limits, (command, reason, limit) => {
        const data = { commandId: 'c', resource: 'db', protocol: 'postgres' as const, command, action: 'read' as const, risk: 'low' as const, decision: 'allow' as const, rule: 'r', reason };
        const out = boundEventData('command.decided', data, limit);
        if (!cutText(command, limit.maxCommandBytes).truncated && cutText(reason, 2048).text === reason) expect(out).toBe(data);
        else expect(out).not.toBe(data);
      }),
      { numRuns: 2_000 },
    );
  });
});
