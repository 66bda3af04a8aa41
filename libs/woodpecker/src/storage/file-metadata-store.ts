import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { open, readFile, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { abortable, assert } from '@woodstream/common';
import {
  ClosedError,
  CorruptDataError,
  InvalidArgumentError,
  MetadataUnavailableError,
  WalError,
} from '../errors.js';
import { crc32 } from '../format/crc32.js';
import type {
  Compare,
  KeyValue,
  Lease,
  MetadataStore,
  TxnOp,
  TxnResult,
  WatchEvent,
} from './metadata-store.js';

// ---------------------------------------------------------------------------------------------
// Limits and helpers shared by the metadata-store adapters (internal: not exported from the
// lib's index). They live here so that every adapter rejects the same inputs the same way.
// ---------------------------------------------------------------------------------------------

/** Most compares, and most ops, in one txn. etcd's default `--max-txn-ops` is 128. */
export const MAX_TXN_OPS = 128;
/** Most key and value bytes in one txn; etcd refuses requests over 1.5 MiB by default. */
export const MAX_TXN_BYTES = 1024 * 1024;
/** Longest key in UTF-8 bytes. */
export const MAX_KEY_BYTES = 4096;
/** Lease TTL bounds. etcd's minimum grant is 1 s; a day keeps a forgotten session finite. */
export const MIN_LEASE_TTL_MS = 1_000;
export const MAX_LEASE_TTL_MS = 24 * 60 * 60 * 1_000;
/** Default and maximum of `maxWatchQueueBatches`. */
export const DEFAULT_WATCH_QUEUE_BATCHES = 1024;
export const MAX_WATCH_QUEUE_BATCHES = 65_536;

/** Applies the default and the bounds of a watch queue size option. */
export function resolveWatchQueueBatches(value: number | undefined): number {
  const n = value ?? DEFAULT_WATCH_QUEUE_BATCHES;
  if (!Number.isSafeInteger(n) || n < 1 || n > MAX_WATCH_QUEUE_BATCHES) {
    throw new InvalidArgumentError(
      `maxWatchQueueBatches must be an integer in [1, ${MAX_WATCH_QUEUE_BATCHES}], got ${n}`,
    );
  }
  return n;
}

/** Throws InvalidArgumentError unless `key` is a non-empty string of at most MAX_KEY_BYTES. */
export function validateKey(key: unknown): asserts key is string {
  if (typeof key !== 'string' || key.length === 0) {
    throw new InvalidArgumentError('a metadata key must be a non-empty string');
  }
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) {
    throw new InvalidArgumentError(`a metadata key is longer than ${MAX_KEY_BYTES} bytes`);
  }
}

/** Throws InvalidArgumentError unless `prefix` is a string (empty means every key). */
export function validatePrefix(prefix: unknown): asserts prefix is string {
  if (typeof prefix !== 'string' || Buffer.byteLength(prefix) > MAX_KEY_BYTES) {
    throw new InvalidArgumentError(
      `a metadata prefix must be a string of at most ${MAX_KEY_BYTES} bytes`,
    );
  }
}

/** Throws InvalidArgumentError unless `limit` is undefined or an integer >= 0. */
export function validateLimit(limit: unknown): void {
  if (
    limit !== undefined &&
    (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 0)
  ) {
    throw new InvalidArgumentError(
      `range limit must be an integer >= 0, got ${typeof limit === 'number' ? limit : typeof limit}`,
    );
  }
}

/** Throws InvalidArgumentError unless `ttlMs` is an integer in [MIN_LEASE_TTL_MS, MAX_LEASE_TTL_MS]. */
export function validateLeaseTtl(ttlMs: unknown): asserts ttlMs is number {
  if (
    typeof ttlMs !== 'number' ||
    !Number.isSafeInteger(ttlMs) ||
    ttlMs < MIN_LEASE_TTL_MS ||
    ttlMs > MAX_LEASE_TTL_MS
  ) {
    throw new InvalidArgumentError(
      `lease ttlMs must be an integer in [${MIN_LEASE_TTL_MS}, ${MAX_LEASE_TTL_MS}], got ${String(ttlMs)}`,
    );
  }
}

/**
 * Checks a txn the way etcd does, so that every adapter fails the same inputs: at most
 * MAX_TXN_OPS compares and ops, at most MAX_TXN_BYTES of keys and values, no key put twice and
 * no key both put and deleted (etcd: "duplicate key given in txn request").
 */
export function validateTxn(compares: readonly Compare[], ops: readonly TxnOp[]): void {
  if (compares.length > MAX_TXN_OPS || ops.length > MAX_TXN_OPS) {
    throw new InvalidArgumentError(
      `a txn takes at most ${MAX_TXN_OPS} compares and ${MAX_TXN_OPS} ops`,
    );
  }
  for (const c of compares) {
    validateKey(c.key);
    if (!Number.isSafeInteger(c.modRevision) || c.modRevision < 0) {
      throw new InvalidArgumentError(
        `compare modRevision must be an integer >= 0, got ${c.modRevision}`,
      );
    }
  }
  const puts = new Set<string>();
  const deletedKeys = new Set<string>();
  const deletedPrefixes: string[] = [];
  let bytes = 0;
  for (const op of ops) {
    switch (op.type) {
      case 'put':
        validateKey(op.key);
        if (!(op.value instanceof Uint8Array)) {
          throw new InvalidArgumentError(`the value of ${op.key} must be a Uint8Array`);
        }
        if (op.leaseId !== undefined && (typeof op.leaseId !== 'string' || op.leaseId === '')) {
          throw new InvalidArgumentError(`the leaseId of ${op.key} must be a non-empty string`);
        }
        if (puts.has(op.key)) throw new InvalidArgumentError(`txn puts ${op.key} twice`);
        puts.add(op.key);
        bytes += Buffer.byteLength(op.key) + op.value.byteLength;
        break;
      case 'delete':
        validateKey(op.key);
        deletedKeys.add(op.key);
        bytes += Buffer.byteLength(op.key);
        break;
      case 'deletePrefix':
        validatePrefix(op.prefix);
        deletedPrefixes.push(op.prefix);
        bytes += Buffer.byteLength(op.prefix);
        break;
      default:
        throw new InvalidArgumentError(
          `unknown txn op ${(op as { type: unknown }).type as string}`,
        );
    }
  }
  for (const key of puts) {
    if (deletedKeys.has(key) || deletedPrefixes.some((p) => key.startsWith(p))) {
      throw new InvalidArgumentError(`txn both puts and deletes ${key}`);
    }
  }
  if (bytes > MAX_TXN_BYTES) {
    throw new InvalidArgumentError(`txn carries ${bytes} bytes, more than ${MAX_TXN_BYTES}`);
  }
}

