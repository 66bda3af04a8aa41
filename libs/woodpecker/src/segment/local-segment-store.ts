import { constants, statSync } from 'node:fs';
import { mkdir, open, rm, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { assert } from '@woodstream/common';
import {
  BLOCK_HEADER_BYTES,
  decodeBlock,
  encodeFenceBlock,
  isFence,
  isPadding,
  parseBlockHeader,
} from '../format/codec.js';
import {
  CorruptDataError,
  DiskFullError,
  FencedError,
  StorageUnavailableError,
} from '../errors.js';
import type {
  BlockInfo,
  PendingBlock,
  SegmentCursor,
  SegmentExtent,
  SegmentRead,
  SegmentSink,
  SegmentStore,
  StoredEntry,
} from './segment-store.js';

// Local mode: one append-only file per segment, `<root>/<logId>/<segmentId>.wal`, holding
// blocks back to back. Fencing uses two marks (see FORMAT.md, "local fencing"):
//   * `<segmentId>.fence`, created by the new writer before it reads the file. A writer checks
//     for it after every durable write and acknowledges nothing once it exists.
//   * a fence block appended to the file (O_APPEND), so blocks a stale writer appends later
//     lie after the fence and are never read.
// A writer acknowledges a block only if the fence file was absent after the block was durable,
// so the block precedes the fence block and recovery (which reads after both marks exist)
// includes it: no acknowledged entry is lost.

function mapIoError(err: unknown, what: string): Error {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT')
    return new DiskFullError(`${what}: disk full`, { cause: err });
  return new StorageUnavailableError(`${what}: ${(err as Error).message}`, { cause: err });
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

// Linux refuses writev with more than IOV_MAX (1024) buffers.
const MAX_IOVECS = 1024;

/**
 * Direct I/O (O_DIRECT): writes go from an aligned staging buffer to the device, past the page
 * cache. On virtual disks durable page-cache writes are often bound by page allocation and
 * copying rather than by the device (here several times slower than direct writes). Offsets
 * and lengths must be multiples of the device's block size: every write is padded up to
 * {@link DIRECT_IO_ALIGNMENT} with a padding block (FORMAT.md), and the staging buffer's
 * address must be aligned too, which JavaScript cannot ask for: each buffer is probed once
 * with direct reads of a small file, at growing offsets, until one is accepted.
 */
export const DIRECT_IO_ALIGNMENT = 4096;
/** Bytes per staging buffer; a larger write goes out in several writes of this size. */
const STAGING_BYTES = 4 * 1024 * 1024;
/** Idle staging buffers kept for reuse (one is in use per segment being written). */
const MAX_IDLE_STAGING = 8;
const PROBE_FILE = '.direct-io-probe';

class DirectIo {
  private readonly idle: Buffer[] = [];

  private constructor(private readonly probe: FileHandle) {}

  /** Direct I/O in `rootDir`, or undefined where the file system refuses it (EINVAL). */
  static async open(rootDir: string): Promise<DirectIo | undefined> {
    const path = join(rootDir, `${PROBE_FILE}-${process.pid}-${Date.now()}`);
    await mkdir(rootDir, { recursive: true });
    let probe: FileHandle;
    try {
      await writeFile(path, Buffer.alloc(DIRECT_IO_ALIGNMENT));
      probe = await open(path, constants.O_RDONLY | constants.O_DIRECT);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EINVAL') return undefined;
      throw err;
    } finally {
      // The open handle keeps the file; nothing stays behind in the data directory.
      await rm(path, { force: true });
    }
    const io = new DirectIo(probe);
    try {
      io.release(await io.allocate());
    } catch {
      await probe.close();
      return undefined;
    }
    return io;
  }

  async acquire(): Promise<Buffer> {
    return this.idle.pop() ?? (await this.allocate());
  }

  release(staging: Buffer): void {
    if (this.idle.length < MAX_IDLE_STAGING) this.idle.push(staging);
  }

  // The offset that worked for the last buffer: allocations of the same size usually start at
  // the same place within a page, so it is tried first.
  private lastOffset = 0;

  /** A staging buffer at an address direct I/O accepts. ArrayBuffers never move in memory. */
  private async allocate(): Promise<Buffer> {
    const raw = Buffer.allocUnsafeSlow(STAGING_BYTES + DIRECT_IO_ALIGNMENT);
    // Allocations are at least 16-byte aligned.
    const offsets = [this.lastOffset];
    for (let offset = 0; offset < DIRECT_IO_ALIGNMENT; offset += 16)
      if (offset !== this.lastOffset) offsets.push(offset);
    for (const offset of offsets) {
      try {
        await this.probe.read(raw, offset, DIRECT_IO_ALIGNMENT, 0);
        this.lastOffset = offset;
        return raw.subarray(offset, offset + STAGING_BYTES);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
      }
    }
    throw new Error('direct I/O accepts no offset of a fresh buffer');
  }

  close(): Promise<void> {
    return this.probe.close();
  }
}

class LocalSegmentSink implements SegmentSink {
  readonly maxConcurrentWrites = 1;
  readonly writeAlignment: number | undefined;
  private isFenced = false;

  constructor(
    private readonly fh: FileHandle,
    private readonly fencePath: string,
    private readonly where: string,
    private readonly direct: DirectIo | undefined,
  ) {
    this.writeAlignment = direct === undefined ? undefined : DIRECT_IO_ALIGNMENT;
  }

  async writeBlocks(blocks: readonly PendingBlock[]): Promise<void> {
    if (this.isFenced) throw new FencedError(`${this.where}: fenced by a newer writer`);
    try {
      // One write for the whole group, durable when it returns (the file is opened with
      // O_DSYNC: write and fdatasync in one system call): this is the group commit.
      let total = 0;
      const parts: Uint8Array[] = [];
      for (const b of blocks) {
        total += b.sizeBytes + (b.paddingBytes ?? 0);
        parts.push(...b.parts);
      }
      const written =
        this.direct === undefined
          ? await this.writeBuffered(parts)
          : await this.writeDirect(this.direct, parts, total);
      // A short write leaves a torn block that readers stop at; the writer must fail.
      if (written !== total) throw new Error(`short write: ${written} of ${total} bytes`);
    } catch (err) {
      // A stale writer's direct append after the new writer's (unaligned) fence block.
      if ((err as NodeJS.ErrnoException).code === 'EINVAL' && this.fenceExists()) {
        this.isFenced = true;
        throw new FencedError(`${this.where}: fenced by a newer writer`, { cause: err });
      }
      throw mapIoError(err, `${this.where}: write`);
    }
    // Synchronous: a stat of a cached directory entry takes microseconds, while another trip
    // through the thread pool would wait behind whatever else runs on the event loop, and the
    // group's acknowledgements (and the next group commit) wait for it.
    let isFenced: boolean;
    try {
      isFenced = this.fenceExists();
    } catch (err) {
      throw mapIoError(err, `${this.where}: fence check`);
    }
    if (isFenced) {
      this.isFenced = true;
      throw new FencedError(`${this.where}: fenced by a newer writer`);
    }
  }

  private fenceExists(): boolean {
    return statSync(this.fencePath, { throwIfNoEntry: false }) !== undefined;
  }

  private async writeBuffered(parts: Uint8Array[]): Promise<number> {
    let written = 0;
    for (let i = 0; i < parts.length; i += MAX_IOVECS) {
      const { bytesWritten } = await this.fh.writev(parts.slice(i, i + MAX_IOVECS));
      written += bytesWritten;
    }
    return written;
  }

  /** Copies the parts into a staging buffer and writes it out whenever it is full, then the rest. */
  private async writeDirect(direct: DirectIo, parts: Uint8Array[], total: number): Promise<number> {
    assert(total % DIRECT_IO_ALIGNMENT === 0, 'a direct write is padded to the alignment');
    const staging = await direct.acquire();
    try {
      let written = 0;
      let filled = 0;
      const flush = async (): Promise<void> => {
        const { bytesWritten } = await this.fh.write(staging, 0, filled, null);
        written += bytesWritten;
        if (bytesWritten !== filled)
          throw new Error(`short write: ${bytesWritten} of ${filled} bytes`);
        filled = 0;
      };
      for (const part of parts) {
        for (let at = 0; at < part.byteLength;) {
          const n = Math.min(part.byteLength - at, staging.byteLength - filled);
          // Nearly every part fits whole: no view for it.
          staging.set(n === part.byteLength ? part : part.subarray(at, at + n), filled);
          filled += n;
          at += n;
          if (filled === staging.byteLength) await flush();
        }
      }
      if (filled > 0) await flush();
      return written;
    } finally {
      direct.release(staging);
    }
  }

  async seal(): Promise<void> {
    // The local index is rebuilt by scanning block headers; the segment's end is final in
    // metadata. Nothing to write.
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

/** Options of {@link LocalSegmentStore}. */
export interface LocalSegmentStoreOptions {
  /**
   * Write segments with direct I/O where the file system supports it (probed once, falling back
   * to page-cache writes where it does not). @default true
   */
  directIo?: boolean;
}

/** Local-disk segment storage. `rootDir` is created if missing. */
export class LocalSegmentStore implements SegmentStore {
  readonly mode = 'local';
  readonly storageFencing = true;

  // Probed on the first segment created; undefined inside: not available here.
  private direct: Promise<DirectIo | undefined> | undefined;

  constructor(
    private readonly rootDir: string,
    private readonly options: LocalSegmentStoreOptions = {},
  ) {}

  private directIo(): Promise<DirectIo | undefined> {
    if (this.options.directIo === false) return Promise.resolve(undefined);
    // Whatever stops the probe (a full disk, say) leaves page-cache writes, which still work.
    this.direct ??= DirectIo.open(this.rootDir).catch(() => undefined);
    return this.direct;
  }

  private dir(logId: number): string {
    return join(this.rootDir, String(logId));
  }
  private file(logId: number, segmentId: number): string {
    return join(this.dir(logId), `${String(segmentId).padStart(10, '0')}.wal`);
  }
  private fenceFile(logId: number, segmentId: number): string {
    return join(this.dir(logId), `${String(segmentId).padStart(10, '0')}.fence`);
  }

  async createSegment(logId: number, segmentId: number): Promise<SegmentSink> {
    const where = `log ${logId} segment ${segmentId}`;
    try {
      await mkdir(this.dir(logId), { recursive: true });
      const direct = await this.directIo();
      // O_EXCL: a segment file is created exactly once, by the writer that created the segment.
      // O_DSYNC: every write is durable when it returns (see writeBlocks).
      const fh = await open(
        this.file(logId, segmentId),
        constants.O_WRONLY |
          constants.O_CREAT |
          constants.O_EXCL |
          constants.O_APPEND |
          constants.O_DSYNC |
          (direct === undefined ? 0 : constants.O_DIRECT),
        0o644,
      );
      await fsyncDir(this.dir(logId));
      return new LocalSegmentSink(fh, this.fenceFile(logId, segmentId), where, direct);
    } catch (err) {
      throw mapIoError(err, `${where}: create`);
    }
  }

  async fenceAndRecover(logId: number, segmentId: number, epoch: number): Promise<SegmentExtent> {
    const where = `log ${logId} segment ${segmentId}`;
    const path = this.file(logId, segmentId);
    try {
      await mkdir(this.dir(logId), { recursive: true });
      const fence = await open(
        this.fenceFile(logId, segmentId),
        constants.O_WRONLY | constants.O_CREAT,
        0o644,
      );
      await fence.close();
      await fsyncDir(this.dir(logId));
      if (!(await exists(path))) return { lastEntryId: -1, blockCount: 0, sizeBytes: 0 };
      const extent = await this.scan(logId, segmentId);
      const fh = await open(path, constants.O_WRONLY | constants.O_APPEND);
      try {
        await fh.write(encodeFenceBlock(segmentId, extent.lastEntryId + 1, epoch));
        await fh.datasync();
      } finally {
        await fh.close();
      }
      // Re-scan: a stale writer may have appended between the scan and the fence block; what it
      // appended before the fence block is valid and may have been acknowledged.
      return await this.scan(logId, segmentId);
    } catch (err) {
      if (err instanceof CorruptDataError) throw err;
      throw mapIoError(err, `${where}: recover`);
    }
  }

  /** The valid, gap-free prefix of the file, stopping at a fence, a torn tail or damage. */
  private async scan(logId: number, segmentId: number): Promise<SegmentExtent> {
    let cursor: SegmentCursor = { entryId: 0, block: 0 };
    let extent: SegmentExtent = { lastEntryId: -1, blockCount: 0, sizeBytes: 0 };
    for (;;) {
      const blocks: BlockInfo[] = [];
      const read = await this.readRaw(logId, segmentId, cursor, {
        maxBytes: 8 << 20,
        isComplete: false,
        onBlock: (b) => blocks.push(b),
      });
      for (const b of blocks) {
        extent = {
          lastEntryId: b.firstEntryId + b.entryCount - 1,
          blockCount: extent.blockCount + 1,
          sizeBytes: extent.sizeBytes + b.sizeBytes,
        };
      }
      cursor = read.cursor;
      // The valid prefix ends where the read stopped, padding included.
      if (read.end !== 'more') return { ...extent, sizeBytes: cursor.block };
    }
  }

  read(
    logId: number,
    segmentId: number,
    cursor: SegmentCursor,
    options: { toEntryId?: number; maxBytes: number; isComplete: boolean; signal?: AbortSignal },
  ): Promise<SegmentRead> {
    return this.readRaw(logId, segmentId, cursor, options);
  }

  private async readRaw(
    logId: number,
    segmentId: number,
    cursor: SegmentCursor,
    options: {
      toEntryId?: number;
      maxBytes: number;
      isComplete: boolean;
      signal?: AbortSignal;
      onBlock?: (b: BlockInfo) => void;
    },
  ): Promise<SegmentRead> {
    const where = `log ${logId} segment ${segmentId}`;
    const { toEntryId, isComplete } = options;
    const entries: StoredEntry[] = [];
    let fh: FileHandle;
    try {
      fh = await open(this.file(logId, segmentId), constants.O_RDONLY);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !isComplete)
        return { entries, cursor, end: 'tail' };
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        throw new CorruptDataError(`${where}: segment file is missing`);
      throw mapIoError(err, `${where}: open`);
    }
    try {
      // Offset of the block holding cursor.entryId; block -1 means "find it from the start".
      let offset = cursor.block >= 0 ? cursor.block : 0;
      let nextEntryId = cursor.entryId;
      // Entry id the next block must start with; unknown when resuming mid-segment.
      let expectFirst: number | undefined = offset === 0 ? 0 : undefined;
      let bytes = 0;
      // A lower bound of the file's size, refreshed when padding reaches past it.
      let fileBytes = 0;
      const damaged = (reason: string): SegmentRead => {
        // Deliver what was valid before the damage first; the next call reports it.
        if (entries.length > 0)
          return { entries, cursor: { entryId: nextEntryId, block: offset }, end: 'more' };
        if (isComplete && (toEntryId === undefined || nextEntryId <= toEntryId)) {
          throw new CorruptDataError(
            `${where}: ${reason} at byte ${offset}, below the committed end`,
          );
        }
        return { entries, cursor: { entryId: nextEntryId, block: offset }, end: 'tail' };
      };
      for (;;) {
        options.signal?.throwIfAborted();
        if (toEntryId !== undefined && nextEntryId > toEntryId)
          return { entries, cursor: { entryId: nextEntryId, block: offset }, end: 'bound' };
        if (bytes >= options.maxBytes)
          return { entries, cursor: { entryId: nextEntryId, block: offset }, end: 'more' };
        const head = Buffer.alloc(BLOCK_HEADER_BYTES);
        const { bytesRead } = await fh.read(head, 0, BLOCK_HEADER_BYTES, offset);
        const parsedHead = parseBlockHeader(head.subarray(0, bytesRead));
        if (parsedHead.status === 'short') return damaged('torn block header');
        if (parsedHead.status === 'invalid') return damaged(parsedHead.reason);
        const header = parsedHead.header;
        if (isFence(header))
          return { entries, cursor: { entryId: nextEntryId, block: offset }, end: 'tail' };
        if (isPadding(header)) {
          // Filler after a direct write: skipped by its length; the ids continue after it.
          if (header.segmentId !== segmentId)
            return damaged(`block of segment ${header.segmentId}`);
          if (expectFirst !== undefined && header.firstEntryId !== expectFirst)
            return damaged(`padding at entry ${header.firstEntryId}, expected ${expectFirst}`);
          const end = offset + BLOCK_HEADER_BYTES + header.recordsBytes;
          // Padding is skipped unread, so check that all of it reached the file: a write torn
          // inside it would otherwise move the scan past the end of the file.
          if (end > fileBytes) fileBytes = (await fh.stat()).size;
          if (end > fileBytes) return damaged('torn padding');
          offset = end;
          continue;
        }
        if (header.segmentId !== segmentId) return damaged(`block of segment ${header.segmentId}`);
        if (expectFirst !== undefined && header.firstEntryId !== expectFirst)
          return damaged(
            `gap in entry ids (expected ${expectFirst}, found ${header.firstEntryId})`,
          );
        const size = BLOCK_HEADER_BYTES + header.recordsBytes;
        const blockEnd = header.firstEntryId + header.entryCount;
        if (blockEnd <= nextEntryId) {
          // Entirely before the cursor (a reader starting mid-segment): skip by the header.
          offset += size;
          expectFirst = blockEnd;
          continue;
        }
        const body = Buffer.allocUnsafe(size);
        const full = await fh.read(body, 0, size, offset);
        const parsed = decodeBlock(body.subarray(0, full.bytesRead));
        if (parsed.status === 'short') return damaged('torn block');
        if (parsed.status === 'invalid') return damaged(parsed.reason);
        options.onBlock?.({
          index: -1,
          firstEntryId: header.firstEntryId,
          entryCount: header.entryCount,
          sizeBytes: size,
        });
        parsed.block.entries.forEach((data, i) => {
          const entryId = header.firstEntryId + i;
          if (entryId >= nextEntryId && (toEntryId === undefined || entryId <= toEntryId)) {
            entries.push({ entryId, data });
          }
        });
        bytes += size;
        if (toEntryId !== undefined && toEntryId < blockEnd - 1) {
          // Stopped inside this block at the bound; the cursor stays on it.
          return { entries, cursor: { entryId: toEntryId + 1, block: offset }, end: 'bound' };
        }
        nextEntryId = blockEnd;
        offset += size;
        expectFirst = blockEnd;
      }
    } catch (err) {
      if (err instanceof CorruptDataError || (options.signal?.aborted ?? false)) throw err;
      throw mapIoError(err, `${where}: read`);
    } finally {
      await fh.close();
    }
  }

  async deleteSegment(logId: number, segmentId: number): Promise<void> {
    try {
      await rm(this.file(logId, segmentId), { force: true });
      await rm(this.fenceFile(logId, segmentId), { force: true });
    } catch (err) {
      throw mapIoError(err, `log ${logId} segment ${segmentId}: delete`);
    }
  }

  async deleteLog(logId: number): Promise<void> {
    try {
      await rm(this.dir(logId), { recursive: true, force: true });
    } catch (err) {
      throw mapIoError(err, `log ${logId}: delete`);
    }
  }

  async close(): Promise<void> {
    const direct = await this.direct;
    this.direct = undefined;
    await direct?.close();
  }
}
