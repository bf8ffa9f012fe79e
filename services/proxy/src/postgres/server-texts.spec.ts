import { describe, expect, it } from 'vitest';
import { SERVER_TEXT_WITHHELD, withholdServerFields } from './server-texts.js';

describe('withholdServerFields', () => {
  it('keeps the words of the message up to the value, explains in the detail, drops hint, context and internal query', () => {
    const fields = {
      S: 'ERROR',
      V: 'ERROR',
      C: '23502',
      M: 'null value in column "name" of relation "salaries" violates not-null constraint',
      D: 'Failing row contains (1, null, 250000).',
      H: 'a hint quoting 250000',
      W: 'SQL statement "update …"',
      q: 'select 250000',
      s: 'hr',
      t: 'salaries',
      n: 'salaries_name_not_null',
      F: 'execMain.c',
      L: '2006',
      R: 'ExecConstraints',
    };
    const withheld = withholdServerFields(fields);
    expect(withheld).toEqual({
      S: 'ERROR',
      V: 'ERROR',
      C: '23502',
      M: `null value in column ${SERVER_TEXT_WITHHELD}`,
      D: expect.stringMatching(/^Sluice withheld the server's texts/),
      s: 'hr',
      t: 'salaries',
      n: 'salaries_name_not_null',
      F: 'execMain.c',
      L: '2006',
      R: 'ExecConstraints',
    });
    expect(JSON.stringify(withheld)).not.toContain('250000');
  });

  it('cuts a message at its colon, and withholds a message with neither colon nor quote whole', () => {
    const server = { F: 'numutils.c', R: 'pg_strtoint32_safe' };
    expect(withholdServerFields({ ...server, M: 'invalid input syntax for type integer: "Alice"' }).M).toBe(`invalid input syntax for type integer: ${SERVER_TEXT_WITHHELD}`);
    expect(withholdServerFields({ ...server, M: 'Alice earns 250000' }).M).toBe(SERVER_TEXT_WITHHELD);
  });

  it('withholds whole a message whose words a RAISE or another procedural language wrote, or that names no server source', () => {
    // RAISE NOTICE '%: changed', NEW.amount in a trigger the DBA put on the table (red team).
    expect(withholdServerFields({ F: 'pl_exec.c', L: '3907', R: 'exec_stmt_raise', M: '250000: changed' }).M).toBe(SERVER_TEXT_WITHHELD);
    expect(withholdServerFields({ F: 'plpy_elog.c', R: 'PLy_output', M: 'Alice: "x"' }).M).toBe(SERVER_TEXT_WITHHELD);
    expect(withholdServerFields({ M: '250000: changed' }).M).toBe(SERVER_TEXT_WITHHELD);
  });
});
