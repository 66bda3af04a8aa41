import { randomInt } from 'node:crypto';
import type { WalLimits } from '../config.js';
import { ConflictError, FencedError, InvalidArgumentError, LogNotFoundError } from '../errors.js';
import type { SegmentStore } from '../segment/segment-store.js';
import type { MetadataStore } from '../storage/metadata-store.js';
import { LogReader, type ReadFrom } from './log-reader.js';
import type { LogRuntime } from './log-runtime.js';
import { LogWriter } from './log-writer.js';
import {
  decodeJson,
  encodeJson,
  keys,
  listSegments,
  type LogMeta,
  type SegmentMeta,
  type WriterMeta,
} from './metadata.js';
import { comparePositions, type LogPosition } from './position.js';
import { completeActiveSegments } from './recovery.js';
import { createWalTelemetry } from './telemetry.js';
import { WriterSessions } from './writer-sessions.js';

export interface LogHandleContext {
  meta: LogMeta;
  metadata: MetadataStore;
  segments: SegmentStore;
  runtime: LogRuntime;
  limits: Readonly<WalLimits>;
  sessions: WriterSessions;
  track: <T extends { close(): Promise<void> }>(resource: T) => () => void;
}

const MAX_CAS_ATTEMPTS = 32;

/** A log opened by name. Cheap; many handles may exist for one log. */
export class LogHandle {
  constructor(private readonly ctx: LogHandleContext) {}

  get name(): string {
    return this.ctx.meta.name;
  }

  /** Numeric id of the log (stable for its lifetime; a re-created log gets a new one). */
  get id(): number {
    return this.ctx.meta.id;
  }

  /**
   * Opens the log's single writer. It bumps the writer epoch with a compare-and-swap, which
   * fences any earlier writer (in this or another process): that writer's next append fails
   * with FencedError. Segments the earlier writer left active are fenced in storage and
   * completed at their recovered end, which includes every entry the earlier writer acked.
   *
   * `ownerTerm` is the caller's own fencing order (a streaming node passes the channel's term):
   * the log keeps the highest term presented, and an open with a lower one fails with
   * FencedError without fencing anybody, so an owner whose assignment was superseded cannot
   * take the log back from a newer one however late its open runs. An open without a term
   * (tools, tests) is not checked and leaves the kept term as it is.
   */
  async openWriter(options: { signal?: AbortSignal; ownerTerm?: number } = {}): Promise<LogWriter> {
    const { signal, ownerTerm } = options;
    if (ownerTerm !== undefined && !(Number.isSafeInteger(ownerTerm) && ownerTerm >= 0))
      throw new InvalidArgumentError(
        `ownerTerm must be a non-negative safe integer, got ${ownerTerm}`,
      );
    const { metadata, segments, runtime, limits, meta, sessions } = this.ctx;
    const name = meta.name;
    const { epoch, writerRevision, openedAtMs } = await this.bumpEpoch(ownerTerm, signal);
    // Complete what earlier writers left active. Every write is guarded by our writer
    // revision, so a newer writer that opens meanwhile wins and we fail with FencedError.
    let existing: Awaited<ReturnType<typeof listSegments>>;
    try {
      existing = await listSegments(metadata, name, signal);
      await completeActiveSegments(
        { logName: name, logId: meta.id, metadata, segments },
        { epoch, writerRevision },
        existing,
        { signal },
      );
    } catch (err) {
      // No writer will use this epoch: do not let its session hide the log from maintenance.
      await sessions.release(name, writerRevision);
      throw err;
    }
    sessions.register({ name, epoch, openedAtMs, writerRevision });
    const nextSegmentId = (existing.at(-1)?.meta.segmentId ?? -1) + 1;
    let untrack = (): void => {};
    const writer = await LogWriter.start(
      {
        logName: name,
        logId: meta.id,
        epoch,
        writerRevision,
        metadata,
        segments,
        runtime,
        limits,
        telemetry: createWalTelemetry(name, segments.mode),
        onClosed: () => {
          untrack();
          void sessions.release(name, writerRevision);
        },
      },
      nextSegmentId,
      signal,
    );
    untrack = this.ctx.track(writer);
    return writer;
  }

