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
    });
    expect(JSON.stringify(withheld)).not.toContain('250000');
  });

  it('cuts a message at its colon, and withholds a message with neither colon nor quote whole', () => {
    expect(withholdServerFields({ M: 'invalid input syntax for type integer: "Alice"' }).M).toBe(`invalid input syntax for type integer: ${SERVER_TEXT_WITHHELD}`);
    expect(withholdServerFields({ M: 'Alice earns 250000' }).M).toBe(SERVER_TEXT_WITHHELD);
  });
});
