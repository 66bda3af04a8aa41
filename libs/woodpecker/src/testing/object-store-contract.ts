import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { uniqueName } from '@woodstream/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ClosedError, InvalidArgumentError } from '../errors.js';
import type { ObjectStore, PutResult } from '../storage/object-store.js';

/**
 * Makes a fresh store for one test. `cleanup` releases it (and whatever the factory created
 * for it); it runs after the test, also when the test failed or closed the store itself.
 */
export type ObjectStoreFactory = () => Promise<{
  store: ObjectStore;
  cleanup: () => Promise<void>;
}>;

const MIB = 1024 * 1024;
/** Racers in the create-if-absent race: enough to overlap on a real server. */
const RACERS = 16;

/**
 * Registers the behaviour every {@link ObjectStore} adapter must show, as one vitest
 * `describe` named `name`. Each test gets its own store from `factory` and its own key prefix,
 * so tests neither see nor disturb each other's keys, and may share a bucket.
 *
 * `options.conditionalWrites` says whether the store under test must enforce create-if-absent
 * puts (true: exactly one of concurrent racers wins) or must report that it does not (false:
 * the capability is false and such puts overwrite). @default { conditionalWrites: true }
 */
export function describeObjectStoreContract(
  name: string,
  factory: ObjectStoreFactory,
  options: { conditionalWrites: boolean } = { conditionalWrites: true },
): void {
  describe(name, () => {
    let store: ObjectStore;
    let cleanup: (() => Promise<void>) | undefined;
    // Every key of a test starts with this; no other test uses it.
    let p: string;

    beforeEach(async () => {
      ({ store, cleanup } = await factory());
      p = `${uniqueName('contract')}/`;
    });

    afterEach(async () => {
      const done = cleanup;
      cleanup = undefined;
      await done?.();
    });

    async function putAll(keys: readonly string[], signal: AbortSignal): Promise<void> {
      for (const key of keys) await store.put(key, bytes(key.length), { signal });
    }

    /** Every key under `prefix`, following continuation tokens. */
    async function listAll(prefix: string, signal: AbortSignal): Promise<string[]> {
      const keys: string[] = [];
      let continuationToken: string | undefined;
      do {
        const page = await store.list(prefix, { signal, continuationToken });
        keys.push(...page.objects.map((object) => object.key));
        continuationToken = page.continuationToken;
      } while (continuationToken !== undefined);
      return keys;
    }

    describe('put and get', () => {
      it('round-trips every byte value', async ({ signal }) => {
        const body = Uint8Array.from({ length: 512 }, (_, i) => i % 256);
        const result = await store.put(`${p}k`, body, { signal });
        expect(result).toEqual({ status: 'created', etag: expect.any(String) as string });
        expect(await store.get(`${p}k`, { signal })).toEqual(body);
      });

      it('round-trips a 0-byte body', async ({ signal }) => {
        await store.put(`${p}empty`, new Uint8Array(0), { signal });
        expect(await store.get(`${p}empty`, { signal })).toEqual(new Uint8Array(0));
        expect((await store.head(`${p}empty`, { signal }))?.sizeBytes).toBe(0);
      });

      it('round-trips a 1 MiB body', async ({ signal }) => {
        const body = new Uint8Array(randomBytes(MIB));
        await store.put(`${p}big`, body, { signal });
        const got = await store.get(`${p}big`, { signal });
        expect(got?.byteLength).toBe(MIB);
        // Byte-wise toEqual on 1 MiB is slow and prints a useless diff; compare in one call.
        expect(got !== undefined && Buffer.from(got).equals(body)).toBe(true);
      });

      it('keeps stored bytes apart from the buffers callers pass in and get back', async ({
        signal,
      }) => {
        const body = Uint8Array.of(1, 2, 3);
        await store.put(`${p}k`, body, { signal });
        body[0] = 99;
        const first = await store.get(`${p}k`, { signal });
        expect(first).toEqual(Uint8Array.of(1, 2, 3));
        if (first !== undefined) first[1] = 99;
        expect(await store.get(`${p}k`, { signal })).toEqual(Uint8Array.of(1, 2, 3));
      });

      it('overwrites an existing key when ifNoneMatch is not set', async ({ signal }) => {
        await store.put(`${p}k`, Uint8Array.of(1), { signal });
        const second = await store.put(`${p}k`, Uint8Array.of(2, 2), { signal });
        expect(second.status).toBe('created');
        expect(await store.get(`${p}k`, { signal })).toEqual(Uint8Array.of(2, 2));
      });

      it('returns undefined from get and head for a missing key', async ({ signal }) => {
        expect(await store.get(`${p}missing`, { signal })).toBeUndefined();
        expect(await store.head(`${p}missing`, { signal })).toBeUndefined();
        expect(
          await store.get(`${p}missing`, { signal, range: { start: 0, end: 10 } }),
        ).toBeUndefined();
      });

      it('rejects an empty key and invalid metadata with WAL_INVALID_ARGUMENT', async ({
        signal,
      }) => {
        await expect(store.put('', Uint8Array.of(1), { signal })).rejects.toBeInstanceOf(
          InvalidArgumentError,
        );
        await expect(store.get('', { signal })).rejects.toMatchObject({
          code: 'WAL_INVALID_ARGUMENT',
        });
        await expect(
          store.put(`${p}k`, Uint8Array.of(1), { signal, metadata: { Upper: 'x' } }),
        ).rejects.toMatchObject({ code: 'WAL_INVALID_ARGUMENT' });
        expect(await store.head(`${p}k`, { signal })).toBeUndefined();
      });
    });

    describe('ranged get', () => {
      const body = Uint8Array.from({ length: 10 }, (_, i) => i);

      it('returns the bytes [start, end) of the object', async ({ signal }) => {
        await store.put(`${p}k`, body, { signal });
        expect(await store.get(`${p}k`, { signal, range: { start: 2, end: 5 } })).toEqual(
          Uint8Array.of(2, 3, 4),
        );
        expect(await store.get(`${p}k`, { signal, range: { start: 0, end: 1 } })).toEqual(
          Uint8Array.of(0),
        );
      });

      it('returns the tail for a range that ends at or past the end', async ({ signal }) => {
        await store.put(`${p}k`, body, { signal });
        expect(await store.get(`${p}k`, { signal, range: { start: 7, end: 10 } })).toEqual(
          Uint8Array.of(7, 8, 9),
        );
        expect(await store.get(`${p}k`, { signal, range: { start: 7, end: 1000 } })).toEqual(
          Uint8Array.of(7, 8, 9),
        );
      });

      it('returns empty bytes for a range that starts at or after the end', async ({ signal }) => {
        await store.put(`${p}k`, body, { signal });
        expect(await store.get(`${p}k`, { signal, range: { start: 10, end: 20 } })).toEqual(
          new Uint8Array(0),
        );
        expect(await store.get(`${p}k`, { signal, range: { start: 50, end: 60 } })).toEqual(
          new Uint8Array(0),
        );
      });

      it('returns empty bytes for an empty range and for any range of an empty object', async ({
        signal,
      }) => {
        await store.put(`${p}k`, body, { signal });
        await store.put(`${p}empty`, new Uint8Array(0), { signal });
        expect(await store.get(`${p}k`, { signal, range: { start: 3, end: 3 } })).toEqual(
          new Uint8Array(0),
        );
        expect(await store.get(`${p}empty`, { signal, range: { start: 0, end: 10 } })).toEqual(
          new Uint8Array(0),
        );
        expect(
          await store.get(`${p}missing`, { signal, range: { start: 3, end: 3 } }),
        ).toBeUndefined();
      });

      it('rejects a range with end before start with WAL_INVALID_ARGUMENT', async ({ signal }) => {
        await store.put(`${p}k`, body, { signal });
        await expect(
          store.get(`${p}k`, { signal, range: { start: 5, end: 4 } }),
        ).rejects.toMatchObject({ code: 'WAL_INVALID_ARGUMENT' });
        await expect(
          store.get(`${p}k`, { signal, range: { start: -1, end: 4 } }),
        ).rejects.toMatchObject({ code: 'WAL_INVALID_ARGUMENT' });
      });
    });

    describe('head', () => {
      it('reports the size, the unquoted ETag of the put and the user metadata', async ({
        signal,
      }) => {
        const metadata = { 'first-offset': '42', epoch: '7' };
        const put = await store.put(`${p}k`, bytes(300), { signal, metadata });
        const info = await store.head(`${p}k`, { signal });
        expect(put.status).toBe('created');
        expect(info).toEqual({
          key: `${p}k`,
          sizeBytes: 300,
          etag: put.status === 'created' ? put.etag : 'unreachable',
          metadata,
        });
        expect(info?.etag).toMatch(/^[^"]+$/);
      });

      it('reports empty metadata for an object put without any', async ({ signal }) => {
        await store.put(`${p}k`, bytes(1), { signal });
        expect((await store.head(`${p}k`, { signal }))?.metadata).toEqual({});
      });
    });

    if (options.conditionalWrites) {
      describe('with conditional writes', () => {
        it('reports the conditionalWrites capability', () => {
          expect(store.capabilities.conditionalWrites).toBe(true);
        });

        it('reports exists for a second create-if-absent put and keeps the first body', async ({
          signal,
        }) => {
          const first = await store.put(`${p}k`, Uint8Array.of(1), { signal, ifNoneMatch: true });
          const second = await store.put(`${p}k`, Uint8Array.of(2), { signal, ifNoneMatch: true });
          expect(first.status).toBe('created');
          expect(second).toEqual({ status: 'exists' });
          expect(await store.get(`${p}k`, { signal })).toEqual(Uint8Array.of(1));
        });

        it(`lets exactly one of ${RACERS} concurrent create-if-absent puts win`, async ({
          signal,
        }) => {
          // Each request in flight listens on the signal; more than 10 make Node warn.
          setMaxListeners(RACERS + 10, signal);
          const results: PutResult[] = await Promise.all(
            Array.from({ length: RACERS }, (_, i) =>
              store.put(`${p}race`, Uint8Array.of(i), { signal, ifNoneMatch: true }),
            ),
          );
          const winners = results.flatMap((result, i) => (result.status === 'created' ? [i] : []));
          expect(winners).toHaveLength(1);
          expect(results.filter((result) => result.status === 'exists')).toHaveLength(RACERS - 1);
          expect(await store.get(`${p}race`, { signal })).toEqual(Uint8Array.of(winners[0] ?? -1));
        });
      });
    } else {
      describe('without conditional writes', () => {
        it('reports that it lacks the conditionalWrites capability', () => {
          expect(store.capabilities.conditionalWrites).toBe(false);
        });

        it('overwrites and reports created for a create-if-absent put of a taken key', async ({
          signal,
        }) => {
          await store.put(`${p}k`, Uint8Array.of(1), { signal, ifNoneMatch: true });
          const second = await store.put(`${p}k`, Uint8Array.of(2), { signal, ifNoneMatch: true });
          expect(second.status).toBe('created');
          expect(await store.get(`${p}k`, { signal })).toEqual(Uint8Array.of(2));
        });
      });
    }

    describe('list', () => {
      it('lists the keys under a prefix in ascending order with size and ETag', async ({
        signal,
      }) => {
        const keys = ['c', 'a', 'b/2', 'b/1', 'd'].map((k) => `${p}${k}`);
        await putAll(keys, signal);
        const page = await store.list(p, { signal });
        expect(page.objects.map((object) => object.key)).toEqual(
          ['a', 'b/1', 'b/2', 'c', 'd'].map((k) => `${p}${k}`),
        );
        expect(page.continuationToken).toBeUndefined();
        const head = await store.head(`${p}b/1`, { signal });
        expect(page.objects[1]).toMatchObject({
          key: `${p}b/1`,
          sizeBytes: keys[3]?.length,
          etag: head?.etag,
        });
      });

      it('respects the prefix boundary', async ({ signal }) => {
        await putAll([`${p}a/1`, `${p}a/10`, `${p}ab`], signal);
        const keysOf = async (prefix: string): Promise<string[]> =>
          (await store.list(`${p}${prefix}`, { signal })).objects.map((o) => o.key.slice(p.length));
        expect(await keysOf('a')).toEqual(['a/1', 'a/10', 'ab']);
        expect(await keysOf('a/')).toEqual(['a/1', 'a/10']);
        expect(await keysOf('a/1')).toEqual(['a/1', 'a/10']);
        expect(await keysOf('a/10')).toEqual(['a/10']);
        expect(await keysOf('ab')).toEqual(['ab']);
        expect(await keysOf('b')).toEqual([]);
      });

      it('pages through the keys with limit and continuation tokens', async ({ signal }) => {
        const keys = Array.from({ length: 7 }, (_, i) => `${p}k${i}`);
        await putAll(keys, signal);
        const first = await store.list(p, { signal, limit: 3 });
        expect(first.objects.map((o) => o.key)).toEqual(keys.slice(0, 3));
        expect(first.continuationToken).toEqual(expect.any(String));
        const second = await store.list(p, {
          signal,
          limit: 3,
          continuationToken: first.continuationToken,
        });
        expect(second.objects.map((o) => o.key)).toEqual(keys.slice(3, 6));
        expect(second.continuationToken).toEqual(expect.any(String));
        const third = await store.list(p, {
          signal,
          limit: 3,
          continuationToken: second.continuationToken,
        });
        expect(third.objects.map((o) => o.key)).toEqual(keys.slice(6));
        expect(third.continuationToken).toBeUndefined();
      });

      it('starts after the given key, which need not exist', async ({ signal }) => {
        const keys = Array.from({ length: 5 }, (_, i) => `${p}k${i}`);
        await putAll(keys, signal);
        const after = await store.list(p, { signal, startAfter: `${p}k1` });
        expect(after.objects.map((o) => o.key)).toEqual(keys.slice(2));
        const between = await store.list(p, { signal, startAfter: `${p}k2a`, limit: 1 });
        expect(between.objects.map((o) => o.key)).toEqual([`${p}k3`]);
        const rest = await store.list(p, {
          signal,
          continuationToken: between.continuationToken,
        });
        expect(rest.objects.map((o) => o.key)).toEqual([`${p}k4`]);
      });

      it('returns an empty last page for a prefix without keys', async ({ signal }) => {
        expect(await store.list(`${p}nothing/`, { signal })).toEqual({ objects: [] });
      });

      it('rejects a limit outside [1, 1000] with WAL_INVALID_ARGUMENT', async ({ signal }) => {
        for (const limit of [0, 1001, 2.5, -1]) {
          await expect(store.list(p, { signal, limit })).rejects.toMatchObject({
            code: 'WAL_INVALID_ARGUMENT',
          });
        }
      });
    });

    describe('deleteMany', () => {
      it('deletes the given keys and leaves the others', async ({ signal }) => {
        await putAll([`${p}a`, `${p}b`, `${p}c`], signal);
        await store.deleteMany([`${p}a`, `${p}c`], { signal });
        expect(await listAll(p, signal)).toEqual([`${p}b`]);
        expect(await store.get(`${p}a`, { signal })).toBeUndefined();
        expect(await store.head(`${p}c`, { signal })).toBeUndefined();
      });

      it('ignores missing and repeated keys', async ({ signal }) => {
        await putAll([`${p}a`], signal);
        await store.deleteMany([`${p}missing`, `${p}a`, `${p}a`], { signal });
        expect(await listAll(p, signal)).toEqual([]);
      });

      it('does nothing for an empty key list', async ({ signal }) => {
        await putAll([`${p}a`], signal);
        await store.deleteMany([], { signal });
        expect(await listAll(p, signal)).toEqual([`${p}a`]);
      });

      it('deletes 25 keys under one prefix in one call', async ({ signal }) => {
        const keys = Array.from({ length: 25 }, (_, i) => `${p}seg/${String(i).padStart(4, '0')}`);
        await putAll(keys, signal);
        expect(await listAll(p, signal)).toEqual(keys);
        await store.deleteMany(keys, { signal });
        expect(await listAll(p, signal)).toEqual([]);
      });
    });

    describe('abort', () => {
      it('rejects every call with the reason of an already aborted signal', async () => {
        const reason = new Error('test aborted the call');
        const signal = AbortSignal.abort(reason);
        await expect(store.put(`${p}k`, Uint8Array.of(1), { signal })).rejects.toBe(reason);
        await expect(store.get(`${p}k`, { signal })).rejects.toBe(reason);
        await expect(store.head(`${p}k`, { signal })).rejects.toBe(reason);
        await expect(store.list(p, { signal })).rejects.toBe(reason);
        await expect(store.deleteMany([`${p}k`], { signal })).rejects.toBe(reason);
      });

      it('does not write an object when the put was aborted before it started', async ({
        signal,
      }) => {
        const reason = new Error('test aborted the put');
        await expect(
          store.put(`${p}k`, Uint8Array.of(1), { signal: AbortSignal.abort(reason) }),
        ).rejects.toBe(reason);
        expect(await store.head(`${p}k`, { signal })).toBeUndefined();
      });

      it('rejects a call in flight with the abort reason', async ({ signal }) => {
        await store.put(`${p}k`, bytes(1000), { signal });
        const controller = new AbortController();
        const reason = new Error('test aborted the get');
        const pending = store.get(`${p}k`, { signal: controller.signal });
        controller.abort(reason);
        await expect(pending).rejects.toBe(reason);
      });
    });

    describe('close', () => {
      it('rejects every call after close with WAL_CLOSED', async ({ signal }) => {
        await store.put(`${p}k`, Uint8Array.of(1), { signal });
        await store.close();
        await store.close();
        const calls: Array<() => Promise<unknown>> = [
          () => store.put(`${p}k`, Uint8Array.of(1), { signal }),
          () => store.get(`${p}k`, { signal }),
          () => store.head(`${p}k`, { signal }),
          () => store.list(p, { signal }),
          () => store.deleteMany([`${p}k`], { signal }),
          () => store.deleteMany([], { signal }),
        ];
        for (const call of calls) {
          const error = await call().then(
            () => undefined,
            (err: unknown) => err,
          );
          expect(error).toBeInstanceOf(ClosedError);
          expect(error).toMatchObject({ code: 'WAL_CLOSED', retryable: false });
        }
      });
    });
  });
}

/** `length` bytes that differ from key to key and from the zero-filled default. */
function bytes(length: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 7 + length) % 251);
}
