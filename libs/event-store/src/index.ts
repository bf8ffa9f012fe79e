export { openEventStore, DEFAULT_PGLITE_PATH } from './store.js';
export type {
  AppendResult,
  PreparedBatch,
  RejectedRecord,
  EventStore,
  OpenEventStoreOptions,
  SessionPage,
  SessionEventsPage,
  SessionQuery,
  SessionSummary,
  StoredEvent,
  StoreLogger,
  VerifyResult,
} from './store.js';
export { canonicalJson } from './canonical-json.js';
export { chainHash, GENESIS_HASH, normalizeEvent, type StoredCloudEvent } from './chain.js';
export { READER_ROLE, WRITER_ROLE } from './migrations.js';
export { readWrittenEvents, WrittenEvent } from './written-events.js';