/**
 * Orders keys by UTF-8 bytes, as etcd does. That is code point order, which differs from JS
 * string order (UTF-16 code units) only when a surrogate pair meets a code unit >= 0xE000.
 */
export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    const xSurrogate = x >= 0xd800 && x <= 0xdfff;
    const ySurrogate = y >= 0xd800 && y <= 0xdfff;
    if (xSurrogate !== ySurrogate && (x >= 0xe000 || y >= 0xe000)) return xSurrogate ? 1 : -1;
    return x - y;
  }
  return a.length - b.length;
}

/** A copy the caller may keep or change without touching the store's state. */
export function cloneKv(kv: KeyValue): KeyValue {
  return { ...kv, value: Uint8Array.from(kv.value) };
}

/** Runs `fn` now and returns its result or its throw as a settled promise. */
function settle<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new Error(String(err)));
  }
}

function deferred<T>(): {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (err: Error) => void;
} {
  let resolve!: (value: T) => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/**
 * The consumer side of one watch: a bounded FIFO of batches and the AsyncIterable the caller
 * loops over. The adapter pushes batches; when the consumer is `maxBatches` behind, `push`
 * refuses and the adapter replaces the backlog with one `reset` snapshot, so memory stays
 * bounded and the consumer still ends up with the right state.
 *
 * The channel ends (once) on `end()`, on `return()` (a `break` out of `for await`), or when
 * `signal` aborts; `onEnd` then runs so the adapter releases the underlying watch. Ending with
 * an error makes the next `next()` reject with it; otherwise iteration just finishes. Queued
 * batches are dropped on end: the consumer has left, or must re-watch anyway.
 * @internal shared by the metadata-store adapters
 */
export class WatchChannel implements AsyncIterable<WatchEvent[]> {
  // Invariant: batches.length <= maxBatches, and batches is empty once ended.
  private readonly batches: WatchEvent[][] = [];
  private waiter: ReturnType<typeof deferred<IteratorResult<WatchEvent[]>>> | undefined;
  private ended = false;
  private failure: Error | undefined;
  private isIterated = false;
  private readonly onAbort = (): void => this.end();

  constructor(
    private readonly maxBatches: number,
    private readonly signal: AbortSignal,
    private readonly onEnd: () => void,
  ) {
    assert(maxBatches >= 1, 'a watch queue holds at least one batch');
    if (signal.aborted) {
      this.ended = true;
    } else {
      signal.addEventListener('abort', this.onAbort, { once: true });
    }
  }

  get isEnded(): boolean {
    return this.ended;
  }

  /** Appends `batch`. Returns false, keeping nothing, when the backlog is full. */
  push(batch: WatchEvent[]): boolean {
    if (this.ended) return true;
    if (this.waiter !== undefined) {
      const waiter = this.waiter;
      this.waiter = undefined;
      waiter.resolve({ done: false, value: batch });
      return true;
    }
    if (this.batches.length >= this.maxBatches) return false;
    this.batches.push(batch);
    return true;
  }

  /** Drops the backlog (the adapter sends a reset once it has one). */
  dropBacklog(): void {
    this.batches.length = 0;
  }

  /** Drops the backlog and queues `batch` (a reset) as the only batch. */
  replaceBacklog(batch: WatchEvent[]): void {
    this.batches.length = 0;
    const isPushed = this.push(batch);
    assert(isPushed, 'an empty watch queue accepts a batch');
  }

  /** Ends the watch; with `error`, the consumer's next `next()` rejects with it. Idempotent. */
  end(error?: Error): void {
    if (this.ended) return;
    this.ended = true;
    this.batches.length = 0;
    this.signal.removeEventListener('abort', this.onAbort);
    const waiter = this.waiter;
    this.waiter = undefined;
    if (waiter !== undefined) {
      if (error === undefined) waiter.resolve({ done: true, value: undefined });
      else waiter.reject(error);
    } else {
      this.failure = error;
    }
    this.onEnd();
  }

  [Symbol.asyncIterator](): AsyncIterator<WatchEvent[]> {
    // One consumer per watch: a second loop would silently steal half the batches.
    if (this.isIterated) throw new InvalidArgumentError('a watch can be iterated only once');
    this.isIterated = true;
    return {
      next: () => this.next(),
      return: () => {
        this.end();
        return Promise.resolve({ done: true, value: undefined });
      },
    };
  }

  private next(): Promise<IteratorResult<WatchEvent[]>> {
    const batch = this.batches.shift();
    if (batch !== undefined) return Promise.resolve({ done: false, value: batch });
    if (this.ended) {
      const failure = this.failure;
      this.failure = undefined;
      return failure === undefined
        ? Promise.resolve({ done: true, value: undefined })
        : Promise.reject(failure);
    }
    assert(this.waiter === undefined, 'a watch has one consumer calling next() at a time');
    this.waiter = deferred<IteratorResult<WatchEvent[]>>();
    return this.waiter.promise;
  }
}

/** The events of `batch` under `prefix`, in their order. */
export function eventsUnder(prefix: string, batch: readonly WatchEvent[]): WatchEvent[] {
  return batch.filter((e) => {
    switch (e.type) {
      case 'put':
        return e.kv.key.startsWith(prefix);
      case 'delete':
        return e.key.startsWith(prefix);
      case 'reset':
        return true;
    }
  });
}

// ---------------------------------------------------------------------------------------------
// FileMetadataStore
// ---------------------------------------------------------------------------------------------

/** Options of {@link FileMetadataStore.open}. */
export interface FileMetadataStoreOptions {
  /** File to persist to; its directory must exist. `undefined` keeps everything in memory. */
  path?: string;
  signal?: AbortSignal;
  /**
   * Rewrite the log as one snapshot when it grows past this (and past twice the last
   * snapshot, so a large state is not rewritten after every txn). @default 16 MiB
   * (min 4 KiB, max 1 GiB)
   */
  compactAfterBytes?: number;
  /** Batches a watch buffers before its backlog is replaced by a reset. @default 1024 (max 65536) */
  maxWatchQueueBatches?: number;
  /**
   * Revisions kept in memory so a watch can start from an older revision; older starts get a
   * reset. History does not survive a reopen. @default 10000 (max 1000000)
   */
  maxHistoryRevisions?: number;
}

const MIB = 1024 * 1024;
const DEFAULT_COMPACT_AFTER_BYTES = 16 * MIB;
const MIN_COMPACT_AFTER_BYTES = 4096;
const MAX_COMPACT_AFTER_BYTES = 1024 * MIB;
const DEFAULT_HISTORY_REVISIONS = 10_000;
const MAX_HISTORY_REVISIONS = 1_000_000;
/** Txns accepted but not yet durable; more wait for the running flush (backpressure). */
const MAX_PENDING_TXNS = 4096;
/** Bytes written per group commit; the rest goes in the next write. */
const MAX_GROUP_COMMIT_BYTES = 8 * MIB;
/** A record header claiming more than this is garbage, not a record (bounds the allocation). */
const MAX_RECORD_BYTES = 1024 * MIB;
/** An empty lock file older than this was left by a process that died while taking the lock. */
const STALE_EMPTY_LOCK_MS = 10_000;

/** File header: format name and version. A new format gets a new magic. */
const MAGIC = Buffer.from('WPMETA01', 'latin1');
/** Record header: u32le payload length, u32le CRC-32 of the payload. */
const RECORD_HEADER_BYTES = 8;

/**
 * One logged change set, JSON. A `txn` carries the full resulting key-values, so replay needs
 * no recomputation; a `snap` is the whole state at revision `r` and starts a compacted log.
 *   put:    ['p', key, valueBase64, createRevision, version, leaseId?]   (modRevision = r)
 *   delete: ['d', key]
 */
type LoggedEvent = ['p', string, string, number, number, string?] | ['d', string];
type LogRecord =
  | { t: 'txn'; r: number; e: LoggedEvent[] }
  | { t: 'snap'; r: number; k: [string, string, number, number, number, string?][] };

/** A txn applied to the head state, waiting for its record to be durable. */
interface PendingTxn {
  revision: number;
  events: WatchEvent[];
  record: Buffer | undefined;
  done: ReturnType<typeof deferred<void>>;
}

interface FileWatcher {
  prefix: string;
  /** Revisions up to and including this one are not delivered (`fromRevision`). */
  skipThroughRevision: number;
  channel: WatchChannel;
}

type StoreState = 'open' | 'closing' | 'closed' | 'failed';

/**
 * A MetadataStore for embedded, single-process use, with etcd's revision model: one global
 * revision counter; a key's createRevision, modRevision and version; a deleted then re-created
 * key starts again at version 1 with a new createRevision. An empty store is at revision 1.
 *
 * Durability: each committed txn is one length-prefixed, CRC-32 checked record appended to the
 * file and fdatasync'ed before the txn resolves; concurrent txns share one fdatasync (group
 * commit). Reads and watches see only durable state, so nothing observed can vanish in a
 * crash. On open the log is replayed and a torn or corrupt tail is truncated away. When the
 * log grows past `compactAfterBytes` it is rewritten as one snapshot (temp file, fsync,
 * rename, fsync of the directory).
 *
 * Leases live in this process and are kept alive while the store is open; they end on revoke
 * or close. They do not survive a reopen: keys attached to a lease are deleted on open, like
 * an expired session.
 *
 * A `<path>.lock` file holding the pid keeps a second process (or a second open in this
 * process) from using the same file. If a write or fsync fails the store is failed for good
 * (the page cache can no longer be trusted): every call rejects with MetadataUnavailableError
 * and the store must be reopened.
 */
export class FileMetadataStore implements MetadataStore {
  private state: StoreState = 'open';
  private failure: MetadataUnavailableError | undefined;
  private closing: Promise<void> | undefined;

  // The head state has every accepted txn applied; compares are evaluated against it.
  // Invariant: headRevision >= durableRevision, and headRevision === durableRevision iff
  // pending is empty and no flush is writing.
  private readonly head = new Map<string, KeyValue>();
  private headRevision: number;
  // The durable state has every txn whose record is on disk; reads and watches use it.
  private readonly durable = new Map<string, KeyValue>();
  private durableRevision: number;

  // Invariant: ascending revisions, all > durableRevision and <= headRevision.
  private pending: PendingTxn[] = [];
  // The txns the running flush is writing (ascending, right after durableRevision).
  private inFlight: PendingTxn[] = [];
  private flushing: Promise<void> | undefined;

  // Invariant: history holds every revision in (historyStartRevision, durableRevision], ascending.
  private readonly history: { revision: number; events: WatchEvent[] }[] = [];
  private historyStartRevision: number;

  private readonly watchers = new Set<FileWatcher>();
  /** Live leases by id, with the keys attached to each in the head state. */
  private readonly leases = new Map<string, FileLease>();
  private readonly leaseKeys = new Map<string, Set<string>>();

  private constructor(
    private readonly log: MetadataLog | undefined,
    initial: { revision: number; kvs: KeyValue[] },
    private readonly compactAfterBytes: number,
    private readonly maxWatchQueueBatches: number,
    private readonly maxHistoryRevisions: number,
  ) {
    this.headRevision = initial.revision;
    this.durableRevision = initial.revision;
    this.historyStartRevision = initial.revision;
    for (const kv of initial.kvs) {
      this.head.set(kv.key, kv);
      this.durable.set(kv.key, kv);
    }
  }

  /**
   * Opens (creating if needed) the store at `options.path`, or an in-memory store. Rejects
   * with MetadataUnavailableError when the file is locked by a live process or cannot be
   * read or written, InvalidArgumentError on bad options, `signal.reason` when aborted.
   */
  static async open(options: FileMetadataStoreOptions = {}): Promise<FileMetadataStore> {
    const { path, signal } = options;
    signal?.throwIfAborted();
    const compactAfterBytes = options.compactAfterBytes ?? DEFAULT_COMPACT_AFTER_BYTES;
    if (
      !Number.isSafeInteger(compactAfterBytes) ||
      compactAfterBytes < MIN_COMPACT_AFTER_BYTES ||
      compactAfterBytes > MAX_COMPACT_AFTER_BYTES
    ) {
      throw new InvalidArgumentError(
        `compactAfterBytes must be an integer in [${MIN_COMPACT_AFTER_BYTES}, ${MAX_COMPACT_AFTER_BYTES}]`,
      );
    }
    const maxWatchQueueBatches = resolveWatchQueueBatches(options.maxWatchQueueBatches);
    const maxHistoryRevisions = options.maxHistoryRevisions ?? DEFAULT_HISTORY_REVISIONS;
    if (
      !Number.isSafeInteger(maxHistoryRevisions) ||
      maxHistoryRevisions < 0 ||
      maxHistoryRevisions > MAX_HISTORY_REVISIONS
    ) {
      throw new InvalidArgumentError(
        `maxHistoryRevisions must be an integer in [0, ${MAX_HISTORY_REVISIONS}]`,
      );
    }
    if (path === undefined) {
      return new FileMetadataStore(
        undefined,
        { revision: 1, kvs: [] },
        compactAfterBytes,
        maxWatchQueueBatches,
        maxHistoryRevisions,
      );
    }
    if (typeof path !== 'string' || path === '') {
      throw new InvalidArgumentError('path must be a non-empty string');
    }
    // Not raced against the signal: an abandoned open would keep the lock. Checked after.
    const { log, revision, kvs } = await MetadataLog.open(path);
    const store = new FileMetadataStore(
      log,
      { revision, kvs },
      compactAfterBytes,
      maxWatchQueueBatches,
      maxHistoryRevisions,
    );
    try {
      // Leases died with the process that held them: end their sessions now.
      const leased = kvs.filter((kv) => kv.leaseId !== undefined);
      if (leased.length > 0) {
        const events = store.applyToHead(leased.map((kv) => ({ type: 'delete', key: kv.key })));
        await store.enqueue(events);
      }
      signal?.throwIfAborted();
    } catch (err) {
      await store.close();
      throw err;
    }
    return store;
  }

  get(key: string, options?: { signal?: AbortSignal }): Promise<KeyValue | undefined> {
    return settle(() => {
      this.checkUsable();
      options?.signal?.throwIfAborted();
      validateKey(key);
      const kv = this.durable.get(key);
      return kv === undefined ? undefined : cloneKv(kv);
    });
  }

  range(
    prefix: string,
    options?: { signal?: AbortSignal; limit?: number },
  ): Promise<{ kvs: KeyValue[]; revision: number }> {
    return settle(() => {
      this.checkUsable();
      options?.signal?.throwIfAborted();
      validatePrefix(prefix);
      validateLimit(options?.limit);
      const kvs = this.snapshotUnder(prefix);
      const limit = options?.limit ?? 0;
      return { kvs: limit > 0 ? kvs.slice(0, limit) : kvs, revision: this.durableRevision };
    });
  }

  /**
   * Applies `onSuccess` atomically iff every compare holds against all txns accepted before
   * it. Resolves once the txn is durable. A txn that changes nothing (a failed compare, or
   * deletes of missing keys) takes no new revision. Rejects with InvalidArgumentError (bad
   * input, unknown lease), ClosedError, MetadataUnavailableError (the log write failed: the
   * outcome is unknown), or `signal.reason` — an aborted txn may still commit.
   */
  async txn(
    compares: readonly Compare[],
    onSuccess: readonly TxnOp[],
    options?: { signal?: AbortSignal },
  ): Promise<TxnResult> {
    this.checkUsable();
    options?.signal?.throwIfAborted();
    validateTxn(compares, onSuccess);
    return abortable(this.commit(compares, onSuccess), options?.signal);
  }

  /**
   * Grants a lease that lives until revoked or until the store closes (keep-alive is
   * implicit: lease and store share this process). `ttlMs` is validated like etcd's.
   */
  grantLease(ttlMs: number, options?: { signal?: AbortSignal }): Promise<Lease> {
    return settle(() => {
      this.checkUsable();
      options?.signal?.throwIfAborted();
      validateLeaseTtl(ttlMs);
      const lease = new FileLease(randomBytes(8).toString('hex'), ttlMs, this);
      this.leases.set(lease.id, lease);
      this.leaseKeys.set(lease.id, new Set());
      return lease;
    });
  }

  watch(
    prefix: string,
    options: { signal: AbortSignal; fromRevision?: number },
  ): AsyncIterable<WatchEvent[]> {
    const watcher: FileWatcher = {
      prefix,
      skipThroughRevision: this.durableRevision,
      channel: new WatchChannel(this.maxWatchQueueBatches, options.signal, () => {
        this.watchers.delete(watcher);
      }),
    };
    try {
      this.checkUsable();
      validatePrefix(prefix);
      const from = options.fromRevision;
      if (from !== undefined && (!Number.isSafeInteger(from) || from < 0)) {
        throw new InvalidArgumentError(`fromRevision must be an integer >= 0, got ${from}`);
      }
      if (watcher.channel.isEnded) return watcher.channel;
      if (from !== undefined && from < this.durableRevision) {
        if (from < this.historyStartRevision) {
          // The revisions after `from` are no longer kept: start from a snapshot instead.
          watcher.channel.push([this.resetUnder(prefix)]);
        } else {
          watcher.skipThroughRevision = from;
          for (const entry of this.history) this.deliver(watcher, entry.revision, entry.events);
          watcher.skipThroughRevision = this.durableRevision;
        }
      } else if (from !== undefined) {
        watcher.skipThroughRevision = from;
      }
      this.watchers.add(watcher);
    } catch (err) {
      watcher.channel.end(err as Error);
    }
    return watcher.channel;
  }

  /**
   * Waits for accepted txns to become durable, ends watches and leases, closes the file and
   * removes the lock. Idempotent; later calls reject with ClosedError.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    if (this.state === 'open') this.state = 'closing';
    for (const watcher of [...this.watchers]) watcher.channel.end();
    const closed = new ClosedError('metadata store closed');
    for (const lease of this.leases.values()) lease.markLost(closed);
    this.leases.clear();
    // Txns already accepted finish (or fail) before the file goes away.
    while (this.flushing !== undefined) await this.flushing;
    if (this.state === 'closing') this.state = 'closed';
    await this.log?.close();
  }

  /** Ends a lease: deletes its keys in one txn. Used by FileLease.revoke. */
  async revokeLease(id: string): Promise<void> {
    this.checkUsable();
    await this.admit();
    this.checkUsable();
    const keys = this.leaseKeys.get(id) ?? new Set<string>();
    this.leases.delete(id);
    this.leaseKeys.delete(id);
    const events = this.applyToHead([...keys].map((key) => ({ type: 'delete', key })));
    await (events.length > 0 ? this.enqueue(events) : this.durableAtHead());
  }

  private checkUsable(): void {
    if (this.state === 'failed') {
      assert(this.failure !== undefined, 'a failed store has a failure');
      throw this.failure;
    }
    if (this.state !== 'open') throw new ClosedError('metadata store closed');
  }

  private async commit(compares: readonly Compare[], ops: readonly TxnOp[]): Promise<TxnResult> {
    await this.admit();
    this.checkUsable();
    // From here to enqueue() nothing awaits, so compares and writes are one atomic step.
    const holds = compares.every((c) => (this.head.get(c.key)?.modRevision ?? 0) === c.modRevision);
    if (!holds) {
      const revision = this.headRevision;
      await this.durableAtHead();
      return { succeeded: false, revision };
    }
    for (const op of ops) {
      if (op.type === 'put' && op.leaseId !== undefined && !this.leases.has(op.leaseId)) {
        throw new InvalidArgumentError(`lease ${op.leaseId} not found (expired or revoked)`);
      }
    }
    const events = this.applyToHead(ops);
    if (events.length === 0) {
      const revision = this.headRevision;
      await this.durableAtHead();
      return { succeeded: true, revision };
    }
    const revision = this.headRevision;
    await this.enqueue(events);
    return { succeeded: true, revision };
  }

  /** Waits while too many txns are pending, so a burst cannot grow memory without bound. */
  private async admit(): Promise<void> {
    while (this.pending.length >= MAX_PENDING_TXNS && this.flushing !== undefined) {
      await this.flushing.catch(() => undefined);
    }
  }

  /** Resolves once everything accepted so far is durable. */
  private durableAtHead(): Promise<void> {
    const last = this.pending.at(-1) ?? this.inFlight.at(-1);
    return last === undefined ? Promise.resolve() : last.done.promise;
  }

  /**
   * Applies `ops` to the head state at the next revision, without awaiting. Returns the
   * events; none (and no new revision) when nothing changed, as in etcd.
   */
  private applyToHead(ops: readonly TxnOp[]): WatchEvent[] {
    const revision = this.headRevision + 1;
    const events: WatchEvent[] = [];
    const detach = (kv: KeyValue | undefined): void => {
      if (kv?.leaseId !== undefined) this.leaseKeys.get(kv.leaseId)?.delete(kv.key);
    };
    const remove = (key: string): void => {
      const kv = this.head.get(key);
      if (kv === undefined) return;
      detach(kv);
      this.head.delete(key);
      events.push({ type: 'delete', key, modRevision: revision });
    };
    for (const op of ops) {
      switch (op.type) {
        case 'put': {
          const previous = this.head.get(op.key);
          detach(previous);
          const kv: KeyValue = {
            key: op.key,
            // Copied: the caller may reuse its buffer after the txn.
            value: Uint8Array.from(op.value),
            createRevision: previous?.createRevision ?? revision,
            modRevision: revision,
            version: (previous?.version ?? 0) + 1,
          };
          if (op.leaseId !== undefined) {
            kv.leaseId = op.leaseId;
            this.leaseKeys.get(op.leaseId)?.add(op.key);
          }
          this.head.set(op.key, kv);
          events.push({ type: 'put', kv });
          break;
        }
        case 'delete':
          remove(op.key);
          break;
        case 'deletePrefix':
          for (const key of [...this.head.keys()]
            .filter((k) => k.startsWith(op.prefix))
            .sort(compareKeys)) {
            remove(key);
          }
          break;
      }
    }
    if (events.length > 0) this.headRevision = revision;
    return events;
  }

  /** Queues the events of the head's newest revision for the log; resolves when durable. */
  private enqueue(events: WatchEvent[]): Promise<void> {
    const entry: PendingTxn = {
      revision: this.headRevision,
      events,
      record:
        this.log === undefined ? undefined : encodeRecord(txnRecord(this.headRevision, events)),
      done: deferred<void>(),
    };
    // Someone always awaits `done`; this only keeps a failure from counting as unhandled.
    entry.done.promise.catch(() => undefined);
    this.pending.push(entry);
    this.flushing ??= this.flush();
    return entry.done.promise;
  }

  /** Writes pending records in groups, one fdatasync each, until nothing is pending. */
  private async flush(): Promise<void> {
    // Yield first: txns issued in the same tick join this group, and `this.flushing` is set
    // before the loop can end (the `finally` below must run after that assignment).
    await Promise.resolve();
    try {
      await this.flushPending();
    } finally {
      this.flushing = undefined;
      // A txn enqueued by a callback of the last group, after the loop's last check of
      // `pending` but before this line ran (the await above resumes a few microtasks later),
      // found `flushing` still set and left its write to us: start another round for it.
      if (this.pending.length > 0 && this.state !== 'failed') this.flushing = this.flush();
    }
  }

  private async flushPending(): Promise<void> {
    while (this.pending.length > 0) {
      let bytes = 0;
      let count = 0;
      for (const entry of this.pending) {
        if (count > 0 && bytes + (entry.record?.length ?? 0) > MAX_GROUP_COMMIT_BYTES) break;
        bytes += entry.record?.length ?? 0;
        count++;
      }
      this.inFlight = this.pending.splice(0, count);
      try {
        if (this.log !== undefined) {
          await this.log.append(this.inFlight.map((e) => e.record).filter((r) => r !== undefined));
        }
      } catch (err) {
        this.fail(err);
        return;
      }
      const group = this.inFlight;
      this.inFlight = [];
      for (const entry of group) this.makeDurable(entry);
      for (const entry of group) entry.done.resolve();
      if (this.log !== undefined && this.log.shouldCompact(this.compactAfterBytes)) {
        try {
          await this.log.rewrite(encodeRecord(this.snapshotRecord()));
        } catch (err) {
          this.fail(err);
          return;
        }
      }
    }
  }

  private makeDurable(entry: PendingTxn): void {
    assert(entry.revision > this.durableRevision, 'txns become durable in revision order');
    for (const event of entry.events) {
      if (event.type === 'put') this.durable.set(event.kv.key, event.kv);
      else if (event.type === 'delete') this.durable.delete(event.key);
    }
    this.durableRevision = entry.revision;
    this.history.push({ revision: entry.revision, events: entry.events });
    while (this.history.length > this.maxHistoryRevisions) {
      const dropped = this.history.shift();
      assert(dropped !== undefined, 'history is not empty while over its bound');
      this.historyStartRevision = dropped.revision;
    }
    if (this.maxHistoryRevisions === 0) this.historyStartRevision = entry.revision;
    for (const watcher of this.watchers) this.deliver(watcher, entry.revision, entry.events);
  }

  private deliver(watcher: FileWatcher, revision: number, events: readonly WatchEvent[]): void {
    if (revision <= watcher.skipThroughRevision) return;
    const batch = eventsUnder(watcher.prefix, events).map((e) =>
      e.type === 'put' ? { type: 'put' as const, kv: cloneKv(e.kv) } : e,
    );
    if (batch.length === 0) return;
    // A consumer this far behind gets the current state instead of the backlog.
    if (!watcher.channel.push(batch)) {
      watcher.channel.replaceBacklog([this.resetUnder(watcher.prefix)]);
      // The reset covers every revision up to the durable one.
      watcher.skipThroughRevision = this.durableRevision;
    }
  }

  private fail(err: unknown): void {
    const failure = new MetadataUnavailableError(
      'metadata log write failed; the outcome of pending txns is unknown, reopen the store',
      { cause: err },
    );
    this.failure = failure;
    if (this.state === 'open' || this.state === 'closing') this.state = 'failed';
    for (const entry of [...this.inFlight, ...this.pending]) entry.done.reject(failure);
    this.inFlight = [];
    this.pending = [];
    for (const watcher of [...this.watchers]) watcher.channel.end(failure);
    for (const lease of this.leases.values()) lease.markLost(failure);
    this.leases.clear();
  }

  private snapshotUnder(prefix: string): KeyValue[] {
    const kvs: KeyValue[] = [];
    for (const [key, kv] of this.durable) if (key.startsWith(prefix)) kvs.push(cloneKv(kv));
    return kvs.sort((a, b) => compareKeys(a.key, b.key));
  }

  private resetUnder(prefix: string): WatchEvent {
    return { type: 'reset', kvs: this.snapshotUnder(prefix), revision: this.durableRevision };
  }

  private snapshotRecord(): LogRecord {
    const k: [string, string, number, number, number, string?][] = [];
    for (const kv of this.durable.values()) {
      const row: [string, string, number, number, number, string?] = [
        kv.key,
        Buffer.from(kv.value).toString('base64'),
        kv.createRevision,
        kv.modRevision,
        kv.version,
      ];
      if (kv.leaseId !== undefined) row.push(kv.leaseId);
      k.push(row);
    }
    return { t: 'snap', r: this.durableRevision, k };
  }
}

/** A lease of a FileMetadataStore. */
class FileLease implements Lease {
  readonly lost: Promise<Error>;
  private resolveLost!: (err: Error) => void;
  private isLost = false;
  private revoking: Promise<void> | undefined;

  constructor(
    readonly id: string,
    readonly ttlMs: number,
    private readonly store: FileMetadataStore,
  ) {
    this.lost = new Promise<Error>((resolve) => {
      this.resolveLost = resolve;
    });
  }

  markLost(err: Error): void {
    if (this.isLost) return;
    this.isLost = true;
    this.resolveLost(err);
  }

  revoke(options?: { signal?: AbortSignal }): Promise<void> {
    if (this.revoking === undefined) {
      const revoking = this.store.revokeLease(this.id);
      this.revoking = revoking;
      this.markLost(new Error(`lease ${this.id} revoked`));
      // A failed revoke may be retried.
      revoking.catch(() => {
        if (this.revoking === revoking) this.revoking = undefined;
      });
    }
    return abortable(this.revoking, options?.signal);
  }
}

function txnRecord(revision: number, events: readonly WatchEvent[]): LogRecord {
  const e: LoggedEvent[] = [];
  for (const event of events) {
    switch (event.type) {
      case 'put': {
        const { kv } = event;
        const put: LoggedEvent = [
          'p',
          kv.key,
          Buffer.from(kv.value).toString('base64'),
          kv.createRevision,
          kv.version,
        ];
        if (kv.leaseId !== undefined) put.push(kv.leaseId);
        e.push(put);
        break;
      }
      case 'delete':
        e.push(['d', event.key]);
        break;
      case 'reset':
        assert(false, 'a txn produces no reset events');
    }
  }
  return { t: 'txn', r: revision, e };
}

function encodeRecord(record: LogRecord): Buffer {
  const payload = Buffer.from(JSON.stringify(record), 'utf8');
  const out = Buffer.allocUnsafe(RECORD_HEADER_BYTES + payload.length);
  out.writeUInt32LE(payload.length, 0);
  assert(payload.length <= MAX_RECORD_BYTES, 'a record fits the size replay accepts');
  out.writeUInt32LE(crc32(payload), 4);
  payload.copy(out, RECORD_HEADER_BYTES);
  return out;
}

/** The record at `offset`, or undefined when it is torn or corrupt. */
function decodeRecordAt(
  buf: Buffer,
  offset: number,
): { record: LogRecord; next: number } | undefined {
  if (buf.length - offset < RECORD_HEADER_BYTES) return undefined;
  const length = buf.readUInt32LE(offset);
  const checksum = buf.readUInt32LE(offset + 4);
  const start = offset + RECORD_HEADER_BYTES;
  if (length > MAX_RECORD_BYTES || buf.length - start < length) return undefined;
  const payload = buf.subarray(start, start + length);
  if (crc32(payload) !== checksum) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(payload.toString('utf8'));
  } catch {
    return undefined;
  }
  if (!isLogRecord(parsed)) return undefined;
  return { record: parsed, next: start + length };
}

