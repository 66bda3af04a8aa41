import { AbortFanout } from '@woodstream/common';
import { createHash, randomUUID } from 'node:crypto';
import {
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import type { S3ClientConfig } from '@aws-sdk/client-s3';
import {
  ClosedError,
  InvalidArgumentError,
  StorageRejectedError,
  StorageUnavailableError,
  WalError,
} from '../errors.js';
import {
  checkByteRange,
  checkListLimit,
  checkObjectKey,
  checkObjectMetadata,
} from './memory-object-store.js';
import type { ListPage, ObjectInfo, ObjectStore, PutOptions, PutResult } from './object-store.js';

/** How to reach one bucket of an S3-compatible store. */
export interface S3ObjectStoreConfig {
  /** Endpoint URL, e.g. `http://127.0.0.1:7480`. @default the AWS endpoint of `region` */
  endpoint?: string;
  region: string;
  bucket: string;
  /** Static credentials; give both or neither. @default the AWS SDK's default provider chain */
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Address buckets as `endpoint/bucket` rather than `bucket.endpoint`. @default true */
  forcePathStyle?: boolean;
  /** Prepended to every key, e.g. `wal/`; keys given to and returned by the store exclude it. @default '' */
  keyPrefix?: string;
  /**
   * Create-if-absent puts: `auto` probes the store at open, `enabled` probes and fails the open
   * with StorageRejectedError when the store ignores `If-None-Match`, `disabled` never probes
   * and reports the capability as false. @default 'auto'
   */
  conditionalWrites?: 'auto' | 'enabled' | 'disabled';
  /**
   * Bound on connecting, on waiting for response headers, and on any silence while a body
   * streams, per attempt. @default 30000 (min 1, max 600000)
   */
  requestTimeoutMs?: number;
  /** Attempts per request inside the AWS SDK, including the first. @default 3 (min 1, max 10) */
  maxAttempts?: number;
}

type ResolvedConfig = Required<
  Omit<S3ObjectStoreConfig, 'endpoint' | 'accessKeyId' | 'secretAccessKey'>
> &
  Pick<S3ObjectStoreConfig, 'endpoint' | 'accessKeyId' | 'secretAccessKey'>;

const MAX_REQUEST_TIMEOUT_MS = 600_000;
const MAX_ATTEMPTS_LIMIT = 10;
/** Most keys S3 accepts in one DeleteObjects request. */
const MAX_KEYS_PER_DELETE_REQUEST = 1000;
/** S3's limit on a full key (prefix included), in UTF-8 bytes. */
const MAX_KEY_BYTES = 1024;
/** Keys named in an error message about a failed multi-object delete, at most. */
const MAX_KEYS_IN_MESSAGE = 5;

/** Applies the documented defaults and rejects invalid or conflicting options. */
function withDefaults(config: S3ObjectStoreConfig): ResolvedConfig {
  const resolved: ResolvedConfig = {
    ...config,
    forcePathStyle: config.forcePathStyle ?? true,
    keyPrefix: config.keyPrefix ?? '',
    conditionalWrites: config.conditionalWrites ?? 'auto',
    requestTimeoutMs: config.requestTimeoutMs ?? 30_000,
    maxAttempts: config.maxAttempts ?? 3,
  };
  if (!resolved.region) throw new InvalidArgumentError('S3 region must not be empty');
  if (!resolved.bucket) throw new InvalidArgumentError('S3 bucket must not be empty');
  if ((resolved.accessKeyId === undefined) !== (resolved.secretAccessKey === undefined)) {
    throw new InvalidArgumentError('give both accessKeyId and secretAccessKey, or neither');
  }
  if (Buffer.byteLength(resolved.keyPrefix, 'utf8') >= MAX_KEY_BYTES) {
    throw new InvalidArgumentError(`keyPrefix must be shorter than ${MAX_KEY_BYTES} UTF-8 bytes`);
  }
  if (!['auto', 'enabled', 'disabled'].includes(resolved.conditionalWrites)) {
    throw new InvalidArgumentError(
      `conditionalWrites must be auto, enabled or disabled, got ${String(resolved.conditionalWrites)}`,
    );
  }
  const { requestTimeoutMs, maxAttempts } = resolved;
  if (
    !Number.isSafeInteger(requestTimeoutMs) ||
    requestTimeoutMs < 1 ||
    requestTimeoutMs > MAX_REQUEST_TIMEOUT_MS
  ) {
    throw new InvalidArgumentError(
      `requestTimeoutMs must be an integer in [1, ${MAX_REQUEST_TIMEOUT_MS}], got ${requestTimeoutMs}`,
    );
  }
  if (!Number.isSafeInteger(maxAttempts) || maxAttempts < 1 || maxAttempts > MAX_ATTEMPTS_LIMIT) {
    throw new InvalidArgumentError(
      `maxAttempts must be an integer in [1, ${MAX_ATTEMPTS_LIMIT}], got ${maxAttempts}`,
    );
  }
  return resolved;
}

function makeClient(config: ResolvedConfig): S3Client {
  const clientConfig: S3ClientConfig = {
    region: config.region,
    forcePathStyle: config.forcePathStyle,
    maxAttempts: config.maxAttempts,
    // With the SDK's default (WHEN_SUPPORTED) bodies go out aws-chunked with a checksum
    // trailer: s3rver stores the framing inside the object and radosgw 16 answers 411.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: {
      connectionTimeout: config.requestTimeoutMs,
      requestTimeout: config.requestTimeoutMs,
      // Without this the handler only logs a warning when requestTimeout passes.
      throwOnRequestTimeout: true,
      // requestTimeout stops at the response headers; this bounds a stalled body.
      socketTimeout: config.requestTimeoutMs,
    },
  };
  if (config.endpoint !== undefined) clientConfig.endpoint = config.endpoint;
  if (config.accessKeyId !== undefined && config.secretAccessKey !== undefined) {
    clientConfig.credentials = {
      accessKeyId: config.accessKeyId,
      secretAccessKey: config.secretAccessKey,
    };
  }
  return new S3Client(clientConfig);
}

