import { assert } from '@woodstream/common';
import type { EntryData } from '../format/codec.js';
import type { LogPosition } from './position.js';

interface CachedBlock {
  segmentId: number;
  firstEntryId: number;
  entries: EntryData[];
  sizeBytes: number;
  /** Store cursor value (byte offset or block index) of this block and of the one after it. */
  location: number;
  nextLocation: number;
}

/**
 * In-process state of one log shared by its writer and readers in this process: the writer's
 * acknowledged end (LAC), a change signal that wakes tailing readers without polling (fired by
 * the in-process writer, and by a metadata watch for writers elsewhere), and a bounded cache of
 * the most recently acknowledged blocks so the live tail is served from memory.
 */
export class LogRuntime {
  /** The writer in this process that owns the fields below (the newest one opened). */
  owner: object | undefined;
  /** Last acknowledged position of the in-process writer; undefined without one. */
  lac: LogPosition | undefined;
  /** Segment the in-process writer appends to; undefined without an open writer. */
  writerSegmentId: number | undefined;
  private version = 0;
  private waiters = new Set<() => void>();
  // Invariant: cachedBytes == sum of sizeBytes in recent; cachedBytes <= maxCachedBytes
  // unless recent holds a single block; recent is empty while openReaders == 0.
  private recent: CachedBlock[] = [];
  private cachedBytes = 0;
  /**
   * Readers of this log open in this process. The cache is kept only while there is one: in a
   * process that only writes, it would keep every recent payload alive long enough to reach the
   * garbage collector's old generation, whose buffers only full collections free.
   */
  private openReaders = 0;

  /** Wakes this runtime's readers on changes made by writers in other processes. */
  readonly remote: { retain(fromRevision: number): () => void } | undefined;

  constructor(
    private readonly maxCachedBytes: number,
    remote?: (onChange: () => void) => { retain(fromRevision: number): () => void },
  ) {
    this.remote = remote?.(() => this.notify());
  }

  /** A number that changes whenever anything a reader may care about changed. */
  get changeVersion(): number {
    return this.version;
  }

  /** Wakes every reader waiting for a change. */
  notify(): void {
    this.version += 1;
    const waiters = this.waiters;
    this.waiters = new Set();
    for (const wake of waiters) wake();
  }

  /** Resolves at the next change after `sinceVersion` (at once if one already happened). */
  waitForChange(sinceVersion: number, signal: AbortSignal): Promise<void> {
    if (this.version !== sinceVersion) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        this.waiters.delete(wake);
        reject(signal.reason as Error);
      };
      const wake = (): void => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      if (signal.aborted) {
        reject(signal.reason as Error);
        return;
      }
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.add(wake);
    });
  }

  /**
   * Counts a reader of this log as open until the returned function is called (once; more calls
   * do nothing). Blocks acknowledged before the first reader opened are not cached: it reads
   * them from storage, then the live end from memory.
   */
  retainReader(): () => void {
    this.openReaders += 1;
    let isReleased = false;
    return () => {
      if (isReleased) return;
      isReleased = true;
      this.openReaders -= 1;
      assert(this.openReaders >= 0, 'released no more readers than were retained');
      if (this.openReaders === 0) {
        this.recent = [];
        this.cachedBytes = 0;
      }
    };
  }

  /** Records an acknowledged block for tail readers (while any is open). */
  cacheBlock(block: CachedBlock): void {
    if (this.maxCachedBytes <= 0 || this.openReaders === 0) return;
    this.recent.push(block);
    this.cachedBytes += block.sizeBytes;
    while (this.recent.length > 1 && this.cachedBytes > this.maxCachedBytes) {
      const dropped = this.recent.shift() as CachedBlock;
      this.cachedBytes -= dropped.sizeBytes;
    }
  }

  /** Entries of `segmentId` from `fromEntryId` through `toEntryId`, if the cache holds the start. */
  readCached(
    segmentId: number,
    fromEntryId: number,
    toEntryId: number,
  ):
    | {
        entries: { entryId: number; data: EntryData }[];
        cursor: { entryId: number; block: number };
      }
    | undefined {
    const start = this.recent.findIndex(
      (b) =>
        b.segmentId === segmentId &&
        b.firstEntryId <= fromEntryId &&
        fromEntryId < b.firstEntryId + b.entries.length,
    );
    if (start < 0) return undefined;
    const out: { entryId: number; data: EntryData }[] = [];
    let next = fromEntryId;
    let cursor = { entryId: fromEntryId, block: (this.recent[start] as CachedBlock).location };
    for (let i = start; i < this.recent.length; i++) {
      const b = this.recent[i] as CachedBlock;
      if (b.segmentId !== segmentId || b.firstEntryId > next) break;
      for (let k = next - b.firstEntryId; k < b.entries.length && next <= toEntryId; k++, next++) {
        out.push({ entryId: next, data: b.entries[k] as EntryData });
      }
      const isBlockDone = next === b.firstEntryId + b.entries.length;
      cursor = { entryId: next, block: isBlockDone ? b.nextLocation : b.location };
      if (!isBlockDone) break;
    }
    return { entries: out, cursor };
  }

  /** Drops cached blocks of segments below `segmentId` (after truncation). */
  dropBefore(segmentId: number): void {
    this.recent = this.recent.filter((b) => b.segmentId >= segmentId);
    this.cachedBytes = this.recent.reduce((n, b) => n + b.sizeBytes, 0);
  }
}
