import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { encodeExecute, encodeParse, encodeSync } from '@sluice/codec-pg';
import { MAX_JSON_DEPTH } from '@sluice/masking-engine';
import { usePostgresFrontDoor, waitFor } from './support/postgres-proxy-harness.js';
import { expectNoRawSsn, RAW_SSN, RED_TEAM_SEED_SQL, redTeamConfig } from './support/postgres-red-team.js';

/**
 * Red team on the last session's data-path changes, as a read-only agent (`readers`, masked with
 * `pii`, whose `(?i)ssn` column rule alone masks RAW_SSN) attacks them with real clients and raw
 * protocol bytes: masking's depth check moved into the walk (536773a), session.rejected masking of
 * a refused startup parameter (c89718f, ade6c0d), the classifier split (7f30b5a).
 */

const database = `sluice_dataplane_${randomUUID().replaceAll('-', '').slice(0, 12)}`;

/** A JSON text nested `levels` arrays deep, with a covered member beside the nesting. */
const deepDocument = (levels: number): string => `{"ssn": "${RAW_SSN}", "deep": ${'['.repeat(levels)}0${']'.repeat(levels)}}`;

const frontDoor = usePostgresFrontDoor({
  config: redTeamConfig(database, ['public.secrets']),
  database,
  hashKey: 'dataplane-int',
  setupSql: `${RED_TEAM_SEED_SQL}
     create table docs (id int primary key, body jsonb, note text, doc json);
     insert into docs values
       (1, '${deepDocument(MAX_JSON_DEPTH - 4)}', '${deepDocument(MAX_JSON_DEPTH - 4)}', '${deepDocument(MAX_JSON_DEPTH - 4)}'),
       (2, '${deepDocument(MAX_JSON_DEPTH + 4)}', '${deepDocument(MAX_JSON_DEPTH + 4)}', '${deepDocument(MAX_JSON_DEPTH + 4)}'),
       (3, jsonb_build_object('ssn', '${'['.repeat(MAX_JSON_DEPTH + 4)}${']'.repeat(MAX_JSON_DEPTH + 4)}'), null, null);
`,
});

/** Bind of the unnamed statement to the unnamed portal, no parameters, every result column in binary. */
const BIND_BINARY_RESULTS = Buffer.from([0x42, 0, 0, 0, 14, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1]);

/** A card number, an email and a US SSN the `everything` profile recognises in a record's text. */
const SECRETS = { card: '4111111111111111', email: 'alice.secret@example.com', ssn: '123-45-6789' };

describe('session.rejected of a startup setting the target refuses', () => {
  it.each([
    ['options -c DateStyle', [['options', `-c DateStyle=${SECRETS.card}`]]],
    ['options --TimeZone', [['options', `--TimeZone=${SECRETS.email}`]]],
    ['a statement_timeout parameter', [['statement_timeout', SECRETS.ssn]]],
    ['a default_transaction_isolation parameter', [['default_transaction_isolation', SECRETS.email]]],
  ] as const)('masks what the target quotes of the agent\'s value (%s)', async (_, parameters) => {
    const before = frontDoor.events.length;
    const session = await frontDoor.openRaw(['readers'], parameters.map(([name, value]) => [name, value]));
    expect(session.closed).toBe(true);
    expect(session.errors()[0]?.C).toBe('22023');
    await waitFor(() => frontDoor.events.slice(before).some((event) => event.kind === 'session.rejected'));
    const rejected = frontDoor.events.slice(before).filter((event) => event.kind === 'session.rejected');
    expect(rejected).toHaveLength(1);
    const recorded = JSON.stringify(rejected);
    expect(recorded).toMatch(/target refused a startup setting/);
    for (const secret of Object.values(SECRETS)) expect(recorded).not.toContain(secret);
  });
});

describe('a jsonb, json or text value nested around the masking depth limit', () => {
  it.each([
    ['jsonb', 'body'],
    ['json', 'doc'],
    ['text', 'note'],
    ['jsonb as text', 'body::text'],
    ['a member as jsonb', "body->'ssn'"],
    ['a row as json', 'row_to_json(docs)'],
  ])('masks the covered member within the limit (%s)', async (_, expression) => {
    const client = await frontDoor.connect(['readers']);
    const { rows } = await client.query(`select ${expression} as v from docs where id = 1`);
    expect(rows).toHaveLength(1);
    expectNoRawSsn(rows);
  });

  it.each([
    ['jsonb', 'body'],
    ['json', 'doc'],
    ['text', 'note'],
    ['jsonb as text', 'body::text'],
    ['a row as json', 'row_to_json(docs)'],
    ['an array of jsonb', 'array[body]'],
    ['binary jsonb', 'body'],
  ])('withholds a document past the limit, never sends it raw (%s)', async (name, expression) => {
    const session = await frontDoor.openRaw(['readers']);
    if (name === 'binary jsonb') {
      session.send(encodeParse('', `select ${expression} as v from docs where id = 2`), BIND_BINARY_RESULTS, encodeExecute(''), encodeSync());
      await session.readyCount(2);
    } else await session.run(`select ${expression} as v from docs where id = 2`);
    expectNoRawSsn(session.received.toString('latin1'));
    // Failing closed: refused, or masked whole (a row's JSON is covered by the strictest rule any column could match).
    const shown = session.rows().flat().join('\n');
    expect(session.errors().length > 0 || !shown.includes('deep'), shown.slice(0, 200)).toBe(true);
  });

  it('masks a covered member whose value is a string that looks like a document past the limit', async () => {
    const client = await frontDoor.connect(['readers']);
    const { rows } = await client.query('select body from docs where id = 3');
    expect(rows).toHaveLength(1);
    expect(JSON.stringify(rows)).not.toContain('[[[[');
  });
});
