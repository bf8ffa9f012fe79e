import { GUARDED_SETTINGS } from './functions.js';

/**
 * Settings that change how the server tokenises SQL text. The classifier parses with
 * libpg-query's defaults (standard_conforming_strings on, backslash_quote safe_encoding, UTF-8):
 * once the server lexes differently, `'x\''; DELETE …` is one string to the classifier and a
 * DELETE to the server. Changing them is never an agent's business.
 * @see https://www.postgresql.org/docs/current/runtime-config-compatible.html
 */
const LEXER_SETTINGS: ReadonlySet<string> = new Set(['standard_conforming_strings', 'backslash_quote']);

/**
 * Client encodings the proxy reads text in. Anything else is refused: in SJIS, BIG5, GBK,
 * GB18030, UHC or JOHAB an ASCII byte such as `\` can be the trail byte of a multi-byte
 * character, so the server and the classifier would split the same bytes differently.
 */
const READABLE_ENCODINGS: ReadonlySet<string> = new Set(['utf8', 'unicode']);

/**
 * SQL_ASCII as a client encoding turns conversion off: the server checks what it gets as valid in
 * its own encoding and sends its own bytes back. Over a UTF8 database that is UTF-8 both ways.
 * @see https://www.postgresql.org/docs/current/multibyte.html#MULTIBYTE-CHARSET-SUPPORTED
 */
const UNCONVERTED_ENCODING = 'sqlascii';

/** PostgreSQL's encoding-name lookup ignores case and punctuation (`UTF-8` = `utf8`). */
const encodingKey = (name: string): string => name.toLowerCase().replace(/[^a-z0-9]/g, '');

/**
 * Whether the proxy reads text in this client encoding as the server will: UTF-8 by any spelling,
 * or SQL_ASCII over a UTF8 database. `serverEncoding` undefined: not known yet (a SET or a startup
 * parameter); the server's ParameterStatus is checked again with it once it is.
 */
export const isReadableClientEncoding = (name: string, serverEncoding?: string): boolean => {
  const key = encodingKey(name);
  if (READABLE_ENCODINGS.has(key)) return true;
  return key === UNCONVERTED_ENCODING && (serverEncoding === undefined || READABLE_ENCODINGS.has(encodingKey(serverEncoding)));
};

/**
 * Settings an agent may change as a read: each changes only how this session formats and reads
 * values, plans its own queries, or how long it waits, never what it may see or write nor what
 * the server records. Reviewed against PostgreSQL 15's user-settable settings. Anything else is
 * admin, closed by default: the superuser's switches (log_statement, log_min_messages,
 * track_activities, an extension's pgaudit.log, max_stack_depth, zero_damaged_pages, lc_messages),
 * resource limits that reach other sessions (work_mem, temp_file_limit), and custom `app.tenant`-
 * style settings that row-level security policies and views read through current_setting().
 * @see https://www.postgresql.org/docs/15/runtime-config-client.html
 */
const SESSION_SETTINGS: ReadonlySet<string> = new Set([
  'application_name', 'client_min_messages', 'client_encoding', 'search_path',
  'datestyle', 'intervalstyle', 'timezone', 'extra_float_digits', 'bytea_output', 'xmloption', 'xmlbinary',
  'lc_monetary', 'lc_numeric', 'lc_time', 'default_text_search_config', 'array_nulls', 'transform_null_equals',
  'quote_all_identifiers', 'escape_string_warning', 'gin_fuzzy_search_limit',
  'statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout', 'idle_session_timeout',
  'default_transaction_isolation', 'default_transaction_deferrable', 'transaction_isolation', 'transaction_deferrable',
  'enable_async_append', 'enable_bitmapscan', 'enable_gathermerge', 'enable_hashagg', 'enable_hashjoin',
  'enable_incremental_sort', 'enable_indexonlyscan', 'enable_indexscan', 'enable_material', 'enable_memoize',
  'enable_mergejoin', 'enable_nestloop', 'enable_parallel_append', 'enable_parallel_hash',
  'enable_partition_pruning', 'enable_partitionwise_aggregate', 'enable_partitionwise_join', 'enable_seqscan',
  'enable_sort', 'enable_tidscan', 'plan_cache_mode', 'cursor_tuple_fraction', 'from_collapse_limit',
  'join_collapse_limit', 'constraint_exclusion', 'random_page_cost', 'seq_page_cost', 'cpu_tuple_cost',
  'cpu_index_tuple_cost', 'cpu_operator_cost', 'effective_cache_size', 'jit', 'geqo', 'row_security',
  'synchronous_commit',
]);

/**
 * Why changing `name` (to `value`, when known as a constant) is an admin act, or undefined when
 * it is not. `value` undefined means unknown (RESET, DEFAULT, an expression): treated as unsafe
 * for the settings whose value matters. `via`: a SET/RESET statement, or set_config().
 */
export const guardedSettingReason = (name: string, value: string | undefined, via: 'set' | 'set_config' = 'set_config'): string | undefined => {
  const setting = name.toLowerCase();
  if (GUARDED_SETTINGS.has(setting)) return `${setting} changes the session's identity or read-only mode`;
  if (LEXER_SETTINGS.has(setting)) return `${setting} changes how the server reads string literals`;
  // A SET (or RESET) of client_encoding never reaches the target as written: the proxy converts at
  // its edge and keeps the target session in UTF8. set_config() does reach it.
  if (setting === 'client_encoding' && via === 'set') return undefined;
  if (setting === 'client_encoding' && (value === undefined || !isReadableClientEncoding(value))) {
    return 'client_encoding other than UTF8 (or SQL_ASCII over a UTF8 database) changes how the server splits the text into characters';
  }
  if (!SESSION_SETTINGS.has(setting)) return `${setting} is not on the reviewed list of settings that change only this session's formatting and planning`;
  return undefined;
};

/**
 * Server settings whose value may hold a credential: a standby's `primary_conninfo` (often with
 * the replication role's password: with it, pg_basebackup copies the whole cluster past Sluice),
 * and shell commands that may embed one. Reading them (SHOW, current_setting, SHOW ALL, pg_settings)
 * is admin, as reading pg_authid is. Read replicas are where read-only agents are usually sent.
 * @see https://www.postgresql.org/docs/current/runtime-config-replication.html#GUC-PRIMARY-CONNINFO
 */
const CREDENTIAL_SETTINGS: ReadonlySet<string> = new Set([
  'primary_conninfo', 'archive_command', 'restore_command', 'archive_cleanup_command', 'recovery_end_command', 'ssl_passphrase_command',
]);

/** Why reading setting `name` (undefined: named at run time, or `all`) is admin, or undefined when it is a read. */
export const settingReadReason = (name: string | undefined): string | undefined => {
  if (name === undefined) return 'a setting named at run time may hold a credential (primary_conninfo)';
  const setting = name.toLowerCase();
  if (setting === 'all') return 'SHOW ALL includes settings that may hold a credential (primary_conninfo)';
  return CREDENTIAL_SETTINGS.has(setting) ? `${setting} may hold a credential` : undefined;
};