function isLogRecord(x: unknown): x is LogRecord {
  if (typeof x !== 'object' || x === null) return false;
  const r = x as { t?: unknown; r?: unknown; e?: unknown; k?: unknown };
  if (!Number.isSafeInteger(r.r)) return false;
  return (r.t === 'txn' && Array.isArray(r.e)) || (r.t === 'snap' && Array.isArray(r.k));
}

function isNodeError(err: unknown, code: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code;
}

/** Fsyncs a directory so a rename or a new entry in it survives a crash. */
async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, fsConstants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * The append-only file behind a FileMetadataStore, and its lock. Not safe for concurrent
 * appends: the store's flush loop is its only writer.
 */
class MetadataLog {
  private constructor(
    private readonly path: string,
    private readonly lockPath: string,
    private handle: FileHandle,
    // Invariant: sizeBytes is the file's length; every byte is a whole, valid record.
    private sizeBytes: number,
    private snapshotBytes: number,
  ) {}

  /** Locks, replays and (if needed) creates or repairs the log at `path`. */
  static async open(
    path: string,
  ): Promise<{ log: MetadataLog; revision: number; kvs: KeyValue[] }> {
    const lockPath = `${path}.lock`;
    await acquireLock(path, lockPath);
    try {
      const replayed = await replay(path);
      const handle = await open(path, 'a');
      const log = new MetadataLog(
        path,
        lockPath,
        handle,
        replayed.sizeBytes,
        replayed.snapshotBytes,
      );
      return { log, revision: replayed.revision, kvs: [...replayed.kvs.values()] };
    } catch (err) {
      await releaseLock(lockPath);
      if (err instanceof WalError) throw err;
      throw new MetadataUnavailableError(`cannot open metadata log ${path}`, { cause: err });
    }
  }

