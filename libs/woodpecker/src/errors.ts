import { WoodstreamError } from '@woodstream/common';

/** Every stable error code of the WAL. One row each in docs/errors.md. */
export type WalErrorCode =
  | 'WAL_FENCED'
  | 'WAL_LOG_NOT_FOUND'
  | 'WAL_LOG_EXISTS'
  | 'WAL_INVALID_NAME'
  | 'WAL_INVALID_ARGUMENT'
  | 'WAL_ENTRY_TOO_LARGE'
  | 'WAL_CLOSED'
  | 'WAL_WRITER_FAILED'
  | 'WAL_TRUNCATED'
  | 'WAL_CORRUPT'
  | 'WAL_CONFLICT'
  | 'WAL_STORAGE_UNAVAILABLE'
  | 'WAL_STORAGE_REJECTED'
  | 'WAL_METADATA_UNAVAILABLE'
  | 'WAL_DISK_FULL';

/** Base of the WAL's typed errors. */
export abstract class WalError extends WoodstreamError {
  abstract override readonly code: WalErrorCode;
}

/** A newer writer opened the log; this writer may not append or seal anything any more. */
export class FencedError extends WalError {
  readonly code = 'WAL_FENCED';
  readonly retryable = false;
}
export class LogNotFoundError extends WalError {
  readonly code = 'WAL_LOG_NOT_FOUND';
  readonly retryable = false;
}
export class LogExistsError extends WalError {
  readonly code = 'WAL_LOG_EXISTS';
  readonly retryable = false;
}
export class InvalidNameError extends WalError {
  readonly code = 'WAL_INVALID_NAME';
  readonly retryable = false;
}
export class InvalidArgumentError extends WalError {
  readonly code = 'WAL_INVALID_ARGUMENT';
  readonly retryable = false;
}
export class EntryTooLargeError extends WalError {
  readonly code = 'WAL_ENTRY_TOO_LARGE';
  readonly retryable = false;
}
/** The handle (writer, reader, client) was closed; open a new one. */
export class ClosedError extends WalError {
  readonly code = 'WAL_CLOSED';
  readonly retryable = false;
}
/**
 * The writer hit a failure it cannot repair (for example storage stayed unavailable past the
 * retry budget). This append and every later pending append failed; their outcome is
 * indeterminate (an entry may or may not be in the log). Open a new writer to continue.
 */
export class WriterFailedError extends WalError {
  readonly code = 'WAL_WRITER_FAILED';
  readonly retryable = false;
}
/** The requested position lies before the log's truncation point. */
export class TruncatedError extends WalError {
  readonly code = 'WAL_TRUNCATED';
  readonly retryable = false;
}
/** Stored data failed its checksum or structure checks inside the committed range. */
export class CorruptDataError extends WalError {
  readonly code = 'WAL_CORRUPT';
  readonly retryable = false;
}
/** A concurrent metadata change won a compare-and-swap; re-read and try again. */
export class ConflictError extends WalError {
  readonly code = 'WAL_CONFLICT';
  readonly retryable = true;
}
/** Object storage or the disk failed transiently (timeout, throttling, 5xx, I/O error). */
export class StorageUnavailableError extends WalError {
  readonly code = 'WAL_STORAGE_UNAVAILABLE';
  readonly retryable = true;
}
/** Object storage refused the request for a reason a retry will not fix (auth, missing bucket). */
export class StorageRejectedError extends WalError {
  readonly code = 'WAL_STORAGE_REJECTED';
  readonly retryable = false;
}
/** The metadata store (etcd) could not be reached or timed out. */
export class MetadataUnavailableError extends WalError {
  readonly code = 'WAL_METADATA_UNAVAILABLE';
  readonly retryable = true;
}
/** The local disk is full. Free space; the writer fails its pending entries. */
export class DiskFullError extends WalError {
  readonly code = 'WAL_DISK_FULL';
  readonly retryable = true;
}
