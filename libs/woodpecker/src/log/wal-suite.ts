// The behaviour suite of the WAL, run against every storage/metadata combination by
// wal.test.ts (in-memory backends) and wal.int.test.ts (real servers and disks).
import { waitFor } from '@woodstream/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { WalLimits } from '../config.js';
import type { MetadataStore } from '../storage/metadata-store.js';
import type { ObjectStore } from '../storage/object-store.js';
import { Woodpecker, type StorageOptions } from '../woodpecker.js';
import type { LogEntry, LogReader } from './log-reader.js';
import type { LogPosition } from './position.js';

/** Counts calls on every method of an object (a port), for "no requests while idle" checks. */
export function countCalls<T extends object>(target: T): { proxy: T; total: () => number } {
  let calls = 0;
  const proxy = new Proxy(target, {
    get(obj, prop, receiver) {
      const value: unknown = Reflect.get(obj, prop, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        calls += 1;
        return (value as (...a: unknown[]) => unknown).apply(obj, args);
      };
    },
  });
  return { proxy, total: () => calls };
}

/**
 * `env`'s metadata store and, in object mode, its object store behind call counters: what a client
 * opened over them uses, and the number of calls made so far.
 */
function countRequests(env: WalEnv): {
  metadata: MetadataStore;
  storage: StorageOptions;
  requests: () => number;
} {
  const metadata = countCalls(env.metadata);
  const objects = env.objects === undefined ? undefined : countCalls(env.objects);
  return {
    metadata: metadata.proxy,
    storage:
      objects === undefined
        ? env.storage
        : { ...env.storage, mode: 'object', objectStore: objects.proxy },
    requests: () => metadata.total() + (objects?.total() ?? 0),
  };
}

/**
 * Asserts that `requests()` does not change for `idleMs`: nothing polls while a reader is parked.
 * With `settle`, first waits until two samples `settle.intervalMs` apart are equal, so wake-ups
 * of earlier activity are not counted.
 */
export async function expectNoRequestsWhileIdle(
  requests: () => number,
  options: { idleMs: number; settle?: { timeoutMs: number; intervalMs: number } },
): Promise<void> {
  if (options.settle !== undefined) {
    let settled = -1;
    await waitFor(() => {
      const now = requests();
      const isQuiet = now === settled;
      settled = now;
      return isQuiet;
    }, options.settle);
  }
  const before = requests();
  const idleUntil = Date.now() + options.idleMs;
  await waitFor(() => Date.now() >= idleUntil, { timeoutMs: 5_000, intervalMs: 100 });
  expect(requests()).toBe(before);
}

/** A fresh metadata store and storage for one test, with what they hold inspectable. */
export interface WalEnv {
  metadata: MetadataStore;
  storage: StorageOptions;
  /** The object store under test (object mode), to count requests or damage objects. */
  objects?: ObjectStore;
  /** Local mode: the data directory. */
  rootDir?: string;
  cleanup: () => Promise<void>;
}

export type WalEnvFactory = () => Promise<WalEnv>;

const enc = new TextEncoder();
const dec = new TextDecoder();
const text = (e: LogEntry): string => dec.decode(e.payload);

/** Reads exactly `count` entries from a reader, failing after `timeoutMs`. */
export async function take(
  reader: LogReader,
  count: number,
  timeoutMs = 10_000,
): Promise<LogEntry[]> {
  const out: LogEntry[] = [];
  const timer = setTimeout(() => void reader.close(), timeoutMs);
  try {
    while (out.length < count) {
      const entry = await reader.next();
      if (entry === undefined)
        throw new Error(`reader ended after ${out.length} of ${count} entries`);
      out.push(entry);
    }
  } finally {
    clearTimeout(timer);
  }
  return out;
}