  /** Appends `records` and fdatasyncs them. */
  async append(records: Buffer[]): Promise<void> {
    if (records.length === 0) return;
    const buf = records.length === 1 ? records[0]! : Buffer.concat(records);
    let written = 0;
    while (written < buf.length) {
      const { bytesWritten } = await this.handle.write(buf, written, buf.length - written);
      written += bytesWritten;
    }
    await this.handle.datasync();
    this.sizeBytes += buf.length;
  }

  shouldCompact(compactAfterBytes: number): boolean {
    return this.sizeBytes > compactAfterBytes && this.sizeBytes > 2 * this.snapshotBytes;
  }

  /** Replaces the log with one snapshot record, atomically. */
  async rewrite(snapshot: Buffer): Promise<void> {
    const content = Buffer.concat([MAGIC, snapshot]);
    await writeFileDurably(this.path, content);
    const next = await open(this.path, 'a');
    const previous = this.handle;
    this.handle = next;
    this.sizeBytes = content.length;
    this.snapshotBytes = content.length;
    await previous.close();
  }

  async close(): Promise<void> {
    try {
      await this.handle.close();
    } finally {
      await releaseLock(this.lockPath);
    }
  }
}

/** Writes `content` to a temp file, fsyncs it, renames it over `path` and fsyncs the directory. */
async function writeFileDurably(path: string, content: Buffer): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const handle = await open(tmp, 'w');
  try {
    await handle.writeFile(content);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fsyncDir(dirname(path));
}

