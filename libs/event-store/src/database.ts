import type { ColumnType, Generated } from 'kysely';

/** Row of `sluice.events` as kysely sees it. */
export interface EventsTable {
  seq: Generated<number>;
  id: string;
  session_id: string;
  session_seq: number;
  type: string;
  kind: string;
  source: string;
  time: ColumnType<Date, Date, never>;
  data: ColumnType<unknown, string | null, never>;
  ext: ColumnType<Record<string, unknown>, string, never>;
  hash: string;
  prev_hash: string;
  resource: string | null;
  subject_sub: string | null;
  command_id: string | null;
  approval_id: string | null;
  decision: string | null;
  masked_values: number;
  signed_by: string | null;
  stored_at: Generated<Date>;
}

/** Row of `sluice.rejected_events`: what the audit service did not chain (not genuine, or refused by PostgreSQL for its data). */
export interface RejectedEventsTable {
  seq: Generated<number>;
  key: string;
  reason: string;
  claimed_signer: string | null;
  nats_subject: string;
  stream_seq: number;
  event_id: string | null;
  event_type: string | null;
  session_id: string | null;
  payload: string;
  received_at: Generated<Date>;
}

export interface SluiceDatabase {
  'sluice.events': EventsTable;
  'sluice.rejected_events': RejectedEventsTable;
}
