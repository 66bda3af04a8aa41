import { InvalidArgumentError } from './errors.js';

/** Tuning of writers and readers. Every field has a default and a hard range. */
export interface WalLimits {
  /** Largest payload accepted by append. @default 16 MiB (1 B – 256 MiB) */
  maxEntryBytes: number;
  /** Target size of one block. @default 4 MiB in object mode, 1 MiB in local mode (4 KiB – 64 MiB) */
  maxBlockBytes: number;
  /**
   * Object mode: flush a partial block after this long. Local mode flushes as soon as the
   * disk is free (group commit) and ignores it. @default 200 (1 – 60000)
   */
  flushAgeMs: number;
  /** Buffered plus in-flight bytes per writer before append waits. @default 64 MiB (1 MiB – 4 GiB) */
  maxInflightBytes: number;
  /** Roll a segment at this size. @default 256 MiB (64 KiB – 64 GiB) */
  maxSegmentBytes: number;
  /** Roll a non-empty segment at this age, even when idle. @default 10 min (100 ms – 7 days) */
  maxSegmentAgeMs: number;
  /** Roll a segment at this many blocks (bounds the in-memory block index). @default 10000 (1 – 1000000) */
  maxSegmentBlocks: number;
  /** Bytes a reader reads from storage per batch. @default 4 MiB (4 KiB – 256 MiB) */
  readBatchBytes: number;
  /** Recently acknowledged bytes kept in memory for tail readers, while any reader of the log is open in the process. @default 8 MiB (0 – 1 GiB) */
  tailCacheBytes: number;
  /**
   * Least time between two progress publications of a writer (the metadata key that wakes
   * readers in other processes). The first ack after a quiet period is published at once; under
   * steady traffic at most one write per interval, and only when the writer advanced. Remote
   * tail readers lag by up to this much. @default 100 (1 – 10000)
   */
  progressIntervalMs: number;
  /**
   * Lifetime of the lease behind a writer's session key (`wp/session/<log>`). While the lease
   * lives, `Woodpecker.maintain` treats the log's writer as alive and leaves its segment alone;
   * a writer whose process died loses it this long after its last keep-alive (one per client,
   * every third of it). @default 10000 (1000 – 300000)
   */
  writerSessionTtlMs: number;
  /**
   * Retention: `Woodpecker.maintain` truncates the completed segments of every log that were
   * completed at least this long ago, oldest first, always keeping the newest completed one (it
   * holds the log's last time-ordered entries). 0 keeps everything. @default 0 (0 – 10 years)
   */
  retentionMs: number;
}

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

const RANGES: Record<keyof WalLimits, [number, number]> = {
  maxEntryBytes: [1, 256 * MiB],
  maxBlockBytes: [4 * KiB, 64 * MiB],
  flushAgeMs: [1, 60_000],
  maxInflightBytes: [1 * MiB, 4 * GiB],
  maxSegmentBytes: [64 * KiB, 64 * GiB],
  maxSegmentAgeMs: [100, 7 * 24 * 3600_000],
  maxSegmentBlocks: [1, 1_000_000],
  readBatchBytes: [4 * KiB, 256 * MiB],
  tailCacheBytes: [0, 1 * GiB],
  progressIntervalMs: [1, 10_000],
  writerSessionTtlMs: [1_000, 300_000],
  retentionMs: [0, 10 * 365 * 24 * 3600_000],
};

/** Applies defaults for `mode` and validates every field; throws InvalidArgumentError listing all problems. */
export function withDefaults(
  mode: 'local' | 'object',
  partial: Partial<WalLimits> = {},
): Readonly<WalLimits> {
  const limits: WalLimits = {
    maxEntryBytes: 16 * MiB,
    maxBlockBytes: mode === 'object' ? 4 * MiB : 1 * MiB,
    flushAgeMs: 200,
    maxInflightBytes: 64 * MiB,
    maxSegmentBytes: 256 * MiB,
    maxSegmentAgeMs: 10 * 60_000,
    maxSegmentBlocks: 10_000,
    readBatchBytes: 4 * MiB,
    tailCacheBytes: 8 * MiB,
    progressIntervalMs: 100,
    writerSessionTtlMs: 10_000,
    retentionMs: 0,
    ...Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined)),
  };
  const problems: string[] = [];
  for (const [key, [min, max]] of Object.entries(RANGES) as [keyof WalLimits, [number, number]][]) {
    const value = limits[key];
    if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
      problems.push(`${key} must be a number in [${min}, ${max}], got ${String(value)}`);
    }
  }
  for (const key of Object.keys(partial)) {
    if (!(key in RANGES)) problems.push(`unknown option ${key}`);
  }
  if (limits.maxEntryBytes > limits.maxInflightBytes)
    problems.push('maxEntryBytes must not exceed maxInflightBytes');
  if (problems.length > 0)
    throw new InvalidArgumentError(`invalid WAL limits: ${problems.join('; ')}`);
  return Object.freeze(limits);
}

/**
 * Interval of the background maintenance started by `WoodpeckerOptions.maintenance`.
 * Each pass costs a few metadata range reads plus one per log without a live writer.
 */
export const MAINTENANCE_INTERVAL_MS = { default: 60_000, min: 1_000, max: 3_600_000 } as const;

/** Validates the background maintenance interval (undefined: the default). */
export function maintenanceIntervalMs(value: number | undefined): number {
  const v = value ?? MAINTENANCE_INTERVAL_MS.default;
  if (
    typeof v !== 'number' ||
    !Number.isFinite(v) ||
    v < MAINTENANCE_INTERVAL_MS.min ||
    v > MAINTENANCE_INTERVAL_MS.max
  ) {
    throw new InvalidArgumentError(
      `maintenance.intervalMs must be a number in [${MAINTENANCE_INTERVAL_MS.min}, ${MAINTENANCE_INTERVAL_MS.max}], got ${String(v)}`,
    );
  }
  return v;
}
