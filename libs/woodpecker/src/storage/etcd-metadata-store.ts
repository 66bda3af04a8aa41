import {
  Etcd3,
  EtcdLeaseInvalidError,
  type ICompare,
  type IDuplexStream,
  type IKeyValue,
  type ILeaseKeepAliveRequest,
  type ILeaseKeepAliveResponse,
  type IOptions,
  type IRequestOp,
  type IWatchRequest,
  type IWatchResponse,
} from 'etcd3';
import { randomBytes } from 'node:crypto';
import { abortable, assert, sleep } from '@woodstream/common';
import {
  ClosedError,
  InvalidArgumentError,
  MetadataUnavailableError,
  WalError,
} from '../errors.js';
import {
  resolveWatchQueueBatches,
  validateKey,
  validateLeaseTtl,
  validateLimit,
  validatePrefix,
  validateTxn,
  WatchChannel,
} from './file-metadata-store.js';
import type {
  Compare,
  KeyValue,
  Lease,
  MetadataStore,
  TxnOp,
  TxnResult,
  WatchEvent,
} from './metadata-store.js';

/** Connection settings of an {@link EtcdMetadataStore}. */
export interface EtcdMetadataStoreConfig {
  /** Client URLs, e.g. `http://127.0.0.1:2379`. At least one. */
  endpoints: string[];
  /** Every key is stored under this prefix, e.g. '/woodstream/'. Callers never see it. @default '' */
  rootPrefix?: string;
  /** Deadline of each request. @default 10000 (min 100, max 300000) */
  requestTimeoutMs?: number;
  /** How long `open` keeps trying to reach etcd. @default 5000 (min 100, max 300000) */
  dialTimeoutMs?: number;
  /** Batches a watch buffers before its backlog is replaced by a reset. @default 1024 (max 65536) */
  maxWatchQueueBatches?: number;
  /**
   * A watch that cannot reach etcd for this long fails: its loop throws
   * MetadataUnavailableError. @default 60000 (min 1000, max 3600000)
   */
  maxWatchOutageMs?: number;
}

const MIB = 1024 * 1024;
/** Snapshots and watch catch-up batches can be large; grpc-js would refuse them past 4 MiB. */
const MAX_RECEIVE_MESSAGE_BYTES = 256 * MIB;
/** Backoff between watch or keep-alive reconnects. */
const MIN_RETRY_DELAY_MS = 50;
const MAX_RETRY_DELAY_MS = 2_000;
/** Keep-alives in flight on one lease; more mean the stream is stuck and the watchdog decides. */
const MAX_UNANSWERED_KEEPALIVES = 8;

type FaultPolicy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>;

/**
 * etcd3 retries "recoverable" errors (including DEADLINE_EXCEEDED) three times by default. A
 * txn whose first attempt committed would then report a failed compare on the retry, so
 * calls run exactly once here; callers retry MetadataUnavailableError. The per-host circuit
 * breaker stays: it is how etcd3 moves on from a dead endpoint.
 */
const RUN_ONCE: FaultPolicy = {
  execute: <T>(
    fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T,
    signal?: AbortSignal,
  ): Promise<T> =>
    Promise.resolve().then(() => fn({ signal: signal ?? new AbortController().signal })),
  onSuccess: () => ({ dispose: () => undefined }),
  onFailure: () => ({ dispose: () => undefined }),
} as unknown as FaultPolicy;

function boundedInt(
  name: string,
  value: number | undefined,
  def: number,
  min: number,
  max: number,
): number {
  const n = value ?? def;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new InvalidArgumentError(`${name} must be an integer in [${min}, ${max}], got ${n}`);
  }
  return n;
}

/** The first key after every key starting with `prefix` (etcd's range_end for a prefix). */
function prefixRangeEnd(prefix: Buffer): Buffer {
  for (let i = prefix.length - 1; i >= 0; i--) {
    const byte = prefix[i]!;
    if (byte < 0xff) {
      const end = Buffer.from(prefix.subarray(0, i + 1));
      end[i] = byte + 1;
      return end;
    }
  }
  // Empty or all 0xff: "\0" means every key >= key.
  return Buffer.from([0]);
}

