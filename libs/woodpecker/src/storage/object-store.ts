/** Facts about one stored object. */
export interface ObjectInfo {
  key: string;
  sizeBytes: number;
  /** Unquoted ETag. */
  etag: string;
  /** User metadata (lower-case keys). Present on `head`; may be absent on `list`. */
  metadata?: Record<string, string>;
}

/** Outcome of a put. `exists` only when `ifNoneMatch` was asked and the key was taken. */
export type PutResult = { status: 'created'; etag: string } | { status: 'exists' };

export interface PutOptions {
  signal?: AbortSignal;
  /**
   * Create-if-absent (`If-None-Match: *`). Honoured only when `capabilities.conditionalWrites`
   * is true; on other stores the put overwrites and always reports `created`.
   */
  ifNoneMatch?: boolean;
  /** User metadata stored with the object (keys: lower-case ASCII). */
  metadata?: Record<string, string>;
}

/** A page of a listing, keys in ascending byte order. */
export interface ListPage {
  objects: ObjectInfo[];
  /** Pass as `continuationToken` for the next page; absent on the last page. */
  continuationToken?: string;
}

/**
 * The byte-oriented object storage port. Adapters map vendor errors to WalErrors at this
 * boundary: transient failures (throttling, 5xx, timeouts, connection errors) become
 * StorageUnavailableError and are NEVER reported as "not found"; auth and configuration
 * errors become StorageRejectedError. Expected outcomes (missing key, key taken) are
 * return values, not errors. Every call takes an AbortSignal and rejects with its reason.
 */
export interface ObjectStore {
  readonly capabilities: {
    /** Whether `ifNoneMatch` puts are enforced by the store (detected by a probe at open). */
    readonly conditionalWrites: boolean;
  };
  put(key: string, body: Uint8Array, options?: PutOptions): Promise<PutResult>;
  /**
   * The object's bytes, or `undefined` when the key does not exist. With `range`, the bytes
   * `[start, end)` (clamped to the object's size).
   */
  get(
    key: string,
    options?: { signal?: AbortSignal; range?: { start: number; end: number } },
  ): Promise<Uint8Array | undefined>;
  /** Size, ETag and metadata, or `undefined` when the key does not exist. */
  head(key: string, options?: { signal?: AbortSignal }): Promise<ObjectInfo | undefined>;
  /** One page of keys starting with `prefix`, ascending. `limit` default 1000 (max 1000). */
  list(
    prefix: string,
    options?: {
      signal?: AbortSignal;
      continuationToken?: string;
      startAfter?: string;
      limit?: number;
    },
  ): Promise<ListPage>;
  /** Deletes the keys (missing keys are not an error). Any number of keys; batched inside. */
  deleteMany(keys: readonly string[], options?: { signal?: AbortSignal }): Promise<void>;
  /** Releases connections. Calls after close reject with ClosedError. */
  close(): Promise<void>;
}
