import type { WalLimits } from '../config.js';
import { FencedError } from '../errors.js';
import type { SegmentStore } from '../segment/segment-store.js';
import type { KeyValue, MetadataStore, TxnOp } from '../storage/metadata-store.js';
import {
  decodeJson,
  encodeJson,
  keys,
  listSegments,
  type LogMeta,
  type Progress,
  type SegmentMeta,
  type WriterMeta,
  type WriterSession,
} from './metadata.js';
import type { LogPosition } from './position.js';
import { completeActiveSegments } from './recovery.js';

/** What one maintenance pass did. */
export interface MaintenanceResult {
  /** Logs looked at. */
  checkedLogs: number;
  /** Segments of dead writers that were fenced and sealed. */
  sealedSegments: number;
  /** Logs skipped because a live writer holds them. */
  liveWriters: number;
  /** Segments truncated because they outlived `retentionMs`. */
  truncatedSegments: number;
  /** Logs whose maintenance failed (the next pass tries again). */
  failures: { log: string; error: Error }[];
}

export interface MaintenanceContext {
  metadata: MetadataStore;
  segments: SegmentStore;
  limits: Readonly<WalLimits>;
  /** Called after a log's segments were sealed, to wake in-process readers. */
  onSealed?: (logName: string) => void;
  /** Truncates a log before `position` (see `LogHandle.truncate`); used for retention. */
  truncate: (logName: string, position: LogPosition, signal?: AbortSignal) => Promise<void>;
}

/**
 * One pass of writer-independent maintenance: seals the active segments of logs whose writer is
 * gone once they have been idle for `maxSegmentAgeMs`, so an idle log does not depend on its
 * writer coming back; with `retentionMs`, truncates segments that outlived it.
 *
 * A writer is alive while its session key exists with the writer key's epoch: the key sits on
 * its client's lease, which a dead process stops keeping alive. To seal, maintenance takes the
 * log's next epoch exactly like a new writer — one compare-and-swap on the writer key that also
 * requires the session to still be absent — and then recovers like one: fence in storage, final
 * end from the committed prefix, `completed` under its own writer revision. A writer that was in
 * fact alive but cut off from the metadata store (its lease expired) is therefore fenced like
 * any stale writer: its next append fails with WAL_FENCED, and every entry it acknowledged lies
 * inside the sealed segment.
 */
export async function maintainLogs(
  ctx: MaintenanceContext,
  options: { signal?: AbortSignal } = {},
): Promise<MaintenanceResult> {
  const { signal } = options;
  const { metadata } = ctx;
  const [logs, writers, sessions, progress] = await Promise.all([
    metadata.range(keys.logPrefix, { signal }),
    metadata.range(keys.writer(''), { signal }),
    metadata.range(keys.session(''), { signal }),
    metadata.range(keys.progressPrefix, { signal }),
  ]);
  const byName = (kvs: KeyValue[], prefix: string): Map<string, KeyValue> =>
    new Map(kvs.map((kv) => [kv.key.slice(prefix.length), kv]));
  const writerKvs = byName(writers.kvs, keys.writer(''));
  const sessionKvs = byName(sessions.kvs, keys.session(''));
  const progressKvs = byName(progress.kvs, keys.progressPrefix);
  const result: MaintenanceResult = {
    checkedLogs: 0,
    sealedSegments: 0,
    liveWriters: 0,
    truncatedSegments: 0,
    failures: [],
  };
  for (const logKv of logs.kvs) {
    signal?.throwIfAborted();
    const log = decodeJson<LogMeta>(logKv);
    result.checkedLogs += 1;
    try {
      const outcome = await maintainLog(
        ctx,
        logKv,
        log,
        writerKvs.get(log.name),
        sessionKvs.get(log.name),
        progressKvs.get(log.name),
        signal,
      );
      if (outcome === 'live') result.liveWriters += 1;
      else result.sealedSegments += outcome;
      if (ctx.limits.retentionMs > 0)
        result.truncatedSegments += await applyRetention(ctx, log, signal);
    } catch (err) {
      if (signal?.aborted === true) throw err;
      result.failures.push({
        log: log.name,
        error: err instanceof Error ? err : new Error(String(err)),
      });
    }
  }
  return result;
}

/**
 * Truncates the leading completed segments of `log` completed at least `retentionMs` ago,
 * keeping the newest completed segment with entries (and all after it) whatever their age.
 * Returns how many it truncated.
 */
