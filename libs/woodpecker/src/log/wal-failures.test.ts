import { describe, expect, it } from 'vitest';
import { StorageUnavailableError } from '../errors.js';
import { encodeBlock } from '../format/codec.js';
import { FileMetadataStore } from '../storage/file-metadata-store.js';
import { MemoryObjectStore } from '../storage/memory-object-store.js';
import { Woodpecker } from '../woodpecker.js';
import { waitFor } from '@woodstream/testing';
import { gatedObjectStore } from '../testing/gated-object-store.js';
import { take } from './wal-suite.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

async function setup(conditionalWrites = true) {
  const metadata = await FileMetadataStore.open({});
  const objects = new MemoryObjectStore({ conditionalWrites });
  const wp = Woodpecker.open({
    metadata,
    storage: { mode: 'object', objectStore: objects },
    limits: { flushAgeMs: 1 },
  });
  return {
    metadata,
    objects,
    wp,
    [Symbol.asyncDispose]: async () => {
      await wp.close();
      await metadata.close();
      await objects.close();
    },
  };
}

describe('WAL failure handling', () => {
  it('makes appends wait once maxInflightBytes are buffered or uploading, and an aborted wait adds nothing', async () => {
    const metadata = await FileMetadataStore.open({});
    const gated = gatedObjectStore(new MemoryObjectStore(), { isClosed: true });
    const wp = Woodpecker.open({
      metadata,
      storage: { mode: 'object', objectStore: gated.store },
      limits: {
        flushAgeMs: 1,
        maxInflightBytes: 1024 * 1024,
        maxBlockBytes: 64 * 1024,
        maxEntryBytes: 128 * 1024,
      },
    });
    try {
      const log = await wp.createLog('pressure');
      const writer = await log.openWriter();
      const settled: boolean[] = [];
      const admitted = Array.from({ length: 15 }, (_, i) => {
        const p = writer.append(new Uint8Array(64 * 1024).fill(i));
        void p.then(() => (settled[i] = true));
        return p;
      });
      // 15 x 64 KiB fit under 1 MiB; the 16th and 17th must wait for uploads to finish.
      const controller = new AbortController();
      const waiting = writer.append(new Uint8Array(64 * 1024).fill(100), {
        signal: controller.signal,
      });
      const queued = writer.append(new Uint8Array(64 * 1024).fill(101));
      await waitFor(() => gated.puts() > 0, { timeoutMs: 5_000 });
      controller.abort(new Error('caller gave up'));
      await expect(waiting).rejects.toThrow('caller gave up');
      expect(settled.filter(Boolean)).toHaveLength(0);
      gated.open();
      const positions = await Promise.all([...admitted, queued]);
      expect(positions.map((p) => p.entryId)).toEqual(Array.from({ length: 16 }, (_, i) => i));
      const read = await take(await log.openReader(), 16);
      expect(read.map((e) => e.payload[0])).toEqual([
        ...Array.from({ length: 15 }, (_, i) => i),
        101,
      ]);
      await writer.close();
    } finally {
      await wp.close();
      await metadata.close();
    }
  });

  it('retries a transient storage outage and acknowledges the append', async () => {
    await using env = await setup();
    const writer = await (await env.wp.createLog('flaky')).openWriter();
    env.objects.failNext('put', new StorageUnavailableError('503 slow down'), 2);
    await expect(writer.append(enc.encode('survives'))).resolves.toEqual({
      segmentId: 0,
      entryId: 0,
    });
    await writer.close();
  });

  it('fails the append and every later one after a lasting outage, and never exposes a half-written entry', async () => {
    await using env = await setup();
    const log = await env.wp.createLog('outage');
    const writer = await log.openWriter();
    await writer.append(enc.encode('before'));
    env.objects.failNext('put', new StorageUnavailableError('storage down'), 1_000);
    const during = await Promise.allSettled([
      writer.append(enc.encode('lost-1')),
      writer.append(enc.encode('lost-2')),
    ]);
    expect(during.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(during[0]).toMatchObject({ reason: { code: 'WAL_WRITER_FAILED', retryable: false } });
    await expect(writer.append(enc.encode('after'))).rejects.toMatchObject({
      code: 'WAL_WRITER_FAILED',
    });
    env.objects.clearFailures();
    // Storage is back: a new writer recovers and appends; only acknowledged entries are visible.
    const next = await log.openWriter();
    await next.append(enc.encode('recovered'));
    const read = await take(await log.openReader(), 2);
    expect(read.map((e) => dec.decode(e.payload))).toEqual(['before', 'recovered']);
    await next.close();
  }, 60_000);

  for (const conditionalWrites of [true, false]) {
    it(`makes exactly the acknowledged entries of a fenced writer readable (conditional writes: ${conditionalWrites})`, async () => {
      await using env = await setup(conditionalWrites);
      const log = await env.wp.createLog('overlap');
      const old = await log.openWriter();
      const inflight = Array.from({ length: 300 }, (_, i) => old.append(enc.encode(`old-${i}`)));
      // Let part of it land, then take over while the rest is still in flight.
      await inflight[40];
      const newer = await log.openWriter();
      const settled = await Promise.allSettled(inflight);
      const acked = settled.flatMap((r, i) => (r.status === 'fulfilled' ? [`old-${i}`] : []));
      for (const r of settled)
        if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'WAL_FENCED' });
      await newer.append(enc.encode('new'));
      const read = await take(await log.openReader(), acked.length + 1);
      expect(read.map((e) => dec.decode(e.payload))).toEqual([...acked, 'new']);
      await newer.close();
    });
  }

  it('reports a damaged block inside a completed segment as WAL_CORRUPT instead of returning it', async () => {
    await using env = await setup();
    const log = await env.wp.createLog('damaged');
    const writer = await log.openWriter();
    await writer.append(enc.encode('a'));
    await writer.append(enc.encode('b'));
    await writer.close();
    const { objects } = await env.objects.list('');
    const block = objects.find((o) => o.key.endsWith('0000000001.blk'));
    expect(block).toBeDefined();
    const bytes = (await env.objects.get(block?.key ?? '')) as Uint8Array;
    const damaged = new Uint8Array(bytes);
    damaged[damaged.length - 1] = (damaged[damaged.length - 1] as number) ^ 0x40;
    await env.objects.put(block?.key ?? '', damaged);
    const reader = await log.openReader();
    expect(dec.decode((await reader.next())?.payload)).toBe('a');
    await expect(reader.next()).rejects.toMatchObject({ code: 'WAL_CORRUPT', retryable: false });
  });

  it('ignores blocks a stale writer stored after the fence', async () => {
    await using env = await setup(true);
    const log = await env.wp.createLog('after-fence');
    const old = await log.openWriter();
    await old.append(enc.encode('kept'));
    const newer = await log.openWriter();
    // A stale writer's block that landed past the fence (index 2, after the fence at 1).
    const { objects } = await env.objects.list('');
    const first = objects.find((o) => o.key.endsWith('/0000000000/0000000000.blk'));
    const late = encodeBlock({
      segmentId: 0,
      firstEntryId: 1,
      epoch: old.epoch,
      entries: [{ payload: enc.encode('ghost') }],
    });
    await env.objects.put((first?.key ?? '').replace('0000000000.blk', '0000000002.blk'), late);
    await newer.append(enc.encode('new'));
    const read = await take(await log.openReader(), 2);
    expect(read.map((e) => dec.decode(e.payload))).toEqual(['kept', 'new']);
    await newer.close();
  });
});
