import { assert } from '@woodstream/common';
import { ConflictError, CorruptDataError } from '../errors.js';
import type { KeyValue, MetadataStore } from '../storage/metadata-store.js';

// Metadata layout (keys relative to the store's root prefix):
//   wp/logidgen                   next log id (decimal)
//   wp/log/<name>                 LogMeta
//   wp/writer/<name>              WriterMeta — its modRevision is the writer's fencing token
//   wp/session/<name>             WriterSession — on the writer's client lease: the writer is alive
//   wp/progress/<name>            Progress — the writer's latest committed end; readers watch it
//   wp/segment/<name>/<segId:10>  SegmentMeta
// Log names cannot contain '/', so prefixes never overlap between logs.

export const keys = {
  logIdGen: 'wp/logidgen',
  logPrefix: 'wp/log/',
  log: (name: string): string => `wp/log/${name}`,
  writer: (name: string): string => `wp/writer/${name}`,
  session: (name: string): string => `wp/session/${name}`,
  progressPrefix: 'wp/progress/',
  progress: (name: string): string => `wp/progress/${name}`,
  segmentPrefix: (name: string): string => `wp/segment/${name}/`,
  segment: (name: string, segmentId: number): string =>
    `wp/segment/${name}/${String(segmentId).padStart(10, '0')}`,
};

export interface LogMeta {
  /** Numeric id, unique for the store's lifetime; names storage paths, so a re-created log never sees old data. */
  id: number;
  name: string;
  createdAtMs: number;
  /** Entries before this position are truncated. Invariant: never moves backwards. */
  truncatedBefore: { segmentId: number; entryId: number };
}

export interface WriterMeta {
  /** Invariant: strictly increases with every writer open (and every maintenance takeover). */
  epoch: number;
  openedAtMs: number;
  /** Set when maintenance, not a writer, took this epoch to seal segments of a dead writer. */
  maintenance?: true;
  /**
   * The highest owner term any writer open presented (see `openWriter`'s `ownerTerm`), kept by
   * every later open and by maintenance. Invariant: never decreases; an open presenting a lower
   * term is refused before it fences anyone.
   */
  ownerTerm?: number;
}

/**
 * Written with the writer key when a writer opens, attached to its client's lease, so it
 * vanishes when the writer's process dies (or loses etcd for longer than the lease).
 * Invariant: a session counts as live only when its epoch equals the writer key's epoch.
 */
export interface WriterSession {
  epoch: number;
  openedAtMs: number;
}

/**
 * A wake-up for readers in other processes, not a bound: readers still take the committed end
 * from segment metadata and storage. Written when a writer advances (rate-limited), creates or
 * seals a segment, and when recovery or maintenance completes one.
 */
export interface Progress {
  epoch: number;
  segmentId: number;
  /** Last entry id the writer had committed in `segmentId` when it wrote this (-1: none). */
  lastEntryId: number;
  /** When it was written (the writer's clock); maintenance reads it as the last activity. */
  atMs: number;
}

/** The operation that publishes a log's progress (rides on transactions that happen anyway). */
export function progressOp(
  name: string,
  progress: Omit<Progress, 'atMs'>,
): { type: 'put'; key: string; value: Uint8Array } {
  const value: Progress = { ...progress, atMs: Date.now() };
  return { type: 'put', key: keys.progress(name), value: encodeJson(value) };
}

export type SegmentState = 'active' | 'completed' | 'truncated';

export interface SegmentMeta {
  segmentId: number;
  state: SegmentState;
  /** Epoch of the writer that created the segment. */
  epoch: number;
  createdAtMs: number;
  /**
   * Last committed entry id, -1 when none. For `completed` segments this is final and readers
   * never read past it. For `active` segments it is only maintained on stores without
   * conditional writes, where it is the visibility bound (see FORMAT.md, "fencing").
   */
  lastEntryId: number;
  /** Encoded bytes of committed blocks (final once completed). */
  sizeBytes: number;
  /** Number of blocks (final once completed; changes with compaction). */
  blockCount: number;
  /** Storage generation of the blocks: 0 as written, a random id per compaction. Absent means 0. */
  generation?: number;
  completedAtMs?: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeJson(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

export function decodeJson<T>(kv: KeyValue): T {
  try {
    return JSON.parse(decoder.decode(kv.value)) as T;
  } catch (err) {
    throw new CorruptDataError(`metadata key ${kv.key} does not hold valid JSON`, { cause: err });
  }
}

export function segmentIdFromKey(key: string): number {
  const id = Number(key.slice(key.lastIndexOf('/') + 1));
  assert(Number.isSafeInteger(id), `segment key ${key} ends in an id`);
  return id;
}

/** Reads every segment of a log, ascending by id, with the revision of each key. */
export async function listSegments(
  store: MetadataStore,
  name: string,
  signal?: AbortSignal,
): Promise<{ meta: SegmentMeta; modRevision: number }[]> {
  const { kvs } = await store.range(keys.segmentPrefix(name), { signal });
  return kvs
    .map((kv) => ({ meta: decodeJson<SegmentMeta>(kv), modRevision: kv.modRevision }))
    .sort((a, b) => a.meta.segmentId - b.meta.segmentId);
}

/** Allocates a new log id with a CAS loop on the generator key (bounded attempts). */
export async function allocateLogId(store: MetadataStore, signal?: AbortSignal): Promise<number> {
  for (let attempt = 0; attempt < 64; attempt++) {
    const kv = await store.get(keys.logIdGen, { signal });
    const next = kv === undefined ? 1 : Number(new TextDecoder().decode(kv.value));
    const result = await store.txn(
      [{ key: keys.logIdGen, modRevision: kv?.modRevision ?? 0 }],
      [{ type: 'put', key: keys.logIdGen, value: encoder.encode(String(next + 1)) }],
      { signal },
    );
    if (result.succeeded) return next;
  }
  throw new ConflictError('could not allocate a log id: too much contention on the id generator');
}
