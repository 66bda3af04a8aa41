import type { WalLimits } from '../config.js';
import { ClosedError, CorruptDataError, LogNotFoundError, TruncatedError } from '../errors.js';
import type { SegmentCursor, SegmentStore, StoredEntry } from '../segment/segment-store.js';
import type { MetadataStore } from '../storage/metadata-store.js';
import type { LogRuntime } from './log-runtime.js';
import { decodeJson, keys, listSegments, type LogMeta, type SegmentMeta } from './metadata.js';
import { comparePositions, formatPosition, type LogPosition } from './position.js';

/** One entry read from a log. */
export interface LogEntry {
  position: LogPosition;
  payload: Uint8Array;
  properties?: Record<string, string>;
}

/** Where a reader starts: the first retained entry, the next entry to be appended, or a position. */
export type ReadFrom = 'earliest' | 'latest' | LogPosition;

export interface ReaderContext {
  logName: string;
  logId: number;
  metadata: MetadataStore;
  segments: SegmentStore;
  runtime: LogRuntime;
  limits: Readonly<WalLimits>;
}

/**
 * Reads a log in order from a start position and then follows its live end. An AsyncIterable
 * of entries that never yields anything past the committed end (LAC): completed segments are
 * bounded by their final lastEntryId, the in-process writer's segment by its acknowledgements.
 * Waiting at the live end costs no request: a writer in this process wakes readers directly, a
 * writer elsewhere through a metadata watch on the log's progress key (one per log and client,
 * while readers are open); a woken reader reads metadata and storage once, and waits again.
 *
 * Reads are pull-driven: at most `readBatchBytes` are buffered. `break` out of `for await`,
 * `close()`, `await using` and aborting the signal all end it; `closed` resolves then, with the
 * error that ended it if any. Iterating twice throws.
 */
export class LogReader implements AsyncIterable<LogEntry>, AsyncDisposable {
  readonly closed: Promise<Error | undefined>;
  private resolveClosed!: (err: Error | undefined) => void;
  private readonly abort = new AbortController();
  private position: LogPosition;
  private cursor: SegmentCursor;
  private batch: StoredEntry[] = [];
  private batchSegmentId = 0;
  private isIterating = false;
  private isClosed = false;
  // Completed segments never change until they are truncated; cache them.
  private readonly completed = new Map<number, SegmentMeta>();

  private constructor(
    private readonly ctx: ReaderContext,
    start: LogPosition,
    signal: AbortSignal | undefined,
    /** Releases what the open retained: the remote watch and the runtime's reader count. */
    private readonly release: () => void,
  ) {
    this.position = start;
    this.cursor = { entryId: start.entryId, block: -1 };
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    signal?.addEventListener('abort', () => this.finish(signal.reason as Error), { once: true });
    if (signal?.aborted === true) this.finish(signal.reason as Error);
  }

  /** Resolves the start position and returns a reader. Throws TruncatedError for positions before the truncation point. */
  static async open(ctx: ReaderContext, from: ReadFrom, signal?: AbortSignal): Promise<LogReader> {
    const { log, revision } = await readLogMetaAt(ctx, signal);
    // Watch from before anything else is read: a change made after that read always wakes us.
    const releaseWatch = ctx.runtime.remote?.retain(revision) ?? (() => {});
    // Before the start position is read: blocks acknowledged from then on are cached for it.
    const releaseReader = ctx.runtime.retainReader();
    const release = (): void => {
      releaseWatch();
      releaseReader();
    };
    try {
      return new LogReader(ctx, await startPosition(ctx, log, from, signal), signal, release);
    } catch (err) {
      release();
      throw err;
    }
  }

  /** The position of the next entry this reader will return. */
  get nextPosition(): LogPosition {
    return this.position;
  }

  [Symbol.asyncIterator](): AsyncIterator<LogEntry> {
    if (this.isIterating) throw new Error('a LogReader can be iterated only once');
    this.isIterating = true;
    return {
      next: async (): Promise<IteratorResult<LogEntry>> => {
        const entry = await this.next();
        return entry === undefined
          ? { done: true, value: undefined }
          : { done: false, value: entry };
      },
      return: async (): Promise<IteratorResult<LogEntry>> => {
        await this.close();
        return { done: true, value: undefined };
      },
    };
  }

  /** The next entry, waiting at the live end; undefined once the reader is closed. */
  async next(): Promise<LogEntry | undefined> {
    try {
      while (this.batch.length === 0) {
        if (this.isClosed) return undefined;
        await this.fill();
      }
    } catch (err) {
      if (this.isClosed) {
        const reason = await this.closed;
        if (reason === undefined) return undefined;
        throw reason;
      }
      this.finish(err as Error);
      throw err;
    }
    const stored = this.batch.shift() as StoredEntry;
    // Frozen, as the writer's acknowledged positions are.
    const position = Object.freeze({ segmentId: this.batchSegmentId, entryId: stored.entryId });
    this.position = { segmentId: this.batchSegmentId, entryId: stored.entryId + 1 };
    const entry: LogEntry = { position, payload: stored.data.payload };
    if (stored.data.properties !== undefined) entry.properties = { ...stored.data.properties };
    return entry;
  }

