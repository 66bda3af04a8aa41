import { retry, type RetryPolicy } from '@woodstream/common';
import {
  BLOCK_HEADER_BYTES,
  decodeBlock,
  encodeBlockHeader,
  encodeFenceBlock,
  encodeRecord,
  isFence,
  parseBlockHeader,
} from '../format/codec.js';
import { CorruptDataError, FencedError, StorageUnavailableError } from '../errors.js';
import type { ObjectStore, PutResult } from '../storage/object-store.js';
import type {
  PendingBlock,
  SegmentCursor,
  SegmentExtent,
  SegmentRead,
  SegmentSink,
  SegmentStore,
  StoredEntry,
} from './segment-store.js';

// Object mode: each block is one object `<prefix><logId>/<segmentId>/<index>.blk`, indexes
// 0, 1, 2… with no gaps; a sealed segment also has `footer.json` (the block index). With
// conditional writes every block is created with If-None-Match, and a new writer caps an old
// segment with a fence block at the first free index: a stale writer's next block collides
// with it and fails, and blocks after a gap or a fence are never read (FORMAT.md, "fencing").

const FENCE_META = 'woodstream-fence';
const MAX_FENCE_ATTEMPTS = 32;
/**
 * Blocks a read fetches ahead of the one it decodes. Each GET costs a round trip (tens of ms on
 * some stores) and small blocks are common (flushed by age under light traffic), so a reader
 * catching up block by block would wait for hundreds of round trips before its first entry.
 * At most this many GETs per read are spent past the end of what it returns.
 */
const READ_AHEAD_BLOCKS = 8;

/** Options for {@link ObjectSegmentStore}. */
export interface ObjectSegmentStoreOptions {
  /** Prepended to every key. @default '' */
  keyPrefix?: string;
  /** Concurrent block uploads per segment. @default 4 (1–64) */
  maxConcurrentUploads?: number;
  /** Retries of one block upload on transient errors before the writer fails. */
  uploadRetry?: RetryPolicy;
  /** Retries of reads on transient errors. */
  readRetry?: RetryPolicy;
}

interface Footer {
  version: 1;
  lastEntryId: number;
  /** [firstEntryId, entryCount, sizeBytes] per block, by index. */
  blocks: [number, number, number][];
}

const pad = (n: number): string => String(n).padStart(10, '0');

export class ObjectSegmentStore implements SegmentStore {
  readonly mode = 'object';
  readonly storageFencing: boolean;
  private readonly prefix: string;
  private readonly maxConcurrentUploads: number;
  private readonly uploadRetry: RetryPolicy;
  private readonly readRetry: RetryPolicy;
  // Footers of sealed segments: immutable, so cached without invalidation. Bounded.
  private readonly footers = new Map<string, Footer>();
  private static readonly MAX_CACHED_FOOTERS = 1024;

  constructor(
    private readonly objects: ObjectStore,
    options: ObjectSegmentStoreOptions = {},
  ) {
    this.storageFencing = objects.capabilities.conditionalWrites;
    this.prefix = options.keyPrefix ?? '';
    this.maxConcurrentUploads = Math.min(Math.max(options.maxConcurrentUploads ?? 4, 1), 64);
    this.uploadRetry = options.uploadRetry ?? {
      maxAttempts: 6,
      initialDelayMs: 50,
      maxDelayMs: 2_000,
      maxElapsedMs: 30_000,
    };
    this.readRetry = options.readRetry ?? {
      maxAttempts: 5,
      initialDelayMs: 50,
      maxDelayMs: 1_000,
      maxElapsedMs: 15_000,
    };
  }

  private segmentPrefix(logId: number, segmentId: number): string {
    return `${this.prefix}${logId}/${pad(segmentId)}/`;
  }
  /** Generation 0 holds the blocks as written; any other generation is the output of one compaction attempt. */
  private generationPrefix(logId: number, segmentId: number, generation: number): string {
    return generation === 0
      ? this.segmentPrefix(logId, segmentId)
      : `${this.segmentPrefix(logId, segmentId)}g${generation}/`;
  }
  private blockKey(logId: number, segmentId: number, index: number, generation = 0): string {
    return `${this.generationPrefix(logId, segmentId, generation)}${pad(index)}.blk`;
  }
  private footerKey(logId: number, segmentId: number, generation = 0): string {
    return `${this.generationPrefix(logId, segmentId, generation)}footer.json`;
  }

