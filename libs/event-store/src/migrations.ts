import { sql, type Kysely, type Migration, type MigrationProvider } from 'kysely';
import { COMMAND_DECIDED, COMMAND_EXECUTED, commandsView, sessionsView } from './migration-views.js';

/** Name of the role that may only INSERT and SELECT events; appends run as it when possible. */
export const WRITER_ROLE = 'sluice_event_writer';
/** Name of the role that may only SELECT (compliance queries); grant it to a login role. */
export const READER_ROLE = 'sluice_audit_reader';

const statements = (db: Kysely<unknown>, list: readonly string[]): Promise<void> =>
  list.reduce<Promise<void>>(async (previous, text) => {
    await previous;
    // One statement per call: PGlite runs parameterised (extended protocol) queries only.
    await sql.raw(text).execute(db);
  }, Promise.resolve());

/** A migration of SQL statements; never rolled back (the events are append-only). */
const sqlMigration = (list: readonly string[]): Migration => ({
  up: (db) => statements(db, list),
  down: async () => {
    throw new Error('sluice.events is append-only; migrations are never rolled back');
  },
});

/**
 * A DO block that sets up roles and grants. Creating a role needs CREATEROLE: a server that
 * refuses leaves a notice, and the store works without this second line of defence.
 */
const grantsBlock = (body: string, what: string): string => `DO $$
       BEGIN
${body}
       EXCEPTION
         WHEN insufficient_privilege OR duplicate_object OR unique_violation THEN
           RAISE NOTICE 'sluice: ${what} not set up: %', SQLERRM;
       END $$`;

/** The role, created unless it exists, may use the sluice schema. */
const ensureRole = (role: string): string => `         IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${role}') THEN
           CREATE ROLE ${role} NOLOGIN;
         END IF;
         GRANT USAGE ON SCHEMA sluice TO ${role};`;

const createEvents: Migration = sqlMigration([
  `CREATE TABLE sluice.events (
        seq bigserial PRIMARY KEY,
        id text NOT NULL UNIQUE,
        session_id text NOT NULL,
        session_seq integer NOT NULL,
        type text NOT NULL,
        kind text NOT NULL,
        source text NOT NULL,
        time timestamptz NOT NULL,
        data jsonb,
        ext jsonb NOT NULL DEFAULT '{}'::jsonb,
        hash text NOT NULL,
        prev_hash text NOT NULL,
        resource text,
        subject_sub text,
        command_id text,
        approval_id text,
        decision text,
        masked_values integer NOT NULL DEFAULT 0,
        stored_at timestamptz NOT NULL DEFAULT now(),
        UNIQUE (session_id, session_seq)
      )`,
  `COMMENT ON TABLE sluice.events IS 'Append-only Sluice audit events. Each session is a hash chain: hash = sha256(prev_hash || RFC 8785 JSON of the CloudEvent); the first prev_hash is 64 zeros.'`,
  `CREATE INDEX events_heads_idx ON sluice.events (seq) WHERE kind IN ('session.started', 'session.rejected')`,
  `CREATE INDEX events_subject_idx ON sluice.events (subject_sub) WHERE kind IN ('session.started', 'session.rejected')`,
  `CREATE INDEX events_command_idx ON sluice.events (command_id) WHERE command_id IS NOT NULL`,
  `CREATE INDEX events_approval_idx ON sluice.events (approval_id) WHERE approval_id IS NOT NULL`,
  `CREATE FUNCTION sluice.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         RAISE EXCEPTION 'sluice.events is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
       END $$`,
  `CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON sluice.events FOR EACH ROW EXECUTE FUNCTION sluice.refuse_change()`,
  `CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON sluice.events FOR EACH STATEMENT EXECUTE FUNCTION sluice.refuse_change()`,
  // One row per session, headed by its session.started (or session.rejected) event. The
  // LATERAL form lets filters on the head (subject, resource, time) use indexes.
  sessionsView('CREATE', COMMAND_DECIDED.commandKinds),
  commandsView('CREATE', COMMAND_DECIDED.viewKinds, COMMAND_DECIDED.completion, COMMAND_DECIDED.result),
]);

