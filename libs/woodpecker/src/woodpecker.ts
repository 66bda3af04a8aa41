import { setTimeout as delay } from 'node:timers/promises';
import { maintenanceIntervalMs, withDefaults, type WalLimits } from './config.js';
import {
  ClosedError,
  ConflictError,
  InvalidArgumentError,
  LogExistsError,
  LogNotFoundError,
} from './errors.js';
import { LogHandle } from './log/log-handle.js';
import { LogRuntime } from './log/log-runtime.js';
import { maintainLogs, type MaintenanceResult } from './log/maintenance.js';
import { allocateLogId, decodeJson, encodeJson, keys, type LogMeta } from './log/metadata.js';
import { validateLogName } from './log/names.js';
import { TailWatch } from './log/tail-watch.js';
import { WriterSessions } from './log/writer-sessions.js';
import { LocalSegmentStore } from './segment/local-segment-store.js';
import { ObjectSegmentStore } from './segment/object-segment-store.js';
import type { SegmentStore } from './segment/segment-store.js';
import { instrumentMetadataStore, instrumentObjectStore } from './storage/instrumented.js';
import type { MetadataStore } from './storage/metadata-store.js';
import type { ObjectStore } from './storage/object-store.js';

/** Where log data lives. */
export type StorageOptions =
  | {
      mode: 'local';
      /** Directory for segment files (created if missing). */
      rootDir: string;
      /**
       * Write with direct I/O (past the page cache) where the file system supports it; segment
       * writes are then padded to 4 KiB. @default true
       */
      directIo?: boolean;
    }
  | {
      mode: 'object';
      objectStore: ObjectStore;
      /** Prepended to every object key. @default '' */
      keyPrefix?: string;
      /** Concurrent block uploads per writer. @default 4 (1–64) */
      maxConcurrentUploads?: number;
    };

export interface WoodpeckerOptions {
  /** Where metadata lives. The caller owns it (and closes it after the client). */
  metadata: MetadataStore;
  storage: StorageOptions;
  limits?: Partial<WalLimits>;
  /**
   * Runs `maintain()` in the background every `intervalMs` (default 60 s, 1 s – 1 h) until
   * `close()`. One client per deployment is enough; several are safe (every step is a
   * compare-and-swap) but repeat the reads. A failed pass is reported to `onError` and retried
   * at the next interval. Off when absent.
   */
  maintenance?: { intervalMs?: number; onError?: (error: Error) => void };
}

/**
 * Entry point of the WAL: creates, opens, lists and deletes logs. One instance per process
 * and storage location is enough; writers and readers opened through it share in-process
 * state (tail wake-ups and cache). `close()` closes every writer and reader it opened.
 */
export class Woodpecker {
  private readonly runtimes = new Map<string, LogRuntime>();
  private readonly open = new Set<{ close(): Promise<void> }>();
  private isClosed = false;
  private readonly sessions: WriterSessions;
  private readonly stopMaintenance = new AbortController();
  private maintenanceLoop: Promise<void> | undefined;

  private constructor(
    private readonly metadata: MetadataStore,
    private readonly segments: SegmentStore,
    readonly limits: Readonly<WalLimits>,
  ) {
    this.sessions = new WriterSessions(metadata, limits.writerSessionTtlMs);
  }

  /** Validates options and returns a client. Throws InvalidArgumentError listing every problem. */
  static open(options: WoodpeckerOptions): Woodpecker {
    const { storage } = options;
    const limits = withDefaults(storage.mode, options.limits);
    let segments: SegmentStore;
    if (storage.mode === 'local') {
      if (typeof storage.rootDir !== 'string' || storage.rootDir === '')
        throw new InvalidArgumentError('storage.rootDir is required in local mode');
      segments = new LocalSegmentStore(storage.rootDir, {
        ...(storage.directIo === undefined ? {} : { directIo: storage.directIo }),
      });
    } else if (storage.mode === 'object') {
      segments = new ObjectSegmentStore(instrumentObjectStore(storage.objectStore), {
        ...(storage.keyPrefix === undefined ? {} : { keyPrefix: storage.keyPrefix }),
        ...(storage.maxConcurrentUploads === undefined
          ? {}
          : { maxConcurrentUploads: storage.maxConcurrentUploads }),
      });
    } else {
      throw new InvalidArgumentError(
        `unknown storage mode ${JSON.stringify((storage as { mode: unknown }).mode)}`,
      );
    }
    const maintenance = options.maintenance;
    const intervalMs =
      maintenance === undefined ? undefined : maintenanceIntervalMs(maintenance.intervalMs);
    const wp = new Woodpecker(instrumentMetadataStore(options.metadata), segments, limits);
    if (intervalMs !== undefined) wp.startMaintenance(intervalMs, maintenance?.onError);
    return wp;
  }

  /**
   * Writer-independent upkeep of every log: seals the active segment of a log whose writer is
   * gone (its process died or was cut off from the metadata store for longer than
   * `writerSessionTtlMs`) once the segment has been idle for `maxSegmentAgeMs`. It fences the
   * segment exactly as a new writer's recovery does, so every acknowledged entry stays readable
   * and a writer that was in fact still running fails its next append with WAL_FENCED. Logs
   * with a live writer are left to that writer (it rolls by age itself). With `retentionMs`,
   * also truncates every log's completed segments older than that (keeping the newest
   * completed one). Safe to run from any number of clients at once.
   */
  async maintain(options: { signal?: AbortSignal } = {}): Promise<MaintenanceResult> {
    this.throwIfClosed();
    return maintainLogs(
      {
        metadata: this.metadata,
        segments: this.segments,
        limits: this.limits,
        onSealed: (name) => this.runtimes.get(name)?.notify(),
        truncate: async (name, position, signal) => {
          const log = await this.openLog(name, signal === undefined ? {} : { signal });
          await log.truncate(position, signal === undefined ? {} : { signal });
        },
      },
      options,
    );
  }