/**
 * {@link ObjectStore} on one bucket of an S3-compatible store (AWS S3, Ceph radosgw, s3rver),
 * through the AWS SDK v3. Safe for concurrent use; connections are pooled by the SDK.
 *
 * Errors: transient failures (5xx, 429, throttling, timeouts, refused or reset connections)
 * reject with StorageUnavailableError, auth and configuration failures (403, missing bucket,
 * bad credentials, other 4xx) with StorageRejectedError, an aborted signal with its reason,
 * and calls after {@link close} with ClosedError. A missing key is `undefined`, never an error,
 * and an error is never reported as a missing key — with one gap S3 leaves open: a HEAD
 * response has no body, so `head` cannot tell a key that is missing from a bucket that was
 * deleted after {@link open} checked it.
 *
 * With SDK retries (`maxAttempts` > 1) a create-if-absent put whose response was lost and whose
 * retry then found its own object reports `exists`. Callers that must tell the two apart
 * compare the object's ETag (the MD5 of the body on a single-part put) with their own.
 */
export class S3ObjectStore implements ObjectStore {
  readonly capabilities: { readonly conditionalWrites: boolean };

  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #keyPrefix: string;
  #closed = false;

  private constructor(client: S3Client, config: ResolvedConfig, conditionalWrites: boolean) {
    this.#client = client;
    this.#bucket = config.bucket;
    this.#keyPrefix = config.keyPrefix;
    this.capabilities = { conditionalWrites };
  }

