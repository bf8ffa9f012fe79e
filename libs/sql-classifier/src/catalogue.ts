/**
 * The reviewed catalogue of built-in functions, types and operators that neither write nor read
 * relations by name: their result is computed from their arguments (and the clock, the session's
 * settings, the system catalogs' definitions) only. Anything not named here is closed by default:
 * it may read any table (`table_to_xml('public.secrets', …)`, a user function), so the classifier
 * counts it as reading ANY_TABLE at high risk, and lineage counts its result as derived from any
 * column. Adding a name here is a security review: say why next to anything not obviously pure.
 *
 * Names are matched exactly as PostgreSQL resolves them (after case folding by the parser): a
 * quoted `"LOWER"` is not `lower`. A name qualified with a schema other than pg_catalog is never
 * catalogued; an unqualified name is catalogued only while pg_catalog is searched first (it is,
 * unless the search_path lists it after another schema), so a same-named user function in a
 * schema earlier on the path cannot stand in for a built-in.
 * @see https://www.postgresql.org/docs/current/typeconv-func.html
 */

/** The name a `tables` list carries for "any table": real names are always `schema.table`. */
export const ANY_TABLE = '*';

const words = (text: string): string[] => text.split(/\s+/).filter(Boolean);

const PURE_FUNCTIONS: ReadonlySet<string> = new Set(
  words(`
    abs acos acosd acosh asin asind asinh atan atan2 atan2d atand atanh cbrt ceil ceiling cos cosd cosh cot cotd
    degrees div erf erfc exp factorial floor gamma gcd lcm lgamma ln log log10 min_scale mod pi power pow radians
    random random_normal round scale setseed sign sin sind sinh sqrt tan tand tanh trim_scale trunc width_bucket
    bit_count get_bit get_byte set_bit set_byte crc32 crc32c
    ascii bit_length btrim casefold char_length character_length chr concat concat_ws convert convert_from convert_to
    decode encode format initcap left length lower lpad ltrim md5 normalize is_normalized octet_length overlay
    parse_ident position quote_ident quote_literal quote_nullable regexp_count regexp_instr regexp_like regexp_match
    regexp_matches regexp_replace regexp_split_to_array regexp_split_to_table regexp_substr repeat replace reverse
    right rpad rtrim sha224 sha256 sha384 sha512 split_part starts_with string_to_array string_to_table strpos
    substr substring to_ascii to_bin to_hex to_oct translate unistr upper text
    to_char to_date to_number to_timestamp age clock_timestamp date_add date_bin date_part date_subtract date_trunc
    extract isfinite justify_days justify_hours justify_interval make_date make_interval make_time make_timestamp
    make_timestamptz now statement_timestamp timeofday transaction_timestamp timezone overlaps
    gen_random_uuid uuidv4 uuidv7 uuid_extract_timestamp uuid_extract_version
    array_append array_cat array_dims array_fill array_length array_lower array_ndims array_position array_positions
    array_prepend array_remove array_replace array_reverse array_sample array_shuffle array_sort array_to_string
    array_upper cardinality trim_array unnest generate_series generate_subscripts
    to_json to_jsonb row_to_json array_to_json json_build_object jsonb_build_object json_build_array jsonb_build_array
    json_object jsonb_object json_array_elements jsonb_array_elements json_array_elements_text
    jsonb_array_elements_text json_each jsonb_each json_each_text jsonb_each_text json_extract_path
    jsonb_extract_path json_extract_path_text jsonb_extract_path_text json_object_keys jsonb_object_keys
    json_typeof jsonb_typeof json_strip_nulls jsonb_strip_nulls jsonb_pretty jsonb_set jsonb_set_lax jsonb_insert
    jsonb_concat jsonb_path_exists jsonb_path_match jsonb_path_query jsonb_path_query_array jsonb_path_query_first
    jsonb_path_exists_tz jsonb_path_match_tz jsonb_path_query_tz jsonb_path_query_array_tz jsonb_path_query_first_tz
    json_array_length jsonb_array_length json_populate_record jsonb_populate_record json_populate_recordset
    jsonb_populate_recordset json_to_record jsonb_to_record json_to_recordset jsonb_to_recordset
    lower_inc upper_inc lower_inf upper_inf isempty range_merge int4range int8range numrange tsrange tstzrange
    daterange int4multirange int8multirange nummultirange tsmultirange tstzmultirange datemultirange multirange
    abbrev broadcast family host hostmask inet_merge inet_same_family masklen netmask network set_masklen
    to_tsvector to_tsquery plainto_tsquery phraseto_tsquery websearch_to_tsquery ts_rank ts_rank_cd ts_headline
    setweight strip numnode querytree tsvector_to_array array_to_tsvector ts_delete ts_filter
    count sum avg min max string_agg array_agg json_agg jsonb_agg json_object_agg jsonb_object_agg bool_and bool_or
    every bit_and bit_or bit_xor stddev stddev_pop stddev_samp variance var_pop var_samp corr covar_pop covar_samp
    regr_avgx regr_avgy regr_count regr_intercept regr_r2 regr_slope regr_sxx regr_sxy regr_syy
    percentile_cont percentile_disc mode any_value range_agg range_intersect_agg
    row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value
    num_nulls num_nonnulls pg_typeof pg_collation_for like_escape similar_escape similar_to_escape
    bool int2 int4 int8 float4 float8 numeric varchar bpchar date time timetz timestamp timestamptz interval
  `),
);