  private startMaintenance(intervalMs: number, onError?: (error: Error) => void): void {
    const signal = this.stopMaintenance.signal;
    const report = (err: Error): void => {
      try {
        onError?.(err);
      } catch {
        // A reporting hook must not stop maintenance.
      }
    };
    this.maintenanceLoop = (async () => {
      while (!signal.aborted) {
        try {
          await delay(intervalMs, undefined, { signal });
          const result = await this.maintain({ signal });
          for (const f of result.failures) report(f.error);
        } catch (err) {
          if (signal.aborted) return;
          report(err instanceof Error ? err : new Error(String(err)));
        }
      }
    })();
  }

  /** Whether storage alone fences stale writers (local mode, or object stores with conditional writes). */
  get hasStorageFencing(): boolean {
    return this.segments.storageFencing;
  }

  /** Creates a log. Throws LogExistsError when the name is taken, InvalidNameError for a bad name. */
  async createLog(name: string, options: { signal?: AbortSignal } = {}): Promise<LogHandle> {
    this.throwIfClosed();
    validateLogName(name);
    const { signal } = options;
    const id = await allocateLogId(this.metadata, signal);
    const meta: LogMeta = {
      id,
      name,
      createdAtMs: Date.now(),
      truncatedBefore: { segmentId: 0, entryId: 0 },
    };
    const result = await this.metadata.txn(
      [
        { key: keys.log(name), modRevision: 0 },
        // A writer key left by a deleted log of the same name would confuse epochs.
        { key: keys.writer(name), modRevision: 0 },
      ],
      [{ type: 'put', key: keys.log(name), value: encodeJson(meta) }],
      { signal },
    );
    if (!result.succeeded) {
      if ((await this.metadata.get(keys.log(name), { signal })) !== undefined)
        throw new LogExistsError(`log ${name} already exists`);
      throw new ConflictError(
        `log ${name}: a deletion of an earlier log of this name is still in progress`,
      );
    }
    return this.handle(meta);
  }

  /** Opens an existing log. Throws LogNotFoundError. */
  async openLog(name: string, options: { signal?: AbortSignal } = {}): Promise<LogHandle> {
    this.throwIfClosed();
    validateLogName(name);
    const kv = await this.metadata.get(keys.log(name), options);
    if (kv === undefined) throw new LogNotFoundError(`log ${name} does not exist`);
    return this.handle(decodeJson<LogMeta>(kv));
  }

  /** Names of all logs, ascending. */
  async listLogs(options: { signal?: AbortSignal } = {}): Promise<string[]> {
    this.throwIfClosed();
    const { kvs } = await this.metadata.range(keys.logPrefix, options);
    return kvs.map((kv) => kv.key.slice(keys.logPrefix.length));
  }

  /**
   * Deletes a log: metadata first (an open writer then fails with FencedError at its next
   * metadata write, readers with LogNotFoundError), then its data. Throws LogNotFoundError.
   */
  async deleteLog(name: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    this.throwIfClosed();
    validateLogName(name);
    const { signal } = options;
    const kv = await this.metadata.get(keys.log(name), { signal });
    if (kv === undefined) throw new LogNotFoundError(`log ${name} does not exist`);
    const meta = decodeJson<LogMeta>(kv);
    const result = await this.metadata.txn(
      [{ key: kv.key, modRevision: kv.modRevision }],
      [
        { type: 'delete', key: keys.log(name) },
        { type: 'delete', key: keys.writer(name) },
        { type: 'delete', key: keys.session(name) },
        { type: 'delete', key: keys.progress(name) },
        { type: 'deletePrefix', prefix: keys.segmentPrefix(name) },
      ],
      { signal },
    );
    if (!result.succeeded)
      throw new ConflictError(`log ${name} changed while being deleted; try again`);
    await this.segments.deleteLog(meta.id, { signal });
    this.runtimes.get(name)?.notify();
    this.runtimes.delete(name);
  }

  /** Closes every writer and reader opened through this client. The injected stores stay open. */
  async close(): Promise<void> {
    if (this.isClosed) return;
    this.isClosed = true;
    this.stopMaintenance.abort(new ClosedError('the Woodpecker client is closed'));
    await this.maintenanceLoop;
    await Promise.allSettled([...this.open].map((r) => r.close()));
    // After the writers: revoking the lease deletes their session keys.
    await this.sessions.close();
    await this.segments.close();
  }

  private throwIfClosed(): void {
    if (this.isClosed) throw new ClosedError('the Woodpecker client is closed');
  }

  private handle(meta: LogMeta): LogHandle {
    let runtime = this.runtimes.get(meta.name);
    if (runtime === undefined) {
      runtime = new LogRuntime(
        this.limits.tailCacheBytes,
        (onChange) => new TailWatch(this.metadata, keys.progress(meta.name), onChange),
      );
      this.runtimes.set(meta.name, runtime);
    }
    return new LogHandle({
      meta,
      metadata: this.metadata,
      segments: this.segments,
      runtime,
      limits: this.limits,
      sessions: this.sessions,
      track: (resource) => {
        this.open.add(resource);
        return () => this.open.delete(resource);
      },
    });
  }
}
