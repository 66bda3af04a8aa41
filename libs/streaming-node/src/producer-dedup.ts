import { assert } from '@woodstream/common';
import type { LogPosition } from '@woodstream/woodpecker';

/** What a stored message was acknowledged with (a ChannelWal AppendResult). */
export interface StoredResult {
  id: LogPosition;
  timeTick: bigint;
  lastConfirmedId: LogPosition;
}

/** `DedupSlot.index` of a pending append that resolves to the message's whole result. */
export const WHOLE_RESULT = -1;

/**
 * One remembered message: its result once stored. Before that, what tells it: the writer's
 * append of the message alone (a position) or of its frame (positions; the message's is at
 * `index`), stamped with `timeTick`; or, for a message still waiting to be written, the append
 * itself (index WHOLE_RESULT).
 */
export interface DedupSlot {
  stored: StoredResult | undefined;
  pending: Promise<LogPosition | LogPosition[] | StoredResult> | undefined;
  index: number;
  timeTick: bigint;
}

/**
 * The producer stamp stored with a message: `<producer id in hex>:<sequence>`. Kept in the log so
 * that a new owner can rebuild what it must recognise from the log itself.
 */
export function producerStamp(producer: string, sequence: number): string {
  return `${producer}:${sequence}`;
}

/** The producer key and sequence of a stamp, or undefined for anything else. */
export function parseProducerStamp(
  stamp: string | undefined,
): { producer: string; sequence: number } | undefined {
  if (stamp === undefined) return undefined;
  const at = stamp.lastIndexOf(':');
  if (at <= 0) return undefined;
  const sequence = Number(stamp.slice(at + 1));
  if (!Number.isSafeInteger(sequence) || sequence <= 0) return undefined;
  return { producer: stamp.slice(0, at), sequence };
}

/**
 * The messages of one pchannel that producers may still send again, by (producer, sequence):
 * a retry of a message that is stored (or being stored) gets the first result instead of a
 * second copy in the log.
 *
 * Bounded: it remembers the last `capacity` messages of the channel, over all producers, and
 * forgets the oldest first. A producer re-sends only messages it has no result for, which are
 * among its last `maxInflightAppends`; as long as the channel's recent messages of all producers
 * fit, every retry is recognised. One that is not (evicted, or capacity 0) is appended again:
 * the guarantee degrades to at-least-once, never to loss.
 */
export class ProducerDedup {
  private readonly producers = new Map<string, Map<number, DedupSlot>>();
  // The remembered messages in the order they were first remembered: a ring of `capacity`.
  // Invariant: every slot in `producers` is in the ring exactly once; the ring may also hold
  // slots already forgotten (their append failed), which eviction skips.
  private readonly ringProducer: (string | undefined)[];
  private readonly ringSequence: number[];
  private readonly ringSlot: (DedupSlot | undefined)[];
  private next = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    assert(Number.isInteger(capacity) && capacity >= 0, 'dedup capacity is a count');
    this.ringProducer = [];
    this.ringSequence = [];
    this.ringSlot = [];
  }

  /** Messages remembered now. */
  get size(): number {
    return this.count;
  }

  /**
   * The result of (producer, sequence) if remembered: as stored, or once its append in flight
   * completes (rejecting as that append does).
   */
  lookup(producer: string, sequence: number): StoredResult | Promise<StoredResult> | undefined {
    const slot = this.producers.get(producer)?.get(sequence);
    if (slot === undefined) return undefined;
    if (slot.stored !== undefined) return slot.stored;
    const { pending, index, timeTick } = slot;
    assert(pending !== undefined, 'a remembered message is stored or being stored');
    if (index === WHOLE_RESULT) return pending as Promise<StoredResult>;
    return pending.then((ids) => {
      const id = (Array.isArray(ids) ? ids[index] : ids) as LogPosition;
      return { id, timeTick, lastConfirmedId: id };
    });
  }

  /**
   * Remembers (producer, sequence), stored with `stored` or being appended by `pending`,
   * unless it is remembered already (then the first copy stays: the log may hold older
   * duplicates). Returns the slot to record the result in (`slot.stored = ...`, dropping
   * `pending`); a message whose append fails must be forgotten (`forget`), so that a retry
   * appends it again.
   */
  remember(
    producer: string,
    sequence: number,
    timeTick: bigint,
    stored: StoredResult | undefined,
    pending?: Promise<LogPosition | LogPosition[] | StoredResult>,
    index = 0,
  ): DedupSlot | undefined {
    if (this.capacity === 0) return undefined;
    let seqs = this.producers.get(producer);
    if (seqs === undefined) {
      seqs = new Map();
      this.producers.set(producer, seqs);
    }
    const existing = seqs.get(sequence);
    if (existing !== undefined) return existing;
    if (this.count === this.capacity) this.evictOldest();
    const slot: DedupSlot = { stored, pending, index, timeTick };
    seqs.set(sequence, slot);
    // While the ring fills, `at` is the arrays' length: they grow without holes.
    const at = (this.next + this.count) % this.capacity;
    this.ringProducer[at] = producer;
    this.ringSequence[at] = sequence;
    this.ringSlot[at] = slot;
    this.count++;
    return slot;
  }

  /** Forgets a slot whose append failed (nothing was stored), if it is still the remembered one. */
  forget(producer: string, sequence: number, slot: DedupSlot): void {
    const seqs = this.producers.get(producer);
    if (seqs?.get(sequence) !== slot) return;
    seqs.delete(sequence);
    if (seqs.size === 0) this.producers.delete(producer);
  }

  private evictOldest(): void {
    const at = this.next;
    const producer = this.ringProducer[at] as string;
    const slot = this.ringSlot[at];
    this.ringProducer[at] = undefined;
    this.ringSlot[at] = undefined;
    this.next = (this.next + 1) % this.capacity;
    this.count--;
    if (slot !== undefined) this.forget(producer, this.ringSequence[at] as number, slot);
  }
}
