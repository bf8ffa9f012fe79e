export { openEventStore, DEFAULT_PGLITE_PATH } from './store.js';
export type {
  AppendResult,
  PreparedBatch,
  RefusedEvent,
  RejectedRecord,
  EventStore,
  OpenEventStoreOptions,
  SessionPage,
  SessionEventsPage,
  SessionQuery,
  SessionSummary,
  StorableAppendResult,
  StoredEvent,
  StoreLogger,
  VerifyResult,
} from './store.js';
export { canonicalJson } from './canonical-json.js';
export { chainHash, GENESIS_HASH, normalizeEvent, type StoredCloudEvent } from './chain.js';
export { READER_ROLE, WRITER_ROLE } from './migrations.js';
export { MAX_INDEXED_TEXT_BYTES, readWrittenEvents, WrittenEvent } from './written-events.js';
export { unindexableText } from './batch-rows.js';
export { refusesData } from './data-refusal.js';
