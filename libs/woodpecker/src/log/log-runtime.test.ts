import { describe, expect, it } from 'vitest';
import { LogRuntime } from './log-runtime.js';

/** A block of `count` one-byte entries of segment 0 starting at `firstEntryId`. */
function block(firstEntryId: number, count: number) {
  return {
    segmentId: 0,
    firstEntryId,
    entries: Array.from({ length: count }, (_, i) => ({
      payload: new Uint8Array([firstEntryId + i]),
    })),
    sizeBytes: count,
    location: firstEntryId,
    nextLocation: firstEntryId + count,
  };
}

describe('the tail cache of a log runtime', () => {
  it('caches acknowledged blocks only while a reader is open, and forgets them when the last closes', () => {
    const runtime = new LogRuntime(1024);
    runtime.cacheBlock(block(0, 2));
    expect(runtime.readCached(0, 0, 10)).toBeUndefined();

    const releaseFirst = runtime.retainReader();
    const releaseSecond = runtime.retainReader();
    runtime.cacheBlock(block(2, 2));
    runtime.cacheBlock(block(4, 2));
    // Entries before the first cached block come from storage.
    expect(runtime.readCached(0, 0, 10)).toBeUndefined();
    const cached = runtime.readCached(0, 2, 10);
    expect(cached?.entries.map((e) => e.entryId)).toEqual([2, 3, 4, 5]);
    expect(cached?.cursor).toEqual({ entryId: 6, block: 6 });

    releaseFirst();
    releaseFirst(); // a second call does nothing: one reader is still open
    expect(runtime.readCached(0, 2, 10)?.entries).toHaveLength(4);
    releaseSecond();
    expect(runtime.readCached(0, 2, 10)).toBeUndefined();
    runtime.cacheBlock(block(6, 2));
    expect(runtime.readCached(0, 6, 10)).toBeUndefined();
  });

  it('keeps at most its byte limit, dropping the oldest blocks', () => {
    const runtime = new LogRuntime(4);
    const release = runtime.retainReader();
    runtime.cacheBlock(block(0, 2));
    runtime.cacheBlock(block(2, 2));
    runtime.cacheBlock(block(4, 2));
    expect(runtime.readCached(0, 0, 10)).toBeUndefined();
    expect(runtime.readCached(0, 2, 10)?.entries.map((e) => e.entryId)).toEqual([2, 3, 4, 5]);
    release();
  });
});