export function describeWalSuite(
  name: string,
  factory: WalEnvFactory,
  options: { limits?: Partial<WalLimits> } = {},
): void {
  describe(`WAL on ${name}`, () => {
    let env: WalEnv;
    let wp: Woodpecker;
    const open = (limits: Partial<WalLimits> = {}): Woodpecker =>
      Woodpecker.open({
        metadata: env.metadata,
        storage: env.storage,
        limits: { flushAgeMs: 2, ...options.limits, ...limits },
      });

    /** Waits until the log's published progress covers `position` (reads the raw store). */
    const progressReaches = async (position: LogPosition): Promise<void> => {
      await waitFor(
        async () => {
          const kvs = (await env.metadata.range('wp/progress/')).kvs;
          return kvs.some((kv) => {
            const p = JSON.parse(dec.decode(kv.value)) as {
              segmentId: number;
              lastEntryId: number;
            };
            return p.segmentId === position.segmentId && p.lastEntryId >= position.entryId;
          });
        },
        { timeoutMs: 5_000, intervalMs: 10, description: 'progress to be published' },
      );
    };

    beforeEach(async () => {
      env = await factory();
      wp = open();
    });
    afterEach(async () => {
      await wp.close();
      await env.cleanup();
    });

    it('creates, lists, opens and deletes logs by name', async () => {
      await wp.createLog('alpha');
      await wp.createLog('beta');
      expect(await wp.listLogs()).toEqual(['alpha', 'beta']);
      await expect(wp.createLog('alpha')).rejects.toMatchObject({ code: 'WAL_LOG_EXISTS' });
      await wp.deleteLog('alpha');
      expect(await wp.listLogs()).toEqual(['beta']);
      await expect(wp.openLog('alpha')).rejects.toMatchObject({
        code: 'WAL_LOG_NOT_FOUND',
        retryable: false,
      });
      await expect(wp.deleteLog('alpha')).rejects.toMatchObject({ code: 'WAL_LOG_NOT_FOUND' });
    });

    it('rejects invalid log names with WAL_INVALID_NAME', async () => {
      for (const bad of ['', 'a/b', '-x', 'x'.repeat(129), 'sp ace', '\u00e9']) {
        await expect(wp.createLog(bad)).rejects.toMatchObject({ code: 'WAL_INVALID_NAME' });
      }
    });

    it('acknowledges many in-flight appends in order with dense positions and reads them back', async () => {
      const log = await wp.createLog('ordered');
      const writer = await log.openWriter();
      const acks = await Promise.all(
        Array.from({ length: 500 }, (_, i) =>
          writer.append(enc.encode(`m${i}`), i % 7 === 0 ? { properties: { i: String(i) } } : {}),
        ),
      );
      expect(acks.map((p) => p.entryId)).toEqual(acks.map((_, i) => i));
      expect(new Set(acks.map((p) => p.segmentId)).size).toBe(1);
      const batch = await writer.appendBatch([
        { payload: enc.encode('b0') },
        { payload: enc.encode('b1') },
      ]);
      expect(batch.map((p) => p.entryId)).toEqual([500, 501]);
      const reader = await log.openReader({ from: 'earliest' });
      const read = await take(reader, 502);
      expect(read.map(text)).toEqual([...acks.map((_, i) => `m${i}`), 'b0', 'b1']);
      expect(read[7]?.properties).toEqual({ i: '7' });
      expect(read[8]?.properties).toBeUndefined();
      // Positions are values shared as they are (acks, reads, message ids): frozen.
      expect(acks.every((p) => Object.isFrozen(p)) && batch.every((p) => Object.isFrozen(p))).toBe(
        true,
      );
      expect(read.every((e) => Object.isFrozen(e.position))).toBe(true);
      await reader.close();
      await writer.close();
    });

    it('rejects an oversize entry with WAL_ENTRY_TOO_LARGE and keeps the writer usable', async () => {
      const small = open({ maxEntryBytes: 1024 });
      try {
        const writer = await (await small.createLog('limits')).openWriter();
        await expect(writer.append(new Uint8Array(1025))).rejects.toMatchObject({
          code: 'WAL_ENTRY_TOO_LARGE',
          retryable: false,
        });
        await expect(writer.append(new Uint8Array(1024))).resolves.toMatchObject({ entryId: 0 });
        await expect(writer.append('text' as unknown as Uint8Array)).rejects.toMatchObject({
          code: 'WAL_INVALID_ARGUMENT',
        });
        await writer.close();
      } finally {
        await small.close();
      }
    });

    it('settles each batch once with consecutive positions, interleaved with single appends in call order, across blocks', async () => {
      const small = open({ maxBlockBytes: 4096 });
      try {
        const writer = await (await small.createLog('batches')).openWriter();
        const calls: Promise<LogPosition | LogPosition[]>[] = [];
        const expected: string[] = [];
        for (let round = 0; round < 5; round++) {
          calls.push(writer.append(enc.encode(`s${round}`)));
          expected.push(`s${round}`);
          const batch = Array.from({ length: 40 }, (_, i) => `b${round}.${i}`);
          // 40 x ~100 bytes: every batch spans blocks of 4 KiB.
          calls.push(
            writer.appendBatch(batch.map((t) => ({ payload: enc.encode(t.padEnd(100, '.')) }))),
          );
          expected.push(...batch);
        }
        const settled = await Promise.all(calls);
        const positions = settled.flat();
        expect(positions.map((p) => p.entryId)).toEqual(positions.map((_, i) => i));
        const reader = await small.openLog('batches').then((l) => l.openReader());
        const read = await take(reader, expected.length);
        expect(read.map((e) => text(e).replace(/\.+$/, ''))).toEqual(expected);
        await reader.close();
        // Bad input fails the whole batch and appends none of it; the writer goes on.
        await expect(
          writer.appendBatch([
            { payload: enc.encode('ok') },
            { payload: enc.encode('x'), properties: { '': 'empty name' } },
          ]),
        ).rejects.toMatchObject({ code: 'WAL_INVALID_ARGUMENT' });
        await expect(writer.appendBatch([{ payload: enc.encode('next') }])).resolves.toEqual([
          expect.objectContaining({ entryId: expected.length }),
        ]);
        // checkEntry tells the same without appending.
        expect(() => writer.checkEntry(enc.encode('x'), { '': 'empty name' })).toThrow(
          expect.objectContaining({ code: 'WAL_INVALID_ARGUMENT' }),
        );
        expect(() => writer.checkEntry(new Uint8Array(17 * 1024 * 1024))).toThrow(
          expect.objectContaining({ code: 'WAL_ENTRY_TOO_LARGE' }),
        );
        expect(() => writer.checkEntry(enc.encode('fine'), { name: 'value' })).not.toThrow();
        await writer.close();
      } finally {
        await small.close();
      }
    });

    it('stores transferred payloads like copied ones; a copied payload may be reused at once', async () => {
      const log = await wp.createLog('transfer');
      const writer = await log.openWriter();
      const big = Uint8Array.from({ length: 70_000 }, (_, i) => i % 251);
      const reused = enc.encode('first');
      const positions = [
        await writer.append(reused),
        await writer.append(big, { transfer: true, properties: { k: 'v' } }),
        await writer.append(new Uint8Array(0), { transfer: true }),
        // An empty view with no storage behind it (its CRC once came out as 0).
        await writer.append(new Uint8Array(new ArrayBuffer(0)), { transfer: true }),
        ...(await writer.appendBatch(
          [{ payload: enc.encode('b1') }, { payload: enc.encode('b2'), properties: { n: '2' } }],
          { transfer: true },
        )),
      ];
      reused.fill(0); // copied at append: the log keeps 'first'
      expect(positions.map((p) => p.entryId)).toEqual([0, 1, 2, 3, 4, 5]);
      await writer.close();
      // After close a reader gets everything from storage, where the records were written.
      const reader = await log.openReader({ from: 'earliest' });
      const read = await take(reader, 6);
      expect(read.map((e) => Buffer.from(e.payload).toString('hex'))).toEqual(
        [
          enc.encode('first'),
          big,
          new Uint8Array(0),
          new Uint8Array(0),
          enc.encode('b1'),
          enc.encode('b2'),
        ].map((p) => Buffer.from(p).toString('hex')),
      );
      expect(read[1]?.properties).toEqual({ k: 'v' });
      expect(read[5]?.properties).toEqual({ n: '2' });
      await reader.close();
    });

    it('rejects appends after close with WAL_CLOSED', async () => {
      const writer = await (await wp.createLog('closing')).openWriter();
      await writer.append(enc.encode('x'));
      await writer.close();
      await expect(writer.append(enc.encode('y'))).rejects.toMatchObject({ code: 'WAL_CLOSED' });
    });

    it('acknowledges every entry appended right before close', async () => {
      const log = await wp.createLog('close-flush');
      const writer = await log.openWriter();
      const pending = Array.from({ length: 50 }, (_, i) => writer.append(enc.encode(`late-${i}`)));
      await writer.close();
      expect((await Promise.all(pending)).map((p) => p.entryId)).toEqual(pending.map((_, i) => i));
      expect((await take(await log.openReader(), 50)).map(text)).toEqual(
        pending.map((_, i) => `late-${i}`),
      );
    });

    it('continues in a new segment after the writer is closed and reopened', async () => {
      const log = await wp.createLog('reopen');
      const w1 = await log.openWriter();
      await w1.append(enc.encode('one'));
      await w1.close();
      const w2 = await log.openWriter();
      const p = await w2.append(enc.encode('two'));
      expect(p).toEqual({ segmentId: 1, entryId: 0 });
      const segments = await log.listSegments();
      expect(segments.map((s) => [s.segmentId, s.state, s.lastEntryId])).toEqual([
        [0, 'completed', 0],
        [1, 'active', expect.any(Number) as number],
      ]);
      expect((await take(await log.openReader(), 2)).map(text)).toEqual(['one', 'two']);
      await w2.close();
    });

    it('fences the older of two writers: its next append fails and only the newer epoch is readable after its open', async () => {
      const log = await wp.createLog('race');
      const old = await log.openWriter();
      const acked = await Promise.all([0, 1, 2].map((i) => old.append(enc.encode(`old-${i}`))));
      const newer = await (await wp.openLog('race')).openWriter();
      expect(newer.epoch).toBe(old.epoch + 1);
      await expect(old.append(enc.encode('old-late'))).rejects.toMatchObject({
        code: 'WAL_FENCED',
        retryable: false,
      });
      await expect(old.append(enc.encode('old-later'))).rejects.toMatchObject({
        code: 'WAL_FENCED',
      });
      await newer.append(enc.encode('new-0'));
      const read = await take(await log.openReader(), 4);
      expect(read.map(text)).toEqual(['old-0', 'old-1', 'old-2', 'new-0']);
      expect(read.slice(0, 3).map((e) => e.position)).toEqual(acked);
      const reader = await log.openReader({ from: read[3]?.position });
      expect((await take(reader, 1)).map(text)).toEqual(['new-0']);
      await reader.close();
      await old.close();
      await newer.close();
    });

    it('refuses a writer open at a lower owner term without fencing the writer of the higher one', async () => {
      const log = await wp.createLog('terms');
      const owner = await log.openWriter({ ownerTerm: 5 });
      await owner.append(enc.encode('t5-a'));
      // A superseded owner's late open (term 3): refused before it bumps the epoch.
      await expect((await wp.openLog('terms')).openWriter({ ownerTerm: 3 })).rejects.toMatchObject({
        code: 'WAL_FENCED',
        retryable: false,
      });
      await owner.append(enc.encode('t5-b'));
      await expect(log.openWriter({ ownerTerm: -1 })).rejects.toMatchObject({
        code: 'WAL_INVALID_ARGUMENT',
      });
      // An open without a term (a tool) is not checked and keeps the highest term.
      const tool = await log.openWriter();
      await expect(owner.append(enc.encode('t5-late'))).rejects.toMatchObject({
        code: 'WAL_FENCED',
      });
      await tool.close();
      await expect(log.openWriter({ ownerTerm: 4 })).rejects.toMatchObject({ code: 'WAL_FENCED' });
      // The same or a higher term opens (a retried open of the current owner, or the next one).
      const again = await log.openWriter({ ownerTerm: 5 });
      await again.close();
      const next = await log.openWriter({ ownerTerm: 6 });
      await next.append(enc.encode('t6'));
      await next.close();
      expect((await take(await log.openReader(), 3)).map(text)).toEqual(['t5-a', 't5-b', 't6']);
      await owner.close();
    });

    it('wakes a tail reader promptly after an ack and makes no storage or metadata requests while idle', async () => {
      const { metadata, storage, requests } = countRequests(env);
      const counted = Woodpecker.open({
        metadata,
        storage,
        limits: { flushAgeMs: 2 },
      });
      try {
        const log = await counted.createLog('tail');
        const writer = await log.openWriter();
        await writer.append(enc.encode('before'));
        const reader = await log.openReader({ from: 'latest' });
        const first = reader.next();
        const live1 = await writer.append(enc.encode('live-1'));
        expect((await first)?.payload).toEqual(enc.encode('live-1'));
        // The writer's own progress publication for live-1 (activity, not idleness) is done.
        await progressReaches(live1);
        // Park the reader at the live end, then watch the request counters for a while.
        const parked = reader.next();
        await expectNoRequestsWhileIdle(requests, {
          idleMs: 1_500,
        });
        await writer.append(enc.encode('live-2'));
        expect((await parked)?.payload).toEqual(enc.encode('live-2'));
        await reader.close();
        await writer.close();
      } finally {
        await counted.close();
      }
    });

    it('a tail reader that falls behind the in-memory tail reads the rest from storage, in order', async () => {
      const small = open({ tailCacheBytes: 16 * 1024, maxBlockBytes: 64 * 1024 });
      try {
        const log = await small.createLog('lagging');
        const writer = await log.openWriter();
        await writer.append(enc.encode('e0'));
        const reader = await log.openReader({ from: 'earliest' });
        expect((await take(reader, 1)).map(text)).toEqual(['e0']);
        // The reader is open but does not read while 256 KiB are acknowledged, 16 times the
        // cache: in 4 batches, so slow stores get a few blocks, not one per entry.
        const appended: string[] = [];
        for (let b = 0; b < 4; b++) {
          const batch = Array.from({ length: 16 }, (_, i) => {
            const payload = new Uint8Array(4096);
            payload[0] = b;
            payload[1] = i;
            appended.push(`${b}.${i}`);
            return { payload };
          });
          await writer.appendBatch(batch);
        }
        const read = await take(reader, 64, 30_000);
        expect(read.map((e) => `${e.payload[0]}.${e.payload[1]}`)).toEqual(appended);
        expect(read.map((e) => e.position.entryId)).toEqual(
          Array.from({ length: 64 }, (_, i) => (read[0]?.position.entryId ?? 0) + i),
        );
        // And it follows the live end again.
        const next = reader.next();
        await writer.append(enc.encode('live'));
        expect(text((await next) as LogEntry)).toBe('live');
        await reader.close();
        await writer.close();
      } finally {
        await small.close();
      }
    });

    it('wakes a reader in another client by push, and it makes no storage or metadata requests while idle', async () => {
      const log = await wp.createLog('remote-tail');
      const writer = await log.openWriter();
      await writer.append(enc.encode('before'));
      const { metadata, storage, requests } = countRequests(env);
      const remote = Woodpecker.open({ metadata, storage });
      try {
        const reader = await (await remote.openLog('remote-tail')).openReader({ from: 'latest' });
        const first = reader.next();
        const live1 = await writer.append(enc.encode('live-1'));
        expect(await first).toMatchObject({ payload: enc.encode('live-1'), position: live1 });
        await progressReaches(live1);
        const parked = reader.next();
        // Settled: the wake-up for live-1 may still make the reader look once more.
        await expectNoRequestsWhileIdle(requests, {
          idleMs: 1_500,
          settle: { timeoutMs: 5_000, intervalMs: 200 },
        });
        const sentAt = performance.now();
        const live2 = await writer.append(enc.encode('live-2'));
        expect(await parked).toMatchObject({ payload: enc.encode('live-2'), position: live2 });
        // Pushed, not polled: well under a poll interval of old (plus a slow CI machine).
        expect(performance.now() - sentAt).toBeLessThan(1_000);
        await reader.close();
        await writer.close();
      } finally {
        await remote.close();
      }
    });

    it('a reader in another client returns nothing that recovery does not keep, and follows into the next writer', async () => {
      const log = await wp.createLog('remote-fence');
      const writer = await log.openWriter();
      const remote = open();
      try {
        const reader = await (await remote.openLog('remote-fence')).openReader();
        const acked: LogPosition[] = [];
        const appends = Array.from({ length: 300 }, (_, i) =>
          writer.append(enc.encode(`f${i}`)).then(
            (p) => void acked.push(p),
            () => undefined,
          ),
        );
        const seen = await take(reader, 50);
        // Fence the writer while appends are still in flight.
        const next = await log.openWriter();
        await Promise.all(appends);
        const [sealed] = await log.listSegments();
        expect(sealed?.state).toBe('completed');
        const lastEntryId = sealed?.lastEntryId ?? -1;
        await next.append(enc.encode('end'));
        seen.push(...(await take(reader, lastEntryId + 1 - seen.length + 1)));
        const inFirst = seen.filter((e) => e.position.segmentId === 0);
        // Dense, in order, nothing beyond the recovered end, and every ack among them.
        expect(inFirst.map((e) => e.position.entryId)).toEqual(inFirst.map((_, i) => i));
        expect(inFirst.map(text)).toEqual(inFirst.map((_, i) => `f${i}`));
        expect(inFirst.length).toBe(lastEntryId + 1);
        for (const p of acked) expect(p.entryId).toBeLessThanOrEqual(lastEntryId);
        expect(seen.at(-1)).toMatchObject({ position: { segmentId: 1, entryId: 0 } });
        await reader.close();
        await next.close();
        // Fenced: its close cannot seal (it may not have noticed before, if it was idle).
        await writer.close().catch(() => undefined);
      } finally {
        await remote.close();
      }
    });

    it('rolls segments by size and reads across them in order', async () => {
      const small = open({ maxSegmentBytes: 64 * 1024, maxBlockBytes: 16 * 1024 });
      try {
        const log = await small.createLog('rolling');
        const writer = await log.openWriter();
        const payload = new Uint8Array(4000);
        const acks: LogPosition[] = [];
        for (let i = 0; i < 60; i++) acks.push(await writer.append(payload.fill(i % 256)));
        const segmentIds = [...new Set(acks.map((a) => a.segmentId))];
        expect(segmentIds.length).toBeGreaterThan(2);
        const read = await take(await log.openReader(), 60);
        expect(read.map((e) => e.payload[0])).toEqual(acks.map((_, i) => i % 256));
        expect(read.map((e) => e.position)).toEqual(acks);
        await writer.close();
      } finally {
        await small.close();
      }
    });

    it('seals an idle segment by age without further appends', async () => {
      const aging = open({ maxSegmentAgeMs: 300 });
      try {
        const log = await aging.createLog('aging');
        const writer = await log.openWriter();
        await writer.append(enc.encode('lonely'));
        await waitFor(async () => (await log.listSegments())[0]?.state === 'completed', {
          timeoutMs: 10_000,
          description: 'segment 0 to be sealed',
        });
        const p = await writer.append(enc.encode('next'));
        expect(p.segmentId).toBe(1);
        expect((await take(await log.openReader(), 2)).map(text)).toEqual(['lonely', 'next']);
        await writer.close();
      } finally {
        await aging.close();
      }
    });

    it('maintenance leaves the idle segment of a live writer alone', async () => {
      const log = await wp.createLog('live-idle');
      const writer = await log.openWriter();
      await writer.append(enc.encode('kept'));
      const maintainer = open({ maxSegmentAgeMs: 100 });
      try {
        const agedAt = Date.now() + 150;
        await waitFor(() => Date.now() >= agedAt, { timeoutMs: 5_000, intervalMs: 20 });
        const result = await maintainer.maintain();
        expect(result).toMatchObject({ sealedSegments: 0, liveWriters: 1, failures: [] });
        expect((await log.listSegments()).map((s) => s.state)).toEqual(['active']);
        await expect(writer.append(enc.encode('still-mine'))).resolves.toEqual({
          segmentId: 0,
          entryId: 1,
        });
        await writer.close();
      } finally {
        await maintainer.close();
      }
    });

    it('maintenance seals the segment of a writer whose session is gone: acked entries stay, that writer is fenced, the next one opens cleanly', async () => {
      const log = await wp.createLog('orphan');
      const writer = await log.openWriter({ ownerTerm: 7 });
      const acked = await Promise.all(
        [0, 1, 2, 3, 4].map((i) => writer.append(enc.encode(`o${i}`))),
      );
      // The writer's lease expired (a partition, or its process died): its session is gone.
      await env.metadata.txn([], [{ type: 'delete', key: 'wp/session/orphan' }]);
      const elsewhere = open();
      const maintainer = open({ maxSegmentAgeMs: 100 });
      try {
        const reader = await (await elsewhere.openLog('orphan')).openReader();
        expect((await take(reader, 5)).map((e) => e.position)).toEqual(acked);
        await waitFor(async () => (await maintainer.maintain()).sealedSegments === 1, {
          timeoutMs: 10_000,
          description: 'maintenance to seal segment 0',
        });
        expect(await log.listSegments()).toMatchObject([
          { segmentId: 0, state: 'completed', lastEntryId: 4 },
        ]);
        await expect(writer.append(enc.encode('too-late'))).rejects.toMatchObject({
          code: 'WAL_FENCED',
          retryable: false,
        });
        expect(await maintainer.maintain()).toMatchObject({ sealedSegments: 0, failures: [] });
        // Maintenance kept the owner term: an older owner still cannot open.
        await expect(log.openWriter({ ownerTerm: 6 })).rejects.toMatchObject({
          code: 'WAL_FENCED',
        });
        const next = await log.openWriter({ ownerTerm: 8 });
        expect(next.epoch).toBe(writer.epoch + 2);
        expect(await next.append(enc.encode('next'))).toEqual({ segmentId: 1, entryId: 0 });
        expect((await take(reader, 1)).map(text)).toEqual(['next']);
        await reader.close();
        await next.close();
        await writer.close();
      } finally {
        await maintainer.close();
        await elsewhere.close();
      }
    });

    it('retention truncates segments completed long enough ago, keeping the newest completed one and the active one', async () => {
      const log = await wp.createLog('retained');
      for (let s = 0; s < 3; s++) {
        const w = await log.openWriter();
        await w.append(enc.encode(`s${s}`));
        await w.close();
      }
      // An open that wrote nothing leaves an empty completed segment behind the last entries.
      await (await log.openWriter()).close();
      const live = await log.openWriter();
      await live.append(enc.encode('live'));
      const keepAll = open();
      const retaining = open({ retentionMs: 1 });
      try {
        // Without retention maintenance truncates nothing.
        expect(await keepAll.maintain()).toMatchObject({ truncatedSegments: 0, failures: [] });
        await waitFor(
          async () => {
            const completed = (await log.listSegments()).filter((s) => s.state === 'completed');
            return completed.every((s) => Date.now() - (s.completedAtMs ?? Date.now()) >= 2);
          },
          { timeoutMs: 5_000, description: 'the segments 2 ms old' },
        );
        expect(await retaining.maintain()).toMatchObject({ truncatedSegments: 2, failures: [] });
        expect((await log.listSegments()).map((s) => [s.segmentId, s.state])).toEqual([
          [2, 'completed'],
          [3, 'completed'],
          [4, 'active'],
        ]);
        // Earliest is now the newest completed segment; a position before it is refused.
        expect((await take(await log.openReader(), 2)).map(text)).toEqual(['s2', 'live']);
        await expect(log.openReader({ from: { segmentId: 0, entryId: 0 } })).rejects.toMatchObject({
          code: 'WAL_TRUNCATED',
        });
        // Nothing more to do on the next pass: the newest completed segment stays.
        expect(await retaining.maintain()).toMatchObject({ truncatedSegments: 0, failures: [] });
      } finally {
        await live.close();
        await retaining.close();
        await keepAll.close();
      }
    });

    it('truncates: deletes whole segments before the point and refuses readers positioned before it', async () => {
      const log = await wp.createLog('truncate');
      for (let s = 0; s < 3; s++) {
        const w = await log.openWriter();
        await w.appendBatch([0, 1, 2].map((i) => ({ payload: enc.encode(`s${s}e${i}`) })));
        await w.close();
      }
      const result = await log.truncate({ segmentId: 2, entryId: 1 });
      expect(result.deletedSegments).toBe(2);
      expect((await log.listSegments()).map((s) => s.segmentId)).toEqual([2]);
      await expect(log.openReader({ from: { segmentId: 0, entryId: 0 } })).rejects.toMatchObject({
        code: 'WAL_TRUNCATED',
      });
      expect((await take(await log.openReader({ from: 'earliest' }), 2)).map(text)).toEqual([
        's2e1',
        's2e2',
      ]);
      expect((await log.truncate({ segmentId: 1, entryId: 0 })).deletedSegments).toBe(0);
      expect(await log.truncationPoint()).toEqual({ segmentId: 2, entryId: 1 });
    });

    it('compacts small blocks under a reader in the middle of the segment without a gap or a duplicate', async () => {
      const tiny = open({ readBatchBytes: 4096 });
      try {
        const log = await tiny.createLog('compact');
        const writer = await log.openWriter();
        const all = Array.from({ length: 40 }, (_, i) => `c${i}`.padEnd(200, '.'));
        for (const t of all) await writer.append(enc.encode(t)); // one small block each
        await writer.close();
        const reader = await log.openReader();
        const first = await take(reader, 10);
        const before = (await log.listSegments())[0];
        const result = await log.compact({ targetBlockBytes: 4096 });
        const after = (await log.listSegments())[0];
        if (env.objects === undefined) {
          expect(result.compactedSegments).toBe(0);
        } else {
          expect(result.compactedSegments).toBe(1);
          expect(after?.blockCount).toBeLessThan((before?.blockCount ?? 0) / 4);
          const stored = await env.objects.list('');
          const blockObjects = stored.objects.filter((o) => o.key.endsWith('.blk'));
          expect(blockObjects.length).toBe(after?.blockCount);
        }
        const rest = await take(reader, 30);
        expect([...first, ...rest].map(text)).toEqual(all);
        expect((await take(await log.openReader(), 40)).map(text)).toEqual(all);
        await reader.close();
      } finally {
        await tiny.close();
      }
    });

    it('fails a reader of a deleted log with WAL_LOG_NOT_FOUND', async () => {
      const log = await wp.createLog('doomed');
      const writer = await log.openWriter();
      await writer.append(enc.encode('a'));
      await writer.close();
      const reader = await log.openReader();
      expect((await take(reader, 1)).map(text)).toEqual(['a']);
      await wp.deleteLog('doomed');
      await expect(reader.next()).rejects.toMatchObject({ code: 'WAL_LOG_NOT_FOUND' });
      expect(await reader.closed).toMatchObject({ code: 'WAL_LOG_NOT_FOUND' });
    });

    it('ends iteration on break, on close and on abort, each resolving closed', async () => {
      const log = await wp.createLog('teardown');
      const writer = await log.openWriter();
      await writer.appendBatch([{ payload: enc.encode('1') }, { payload: enc.encode('2') }]);
      const r1 = await log.openReader();
      for await (const _ of r1) break;
      expect(await r1.closed).toBeUndefined();
      const r2 = await log.openReader({ from: 'latest' });
      const pending = r2.next();
      await r2.close();
      expect(await pending).toBeUndefined();
      const controller = new AbortController();
      const r3 = await log.openReader({ from: 'latest', signal: controller.signal });
      const waiting = r3.next();
      controller.abort(new Error('stop'));
      await expect(waiting).rejects.toThrow('stop');
      expect(await r3.closed).toMatchObject({ message: 'stop' });
      expect(() => {
        r1[Symbol.asyncIterator]();
      }).toThrow(/only once/);
      await writer.close();
    });
  });
}
