import { uniqueName } from '@woodstream/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ClosedError, InvalidArgumentError } from '../errors.js';
import type {
  KeyValue,
  MetadataStore,
  TxnOp,
  TxnResult,
  WatchEvent,
} from '../storage/metadata-store.js';

/**
 * Makes a fresh store for one test and a `cleanup` that releases it (it must also work after
 * the test closed the store itself).
 */
export type MetadataStoreFactory = () => Promise<{
  store: MetadataStore;
  cleanup: () => Promise<void>;
}>;

/** How long any single wait in the suite may take before the test fails. */
const WAIT_MS = 10_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function bytes(text: string): Uint8Array {
  return encoder.encode(text);
}

function text(value: Uint8Array | undefined): string | undefined {
  return value === undefined ? undefined : decoder.decode(value);
}

function put(key: string, value: string, leaseId?: string): TxnOp {
  return leaseId === undefined
    ? { type: 'put', key, value: bytes(value) }
    : { type: 'put', key, value: bytes(value), leaseId };
}

/** Rejects when `promise` has not settled within `ms`; the timer never outlives the race. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function iterate(watch: AsyncIterable<WatchEvent[]>): AsyncIterator<WatchEvent[]> {
  return watch[Symbol.asyncIterator]();
}

/** Reads batches until `isDone(batches)` holds; fails if the watch ends or stalls first. */
async function readUntil(
  it: AsyncIterator<WatchEvent[]>,
  isDone: (batches: WatchEvent[][]) => boolean,
): Promise<WatchEvent[][]> {
  const batches: WatchEvent[][] = [];
  const deadline = Date.now() + WAIT_MS;
  while (!isDone(batches)) {
    const result = await within(it.next(), Math.max(1, deadline - Date.now()), 'a watch batch');
    if (result.done === true) throw new Error('the watch ended early');
    batches.push(result.value);
  }
  return batches;
}

/** The revision a batch belongs to (every event of a batch shares it). */
function batchRevision(batch: WatchEvent[]): number {
  const first = batch[0];
  if (first === undefined) return -1;
  switch (first.type) {
    case 'put':
      return first.kv.modRevision;
    case 'delete':
      return first.modRevision;
    case 'reset':
      return first.revision;
  }
}

/** A compact, comparable form of a batch: 'put k=v@rev', 'delete k@rev'. */
function describeBatch(batch: WatchEvent[]): string[] {
  return batch.map((e) => {
    switch (e.type) {
      case 'put':
        return `put ${e.kv.key}=${text(e.kv.value)}@${e.kv.modRevision}`;
      case 'delete':
        return `delete ${e.key}@${e.modRevision}`;
      case 'reset':
        return `reset ${e.kvs.map((kv) => kv.key).join(',')}@${e.revision}`;
    }
  });
}

/**
 * Registers the MetadataStore contract for `name`: every adapter must pass it, against a
 * real backend. Each test gets a fresh store from `factory` and its own key prefix.
 */