/**
 * An int64 field of an etcd response. etcd3 asks for strings, but protobufjs hands out plain
 * (lossy above 2^53) numbers when it cannot load `long` — it cannot under vitest, whose
 * `import` condition makes `require('long')` return the ESM namespace. Revisions, versions
 * and TTLs stay far below 2^53, so either form is exact for them.
 */
function toInt(value: string | number | undefined): number {
  const n = Number(value ?? 0);
  assert(Number.isSafeInteger(n) && n >= 0, `etcd int64 ${String(value)} is a safe integer`);
  return n;
}

/** Most attempts to grant a lease under a fresh random ID (a clash is ~2^-53 likely). */
const MAX_LEASE_ID_ATTEMPTS = 3;

/**
 * A lease ID chosen by us, in [1, 2^53): etcd accepts client-chosen IDs, and a safe integer
 * survives the lossy number decoding described at {@link toInt}, where etcd's own 63-bit
 * IDs would not.
 */
function newLeaseId(): string {
  for (;;) {
    const id = randomBytes(8).readBigUInt64BE() >> 11n;
    if (id !== 0n) return id.toString();
  }
}

function retryDelayMs(attempt: number): number {
  const cap = Math.min(MAX_RETRY_DELAY_MS, MIN_RETRY_DELAY_MS * 2 ** Math.min(attempt, 16));
  return MIN_RETRY_DELAY_MS + Math.random() * (cap - MIN_RETRY_DELAY_MS);
}

/**
 * The MetadataStore on etcd v3 (tested against 3.4), through the `etcd3` client. Every key
 * lives under `rootPrefix`, which results never show. Every etcd or gRPC failure becomes
 * MetadataUnavailableError (retryable, with the cause), never "key missing"; after a
 * timeout or abort a txn's outcome is unknown. A put on a lease that no longer exists
 * rejects with InvalidArgumentError.
 *
 * Watches are one gRPC stream each. A broken stream is resumed from the last delivered
 * revision; if etcd compacted that history, or the consumer is too far behind, the watch
 * re-lists the prefix, emits a `reset` and goes on from the listed revision.
 *
 * Leases are kept alive every TTL/3 and count as lost as soon as no keep-alive sent within
 * the last TTL was answered: past that point etcd may already have expired them.
 */
export class EtcdMetadataStore implements MetadataStore {
  private isClosed = false;
  private readonly root: Buffer;
  private readonly watches = new Set<EtcdWatch>();
  private readonly leases = new Set<EtcdLease>();

  private constructor(
    /** @internal used by watches and leases of this store */
    readonly client: Etcd3,
    rootPrefix: string,
    private readonly requestTimeoutMs: number,
    private readonly maxWatchQueueBatches: number,
    /** @internal */
    readonly maxWatchOutageMs: number,
  ) {
    this.root = Buffer.from(rootPrefix, 'utf8');
  }

