import { StreamingError, toStreamingError } from '@woodstream/streaming';
import type { MetadataStore, Woodpecker } from '@woodstream/woodpecker';
import { ChannelWal, type ChannelWalOptions } from './channel-wal.js';

/** Where channel lifecycle events go (info: opened, closed, fenced; warn: an open failed). */
export interface ChannelEventLog {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}
const silentLog: ChannelEventLog = { info: () => {}, warn: () => {} };

/**
 * Where a channel is or should be: `(term, available)`. States are ordered by term, and at
 * equal terms "available" comes before "removed" (a Remove at term t supersedes the Assign at t).
 */
interface ChannelState {
  term: number;
  available: boolean;
}

function isAfter(a: ChannelState, b: ChannelState): boolean {
  return a.term > b.term || (a.term === b.term && !a.available && b.available);
}

interface Lifetime {
  // Invariant: !isAfter(current, expected) — the worker only moves current towards expected.
  expected: ChannelState;
  current: ChannelState;
  wal: ChannelWal | undefined;
  /** Error of the last failed open at `current.term`, reported to the Assign call waiting for it. */
  error: StreamingError | undefined;
  /** Serialises transitions: at most one open/close runs per channel. */
  worker: Promise<void>;
  /** Aborts the open in progress: a newer Assign/Remove superseded it, or the node stops. */
  opening: AbortController | undefined;
  waiters: Set<() => void>;
}

/**
 * The node's WALs, one per assigned pchannel, each driven by a small state machine: Assign and
 * Remove set the expected state (a stale term gets IGNORED_OPERATION), and one worker per
 * channel closes and opens WALs until the current state catches up. Transitions run to the end
 * even when the RPC that asked for them is cancelled, so out-of-order RPCs cannot wedge a channel.
 */
export class WalManager {
  private readonly channels = new Map<string, Lifetime>();
  private isStopping = false;

  constructor(
    private readonly wal: Woodpecker,
    /** Where the pchannels' vchannel registries live (the cluster's metadata store). */
    private readonly metadata: MetadataStore,
    private readonly options: ChannelWalOptions,
    private readonly onChange: () => void = () => {},
    private readonly log: ChannelEventLog = silentLog,
  ) {}

  /** Opens the channel at `term` and resolves once it accepts writes (or a later state superseded it). */
  async assign(name: string, term: number, signal?: AbortSignal): Promise<void> {
    const target = { term, available: true };
    const lifetime = this.request(name, target);
    await this.waitFor(lifetime, target, signal);
    if (
      lifetime.current.term === term &&
      !lifetime.current.available &&
      lifetime.error !== undefined
    )
      throw lifetime.error;
  }

  /** Closes the channel for `term` and resolves once it is closed. */
  async remove(name: string, term: number, signal?: AbortSignal): Promise<void> {
    const target = { term, available: false };
    const lifetime = this.request(name, target);
    await this.waitFor(lifetime, target, signal);
  }

  /**
   * The open WAL of `name`, checked against the caller's term: CHANNEL_NOT_EXIST when this node
   * does not hold it, UNMATCHED_CHANNEL_TERM when it holds another term, ON_SHUTDOWN when stopping.
   */
  get(name: string, term: number): ChannelWal {
    if (this.isStopping) throw new StreamingError('ON_SHUTDOWN', 'the node is shutting down');
    const lifetime = this.channels.get(name);
    const wal = lifetime?.wal;
    if (lifetime === undefined || wal === undefined || !lifetime.current.available) {
      throw new StreamingError('CHANNEL_NOT_EXIST', `pchannel ${name} is not open on this node`);
    }
    if (wal.term !== term) {
      throw new StreamingError(
        'UNMATCHED_CHANNEL_TERM',
        `pchannel ${name}: the node holds term ${wal.term}, the request has term ${term}`,
      );
    }
    return wal;
  }

  /** Every open WAL (for status reports). */
  openChannels(): ChannelWal[] {
    return [...this.channels.values()].flatMap((l) =>
      l.wal !== undefined && l.current.available ? [l.wal] : [],
    );
  }

  /**
   * Channels asked to be open that are not open yet at the asked term (opening, recovering, or
   * failing to open): a node with any is not ready.
   */
  pendingOpens(): string[] {
    return [...this.channels.entries()].flatMap(([name, l]) =>
      l.expected.available && !(l.current.available && l.current.term === l.expected.term)
        ? [name]
        : [],
    );
  }

  /** How many channels this node knows are in each WAL state (for metrics). */
  channelStates(): Record<'opening' | 'open' | 'closing' | 'closed' | 'failed', number> {
    const out = { opening: 0, open: 0, closing: 0, closed: 0, failed: 0 };
    for (const l of this.channels.values()) {
      if (isAfter(l.expected, l.current)) out[l.expected.available ? 'opening' : 'closing']++;
      else if (l.current.available && l.wal !== undefined) out.open++;
      else if (l.error !== undefined) out.failed++;
      else out.closed++;
    }
    return out;
  }

  /**
   * Closes every channel asked to be open (or whose open failed), at the term it was asked for,
   * and keeps serving: a later Assign opens channels again. The requests are made before this
   * returns its promise, so an Assign that arrives afterwards is ordered after them.
   */
  async closeAll(): Promise<number> {
    // Also those whose open failed: a Remove ends their term, so no late Assign reopens it.
    const removals = [...this.channels.entries()]
      .filter(([, l]) => l.expected.available || l.error !== undefined)
      .map(([name, l]) => this.remove(name, l.expected.term));
    await Promise.allSettled(removals);
    return removals.length;
  }

