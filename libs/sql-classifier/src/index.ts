export {
  classifySql,
  fingerprintSql,
  normalizeSql,
  loadSqlClassifier,
  isSqlClassifierLoaded,
  type ClassifyOptions,
  type SqlClassification,
  type StatementClassification,
} from './classify.js';
export {
  resultLineage,
  referencedColumns,
  declaredCursors,
  fetchedCursor,
  columnLineages,
  type ColumnLineage,
  type CopyFormat,
  type LineageOptions,
  type LineageSource,
  type SqlLineage,
  type StatementLineage,
} from './lineage.js';
export { ANY_TABLE, isCataloguedFunction, isPureFunction, pgCatalogSearchedFirst } from './catalogue.js';
