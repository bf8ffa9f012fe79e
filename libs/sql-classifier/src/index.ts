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
export { referencedColumns, declaredCursors, fetchedCursor } from './session-statements.js';
export {
  resultLineage,
  columnLineages,
  type ColumnLineage,
  type CopyFormat,
  type LineageOptions,
  type LineageSource,
  type SqlLineage,
  type StatementLineage,
} from './lineage.js';
export { sqlSyntaxError, type SqlSyntaxError } from './syntax.js';
export { isReadableClientEncoding, guardedSettingReason } from './settings.js';
export { clientEncodingReport, clientEncodingStatement, showsClientEncoding, type ClientEncodingEffect, type ClientEncodingReport } from './client-encoding-statement.js';
export { sessionStateEffects, type PreparedStatementChange, type SessionStateEffects } from './session-effects.js';
export { ANY_TABLE, isCataloguedFunction, isPureFunction, pgCatalogSearchedFirst } from './catalogue.js';
export { isOpenCatalogRelation } from './catalog-relations.js';
export { coveredFlows, type CoveredFlowOptions, type CoveredFlows, type ValueFlow, type WrittenColumn } from './covered-flows.js';
export { targetCatalogFacts, type TargetCatalogFacts } from './target-catalog.js';
export { type ViewDefinition } from './view-columns.js';
export { throughViews, type ViewColumns, type ViewSources } from './view-sources.js';
export { constantsAreInert, statementShape } from './statement-shape.js';
export { searchPathKey } from './statement-parts.js';
export { unqualifiedRelations } from './unqualified-relations.js';