  async close(): Promise<void> {
    this.finish(undefined);
    await this.closed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private finish(err: Error | undefined): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.batch = [];
    this.abort.abort(err ?? new ClosedError('the reader is closed'));
    this.release();
    this.resolveClosed(err);
  }

  /** Loads the next batch into `this.batch`, waiting at the live end. */
  private async fill(): Promise<void> {
    const { ctx } = this;
    const signal = this.abort.signal;
    const { segmentId } = this.position;
    const version = ctx.runtime.changeVersion;
    const meta = await this.segmentMeta(segmentId, signal);
    if (meta === undefined) {
      await this.skipMissingSegment(version, signal);
      return;
    }
    let toEntryId: number | undefined;
    let isComplete = false;
    if (meta.state !== 'active') {
      toEntryId = meta.lastEntryId;
      isComplete = true;
      if (this.position.entryId > meta.lastEntryId) {
        this.moveTo({ segmentId: segmentId + 1, entryId: 0 });
        return;
      }
    } else if (ctx.runtime.writerSegmentId === segmentId) {
      const lac = ctx.runtime.lac;
      toEntryId = lac !== undefined && lac.segmentId === segmentId ? lac.entryId : -1;
      const cached = ctx.runtime.readCached(segmentId, this.position.entryId, toEntryId);
      if (cached !== undefined && cached.entries.length > 0) {
        this.deliver(segmentId, cached.entries, cached.cursor);
        return;
      }
    } else if (!ctx.segments.storageFencing) {
      toEntryId = meta.lastEntryId;
    }
    if (toEntryId === undefined || this.position.entryId <= toEntryId) {
      const read = await ctx.segments.read(ctx.logId, segmentId, this.cursor, {
        ...(toEntryId === undefined ? {} : { toEntryId }),
        maxBytes: ctx.limits.readBatchBytes,
        isComplete,
        generation: meta.generation ?? 0,
        signal,
      });
      if (read.end === 'missing') {
        await this.onMissingBlock(meta, signal);
        return;
      }
      if (read.entries.length > 0) {
        this.deliver(segmentId, read.entries, read.cursor);
        return;
      }
      this.cursor = read.cursor;
    }
    // Nothing new: the live end of the active segment. Woken by the writer in this process, or
    // by the progress watch (a writer elsewhere advanced, sealed or rolled).
    await ctx.runtime.waitForChange(version, signal);
    // The segment may have been completed meanwhile; forget nothing cached about active ones.
  }

  private deliver(segmentId: number, entries: StoredEntry[], cursor: SegmentCursor): void {
    this.batch = entries;
    this.batchSegmentId = segmentId;
    this.cursor = cursor;
  }

  private moveTo(position: LogPosition): void {
    this.position = position;
    this.cursor = { entryId: position.entryId, block: -1 };
  }

  /** The metadata of a segment: cached when completed, read otherwise. */
  private async segmentMeta(
    segmentId: number,
    signal: AbortSignal,
  ): Promise<SegmentMeta | undefined> {
    const cached = this.completed.get(segmentId);
    if (cached !== undefined) return cached;
    // The in-process writer's current segment is active by definition: skip the read.
    if (this.ctx.runtime.writerSegmentId === segmentId) {
      return {
        segmentId,
        state: 'active',
        epoch: 0,
        createdAtMs: 0,
        lastEntryId: -1,
        sizeBytes: 0,
        blockCount: 0,
      };
    }
    const kv = await this.ctx.metadata.get(keys.segment(this.ctx.logName, segmentId), { signal });
    if (kv === undefined) return undefined;
    const meta = decodeJson<SegmentMeta>(kv);
    if (meta.state !== 'active') {
      if (this.completed.size >= 1024) this.completed.clear();
      this.completed.set(segmentId, meta);
    }
    return meta;
  }

  /**
   * A block of a completed segment is gone. If a compaction switched the segment to a new
   * generation, continue there from the same entry id (positions do not change, so nothing is
   * skipped or repeated); otherwise the data is lost.
   */
  private async onMissingBlock(meta: SegmentMeta, signal: AbortSignal): Promise<void> {
    this.completed.delete(meta.segmentId);
    const fresh = await this.segmentMeta(meta.segmentId, signal);
    if (fresh === undefined) return; // truncated meanwhile: handled by the next fill
    if ((fresh.generation ?? 0) === (meta.generation ?? 0)) {
      throw new CorruptDataError(
        `log ${this.ctx.logName}: segment ${meta.segmentId} is missing a block below its committed end ${meta.lastEntryId}`,
      );
    }
    this.cursor = { entryId: this.position.entryId, block: -1 };
  }