  /**
   * Connects to the bucket: checks that it exists and is accessible (HeadBucket), then decides
   * `capabilities.conditionalWrites` as `config.conditionalWrites` says. The probe writes and
   * deletes one empty object under `<keyPrefix>.probe/`.
   *
   * Rejects with InvalidArgumentError for invalid config, StorageRejectedError when the bucket
   * is missing or access is denied (or `enabled` was asked of a store that ignores
   * `If-None-Match`), StorageUnavailableError when the store cannot be reached.
   */
  static async open(
    config: S3ObjectStoreConfig,
    options: { signal?: AbortSignal } = {},
  ): Promise<S3ObjectStore> {
    const resolved = withDefaults(config);
    const { signal } = options;
    signal?.throwIfAborted();
    const client = makeClient(resolved);
    try {
      await withRequestSignal(signal, (abortSignal) =>
        client.send(new HeadBucketCommand({ Bucket: resolved.bucket }), { abortSignal }),
      ).catch((err: unknown) => {
        throw toStorageError(err, `S3 bucket ${resolved.bucket} check`, signal);
      });
      let conditionalWrites = false;
      if (resolved.conditionalWrites !== 'disabled') {
        conditionalWrites = await probeConditionalWrites(client, resolved, signal);
        if (!conditionalWrites && resolved.conditionalWrites === 'enabled') {
          throw new StorageRejectedError(
            `conditionalWrites is 'enabled' but bucket ${resolved.bucket} ignores If-None-Match`,
          );
        }
      }
      return new S3ObjectStore(client, resolved, conditionalWrites);
    } catch (err) {
      client.destroy();
      throw err;
    }
  }

