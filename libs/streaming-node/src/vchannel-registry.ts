import { assert } from '@woodstream/common';
import { StreamingError, streamingKeys, toStreamingError } from '@woodstream/streaming';
import type { MetadataStore } from '@woodstream/woodpecker';

/** Default of {@link VChannelRegistryOptions.maxVChannelsPerPChannel}. */
export const DEFAULT_MAX_VCHANNELS_PER_PCHANNEL = 1024;
/** Upper bound of {@link VChannelRegistryOptions.maxVChannelsPerPChannel}. */
export const MAX_VCHANNELS_PER_PCHANNEL = 65_536;
/**
 * How long one registration may take. A first produce to a vchannel waits for it, so it bounds
 * that produce's latency; past it the produce fails with RESOURCE_EXHAUSTED and may be retried.
 */
const REGISTER_TIMEOUT_MS = 5_000;

export interface VChannelRegistryOptions {
  /**
   * Vchannels a pchannel may carry. A produce to one more vchannel fails with INVALID_ARGUMENT
   * (not retryable); vchannels already registered keep working even above a lowered limit.
   * @default 1024 (1–65536)
   */
  maxVChannelsPerPChannel: number;
}

/**
 * The vchannels of one pchannel, as persisted under `coord/vchannel/<pchannel>/` (the coordinator
 * counts them for balancing and the admin API).
 *
 * A vchannel is registered the first time it is produced to on this pchannel, with a
 * create-if-absent write, and the message is appended only after the write succeeded: every
 * vchannel in the log is in the registry, so the persisted count is never below reality, also
 * after a crash. Concurrent first produces share one write; after it, {@link ensure} is a set
 * lookup, so the produce hot path makes no metadata call.
 *
 * The count can exceed reality: a registration whose message then fails (fenced writer, a
 * deposed owner) stays. Vchannels are never deleted here.
 */
export class VChannelRegistry {
  /** Invariant: each name here has a registry key in the store (loaded or written by us). */
  private readonly known: Set<string>;
  /** Invariant: disjoint from `known`; one write per vchannel at most; size ≤ max − known.size. */
  private readonly pending = new Map<string, Promise<void>>();
  /** Aborted by {@link close}: in-flight registrations end with the close reason. */
  private readonly lifetime = new AbortController();

  private constructor(
    private readonly store: MetadataStore,
    readonly pchannel: string,
    private readonly options: VChannelRegistryOptions,
    known: Iterable<string>,
  ) {
    this.known = new Set(known);
  }

  /** Reads the registered vchannels of `pchannel` (done when its WAL opens, also after a move). */
  static async load(
    store: MetadataStore,
    pchannel: string,
    options: VChannelRegistryOptions,
    signal?: AbortSignal,
  ): Promise<VChannelRegistry> {
    const max = options.maxVChannelsPerPChannel;
    assert(
      Number.isInteger(max) && max >= 1 && max <= MAX_VCHANNELS_PER_PCHANNEL,
      `maxVChannelsPerPChannel ${max} out of range`,
    );
    const prefix = streamingKeys.vchannelsOf(pchannel);
    const { kvs } = await store.range(prefix, signal === undefined ? {} : { signal });
    return new VChannelRegistry(
      store,
      pchannel,
      options,
      kvs.map((kv) => kv.key.slice(prefix.length)),
    );
  }

  /** Registered vchannels known here. */
  get size(): number {
    return this.known.size;
  }

  has(vchannel: string): boolean {
    return this.known.has(vchannel);
  }

  /**
   * Makes sure `vchannel` is registered before a message of it is appended. Returns undefined
   * when it already is (the hot path: no allocation, no I/O); otherwise the promise of the one
   * registration in flight for it, shared by every caller until it settles. That promise
   * rejects with RESOURCE_EXHAUSTED (retryable) when the store cannot be written in time, and
   * with the close reason when the registry is closed.
   *
   * Throws INVALID_ARGUMENT (not retryable) when the pchannel already has
   * `maxVChannelsPerPChannel` vchannels.
   */
  ensure(vchannel: string): Promise<void> | undefined {
    if (this.known.has(vchannel)) return undefined;
    const inflight = this.pending.get(vchannel);
    if (inflight !== undefined) return inflight;
    const max = this.options.maxVChannelsPerPChannel;
    if (this.known.size + this.pending.size >= max) {
      throw new StreamingError(
        'INVALID_ARGUMENT',
        `pchannel ${this.pchannel} already carries ${max} vchannels (maxVChannelsPerPChannel); vchannel ${JSON.stringify(vchannel)} is refused`,
      );
    }
    const registration = this.register(vchannel).then(
      () => {
        this.pending.delete(vchannel);
        this.known.add(vchannel);
      },
      (err: unknown) => {
        // Forget the failure: the next message of the vchannel tries again.
        this.pending.delete(vchannel);
        throw err;
      },
    );
    this.pending.set(vchannel, registration);
    return registration;
  }

  /** Ends in-flight registrations with `reason`; later ones fail at once. */
  close(reason: Error): void {
    this.lifetime.abort(reason);
  }

  private async register(vchannel: string): Promise<void> {
    const key = streamingKeys.vchannel(this.pchannel, vchannel);
    const signal = AbortSignal.any([
      this.lifetime.signal,
      AbortSignal.timeout(REGISTER_TIMEOUT_MS),
    ]);
    try {
      // Create-if-absent: a failed compare means an earlier owner registered it; either way it is.
      await this.store.txn(
        [{ key, modRevision: 0 }],
        [
          {
            type: 'put',
            key,
            value: new TextEncoder().encode(JSON.stringify({ createdAtMs: Date.now() })),
          },
        ],
        { signal },
      );
    } catch (err) {
      if (this.lifetime.signal.aborted) throw this.lifetime.signal.reason;
      const se = toStreamingError(err);
      const isTransient =
        signal.aborted || (err as { retryable?: unknown }).retryable === true || se.retryable;
      if (isTransient) {
        throw new StreamingError(
          'RESOURCE_EXHAUSTED',
          `registering vchannel ${vchannel} of pchannel ${this.pchannel} failed: ${se.message}; retry`,
          { cause: err },
        );
      }
      throw se;
    }
  }
}
