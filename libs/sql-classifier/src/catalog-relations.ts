/**
 * System catalog relations that describe objects and hold no user data, no secrets and nothing
 * of other sessions: what psql's meta-commands, drivers, ORMs and database tools read to learn the
 * schema. A `tables` allow-list grants them whatever it names (see the README), so an agent that
 * may read one table can still run `\d` on it. This is a reviewed list, closed by default like the
 * function catalogue: a catalog relation not named here stays under the rules.
 *
 * Left out on purpose (they stay under `tables` rules and masking):
 * - sample values of user columns: pg_statistic, pg_stats, pg_statistic_ext_data, pg_stats_ext*;
 * - secrets or credentials: pg_authid, pg_shadow, pg_user_mapping(s), pg_subscription (conninfo),
 *   pg_foreign_server / pg_foreign_data_wrapper / pg_foreign_table and information_schema's
 *   *_options, user_mappings, foreign_* and _pg_* views (their options may carry passwords);
 * - settings that may carry secrets (custom `app.*` settings, ALTER ROLE … SET): pg_settings,
 *   pg_db_role_setting, pg_file_settings, pg_hba_file_rules, pg_ident_file_mappings, pg_config;
 * - other sessions and server state: pg_stat_* and pg_statio_* (query texts with literals of every
 *   agent on the same target role), pg_locks, pg_prepared_xacts, pg_replication_*;
 * - data: pg_largeobject, pg_sequences (a sequence's last value), pg_seclabel(s);
 * - pg_user (its useconfig is pg_roles' rolconfig; psql reads pg_roles). pg_roles stays open for `\du`:
 *   it shows a password as `********`, and its rolconfig the settings of ALTER ROLE … SET.
 * @see https://www.postgresql.org/docs/current/catalogs.html
 * @see https://www.postgresql.org/docs/current/information-schema.html
 */

const words = (text: string): string[] => text.split(/\s+/).filter(Boolean);

/**
 * pg_catalog relations present since PostgreSQL 12: an unqualified name among them is read from
 * pg_catalog whatever the search_path holds (while pg_catalog is searched first).
 */
const CATALOG_SINCE_12: ReadonlySet<string> = new Set(
  words(`
    pg_aggregate pg_am pg_amop pg_amproc pg_attrdef pg_attribute pg_auth_members pg_cast pg_class pg_collation
    pg_constraint pg_conversion pg_database pg_default_acl pg_depend pg_description pg_enum pg_event_trigger
    pg_extension pg_index pg_inherits pg_init_privs pg_language pg_namespace pg_opclass pg_operator pg_opfamily
    pg_partitioned_table pg_policy pg_proc pg_publication pg_publication_rel pg_range pg_rewrite pg_sequence
    pg_shdepend pg_shdescription pg_statistic_ext pg_tablespace pg_transform pg_trigger pg_ts_config
    pg_ts_config_map pg_ts_dict pg_ts_parser pg_ts_template pg_type
    pg_roles pg_tables pg_views pg_indexes pg_matviews pg_policies pg_rules pg_publication_tables
    pg_timezone_names pg_timezone_abbrevs pg_available_extensions pg_available_extension_versions
  `),
);

/**
 * Newer pg_catalog relations: open when qualified, but an unqualified name may be a user table on
 * an older server (which has no such catalog), so it is reported in every schema of the path.
 */
const CATALOG_SINCE_13: ReadonlySet<string> = new Set(words('pg_publication_namespace'));

/**
 * information_schema views: SQL-standard definitions, computed from the catalogs above, of what
 * the current role may see.
 */
const INFORMATION_SCHEMA: ReadonlySet<string> = new Set(
  words(`
    administrable_role_authorizations applicable_roles attributes character_sets check_constraint_routine_usage
    check_constraints collation_character_set_applicability collations column_column_usage column_domain_usage
    column_privileges column_udt_usage columns constraint_column_usage constraint_table_usage data_type_privileges
    domain_constraints domain_udt_usage domains element_types enabled_roles information_schema_catalog_name
    key_column_usage parameters referential_constraints role_column_grants role_routine_grants role_table_grants
    role_udt_grants role_usage_grants routine_column_usage routine_privileges routine_routine_usage
    routine_sequence_usage routine_table_usage routines schemata sequences sql_features sql_implementation_info
    sql_parts sql_sizing table_constraints table_privileges tables transforms triggered_update_columns triggers
    udt_privileges usage_privileges user_defined_types view_column_usage view_routine_usage view_table_usage views
  `),
);

/** `schema.relation` names a catalog relation that describes objects and holds no data (see above). */
export const isOpenCatalogRelation = (qualified: string): boolean => {
  const dot = qualified.indexOf('.');
  if (dot < 0) return false;
  const schema = qualified.slice(0, dot);
  const relation = qualified.slice(dot + 1);
  if (schema === 'pg_catalog') return CATALOG_SINCE_12.has(relation) || CATALOG_SINCE_13.has(relation);
  return schema === 'information_schema' && INFORMATION_SCHEMA.has(relation);
};

/** An unqualified name that certainly resolves to this pg_catalog relation while pg_catalog is searched first. */
export const isLongStandingCatalogRelation = (relation: string): boolean => CATALOG_SINCE_12.has(relation);
