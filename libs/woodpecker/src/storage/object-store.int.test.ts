import { getEventListeners } from 'node:events';
import { connect, createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { createTestBucket, freePort, harness, uniqueName } from '@woodstream/testing';
import type { TestBucket } from '@woodstream/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { s3BucketConfig } from '../../test/s3-bucket-config.js';
import { StorageRejectedError, StorageUnavailableError } from '../errors.js';
import { describeObjectStoreContract } from '../testing/object-store-contract.js';
import { MemoryObjectStore } from './memory-object-store.js';
import { S3ObjectStore } from './s3-object-store.js';

describeObjectStoreContract(
  'MemoryObjectStore',
  () => {
    const store = new MemoryObjectStore();
    return Promise.resolve({ store, cleanup: () => store.close() });
  },
  { conditionalWrites: true },
);

describeObjectStoreContract(
  'MemoryObjectStore without conditional writes',
  () => {
    const store = new MemoryObjectStore({ conditionalWrites: false });
    return Promise.resolve({ store, cleanup: () => store.close() });
  },
  { conditionalWrites: false },
);

/**
 * Runs the contract against one S3-compatible server. The tests share one bucket (each test
 * has its own key prefix); each gets its own store, opened the way production opens it, so
 * every test also exercises the bucket check and the conditional-write probe.
 */
function describeS3Contract(
  server: 's3rver' | 'radosgw',
  conditionalWrites: boolean,
  keyPrefix: string,
): void {
  describe(`S3ObjectStore on ${server}`, () => {
    let bucket: TestBucket;

    beforeAll(async () => {
      bucket = await createTestBucket(harness()[server], server);
    });

    afterAll(async () => {
      await bucket.remove();
    });

    describeObjectStoreContract(
      `with keyPrefix '${keyPrefix}'`,
      async () => {
        const store = await S3ObjectStore.open({
          ...s3BucketConfig(harness()[server], bucket.name),
          keyPrefix,
        });
        return { store, cleanup: () => store.close() };
      },
      { conditionalWrites },
    );

    it('keeps every key under keyPrefix and deletes its probe objects', async ({ signal }) => {
      const store = await S3ObjectStore.open(
        { ...s3BucketConfig(harness()[server], bucket.name), keyPrefix },
        { signal },
      );
      try {
        const key = `${uniqueName('prefixed')}/k`;
        await store.put(key, Uint8Array.of(1), { signal });
        const raw = await bucket.client.send(new ListObjectsV2Command({ Bucket: bucket.name }), {
          abortSignal: signal,
        });
        const rawKeys = (raw.Contents ?? []).map((object) => object.Key ?? '');
        expect(rawKeys).toContain(`${keyPrefix}${key}`);
        expect(rawKeys.every((k) => k.startsWith(keyPrefix))).toBe(true);
        expect(rawKeys.filter((k) => k.includes('.probe/'))).toEqual([]);
      } finally {
        await store.close();
      }
    });
  });
}

describeS3Contract('s3rver', false, 'wal/');
describeS3Contract('radosgw', true, '');

describe('S3ObjectStore with one signal shared by many calls', () => {
  it("keeps one abort listener on the caller's signal for all its requests in flight", async ({
    signal,
  }) => {
    await using bucket = await createTestBucket(harness().s3rver, 'shared-signal');
    const store = await S3ObjectStore.open(s3BucketConfig(harness().s3rver, bucket.name), {
      signal,
    });
    try {
      const shared = new AbortController();
      const onTest = (): void => shared.abort(signal.reason);
      signal.addEventListener('abort', onTest, { once: true });
      const warnings: Error[] = [];
      const onWarning = (w: Error): void => void warnings.push(w);
      process.on('warning', onWarning);
      try {
        const calls = Array.from({ length: 24 }, (_, i) =>
          store.put(`k${i}`, Uint8Array.of(i), { signal: shared.signal }),
        );
        // All 24 requests are in flight: one listener serves them (not one each, and not none:
        // aborting the shared signal still aborts every request).
        expect(getEventListeners(shared.signal, 'abort')).toHaveLength(1);
        await Promise.all(calls);
        const heads = await Promise.all(
          Array.from({ length: 24 }, (_, i) => store.head(`k${i}`, { signal: shared.signal })),
        );
        expect(heads.every((h) => h?.sizeBytes === 1)).toBe(true);
        // Every request has settled: nothing is left listening on the shared signal.
        expect(getEventListeners(shared.signal, 'abort')).toHaveLength(0);
        await new Promise((resolve) => setImmediate(resolve));
      } finally {
        process.off('warning', onWarning);
        signal.removeEventListener('abort', onTest);
      }
      expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([]);
    } finally {
      await store.close();
    }
  });
});

describe('S3ObjectStore.open', () => {
  it('detects that s3rver ignores conditional writes', async ({ signal }) => {
    await using bucket = await createTestBucket(harness().s3rver, 'open');
    const store = await S3ObjectStore.open(s3BucketConfig(harness().s3rver, bucket.name), {
      signal,
    });
    expect(store.capabilities.conditionalWrites).toBe(false);
    await store.close();
  });

  it('detects that radosgw honours conditional writes', async ({ signal }) => {
    await using bucket = await createTestBucket(harness().radosgw, 'open');
    const store = await S3ObjectStore.open(s3BucketConfig(harness().radosgw, bucket.name), {
      signal,
    });
    expect(store.capabilities.conditionalWrites).toBe(true);
    await store.close();
  });

  it("reports no conditional writes on radosgw in 'disabled' mode, so create-if-absent puts overwrite", async ({
    signal,
  }) => {
    await using bucket = await createTestBucket(harness().radosgw, 'open');
    const store = await S3ObjectStore.open(
      { ...s3BucketConfig(harness().radosgw, bucket.name), conditionalWrites: 'disabled' },
      { signal },
    );
    expect(store.capabilities.conditionalWrites).toBe(false);
    // Without the capability a create-if-absent put overwrites, as the port promises.
    await store.put('k', Uint8Array.of(1), { signal, ifNoneMatch: true });
    expect(await store.put('k', Uint8Array.of(2), { signal, ifNoneMatch: true })).toMatchObject({
      status: 'created',
    });
    await store.close();
  });

  it("opens radosgw in 'enabled' mode", async ({ signal }) => {
    await using bucket = await createTestBucket(harness().radosgw, 'open');
    const store = await S3ObjectStore.open(
      { ...s3BucketConfig(harness().radosgw, bucket.name), conditionalWrites: 'enabled' },
      { signal },
    );
    expect(store.capabilities.conditionalWrites).toBe(true);
    await store.close();
  });

  it("fails with WAL_STORAGE_REJECTED in 'enabled' mode on s3rver, which ignores If-None-Match", async ({
    signal,
  }) => {
    await using bucket = await createTestBucket(harness().s3rver, 'open');
    const opening = S3ObjectStore.open(
      { ...s3BucketConfig(harness().s3rver, bucket.name), conditionalWrites: 'enabled' },
      { signal },
    );
    await expect(opening).rejects.toBeInstanceOf(StorageRejectedError);
    // The failed probe cleaned up after itself.
    const raw = await bucket.client.send(new ListObjectsV2Command({ Bucket: bucket.name }), {
      abortSignal: signal,
    });
    expect(raw.Contents ?? []).toEqual([]);
  });

  it.for(['s3rver', 'radosgw'] as const)(
    'fails with WAL_STORAGE_REJECTED for a missing bucket on %s',
    async (server, { signal }) => {
      const opening = S3ObjectStore.open(s3BucketConfig(harness()[server], uniqueName('missing')), {
        signal,
      });
      await expect(opening).rejects.toBeInstanceOf(StorageRejectedError);
      await expect(opening).rejects.toMatchObject({
        code: 'WAL_STORAGE_REJECTED',
        retryable: false,
      });
    },
  );

  it('fails with WAL_STORAGE_REJECTED for wrong credentials on radosgw', async ({ signal }) => {
    await using bucket = await createTestBucket(harness().radosgw, 'open');
    const opening = S3ObjectStore.open(
      {
        ...s3BucketConfig(harness().radosgw, bucket.name),
        accessKeyId: 'NOSUCHKEY',
        secretAccessKey: 'wrong-secret',
      },
      { signal },
    );
    await expect(opening).rejects.toMatchObject({ code: 'WAL_STORAGE_REJECTED' });
  });

  it('fails with WAL_STORAGE_UNAVAILABLE when nothing listens at the endpoint', async ({
    signal,
  }) => {
    const port = await freePort();
    const opening = S3ObjectStore.open(
      {
        endpoint: `http://127.0.0.1:${port}`,
        region: 'us-east-1',
        bucket: 'any',
        accessKeyId: 'a',
        secretAccessKey: 'b',
        requestTimeoutMs: 2_000,
        maxAttempts: 1,
      },
      { signal },
    );
    await expect(opening).rejects.toMatchObject({
      code: 'WAL_STORAGE_UNAVAILABLE',
      retryable: true,
    });
  });

  it('rejects invalid config with WAL_INVALID_ARGUMENT before any request', async () => {
    const base = s3BucketConfig(harness().s3rver, 'any');
    for (const config of [
      { ...base, bucket: '' },
      { ...base, maxAttempts: 0 },
      { ...base, requestTimeoutMs: 0 },
      { ...base, secretAccessKey: undefined },
    ]) {
      await expect(S3ObjectStore.open(config)).rejects.toMatchObject({
        code: 'WAL_INVALID_ARGUMENT',
      });
    }
  });
});

describe('S3ObjectStore when the connection fails', () => {
  let proxy: FaultyProxy;
  let bucket: TestBucket;
  let store: S3ObjectStore;

  beforeAll(async () => {
    bucket = await createTestBucket(harness().s3rver, 'faults');
    proxy = await FaultyProxy.start(harness().s3rver.endpoint);
    store = await S3ObjectStore.open({
      ...s3BucketConfig(harness().s3rver, bucket.name),
      endpoint: proxy.endpoint,
      // One attempt and a short bound, so each failure shows at once and as it is.
      maxAttempts: 1,
      requestTimeoutMs: 500,
    });
  });

  afterAll(async () => {
    await store.close();
    await proxy.stop();
    await bucket.remove();
  });

  /** Every call of the port against an existing and a missing key, and its outcome. */
  async function outcomes(signal: AbortSignal): Promise<unknown[]> {
    const settle = (call: Promise<unknown>): Promise<unknown> =>
      call.then(
        (value) => ({ value }),
        (err: unknown) => err,
      );
    return [
      await settle(store.get('existing', { signal })),
      await settle(store.get('missing', { signal })),
      await settle(store.get('existing', { signal, range: { start: 0, end: 1 } })),
      await settle(store.head('existing', { signal })),
      await settle(store.head('missing', { signal })),
      await settle(store.put('new', Uint8Array.of(1), { signal })),
      await settle(store.list('', { signal })),
      await settle(store.deleteMany(['existing'], { signal })),
    ];
  }

  const unavailable = { code: 'WAL_STORAGE_UNAVAILABLE', retryable: true };

  it('gives WAL_STORAGE_UNAVAILABLE, never undefined, when nothing listens', async ({ signal }) => {
    await proxy.setMode('pass');
    await store.put('existing', Uint8Array.of(1), { signal });
    await proxy.setMode('refuse');
    for (const outcome of await outcomes(signal)) {
      expect(outcome).toBeInstanceOf(StorageUnavailableError);
      expect(outcome).toMatchObject(unavailable);
    }
    await proxy.setMode('pass');
    expect(await store.get('existing', { signal })).toEqual(Uint8Array.of(1));
  });

  it('gives WAL_STORAGE_UNAVAILABLE when the server resets the connection', async ({ signal }) => {
    await proxy.setMode('pass');
    await store.put('existing', Uint8Array.of(1), { signal });
    await proxy.setMode('reset');
    for (const outcome of await outcomes(signal)) expect(outcome).toMatchObject(unavailable);
  });

  it('gives WAL_STORAGE_UNAVAILABLE when the server never answers within requestTimeoutMs', async ({
    signal,
  }) => {
    await proxy.setMode('pass');
    await store.put('existing', Uint8Array.of(1), { signal });
    await proxy.setMode('hang');
    for (const outcome of await outcomes(signal)) expect(outcome).toMatchObject(unavailable);
  });

  it('gives WAL_STORAGE_UNAVAILABLE when the server answers 503 SlowDown', async ({ signal }) => {
    await proxy.setMode('pass');
    await store.put('existing', Uint8Array.of(1), { signal });
    await proxy.setMode('slow-down');
    for (const outcome of await outcomes(signal)) expect(outcome).toMatchObject(unavailable);
  });

  it('gives WAL_STORAGE_REJECTED, never undefined, when the server answers 403', async ({
    signal,
  }) => {
    await proxy.setMode('pass');
    await store.put('existing', Uint8Array.of(1), { signal });
    await proxy.setMode('deny');
    for (const outcome of await outcomes(signal)) {
      expect(outcome).toBeInstanceOf(StorageRejectedError);
      expect(outcome).toMatchObject({ code: 'WAL_STORAGE_REJECTED', retryable: false });
    }
  });
});

describe("S3ObjectStore.open's conditional-write probe", () => {
  let proxy: FaultyProxy;
  let bucket: TestBucket;

  beforeAll(async () => {
    bucket = await createTestBucket(harness().radosgw, 'probe');
    proxy = await FaultyProxy.start(harness().radosgw.endpoint);
  });

  afterAll(async () => {
    await proxy.stop();
    await bucket.remove();
  });

  const open = (conditionalWrites: 'auto' | 'disabled', signal: AbortSignal) =>
    S3ObjectStore.open(
      {
        ...s3BucketConfig(harness().radosgw, bucket.name),
        endpoint: proxy.endpoint,
        conditionalWrites,
      },
      { signal },
    );

  it("checks the bucket and sends nothing else in 'disabled' mode", async ({ signal }) => {
    proxy.requests.length = 0;
    const store = await open('disabled', signal);
    await store.close();
    expect(store.capabilities.conditionalWrites).toBe(false);
    expect(proxy.requests).toEqual([`HEAD /${bucket.name}/`]);
  });

  it("writes one probe key twice and deletes it in 'auto' mode", async ({ signal }) => {
    proxy.requests.length = 0;
    const store = await open('auto', signal);
    await store.close();
    expect(store.capabilities.conditionalWrites).toBe(true);
    const [head, put1, put2, del, ...rest] = proxy.requests;
    expect(head).toBe(`HEAD /${bucket.name}/`);
    expect(put1).toMatch(new RegExp(`^PUT /${bucket.name}/\\.probe/[0-9a-f-]+$`));
    expect(put2).toBe(put1);
    expect(del).toBe(put1?.replace('PUT', 'DELETE'));
    expect(rest).toEqual([]);
  });
});

type ProxyMode = 'pass' | 'refuse' | 'reset' | 'hang' | 'slow-down' | 'deny';

/**
 * A TCP proxy in front of a real server that can be told to fail: `refuse` stops listening
 * (so new connections are refused), `reset` resets connections, `hang` swallows requests and
 * never answers, `slow-down` and `deny` answer every request with S3's 503 SlowDown and 403
 * AccessDenied. A mode applies to every request sent after it was set, also on the SDK's
 * pooled keep-alive connections: the proxy decides per chunk of request data rather than
 * dropping idle connections, which the SDK might pick up before it notices they are gone.
 * It records the request line (method and path) of every HTTP request it passes on.
 */
class FaultyProxy {
  readonly requests: string[] = [];
  #mode: ProxyMode = 'pass';
  #server: Server | undefined;
  readonly #sockets = new Set<Socket>();

  private constructor(
    readonly endpoint: string,
    private readonly port: number,
    private readonly target: URL,
  ) {}

  static async start(targetEndpoint: string): Promise<FaultyProxy> {
    const port = await freePort();
    const proxy = new FaultyProxy(`http://127.0.0.1:${port}`, port, new URL(targetEndpoint));
    await proxy.#listen();
    return proxy;
  }

  async setMode(mode: ProxyMode): Promise<void> {
    this.#mode = mode;
    if (mode === 'refuse') await this.#unlisten();
    else if (this.#server === undefined) await this.#listen();
  }

  async stop(): Promise<void> {
    await this.setMode('refuse');
    for (const socket of this.#sockets) socket.destroy();
  }

  #listen(): Promise<void> {
    const server = createServer((client) => this.#accept(client));
    this.#server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', resolve);
    });
  }

  #unlisten(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    // close() stops accepting at once; its callback waits for open connections, so not awaited.
    server?.close();
    return Promise.resolve();
  }

  #accept(client: Socket): void {
    this.#sockets.add(client);
    client.on('close', () => this.#sockets.delete(client));
    client.on('error', () => client.destroy());
    const upstream = connect(Number(this.target.port), this.target.hostname);
    this.#sockets.add(upstream);
    upstream.on('close', () => {
      this.#sockets.delete(upstream);
      client.destroy();
    });
    upstream.on('error', () => upstream.destroy());
    client.on('close', () => upstream.destroy());
    upstream.pipe(client);
    // Set once this proxy answered the connection itself; later chunks (bodies) are dropped.
    let answered = false;
    client.on('data', (chunk: Buffer) => {
      if (answered) return;
      switch (this.#mode) {
        case 'pass': {
          // Request lines start a chunk in practice (the probe's bodies are empty).
          const line = /^(GET|PUT|HEAD|POST|DELETE) (\S+) HTTP/.exec(chunk.toString('latin1'));
          if (line !== null) this.requests.push(`${line[1]} ${(line[2] ?? '').split('?')[0]}`);
          upstream.write(chunk);
          return;
        }
        case 'hang':
          return;
        case 'reset':
        case 'refuse':
          client.resetAndDestroy();
          return;
        case 'slow-down':
        case 'deny': {
          answered = true;
          upstream.unpipe(client);
          upstream.destroy();
          const [status, code] =
            this.#mode === 'slow-down'
              ? ['503 Slow Down', 'SlowDown']
              : ['403 Forbidden', 'AccessDenied'];
          const xml = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>from the test proxy</Message></Error>`;
          // A response to HEAD has headers only, even when they announce a length.
          const isHead = chunk.toString('latin1').startsWith('HEAD ');
          client.end(
            `HTTP/1.1 ${status}\r\nContent-Type: application/xml\r\nContent-Length: ${xml.length}\r\n` +
              `Connection: close\r\n\r\n${isHead ? '' : xml}`,
          );
          return;
        }
      }
    });
  }
}