  /** Refuses new work and closes every WAL. */
  async stop(): Promise<void> {
    this.isStopping = true;
    for (const l of this.channels.values())
      l.opening?.abort(new StreamingError('ON_SHUTDOWN', 'the node is shutting down'));
    await Promise.allSettled(
      [...this.channels.entries()].map(async ([name, l]) => {
        await this.remove(name, Math.max(l.expected.term, l.current.term));
      }),
    );
  }

  private request(name: string, target: ChannelState): Lifetime {
    if (this.isStopping && target.available)
      throw new StreamingError('ON_SHUTDOWN', 'the node is shutting down');
    let lifetime = this.channels.get(name);
    if (lifetime === undefined) {
      lifetime = {
        expected: { term: -1, available: false },
        current: { term: -1, available: false },
        wal: undefined,
        error: undefined,
        worker: Promise.resolve(),
        opening: undefined,
        waiters: new Set(),
      };
      this.channels.set(name, lifetime);
    }
    const isRetryAfterFailedOpen =
      target.available &&
      lifetime.error !== undefined &&
      lifetime.expected.term === target.term &&
      !lifetime.expected.available;
    const isRemoveAfterFailedOpen =
      !target.available &&
      lifetime.error !== undefined &&
      lifetime.expected.term === target.term &&
      !lifetime.expected.available;
    if (isRemoveAfterFailedOpen) {
      // The coordinator is done with this term: a late Assign at it must not reopen it (and
      // fence whoever holds the channel now), so it is no longer a failed open to retry.
      lifetime.error = undefined;
      this.notify(lifetime);
      return lifetime;
    }
    if (isRetryAfterFailedOpen) {
      lifetime.error = undefined;
      // Step back so the worker tries this term again.
      lifetime.current = { term: target.term - 1, available: false };
    } else if (!isAfter(target, lifetime.expected)) {
      if (
        target.term === lifetime.expected.term &&
        target.available === lifetime.expected.available
      )
        return lifetime;
      throw new StreamingError(
        'IGNORED_OPERATION',
        `pchannel ${name}: ${target.available ? 'assign' : 'remove'} at term ${target.term} is older than the expected term ${lifetime.expected.term}`,
      );
    }
    lifetime.expected = target;
    // An open that hangs (storage or metadata not answering) must not hold up what supersedes it.
    lifetime.opening?.abort(
      new StreamingError(
        'IGNORED_OPERATION',
        `pchannel ${name}: superseded by term ${target.term}`,
      ),
    );
    const l = lifetime;
    lifetime.worker = lifetime.worker.then(() => this.drive(name, l));
    return lifetime;
  }

  /** Moves `current` to `expected`: close what is open, then open the expected term if wanted. */
  private async drive(name: string, l: Lifetime): Promise<void> {
    while (isAfter(l.expected, l.current)) {
      const expected = l.expected;
      if (l.wal !== undefined) {
        const old = l.wal;
        l.wal = undefined;
        l.current = { term: old.term, available: false };
        this.notify(l);
        await old.close();
        this.log.info('pchannel WAL closed', { pchannel: name, term: old.term });
      }
      if (!expected.available) {
        l.current = expected;
        l.error = undefined;
        this.notify(l);
        continue;
      }
      const opening = new AbortController();
      l.opening = opening;
      try {
        const wal = await ChannelWal.open(
          this.wal,
          this.metadata,
          name,
          expected.term,
          this.options,
          opening.signal,
        );
        if (isAfter(l.expected, expected)) {
          // Superseded while opening: do not expose it.
          await wal.close();
          l.current = { term: expected.term, available: false };
        } else {
          l.wal = wal;
          l.current = expected;
          l.error = undefined;
          this.log.info('pchannel WAL opened', {
            pchannel: name,
            term: expected.term,
            ...wal.recovery,
          });
          wal.onClose((reason) => {
            // Closed by drive (Remove, a newer term, stop): drive keeps the state itself.
            if (l.wal !== wal) return;
            // Closed by itself: fenced by a newer owner or its writer failed. The channel is no
            // longer open here (CollectStatus stops listing it, streams get CHANNEL_NOT_EXIST),
            // as after a failed open of this term; the coordinator re-places it with a new term.
            this.log.info('pchannel WAL closed by itself', {
              pchannel: name,
              term: expected.term,
              reason: reason.message,
            });
            l.wal = undefined;
            l.current = { term: expected.term, available: false };
            l.error = reason;
            if (l.expected.term === expected.term && l.expected.available) l.expected = l.current;
            this.notify(l);
          });
        }
      } catch (err) {
        l.error = toStreamingError(opening.signal.aborted ? opening.signal.reason : err);
        this.log.warn('pchannel WAL open failed', {
          pchannel: name,
          term: expected.term,
          error: l.error.message,
        });
        l.current = { term: expected.term, available: false };
        if (l.expected.term === expected.term && l.expected.available) {
          // Give up on this term until the coordinator asks again (it will, with a new term).
          l.expected = l.current;
        }
      } finally {
        l.opening = undefined;
      }
      this.notify(l);
    }
  }

  private notify(l: Lifetime): void {
    for (const wake of l.waiters) wake();
    this.onChange();
  }

  /** Resolves when `current` reached `target` or moved past it; rejects with the signal's reason. */
  private waitFor(l: Lifetime, target: ChannelState, signal?: AbortSignal): Promise<void> {
    const reached = (): boolean =>
      (l.current.term === target.term && l.current.available === target.available) ||
      isAfter(l.current, target) ||
      (l.current.term === target.term &&
        target.available &&
        !l.current.available &&
        l.error !== undefined);
    if (reached()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        l.waiters.delete(check);
        reject(signal?.reason as Error);
      };
      const check = (): void => {
        if (!reached()) return;
        l.waiters.delete(check);
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      l.waiters.add(check);
    });
  }
}
