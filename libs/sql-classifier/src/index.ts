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