  /**
   * Connects and checks that etcd answers within `dialTimeoutMs`. Rejects with
   * MetadataUnavailableError when it does not, InvalidArgumentError on a bad config, and
   * `signal.reason` when aborted.
   */
  static async open(
    config: EtcdMetadataStoreConfig,
    options: { signal?: AbortSignal } = {},
  ): Promise<EtcdMetadataStore> {
    const { signal } = options;
    signal?.throwIfAborted();
    const { endpoints, rootPrefix = '' } = config;
    if (
      !Array.isArray(endpoints) ||
      endpoints.length === 0 ||
      endpoints.some((e) => typeof e !== 'string' || e === '')
    ) {
      throw new InvalidArgumentError('endpoints must be a non-empty list of URLs');
    }
    if (typeof rootPrefix !== 'string')
      throw new InvalidArgumentError('rootPrefix must be a string');
    const requestTimeoutMs = boundedInt(
      'requestTimeoutMs',
      config.requestTimeoutMs,
      10_000,
      100,
      300_000,
    );
    const dialTimeoutMs = boundedInt('dialTimeoutMs', config.dialTimeoutMs, 5_000, 100, 300_000);
    const maxWatchOutageMs = boundedInt(
      'maxWatchOutageMs',
      config.maxWatchOutageMs,
      60_000,
      1_000,
      3_600_000,
    );
    const maxWatchQueueBatches = resolveWatchQueueBatches(config.maxWatchQueueBatches);

    const client = new Etcd3({
      hosts: endpoints,
      faultHandling: { global: RUN_ONCE },
      grpcOptions: {
        'grpc.max_receive_message_length': MAX_RECEIVE_MESSAGE_BYTES,
        // Notice a dead peer under an idle watch; etcd allows pings every 5 s by default.
        'grpc.keepalive_time_ms': 30_000,
        'grpc.keepalive_timeout_ms': Math.min(requestTimeoutMs, 20_000),
      },
    });
    // etcd3 ignores its own `dialTimeout` option, so the deadline is ours: ask for the status
    // until it answers or the dial time is used up (etcd may still be starting).
    const deadline = Date.now() + dialTimeoutMs;
    let lastError: unknown;
    for (let attempt = 0; ; attempt++) {
      try {
        await abortable(client.maintenance.status({ deadline }), signal);
        break;
      } catch (err) {
        lastError = err;
      }
      const remainingMs = deadline - Date.now();
      if (signal?.aborted === true || remainingMs <= 0) {
        client.close();
        if (signal?.aborted === true) throw signal.reason as Error;
        throw new MetadataUnavailableError(
          `etcd at ${endpoints.join(', ')} did not answer within ${dialTimeoutMs} ms`,
          { cause: lastError },
        );
      }
      try {
        await sleep(Math.min(remainingMs, retryDelayMs(attempt)), signal);
      } catch (err) {
        client.close();
        throw err;
      }
    }
    return new EtcdMetadataStore(
      client,
      rootPrefix,
      requestTimeoutMs,
      maxWatchQueueBatches,
      maxWatchOutageMs,
    );
  }

  async get(key: string, options?: { signal?: AbortSignal }): Promise<KeyValue | undefined> {
    validateKey(key);
    const res = await this.call('get', options?.signal, (o) =>
      this.client.kv.range({ key: this.fullKey(key) }, o),
    );
    const kv = res.kvs[0];
    return kv === undefined ? undefined : this.toKeyValue(kv);
  }

  async range(
    prefix: string,
    options?: { signal?: AbortSignal; limit?: number },
  ): Promise<{ kvs: KeyValue[]; revision: number }> {
    validatePrefix(prefix);
    validateLimit(options?.limit);
    return this.list(prefix, options?.limit ?? 0, options?.signal);
  }

  async txn(
    compares: readonly Compare[],
    onSuccess: readonly TxnOp[],
    options?: { signal?: AbortSignal },
  ): Promise<TxnResult> {
    validateTxn(compares, onSuccess);
    // etcd compares a missing key as a zero KeyValue, so `mod == 0` means "absent".
    const compare: ICompare[] = compares.map((c) => ({
      key: this.fullKey(c.key),
      target: 'Mod',
      result: 'Equal',
      mod_revision: c.modRevision,
    }));
    const success: IRequestOp[] = onSuccess.map((op): IRequestOp => {
      switch (op.type) {
        case 'put':
          return {
            request_put: {
              key: this.fullKey(op.key),
              value: Buffer.from(op.value.buffer, op.value.byteOffset, op.value.byteLength),
              ...(op.leaseId === undefined ? {} : { lease: op.leaseId }),
            },
          };
        case 'delete':
          return { request_delete_range: { key: this.fullKey(op.key) } };
        case 'deletePrefix': {
          const key = this.fullKey(op.prefix);
          return { request_delete_range: { key, range_end: prefixRangeEnd(key) } };
        }
      }
    });
    const res = await this.call('txn', options?.signal, (o) =>
      this.client.kv.txn({ compare, success, failure: [] }, o),
    );
    return { succeeded: res.succeeded, revision: toInt(res.header.revision) };
  }

