import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { StorageRejectedError, StorageUnavailableError } from '../errors.js';
import { MemoryObjectStore } from './memory-object-store.js';

// The contract suite (object-store.int.test.ts) covers the port's behaviour; these tests cover
// what only the fake has: fault injection and request counting for tests of higher layers.

describe('MemoryObjectStore fault injection', () => {
  it('rejects the next put with the injected error, then succeeds', async ({ signal }) => {
    const store = new MemoryObjectStore();
    const error = new StorageUnavailableError('injected');
    store.failNext('put', error);
    await expect(store.put('k', Uint8Array.of(1), { signal })).rejects.toBe(error);
    expect(await store.head('k', { signal })).toBeUndefined();
    expect(await store.put('k', Uint8Array.of(1), { signal })).toMatchObject({ status: 'created' });
  });

  it('fails the given number of calls of only that operation', async ({ signal }) => {
    const store = new MemoryObjectStore();
    await store.put('k', Uint8Array.of(1), { signal });
    const error = new StorageUnavailableError('injected');
    store.failNext('get', error, 2);
    await expect(store.get('k', { signal })).rejects.toBe(error);
    expect(await store.head('k', { signal })).toMatchObject({ sizeBytes: 1 });
    await expect(store.get('k', { signal })).rejects.toBe(error);
    expect(await store.get('k', { signal })).toEqual(Uint8Array.of(1));
  });

  it('uses queued failures in the order they were queued', async ({ signal }) => {
    const store = new MemoryObjectStore();
    const first = new StorageUnavailableError('first');
    const second = new StorageRejectedError('second');
    store.failNext('list', first);
    store.failNext('list', second);
    await expect(store.list('', { signal })).rejects.toBe(first);
    await expect(store.list('', { signal })).rejects.toBe(second);
    expect(await store.list('', { signal })).toEqual({ objects: [] });
  });

  it('leaves the keys in place when a deleteMany fails', async ({ signal }) => {
    const store = new MemoryObjectStore();
    await store.put('a', Uint8Array.of(1), { signal });
    store.failNext('delete', new StorageUnavailableError('injected'));
    await expect(store.deleteMany(['a'], { signal })).rejects.toThrow('injected');
    expect(await store.head('a', { signal })).toBeDefined();
  });

  it('drops queued failures of one operation or of all with clearFailures', async ({ signal }) => {
    const store = new MemoryObjectStore();
    const error = new StorageUnavailableError('injected');
    store.failNext('put', error, 1_000);
    store.failNext('list', error, 1_000);
    store.clearFailures('put');
    expect(await store.put('k', Uint8Array.of(1), { signal })).toMatchObject({ status: 'created' });
    await expect(store.list('', { signal })).rejects.toBe(error);
    store.clearFailures();
    expect((await store.list('', { signal })).objects).toHaveLength(1);
  });

  it('rejects a failure count below 1 with WAL_INVALID_ARGUMENT', () => {
    const store = new MemoryObjectStore();
    expect(() => store.failNext('head', new Error('x'), 0)).toThrow(
      expect.objectContaining({ code: 'WAL_INVALID_ARGUMENT' }),
    );
  });
});

describe('MemoryObjectStore request counting', () => {
  it('counts the requests of each operation, failed ones included', async ({ signal }) => {
    const store = new MemoryObjectStore();
    expect(store.requestCount).toEqual({ put: 0, get: 0, head: 0, list: 0, delete: 0 });
    await store.put('k', Uint8Array.of(1), { signal });
    await store.put('k', Uint8Array.of(2), { signal });
    await store.get('k', { signal });
    await store.get('k', { signal, range: { start: 0, end: 1 } });
    await store.head('missing', { signal });
    await store.list('', { signal });
    store.failNext('head', new StorageUnavailableError('injected'));
    await expect(store.head('k', { signal })).rejects.toThrow('injected');
    expect(store.requestCount).toEqual({ put: 2, get: 2, head: 2, list: 1, delete: 0 });
  });

  it('counts one delete request per 1000 keys and none for an empty list', async ({ signal }) => {
    const store = new MemoryObjectStore();
    await store.deleteMany([], { signal });
    expect(store.requestCount.delete).toBe(0);
    await store.deleteMany(['a'], { signal });
    expect(store.requestCount.delete).toBe(1);
    await store.deleteMany(
      Array.from({ length: 2001 }, (_, i) => `k${i}`),
      { signal },
    );
    expect(store.requestCount.delete).toBe(4);
  });

  it('does not count calls rejected before they reach the store', async ({ signal }) => {
    const store = new MemoryObjectStore();
    await expect(store.get('', { signal })).rejects.toMatchObject({
      code: 'WAL_INVALID_ARGUMENT',
    });
    await expect(
      store.head('k', { signal: AbortSignal.abort(new Error('aborted')) }),
    ).rejects.toThrow('aborted');
    await store.close();
    await expect(store.list('', { signal })).rejects.toMatchObject({ code: 'WAL_CLOSED' });
    expect(store.requestCount).toEqual({ put: 0, get: 0, head: 0, list: 0, delete: 0 });
  });

  it('hands out a snapshot that later requests do not change', async ({ signal }) => {
    const store = new MemoryObjectStore();
    const before = store.requestCount;
    await store.put('k', Uint8Array.of(1), { signal });
    expect(before.put).toBe(0);
    expect(store.requestCount.put).toBe(1);
  });
});

describe('MemoryObjectStore data', () => {
  it('uses the MD5 hex of the body as the ETag, like S3 for a single-part put', async ({
    signal,
  }) => {
    const store = new MemoryObjectStore();
    const body = Uint8Array.of(1, 2, 3);
    const result = await store.put('k', body, { signal });
    const md5 = createHash('md5').update(body).digest('hex');
    expect(result).toEqual({ status: 'created', etag: md5 });
    expect((await store.head('k', { signal }))?.etag).toBe(md5);
  });

  it('copies a Buffer body, whose slice() would share memory', async ({ signal }) => {
    const store = new MemoryObjectStore();
    const body = Buffer.from([1, 2, 3]);
    await store.put('k', body, { signal });
    body[0] = 9;
    expect(await store.get('k', { signal })).toEqual(Uint8Array.of(1, 2, 3));
  });

  it('lists keys in UTF-8 byte order, as S3 does, not UTF-16 order', async ({ signal }) => {
    const store = new MemoryObjectStore();
    // U+FF61 sorts after U+1F600 in UTF-16 code units but before it in UTF-8 bytes.
    const keys = ['\u{1F600}', '\uFF61', 'a'];
    for (const key of keys) await store.put(key, Uint8Array.of(1), { signal });
    const page = await store.list('', { signal });
    expect(page.objects.map((object) => object.key)).toEqual(['a', '\uFF61', '\u{1F600}']);
  });

  it('rejects an unknown continuation token with WAL_INVALID_ARGUMENT', async ({ signal }) => {
    const store = new MemoryObjectStore();
    await expect(store.list('', { signal, continuationToken: '!!' })).rejects.toMatchObject({
      code: 'WAL_INVALID_ARGUMENT',
    });
  });
});