  /**
   * Writes `body` under `key`. The caller must not change `body` until the promise settles.
   * With `ifNoneMatch` on a store with conditional writes, a taken key gives `exists` (S3's
   * 412, or 409 when a concurrent conditional put is in flight) and leaves the object as it was.
   */
  async put(key: string, body: Uint8Array, options: PutOptions = {}): Promise<PutResult> {
    const { signal } = options;
    this.#checkOpen();
    const fullKey = this.#fullKey(key);
    if (!(body instanceof Uint8Array)) throw new InvalidArgumentError('body must be a Uint8Array');
    const metadata = { ...options.metadata };
    checkObjectMetadata(metadata);
    // Stores without the capability get no header: the port promises an overwrite there.
    const ifNoneMatch = options.ifNoneMatch === true && this.capabilities.conditionalWrites;
    return await this.#call(`put of ${fullKey}`, signal, async () => {
      const command = new PutObjectCommand({
        Bucket: this.#bucket,
        Key: fullKey,
        Body: body,
        ContentLength: body.byteLength,
        ContentType: 'application/octet-stream',
        Metadata: metadata,
        IfNoneMatch: ifNoneMatch ? '*' : undefined,
      });
      try {
        const output = await withRequestSignal(signal, (abortSignal) =>
          this.#client.send(command, { abortSignal }),
        );
        // Real stores always send an ETag; for a single-part put it is the body's MD5.
        const etag = output.ETag !== undefined ? unquoteEtag(output.ETag) : md5Hex(body);
        return { status: 'created', etag };
      } catch (err) {
        if (ifNoneMatch && isKeyTaken(err)) return { status: 'exists' };
        throw err;
      }
    });
  }

  /**
   * The object's bytes, or `undefined` when the key does not exist. `range` is `[start, end)`,
   * clamped to the object: a range that starts at or after the end gives empty bytes.
   */
  async get(
    key: string,
    options: { signal?: AbortSignal; range?: { start: number; end: number } } = {},
  ): Promise<Uint8Array | undefined> {
    const { signal, range } = options;
    this.#checkOpen();
    const fullKey = this.#fullKey(key);
    if (range !== undefined) checkByteRange(range);
    // HTTP cannot express an empty range; HEAD still tells a missing key from an empty result.
    if (range !== undefined && range.start === range.end) {
      const info = await this.head(key, { signal });
      return info === undefined ? undefined : new Uint8Array(0);
    }
    return await this.#call(`get of ${fullKey}`, signal, async () => {
      const command = new GetObjectCommand({
        Bucket: this.#bucket,
        Key: fullKey,
        Range: range === undefined ? undefined : `bytes=${range.start}-${range.end - 1}`,
      });
      let output;
      try {
        output = await withRequestSignal(signal, (abortSignal) =>
          this.#client.send(command, { abortSignal }),
        );
      } catch (err) {
        if (errorName(err) === 'NoSuchKey') return undefined;
        // 416: the range starts at or after the end (radosgw also says so for any range of
        // an empty object), which the port defines as empty bytes.
        if (range !== undefined && httpStatus(err) === 416) return new Uint8Array(0);
        throw err;
      }
      const body = output.Body;
      if (body === undefined) throw new StorageRejectedError(`get of ${fullKey}: no body`);
      const served = parseContentRange(output.ContentRange);
      if (output.ContentRange !== undefined && served === undefined) {
        destroyBody(body);
        throw new StorageRejectedError(
          `get of ${fullKey}: unreadable Content-Range ${output.ContentRange}`,
        );
      }
      if (range !== undefined && served !== undefined && range.start >= served.total) {
        // s3rver answers a range of an empty object with 206, `bytes 0-0/0` and a
        // Content-Length of 1 it never sends; reading that body would hang up.
        destroyBody(body);
        return new Uint8Array(0);
      }
      if (range !== undefined && served !== undefined && served.start !== range.start) {
        destroyBody(body);
        throw new StorageRejectedError(
          `get of ${fullKey}: asked for bytes from ${range.start}, got ${output.ContentRange}`,
        );
      }
      const bytes = toPlainBytes(await body.transformToByteArray());
      if (output.ContentLength !== undefined && bytes.byteLength !== output.ContentLength) {
        throw new StorageUnavailableError(
          `get of ${fullKey}: body has ${bytes.byteLength} bytes, Content-Length said ${output.ContentLength}`,
        );
      }
      if (range === undefined) return bytes;
      // Without Content-Range the store ignored Range and sent the whole object (200).
      const offset = served === undefined ? range.start : 0;
      const total = served?.total ?? bytes.byteLength;
      const wanted = Math.max(0, Math.min(range.end, total) - range.start);
      if (bytes.byteLength < offset + wanted) {
        throw new StorageUnavailableError(
          `get of ${fullKey}: got ${bytes.byteLength} bytes of a range of ${wanted}`,
        );
      }
      // Trim what the store sent beyond the range: s3rver reads `bytes=0-0` as `bytes=0-`.
      return offset === 0 && bytes.byteLength === wanted
        ? bytes
        : bytes.slice(offset, offset + wanted);
    });
  }

  /** Size, unquoted ETag and user metadata of the object, or `undefined` when it is missing. */
  async head(key: string, options: { signal?: AbortSignal } = {}): Promise<ObjectInfo | undefined> {
    const { signal } = options;
    this.#checkOpen();
    const fullKey = this.#fullKey(key);
    return await this.#call(`head of ${fullKey}`, signal, async () => {
      const command = new HeadObjectCommand({ Bucket: this.#bucket, Key: fullKey });
      let output;
      try {
        output = await withRequestSignal(signal, (abortSignal) =>
          this.#client.send(command, { abortSignal }),
        );
      } catch (err) {
        // A HEAD response has no body, so the SDK names every 404 NotFound.
        const name = errorName(err);
        if (httpStatus(err) === 404 && (name === 'NotFound' || name === 'NoSuchKey')) {
          return undefined;
        }
        throw err;
      }
      if (output.ContentLength === undefined || output.ETag === undefined) {
        throw new StorageRejectedError(`head of ${fullKey}: no Content-Length or ETag`);
      }
      return {
        key,
        sizeBytes: output.ContentLength,
        etag: unquoteEtag(output.ETag),
        metadata: { ...output.Metadata },
      };
    });
  }

  /** One page of keys starting with `prefix`, ascending; see {@link ObjectStore.list}. */
  async list(
    prefix: string,
    options: {
      signal?: AbortSignal;
      continuationToken?: string;
      startAfter?: string;
      limit?: number;
    } = {},
  ): Promise<ListPage> {
    const { signal, continuationToken, startAfter } = options;
    this.#checkOpen();
    if (typeof prefix !== 'string') throw new InvalidArgumentError('prefix must be a string');
    const limit = checkListLimit(options.limit);
    const fullPrefix = this.#keyPrefix + prefix;
    return await this.#call(`list of ${fullPrefix}`, signal, async () => {
      const command = new ListObjectsV2Command({
        Bucket: this.#bucket,
        Prefix: fullPrefix,
        MaxKeys: limit,
        ContinuationToken: continuationToken,
        StartAfter: startAfter === undefined ? undefined : this.#keyPrefix + startAfter,
      });
      const output = await withRequestSignal(signal, (abortSignal) =>
        this.#client.send(command, { abortSignal }),
      );
      const objects = (output.Contents ?? []).map((object): ObjectInfo => {
        const fullKey = object.Key;
        if (fullKey === undefined || !fullKey.startsWith(fullPrefix)) {
          throw new StorageRejectedError(
            `list of ${fullPrefix} returned key ${String(fullKey)} outside the prefix`,
          );
        }
        return {
          key: fullKey.slice(this.#keyPrefix.length),
          sizeBytes: object.Size ?? 0,
          etag: unquoteEtag(object.ETag ?? ''),
        };
      });
      if (output.IsTruncated !== true) return { objects };
      if (output.NextContinuationToken === undefined) {
        throw new StorageRejectedError(`list of ${fullPrefix} was truncated without a token`);
      }
      return { objects, continuationToken: output.NextContinuationToken };
    });
  }

  /**
   * Deletes the keys, 1000 per DeleteObjects request, one request at a time. Missing keys are
   * not an error. When a batch request fails transiently, its keys are deleted again one by
   * one (s3rver's multi-object delete fails with 500 when it deletes keys of one "directory"
   * in parallel); so are the keys a batch reports as not deleted, and the call fails when a
   * single delete fails. A key reported as AccessDenied fails the call with
   * StorageRejectedError. On failure some keys may have been deleted; deleting again is safe.
   */
  async deleteMany(keys: readonly string[], options: { signal?: AbortSignal } = {}): Promise<void> {
    const { signal } = options;
    this.#checkOpen();
    const fullKeys = [...new Set(keys.map((key) => this.#fullKey(key)))];
    signal?.throwIfAborted();
    for (let i = 0; i < fullKeys.length; i += MAX_KEYS_PER_DELETE_REQUEST) {
      const batch = fullKeys.slice(i, i + MAX_KEYS_PER_DELETE_REQUEST);
      let undeleted: readonly string[];
      try {
        undeleted = await this.#call(`delete of ${batch.length} keys`, signal, () =>
          this.#deleteBatch(batch, signal),
        );
      } catch (err) {
        if (!(err instanceof StorageUnavailableError)) throw err;
        undeleted = batch;
      }
      for (const fullKey of undeleted) {
        await this.#call(`delete of ${fullKey}`, signal, async () => {
          const command = new DeleteObjectCommand({ Bucket: this.#bucket, Key: fullKey });
          await withRequestSignal(signal, (abortSignal) =>
            this.#client.send(command, { abortSignal }),
          );
        });
      }
    }
  }

  /** Releases the SDK's connections. Idempotent; every later call rejects with ClosedError. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#client.destroy();
    }
    return Promise.resolve();
  }

  /** One DeleteObjects request; resolves to the keys the store reports as not deleted. */
  async #deleteBatch(fullKeys: string[], signal: AbortSignal | undefined): Promise<string[]> {
    const command = new DeleteObjectsCommand({
      Bucket: this.#bucket,
      // Quiet: the response lists only the keys that failed.
      Delete: { Objects: fullKeys.map((Key) => ({ Key })), Quiet: true },
    });
    addContentMd5(command);
    const output = await withRequestSignal(signal, (abortSignal) =>
      this.#client.send(command, { abortSignal }),
    );
    // Deleting a missing key succeeds on S3; a store that reports it anyway is still right.
    const failed = (output.Errors ?? []).filter((error) => error.Code !== 'NoSuchKey');
    const denied = failed.filter((error) => error.Code === 'AccessDenied');
    if (denied.length > 0) {
      const sample = denied
        .slice(0, MAX_KEYS_IN_MESSAGE)
        .map((error) => String(error.Key))
        .join(', ');
      throw new StorageRejectedError(
        `delete denied for ${denied.length} of ${fullKeys.length} keys (${sample})`,
      );
    }
    const undeleted = failed.map((error) => error.Key);
    // An error that names no key leaves the whole batch in doubt.
    return undeleted.every((key): key is string => key !== undefined) ? undeleted : fullKeys;
  }

  #checkOpen(): void {
    if (this.#closed) throw new ClosedError('the object store is closed');
  }

  /** The key in the bucket; rejects keys the port or S3 would refuse. */
  #fullKey(key: string): string {
    checkObjectKey(key);
    const fullKey = this.#keyPrefix + key;
    if (Buffer.byteLength(fullKey, 'utf8') > MAX_KEY_BYTES) {
      throw new InvalidArgumentError(
        `key with keyPrefix must be at most ${MAX_KEY_BYTES} UTF-8 bytes`,
      );
    }
    return fullKey;
  }

  /** Runs one operation against the store and maps whatever it throws to the port's errors. */
  async #call<T>(what: string, signal: AbortSignal | undefined, run: () => Promise<T>): Promise<T> {
    signal?.throwIfAborted();
    try {
      return await run();
    } catch (err) {
      // close() destroys the client under calls in flight; say why they failed.
      if (this.#closed && !(signal?.aborted ?? false)) {
        throw new ClosedError('the object store was closed during the call', { cause: err });
      }
      throw toStorageError(err, `S3 ${what}`, signal);
    }
  }
}

