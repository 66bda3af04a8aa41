// Public entry of @woodstream/woodpecker: a write-ahead log on object storage or local disk
// with metadata in etcd or an embedded store. FORMAT.md describes what it stores.
export { MAINTENANCE_INTERVAL_MS, withDefaults } from './config.js';
export type { WalLimits } from './config.js';
export {
  ClosedError,
  ConflictError,
  CorruptDataError,
  DiskFullError,
  EntryTooLargeError,
  FencedError,
  InvalidArgumentError,
  InvalidNameError,
  LogExistsError,
  LogNotFoundError,
  MetadataUnavailableError,
  StorageRejectedError,
  StorageUnavailableError,
  TruncatedError,
  WalError,
  WriterFailedError,
} from './errors.js';
export type { WalErrorCode } from './errors.js';
export { LogHandle } from './log/log-handle.js';
export { LogReader } from './log/log-reader.js';
export type { LogEntry, ReadFrom } from './log/log-reader.js';
export { LogWriter } from './log/log-writer.js';
export type { AppendEntry, AppendOptions } from './log/log-writer.js';
export type { MaintenanceResult } from './log/maintenance.js';
export type { SegmentMeta, SegmentState } from './log/metadata.js';
export { MAX_LOG_NAME_LENGTH, validateLogName } from './log/names.js';
export { comparePositions, formatPosition } from './log/position.js';
export type { LogPosition } from './log/position.js';
export { EtcdMetadataStore } from './storage/etcd-metadata-store.js';
export type { EtcdMetadataStoreConfig } from './storage/etcd-metadata-store.js';
export { FileMetadataStore } from './storage/file-metadata-store.js';
export { instrumentMetadataStore, instrumentObjectStore } from './storage/instrumented.js';
export type {
  Compare,
  KeyValue,
  Lease,
  MetadataStore,
  TxnOp,
  TxnResult,
  WatchEvent,
} from './storage/metadata-store.js';
export { MemoryObjectStore } from './storage/memory-object-store.js';
export type {
  ListPage,
  ObjectInfo,
  ObjectStore,
  PutOptions,
  PutResult,
} from './storage/object-store.js';
export { S3ObjectStore } from './storage/s3-object-store.js';
export type { S3ObjectStoreConfig } from './storage/s3-object-store.js';
export { Woodpecker } from './woodpecker.js';
export type { StorageOptions, WoodpeckerOptions } from './woodpecker.js';
