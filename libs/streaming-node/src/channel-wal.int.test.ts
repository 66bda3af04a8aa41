import { join } from 'node:path';
import { PROP, StreamingError, toStreamingError } from '@woodstream/streaming';
import { makeTempDir, waitFor, type TempDir } from '@woodstream/testing';
import {
  comparePositions,
  FileMetadataStore,
  MemoryObjectStore,
  Woodpecker,
} from '@woodstream/woodpecker';
import { gatedObjectStore, type GatedObjectStore } from '@woodstream/woodpecker/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ChannelWal, type SafeTick } from './channel-wal.js';

describe('time ticks of a channel WAL', () => {
  let dir: TempDir;
  let metadata: FileMetadataStore;
  let wal: Woodpecker;
  let gated: GatedObjectStore;
  let channel: ChannelWal;
  const ticks: SafeTick[] = [];

  beforeEach(async () => {
    dir = await makeTempDir('channel-wal');
    metadata = await FileMetadataStore.open({ path: join(dir.path, 'meta.log') });
    // The in-memory store (it passes the storage contract suite) behind a gate: while closed,
    // uploads wait, so appends stay in flight for as long as a test needs.
    gated = gatedObjectStore(new MemoryObjectStore());
    wal = Woodpecker.open({
      metadata,
      storage: { mode: 'object', objectStore: gated.store },
      limits: { flushAgeMs: 1 },
    });
    channel = await ChannelWal.open(wal, metadata, 'wal-0000', 1, {
      maxMessageBytes: 1024,
      timeTickIntervalMs: 20,
      maxVChannelsPerPChannel: 16,
    });
    ticks.length = 0;
    channel.onTick((t) => ticks.push(t));
  });
  afterEach(async () => {
    gated.open();
    await channel.close();
    await wal.close();
    await metadata.close();
    await dir.remove();
  });

  it('persists and announces a tick while appends stay in flight, above every message before it', async () => {
    const first = await channel.append('v', new Uint8Array([1]), {});
    // Let the tick that persists `first` complete: one tick entry is in flight at a time.
    await waitFor(() => ticks.some((t) => t.timeTick > first.timeTick), {
      timeoutMs: 10_000,
      description: 'the tick after the first message',
    });
    gated.close();
    const held = channel.append('v', new Uint8Array([2]), {});
    // Stamped synchronously: the allocator's last tick is the held message's.
    const heldTick = channel.currentTick;
    // The next tick is taken and appended behind the held message instead of waiting for a
    // moment with nothing in flight.
    await waitFor(() => channel.currentTick > heldTick, {
      timeoutMs: 10_000,
      description: 'a tick taken while a message is in flight',
    });
    // Nothing announced meanwhile is above the held, unacknowledged message.
    for (const t of ticks) expect(t.timeTick).toBeLessThan(heldTick);
    gated.open();
    const second = await held;
    await waitFor(() => ticks.some((t) => t.timeTick > second.timeTick), {
      timeoutMs: 10_000,
      description: 'a tick above the held message',
    });
    const tick = ticks.find((t) => t.timeTick > second.timeTick) as SafeTick;
    // Its position is past both messages: a consumer announces it only after delivering them.
    expect(comparePositions(tick.position, second.id)).toBeGreaterThan(0);
    expect(comparePositions(tick.position, first.id)).toBeGreaterThan(0);

    // The log holds the tick entry right after the held message.
    const log = await wal.openLog('wal-0000');
    const reader = await log.openReader({ from: second.id });
    try {
      expect((await reader.next())?.properties?.[PROP.type]).toBe('data');
      const after = await reader.next();
      expect(after?.properties?.[PROP.type]).toBe('tick');
      expect(BigInt(after?.properties?.[PROP.timeTick] ?? '0')).toBeGreaterThan(second.timeTick);
    } finally {
      await reader.close();
    }
  });

  it('gives up opening when its signal aborts while storage holds the first time tick', async () => {
    const options = { maxMessageBytes: 1024, timeTickIntervalMs: 20, maxVChannelsPerPChannel: 16 };
    gated.close();
    const uploads = gated.puts();
    const superseded = new AbortController();
    const opening = ChannelWal.open(wal, metadata, 'wal-0001', 1, options, superseded.signal);
    const outcome = opening.then(
      () => 'opened',
      (err: unknown) => err,
    );
    // The first tick's block upload is held at the gate: the open cannot finish on its own.
    await waitFor(() => gated.puts() > uploads, {
      timeoutMs: 10_000,
      description: 'the first tick uploading',
    });
    superseded.abort(new StreamingError('IGNORED_OPERATION', 'superseded by term 2'));
    expect(await outcome).toMatchObject({ code: 'IGNORED_OPERATION' });
    // Storage answers again: the newer term opens, with a tick above everything before it.
    gated.open();
    const next = await ChannelWal.open(wal, metadata, 'wal-0001', 2, options);
    try {
      const before = next.currentTick;
      expect((await next.append('v', new Uint8Array([1]), {})).timeTick).toBeGreaterThan(before);
    } finally {
      await next.close();
    }
  });

  it('refuses to open at a term older than the one that opened the log, and the owner keeps writing', async () => {
    const options = { maxMessageBytes: 1024, timeTickIntervalMs: 20, maxVChannelsPerPChannel: 16 };
    const stale = await ChannelWal.open(wal, metadata, 'wal-0000', 0, options).then(
      () => 'opened',
      (err: unknown) => toStreamingError(err),
    );
    expect(stale).toMatchObject({ code: 'CHANNEL_FENCED' });
    // Term 1 was not fenced by the refused open.
    const ack = await channel.append('v', new Uint8Array([7]), {});
    expect(ack.timeTick).toBeGreaterThan(0n);
  });

  it('starts the next owner above every tick the previous one announced, even with its clock behind', async () => {
    const base = { maxMessageBytes: 1024, timeTickIntervalMs: 20, maxVChannelsPerPChannel: 16 };
    const ahead = await ChannelWal.open(wal, metadata, 'wal-0002', 1, {
      ...base,
      nowMs: () => Date.now() + 60_000,
    });
    await ahead.append('v', new Uint8Array([1]), {});
    const announced: bigint[] = [];
    ahead.onTick((t) => announced.push(t.timeTick));
    // Idle ticks after the stored one: announced, not written.
    await waitFor(() => announced.length >= 4, { timeoutMs: 10_000, description: 'idle ticks' });
    const highest = announced.at(-1) as bigint;
    await ahead.close();
    const behind = await ChannelWal.open(wal, metadata, 'wal-0002', 2, {
      ...base,
      nowMs: () => Date.now() - 60_000,
    });
    try {
      expect(behind.currentTick).toBeGreaterThan(highest);
      expect((await behind.append('v', new Uint8Array([2]), {})).timeTick).toBeGreaterThan(highest);
    } finally {
      await behind.close();
    }
  });

  it('writes no tick entry while idle, yet keeps announcing rising ticks', async () => {
    await channel.append('v', new Uint8Array([1]), {});
    // The tick after the message is persisted once.
    await waitFor(() => ticks.length >= 1, { timeoutMs: 10_000, description: 'a first tick' });
    const uploads = gated.puts();
    const announced = ticks.length;
    await waitFor(() => ticks.length >= announced + 5, {
      timeoutMs: 10_000,
      description: 'five idle ticks',
    });
    expect(gated.puts()).toBe(uploads);
    const seen = ticks.map((t) => t.timeTick);
    for (let i = 1; i < seen.length; i++) expect(seen[i]).toBeGreaterThan(seen[i - 1] as bigint);
  });
});