// One abort listener per caller signal for all of its requests in flight (see withRequestSignal).
const requestAborts = new AbortFanout();

/**
 * Runs one SDK request with a signal of its own, aborted with the caller's. The SDK adds abort
 * listeners to the signal it is given, per request: given the caller's own signal, callers that
 * share one among many concurrent calls (a writer's lifetime signal) tripped Node's
 * listener-leak warning. (`AbortSignal.any` adds no listener, but on Node 20 each derived signal
 * stays registered on its source until that is aborted or collected: a leak for a long-lived one.)
 */
async function withRequestSignal<T>(
  signal: AbortSignal | undefined,
  request: (abortSignal: AbortSignal | undefined) => Promise<T>,
): Promise<T> {
  if (signal === undefined) return request(undefined);
  const own = new AbortController();
  const onAbort = (): void => own.abort(signal.reason);
  requestAborts.add(signal, onAbort);
  try {
    return await request(own.signal);
  } finally {
    requestAborts.remove(signal, onAbort);
  }
}

/**
 * Whether the store enforces `If-None-Match: *`: writes a fresh key twice with it and looks at
 * the second answer. Deletes the probe key afterwards, also when the probe failed.
 */
async function probeConditionalWrites(
  client: S3Client,
  config: ResolvedConfig,
  signal: AbortSignal | undefined,
): Promise<boolean> {
  const key = `${config.keyPrefix}.probe/${randomUUID()}`;
  const what = `S3 conditional-write probe of ${config.bucket}/${key}`;
  const putIfAbsent = (): Promise<unknown> =>
    withRequestSignal(signal, (abortSignal) =>
      client.send(
        new PutObjectCommand({
          Bucket: config.bucket,
          Key: key,
          Body: new Uint8Array(0),
          ContentLength: 0,
          IfNoneMatch: '*',
        }),
        { abortSignal },
      ),
    );
  let result: boolean | undefined;
  let failure: Error | undefined;
  try {
    await putIfAbsent();
    try {
      await putIfAbsent();
      result = false;
    } catch (err) {
      if (!isKeyTaken(err)) throw err;
      result = true;
    }
  } catch (err) {
    failure = toStorageError(err, what, signal);
  }
  try {
    await withRequestSignal(signal, (abortSignal) =>
      client.send(new DeleteObjectCommand({ Bucket: config.bucket, Key: key }), { abortSignal }),
    );
  } catch (err) {
    // The probe's own failure says more than the cleanup's; a leftover empty object is harmless.
    failure ??= toStorageError(err, `${what} (cleanup)`, signal);
  }
  if (failure !== undefined) throw failure;
  if (result === undefined) throw new StorageUnavailableError(`${what} did not finish`);
  return result;
}

