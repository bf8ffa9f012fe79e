import pg from 'pg';
import type { PostgresResourceConfig } from '@sluice/config';
import type { DemoShop } from './shop-data.js';

/** What the demo did to the target PostgreSQL, for its start-up summary. */
export interface PostgresSeedResult {
  readonly database: string;
  readonly role: string;
  readonly createdDatabase: boolean;
  readonly customers: number;
  readonly orders: number;
}

/** Identifiers come from the operator's config: quote them rather than trust their spelling. */
const quoteIdent = (name: string): string => `"${name.replace(/"/g, '""')}"`;
const quoteLiteral = (text: string): string => `'${text.replace(/'/g, "''")}'`;

const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS customers (
  id          integer PRIMARY KEY,
  full_name   text NOT NULL,
  email       text NOT NULL,
  phone       text NOT NULL,
  ssn         text NOT NULL,
  card_number text NOT NULL,
  iban        text NOT NULL,
  city        text NOT NULL,
  signup_ip   text NOT NULL,
  created_at  timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
  id          integer PRIMARY KEY,
  customer_id integer NOT NULL REFERENCES customers (id),
  placed_at   timestamptz NOT NULL,
  status      text NOT NULL,
  total       numeric(10, 2) NOT NULL,
  note        text NOT NULL DEFAULT ''
);`;

/**
 * Creates (or brings back to its seeded state) the demo database of a postgres resource: the
 * target role with the password the config's credentials name, the database it owns, and the
 * shop's tables. The administrator connection uses the usual libpq variables (PGUSER,
 * PGPASSWORD; default user postgres). Running it twice changes nothing more than running it once:
 * seeded rows are upserted back to their values, rows added since are left alone.
 */
export const seedPostgres = async (resource: PostgresResourceConfig, password: string | undefined, shop: DemoShop): Promise<PostgresSeedResult> => {
  const { host, port, database } = resource.target;
  const role = resource.credentials.username;
  const admin = new pg.Client({ host, port, user: process.env.PGUSER ?? 'postgres', database: 'postgres' });
  await admin.connect();
  let createdDatabase = false;
  try {
    const roleExists = (await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role])).rowCount === 1;
    const passwordClause = password === undefined ? '' : ` PASSWORD ${quoteLiteral(password)}`;
    await admin.query(`${roleExists ? 'ALTER' : 'CREATE'} ROLE ${quoteIdent(role)} LOGIN${passwordClause}`);
    if ((await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [database])).rowCount === 0) {
      await admin.query(`CREATE DATABASE ${quoteIdent(database)} OWNER ${quoteIdent(role)}`);
      createdDatabase = true;
    }
  } finally {
    await admin.end();
  }
  const shopDb = new pg.Client({ host, port, user: process.env.PGUSER ?? 'postgres', database });
  await shopDb.connect();
  try {
    await shopDb.query('BEGIN');
    await shopDb.query(SCHEMA_SQL);
    await shopDb.query(`ALTER TABLE customers OWNER TO ${quoteIdent(role)}; ALTER TABLE orders OWNER TO ${quoteIdent(role)}`);
    const customers = shop.customers;
    await shopDb.query(
      `INSERT INTO customers (id, full_name, email, phone, ssn, card_number, iban, city, signup_ip, created_at)
       SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::timestamptz[])
       ON CONFLICT (id) DO UPDATE SET full_name = EXCLUDED.full_name, email = EXCLUDED.email, phone = EXCLUDED.phone, ssn = EXCLUDED.ssn,
         card_number = EXCLUDED.card_number, iban = EXCLUDED.iban, city = EXCLUDED.city, signup_ip = EXCLUDED.signup_ip, created_at = EXCLUDED.created_at`,
      [
        customers.map((c) => c.id),
        customers.map((c) => c.fullName),
        customers.map((c) => c.email),
        customers.map((c) => c.phone),
        customers.map((c) => c.ssn),
        customers.map((c) => c.cardNumber),
        customers.map((c) => c.iban),
        customers.map((c) => c.city),
        customers.map((c) => c.signupIp),
        customers.map((c) => c.createdAt),
      ],
    );
    const orders = shop.orders;
    await shopDb.query(
      `INSERT INTO orders (id, customer_id, placed_at, status, total, note)
       SELECT * FROM unnest($1::int[], $2::int[], $3::timestamptz[], $4::text[], $5::numeric[], $6::text[])
       ON CONFLICT (id) DO UPDATE SET customer_id = EXCLUDED.customer_id, placed_at = EXCLUDED.placed_at, status = EXCLUDED.status,
         total = EXCLUDED.total, note = EXCLUDED.note`,
      [orders.map((o) => o.id), orders.map((o) => o.customerId), orders.map((o) => o.placedAt), orders.map((o) => o.status), orders.map((o) => o.total), orders.map((o) => o.note)],
    );
    await shopDb.query('COMMIT');
  } catch (error) {
    await shopDb.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    await shopDb.end();
  }
  return { database, role, createdDatabase, customers: shop.customers.length, orders: shop.orders.length };
};