  /** Grants a lease of `ttlMs` rounded up to whole seconds (etcd may raise it to its minimum). */
  async grantLease(ttlMs: number, options?: { signal?: AbortSignal }): Promise<Lease> {
    validateLeaseTtl(ttlMs);
    const ttlSeconds = Math.max(1, Math.ceil(ttlMs / 1000));
    for (let attempt = 1; ; attempt++) {
      const id = newLeaseId();
      // The lease may expire TTL after the request reached etcd, so its clock starts now.
      const sentAtMs = Date.now();
      let granted: { TTL: string | number; error: string };
      try {
        granted = await this.call('lease grant', options?.signal, (o) =>
          this.client.leaseClient.leaseGrant({ TTL: ttlSeconds, ID: id }, o),
        );
      } catch (err) {
        const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : '';
        if (attempt < MAX_LEASE_ID_ATTEMPTS && cause.includes('lease already exists')) continue;
        throw err;
      }
      if (granted.error !== '') {
        throw new MetadataUnavailableError(`etcd lease grant failed: ${granted.error}`);
      }
      // Closed while granting: nobody keeps the lease alive, so it expires on its own.
      this.checkOpen();
      return this.track(new EtcdLease(this, id, toInt(granted.TTL) * 1000, sentAtMs));
    }
  }

  private track(lease: EtcdLease): EtcdLease {
    this.leases.add(lease);
    void lease.lost.then(() => this.leases.delete(lease));
    return lease;
  }

  watch(
    prefix: string,
    options: { signal: AbortSignal; fromRevision?: number },
  ): AsyncIterable<WatchEvent[]> {
    const watch = new EtcdWatch(
      this,
      prefix,
      options.fromRevision,
      options.signal,
      this.maxWatchQueueBatches,
    );
    try {
      this.checkOpen();
      validatePrefix(prefix);
      const from = options.fromRevision;
      if (from !== undefined && (!Number.isSafeInteger(from) || from < 0)) {
        throw new InvalidArgumentError(`fromRevision must be an integer >= 0, got ${from}`);
      }
    } catch (err) {
      watch.channel.end(err as Error);
      return watch.channel;
    }
    if (!watch.channel.isEnded) {
      this.watches.add(watch);
      watch.start();
    }
    return watch.channel;
  }

  /** Ends watches, stops keep-alives (leases then expire in etcd) and closes the connections. */
  close(): Promise<void> {
    if (this.isClosed) return Promise.resolve();
    this.isClosed = true;
    for (const watch of [...this.watches]) watch.channel.end();
    const closed = new ClosedError('metadata store closed');
    for (const lease of [...this.leases]) lease.markLost(closed);
    this.client.close();
    return Promise.resolve();
  }

  /** @internal */
  forgetWatch(watch: EtcdWatch): void {
    this.watches.delete(watch);
  }

  /** @internal */
  isStoreClosed(): boolean {
    return this.isClosed;
  }

  /** @internal */
  checkOpen(): void {
    if (this.isClosed) throw new ClosedError('metadata store closed');
  }

  /** @internal Keys under `prefix` (limit 0 = all), ascending, and the revision read at. */
  async list(
    prefix: string,
    limit: number,
    signal: AbortSignal | undefined,
  ): Promise<{ kvs: KeyValue[]; revision: number }> {
    const key = this.fullKey(prefix);
    // No sort order: etcd returns keys ascending already, and an explicit sort reads them all.
    const res = await this.call('range', signal, (o) =>
      this.client.kv.range({ key, range_end: prefixRangeEnd(key), limit }, o),
    );
    return {
      kvs: res.kvs.map((kv) => this.toKeyValue(kv)),
      revision: toInt(res.header.revision),
    };
  }

  /** @internal Revokes lease `id`; a lease etcd no longer knows counts as revoked. */
  async revokeLeaseId(id: string): Promise<void> {
    try {
      await this.call('lease revoke', undefined, (o) =>
        this.client.leaseClient.leaseRevoke({ ID: id }, o),
      );
    } catch (err) {
      if (err instanceof InvalidArgumentError && err.cause instanceof EtcdLeaseInvalidError) return;
      throw err;
    }
  }