/**
 * The writer role gets only INSERT and SELECT (and the sequence). Creating a cluster role needs
 * CREATEROLE; without it the store still works, only without this second line of defence.
 */
const writerRole: Migration = sqlMigration([
  grantsBlock(
    `${ensureRole(WRITER_ROLE)}
         GRANT SELECT, INSERT ON sluice.events TO ${WRITER_ROLE};
         GRANT USAGE ON SEQUENCE sluice.events_seq_seq TO ${WRITER_ROLE};
         GRANT ${WRITER_ROLE} TO CURRENT_USER;`,
    'writer role',
  ),
]);

/**
 * Provenance: which signer's signature the audit service verified for each stored event, and
 * the records it refused (never stored as genuine, never dropped), append-only like the events.
 * Also the read-only compliance role.
 */
const provenance: Migration = sqlMigration([
  `ALTER TABLE sluice.events ADD COLUMN signed_by text`,
  `COMMENT ON COLUMN sluice.events.signed_by IS 'The Sluice service whose Ed25519 signature on the NATS message carrying this event the audit service verified; NULL: stored without a verified signature.'`,
  `CREATE TABLE sluice.rejected_events (
        seq bigserial PRIMARY KEY,
        key text NOT NULL UNIQUE,
        reason text NOT NULL,
        claimed_signer text,
        nats_subject text NOT NULL,
        stream_seq bigint NOT NULL,
        event_id text,
        event_type text,
        session_id text,
        payload text NOT NULL,
        received_at timestamptz NOT NULL DEFAULT now()
      )`,
  `COMMENT ON TABLE sluice.rejected_events IS 'Messages and events the audit service refused as not genuine (unsigned, unknown signer, bad signature, a kind the signer may not publish, unreadable). Never part of a chain.'`,
  `CREATE TRIGGER rejected_append_only BEFORE UPDATE OR DELETE ON sluice.rejected_events FOR EACH ROW EXECUTE FUNCTION sluice.refuse_change()`,
  `CREATE TRIGGER rejected_no_truncate BEFORE TRUNCATE ON sluice.rejected_events FOR EACH STATEMENT EXECUTE FUNCTION sluice.refuse_change()`,
  grantsBlock(
    `         IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${WRITER_ROLE}') THEN
           GRANT SELECT, INSERT ON sluice.rejected_events TO ${WRITER_ROLE};
           GRANT USAGE ON SEQUENCE sluice.rejected_events_seq_seq TO ${WRITER_ROLE};
         END IF;
${ensureRole(READER_ROLE)}
         GRANT SELECT ON sluice.events, sluice.rejected_events, sluice.sessions, sluice.commands TO ${READER_ROLE};`,
    'provenance roles',
  ),
]);

/**
 * `command.executed`: a command that ran without a hold, recorded as one event (its decision,
 * outcome and, under `result`, the masked result). The views count and show it like a
 * command.decided followed by its command.completed and result.returned.
 */
const commandExecuted: Migration = sqlMigration([
  sessionsView('CREATE OR REPLACE', COMMAND_EXECUTED.commandKinds),
  commandsView('CREATE OR REPLACE', COMMAND_EXECUTED.viewKinds, COMMAND_EXECUTED.completion, COMMAND_EXECUTED.result),
]);

/** Since the store keeps an event PostgreSQL refuses for its data apart from the chain, the table holds more than forgeries. */
const rejectedForData: Migration = sqlMigration([
  `COMMENT ON TABLE sluice.rejected_events IS 'Messages and events the audit service did not chain: refused as not genuine (unsigned, unknown signer, bad signature, a kind the signer may not publish, unreadable), or genuine but refused by PostgreSQL for their data (reason: its message and SQLSTATE). Never part of a chain.'`,
]);

export const migrationProvider: MigrationProvider = {
  getMigrations: async () => ({
    '0001_events': createEvents,
    '0002_writer_role': writerRole,
    '0003_provenance': provenance,
    '0004_command_executed': commandExecuted,
    '0005_rejected_for_data': rejectedForData,
  }),
};
