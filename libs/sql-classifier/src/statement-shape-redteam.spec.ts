import { beforeAll, describe, expect, it } from 'vitest';
import { coveredFlows } from './covered-flows.js';
import { resultLineage } from './lineage.js';
import { normalizeSql } from './parser.js';
import { referencedColumns } from './session-statements.js';
import { sessionStateEffects } from './session-effects.js';
import { constantsAreInert } from './statement-shape.js';
import { loadSqlClassifier } from './parser.js';

/*
 * Red team (session 15) of writes shared by shape: every literal form PostgreSQL reads as one
 * constant (numbers signed and spaced, strings E'', U&'', dollar-quoted, bit strings, NULL,
 * booleans, a key, a table's name, a setting's name) put in each constant place of a write. Texts
 * of one normalised form must agree on being inert, and when one is, every answer the proxy keeps
 * under the shape (covered flows, result lineage, referenced columns, session effects) must be
 * the same for all of them.
 */

beforeAll(async () => {
  await loadSqlClassifier();
});

const LITERALS = ['1', '-1', '- 1', '1.5', '1e3', '.5', '9223372036854775808', "'x'", "'ssn'", "E'\\x41'", '$$x$$', '$q$ssn$q$', "U&'d\\0061t'", "B'101'", "X'1F'", 'NULL', 'TRUE', '\'{"a":1}\'', "'public.people'", "'{ssn}'", "'search_path'"];

const WRITES = [
  'insert into t (a, b) values (@, @)',
  'insert into t (a) values (@), (@)',
  'insert into t (a) values (@) returning a',
  'insert into t (a) values (b + @)',
  'insert into t (a) values ((select ssn from people) + @)',
  'insert into t (a) values (@) on conflict do nothing',
  'update t set a = @ where id = @',
  'update t set a = b + @ where id = @',
  'update t set a = @ - b where id in (@, @)',
  'update t set a = b * @ where id between @ and @',
  'update t set a = doc - @ where id = @',
  'update t set a = ssn + @ where id = @ returning a',
  'update t set a = @ from people p where p.id = t.id and p.id = @',
  'delete from t where id = @ or name <> @',
  'delete from t where not (id = @) returning ssn',
];

describe('writes of one shape, whatever literal fills each constant', () => {
  it.each(WRITES)('%s: shape-mates agree on inertness and on every shared answer', (template) => {
    const places = template.split('@').length - 1;
    const byShape = new Map<string, { text: string; inert: boolean; answer: string }[]>();
    for (let first = 0; first < LITERALS.length; first++) {
      const text = template.split('@').reduce((out, part, index) => (index === 0 ? part : `${out}${LITERALS[(first + index * 5) % LITERALS.length]}${part}`), '');
      const shape = normalizeSql(text);
      if (shape === undefined) continue;
      const options = { searchPath: ['public'] };
      const answer = JSON.stringify([coveredFlows(text, options), resultLineage(text, options), referencedColumns(text, options), sessionStateEffects(text, ['pg_catalog', 'public'])]);
      byShape.set(shape, [...(byShape.get(shape) ?? []), { text, inert: constantsAreInert(text), answer }]);
    }
    expect(places).toBeGreaterThan(0);
    // Every literal form gives the one shape here (no cast, no position): all are shape-mates.
    expect(byShape.size).toBe(1);
    const [mates] = [...byShape.values()];
    expect(mates!.length).toBe(LITERALS.length);
    for (const mate of mates!) {
      expect({ text: mate.text, inert: mate.inert, answer: mate.answer }).toEqual({ text: mate.text, inert: mates![0]!.inert, answer: mates![0]!.answer });
    }
  });
});