  /** @internal The root-prefixed key as etcd stores it. */
  fullKey(key: string): Buffer {
    return Buffer.concat([this.root, Buffer.from(key, 'utf8')]);
  }

  /** @internal The caller's view of a key etcd returned. */
  relativeKey(key: Buffer): string {
    assert(
      key.subarray(0, this.root.length).equals(this.root),
      'etcd returned a key under the root',
    );
    return key.subarray(this.root.length).toString('utf8');
  }

  /** @internal */
  toKeyValue(kv: IKeyValue): KeyValue {
    const out: KeyValue = {
      key: this.relativeKey(kv.key),
      value: Uint8Array.from(kv.value),
      createRevision: toInt(kv.create_revision),
      modRevision: toInt(kv.mod_revision),
      version: toInt(kv.version),
    };
    // Exact for our own lease IDs; see toInt for why a foreign one may not be under vitest.
    const lease = String((kv.lease as string | number | undefined) ?? '0');
    if (lease !== '0' && lease !== '') out.leaseId = lease;
    return out;
  }

  /**
   * Runs one etcd request with this store's deadline, racing `signal`, and maps its failure:
   * ClosedError once closed, InvalidArgumentError for an unknown lease, otherwise
   * MetadataUnavailableError. Rejects with `signal.reason` when aborted.
   */
  private async call<T>(
    what: string,
    signal: AbortSignal | undefined,
    request: (options: { deadline: number }) => Promise<T>,
  ): Promise<T> {
    this.checkOpen();
    signal?.throwIfAborted();
    try {
      return await abortable(request({ deadline: Date.now() + this.requestTimeoutMs }), signal);
    } catch (err) {
      if (signal?.aborted === true && err === signal.reason) throw err;
      if (err instanceof WalError) throw err;
      if (this.isClosed) throw new ClosedError('metadata store closed', { cause: err });
      if (err instanceof EtcdLeaseInvalidError) {
        throw new InvalidArgumentError(`etcd ${what}: lease not found (expired or revoked)`, {
          cause: err,
        });
      }
      const message = err instanceof Error ? err.message : String(err);
      throw new MetadataUnavailableError(`etcd ${what} failed: ${message}`, { cause: err });
    }
  }
}

/**
 * One watch: a gRPC watch stream feeding a WatchChannel. The stream is replaced on every
 * failure; `generation` tells the current stream's callbacks from a replaced one's.
 */
