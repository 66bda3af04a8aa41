import type { EntryData } from '../format/codec.js';

/** One entry read back from storage with its id. */
export interface StoredEntry {
  entryId: number;
  data: EntryData;
}

/** A block the writer hands to a sink: already encoded, with its index in the segment. */
export interface PendingBlock {
  /** 0, 1, 2… within the segment. Invariant: a sink sees indexes in increasing order. */
  index: number;
  firstEntryId: number;
  entryCount: number;
  /** The block's bytes in order: the 48-byte header, then the encoded records (not concatenated, to save a copy). */
  parts: readonly Uint8Array[];
  sizeBytes: number;
  /**
   * Bytes of a padding block at the end of `parts`, after the block itself (only on the last
   * block of a write to a sink with a `writeAlignment`). Not part of `sizeBytes`.
   */
  paddingBytes?: number;
}

/** Where a segment's committed prefix ends, as found by recovery or by sealing. */
export interface SegmentExtent {
  /** -1 when the segment holds no entry. */
  lastEntryId: number;
  blockCount: number;
  sizeBytes: number;
}

/**
 * The writer's handle on one segment in storage. `writeBlocks` makes the blocks durable or
 * throws: FencedError when a newer writer fenced the segment (nothing of this call may be
 * acknowledged), any other error when the outcome is unknown. Calls may overlap up to
 * `maxConcurrentWrites`; the writer acknowledges strictly in block order.
 */
export interface SegmentSink {
  readonly maxConcurrentWrites: number;
  /**
   * When set (direct I/O), every write must start at a multiple of it and be a multiple of it
   * long: the writer ends each write with a padding block up to the next multiple.
   */
  readonly writeAlignment?: number;
  writeBlocks(blocks: readonly PendingBlock[], options: { signal?: AbortSignal }): Promise<void>;
  /** Writes the segment's index/footer after the last block. Idempotent. */
  seal(
    extent: SegmentExtent,
    blocks: readonly BlockInfo[],
    options: { signal?: AbortSignal },
  ): Promise<void>;
  /** Releases file handles. Does not seal. */
  close(): Promise<void>;
}

/** Location facts for one block, kept by writers and readers to find entries. */
export interface BlockInfo {
  index: number;
  firstEntryId: number;
  entryCount: number;
  sizeBytes: number;
}

/** Where a reader is inside a segment; opaque to the reader, owned by the store. */
export interface SegmentCursor {
  /** Next entry id to return. */
  entryId: number;
  /** Store-specific: byte offset (local) or block index (object) of the block holding entryId; -1 = unknown. */
  block: number;
}

/** Result of one read call. `end` says why it stopped. */
export interface SegmentRead {
  entries: StoredEntry[];
  cursor: SegmentCursor;
  /**
   * `more`: stopped at the byte budget. `bound`: reached `toEntryId`. `tail`: no further valid
   * block in storage yet (the live end, a torn tail, or a fence). `missing`: a block of a
   * complete segment is gone — it was compacted away (re-read the segment's generation and
   * start again from the cursor's entry) or lost.
   */
  end: 'more' | 'bound' | 'tail' | 'missing';
}

/**
 * Storage of one mode (local files or object storage) for all segments of all logs.
 * Segments are addressed by the log's numeric id and the segment id.
 */
export interface SegmentStore {
  readonly mode: 'local' | 'object';
  /**
   * True when storage alone can stop a fenced writer (local files, or object stores that
   * honour conditional writes). When false, the committed prefix of an active segment is the
   * `lastEntryId` the writer publishes in metadata, and recovery must not scan storage.
   */
  readonly storageFencing: boolean;
  createSegment(
    logId: number,
    segmentId: number,
    epoch: number,
    options: { signal?: AbortSignal },
  ): Promise<SegmentSink>;
  /**
   * Stops any previous writer of the segment from making more entries durable, then returns the
   * segment's committed prefix (the longest valid, gap-free run of blocks). Idempotent.
   */
  fenceAndRecover(
    logId: number,
    segmentId: number,
    epoch: number,
    options: { signal?: AbortSignal },
  ): Promise<SegmentExtent>;
  /**
   * Reads entries from `cursor` up to `toEntryId` inclusive (when given) and at most about
   * `maxBytes`. Throws CorruptDataError for damage below `toEntryId` when `isComplete`.
   */
  read(
    logId: number,
    segmentId: number,
    cursor: SegmentCursor,
    options: {
      toEntryId?: number;
      maxBytes: number;
      isComplete: boolean;
      generation?: number;
      signal?: AbortSignal;
    },
  ): Promise<SegmentRead>;
  /**
   * Rewrites a completed segment's entries `[0, lastEntryId]` from generation `generation` into
   * blocks of about `targetBlockBytes` under generation `target`, index last. Each attempt picks a
   * fresh random `target`, so concurrent or retried compactions never share objects. The new
   * generation is invisible until the caller switches the segment's metadata to it; undefined
   * when this store does not compact (local files).
   */
  compact?(
    logId: number,
    segmentId: number,
    source: { generation: number; lastEntryId: number },
    target: number,
    options: { targetBlockBytes: number; signal?: AbortSignal },
  ): Promise<SegmentExtent>;
  /** Deletes the objects of one generation of a segment (after a compaction switched away from it). */
  deleteGeneration?(
    logId: number,
    segmentId: number,
    generation: number,
    options: { signal?: AbortSignal },
  ): Promise<void>;
  deleteSegment(logId: number, segmentId: number, options: { signal?: AbortSignal }): Promise<void>;
  deleteLog(logId: number, options: { signal?: AbortSignal }): Promise<void>;
  close(): Promise<void>;
}