  /** The reader's segment does not exist: truncated away, not created yet, or skipped. */
  private async skipMissingSegment(version: number, signal: AbortSignal): Promise<void> {
    const log = await readLogMeta(this.ctx, signal);
    if (this.position.segmentId < log.truncatedBefore.segmentId) {
      throw new TruncatedError(
        `log ${this.ctx.logName}: position ${formatPosition(this.position)} was truncated (the log now starts at ${formatPosition(log.truncatedBefore)})`,
      );
    }
    const later = (await listSegments(this.ctx.metadata, this.ctx.logName, signal)).find(
      (s) => s.meta.segmentId > this.position.segmentId,
    );
    if (later !== undefined) {
      this.moveTo({ segmentId: later.meta.segmentId, entryId: 0 });
      return;
    }
    // Not created yet: wait for a writer to roll (creating a segment publishes progress).
    await this.ctx.runtime.waitForChange(version, signal);
  }
}

/** Resolves where a reader starts. Throws TruncatedError for positions before the truncation point. */
async function startPosition(
  ctx: ReaderContext,
  log: LogMeta,
  from: ReadFrom,
  signal?: AbortSignal,
): Promise<LogPosition> {
  let start: LogPosition;
  if (from === 'earliest') {
    start = log.truncatedBefore;
  } else if (from === 'latest') {
    start = await latestPosition(ctx, signal);
  } else {
    start = { segmentId: from.segmentId, entryId: from.entryId };
    if (comparePositions(start, log.truncatedBefore) < 0) {
      throw new TruncatedError(
        `log ${ctx.logName}: position ${formatPosition(start)} is before the truncation point ${formatPosition(log.truncatedBefore)}`,
      );
    }
  }
  return start;
}

/** The log's metadata with the store revision it was read at. */
async function readLogMetaAt(
  ctx: ReaderContext,
  signal?: AbortSignal,
): Promise<{ log: LogMeta; revision: number }> {
  // `wp/log/<name>` sorts before every longer name it prefixes, so limit 1 finds it if it exists.
  const { kvs, revision } = await ctx.metadata.range(keys.log(ctx.logName), { signal, limit: 1 });
  const kv = kvs[0];
  if (kv === undefined || kv.key !== keys.log(ctx.logName))
    throw new LogNotFoundError(`log ${ctx.logName} does not exist`);
  const log = decodeJson<LogMeta>(kv);
  if (log.id !== ctx.logId)
    throw new LogNotFoundError(`log ${ctx.logName} was deleted (and re-created)`);
  return { log, revision };
}

async function readLogMeta(ctx: ReaderContext, signal?: AbortSignal): Promise<LogMeta> {
  const kv = await ctx.metadata.get(keys.log(ctx.logName), { signal });
  if (kv === undefined) throw new LogNotFoundError(`log ${ctx.logName} does not exist`);
  const meta = decodeJson<LogMeta>(kv);
  if (meta.id !== ctx.logId)
    throw new LogNotFoundError(`log ${ctx.logName} was deleted (and re-created)`);
  return meta;
}

/** The position the next appended entry will get (as far as can be known from here). */
async function latestPosition(ctx: ReaderContext, signal?: AbortSignal): Promise<LogPosition> {
  const segments = await listSegments(ctx.metadata, ctx.logName, signal);
  const last = segments.at(-1)?.meta;
  if (last === undefined) return { segmentId: 0, entryId: 0 };
  if (last.state !== 'active') return { segmentId: last.segmentId + 1, entryId: 0 };
  if (ctx.runtime.writerSegmentId === last.segmentId) {
    const lac = ctx.runtime.lac;
    return {
      segmentId: last.segmentId,
      entryId: lac !== undefined && lac.segmentId === last.segmentId ? lac.entryId + 1 : 0,
    };
  }
  if (!ctx.segments.storageFencing)
    return { segmentId: last.segmentId, entryId: last.lastEntryId + 1 };
  // Walk the active segment's stored blocks to its current end.
  let cursor: SegmentCursor = { entryId: 0, block: -1 };
  for (;;) {
    const read = await ctx.segments.read(ctx.logId, last.segmentId, cursor, {
      maxBytes: ctx.limits.readBatchBytes,
      isComplete: false,
      ...(signal ? { signal } : {}),
    });
    cursor = read.cursor;
    if (read.end !== 'more') return { segmentId: last.segmentId, entryId: cursor.entryId };
  }
}
