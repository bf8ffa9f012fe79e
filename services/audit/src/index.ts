export { startAuditService, STORE_CONSUMER, type AuditService, type AuditServiceOptions } from './server.js';
export { toOcsf, OCSF_VERSION, OcsfClass, type OcsfEvent } from './ocsf.js';
export { toCef, toSyslogLine } from './cef.js';
export { isAuditReader, NotAnAuditReaderError, type AuditReaders } from './readers.js';