export function describeMetadataStoreContract(name: string, factory: MetadataStoreFactory): void {
  describe(`MetadataStore contract: ${name}`, () => {
    let store: MetadataStore;
    let cleanup: () => Promise<void>;
    let testAbort: AbortController;
    /** This test's key prefix, ending in '/'. */
    let p: string;

    beforeEach(async () => {
      ({ store, cleanup } = await factory());
      testAbort = new AbortController();
      p = `${uniqueName('md')}/`;
    });

    afterEach(async () => {
      testAbort.abort();
      await cleanup();
    });

    async function write(...ops: TxnOp[]): Promise<TxnResult> {
      const result = await store.txn([], ops, { signal: testAbort.signal });
      expect(result.succeeded).toBe(true);
      return result;
    }

    async function get(key: string): Promise<KeyValue | undefined> {
      return store.get(key, { signal: testAbort.signal });
    }

    /** A watch of `prefix` from the current revision, so no change made after it is missed. */
    async function watchFromNow(
      prefix: string,
      signal = testAbort.signal,
    ): Promise<AsyncIterable<WatchEvent[]>> {
      const { revision } = await store.range(prefix, { signal: testAbort.signal, limit: 1 });
      return store.watch(prefix, { signal, fromRevision: revision });
    }

    describe('reads and writes', () => {
      it('returns undefined when getting a key that does not exist', async () => {
        expect(await get(`${p}missing`)).toBeUndefined();
      });

      it('creates a key with createRevision equal to modRevision and version 1', async () => {
        const result = await write(put(`${p}k`, 'v1'));
        const kv = await get(`${p}k`);
        expect(kv).toBeDefined();
        expect(kv?.key).toBe(`${p}k`);
        expect(text(kv?.value)).toBe('v1');
        expect(kv?.createRevision).toBe(result.revision);
        expect(kv?.modRevision).toBe(result.revision);
        expect(kv?.version).toBe(1);
        expect(kv?.leaseId).toBeUndefined();
      });

      it('grows modRevision, keeps createRevision and bumps version on update', async () => {
        const created = await write(put(`${p}k`, 'v1'));
        const updated = await write(put(`${p}k`, 'v2'));
        expect(updated.revision).toBeGreaterThan(created.revision);
        const kv = await get(`${p}k`);
        expect(text(kv?.value)).toBe('v2');
        expect(kv?.createRevision).toBe(created.revision);
        expect(kv?.modRevision).toBe(updated.revision);
        expect(kv?.version).toBe(2);
      });

      it('stores empty and binary values byte for byte', async () => {
        const binary = Uint8Array.from([0, 255, 1, 128, 0]);
        await write(
          { type: 'put', key: `${p}empty`, value: new Uint8Array(0) },
          { type: 'put', key: `${p}binary`, value: binary },
        );
        expect((await get(`${p}empty`))?.value).toEqual(new Uint8Array(0));
        expect((await get(`${p}binary`))?.value).toEqual(binary);
      });

      it('deletes a key, and a re-created key gets a new createRevision and version 1', async () => {
        await write(put(`${p}k`, 'v1'), put(`${p}other`, 'x'));
        await write(put(`${p}k`, 'v2'));
        const deleted = await write({ type: 'delete', key: `${p}k` });
        expect(await get(`${p}k`)).toBeUndefined();
        const recreated = await write(put(`${p}k`, 'v3'));
        expect(recreated.revision).toBeGreaterThan(deleted.revision);
        const kv = await get(`${p}k`);
        expect(kv?.createRevision).toBe(recreated.revision);
        expect(kv?.modRevision).toBe(recreated.revision);
        expect(kv?.version).toBe(1);
        expect(text((await get(`${p}other`))?.value)).toBe('x');
      });

      it('deletes by prefix without touching keys that only share its first characters', async () => {
        await write(
          put(`${p}a`, '1'),
          put(`${p}a/1`, '2'),
          put(`${p}a/2/x`, '3'),
          put(`${p}ab`, '4'),
          put(`${p}b`, '5'),
        );
        await write({ type: 'deletePrefix', prefix: `${p}a/` });
        const { kvs } = await store.range(p, { signal: testAbort.signal });
        expect(kvs.map((kv) => kv.key)).toEqual([`${p}a`, `${p}ab`, `${p}b`]);
      });
    });

    describe('transactions', () => {
      it('creates if absent (modRevision 0) once, and the second attempt writes nothing', async () => {
        const key = `${p}lock`;
        const first = await store.txn([{ key, modRevision: 0 }], [put(key, 'first')]);
        expect(first.succeeded).toBe(true);
        const second = await store.txn([{ key, modRevision: 0 }], [put(key, 'second')]);
        expect(second.succeeded).toBe(false);
        expect(second.revision).toBeGreaterThanOrEqual(first.revision);
        const kv = await get(key);
        expect(text(kv?.value)).toBe('first');
        expect(kv?.modRevision).toBe(first.revision);
        expect(kv?.version).toBe(1);
      });

      it('fails a compare-and-swap on a stale modRevision and writes nothing', async () => {
        const key = `${p}k`;
        const v1 = await write(put(key, 'v1'));
        const v2 = await store.txn([{ key, modRevision: v1.revision }], [put(key, 'v2')]);
        expect(v2.succeeded).toBe(true);
        const stale = await store.txn(
          [{ key, modRevision: v1.revision }],
          [put(key, 'stale'), put(`${p}side-effect`, 'x')],
        );
        expect(stale.succeeded).toBe(false);
        const kv = await get(key);
        expect(text(kv?.value)).toBe('v2');
        expect(kv?.modRevision).toBe(v2.revision);
        expect(await get(`${p}side-effect`)).toBeUndefined();
      });

      it('applies all ops of a multi-op txn at one revision, and none when a compare fails', async () => {
        const base = await write(put(`${p}a`, '1'), put(`${p}b`, '1'));
        const applied = await store.txn(
          [
            { key: `${p}a`, modRevision: base.revision },
            { key: `${p}c`, modRevision: 0 },
          ],
          [put(`${p}a`, '2'), put(`${p}c`, '3'), { type: 'delete', key: `${p}b` }],
        );
        expect(applied.succeeded).toBe(true);
        expect((await get(`${p}a`))?.modRevision).toBe(applied.revision);
        expect((await get(`${p}c`))?.modRevision).toBe(applied.revision);
        expect(await get(`${p}b`)).toBeUndefined();

        // One compare holds and one does not: nothing at all may change.
        const rejected = await store.txn(
          [
            { key: `${p}a`, modRevision: applied.revision },
            { key: `${p}c`, modRevision: base.revision },
          ],
          [put(`${p}a`, '9'), { type: 'delete', key: `${p}c` }, put(`${p}d`, '9')],
        );
        expect(rejected.succeeded).toBe(false);
        const { kvs } = await store.range(p);
        expect(kvs.map((kv) => `${kv.key}=${text(kv.value)}@${kv.modRevision}`)).toEqual([
          `${p}a=2@${applied.revision}`,
          `${p}c=3@${applied.revision}`,
        ]);
      });

      it('ends 16 concurrent compare-and-swap increments with retry on conflict at exactly 16', async () => {
        const key = `${p}counter`;
        await write(put(key, '0'));
        const increment = async (): Promise<number> => {
          for (let attempt = 1; attempt <= 500; attempt++) {
            const kv = await get(key);
            if (kv === undefined) throw new Error('the counter vanished');
            const next = Number(text(kv.value)) + 1;
            const result = await store.txn(
              [{ key, modRevision: kv.modRevision }],
              [put(key, String(next))],
              { signal: testAbort.signal },
            );
            if (result.succeeded) return attempt;
          }
          throw new Error('no increment succeeded in 500 attempts');
        };
        await Promise.all(Array.from({ length: 16 }, increment));
        const kv = await get(key);
        expect(text(kv?.value)).toBe('16');
        expect(kv?.version).toBe(17);
      });

      it('rejects malformed txns with InvalidArgumentError and writes nothing', async () => {
        const tooMany = Array.from({ length: 129 }, (_, i) => put(`${p}k${i}`, 'x'));
        await expect(store.txn([], tooMany)).rejects.toBeInstanceOf(InvalidArgumentError);
        await expect(store.txn([], [put('', 'x')])).rejects.toBeInstanceOf(InvalidArgumentError);
        await expect(
          store.txn([], [put(`${p}k`, 'x'), { type: 'delete', key: `${p}k` }]),
        ).rejects.toBeInstanceOf(InvalidArgumentError);
        await expect(
          store.txn([], [put(`${p}k`, 'x'), { type: 'deletePrefix', prefix: p }]),
        ).rejects.toBeInstanceOf(InvalidArgumentError);
        await expect(store.txn([{ key: `${p}k`, modRevision: -1 }], [])).rejects.toBeInstanceOf(
          InvalidArgumentError,
        );
        expect((await store.range(p)).kvs).toEqual([]);
      });

      it('rejects a call whose signal is already aborted with the signal reason', async () => {
        const aborted = AbortSignal.abort(new Error('caller gave up'));
        await expect(store.get(`${p}k`, { signal: aborted })).rejects.toThrow('caller gave up');
        await expect(store.txn([], [put(`${p}k`, 'x')], { signal: aborted })).rejects.toThrow(
          'caller gave up',
        );
        expect(await get(`${p}k`)).toBeUndefined();
      });
    });

    describe('range', () => {
      it('lists keys under the prefix in ascending order with the revision it read at', async () => {
        await write(put(`${p}c`, '3'), put(`${p}a`, '1'));
        const last = await write(
          put(`${p}b/x`, '2'),
          put(`${p}b`, '2'),
          put(`${p.slice(0, -1)}x`, 'out'),
        );
        const { kvs, revision } = await store.range(p, { signal: testAbort.signal });
        expect(kvs.map((kv) => kv.key)).toEqual([`${p}a`, `${p}b`, `${p}b/x`, `${p}c`]);
        expect(revision).toBeGreaterThanOrEqual(last.revision);
        expect(text(kvs[0]?.value)).toBe('1');
        expect(kvs[0]?.version).toBe(1);
      });

      it('respects the prefix boundary: listing b/ leaves out b and bc', async () => {
        await write(
          put(`${p}b`, '1'),
          put(`${p}b/1`, '2'),
          put(`${p}b/2`, '3'),
          put(`${p}bc`, '4'),
        );
        const { kvs } = await store.range(`${p}b/`);
        expect(kvs.map((kv) => kv.key)).toEqual([`${p}b/1`, `${p}b/2`]);
      });

      it('returns only the first keys when given a limit, and all of them with limit 0', async () => {
        await write(put(`${p}d`, '4'), put(`${p}b`, '2'), put(`${p}a`, '1'), put(`${p}c`, '3'));
        const limited = await store.range(p, { limit: 2 });
        expect(limited.kvs.map((kv) => kv.key)).toEqual([`${p}a`, `${p}b`]);
        const all = await store.range(p, { limit: 0 });
        expect(all.kvs).toHaveLength(4);
      });

      it('returns no keys and the current revision for an empty prefix range', async () => {
        const last = await write(put(`${p}elsewhere/k`, 'x'));
        const { kvs, revision } = await store.range(`${p}nothing/`);
        expect(kvs).toEqual([]);
        expect(revision).toBeGreaterThanOrEqual(last.revision);
      });
    });

    describe('watch', () => {
      it('delivers puts and deletes under the prefix in revision order, one batch per revision, and nothing outside it', async () => {
        const watched = `${p}w/`;
        const it = (await watchFromNow(watched))[Symbol.asyncIterator]();
        const r1 = await write(put(`${watched}x`, '1'));
        await write(put(`${p}wx`, 'outside'), put(`${p}other`, 'outside'));
        const r3 = await write(put(`${watched}y`, '2'), { type: 'delete', key: `${watched}x` });
        // The marker comes last: if an outside change were delivered, it would show up before it.
        const r4 = await write(put(`${watched}z`, 'marker'));
        const batches = await readUntil(it, (bs) =>
          bs.some((b) => batchRevision(b) === r4.revision),
        );
        expect(batches.map(describeBatch)).toEqual([
          [`put ${watched}x=1@${r1.revision}`],
          [`put ${watched}y=2@${r3.revision}`, `delete ${watched}x@${r3.revision}`],
          [`put ${watched}z=marker@${r4.revision}`],
        ]);
      });

      it('replays the changes after fromRevision', async () => {
        const r1 = await write(put(`${p}a`, '1'));
        const r2 = await write(put(`${p}b`, '2'));
        const r3 = await write({ type: 'delete', key: `${p}a` });
        const it = iterate(store.watch(p, { signal: testAbort.signal, fromRevision: r1.revision }));
        const batches = await readUntil(it, (bs) => bs.length >= 2);
        expect(batches.map(describeBatch)).toEqual([
          [`put ${p}b=2@${r2.revision}`],
          [`delete ${p}a@${r3.revision}`],
        ]);
        const r4 = await write(put(`${p}c`, '3'));
        const live = await readUntil(it, (bs) => bs.length >= 1);
        expect(live.map(describeBatch)).toEqual([[`put ${p}c=3@${r4.revision}`]]);
      });

      it('ends the watch when the consumer breaks out of the loop, and the store keeps working', async () => {
        const watch = await watchFromNow(p);
        await write(put(`${p}a`, '1'));
        let seen = 0;
        await within(
          (async () => {
            for await (const batch of watch) {
              seen += batch.length;
              break;
            }
          })(),
          WAIT_MS,
          'the loop to end',
        );
        expect(seen).toBe(1);
        // The store is unaffected and a new watch works.
        const again = (await watchFromNow(p))[Symbol.asyncIterator]();
        const r = await write(put(`${p}b`, '2'));
        const batches = await readUntil(again, (bs) => bs.length >= 1);
        expect(batches.map(describeBatch)).toEqual([[`put ${p}b=2@${r.revision}`]]);
      });

      it('ends the watch loop when its signal aborts', async () => {
        const abort = new AbortController();
        const watch = await watchFromNow(p, abort.signal);
        let resolveFirst!: () => void;
        const firstBatch = new Promise<void>((resolve) => {
          resolveFirst = resolve;
        });
        const loop = (async () => {
          let batches = 0;
          for await (const _ of watch) {
            batches++;
            resolveFirst();
          }
          return batches;
        })();
        await write(put(`${p}a`, '1'));
        await within(firstBatch, WAIT_MS, 'the first batch');
        abort.abort();
        expect(await within(loop, WAIT_MS, 'the loop to end')).toBe(1);
      });

      it('ends at once when the signal is already aborted', async () => {
        const watch = store.watch(p, { signal: AbortSignal.abort() });
        const result = await within(watch[Symbol.asyncIterator]().next(), WAIT_MS, 'next()');
        expect(result.done).toBe(true);
      });

      it('refuses a second iteration of the same watch', () => {
        const watch = store.watch(p, { signal: testAbort.signal });
        watch[Symbol.asyncIterator]();
        expect(() => watch[Symbol.asyncIterator]()).toThrow(InvalidArgumentError);
      });
    });

    describe('leases', () => {
      it('attaches keys to a lease, and they disappear when it is revoked while a watcher sees the delete', async () => {
        const lease = await store.grantLease(5_000, { signal: testAbort.signal });
        expect(lease.ttlMs).toBeGreaterThanOrEqual(5_000);
        await write(put(`${p}session`, 'alive', lease.id), put(`${p}durable`, 'stays'));
        expect((await get(`${p}session`))?.leaseId).toBe(lease.id);
        const it = (await watchFromNow(p))[Symbol.asyncIterator]();
        await lease.revoke({ signal: testAbort.signal });
        expect(await get(`${p}session`)).toBeUndefined();
        expect(text((await get(`${p}durable`))?.value)).toBe('stays');
        const batches = await readUntil(it, (bs) => bs.length >= 1);
        expect(batches.map((b) => b.map((e) => (e.type === 'delete' ? e.key : e.type)))).toEqual([
          [`${p}session`],
        ]);
      });

      it('resolves lost after revoke, and a second revoke succeeds too', async () => {
        const lease = await store.grantLease(5_000);
        await lease.revoke();
        await expect(within(lease.lost, WAIT_MS, 'lost')).resolves.toBeInstanceOf(Error);
        await expect(lease.revoke()).resolves.toBeUndefined();
      });

      it('rejects a put on a revoked lease with InvalidArgumentError and writes nothing', async () => {
        const lease = await store.grantLease(5_000);
        await lease.revoke();
        await expect(store.txn([], [put(`${p}k`, 'x', lease.id)])).rejects.toBeInstanceOf(
          InvalidArgumentError,
        );
        expect(await get(`${p}k`)).toBeUndefined();
      });

      it('rejects a lease TTL below 1000 ms with InvalidArgumentError', async () => {
        await expect(store.grantLease(999)).rejects.toBeInstanceOf(InvalidArgumentError);
      });
    });

    describe('close', () => {
      it('rejects calls after close with ClosedError, ends open watches and loses leases', async () => {
        const lease = await store.grantLease(5_000);
        const watch = await watchFromNow(p);
        const loop = (async () => {
          for await (const _ of watch) {
            // Nothing is written; the loop only has to end.
          }
        })();
        await store.close();
        await within(loop, WAIT_MS, 'the watch to end');
        await expect(within(lease.lost, WAIT_MS, 'lost')).resolves.toBeInstanceOf(Error);
        await expect(store.get(`${p}k`)).rejects.toBeInstanceOf(ClosedError);
        await expect(store.range(p)).rejects.toBeInstanceOf(ClosedError);
        await expect(store.txn([], [put(`${p}k`, 'x')])).rejects.toBeInstanceOf(ClosedError);
        await expect(store.grantLease(5_000)).rejects.toBeInstanceOf(ClosedError);
        const late = store.watch(p, { signal: testAbort.signal })[Symbol.asyncIterator]();
        await expect(late.next()).rejects.toBeInstanceOf(ClosedError);
        await expect(store.close()).resolves.toBeUndefined();
      });
    });
  });
}