/**
 * Replays the log at `path`. A missing or header-less file becomes a fresh log; a torn or
 * corrupt tail is truncated away (a crash mid-append leaves one).
 */
async function replay(path: string): Promise<{
  revision: number;
  kvs: Map<string, KeyValue>;
  sizeBytes: number;
  snapshotBytes: number;
}> {
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (err) {
    if (!isNodeError(err, 'ENOENT')) throw err;
    buf = Buffer.alloc(0);
  }
  const kvs = new Map<string, KeyValue>();
  // Like etcd, an empty store is at revision 1.
  let revision = 1;
  if (buf.length < MAGIC.length) {
    // Never written, or torn while being created: nothing was ever committed to it.
    await writeFileDurably(path, MAGIC);
    return { revision, kvs, sizeBytes: MAGIC.length, snapshotBytes: 0 };
  }
  if (!buf.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new CorruptDataError(`${path} is not a metadata log (bad header)`);
  }
  let offset = MAGIC.length;
  let snapshotBytes = 0;
  for (;;) {
    const decoded = decodeRecordAt(buf, offset);
    if (decoded === undefined) break;
    const { record } = decoded;
    if (record.t === 'snap') {
      kvs.clear();
      for (const [key, value, createRevision, modRevision, version, leaseId] of record.k) {
        const kv: KeyValue = {
          key,
          value: Buffer.from(value, 'base64'),
          createRevision,
          modRevision,
          version,
        };
        if (leaseId !== undefined) kv.leaseId = leaseId;
        kvs.set(key, kv);
      }
      revision = record.r;
      snapshotBytes = decoded.next;
    } else {
      if (record.r <= revision) {
        throw new CorruptDataError(`${path}: revision ${record.r} follows ${revision}`);
      }
      for (const event of record.e) {
        if (event[0] === 'p') {
          const [, key, value, createRevision, version, leaseId] = event;
          const kv: KeyValue = {
            key,
            value: Buffer.from(value, 'base64'),
            createRevision,
            modRevision: record.r,
            version,
          };
          if (leaseId !== undefined) kv.leaseId = leaseId;
          kvs.set(key, kv);
        } else {
          kvs.delete(event[1]);
        }
      }
      revision = record.r;
    }
    offset = decoded.next;
  }
  if (offset < buf.length) {
    const handle = await open(path, 'r+');
    try {
      await handle.truncate(offset);
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
  return { revision, kvs, sizeBytes: offset, snapshotBytes };
}

/**
 * Takes `<path>.lock` with O_EXCL, holding our pid. A lock whose process is gone (ESRCH) is
 * taken over; a live holder (this process included) makes the open fail.
 */
async function acquireLock(path: string, lockPath: string): Promise<void> {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const handle = await open(
        lockPath,
        fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL,
        0o644,
      );
      try {
        await handle.writeFile(`${process.pid}\n`);
        await handle.sync();
      } finally {
        await handle.close();
      }
      return;
    } catch (err) {
      if (!isNodeError(err, 'EEXIST')) {
        throw new MetadataUnavailableError(`cannot create lock file ${lockPath}`, { cause: err });
      }
    }
    const holder = await lockHolder(lockPath);
    if (holder === 'gone') continue;
    if (holder !== 'stale') {
      throw new MetadataUnavailableError(
        `metadata file ${path} is in use by process ${holder} (lock ${lockPath}); close that store first`,
      );
    }
    // The holder died without closing: its lock protects nothing any more.
    await unlink(lockPath).catch((err: unknown) => {
      if (!isNodeError(err, 'ENOENT')) throw err;
    });
  }
  throw new MetadataUnavailableError(
    `could not take lock ${lockPath}: other processes keep taking it`,
  );
}

