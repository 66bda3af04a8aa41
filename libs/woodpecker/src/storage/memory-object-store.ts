import { createHash } from 'node:crypto';
import { assert } from '@woodstream/common';
import { ClosedError, InvalidArgumentError } from '../errors.js';
import type { ListPage, ObjectInfo, ObjectStore, PutOptions, PutResult } from './object-store.js';

/** The operations of an {@link ObjectStore}, as counted and failed by {@link MemoryObjectStore}. */
export type MemoryObjectStoreOp = 'put' | 'get' | 'head' | 'list' | 'delete';

/** Requests that reached a {@link MemoryObjectStore}, by operation. */
export type MemoryObjectStoreRequestCount = Readonly<Record<MemoryObjectStoreOp, number>>;

export interface MemoryObjectStoreOptions {
  /** Whether `ifNoneMatch` puts are enforced, like radosgw (true) or s3rver (false). @default true */
  conditionalWrites?: boolean;
}

/** Most keys one DeleteObjects request takes on S3; the fake counts requests the same way. */
const MAX_KEYS_PER_DELETE_REQUEST = 1000;

interface StoredObject {
  // Invariant: owned by the store; never handed out (callers get copies).
  readonly body: Uint8Array;
  // Invariant: etag === md5 hex of body, like S3's ETag for a single-part upload.
  readonly etag: string;
  readonly metadata: Readonly<Record<string, string>>;
}

interface InjectedFailure {
  readonly error: Error;
  remaining: number;
}

/**
 * An in-process {@link ObjectStore} that passes the same contract suite as the S3 adapter, so
 * unit tests of higher layers may use it instead of a server. Bytes are copied in and out, so
 * callers can never change stored data. Every call yields to the event loop once before it
 * acts, so concurrent callers interleave as they would against a server, and checks its abort
 * signal before and after that yield.
 *
 * For tests of retry and failure handling, {@link failNext} makes the next calls of one
 * operation reject with a given error ({@link clearFailures} ends that early), and
 * {@link requestCount} counts the requests that reached the store (for example to assert that
 * an idle writer makes none).
 */
export class MemoryObjectStore implements ObjectStore {
  readonly capabilities: { readonly conditionalWrites: boolean };