  createSegment(logId: number, segmentId: number): Promise<SegmentSink> {
    const where = `log ${logId} segment ${segmentId}`;
    const putBlock = (block: PendingBlock, signal?: AbortSignal): Promise<void> =>
      this.putBlock(logId, segmentId, block, where, signal);
    const putFooter = (body: Uint8Array, signal?: AbortSignal): Promise<unknown> =>
      retry(
        () =>
          this.objects.put(this.footerKey(logId, segmentId), body, {
            signal,
            ifNoneMatch: this.storageFencing,
          }),
        {
          signal,
          policy: this.uploadRetry,
        },
      );
    const sink: SegmentSink = {
      maxConcurrentWrites: this.maxConcurrentUploads,
      async writeBlocks(blocks, { signal }) {
        for (const block of blocks) await putBlock(block, signal);
      },
      async seal(extent, blocks, { signal }) {
        const footer: Footer = {
          version: 1,
          lastEntryId: extent.lastEntryId,
          blocks: blocks.map((b) => [b.firstEntryId, b.entryCount, b.sizeBytes]),
        };
        await putFooter(new TextEncoder().encode(JSON.stringify(footer)), signal);
      },
      async close() {},
    };
    return Promise.resolve(sink);
  }

  private async putBlock(
    logId: number,
    segmentId: number,
    block: PendingBlock,
    where: string,
    signal?: AbortSignal,
  ): Promise<void> {
    const key = this.blockKey(logId, segmentId, block.index);
    // Reused buffers: a fresh multi-MiB allocation per block costs page faults on every upload.
    const pooled = this.takeBuffer(block.sizeBytes);
    let offset = 0;
    for (const part of block.parts) {
      pooled.set(part, offset);
      offset += part.byteLength;
    }
    const body = pooled.subarray(0, block.sizeBytes);
    let result: PutResult;
    try {
      result = await retry(
        () => this.objects.put(key, body, { signal, ifNoneMatch: this.storageFencing }),
        { signal, policy: this.uploadRetry },
      );
    } finally {
      this.returnBuffer(pooled);
    }
    if (result.status === 'created') return;
    // The key is taken: either a fence (we are stale) or our own earlier attempt whose
    // response was lost. Only this segment's single writer writes data blocks here.
    const info = await retry(() => this.objects.head(key, { signal }), {
      signal,
      policy: this.readRetry,
    });
    if (
      info === undefined ||
      info.metadata?.[FENCE_META] === '1' ||
      info.sizeBytes !== block.sizeBytes
    ) {
      throw new FencedError(`${where}: block ${block.index} is fenced by a newer writer`);
    }
  }

  // Invariant: bufferPool.length <= maxConcurrentUploads; a buffer is in the pool only while unused.
  private readonly bufferPool: Buffer[] = [];

  private takeBuffer(size: number): Buffer {
    const i = this.bufferPool.findIndex((b) => b.byteLength >= size);
    if (i >= 0) return this.bufferPool.splice(i, 1)[0] as Buffer;
    return Buffer.allocUnsafe(size);
  }

  private returnBuffer(buffer: Buffer): void {
    // At most one spare buffer per upload slot, and never a huge one.
    if (
      this.bufferPool.length < this.maxConcurrentUploads &&
      buffer.byteLength <= 64 * 1024 * 1024
    ) {
      this.bufferPool.push(buffer);
    }
  }

  async fenceAndRecover(
    logId: number,
    segmentId: number,
    epoch: number,
    options: { signal?: AbortSignal },
  ): Promise<SegmentExtent> {
    const { signal } = options;
    const where = `log ${logId} segment ${segmentId}`;
    for (let attempt = 0; attempt < MAX_FENCE_ATTEMPTS; attempt++) {
      const blocks = await this.listContiguous(logId, segmentId, signal);
      const extent = await this.extentOf(logId, segmentId, blocks, where, signal);
      if (blocks.fenceIndex !== undefined || !this.storageFencing) return extent;
      const fence = encodeFenceBlock(segmentId, extent.lastEntryId + 1, epoch);
      const result = await retry(
        () =>
          this.objects.put(this.blockKey(logId, segmentId, blocks.sizes.length), fence, {
            signal,
            ifNoneMatch: true,
            metadata: { [FENCE_META]: '1' },
          }),
        { signal, policy: this.uploadRetry },
      );
      if (result.status === 'created') return extent;
      // The old writer's block won the index: it belongs to the segment. Look again.
    }
    throw new StorageUnavailableError(
      `${where}: could not place a fence after ${MAX_FENCE_ATTEMPTS} attempts`,
    );
  }

