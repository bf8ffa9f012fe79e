import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '@sluice/config';
import { usePostgresFrontDoor } from './support/postgres-proxy-harness.js';

/*
 * Red team of the masking feature scan's skip (a21f7ac) through the PostgreSQL front door: a
 * read-only, masked grant reads text where a card, an SSN or an e-mail address sits right after,
 * or amid, runs of characters the scan passes over at once (non-ASCII letters, combining marks,
 * zero-width and direction marks, surrogate pairs, full-width digits). None comes back whole.
 */

const database = `sluice_scan_rt_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
const RESOURCE = 'scan-rt-db';
const CARD = '4111 1111 1111 1111';
const SSN = '123-45-6789';
const NOTES = [
  `${'é'.repeat(300)}${CARD}`,
  `漢字\u200b${SSN}`,
  `שלום\u200f${CARD}\u202e`,
  `😀😀ada.lovelace@example.com😀`,
  `Zoë\u0301 ${SSN} \u3000１２３`,
  `\u0301grace.hopper@example.com`,
  `_alan.turing@example.com`,
];

const frontDoor = usePostgresFrontDoor(
  {
    config: parseConfig({
      resources: [{ name: RESOURCE, type: 'postgres', listen: '127.0.0.1:0', target: { host: '127.0.0.1', database }, credentials: { username: 'postgres' } }],
      masking: { profiles: { pii: { detectors: ['email', 'us_ssn', 'credit_card'], strategy: 'partial' } } },
      rules: [{ name: 'readers', effect: 'allow', subjects: { groups: ['readers'] }, resources: [RESOURCE], actions: ['read'], mask: 'pii' }],
    }),
    database,
    hashKey: 'scan-redteam-int',
    setupSql: ['create table notes (id int primary key, note text)', ...NOTES.map((note, index) => `insert into notes values (${index}, '${note}')`)].join(';\n'),
  },
  60_000,
);

describe('masking after runs of characters the feature scan skips, through PostgreSQL', () => {
  it('returns no card, SSN or address whole, in simple and extended queries', async () => {
    const client = await frontDoor.connect(['readers']);
    for (const result of [await client.query('select note from notes order by id'), await client.query({ text: 'select note from notes where id >= $1 order by id', values: [0] })]) {
      const notes = result.rows.map((row: { note: string }) => row.note);
      expect(notes).toHaveLength(NOTES.length);
      const all = notes.join('\n');
      for (const secret of [CARD, SSN, 'lovelace@', 'hopper@', 'turing@']) expect(all).not.toContain(secret);
    }
  });
});
