/** One key with its value and etcd-style revisions. */
export interface KeyValue {
  key: string;
  value: Uint8Array;
  /** Store revision at which the key was created (since its last deletion). */
  createRevision: number;
  /** Store revision of the key's last change. */
  modRevision: number;
  /** Number of changes since creation (1 after the first put). */
  version: number;
  /** Lease the key is attached to, if any. */
  leaseId?: string;
}

/**
 * A condition of a transaction on one key's `modRevision`. `modRevision: 0` means "the key
 * does not exist", so `{ key, modRevision: 0 }` is create-if-absent.
 */
export interface Compare {
  key: string;
  modRevision: number;
}

/** A write inside a transaction. */
export type TxnOp =
  | { type: 'put'; key: string; value: Uint8Array; leaseId?: string }
  | { type: 'delete'; key: string }
  | { type: 'deletePrefix'; prefix: string };

/** Outcome of a transaction: `succeeded` false means a compare failed and nothing was written. */
export interface TxnResult {
  succeeded: boolean;
  /** Store revision after the transaction (the new one when it wrote). */
  revision: number;
}

/** One change seen by a watch. */
export type WatchEvent =
  | { type: 'put'; kv: KeyValue }
  | { type: 'delete'; key: string; modRevision: number }
  /**
   * The watch could not continue from where it was (history compacted, or reconnected):
   * `kvs` is the complete current state under the prefix; consumers replace what they knew.
   */
  | { type: 'reset'; kvs: KeyValue[]; revision: number };

/** A lease: keys attached to it vanish when it expires or is revoked. Kept alive automatically. */
export interface Lease {
  readonly id: string;
  readonly ttlMs: number;
  /** Resolves when the lease is lost (expired, revoked or keep-alive failed). Never rejects. */
  readonly lost: Promise<Error>;
  /** Revokes the lease now; its keys are deleted. Idempotent. */
  revoke(options?: { signal?: AbortSignal }): Promise<void>;
}

/**
 * The metadata port: a small, linearizable key-value store with revisions (etcd's model).
 * Adapters map failures to MetadataUnavailableError (retryable). Keys are strings; values are
 * bytes. Every call takes an AbortSignal.
 */
export interface MetadataStore {
  get(key: string, options?: { signal?: AbortSignal }): Promise<KeyValue | undefined>;
  /** Keys starting with `prefix`, ascending, with the store revision they were read at. `limit` 0 = all. */
  range(
    prefix: string,
    options?: { signal?: AbortSignal; limit?: number },
  ): Promise<{ kvs: KeyValue[]; revision: number }>;
  /** Applies `onSuccess` atomically iff every compare holds. */
  txn(
    compares: readonly Compare[],
    onSuccess: readonly TxnOp[],
    options?: { signal?: AbortSignal },
  ): Promise<TxnResult>;
  /** Grants a lease of `ttlMs` (min 1000) and keeps it alive until revoked or the store closes. */
  grantLease(ttlMs: number, options?: { signal?: AbortSignal }): Promise<Lease>;
  /**
   * Changes under `prefix` after `fromRevision` (exclusive; default: now), in revision order,
   * batched per revision. Survives compaction and reconnects by emitting a `reset` snapshot.
   * Ends when `signal` aborts or the store closes.
   */
  watch(
    prefix: string,
    options: { signal: AbortSignal; fromRevision?: number },
  ): AsyncIterable<WatchEvent[]>;
  /** Stops keep-alives and watches and releases connections. */
  close(): Promise<void>;
}
