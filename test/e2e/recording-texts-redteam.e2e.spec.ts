import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { asSeparateEvents } from '../support/command-events.js';
import { startThreeProtocolDeployment, type ThreeProtocolDeployment } from '../support/three-protocol-deployment.js';

interface StoredEvent {
  readonly type: string;
  readonly data: Record<string, unknown>;
}

/** Defaults of audit.recording: command texts to 16 KiB, 100 rows of 16 KiB, 64 KiB a result. */
const MAX_COMMAND_BYTES = 16_384;
const MAX_ROW_BYTES = 16_384;
const MAX_ROWS = 100;

/**
 * Red team of issue 12's recording fast paths (a decision or result that fits its bounds "by its
 * texts' lengths alone" goes as it is; writeExecutedEvent copies a string byte per unit when it is
 * ASCII with nothing in it escaped): texts whose UTF-16 length and UTF-8 size differ, rows at the
 * bounds, and every character JSON escapes, through the whole deployment. Each command must be in
 * the event store (jsonb: what did not parse as JSON would not be there), cut to its bounds where it
 * is over them and only there, and every session's chain must verify.
 */
describe('what is recorded of texts near the recording bounds and of characters JSON escapes', () => {
  let deployment: ThreeProtocolDeployment;

  beforeAll(async () => {
    deployment = await startThreeProtocolDeployment({ tag: 'rectext', api: (_request, response) => response.writeHead(200).end('{}') });
  });

  afterAll(async () => {
    await deployment?.stop();
  });

  it('stores every command and result whole when within bounds and cut when over them, and the chains verify', async () => {
    const agent = await deployment.pgAgent('rec-texts');
    const controls = Array.from({ length: 31 }, (_, index) => String.fromCharCode(index + 1)).join('');
    const escaped = `ctl ${controls} "quoted" back\\slash \u2028 \u2029 \u007f é 😀`;
    // 4-byte characters: this text is exactly 16 384 bytes in 8 199 UTF-16 units (kept whole); the next is over (cut).
    const wholeEmoji = `select '${'😀'.repeat(4_092)}é' as e`;
    const cutEmoji = `select '${'😀'.repeat(4_097)}' as e`;
    const texts = {
      escaped: `select '${escaped.replaceAll("'", "''")}' as a, E'\\x01\\x1f\\t\\n' as b`,
      wholeEmoji,
      cutEmoji,
      rowAtBound: `select repeat('r', ${MAX_ROW_BYTES}) as r`,
      rowOverBound: `select repeat('s', ${MAX_ROW_BYTES + 1}) as s`,
      emojiRow: `select repeat('😀', ${MAX_ROW_BYTES / 4 + 1}) as u`,
      rowsAtBound: `select g as n from generate_series(1, ${MAX_ROWS}) g`,
      rowsOverBound: `select g as n from generate_series(1, ${MAX_ROWS + 1}) g`,
    };
    expect(Buffer.byteLength(wholeEmoji)).toBe(MAX_COMMAND_BYTES);
    expect(Buffer.byteLength(cutEmoji)).toBeGreaterThan(MAX_COMMAND_BYTES);
    for (const text of Object.values(texts)) await agent.query(text);
    // The extended protocol too (node-postgres with a parameter).
    await agent.query({ text: 'select $1::text as p', values: [escaped] });
    await agent.end();

    const store = new pg.Client({ host: '127.0.0.1', user: 'postgres', database: deployment.storeDb });
    await store.connect();
    const load = async (): Promise<StoredEvent[]> => asSeparateEvents((await store.query<StoredEvent>('SELECT type, data FROM sluice.events ORDER BY seq')).rows);
    const decidedOf = (events: StoredEvent[], prefix: string) =>
      events.find((e) => e.type.startsWith('sluice.command.decided') && String(e.data.command).startsWith(prefix.slice(0, 40)) && (e.data.command === prefix || e.data.truncated === true));
    let events = await load();
    const deadline = Date.now() + 30_000;
    while (events.filter((e) => e.type.startsWith('sluice.session.ended')).length < 1 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      events = await load();
    }
    await store.end();

    const escapedDecided = decidedOf(events, texts.escaped);
    expect(escapedDecided?.data.command).toBe(texts.escaped);
    expect(decidedOf(events, texts.wholeEmoji)?.data).toMatchObject({ command: texts.wholeEmoji });
    expect(decidedOf(events, texts.wholeEmoji)?.data.truncated).toBeUndefined();
    const cut = decidedOf(events, texts.cutEmoji)?.data;
    expect(cut).toMatchObject({ truncated: true, commandBytes: Buffer.byteLength(texts.cutEmoji) });
    expect(Buffer.byteLength(String(cut?.command))).toBeLessThanOrEqual(MAX_COMMAND_BYTES);

    const resultOf = (text: string) => {
      const decided = decidedOf(events, text);
      return events.find((e) => e.type.startsWith('sluice.result.returned') && e.data.commandId === decided?.data.commandId)?.data;
    };
    expect(resultOf(texts.escaped)).toMatchObject({ rows: [[escaped, '\u0001\u001f\t\n']], truncated: false });
    expect(resultOf(texts.rowAtBound)).toMatchObject({ rows: [['r'.repeat(MAX_ROW_BYTES)]], truncated: false });
    expect(resultOf(texts.rowOverBound)).toMatchObject({ rows: [['s'.repeat(MAX_ROW_BYTES)]], truncated: true });
    const emojiRow = resultOf(texts.emojiRow);
    expect(emojiRow).toMatchObject({ truncated: true });
    expect(Buffer.byteLength(String((emojiRow?.rows as string[][])[0]![0]))).toBeLessThanOrEqual(MAX_ROW_BYTES);
    expect(String((emojiRow?.rows as string[][])[0]![0])).not.toContain('\ufffd');
    expect(resultOf(texts.rowsAtBound)).toMatchObject({ rowCount: MAX_ROWS, truncated: false });
    expect((resultOf(texts.rowsAtBound)?.rows as unknown[]).length).toBe(MAX_ROWS);
    expect(resultOf(texts.rowsOverBound)).toMatchObject({ rowCount: MAX_ROWS + 1, truncated: true });
    expect((resultOf(texts.rowsOverBound)?.rows as unknown[]).length).toBe(MAX_ROWS);
    const parameterised = events.find((e) => e.type.startsWith('sluice.result.returned') && JSON.stringify(e.data.rows) === JSON.stringify([[escaped]]));
    expect(parameterised).toBeDefined();

    const verify = await deployment.sluice.cli(['audit', 'verify']);
    expect(verify.status, `${verify.stdout}${verify.stderr}`).toBe(0);
  });
});