class EtcdWatch {
  readonly channel: WatchChannel;
  private stream: IDuplexStream<IWatchRequest, IWatchResponse> | undefined;
  private generation = 0;
  // Invariant: every change under the prefix up to lastRevision has been pushed to the channel
  // (or is covered by a pushed reset). Undefined until etcd confirms a watch that started "now".
  private lastRevision: number | undefined;
  /** History after lastRevision is lost (compacted, overflowed, cancelled): re-list first. */
  private needsResync = false;
  private failingSinceMs: number | undefined;
  private attempt = 0;
  private retryTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: EtcdMetadataStore,
    private readonly prefix: string,
    fromRevision: number | undefined,
    signal: AbortSignal,
    maxBatches: number,
  ) {
    this.lastRevision = fromRevision;
    this.channel = new WatchChannel(maxBatches, signal, () => this.stop());
  }

  start(): void {
    void this.connect();
  }

  private stop(): void {
    this.generation++;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.dropStream();
    this.store.forgetWatch(this);
  }

  private dropStream(): void {
    const stream = this.stream;
    this.stream = undefined;
    // Cancelling the call (RST_STREAM) makes etcd drop the server-side watcher.
    stream?.cancel();
  }

  /** Opens a new stream from lastRevision + 1, re-listing first when history was lost. */
  private async connect(): Promise<void> {
    const generation = ++this.generation;
    this.dropStream();
    try {
      if (this.needsResync) {
        const { kvs, revision } = await this.store.list(this.prefix, 0, undefined);
        if (generation !== this.generation) return;
        const reset: WatchEvent[] = [{ type: 'reset', kvs, revision }];
        if (!this.channel.push(reset)) this.channel.replaceBacklog(reset);
        this.lastRevision = revision;
        this.needsResync = false;
      }
      this.store.checkOpen();
      const stream = await this.store.client.watchClient.watch();
      if (generation !== this.generation) {
        stream.on('error', () => undefined);
        stream.cancel();
        return;
      }
      this.stream = stream;
      stream.on('data', (res: IWatchResponse) => {
        if (generation === this.generation) this.onResponse(res);
      });
      // Always listened to: an 'error' without a listener would crash the process.
      stream.on('error', (err: Error) => {
        if (generation === this.generation) this.retry(err);
      });
      stream.on('end', () => {
        if (generation === this.generation) this.retry(new Error('etcd closed the watch stream'));
      });
      const key = this.store.fullKey(this.prefix);
      stream.write({
        create_request: {
          key,
          range_end: prefixRangeEnd(key),
          // 0 asks etcd for "now"; the created response tells us which revision that was.
          start_revision: this.lastRevision === undefined ? 0 : this.lastRevision + 1,
        },
      });
    } catch (err) {
      if (generation === this.generation) this.retry(err);
    }
  }

  private onResponse(res: IWatchResponse): void {
    const compactRevision = toInt(res.compact_revision);
    if (res.canceled || compactRevision !== 0) {
      // etcd cancels a watch whose start revision was compacted away (and says so only
      // through compact_revision): the missed changes are gone, so re-list.
      this.needsResync = true;
      if (compactRevision !== 0) {
        void this.connect();
      } else {
        this.retry(new Error(`etcd cancelled the watch: ${res.cancel_reason}`));
      }
      return;
    }
    if (res.created) {
      this.lastRevision ??= toInt(res.header.revision);
      this.failingSinceMs = undefined;
      this.attempt = 0;
    }
    // One response may span revisions (catch-up); the port delivers one batch per revision.
    let batch: WatchEvent[] = [];
    let batchRevision = 0;
    const flush = (): boolean => {
      if (batch.length === 0) return true;
      if (!this.channel.push(batch)) return false;
      this.lastRevision = batchRevision;
      batch = [];
      return true;
    };
    for (const event of res.events) {
      const revision = toInt(event.kv.mod_revision);
      if (revision !== batchRevision && !flush()) return this.overflow();
      batchRevision = revision;
      if (event.type === 'Put') {
        batch.push({ type: 'put', kv: this.store.toKeyValue(event.kv) });
      } else {
        batch.push({
          type: 'delete',
          key: this.store.relativeKey(event.kv.key),
          modRevision: revision,
        });
      }
    }
    if (!flush()) this.overflow();
  }

  /** The consumer is too far behind: free the backlog now, send a reset once re-listed. */
  private overflow(): void {
    this.channel.dropBacklog();
    this.needsResync = true;
    void this.connect();
  }

  private retry(err: unknown): void {
    if (this.channel.isEnded) return;
    this.generation++;
    this.dropStream();
    const now = Date.now();
    this.failingSinceMs ??= now;
    if (now - this.failingSinceMs > this.store.maxWatchOutageMs) {
      this.channel.end(
        new MetadataUnavailableError(
          `etcd watch on ${JSON.stringify(this.prefix)} could not reconnect for ${this.store.maxWatchOutageMs} ms`,
          { cause: err },
        ),
      );
      return;
    }
    const delayMs = retryDelayMs(this.attempt++);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.connect();
    }, delayMs);
  }
}

/** A lease kept alive over its own keep-alive stream, with a watchdog at TTL. */
class EtcdLease implements Lease {
  readonly lost: Promise<Error>;
  private resolveLost!: (err: Error) => void;
  private isLost = false;
  private revoking: Promise<void> | undefined;
  private stream: IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse> | undefined;
  private generation = 0;
  private keepAliveTimer: NodeJS.Timeout | undefined;
  private reopenTimer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  // Send times of keep-alives not answered yet, oldest first (etcd answers in order).
  // Invariant: length <= MAX_UNANSWERED_KEEPALIVES.
  private readonly unanswered: number[] = [];
  /** Send time of the newest answered keep-alive: etcd had the lease alive until then + TTL. */
  private confirmedAtMs: number;