/**
 * The session and the server as a driver asks about them on connect: version, database, schema,
 * backend pid, encodings, addresses, recovery state. current_setting reads one setting, as SHOW
 * does (a read under the contract); a secret kept in a custom setting (`app.key`) is as readable
 * through SHOW, so keeping such secrets out of settings is the deployment's part (see the README).
 */
const SESSION_FUNCTIONS: ReadonlySet<string> = new Set(
  words(`
    version current_database current_schema current_schemas current_setting pg_backend_pid pg_postmaster_start_time
    pg_conf_load_time pg_client_encoding inet_client_addr inet_client_port inet_server_addr inet_server_port
    pg_is_in_recovery pg_jit_available pg_trigger_depth system_user
  `),
);

/**
 * Catalog functions psql's meta-commands, drivers, ORMs and database tools call to describe
 * objects. Each group was reviewed: none reads a user table's rows, a server file, another
 * session or a setting, and none writes. What they reveal is what the open catalog relations
 * (catalog-relations.ts) already show. Lineage counts their results as carrying their arguments.
 * This first group: names and look-ups by OID or name (what pg_class, pg_type, pg_namespace say),
 * encodings, the keyword list, the session's temp schema.
 */
const CATALOG_FUNCTIONS: ReadonlySet<string> = new Set(
  words(`
    format_type pg_get_userbyid pg_encoding_to_char pg_char_to_encoding pg_get_keywords pg_options_to_table
    pg_tablespace_location pg_my_temp_schema pg_is_other_temp_schema
    to_regclass to_regtype to_regproc to_regprocedure to_regnamespace to_regrole to_regoper to_regoperator
    to_regcollation to_regtypemod
  `),
);

/** Visibility on the search_path: a yes/no about an object's name, nothing of its contents. */
const VISIBILITY_FUNCTIONS: ReadonlySet<string> = new Set(
  words(`
    pg_table_is_visible pg_type_is_visible pg_function_is_visible pg_operator_is_visible pg_opclass_is_visible
    pg_opfamily_is_visible pg_collation_is_visible pg_conversion_is_visible pg_statistics_obj_is_visible
    pg_ts_config_is_visible pg_ts_dict_is_visible pg_ts_parser_is_visible pg_ts_template_is_visible
  `),
);

/**
 * Definitions decompiled from the catalogs: a view's query text, an index's, a constraint's, a
 * default's expression, a function's source. A definition is not data, though it may hold the
 * constants its author wrote (a CHECK list, a default): the same text pg_views and pg_proc show.
 * Statistics objects: their definition (columns, kinds), never pg_statistic_ext_data's values.
 */
const DEFINITION_FUNCTIONS: ReadonlySet<string> = new Set(
  words(`
    pg_get_expr pg_get_indexdef pg_get_constraintdef pg_get_viewdef pg_get_triggerdef pg_get_ruledef
    pg_get_functiondef pg_get_function_arguments pg_get_function_identity_arguments pg_get_function_result
    pg_get_function_arg_default pg_get_function_sqlbody pg_get_statisticsobjdef pg_get_statisticsobjdef_columns
    pg_get_statisticsobjdef_expressions pg_get_partkeydef pg_get_partition_constraintdef pg_get_serial_sequence
    pg_describe_object pg_identify_object pg_identify_object_as_address pg_partition_root pg_partition_tree
    pg_partition_ancestors
  `),
);

/** Comments (COMMENT ON): pg_description and pg_shdescription, open relations themselves. */
const COMMENT_FUNCTIONS: ReadonlySet<string> = new Set(words('obj_description col_description shobj_description'));