async function applyRetention(
  ctx: MaintenanceContext,
  log: LogMeta,
  signal: AbortSignal | undefined,
): Promise<number> {
  const all = await listSegments(ctx.metadata, log.name, signal);
  // The newest completed segment with entries holds the log's last entries (a streaming node
  // reads its highest time tick there): it stays, also behind empty completed segments (an
  // open that gave up, recovery of a segment that never got an entry).
  const newest = all.findLast((s) => s.meta.state === 'completed' && s.meta.lastEntryId >= 0)?.meta
    .segmentId;
  const cutoffMs = Date.now() - ctx.limits.retentionMs;
  let expired = 0;
  let before: number | undefined;
  for (const { meta: seg } of all) {
    if (seg.segmentId < log.truncatedBefore.segmentId || seg.state === 'truncated') continue;
    // Only a leading run: a log never has a hole in the middle.
    if (seg.state !== 'completed' || newest === undefined || seg.segmentId >= newest) break;
    if (seg.completedAtMs === undefined || seg.completedAtMs > cutoffMs) break;
    expired += 1;
    before = seg.segmentId + 1;
  }
  if (before === undefined) return 0;
  await ctx.truncate(log.name, { segmentId: before, entryId: 0 }, signal);
  return expired;
}

async function maintainLog(
  ctx: MaintenanceContext,
  logKv: KeyValue,
  log: LogMeta,
  writerKv: KeyValue | undefined,
  sessionKv: KeyValue | undefined,
  progressKv: KeyValue | undefined,
  signal: AbortSignal | undefined,
): Promise<number | 'live'> {
  const { metadata, segments, limits } = ctx;
  const writer = writerKv === undefined ? undefined : decodeJson<WriterMeta>(writerKv);
  const session = sessionKv === undefined ? undefined : decodeJson<WriterSession>(sessionKv);
  if (session !== undefined && writer !== undefined && session.epoch === writer.epoch)
    return 'live';
  const active = (await listSegments(metadata, log.name, signal)).filter(
    (s) => s.meta.state === 'active',
  );
  if (active.length === 0) return 0;
  // Idle since the segment was created or the writer last published progress in it.
  const progress = progressKv === undefined ? undefined : decodeJson<Progress>(progressKv);
  const lastActivityMs = Math.max(
    ...active.map((s) =>
      progress?.segmentId === s.meta.segmentId
        ? Math.max(s.meta.createdAtMs, progress.atMs)
        : s.meta.createdAtMs,
    ),
  );
  if (Date.now() - lastActivityMs < limits.maxSegmentAgeMs) return 0;
  // Take the next epoch, but only if nothing changed since we looked: the log is the same, no
  // writer opened, and no session appeared (a writer re-registering after a lost lease).
  const epoch = (writer?.epoch ?? 0) + 1;
  const value: WriterMeta = {
    epoch,
    openedAtMs: Date.now(),
    maintenance: true,
    ...(writer?.ownerTerm === undefined ? {} : { ownerTerm: writer.ownerTerm }),
  };
  const taken = await metadata.txn(
    [
      { key: logKv.key, modRevision: logKv.modRevision },
      { key: keys.writer(log.name), modRevision: writerKv?.modRevision ?? 0 },
      { key: keys.session(log.name), modRevision: sessionKv?.modRevision ?? 0 },
    ],
    [
      { type: 'put', key: keys.writer(log.name), value: encodeJson(value) },
      // A session of an older epoch belongs to a writer that is fenced already.
      ...(sessionKv === undefined
        ? []
        : [{ type: 'delete', key: keys.session(log.name) } satisfies TxnOp]),
    ],
    { signal },
  );
  if (!taken.succeeded) return 0; // something moved: look again next pass
  // Listed again under our epoch: the old writer can no longer create or change segments.
  const current = await listSegments(metadata, log.name, signal);
  let sealed: SegmentMeta[];
  try {
    sealed = await completeActiveSegments(
      { logName: log.name, logId: log.id, metadata, segments },
      { epoch, writerRevision: taken.revision },
      current,
      { signal },
    );
  } catch (err) {
    // A writer opened meanwhile: it recovers the segment itself.
    if (err instanceof FencedError) return 0;
    throw err;
  }
  if (sealed.length > 0) ctx.onSealed?.(log.name);
  return sealed.length;
}