  constructor(
    private readonly store: EtcdMetadataStore,
    readonly id: string,
    readonly ttlMs: number,
    grantSentAtMs: number,
  ) {
    this.lost = new Promise<Error>((resolve) => {
      this.resolveLost = resolve;
    });
    this.confirmedAtMs = grantSentAtMs;
    this.armWatchdog();
    this.openStream();
  }

  revoke(options?: { signal?: AbortSignal }): Promise<void> {
    if (this.revoking === undefined) {
      if (this.store.isStoreClosed())
        return Promise.reject(new ClosedError('metadata store closed'));
      this.markLost(new Error(`lease ${this.id} revoked`));
      const revoking = this.store.revokeLeaseId(this.id);
      this.revoking = revoking;
      // A failed revoke may be retried.
      revoking.catch(() => {
        if (this.revoking === revoking) this.revoking = undefined;
      });
    }
    return abortable(this.revoking, options?.signal);
  }

  /** Stops keep-alives and resolves `lost` with `err`. Idempotent. */
  markLost(err: Error): void {
    if (this.isLost) return;
    this.isLost = true;
    this.generation++;
    clearInterval(this.keepAliveTimer);
    clearTimeout(this.reopenTimer);
    clearTimeout(this.watchdog);
    this.dropStream();
    this.resolveLost(err);
  }

  private dropStream(): void {
    const stream = this.stream;
    this.stream = undefined;
    stream?.cancel();
  }

  private armWatchdog(): void {
    clearTimeout(this.watchdog);
    const delayMs = Math.max(0, this.confirmedAtMs + this.ttlMs - Date.now());
    this.watchdog = setTimeout(() => {
      this.markLost(
        new MetadataUnavailableError(
          `lease ${this.id}: no keep-alive confirmed within its ${this.ttlMs} ms TTL; etcd may have expired it`,
        ),
      );
    }, delayMs);
  }

  private openStream(): void {
    const generation = ++this.generation;
    this.unanswered.length = 0;
    this.store.client.leaseClient.leaseKeepAlive().then(
      (stream) => {
        if (generation !== this.generation) {
          stream.on('error', () => undefined);
          stream.cancel();
          return;
        }
        this.stream = stream;
        stream.on('data', (res: ILeaseKeepAliveResponse) => {
          if (generation === this.generation) this.onKeepAlive(res);
        });
        stream.on('error', () => {
          if (generation === this.generation) this.reopenLater();
        });
        stream.on('end', () => {
          if (generation === this.generation) this.reopenLater();
        });
        this.sendKeepAlive();
        // etcd's Go client renews at a third of the TTL; two renewals may fail before expiry.
        this.keepAliveTimer = setInterval(
          () => this.sendKeepAlive(),
          Math.max(100, this.ttlMs / 3),
        );
      },
      () => {
        if (generation === this.generation) this.reopenLater();
      },
    );
  }

  private sendKeepAlive(): void {
    if (this.stream === undefined || this.unanswered.length >= MAX_UNANSWERED_KEEPALIVES) return;
    this.unanswered.push(Date.now());
    this.stream.write({ ID: this.id });
  }

  private onKeepAlive(res: ILeaseKeepAliveResponse): void {
    const sentAtMs = this.unanswered.shift();
    if (toInt(res.TTL) === 0) {
      this.markLost(new Error(`lease ${this.id} expired in etcd`));
      return;
    }
    if (sentAtMs !== undefined && sentAtMs > this.confirmedAtMs) {
      this.confirmedAtMs = sentAtMs;
      this.armWatchdog();
    }
  }

  /** The stream broke: try a new one shortly; the watchdog bounds how long that may take. */
  private reopenLater(): void {
    this.generation++;
    clearInterval(this.keepAliveTimer);
    this.dropStream();
    this.reopenTimer = setTimeout(() => {
      this.reopenTimer = undefined;
      if (!this.isLost) this.openStream();
    }, 200);
  }
}
