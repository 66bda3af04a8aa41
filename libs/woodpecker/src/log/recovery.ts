import { FencedError } from '../errors.js';
import type { SegmentExtent, SegmentStore } from '../segment/segment-store.js';
import type { MetadataStore } from '../storage/metadata-store.js';
import { encodeJson, keys, progressOp, type SegmentMeta } from './metadata.js';

export interface RecoveryContext {
  logName: string;
  logId: number;
  metadata: MetadataStore;
  segments: SegmentStore;
}

/**
 * Completes every segment an earlier writer left active, after the caller took the log's
 * epoch (a writer opening, or maintenance taking over a dead writer's log): fences the segment
 * in storage, takes its committed prefix as the final end (every entry the earlier writer
 * acknowledged lies inside it) and marks it completed. Every metadata write compares our writer
 * revision, so a newer writer that opens meanwhile wins and this throws FencedError.
 * Each completion also publishes the log's progress, so remote readers waiting there wake.
 */
export async function completeActiveSegments(
  ctx: RecoveryContext,
  taken: { epoch: number; writerRevision: number },
  existing: readonly { meta: SegmentMeta; modRevision: number }[],
  options: { signal?: AbortSignal } = {},
): Promise<SegmentMeta[]> {
  const { signal } = options;
  const { metadata, segments, logName, logId } = ctx;
  const done: SegmentMeta[] = [];
  for (const { meta: seg, modRevision } of existing) {
    if (seg.state !== 'active') continue;
    // Without storage fencing the published lastEntryId is the visibility bound; the takeover
    // of the writer key already stops the old writer from publishing past it.
    const extent: SegmentExtent = segments.storageFencing
      ? await segments.fenceAndRecover(logId, seg.segmentId, taken.epoch, { signal })
      : { lastEntryId: seg.lastEntryId, blockCount: seg.blockCount, sizeBytes: seg.sizeBytes };
    const completed: SegmentMeta = {
      ...seg,
      state: 'completed',
      ...extent,
      completedAtMs: Date.now(),
    };
    const key = keys.segment(logName, seg.segmentId);
    const result = await metadata.txn(
      [
        { key: keys.writer(logName), modRevision: taken.writerRevision },
        { key, modRevision },
      ],
      [
        { type: 'put', key, value: encodeJson(completed) },
        // Wakes readers in other processes that wait at this segment's end.
        progressOp(logName, {
          epoch: taken.epoch,
          segmentId: seg.segmentId,
          lastEntryId: completed.lastEntryId,
        }),
      ],
      { signal },
    );
    if (!result.succeeded)
      throw new FencedError(`log ${logName}: a newer writer opened while this one was recovering`);
    done.push(completed);
  }
  return done;
}