  /** Sizes of blocks 0..k-1 present without a gap, and the index of a fence block if one caps them. */
  private async listContiguous(
    logId: number,
    segmentId: number,
    signal?: AbortSignal,
  ): Promise<{ sizes: number[]; fenceIndex?: number }> {
    const prefix = this.segmentPrefix(logId, segmentId);
    const present = new Map<number, number>();
    let token: string | undefined;
    do {
      const page = await retry(
        () => this.objects.list(prefix, { signal, continuationToken: token }),
        { signal, policy: this.readRetry },
      );
      for (const o of page.objects) {
        const m = /^(\d{10})\.blk$/.exec(o.key.slice(prefix.length));
        if (m?.[1] !== undefined) present.set(Number(m[1]), o.sizeBytes);
      }
      token = page.continuationToken;
    } while (token !== undefined);
    const sizes: number[] = [];
    for (let i = 0; present.has(i); i++) {
      const size = present.get(i) as number;
      // A block with no records is a fence (data blocks always hold at least one entry).
      if (size === BLOCK_HEADER_BYTES) return { sizes, fenceIndex: i };
      sizes.push(size);
    }
    return { sizes };
  }

  private async extentOf(
    logId: number,
    segmentId: number,
    blocks: { sizes: number[] },
    where: string,
    signal?: AbortSignal,
  ): Promise<SegmentExtent> {
    const count = blocks.sizes.length;
    if (count === 0) return { lastEntryId: -1, blockCount: 0, sizeBytes: 0 };
    const head = await this.readHeader(logId, segmentId, count - 1, signal);
    if (head === undefined)
      throw new CorruptDataError(`${where}: block ${count - 1} has no valid header`);
    return {
      lastEntryId: head.firstEntryId + head.entryCount - 1,
      blockCount: count,
      sizeBytes: blocks.sizes.reduce((a, b) => a + b, 0),
    };
  }

  private async readHeader(
    logId: number,
    segmentId: number,
    index: number,
    signal?: AbortSignal,
    generation = 0,
  ) {
    const bytes = await retry(
      () =>
        this.objects.get(this.blockKey(logId, segmentId, index, generation), {
          signal,
          range: { start: 0, end: BLOCK_HEADER_BYTES },
        }),
      { signal, policy: this.readRetry },
    );
    if (bytes === undefined) return undefined;
    const parsed = parseBlockHeader(bytes);
    return parsed.status === 'ok' ? parsed.header : undefined;
  }

  private async footer(
    logId: number,
    segmentId: number,
    generation: number,
    signal?: AbortSignal,
  ): Promise<Footer | undefined> {
    const key = this.footerKey(logId, segmentId, generation);
    const cached = this.footers.get(key);
    if (cached !== undefined) return cached;
    const bytes = await retry(() => this.objects.get(key, { signal }), {
      signal,
      policy: this.readRetry,
    });
    if (bytes === undefined) return undefined;
    let footer: Footer;
    try {
      footer = JSON.parse(new TextDecoder().decode(bytes)) as Footer;
    } catch (err) {
      throw new CorruptDataError(`footer ${key} is not valid JSON`, { cause: err });
    }
    if (this.footers.size >= ObjectSegmentStore.MAX_CACHED_FOOTERS) {
      const oldest = this.footers.keys().next().value;
      if (oldest !== undefined) this.footers.delete(oldest);
    }
    this.footers.set(key, footer);
    return footer;
  }