  // Keys are the caller's keys; list() sorts them in UTF-8 byte order on demand.
  readonly #objects = new Map<string, StoredObject>();
  readonly #failures = new Map<MemoryObjectStoreOp, InjectedFailure[]>();
  readonly #requests: Record<MemoryObjectStoreOp, number> = {
    put: 0,
    get: 0,
    head: 0,
    list: 0,
    delete: 0,
  };
  #closed = false;

  constructor(options: MemoryObjectStoreOptions = {}) {
    this.capabilities = { conditionalWrites: options.conditionalWrites ?? true };
  }

  /**
   * Requests that reached the store so far, by operation, including ones failed by
   * {@link failNext}. Calls rejected before reaching it (closed store, invalid arguments, an
   * already aborted signal) do not count. `deleteMany` counts one request per 1000 keys, and
   * none for an empty list, as the S3 adapter sends them.
   */
  get requestCount(): MemoryObjectStoreRequestCount {
    return { ...this.#requests };
  }

  /**
   * Makes the next `count` requests of `op` reject with `error` (the same instance each time)
   * without touching the stored data. Calls add up: failures queued for one operation are
   * used in the order they were queued.
   */
  failNext(op: MemoryObjectStoreOp, error: Error, count = 1): void {
    if (!Number.isSafeInteger(count) || count < 1) {
      throw new InvalidArgumentError(`failNext count must be a positive integer, got ${count}`);
    }
    const queue = this.#failures.get(op) ?? [];
    queue.push({ error, remaining: count });
    this.#failures.set(op, queue);
  }

  /** Drops the failures still queued by {@link failNext}: for `op`, or for every operation. */
  clearFailures(op?: MemoryObjectStoreOp): void {
    if (op === undefined) this.#failures.clear();
    else this.#failures.delete(op);
  }

  async put(key: string, body: Uint8Array, options: PutOptions = {}): Promise<PutResult> {
    this.#checkOpen();
    checkObjectKey(key);
    if (!(body instanceof Uint8Array)) throw new InvalidArgumentError('body must be a Uint8Array');
    const metadata = { ...options.metadata };
    checkObjectMetadata(metadata);
    // Copy before yielding: the stored bytes are the caller's bytes at the time of the call.
    // (Not body.slice(): on a Buffer that returns a view of the same memory.)
    const copy = new Uint8Array(body);
    await this.#request('put', options.signal);
    if (options.ifNoneMatch === true && this.capabilities.conditionalWrites) {
      if (this.#objects.has(key)) return { status: 'exists' };
    }
    const etag = md5Hex(copy);
    this.#objects.set(key, { body: copy, etag, metadata });
    return { status: 'created', etag };
  }

  async get(
    key: string,
    options: { signal?: AbortSignal; range?: { start: number; end: number } } = {},
  ): Promise<Uint8Array | undefined> {
    this.#checkOpen();
    checkObjectKey(key);
    if (options.range !== undefined) checkByteRange(options.range);
    await this.#request('get', options.signal);
    const object = this.#objects.get(key);
    if (object === undefined) return undefined;
    if (options.range === undefined) return object.body.slice();
    // slice() clamps both ends to the body, which is the port's contract for ranges.
    return object.body.slice(options.range.start, options.range.end);
  }

  async head(key: string, options: { signal?: AbortSignal } = {}): Promise<ObjectInfo | undefined> {
    this.#checkOpen();
    checkObjectKey(key);
    await this.#request('head', options.signal);
    const object = this.#objects.get(key);
    if (object === undefined) return undefined;
    return {
      key,
      sizeBytes: object.body.byteLength,
      etag: object.etag,
      metadata: { ...object.metadata },
    };
  }

  async list(
    prefix: string,
    options: {
      signal?: AbortSignal;
      continuationToken?: string;
      startAfter?: string;
      limit?: number;
    } = {},
  ): Promise<ListPage> {
    this.#checkOpen();
    if (typeof prefix !== 'string') throw new InvalidArgumentError('prefix must be a string');
    const limit = checkListLimit(options.limit);
    // As on S3, a continuation token takes precedence over startAfter.
    const after =
      options.continuationToken !== undefined
        ? decodeContinuationToken(options.continuationToken)
        : options.startAfter;
    await this.#request('list', options.signal);
    const keys = [...this.#objects.keys()]
      .filter(
        (key) => key.startsWith(prefix) && (after === undefined || compareUtf8(key, after) > 0),
      )
      .sort(compareUtf8);
    const pageKeys = keys.slice(0, limit);
    const objects = pageKeys.map((key): ObjectInfo => {
      const object = this.#objects.get(key);
      assert(object !== undefined, `listed key ${key} is in the map (nothing ran in between)`);
      return { key, sizeBytes: object.body.byteLength, etag: object.etag };
    });
    const last = pageKeys.at(-1);
    if (keys.length > limit && last !== undefined) {
      return { objects, continuationToken: encodeContinuationToken(last) };
    }
    return { objects };
  }

  async deleteMany(keys: readonly string[], options: { signal?: AbortSignal } = {}): Promise<void> {
    this.#checkOpen();
    for (const key of keys) checkObjectKey(key);
    for (let i = 0; i < keys.length; i += MAX_KEYS_PER_DELETE_REQUEST) {
      await this.#request('delete', options.signal);
      for (const key of keys.slice(i, i + MAX_KEYS_PER_DELETE_REQUEST)) this.#objects.delete(key);
    }
  }

  /** Drops all data. Idempotent; every later call rejects with ClosedError. */
  close(): Promise<void> {
    this.#closed = true;
    this.#objects.clear();
    return Promise.resolve();
  }

  #checkOpen(): void {
    if (this.#closed) throw new ClosedError('the object store is closed');
  }

  /**
   * One request reaching the store: rejects with the abort reason before and after yielding
   * to the event loop, counts the request, and applies an injected failure if one is queued.
   */
  async #request(op: MemoryObjectStoreOp, signal: AbortSignal | undefined): Promise<void> {
    signal?.throwIfAborted();
    await Promise.resolve();
    signal?.throwIfAborted();
    this.#checkOpen();
    this.#requests[op] += 1;
    const queue = this.#failures.get(op);
    const failure = queue?.[0];
    if (queue !== undefined && failure !== undefined) {
      failure.remaining -= 1;
      if (failure.remaining === 0) queue.shift();
      throw failure.error;
    }
  }
}

// Argument checks shared by the ObjectStore adapters, so that every backend rejects the same
// inputs with the same error. They live here because the port module holds only types.

/** S3's limit on a key, in UTF-8 bytes. */
const MAX_KEY_BYTES = 1024;
/** S3's limit on the user metadata of one object (keys plus values), in bytes. */
const MAX_METADATA_BYTES = 2048;
/** Most keys one list page may return (S3's limit). */
export const MAX_LIST_LIMIT = 1000;
// HTTP header names: lower case because S3 returns them lower-cased, no underscores because
// proxies drop them.
const METADATA_KEY = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;
// Printable ASCII without leading or trailing spaces, which HTTP would trim.
const METADATA_VALUE = /^(?:[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?)?$/;

/** Rejects a key S3 would refuse: empty, or longer than 1024 UTF-8 bytes. */
export function checkObjectKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0) {
    throw new InvalidArgumentError('an object key must be a non-empty string');
  }
  if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) {
    throw new InvalidArgumentError(`an object key must be at most ${MAX_KEY_BYTES} UTF-8 bytes`);
  }
}