  /**
   * Takes the next epoch and, in the same transaction, writes the writer's session key on this
   * client's lease (see WriterSessions): from then on maintenance sees a live writer.
   */
  private async bumpEpoch(
    ownerTerm: number | undefined,
    signal?: AbortSignal,
  ): Promise<{ epoch: number; writerRevision: number; openedAtMs: number }> {
    const { metadata, meta, sessions } = this.ctx;
    const leaseId = await sessions.leaseId(signal);
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const [logKv, writerKv] = await Promise.all([
        metadata.get(keys.log(meta.name), { signal }),
        metadata.get(keys.writer(meta.name), { signal }),
      ]);
      if (logKv === undefined || decodeJson<LogMeta>(logKv).id !== meta.id) {
        throw new LogNotFoundError(`log ${meta.name} does not exist`);
      }
      const previous = writerKv === undefined ? undefined : decodeJson<WriterMeta>(writerKv);
      if (
        ownerTerm !== undefined &&
        previous?.ownerTerm !== undefined &&
        ownerTerm < previous.ownerTerm
      ) {
        throw new FencedError(
          `log ${meta.name}: writer open at owner term ${ownerTerm} refused: term ${previous.ownerTerm} already opened it`,
        );
      }
      const epoch = (previous?.epoch ?? 0) + 1;
      const openedAtMs = Date.now();
      const keptTerm = Math.max(ownerTerm ?? -1, previous?.ownerTerm ?? -1);
      const value: WriterMeta = {
        epoch,
        openedAtMs,
        ...(keptTerm < 0 ? {} : { ownerTerm: keptTerm }),
      };
      const result = await metadata.txn(
        [
          { key: keys.log(meta.name), modRevision: logKv.modRevision },
          { key: keys.writer(meta.name), modRevision: writerKv?.modRevision ?? 0 },
        ],
        [
          { type: 'put', key: keys.writer(meta.name), value: encodeJson(value) },
          {
            type: 'put',
            key: keys.session(meta.name),
            value: WriterSessions.value(epoch, openedAtMs),
            leaseId,
          },
        ],
        { signal },
      );
      if (result.succeeded) return { epoch, writerRevision: result.revision, openedAtMs };
    }
    throw new ConflictError(
      `log ${meta.name}: could not open a writer: too many concurrent writer opens`,
    );
  }

  /** Opens a reader. See LogReader. Throws TruncatedError for a position before the truncation point. */
  async openReader(options: { from?: ReadFrom; signal?: AbortSignal } = {}): Promise<LogReader> {
    const { metadata, segments, runtime, limits, meta } = this.ctx;
    const reader = await LogReader.open(
      { logName: meta.name, logId: meta.id, metadata, segments, runtime, limits },
      options.from ?? 'earliest',
      options.signal,
    );
    const untrack = this.ctx.track(reader);
    void reader.closed.then(untrack);
    return reader;
  }

  /**
   * Discards every entry before `position`: readers can no longer start before it, and whole
   * segments below it are deleted from storage and metadata. The truncation point only moves
   * forward; truncating to an earlier position is a no-op. Returns the number of segments deleted.
   */
  async truncate(
    position: LogPosition,
    options: { signal?: AbortSignal } = {},
  ): Promise<{ deletedSegments: number }> {
    const { signal } = options;
    const { metadata, meta } = this.ctx;
    if (![position.segmentId, position.entryId].every((n) => Number.isSafeInteger(n) && n >= 0)) {
      throw new InvalidArgumentError(`invalid position ${JSON.stringify(position)}`);
    }
    for (let attempt = 0; ; attempt++) {
      if (attempt >= MAX_CAS_ATTEMPTS)
        throw new ConflictError(`log ${meta.name}: truncate lost too many races`);
      const kv = await metadata.get(keys.log(meta.name), { signal });
      if (kv === undefined) throw new LogNotFoundError(`log ${meta.name} does not exist`);
      const current = decodeJson<LogMeta>(kv);
      if (current.id !== meta.id) throw new LogNotFoundError(`log ${meta.name} was deleted`);
      if (comparePositions(position, current.truncatedBefore) <= 0) break;
      const next: LogMeta = {
        ...current,
        truncatedBefore: { segmentId: position.segmentId, entryId: position.entryId },
      };
      const result = await metadata.txn(
        [{ key: kv.key, modRevision: kv.modRevision }],
        [{ type: 'put', key: kv.key, value: encodeJson(next) }],
        {
          signal,
        },
      );
      if (result.succeeded) break;
    }
    return this.collectGarbage({ signal });
  }

  /**
   * Deletes completed segments that lie wholly before the truncation point: first marked
   * `truncated` in metadata, then removed from storage, then their metadata deleted, so a
   * crash at any step leaves a state this method finishes next time. Never touches an
   * active segment.
   */
  async collectGarbage(
    options: { signal?: AbortSignal } = {},
  ): Promise<{ deletedSegments: number }> {
    const { signal } = options;
    const { metadata, segments, meta, runtime } = this.ctx;
    const kv = await metadata.get(keys.log(meta.name), { signal });
    if (kv === undefined) throw new LogNotFoundError(`log ${meta.name} does not exist`);
    const { truncatedBefore } = decodeJson<LogMeta>(kv);
    let deleted = 0;
    for (const { meta: seg, modRevision } of await listSegments(metadata, meta.name, signal)) {
      if (seg.segmentId >= truncatedBefore.segmentId) break;
      if (seg.state === 'active') continue;
      const key = keys.segment(meta.name, seg.segmentId);
      let revision = modRevision;
      if (seg.state !== 'truncated') {
        const marked = await metadata.txn(
          [{ key, modRevision }],
          [{ type: 'put', key, value: encodeJson({ ...seg, state: 'truncated' }) }],
          {
            signal,
          },
        );
        if (!marked.succeeded) continue;
        revision = marked.revision;
      }
      await segments.deleteSegment(meta.id, seg.segmentId, { signal });
      const removed = await metadata.txn(
        [{ key, modRevision: revision }],
        [{ type: 'delete', key }],
        { signal },
      );
      if (removed.succeeded) deleted += 1;
    }
    runtime.dropBefore(truncatedBefore.segmentId);
    return { deletedSegments: deleted };
  }

  /**
   * Object mode: rewrites completed segments made of many small blocks into blocks of about
   * `targetBlockBytes`, fewer objects to list, read and pay for. Each segment switches to its
   * new generation with one compare-and-swap on its metadata, then the old objects are deleted;
   * readers in the middle of the segment move to the new generation at the same entry id, so
   * they see no gap and no duplicate. A no-op in local mode. Returns the segments compacted.
   */
  async compact(
    options: { signal?: AbortSignal; targetBlockBytes?: number; minBlocks?: number } = {},
  ): Promise<{ compactedSegments: number }> {
    const { signal } = options;
    const { metadata, segments, meta, limits } = this.ctx;
    if (segments.compact === undefined || segments.deleteGeneration === undefined)
      return { compactedSegments: 0 };
    const targetBlockBytes = options.targetBlockBytes ?? limits.maxBlockBytes;
    const minBlocks = options.minBlocks ?? 4;
    let compacted = 0;
    for (const { meta: seg, modRevision } of await listSegments(metadata, meta.name, signal)) {
      if (seg.state !== 'completed' || seg.blockCount < minBlocks || seg.lastEntryId < 0) continue;
      // Only worth it when the result has clearly fewer objects.
      if (seg.sizeBytes / seg.blockCount > targetBlockBytes / 2) continue;
      const generation = seg.generation ?? 0;
      // A fresh id per attempt: a concurrent or crashed compaction can never share our objects.
      const target = randomInt(1, 2 ** 47);
      const extent = await segments.compact(
        meta.id,
        seg.segmentId,
        { generation, lastEntryId: seg.lastEntryId },
        target,
        {
          targetBlockBytes,
          ...(signal ? { signal } : {}),
        },
      );
      const key = keys.segment(meta.name, seg.segmentId);
      const next: SegmentMeta = {
        ...seg,
        generation: target,
        blockCount: extent.blockCount,
        sizeBytes: extent.sizeBytes,
      };
      const result = await metadata.txn(
        [{ key, modRevision }],
        [{ type: 'put', key, value: encodeJson(next) }],
        { signal },
      );
      if (!result.succeeded) {
        // Someone else compacted or truncated it meanwhile: drop our unreferenced output.
        await segments.deleteGeneration(meta.id, seg.segmentId, target, { signal });
        continue;
      }
      await segments.deleteGeneration(meta.id, seg.segmentId, generation, { signal });
      compacted += 1;
    }
    return { compactedSegments: compacted };
  }

  /** The log's segments with their metadata, ascending. For inspection and tooling. */
  async listSegments(options: { signal?: AbortSignal } = {}): Promise<SegmentMeta[]> {
    return (await listSegments(this.ctx.metadata, this.ctx.meta.name, options.signal)).map(
      (s) => s.meta,
    );
  }

  /** The current truncation point. */
  async truncationPoint(options: { signal?: AbortSignal } = {}): Promise<LogPosition> {
    const kv = await this.ctx.metadata.get(keys.log(this.ctx.meta.name), options);
    if (kv === undefined) throw new LogNotFoundError(`log ${this.ctx.meta.name} does not exist`);
    return decodeJson<LogMeta>(kv).truncatedBefore;
  }
}
