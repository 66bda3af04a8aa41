import { setMaxListeners } from 'node:events';
import { context, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import { assert } from '@woodstream/common';
import type { WalLimits } from '../config.js';
import type { WalError } from '../errors.js';
import {
  ClosedError,
  EntryTooLargeError,
  FencedError,
  InvalidArgumentError,
  WriterFailedError,
} from '../errors.js';
import {
  BLOCK_HEADER_BYTES,
  encodeBlockHeader,
  encodePaddingBlock,
  encodeRecord,
  encodeRecordHead,
  type EntryData,
} from '../format/codec.js';
import type {
  BlockInfo,
  PendingBlock,
  SegmentExtent,
  SegmentSink,
  SegmentStore,
} from '../segment/segment-store.js';
import type { MetadataStore } from '../storage/metadata-store.js';
import { encodeJson, keys, progressOp, type SegmentMeta } from './metadata.js';
import type { LogRuntime } from './log-runtime.js';
import type { LogPosition } from './position.js';
import { endSpanWith, type WalTelemetry } from './telemetry.js';

/** Options of `append` and `appendBatch`. */
export interface AppendOptions {
  signal?: AbortSignal;
  /**
   * Hand the payloads (and property objects) over instead of having them copied: the log keeps
   * and writes the caller's bytes, and readers at the live end are given the same bytes and
   * objects. The caller must never change them afterwards. Saves an allocation and a copy per
   * entry, which for large entries is much of the writer's CPU.
   * @default false (the payload is copied; the caller may reuse it at once)
   */
  transfer?: boolean;
}

/** An entry to append. */
export interface AppendEntry {
  payload: Uint8Array;
  /** String properties stored with the entry (for example trace context). */
  properties?: Record<string, string>;
}

/**
 * The one promise of an `appendBatch`: settled when its last entry is acknowledged (with every
 * position) or when any of its entries fails. Entries of a batch carry it instead of a promise
 * each: a batch of 64 makes one promise, not 64.
 */
class BatchSettler {
  private remaining: number;
  readonly positions: LogPosition[];
  constructor(
    count: number,
    private readonly resolve: (positions: LogPosition[]) => void,
    readonly reject: (err: Error) => void,
  ) {
    this.remaining = count;
    this.positions = new Array<LogPosition>(count);
  }
  settle(index: number, position: LogPosition): void {
    this.positions[index] = position;
    // Invariant: acks come in entry order, so the last one settles the batch.
    if (--this.remaining === 0) this.resolve(this.positions);
  }
}

/** One appended entry until it is acknowledged or failed. A class: it is made per append. */
class PendingEntry {
  startedAt = 0;
  /** Set for an entry of `appendBatch`: it settles through the batch, at `batchIndex`. */
  batch: BatchSettler | undefined = undefined;
  batchIndex = 0;
  /** The entry's span while tracing records it (flush spans link to it). */
  span: Span | undefined = undefined;
  resolve: (position: LogPosition) => void = noop;
  reject: (err: Error) => void = noop;
  /** Bytes of the encoded record, payload included. */
  readonly sizeBytes: number;
  constructor(
    /**
     * The encoded record: all of it (with a private copy of the payload), or, for a
     * transferred payload, its head only — the record is then `record` followed by `data.payload`.
     */
    readonly record: Buffer,
    /** Payload and properties as readers see them: a view into `record`, or the transferred payload. */
    readonly data: EntryData,
    readonly isTransferred: boolean,
  ) {
    this.sizeBytes = isTransferred
      ? record.byteLength + data.payload.byteLength
      : record.byteLength;
  }
}

const noop = (): void => {};

/** Throws unless `k` is a 1–65535 byte name and `v` a string. */
function checkProperty(k: string, v: unknown): void {
  if (
    typeof v !== 'string' ||
    k.length === 0 ||
    // At most 3 UTF-8 bytes per UTF-16 unit: only long names need measuring.
    (k.length > 0x5555 && Buffer.byteLength(k) > 0xffff)
  ) {
    throw new InvalidArgumentError(
      `property ${JSON.stringify(k)} must have a 1-65535 byte name and a string value`,
    );
  }
}

/** Rejects an entry (a batch entry rejects its batch; the first rejection wins) and ends its span. */
function failEntry(e: PendingEntry, err: WalError): void {
  if (e.span !== undefined) {
    e.span.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
    e.span.end();
  }
  e.reject(err);
}

interface InflightBlock {
  segmentId: number;
  /** Byte offset of the block in its segment (the local store's cursor). */
  offset: number;
  info: BlockInfo;
  entries: PendingEntry[];
  isDone: boolean;
}

interface ActiveSegment {
  segmentId: number;
  sink: SegmentSink;
  /** Revision of the segment's metadata key; every update of it compares against this. */
  modRevision: number;
  createdAtMs: number;
  // Invariant: nextEntryId == sum of entryCount over blocks.
  nextEntryId: number;
  sizeBytes: number;
  blocks: BlockInfo[];
  ageTimer: NodeJS.Timeout | undefined;
}

type WriterState = 'open' | 'rolling' | 'closing' | 'failed' | 'closed';

/** What a LogWriter needs from its log handle; built by LogHandle.openWriter. */
export interface WriterContext {
  logName: string;
  logId: number;
  epoch: number;
  /** modRevision of the writer key after our epoch bump: the fencing token for metadata writes. */
  writerRevision: number;
  metadata: MetadataStore;
  segments: SegmentStore;
  runtime: LogRuntime;
  limits: Readonly<WalLimits>;
  telemetry: WalTelemetry;
  onClosed: () => void;
}

/**
 * The single writer of a log. `append` may be called many times without waiting; entries are
 * acknowledged strictly in append order once durable. A failure fails the entry and every
 * later pending entry, and the writer stops (its outcome for those entries is indeterminate:
 * an entry may or may not be in the log). A newer writer fences this one: its pending and
 * later appends reject with FencedError.
 */
export class LogWriter {
  private state: WriterState = 'open';
  private failure: WalError | undefined;
  private segment: ActiveSegment | undefined;
  // Entries waiting to be put into a block, in append order.
  private buffer: PendingEntry[] = [];
  private bufferBytes = 0;
  // Blocks handed to the sink, in block order. Acks pop from the head only.
  private inflight: InflightBlock[] = [];
  private writesInFlight = 0;
  // Invariant: usedBytes == bufferBytes + bytes of inflight blocks' entries.
  private usedBytes = 0;
  private capacityWaiters: { bytes: number; wake: () => void }[] = [];
  private flushTimer: NodeJS.Timeout | undefined;
  private isFlushQueued = false;
  private drainWaiters: (() => void)[] = [];
  /** Published LAC for stores without storage fencing (see publishLac). */
  private lacPublish: Promise<void> | undefined;
  /** Last position acknowledged by this writer. */
  private lastAcked: LogPosition | undefined;
  /** Progress wake-ups for remote readers (see noteProgress). */
  private readonly progress = {
    published: undefined as LogPosition | undefined,
    isInFlight: false,
    timer: undefined as NodeJS.Timeout | undefined,
    lastStartedAtMs: Number.NEGATIVE_INFINITY,
  };
  private readonly abort = new AbortController();

  private constructor(private readonly ctx: WriterContext) {
    // Every in-flight upload listens on this signal; their number is bounded by maxConcurrentUploads.
    setMaxListeners(1024, this.abort.signal);
  }

  /** Creates the writer's first segment. Called by LogHandle after fencing older segments. */
  static async start(
    ctx: WriterContext,
    firstSegmentId: number,
    signal?: AbortSignal,
  ): Promise<LogWriter> {
    const writer = new LogWriter(ctx);
    // The newest writer in this process owns the shared tail state; an older one (now fenced)
    // must not touch it.
    ctx.runtime.owner = writer;
    ctx.runtime.lac = undefined;
    ctx.runtime.writerSegmentId = undefined;
    try {
      await writer.createSegment(firstSegmentId, signal);
    } catch (err) {
      writer.state = 'failed';
      writer.detach();
      throw err;
    }
    return writer;
  }

  get epoch(): number {
    return this.ctx.epoch;
  }

  /** Appends one entry; resolves with its position once durable. */
  append(
    payload: Uint8Array,
    options: AppendOptions & { properties?: Record<string, string> } = {},
  ): Promise<LogPosition> {
    try {
      this.throwIfUnusable();
      const entry = this.prepare(payload, options.properties, options.transfer === true);
      const reserved = this.reserve(entry.sizeBytes, options.signal);
      if (reserved === true) return this.push(entry);
      return reserved.then(() => {
        this.throwIfUnusable();
        return this.push(entry);
      });
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** Appends entries as one unit of admission; they stay consecutive and are acked in order. */
  async appendBatch(
    entries: readonly AppendEntry[],
    options: AppendOptions = {},
  ): Promise<LogPosition[]> {
    this.throwIfUnusable();
    const transfer = options.transfer === true;
    const prepared = entries.map((e) => this.prepare(e.payload, e.properties, transfer));
    if (prepared.length === 0) return [];
    let bytes = 0;
    for (const e of prepared) bytes += e.sizeBytes;
    const reserved = this.reserve(bytes, options.signal);
    if (reserved !== true) await reserved;
    this.throwIfUnusable();
    return new Promise<LogPosition[]>((resolve, reject) => {
      const batch = new BatchSettler(prepared.length, resolve, reject);
      for (let i = 0; i < prepared.length; i++) {
        const e = prepared[i] as PendingEntry;
        e.batch = batch;
        e.batchIndex = i;
        e.reject = batch.reject;
        this.enqueue(e);
      }
      this.scheduleFlush();
    });
  }

  /**
   * Throws the typed error `append` would reject this entry with for bad input (payload type
   * or size, property names and values), without appending anything. Lets a caller that
   * batches entries from several sources keep a bad one out of a batch.
   */
  checkEntry(payload: Uint8Array, properties?: Record<string, string>): void {
    this.checkPayload(payload);
    if (properties === undefined) return;
    for (const k in properties) if (Object.hasOwn(properties, k)) checkProperty(k, properties[k]);
  }

  private checkPayload(payload: Uint8Array): void {
    if (!(payload instanceof Uint8Array))
      throw new InvalidArgumentError('payload must be a Uint8Array');
    if (payload.byteLength > this.ctx.limits.maxEntryBytes) {
      throw new EntryTooLargeError(
        `entry of ${payload.byteLength} bytes exceeds maxEntryBytes (${this.ctx.limits.maxEntryBytes})`,
      );
    }
  }

  /**
   * Validates and encodes an entry: the whole record with a copy of the payload, or, when
   * transferred, the record's head only. Throws typed errors for bad input.
   */
  private prepare(
    payload: Uint8Array,
    properties: Record<string, string> | undefined,
    transfer: boolean,
  ): PendingEntry {
    this.checkPayload(payload);
    let props: Record<string, string> | undefined;
    if (properties !== undefined && transfer) {
      // Handed over with the payload: kept as given (readers at the live end see this object).
      for (const k in properties) if (Object.hasOwn(properties, k)) checkProperty(k, properties[k]);
      props = properties;
    } else if (properties !== undefined) {
      // A private copy: readers of the tail cache see the properties as appended.
      props = {};
      for (const k in properties) {
        if (!Object.hasOwn(properties, k)) continue;
        const v = properties[k];
        checkProperty(k, v);
        props[k] = v as string;
      }
    }
    if (transfer) {
      const data: EntryData = props === undefined ? { payload } : { payload, properties: props };
      return new PendingEntry(encodeRecordHead(data), data, true);
    }
    const record = encodeRecord(props === undefined ? { payload } : { payload, properties: props });
    // A plain Uint8Array view of the payload inside the record: readers share it, nobody copies it.
    const view = new Uint8Array(
      record.buffer,
      record.byteOffset + record.byteLength - payload.byteLength,
      payload.byteLength,
    );
    const data: EntryData =
      props === undefined ? { payload: view } : { payload: view, properties: props };
    return new PendingEntry(record, data, false);
  }

  private push(entry: PendingEntry): Promise<LogPosition> {
    const promise = new Promise<LogPosition>((resolve, reject) => {
      entry.resolve = resolve;
      entry.reject = reject;
    });
    this.enqueue(entry);
    this.scheduleFlush();
    return promise;
  }

  /** Puts an entry whose outcome is wired up at the end of the buffer. */
  private enqueue(entry: PendingEntry): void {
    entry.startedAt = performance.now();
    // Ended by ackBlock or fail, with the entry.
    entry.span = this.ctx.telemetry.startAppend(entry.sizeBytes);
    this.buffer.push(entry);
    this.bufferBytes += entry.sizeBytes;
  }

  private throwIfUnusable(): void {
    if (this.state === 'failed') throw this.failure as WalError;
    if (this.state === 'closing' || this.state === 'closed')
      throw new ClosedError('the writer is closed');
  }

  /**
   * Takes `bytes` of the in-flight budget: `true` at once when it fits (the common case, kept
   * synchronous), else a promise that resolves when it does, first come first served.
   */
  private reserve(bytes: number, signal?: AbortSignal): true | Promise<void> {
    const limit = this.ctx.limits.maxInflightBytes;
    if (
      this.capacityWaiters.length === 0 &&
      (this.usedBytes + bytes <= limit || this.usedBytes === 0)
    ) {
      this.usedBytes += bytes;
      return true;
    }
    signal?.throwIfAborted();
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        bytes,
        wake: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = (): void => {
        this.capacityWaiters = this.capacityWaiters.filter((w) => w !== waiter);
        reject(signal?.reason as Error);
        this.admitWaiters();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.capacityWaiters.push(waiter);
    });
  }

  private release(bytes: number): void {
    this.usedBytes -= bytes;
    assert(this.usedBytes >= 0, 'released no more bytes than were reserved');
    this.admitWaiters();
  }

  private admitWaiters(): void {
    const limit = this.ctx.limits.maxInflightBytes;
    while (this.capacityWaiters.length > 0) {
      const next = this.capacityWaiters[0] as { bytes: number; wake: () => void };
      if (this.state === 'open' || this.state === 'rolling') {
        if (this.usedBytes + next.bytes > limit && this.usedBytes > 0) return;
        this.usedBytes += next.bytes;
      }
      this.capacityWaiters.shift();
      next.wake();
    }
  }

  private scheduleFlush(): void {
    if (this.state !== 'open' && this.state !== 'closing') return;
    if (this.buffer.length === 0) return;
    const sink = this.segment?.sink;
    if (sink === undefined) return;
    const groupCommit = this.ctx.segments.mode === 'local';
    if (groupCommit) {
      // Defer to the end of this turn of the event loop, so that every append made in the
      // same turn (a caller's loop, the callbacks of one batch of acks) joins one group.
      if (!this.isFlushQueued && this.writesInFlight < sink.maxConcurrentWrites) {
        this.isFlushQueued = true;
        setImmediate(() => {
          this.isFlushQueued = false;
          this.flush(true);
        });
      }
      return;
    }
    if (this.state === 'closing' || this.bufferBytes >= this.ctx.limits.maxBlockBytes) {
      this.flush(this.state === 'closing');
      return;
    }
    this.flushTimer ??= setTimeout(() => {
      this.flushTimer = undefined;
      this.flush(true);
    }, this.ctx.limits.flushAgeMs);
  }

  /**
   * Cuts blocks from the buffer and hands them to the sink while write slots are free. A local
   * sink takes everything buffered in one call (one write, one fdatasync: group commit); an
   * object sink takes one block per upload.
   */
  private flush(includePartial: boolean): void {
    const segment = this.segment;
    if (segment === undefined) return;
    const maxBlockBytes = this.ctx.limits.maxBlockBytes;
    const groupCommit = this.ctx.segments.mode === 'local';
    while (
      (this.state === 'open' || this.state === 'closing') &&
      this.buffer.length > 0 &&
      this.writesInFlight < segment.sink.maxConcurrentWrites &&
      (includePartial || this.bufferBytes >= maxBlockBytes)
    ) {
      if (this.state === 'open' && this.needsRoll(segment)) {
        void this.roll();
        return;
      }
      const groups: PendingEntry[][] = [];
      let start = 0;
      do {
        let bytes = 0;
        let end = start;
        while (
          end < this.buffer.length &&
          (end === start || bytes + (this.buffer[end] as PendingEntry).sizeBytes <= maxBlockBytes)
        ) {
          bytes += (this.buffer[end] as PendingEntry).sizeBytes;
          end += 1;
        }
        if (!includePartial && bytes < maxBlockBytes && groups.length > 0) break;
        groups.push(this.buffer.slice(start, end));
        this.bufferBytes -= bytes;
        start = end;
      } while (
        groupCommit &&
        start < this.buffer.length &&
        segment.blocks.length + groups.length < this.ctx.limits.maxSegmentBlocks
      );
      this.buffer = start === this.buffer.length ? [] : this.buffer.slice(start);
      this.submit(segment, groups);
    }
    if (this.buffer.length === 0 && this.flushTimer !== undefined) {
      clearTimeout(this.flushTimer);
      this.flushTimer = undefined;
    }
  }

  private needsRoll(segment: ActiveSegment): boolean {
    if (segment.nextEntryId === 0) return false;
    const { maxSegmentBytes, maxSegmentBlocks, maxSegmentAgeMs } = this.ctx.limits;
    return (
      segment.sizeBytes >= maxSegmentBytes ||
      segment.blocks.length >= maxSegmentBlocks ||
      Date.now() - segment.createdAtMs >= maxSegmentAgeMs
    );
  }

  /** Encodes `groups` as consecutive blocks and writes them with one sink call. */
  private submit(segment: ActiveSegment, groups: PendingEntry[][]): void {
    const pending: PendingBlock[] = [];
    const blocks: InflightBlock[] = [];
    const entrySpans: Span[] = [];
    let writeBytes = 0;
    for (const entries of groups) {
      const firstEntryId = segment.nextEntryId;
      // The block's bytes: header, then each record (a transferred payload after its head).
      const records: Buffer[] = new Array<Buffer>(entries.length);
      const parts: Uint8Array[] = [];
      let recordsBytes = 0;
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i] as PendingEntry;
        records[i] = e.record;
        recordsBytes += e.sizeBytes;
        if (e.span !== undefined) entrySpans.push(e.span);
      }
      const header = encodeBlockHeader({
        segmentId: segment.segmentId,
        firstEntryId,
        epoch: this.ctx.epoch,
        records,
        recordsBytes,
      });
      parts.push(header);
      for (const e of entries) {
        parts.push(e.record);
        if (e.isTransferred) parts.push(e.data.payload);
      }
      const sizeBytes = header.byteLength + recordsBytes;
      writeBytes += sizeBytes;
      const info: BlockInfo = {
        index: segment.blocks.length,
        firstEntryId,
        entryCount: entries.length,
        sizeBytes,
      };
      const offset = segment.sizeBytes;
      segment.blocks.push(info);
      segment.nextEntryId += entries.length;
      segment.sizeBytes += sizeBytes;
      const block: InflightBlock = {
        segmentId: segment.segmentId,
        offset,
        info,
        entries,
        isDone: false,
      };
      this.inflight.push(block);
      blocks.push(block);
      pending.push({
        index: info.index,
        firstEntryId,
        entryCount: entries.length,
        parts,
        sizeBytes,
      });
    }
    // Direct I/O: the write ends at an aligned offset, so the next one starts at one.
    const alignment = segment.sink.writeAlignment ?? 1;
    const misaligned = segment.sizeBytes % alignment;
    if (misaligned !== 0) {
      let paddingBytes = alignment - misaligned;
      if (paddingBytes < BLOCK_HEADER_BYTES) paddingBytes += alignment;
      const last = pending.at(-1) as PendingBlock;
      // The parts array was built just above, for this write only.
      (last.parts as Uint8Array[]).push(
        encodePaddingBlock(segment.segmentId, segment.nextEntryId, this.ctx.epoch, paddingBytes),
      );
      last.paddingBytes = paddingBytes;
      segment.sizeBytes += paddingBytes;
      writeBytes += paddingBytes;
    }
    this.writesInFlight += 1;
    const started = performance.now();
    const flushSpan = this.ctx.telemetry.startFlush(pending.length, writeBytes, entrySpans);
    // Storage requests of this write become children of its flush span.
    const write =
      flushSpan === undefined
        ? segment.sink.writeBlocks(pending, { signal: this.abort.signal })
        : context.with(trace.setSpan(context.active(), flushSpan), () =>
            segment.sink.writeBlocks(pending, { signal: this.abort.signal }),
          );
    if (flushSpan !== undefined) endSpanWith(flushSpan, write);
    write.then(
      () => {
        const elapsed = performance.now() - started;
        for (const p of pending) this.ctx.telemetry.recordFlush(p.sizeBytes, elapsed);
        for (const b of blocks) b.isDone = true;
        this.writesInFlight -= 1;
        this.acknowledge();
        // A write slot is free even when this block cannot be acknowledged yet (an earlier one
        // is still uploading): fill it.
        this.scheduleFlush();
      },
      (err: unknown) => {
        this.writesInFlight -= 1;
        this.ctx.telemetry.recordError('flush');
        this.fail(err, blocks[0]);
      },
    );
  }

  /** Acknowledges finished blocks at the head of the queue, strictly in block order. */
  private acknowledge(): void {
    if (this.state === 'closed') return;
    if (!this.ctx.segments.storageFencing) {
      // Without storage fencing nothing is acknowledged after a failure: publishing would need
      // the writer revision that the failure may have lost.
      if (this.state === 'failed') this.fail(this.failure, this.inflight[0]);
      else this.publishLac();
      return;
    }
    let progressed = false;
    while (this.inflight[0]?.isDone === true) {
      this.ackBlock(this.inflight.shift() as InflightBlock);
      progressed = true;
    }
    if (progressed) {
      this.afterAck();
      this.noteProgress();
    }
  }

  /**
   * Publishes how far the writer got, so that readers in other processes (watching the
   * progress key) wake up. Off the ack path and never awaited by appends: the first ack after a
   * quiet period is published at once, later ones coalesce to at most one write per
   * `progressIntervalMs`, one in flight, only when the writer advanced. Without storage fencing
   * this is not needed: every flush already writes the segment's metadata, and the progress rides
   * on that transaction. A failed publish is retried at the next interval; a lost compare means
   * a newer writer exists (storage fences this one), so publishing stops.
   */
  private noteProgress(): void {
    const p = this.progress;
    if (p.isInFlight || p.timer !== undefined) return;
    const wait = p.lastStartedAtMs + this.ctx.limits.progressIntervalMs - performance.now();
    if (wait <= 0) {
      this.publishProgress();
      return;
    }
    p.timer = setTimeout(() => {
      p.timer = undefined;
      this.publishProgress();
    }, wait);
    p.timer.unref();
  }

  private publishProgress(): void {
    const p = this.progress;
    const at = this.lastAcked;
    if (at === undefined || this.state === 'failed' || this.state === 'closed') return;
    if (
      p.published !== undefined &&
      p.published.segmentId === at.segmentId &&
      p.published.entryId === at.entryId
    )
      return;
    p.isInFlight = true;
    p.lastStartedAtMs = performance.now();
    const { metadata, logName, writerRevision, epoch } = this.ctx;
    metadata
      .txn(
        [{ key: keys.writer(logName), modRevision: writerRevision }],
        [progressOp(logName, { epoch, segmentId: at.segmentId, lastEntryId: at.entryId })],
        { signal: this.abort.signal },
      )
      .then(
        (result) => {
          p.isInFlight = false;
          if (!result.succeeded) return;
          p.published = at;
          if (this.lastAcked !== at) this.noteProgress();
        },
        () => {
          p.isInFlight = false;
          if (!this.abort.signal.aborted) this.noteProgress();
        },
      );
  }

  private ackBlock(block: InflightBlock): void {
    const { segmentId, info, entries } = block;
    const now = performance.now();
    let released = 0;
    let payloadBytes = 0;
    const { telemetry } = this.ctx;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i] as PendingEntry;
      released += e.sizeBytes;
      payloadBytes += e.data.payload.byteLength;
      telemetry.recordAppendLatency(now - e.startedAt);
      // Frozen: positions are values, handed as they are to callers (and, in one process, to SDK
      // callers as message ids); nobody may change one another holds.
      const position = Object.freeze({ segmentId, entryId: info.firstEntryId + i });
      e.span?.end();
      if (e.batch === undefined) e.resolve(position);
      else e.batch.settle(e.batchIndex, position);
    }
    telemetry.recordAcked(entries.length, payloadBytes);
    this.lastAcked = { segmentId, entryId: info.firstEntryId + info.entryCount - 1 };
    if (this.ctx.runtime.owner === this) {
      this.ctx.runtime.lac = { segmentId, entryId: info.firstEntryId + info.entryCount - 1 };
      // Local cursors are byte offsets, object cursors block indexes.
      const isLocal = this.ctx.segments.mode === 'local';
      const location = isLocal ? block.offset : info.index;
      this.ctx.runtime.cacheBlock({
        segmentId,
        firstEntryId: info.firstEntryId,
        entries: entries.map((e) => e.data),
        sizeBytes: info.sizeBytes,
        location,
        nextLocation: isLocal ? location + info.sizeBytes : info.index + 1,
      });
    }
    this.release(released);
  }

  private afterAck(): void {
    this.ctx.runtime.notify();
    this.scheduleFlush();
    if (this.inflight.length === 0) this.wakeDrainWaiters();
  }

  private wakeDrainWaiters(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w();
  }

  /**
   * Stores without conditional writes cannot stop a stale writer, so visibility is decided in
   * metadata: a block counts only once the segment's lastEntryId covering it is written with a
   * compare on our writer revision. One publish is in flight at a time and covers every block
   * done by then; a lost compare means a newer writer exists.
   */
  private publishLac(): void {
    if (this.lacPublish !== undefined) return;
    const done: InflightBlock[] = [];
    for (const b of this.inflight) {
      if (!b.isDone) break;
      done.push(b);
    }
    const last = done.at(-1);
    const segment = this.segment;
    if (last === undefined || segment === undefined || last.segmentId !== segment.segmentId) return;
    const meta: SegmentMeta = {
      segmentId: segment.segmentId,
      state: 'active',
      epoch: this.ctx.epoch,
      createdAtMs: segment.createdAtMs,
      lastEntryId: last.info.firstEntryId + last.info.entryCount - 1,
      sizeBytes: done.reduce((n, b) => n + b.info.sizeBytes, 0) + this.ackedBytes(segment),
      blockCount: last.info.index + 1,
    };
    this.lacPublish = this.updateSegment(segment, meta)
      .then(() => {
        this.lacPublish = undefined;
        if (this.state === 'failed' || this.state === 'closed') return;
        for (const b of done) {
          assert(this.inflight[0] === b, 'published blocks are acknowledged in order');
          this.inflight.shift();
          this.ackBlock(b);
        }
        this.afterAck();
        this.acknowledge();
      })
      .catch((err: unknown) => {
        this.lacPublish = undefined;
        this.fail(err, done[0]);
      });
  }

  private ackedBytes(segment: ActiveSegment): number {
    const inflightBytes = this.inflight
      .filter((b) => b.segmentId === segment.segmentId)
      .reduce((n, b) => n + b.info.sizeBytes, 0);
    return segment.sizeBytes - inflightBytes;
  }

  /** CAS-updates the active segment's metadata, guarded by our writer revision. */
  private async updateSegment(
    segment: ActiveSegment,
    meta: SegmentMeta,
    signal?: AbortSignal,
  ): Promise<void> {
    const { metadata, logName, writerRevision } = this.ctx;
    const key = keys.segment(logName, segment.segmentId);
    const result = await metadata.txn(
      [
        { key: keys.writer(logName), modRevision: writerRevision },
        { key, modRevision: segment.modRevision },
      ],
      [
        { type: 'put', key, value: encodeJson(meta) },
        // Readers in other processes wake on it (a published end, or a seal).
        progressOp(logName, {
          epoch: this.ctx.epoch,
          segmentId: meta.segmentId,
          lastEntryId: meta.lastEntryId,
        }),
      ],
      { signal },
    );
    if (!result.succeeded)
      throw new FencedError(
        `log ${logName}: a newer writer took over (epoch ${this.ctx.epoch} is stale)`,
      );
    segment.modRevision = result.revision;
  }

  /** Fails `from` and every later block and buffered entry; earlier blocks may still be acked. */
  private fail(err: unknown, from: InflightBlock | undefined): void {
    if (this.state !== 'failed') {
      this.failure =
        err instanceof FencedError
          ? err
          : new WriterFailedError(
              `log ${this.ctx.logName}: the writer stopped after a failure (${err instanceof Error ? err.message : String(err)}); ` +
                'pending entries may or may not be in the log; open a new writer',
              { cause: err },
            );
      this.state = 'failed';
      if (this.flushTimer !== undefined) clearTimeout(this.flushTimer);
      if (this.progress.timer !== undefined) clearTimeout(this.progress.timer);
      this.abort.abort(this.failure);
    }
    const failure = this.failure as WalError;
    const at = from === undefined ? 0 : Math.max(0, this.inflight.indexOf(from));
    const failed = this.inflight.splice(at);
    let releasedBytes = 0;
    for (const b of failed) {
      for (const e of b.entries) {
        releasedBytes += e.sizeBytes;
        failEntry(e, failure);
      }
    }
    for (const e of this.buffer) {
      releasedBytes += e.sizeBytes;
      failEntry(e, failure);
    }
    this.buffer = [];
    this.bufferBytes = 0;
    // Wakes capacity waiters too: they re-check the state and reject.
    this.release(releasedBytes);
    if (this.inflight.length === 0) this.wakeDrainWaiters();
    this.detach();
  }

  /** Waits until every block handed to the sink is acknowledged or failed. */
  private inflightDrained(): Promise<void> {
    if (this.inflight.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Seals the current segment and starts the next one. Appends keep buffering meanwhile. */
  private roll(): Promise<void> {
    if (this.state !== 'open') return Promise.resolve();
    this.state = 'rolling';
    this.rolling = this.doRoll().finally(() => {
      this.rolling = undefined;
    });
    return this.rolling;
  }

  private rolling: Promise<void> | undefined;

  private async doRoll(): Promise<void> {
    try {
      await this.inflightDrained();
      if (this.state === 'failed') return;
      const segment = this.segment as ActiveSegment;
      await this.sealSegment(segment);
      await this.createSegment(segment.segmentId + 1);
      if (this.state === 'rolling') this.state = 'open';
      this.ctx.runtime.notify();
      this.scheduleFlush();
    } catch (err) {
      this.fail(err, undefined);
    }
  }

  private async sealSegment(segment: ActiveSegment, signal?: AbortSignal): Promise<void> {
    if (segment.ageTimer !== undefined) clearTimeout(segment.ageTimer);
    const extent: SegmentExtent = {
      lastEntryId: segment.nextEntryId - 1,
      blockCount: segment.blocks.length,
      sizeBytes: segment.sizeBytes,
    };
    await segment.sink.seal(extent, segment.blocks, { signal: signal ?? this.abort.signal });
    await this.updateSegment(
      segment,
      {
        segmentId: segment.segmentId,
        state: 'completed',
        epoch: this.ctx.epoch,
        createdAtMs: segment.createdAtMs,
        lastEntryId: extent.lastEntryId,
        sizeBytes: extent.sizeBytes,
        blockCount: extent.blockCount,
        completedAtMs: Date.now(),
      },
      signal,
    );
    await segment.sink.close();
  }

  private async createSegment(segmentId: number, signal?: AbortSignal): Promise<void> {
    const { metadata, logName, writerRevision, segments, logId, epoch } = this.ctx;
    const createdAtMs = Date.now();
    const meta: SegmentMeta = {
      segmentId,
      state: 'active',
      epoch,
      createdAtMs,
      lastEntryId: -1,
      sizeBytes: 0,
      blockCount: 0,
    };
    const key = keys.segment(logName, segmentId);
    // Create-if-absent under our writer revision: a stale writer can never add a segment.
    const result = await metadata.txn(
      [
        { key: keys.writer(logName), modRevision: writerRevision },
        { key, modRevision: 0 },
      ],
      // Readers in other processes waiting for the next segment wake on the progress.
      [
        { type: 'put', key, value: encodeJson(meta) },
        progressOp(logName, { epoch, segmentId, lastEntryId: -1 }),
      ],
      { signal },
    );
    if (!result.succeeded)
      throw new FencedError(`log ${logName}: a newer writer took over (epoch ${epoch} is stale)`);
    const sink = await segments.createSegment(logId, segmentId, epoch, { signal });
    const segment: ActiveSegment = {
      segmentId,
      sink,
      modRevision: result.revision,
      createdAtMs,
      nextEntryId: 0,
      sizeBytes: 0,
      blocks: [],
      ageTimer: undefined,
    };
    // Roll by age even when nobody appends, so an idle log does not pin an old segment open.
    segment.ageTimer = setTimeout(
      () => this.onSegmentAge(segment),
      this.ctx.limits.maxSegmentAgeMs,
    );
    segment.ageTimer.unref();
    this.segment = segment;
    if (this.ctx.runtime.owner === this) this.ctx.runtime.writerSegmentId = segmentId;
  }

  private onSegmentAge(segment: ActiveSegment): void {
    segment.ageTimer = undefined;
    if (this.segment !== segment || this.state !== 'open') return;
    if (segment.nextEntryId === 0) {
      // Empty: nothing to seal; check again after another period.
      segment.ageTimer = setTimeout(
        () => this.onSegmentAge(segment),
        this.ctx.limits.maxSegmentAgeMs,
      );
      segment.ageTimer.unref();
      return;
    }
    void this.roll();
  }

  /**
   * Flushes and acknowledges everything appended so far, seals the segment (so the next writer
   * need not recover it) and releases the log. Appends after close reject with ClosedError.
   */
  async close(options: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.state === 'closed' || this.state === 'closing') return;
    if (this.rolling !== undefined) await this.rolling;
    if (this.state !== 'failed') {
      this.state = 'closing';
      // Flush and acknowledge everything appended before close.
      while (
        (this.state as WriterState) === 'closing' &&
        (this.buffer.length > 0 || this.inflight.length > 0)
      ) {
        // Flush now, not via scheduleFlush: its deferred flush would never run while this loop
        // keeps awaiting an already drained queue (a microtask spin).
        const sink = this.segment?.sink;
        if (sink !== undefined && this.writesInFlight < sink.maxConcurrentWrites) this.flush(true);
        if (this.inflight.length === 0) break;
        await this.inflightDrained();
      }
      try {
        if ((this.state as WriterState) === 'closing' && this.segment !== undefined) {
          await this.sealSegment(this.segment, options.signal);
        }
      } catch (err) {
        // Sealing failed (a newer writer fenced us, or metadata is down): still release the
        // segment's file handle and timers before reporting it.
        if ((this.state as WriterState) !== 'failed') this.state = 'closed';
        await this.release_();
        throw err;
      }
      if ((this.state as WriterState) !== 'failed') this.state = 'closed';
    }
    await this.release_();
  }

  private async release_(): Promise<void> {
    if (this.segment?.ageTimer !== undefined) clearTimeout(this.segment.ageTimer);
    if (this.progress.timer !== undefined) clearTimeout(this.progress.timer);
    this.abort.abort(new ClosedError('the writer is closed'));
    this.detach();
    await this.segment?.sink.close().catch(() => undefined);
  }

  private detached = false;
  private detach(): void {
    if (this.detached) return;
    this.detached = true;
    if (this.ctx.runtime.owner === this) {
      this.ctx.runtime.owner = undefined;
      this.ctx.runtime.writerSegmentId = undefined;
    }
    this.ctx.runtime.notify();
    this.ctx.onClosed();
  }
}