/**
 * Privileges and properties: what the target role may do to an object, an index AM's abilities,
 * whether row security or updatability applies. ACL arrays (acldefault, aclexplode) are pg_class'
 * relacl spelled out, as DBeaver and information_schema read them.
 */
const PRIVILEGE_FUNCTIONS: ReadonlySet<string> = new Set(
  words(`
    has_table_privilege has_column_privilege has_any_column_privilege has_schema_privilege has_database_privilege
    has_function_privilege has_sequence_privilege has_type_privilege has_language_privilege has_tablespace_privilege
    has_foreign_data_wrapper_privilege has_server_privilege has_parameter_privilege pg_has_role
    acldefault aclexplode makeaclitem row_security_active pg_relation_is_updatable pg_column_is_updatable
    pg_relation_is_publishable pg_index_column_has_property pg_index_has_property pg_indexam_has_property
  `),
);

/**
 * Sizes of relations, indexes, databases and tablespaces, and their display: metadata a tool
 * shows next to a name (`\d+`, `\l+`). A size says how much is stored, never what; it is not
 * pg_column_size(value), which measures a value and stays off the catalogue.
 */
const SIZE_FUNCTIONS: ReadonlySet<string> = new Set(
  words(`
    pg_relation_size pg_total_relation_size pg_table_size pg_indexes_size pg_database_size pg_tablespace_size
    pg_size_pretty pg_size_bytes
  `),
);

const isCatalogLookup = (name: string): boolean =>
  CATALOG_FUNCTIONS.has(name) ||
  VISIBILITY_FUNCTIONS.has(name) ||
  DEFINITION_FUNCTIONS.has(name) ||
  COMMENT_FUNCTIONS.has(name) ||
  PRIVILEGE_FUNCTIONS.has(name) ||
  SIZE_FUNCTIONS.has(name);

/**
 * Built-in functions a whole row fits (their first argument is `any`, `anyelement`, `record`…)
 * that PostgreSQL also calls in attribute notation: `p.concat` is concat(p), the whole row as
 * text, when people has no column named concat; `(p).to_jsonb` and `v.num_nonnulls` likewise. The
 * text cannot tell such a call from a column, so these names count as both: the whole row for
 * lineage, never a column that bounds a write. A user's function of a row type is called the same
 * way and is out of the text's reach (see the README).
 * @see https://www.postgresql.org/docs/current/rowtypes.html#ROWTYPES-USAGE
 */
const ROW_FUNCTIONS: ReadonlySet<string> = new Set(
  words(`
    concat quote_literal quote_nullable to_json to_jsonb row_to_json json_build_array jsonb_build_array
    json_build_object jsonb_build_object num_nulls num_nonnulls pg_typeof pg_collation_for pg_column_size
    pg_column_compression hash_record record_out record_send any_out anyelement_out anynonarray_out
    anycompatible_out anycompatiblenonarray_out
  `),
);

/** `x.name` or `(x).name` may call the built-in `name(x)` on x's whole row. */
export const mayBeRowFunction = (name: string): boolean => ROW_FUNCTIONS.has(name);

/** Type names a cast may name without running code a user wrote (input/output and cast functions). */
const BUILTIN_TYPES: ReadonlySet<string> = new Set(
  words(`
    bool boolean int2 int4 int8 smallint integer bigint int float4 float8 real numeric decimal money
    text varchar bpchar char name bytea date time timetz timestamp timestamptz interval uuid json jsonb jsonpath
    inet cidr macaddr macaddr8 bit varbit tsvector tsquery oid xid xid8 cid tid pg_lsn
    regclass regtype regproc regprocedure regoper regoperator regnamespace regrole regconfig regdictionary
    regcollation point line lseg box path polygon circle record unknown
    int4range int8range numrange tsrange tstzrange daterange
    int4multirange int8multirange nummultirange tsmultirange tstzmultirange datemultirange
    int2vector oidvector pg_node_tree aclitem txid_snapshot pg_snapshot refcursor void cstring anyarray anyelement
  `),
);

/** Operator symbols of the built-in types. A user may define these for their own types too: see the README. */
const BUILTIN_OPERATORS: ReadonlySet<string> = new Set(
  words(`
    + - * / % ^ |/ ||/ @ & | # ~ << >> = <> != < > <= >= || ~~ ~~* !~~ !~~* ~* !~ !~* @> <@ && ? ?| ?& @@ @@@ @?
    -> ->> #> #>> #- <-> <<| |>> &< &> &<| |&> <<= >>= -|- ?# ?- ?-| ?|| <^ >^ @-@ ## ~<~ ~<=~ ~>=~ ~>~ ^@
  `),
);

const PG_CATALOG = 'pg_catalog';

