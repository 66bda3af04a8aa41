import { setTimeout as delay } from 'node:timers/promises';
import type { MetadataStore, WatchEvent } from '../storage/metadata-store.js';

const RETRY_FIRST_DELAY_MS = 50;
const RETRY_MAX_DELAY_MS = 5_000;

/**
 * Push wake-ups for readers of one log whose writer is in another process: one metadata watch
 * on the log's progress key (see FORMAT.md, "progress"), shared by every reader of the log in
 * this client and kept only while at least one is open. Each change calls `onChange`, which
 * wakes waiting readers; they then read metadata and storage once. An idle log costs nothing
 * but the open watch stream.
 *
 * A reader must retain the watch from a revision no later than its first metadata read, so a
 * change made after that read is always delivered. When the watch fails it wakes the readers
 * (they re-check) and resumes from the last revision it saw, so nothing is missed.
 */
export class TailWatch {
  // Invariant: abort is defined iff refs > 0 (a watch loop runs exactly while retained).
  private refs = 0;
  private abort: AbortController | undefined;
  private lastRevision = 0;

  constructor(
    private readonly metadata: MetadataStore,
    private readonly key: string,
    private readonly onChange: () => void,
  ) {}

  /** Keeps the watch running (starting it after `fromRevision` if it is not); returns its release. */
  retain(fromRevision: number): () => void {
    this.refs += 1;
    if (this.abort === undefined) {
      const abort = new AbortController();
      this.abort = abort;
      this.lastRevision = fromRevision;
      void this.run(abort.signal);
    }
    let isReleased = false;
    return () => {
      if (isReleased) return;
      isReleased = true;
      this.refs -= 1;
      if (this.refs === 0) {
        this.abort?.abort(new Error('no reader left'));
        this.abort = undefined;
      }
    };
  }

  private async run(signal: AbortSignal): Promise<void> {
    let wait = RETRY_FIRST_DELAY_MS;
    while (!signal.aborted) {
      try {
        const stream = this.metadata.watch(this.key, { signal, fromRevision: this.lastRevision });
        for await (const batch of stream) {
          if (this.apply(batch)) this.onChange();
          wait = RETRY_FIRST_DELAY_MS;
        }
        // Ended without our abort: the store closed. Readers find out at their next read.
        if (!signal.aborted) this.onChange();
        return;
      } catch {
        if (signal.aborted) return;
        this.onChange();
        await delay(wait, undefined, { signal }).catch(() => undefined);
        wait = Math.min(wait * 2, RETRY_MAX_DELAY_MS);
      }
    }
  }

  /** Tracks the revision; true when the batch touched our key (a prefix watch sees longer names too). */
  private apply(batch: readonly WatchEvent[]): boolean {
    let changed = false;
    for (const event of batch) {
      if (event.type === 'reset') {
        this.lastRevision = event.revision;
        changed = true;
      } else if (event.type === 'put') {
        this.lastRevision = Math.max(this.lastRevision, event.kv.modRevision);
        changed ||= event.kv.key === this.key;
      } else {
        this.lastRevision = Math.max(this.lastRevision, event.modRevision);
        changed ||= event.key === this.key;
      }
    }
    return changed;
  }
}
