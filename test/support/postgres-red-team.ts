import { expect } from 'vitest';
import { parseConfig, type SluiceConfig } from '@sluice/config';

/**
 * The fixture both PostgreSQL red-team specs attack: one resource, the `pii` profile with a
 * column rule, the same grants, and a database holding an SSN no detector recognises.
 */

export const RED_TEAM_RESOURCE = 'redteam-db';

/** In the 9xx range: no detector knows it, only the `(?i)ssn` column rule can mask it. */
export const RAW_SSN = '912-34-5678';

/**
 * Deny `no-secrets` on `deniedTables`; allow `readers` to read, `writers` to read and write,
 * `orders` to read `public.orders` only, `changers` to read, write and change the schema (held
 * for a `dba` when the risk is high); everything masked with `pii`.
 */
export const redTeamConfig = (database: string, deniedTables: string[]): SluiceConfig => parseConfig(redTeamConfigInput(database, deniedTables));

/** The same config as written in a file (what a policy service loads), before parsing. */
export const redTeamConfigInput = (database: string, deniedTables: string[]) => ({
    resources: [{ name: RED_TEAM_RESOURCE, type: 'postgres', listen: '127.0.0.1:0', target: { host: '127.0.0.1', database }, credentials: { username: 'postgres' } }],
    masking: {
      profiles: {
        pii: { detectors: ['credit_card', 'email', 'phone', 'us_ssn', 'iban', 'jwt', 'secret'], strategy: 'partial', columns: [{ match: '(?i)ssn', strategy: 'redact' }] },
      },
    },
    rules: [
      { name: 'no-secrets', effect: 'deny', resources: [RED_TEAM_RESOURCE], tables: deniedTables },
      { name: 'readers', effect: 'allow', subjects: { groups: ['readers'] }, resources: [RED_TEAM_RESOURCE], actions: ['read'], mask: 'pii' },
      { name: 'writers', effect: 'allow', subjects: { groups: ['writers'] }, resources: [RED_TEAM_RESOURCE], actions: ['read', 'write'], mask: 'pii' },
      { name: 'orders-only', effect: 'allow', subjects: { groups: ['orders'] }, resources: [RED_TEAM_RESOURCE], actions: ['read'], tables: ['public.orders'], mask: 'pii' },
      { name: 'changers', effect: 'allow', subjects: { groups: ['changers'] }, resources: [RED_TEAM_RESOURCE], actions: ['read', 'write', 'ddl'], mask: 'pii' },
      { name: 'risky-needs-dba', effect: 'approve', subjects: { groups: ['changers'] }, resources: [RED_TEAM_RESOURCE], risk: 'high', approvers: { groups: ['dba'] } },
    ],
});

/** people (with RAW_SSN), orders, victim (5 rows to delete) and secrets (200 rows behind the deny rule). */
export const RED_TEAM_SEED_SQL = `create table people (id int primary key, name text, ssn text);
     insert into people values (1, 'Ada Lovelace', '${RAW_SSN}');
     alter table people add constraint name_not_empty check (name <> '');
     create table orders (id int primary key, item text);
     insert into orders values (1, 'public-order');
     create table victim (id int primary key, x int);
     insert into victim select g, g from generate_series(1, 5) g;
     create table secrets (id int, secret text);
     insert into secrets select g, 'TOP-SECRET-VALUE' from generate_series(1, 200) g;
     analyze secrets;`;

/** Fails the test when a value shows RAW_SSN in clear, with or without its dashes. */
export const expectNoRawSsn = (value: unknown): void => {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  expect(text).not.toContain(RAW_SSN);
  expect(text).not.toContain('912345678');
};
