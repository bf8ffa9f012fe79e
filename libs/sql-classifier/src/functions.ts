import type { Action, Risk } from '@sluice/contracts';

/**
 * What calling a built-in function does beyond reading. Matched on the bare function name
 * whatever schema qualifies it: extensions such as dblink install into any schema, and a
 * same-named user function is rare enough that denying it is the safe mistake.
 */
export interface FunctionEffect {
  readonly action: Action;
  readonly risk: Risk;
  readonly why: string;
}

const admin = (why: string): FunctionEffect => ({ action: 'admin', risk: 'critical', why });
const write = (why: string): FunctionEffect => ({ action: 'write', risk: 'medium', why });

const SERVER_FILE = admin('reads or writes files on the database server');
const LARGE_OBJECT = admin('large-object functions reach server files and unowned storage');
const SIGNALLING = admin('signals or reconfigures the database server');
const REPLICATION = admin('controls replication, WAL or backups');
const DYNAMIC_SQL = admin('runs SQL given as a string, which cannot be classified');

/** @see https://www.postgresql.org/docs/current/functions-admin.html */
const TABLE: Readonly<Record<string, FunctionEffect>> = {
  pg_read_file: SERVER_FILE,
  pg_read_binary_file: SERVER_FILE,
  pg_ls_dir: SERVER_FILE,
  pg_stat_file: SERVER_FILE,
  pg_ls_logdir: SERVER_FILE,
  pg_ls_waldir: SERVER_FILE,
  pg_ls_tmpdir: SERVER_FILE,
  pg_ls_archive_statusdir: SERVER_FILE,
  pg_ls_logicalsnapdir: SERVER_FILE,
  pg_ls_logicalmapdir: SERVER_FILE,
  pg_ls_replslotdir: SERVER_FILE,
  pg_ls_summariesdir: SERVER_FILE,
  pg_file_write: SERVER_FILE,
  pg_file_rename: SERVER_FILE,
  pg_file_unlink: SERVER_FILE,
  pg_file_sync: SERVER_FILE,
  pg_logdir_ls: SERVER_FILE,
  pg_current_logfile: SERVER_FILE,
  lo_import: LARGE_OBJECT,
  lo_export: LARGE_OBJECT,
  lo_create: LARGE_OBJECT,
  lo_creat: LARGE_OBJECT,
  lo_unlink: LARGE_OBJECT,
  lo_open: LARGE_OBJECT,
  lo_close: LARGE_OBJECT,
  lo_put: LARGE_OBJECT,
  lo_get: LARGE_OBJECT,
  lo_from_bytea: LARGE_OBJECT,
  lo_truncate: LARGE_OBJECT,
  lo_truncate64: LARGE_OBJECT,
  lo_lseek: LARGE_OBJECT,
  lo_lseek64: LARGE_OBJECT,
  lo_tell: LARGE_OBJECT,
  lo_tell64: LARGE_OBJECT,
  loread: LARGE_OBJECT,
  lowrite: LARGE_OBJECT,
  pg_terminate_backend: SIGNALLING,
  pg_cancel_backend: SIGNALLING,
  pg_signal_backend: SIGNALLING,
  pg_reload_conf: SIGNALLING,
  pg_rotate_logfile: SIGNALLING,
  pg_rotate_logfile_old: SIGNALLING,
  pg_log_backend_memory_contexts: SIGNALLING,
  pg_promote: SIGNALLING,
  pg_stat_reset: SIGNALLING,
  pg_stat_reset_shared: SIGNALLING,
  pg_stat_reset_single_table_counters: SIGNALLING,
  pg_stat_reset_single_function_counters: SIGNALLING,
  pg_stat_reset_slru: SIGNALLING,
  pg_stat_reset_replication_slot: SIGNALLING,
  pg_stat_reset_subscription_stats: SIGNALLING,
  pg_stat_reset_backend_stats: SIGNALLING,
  pg_stat_statements_reset: SIGNALLING,
  pg_import_system_collations: SIGNALLING,
  pg_truncate_visibility_map: SIGNALLING,
  pg_restore_relation_stats: SIGNALLING,
  pg_restore_attribute_stats: SIGNALLING,
  pg_clear_relation_stats: SIGNALLING,
  pg_clear_attribute_stats: SIGNALLING,
  pg_switch_wal: REPLICATION,
  pg_create_restore_point: REPLICATION,
  pg_backup_start: REPLICATION,
  pg_backup_stop: REPLICATION,
  pg_start_backup: REPLICATION,
  pg_stop_backup: REPLICATION,
  pg_wal_replay_pause: REPLICATION,
  pg_wal_replay_resume: REPLICATION,
  pg_create_physical_replication_slot: REPLICATION,
  pg_create_logical_replication_slot: REPLICATION,
  pg_drop_replication_slot: REPLICATION,
  pg_copy_physical_replication_slot: REPLICATION,
  pg_copy_logical_replication_slot: REPLICATION,
  pg_replication_slot_advance: REPLICATION,
  pg_logical_slot_get_changes: REPLICATION,
  pg_logical_slot_get_binary_changes: REPLICATION,
  pg_logical_slot_peek_changes: REPLICATION,
  pg_logical_slot_peek_binary_changes: REPLICATION,
  pg_logical_emit_message: REPLICATION,
  pg_sync_replication_slots: REPLICATION,
  pg_log_standby_snapshot: REPLICATION,
  pg_replication_origin_create: REPLICATION,
  pg_replication_origin_drop: REPLICATION,
  pg_replication_origin_advance: REPLICATION,
  pg_replication_origin_session_setup: REPLICATION,
  pg_replication_origin_session_reset: REPLICATION,
  pg_replication_origin_xact_setup: REPLICATION,
  pg_replication_origin_xact_reset: REPLICATION,
  query_to_xml: DYNAMIC_SQL,
  query_to_xmlschema: DYNAMIC_SQL,
  query_to_xml_and_xmlschema: DYNAMIC_SQL,
  cursor_to_xml: DYNAMIC_SQL,
  ts_stat: DYNAMIC_SQL,
  ts_rewrite: DYNAMIC_SQL,
  nextval: write('advances a sequence'),
  setval: write('sets a sequence'),
  pg_notify: write('sends a notification to other sessions'),
};

/** Settings whose change escapes the session's identity or its read-only mode. */
export const GUARDED_SETTINGS: ReadonlySet<string> = new Set([
  'role',
  'session_authorization',
  'default_transaction_read_only',
  'transaction_read_only',
  'session_replication_role',
]);

export const functionEffect = (name: string): FunctionEffect | undefined => {
  // hasOwn: a name such as `constructor` must not find Object.prototype's members.
  if (Object.hasOwn(TABLE, name)) return TABLE[name];
  if (name.startsWith('dblink')) return admin('dblink opens connections to other databases');
  if (name.startsWith('pg_replication_origin_')) return REPLICATION;
  return undefined;
};