/** Adds Content-MD5 to a DeleteObjects request; S3 and older compatible stores require it. */
function addContentMd5(command: DeleteObjectsCommand): void {
  command.middlewareStack.add(
    (next) => async (args) => {
      const request = args.request as { headers?: Record<string, string>; body?: unknown };
      if (request.headers !== undefined && typeof request.body === 'string') {
        request.headers['content-md5'] = createHash('md5').update(request.body).digest('base64');
      }
      return next(args);
    },
    { step: 'build', name: 'woodpeckerContentMd5' },
  );
}

// Error names (S3 error codes and SDK error names) that a retry may fix.
const TRANSIENT_NAMES = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'ThrottledException',
  'RequestThrottled',
  'RequestThrottledException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'BandwidthLimitExceeded',
  'RequestTimeout',
  'RequestTimeoutException',
  'TimeoutError',
  'InternalError',
  'ServiceUnavailable',
  // 409s that say a concurrent operation on the same key is in flight.
  'OperationAborted',
  'ConditionalRequestConflict',
  // The SDK corrects its clock offset from the response and signs the retry right.
  'RequestTimeTooSkewed',
]);
// Error names that no retry fixes: auth and configuration.
const REJECTED_NAMES = new Set([
  'AccessDenied',
  'NoSuchBucket',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'CredentialsProviderError',
]);
// Node socket and DNS error codes of a connection that failed or broke.
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'ESOCKETTIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'EADDRNOTAVAIL',
  'EAI_AGAIN',
  'ENOTFOUND',
  'ERR_STREAM_PREMATURE_CLOSE',
  'UND_ERR_SOCKET',
]);