/** Rejects user metadata that would not survive a round trip through HTTP headers. */
export function checkObjectMetadata(metadata: Readonly<Record<string, string>>): void {
  let bytes = 0;
  for (const [key, value] of Object.entries(metadata)) {
    if (!METADATA_KEY.test(key)) {
      throw new InvalidArgumentError(
        `metadata key ${JSON.stringify(key)} must be lower-case ASCII letters, digits and dashes`,
      );
    }
    if (typeof value !== 'string' || !METADATA_VALUE.test(value)) {
      throw new InvalidArgumentError(
        `metadata value of ${key} must be printable ASCII without leading or trailing spaces`,
      );
    }
    bytes += key.length + value.length;
  }
  if (bytes > MAX_METADATA_BYTES) {
    throw new InvalidArgumentError(`metadata must be at most ${MAX_METADATA_BYTES} bytes`);
  }
}

/** Rejects a byte range that is not `[start, end)` with `0 <= start <= end`. */
export function checkByteRange(range: { start: number; end: number }): void {
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new InvalidArgumentError(
      `range must be [start, end) with integers 0 <= start <= end, got [${start}, ${end})`,
    );
  }
}

/** The list page size to use: the default 1000, or `limit` when it is an integer in [1, 1000]. */
export function checkListLimit(limit: number | undefined): number {
  if (limit === undefined) return MAX_LIST_LIMIT;
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) {
    throw new InvalidArgumentError(
      `list limit must be an integer in [1, ${MAX_LIST_LIMIT}], got ${limit}`,
    );
  }
  return limit;
}

/** Orders strings by their UTF-8 bytes, which is S3's listing order (code point order). */
function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function md5Hex(bytes: Uint8Array): string {
  return createHash('md5').update(bytes).digest('hex');
}

// Continuation tokens are opaque to callers; base64url keeps them from being mistaken for keys.
function encodeContinuationToken(lastKey: string): string {
  return Buffer.from(lastKey, 'utf8').toString('base64url');
}

function decodeContinuationToken(token: string): string {
  const key = Buffer.from(token, 'base64url').toString('utf8');
  if (key.length === 0 || encodeContinuationToken(key) !== token) {
    throw new InvalidArgumentError('invalid continuation token');
  }
  return key;
}