/** The live pid holding the lock, 'stale' if its holder is dead, 'gone' if the file vanished. */
async function lockHolder(lockPath: string): Promise<number | 'stale' | 'gone'> {
  let text: string;
  let mtimeMs: number;
  try {
    text = await readFile(lockPath, 'utf8');
    mtimeMs = (await stat(lockPath)).mtimeMs;
  } catch (err) {
    if (isNodeError(err, 'ENOENT')) return 'gone';
    throw err;
  }
  const pid = Number.parseInt(text.trim(), 10);
  if (!Number.isSafeInteger(pid) || pid <= 0) {
    // Empty: its creator is between create and write, or died there. Give it some time.
    return Date.now() - mtimeMs > STALE_EMPTY_LOCK_MS ? 'stale' : 0;
  }
  try {
    process.kill(pid, 0);
    return pid;
  } catch (err) {
    // EPERM: alive but someone else's. Only ESRCH proves the holder is gone.
    return isNodeError(err, 'ESRCH') ? 'stale' : pid;
  }
}

/** Removes the lock if it is still ours (a takeover may have replaced it). */
async function releaseLock(lockPath: string): Promise<void> {
  try {
    const text = await readFile(lockPath, 'utf8');
    if (Number.parseInt(text.trim(), 10) === process.pid) await unlink(lockPath);
  } catch (err) {
    if (!isNodeError(err, 'ENOENT')) throw err;
  }
}