/**
 * Maps an error from the SDK (or from reading a body) to the port's errors. The abort reason
 * wins over everything; WalErrors pass through; errors that match no rule pass through
 * unchanged and so are never retried (fail closed).
 */
function toStorageError(err: unknown, what: string, signal: AbortSignal | undefined): Error {
  if (signal?.aborted === true) return signal.reason as Error;
  if (err instanceof WalError) return err;
  const name = errorName(err);
  const status = httpStatus(err);
  const code = (err as { code?: unknown } | undefined)?.code;
  const message = err instanceof Error ? err.message : String(err);
  const detail = `${what} failed: ${name ?? 'error'}${status === undefined ? '' : ` (HTTP ${status})`}: ${message}`;
  if (name !== undefined && REJECTED_NAMES.has(name)) {
    return new StorageRejectedError(detail, { cause: err });
  }
  if (
    (name !== undefined && TRANSIENT_NAMES.has(name)) ||
    (status !== undefined && (status >= 500 || status === 429)) ||
    (typeof code === 'string' && NETWORK_CODES.has(code)) ||
    /socket hang up/i.test(message)
  ) {
    return new StorageUnavailableError(detail, { cause: err });
  }
  if (status !== undefined && status >= 300) {
    return new StorageRejectedError(detail, { cause: err });
  }
  return err instanceof Error ? err : new Error(detail, { cause: err });
}

/** The S3 error code or SDK error name. */
function errorName(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const { Code, name } = err as { Code?: unknown; name?: unknown };
  if (typeof Code === 'string') return Code;
  return typeof name === 'string' ? name : undefined;
}

function httpStatus(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const status = (err as { $metadata?: { httpStatusCode?: unknown } }).$metadata?.httpStatusCode;
  return typeof status === 'number' ? status : undefined;
}

/** Whether a create-if-absent put failed because the key is taken. */
function isKeyTaken(err: unknown): boolean {
  const status = httpStatus(err);
  const name = errorName(err);
  return (
    status === 412 ||
    name === 'PreconditionFailed' ||
    (status === 409 && name === 'ConditionalRequestConflict')
  );
}

function unquoteEtag(etag: string): string {
  return etag.replace(/^"(.*)"$/, '$1');
}

/** `Content-Range: bytes first-last/total` as numbers, when the store sent one. */
function parseContentRange(
  contentRange: string | undefined,
): { start: number; total: number } | undefined {
  const match =
    contentRange === undefined ? null : /^bytes (\d+)-\d+\/(\d+)$/.exec(contentRange.trim());
  if (match?.[1] === undefined || match[2] === undefined) return undefined;
  return { start: Number(match[1]), total: Number(match[2]) };
}

function destroyBody(body: unknown): void {
  const destroy = (body as { destroy?: unknown }).destroy;
  if (typeof destroy === 'function') (destroy as () => void).call(body);
}

/** A plain Uint8Array view (the SDK may hand out a Buffer, whose slice() does not copy). */
function toPlainBytes(bytes: Uint8Array): Uint8Array {
  return Object.getPrototypeOf(bytes) === Uint8Array.prototype
    ? bytes
    : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function md5Hex(bytes: Uint8Array): string {
  return createHash('md5').update(bytes).digest('hex');
}
