import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { loadSqlClassifier } from './classify.js';
import { sqlSyntaxError } from './syntax.js';

beforeAll(async () => {
  await loadSqlClassifier();
});

describe('sqlSyntaxError', () => {
  it("gives the server's message and 1-based position for text the grammar rejects", () => {
    expect(sqlSyntaxError('selec 1')).toEqual({ message: 'syntax error at or near "selec"', position: 1 });
    expect(sqlSyntaxError('select 1 from')).toEqual({ message: 'syntax error at end of input', position: 14 });
    expect(sqlSyntaxError("select 'abc")).toEqual({ message: `unterminated quoted string at or near "'abc"`, position: 8 });
  });

  it('gives nothing for text that parses, or for an empty query', () => {
    expect(sqlSyntaxError('select 1; select 2')).toBeUndefined();
    expect(sqlSyntaxError('  ')).toBeUndefined();
  });

  it('never throws, whatever the text', () => {
    fc.assert(
      fc.property(fc.string(), (text) => {
        const error = sqlSyntaxError(text);
        expect(error === undefined || typeof error.message === 'string').toBe(true);
      }),
    );
  });
});