/**
 * True while an unqualified name resolves in pg_catalog first: PostgreSQL searches pg_catalog
 * before the path unless the path lists it, in which case it is searched where it stands.
 * @see https://www.postgresql.org/docs/current/runtime-config-client.html#GUC-SEARCH-PATH
 */
export const pgCatalogSearchedFirst = (searchPath: readonly string[] | undefined): boolean => {
  const schemas = (searchPath ?? []).map((entry) => entry.trim().replace(/^"(.*)"$/, '$1'));
  const at = schemas.indexOf(PG_CATALOG);
  // pg_temp is never searched for functions, types or operators.
  return at < 0 || schemas.slice(0, at).every((schema) => schema === '' || schema.startsWith('pg_temp'));
};

/** `parts` is the name as the parser gives it (`[schema,] name`): resolves to pg_catalog's object. */
const builtinName = (parts: readonly string[], searchPath: readonly string[] | undefined): string | undefined => {
  if (parts.length === 1) return pgCatalogSearchedFirst(searchPath) ? parts[0] : undefined;
  if (parts.length === 2 && parts[0] === PG_CATALOG) return parts[1];
  return undefined;
};

/** A function on the catalogue: it reads no relation by name and writes nothing. */
export const isCataloguedFunction = (parts: readonly string[], searchPath: readonly string[] | undefined): boolean => {
  const name = builtinName(parts, searchPath);
  return name !== undefined && (PURE_FUNCTIONS.has(name) || SESSION_FUNCTIONS.has(name) || isCatalogLookup(name));
};

/** A function whose result is computed from its arguments alone (not a catalog look-up). */
export const isPureFunction = (parts: readonly string[], searchPath: readonly string[] | undefined): boolean => {
  const name = builtinName(parts, searchPath);
  return name !== undefined && (PURE_FUNCTIONS.has(name) || SESSION_FUNCTIONS.has(name));
};

export const isBuiltinType = (parts: readonly string[], searchPath: readonly string[] | undefined): boolean => {
  const name = builtinName(parts, searchPath);
  return name !== undefined && BUILTIN_TYPES.has(name);
};

export const isBuiltinOperator = (parts: readonly string[], searchPath: readonly string[] | undefined): boolean => {
  const name = builtinName(parts, searchPath);
  return name !== undefined && BUILTIN_OPERATORS.has(name);
};

/** BETWEEN is written with its own name in the raw tree; PostgreSQL runs it as `>=` and `<=`. */
const BETWEEN_KINDS: ReadonlySet<string> = new Set(['AEXPR_BETWEEN', 'AEXPR_NOT_BETWEEN', 'AEXPR_BETWEEN_SYM', 'AEXPR_NOT_BETWEEN_SYM']);

/** An A_Expr whose operator is a built-in one (see isBuiltinOperator). */
export const isBuiltinOperatorExpression = (kind: string | undefined, parts: readonly string[], searchPath: readonly string[] | undefined): boolean =>
  parts.length === 0 || isBuiltinOperator(kind !== undefined && BETWEEN_KINDS.has(kind) ? ['>='] : parts, searchPath);

/**
 * Catalog relations that hold values of other tables' columns: sample values (pg_stats), the
 * statement texts of every session on the server (pg_stat_activity, pg_stat_statements), which
 * quote whatever constants other agents and applications sent, and the large-object store
 * (pg_largeobject, what lo_get would read: it is admin).
 */
export const STATISTICS_RELATIONS: ReadonlySet<string> = new Set([
  'pg_stats', 'pg_statistic', 'pg_stats_ext', 'pg_stats_ext_exprs', 'pg_statistic_ext_data', 'pg_stat_activity', 'pg_stat_statements',
  'pg_largeobject',
]);
/** Their columns that hold those values. */
export const STATISTICS_VALUE_COLUMN = /^(most_common_vals|most_common_elems|histogram_bounds|stavalues\d|stxd\w*|most_common_val_nulls|exprs?|query|data)$/;

/**
 * Catalogs that hold credentials: role password hashes (pg_authid, pg_shadow), user mappings'
 * options with foreign servers' passwords, subscriptions' connection strings, settings. Reading them is
 * admin: a hash cracked offline is a login that bypasses Sluice.
 */
export const CREDENTIAL_RELATIONS: ReadonlySet<string> = new Set([
  'pg_authid', 'pg_shadow', 'pg_user_mapping', 'pg_user_mappings', 'pg_subscription',
  // Every setting's value, primary_conninfo's replication password included (see settings.ts).
  'pg_settings', 'pg_file_settings',
]);