  /** Index of the block holding `entryId`, or the first index past the known blocks. */
  private async locate(
    logId: number,
    segmentId: number,
    entryId: number,
    isComplete: boolean,
    generation: number,
    signal?: AbortSignal,
  ): Promise<number> {
    const footer = isComplete ? await this.footer(logId, segmentId, generation, signal) : undefined;
    if (footer !== undefined) {
      let lo = 0;
      let hi = footer.blocks.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        const [first, count] = footer.blocks[mid] as [number, number, number];
        if (first + count <= entryId) lo = mid + 1;
        else hi = mid;
      }
      return lo;
    }
    // No index yet (active segment): walk block headers with small ranged reads.
    for (let index = 0; ; index++) {
      const header = await this.readHeader(logId, segmentId, index, signal, generation);
      if (header === undefined || isFence(header)) return index;
      if (header.firstEntryId + header.entryCount > entryId) return index;
    }
  }

  async read(
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
  ): Promise<SegmentRead> {
    const { toEntryId, isComplete, signal } = options;
    const generation = options.generation ?? 0;
    const where = `log ${logId} segment ${segmentId}`;
    const entries: StoredEntry[] = [];
    let index =
      cursor.block >= 0
        ? cursor.block
        : await this.locate(logId, segmentId, cursor.entryId, isComplete, generation, signal);
    let nextEntryId = cursor.entryId;
    let bytes = 0;
    // Blocks index, index + 1, ... requested ahead, in order; what is left when the read returns
    // is dropped (its GETs end on their own, their results unused).
    const ahead: Promise<Uint8Array | undefined>[] = [];
    const fetchAhead = (): void => {
      while (ahead.length < READ_AHEAD_BLOCKS) {
        const key = this.blockKey(logId, segmentId, index + ahead.length, generation);
        const body = retry(() => this.objects.get(key, { signal }), {
          signal,
          policy: this.readRetry,
        });
        body.catch(() => undefined); // awaited in order below; dropped ones must not go unhandled
        ahead.push(body);
      }
    };
    for (;;) {
      if (toEntryId !== undefined && nextEntryId > toEntryId)
        return { entries, cursor: { entryId: nextEntryId, block: index }, end: 'bound' };
      if (bytes >= options.maxBytes)
        return { entries, cursor: { entryId: nextEntryId, block: index }, end: 'more' };
      fetchAhead();
      const body = await (ahead.shift() as Promise<Uint8Array | undefined>);
      if (body === undefined && isComplete) {
        // Compaction may have replaced this generation; the caller re-reads metadata.
        if (entries.length > 0)
          return { entries, cursor: { entryId: nextEntryId, block: index }, end: 'more' };
        return { entries, cursor: { entryId: nextEntryId, block: -1 }, end: 'missing' };
      }
      const damaged = (reason: string): SegmentRead => {
        // Deliver what was valid before the damage first; the next call reports it.
        if (entries.length > 0)
          return { entries, cursor: { entryId: nextEntryId, block: index }, end: 'more' };
        if (isComplete)
          throw new CorruptDataError(`${where}: block ${index} ${reason}, below the committed end`);
        return { entries, cursor: { entryId: nextEntryId, block: index }, end: 'tail' };
      };
      if (body === undefined) return damaged('is missing');
      const parsed = decodeBlock(body);
      if (parsed.status !== 'ok')
        return damaged(parsed.status === 'short' ? 'is truncated' : parsed.reason);
      const { header, entries: data } = parsed.block;
      if (isFence(header))
        return { entries, cursor: { entryId: nextEntryId, block: index }, end: 'tail' };
      if (header.segmentId !== segmentId || parsed.block.sizeBytes !== body.byteLength)
        return damaged('does not belong here');
      const blockEnd = header.firstEntryId + header.entryCount;
      if (header.firstEntryId > nextEntryId)
        return damaged(`skips entries ${nextEntryId}..${header.firstEntryId - 1}`);
      data.forEach((d, i) => {
        const entryId = header.firstEntryId + i;
        if (entryId >= nextEntryId && (toEntryId === undefined || entryId <= toEntryId))
          entries.push({ entryId, data: d });
      });
      bytes += body.byteLength;
      if (toEntryId !== undefined && toEntryId < blockEnd - 1) {
        return { entries, cursor: { entryId: toEntryId + 1, block: index }, end: 'bound' };
      }
      nextEntryId = Math.max(nextEntryId, blockEnd);
      index += 1;
    }
  }

  async compact(
    logId: number,
    segmentId: number,
    source: { generation: number; lastEntryId: number },
    generation: number,
    options: { targetBlockBytes: number; signal?: AbortSignal },
  ): Promise<SegmentExtent> {
    const { signal } = options;
    const blocks: [number, number, number][] = [];
    let cursor: SegmentCursor = { entryId: 0, block: -1 };
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let firstEntryId = 0;
    let sizeBytes = 0;
    const put = async (): Promise<void> => {
      if (pending.length === 0) return;
      const header = encodeBlockHeader({ segmentId, firstEntryId, epoch: 0, records: pending });
      const body = Buffer.concat([header, ...pending]);
      // Plain put: until metadata points at this generation nobody reads it, and a retried
      // compaction writes the same bytes to the same keys.
      await retry(
        () =>
          this.objects.put(this.blockKey(logId, segmentId, blocks.length, generation), body, {
            signal,
          }),
        {
          signal,
          policy: this.uploadRetry,
        },
      );
      blocks.push([firstEntryId, pending.length, body.byteLength]);
      sizeBytes += body.byteLength;
      firstEntryId += pending.length;
      pending = [];
      pendingBytes = 0;
    };
    while (cursor.entryId <= source.lastEntryId) {
      const read = await this.read(logId, segmentId, cursor, {
        toEntryId: source.lastEntryId,
        maxBytes: options.targetBlockBytes,
        isComplete: true,
        generation: source.generation,
        ...(signal === undefined ? {} : { signal }),
      });
      if (read.end === 'missing')
        throw new CorruptDataError(
          `log ${logId} segment ${segmentId}: block missing during compaction`,
        );
      for (const e of read.entries) {
        const record = encodeRecord(e.data);
        if (pendingBytes > 0 && pendingBytes + record.byteLength > options.targetBlockBytes)
          await put();
        pending.push(record);
        pendingBytes += record.byteLength;
      }
      cursor = read.cursor;
    }
    await put();
    const footer: Footer = { version: 1, lastEntryId: source.lastEntryId, blocks };
    await retry(
      () =>
        this.objects.put(
          this.footerKey(logId, segmentId, generation),
          new TextEncoder().encode(JSON.stringify(footer)),
          { signal },
        ),
      { signal, policy: this.uploadRetry },
    );
    return { lastEntryId: source.lastEntryId, blockCount: blocks.length, sizeBytes };
  }

  async deleteGeneration(
    logId: number,
    segmentId: number,
    generation: number,
    options: { signal?: AbortSignal },
  ): Promise<void> {
    const prefix = this.generationPrefix(logId, segmentId, generation);
    const { signal } = options;
    if (generation !== 0) {
      await this.deletePrefix(prefix, signal);
    } else {
      // Generation 0 shares its prefix with later generations: delete only its own keys.
      for (;;) {
        const page = await retry(() => this.objects.list(prefix, { signal }), {
          signal,
          policy: this.readRetry,
        });
        const own = page.objects
          .map((o) => o.key)
          .filter((k) => !k.slice(prefix.length).includes('/'));
        if (own.length > 0)
          await retry(() => this.objects.deleteMany(own, { signal }), {
            signal,
            policy: this.uploadRetry,
          });
        if (page.continuationToken === undefined || own.length === 0) break;
      }
    }
    this.footers.delete(this.footerKey(logId, segmentId, generation));
  }

  async deleteSegment(
    logId: number,
    segmentId: number,
    options: { signal?: AbortSignal },
  ): Promise<void> {
    await this.deletePrefix(this.segmentPrefix(logId, segmentId), options.signal);
    this.footers.delete(this.footerKey(logId, segmentId));
  }

  async deleteLog(logId: number, options: { signal?: AbortSignal }): Promise<void> {
    await this.deletePrefix(`${this.prefix}${logId}/`, options.signal);
  }

  private async deletePrefix(prefix: string, signal?: AbortSignal): Promise<void> {
    for (;;) {
      const page = await retry(() => this.objects.list(prefix, { signal }), {
        signal,
        policy: this.readRetry,
      });
      if (page.objects.length === 0) return;
      const keys = page.objects.map((o) => o.key);
      await retry(() => this.objects.deleteMany(keys, { signal }), {
        signal,
        policy: this.uploadRetry,
      });
    }
  }

  async close(): Promise<void> {}
}
