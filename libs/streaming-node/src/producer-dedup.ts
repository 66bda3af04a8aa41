import { assert } from '@woodstream/common';
import type { LogPosition } from '@woodstream/woodpecker';

/** What a stored message was acknowledged with (a ChannelWal AppendResult). */
export interface StoredResult {
  id: LogPosition;
  timeTick: bigint;
  lastConfirmedId: LogPosition;
}

/**
 * What tells a message's position while it is being written: the writer's append of the
 * message alone (a position), of its frame (positions; the message's at its index), or, for a
 * message still waiting to be written, the append itself (index WHOLE_RESULT).
 */
export type PendingAppend = Promise<LogPosition | LogPosition[] | StoredResult>;

/** The frame index of a pending append that resolves to the message's whole result. */
export const WHOLE_RESULT = -1;

/**
 * The producer stamp stored with a message: `<producer id in hex>:<sequence>`, or, on the first
 * message of a frame whose `count` messages carry consecutive sequences (and are stored
 * contiguously, as a frame is), `<producer id>:<first sequence>+<count>` and nothing on the
 * others: one stamp per frame instead of one per message. Kept in the log so that a new owner
 * can rebuild what it must recognise from the log itself.
 */
export function producerStamp(producer: string, sequence: number, count = 1): string {
  return count === 1 ? `${producer}:${sequence}` : `${producer}:${sequence}+${count}`;
}

/** The producer key, first sequence and message count of a stamp, or undefined for anything else. */
export function parseProducerStamp(
  stamp: string | undefined,
): { producer: string; sequence: number; count: number } | undefined {
  if (stamp === undefined) return undefined;
  const at = stamp.lastIndexOf(':');
  if (at <= 0) return undefined;
  const rest = stamp.slice(at + 1);
  const plus = rest.indexOf('+');
  const sequence = Number(plus < 0 ? rest : rest.slice(0, plus));
  const count = plus < 0 ? 1 : Number(rest.slice(plus + 1));
  if (!Number.isSafeInteger(sequence) || sequence <= 0) return undefined;
  if (!Number.isSafeInteger(count) || count < 1 || !Number.isSafeInteger(sequence + count))
    return undefined;
  return { producer: stamp.slice(0, at), sequence, count };
}

/** The length of the run of consecutive sequences (> 0) `messages` form, or 0 when they do not. */
export function consecutiveRun(messages: readonly { sequence: number }[]): number {
  const first = messages[0]?.sequence ?? 0;
  if (first <= 0) return 0;
  for (let i = 1; i < messages.length; i++)
    if ((messages[i] as { sequence: number }).sequence !== first + i) return 0;
  return messages.length;
}

/** One producer's part of the memory. */
interface ProducerState {
  readonly key: string;
  /** Its number in the index (unique among the producers ever seen here). */
  readonly id: number;
  /** Its messages in the ring. */
  live: number;
  /**
   * The largest sequence ever remembered. A producer sends new messages with increasing
   * sequences, so a message above it is new without a lookup: the hot path.
   */
  maxSequence: number;
}

const EMPTY = 0;
const PENDING = 1;
const STORED = 2;

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
 *
 * Cheap on the produce path: a ring of typed arrays holds the messages (no object per message
 * that lives as long as the window, which the garbage collector would have to promote and
 * trace); a message with a sequence above its producer's largest is known new without a lookup.
 */
export class ProducerDedup {
  private readonly producers = new Map<string, ProducerState>();
  // The ring, in the order messages were remembered. Invariant: a slot whose state is not
  // EMPTY is in the index under (its producer's id, its sequence), and nothing else is.
  private readonly state: Uint8Array;
  private readonly sequence: Float64Array;
  private readonly segmentId: Float64Array;
  private readonly entryId: Float64Array;
  private readonly timeTick: BigUint64Array;
  private readonly frameIndex: Int32Array;
  private readonly owner: (ProducerState | undefined)[];
  private readonly pending: (PendingAppend | undefined)[];
  private next = 0;
  private count = 0;
  private live = 0;
  private nextProducerId = 1;
  // (producer id, sequence) -> ring slot: open addressing with linear probing over typed arrays,
  // at most half full (no rehash, no allocation per message). indexProducer 0 marks a free cell.
  private readonly indexProducer: Float64Array;
  private readonly indexSequence: Float64Array;
  private readonly indexSlot: Int32Array;
  private readonly indexMask: number;

  constructor(readonly capacity: number) {
    assert(Number.isInteger(capacity) && capacity >= 0, 'dedup capacity is a count');
    this.state = new Uint8Array(capacity);
    this.sequence = new Float64Array(capacity);
    this.segmentId = new Float64Array(capacity);
    this.entryId = new Float64Array(capacity);
    this.timeTick = new BigUint64Array(capacity);
    this.frameIndex = new Int32Array(capacity);
    this.owner = new Array<ProducerState | undefined>(capacity).fill(undefined);
    this.pending = new Array<PendingAppend | undefined>(capacity).fill(undefined);
    let cells = 16;
    while (cells < 2 * capacity) cells *= 2;
    this.indexProducer = new Float64Array(capacity === 0 ? 0 : cells);
    this.indexSequence = new Float64Array(capacity === 0 ? 0 : cells);
    this.indexSlot = new Int32Array(capacity === 0 ? 0 : cells);
    this.indexMask = cells - 1;
  }

  /** Messages remembered now. */
  get size(): number {
    return this.live;
  }

  /** Whether (producer, sequence) is remembered (stored or being stored); creates nothing. */
  has(producer: string, sequence: number): boolean {
    return this.slotOf(producer, sequence) !== undefined;
  }

  /**
   * The result of (producer, sequence) if remembered: as stored, or once its append in flight
   * completes (rejecting as that append does: the caller must handle the promise).
   */
  lookup(producer: string, sequence: number): StoredResult | Promise<StoredResult> | undefined {
    const p = this.producers.get(producer);
    if (p === undefined || sequence > p.maxSequence) return undefined;
    const cell = this.find(p.id, sequence);
    if (cell < 0) return undefined;
    const at = this.indexSlot[cell] as number;
    const timeTick = this.timeTick[at] as bigint;
    if (this.state[at] === STORED) {
      const id = { segmentId: this.segmentId[at] as number, entryId: this.entryId[at] as number };
      return { id, timeTick, lastConfirmedId: id };
    }
    const pending = this.pending[at] as PendingAppend;
    const index = this.frameIndex[at] as number;
    if (index === WHOLE_RESULT) return pending as Promise<StoredResult>;
    return pending.then((ids) => {
      const id = (Array.isArray(ids) ? ids[index] : ids) as LogPosition;
      return { id, timeTick, lastConfirmedId: id };
    });
  }

  /**
   * Remembers (producer, sequence) as being appended by `pending` (the message at `index` of
   * its frame, or WHOLE_RESULT). Returns its ring slot, to record the outcome with
   * {@link stored} or {@link forget} — the slot it already has when it is remembered (a message
   * queued behind a vchannel registration is remembered first as a whole, then written) — or
   * -1 when the memory is off. New messages take consecutive slots (modulo the capacity).
   */
  begin(
    producer: string,
    sequence: number,
    timeTick: bigint,
    pending: PendingAppend,
    index: number,
  ): number {
    if (this.capacity === 0) return -1;
    const existing = this.slotOf(producer, sequence);
    if (existing !== undefined) return existing;
    const at = this.take(producer, sequence, timeTick);
    this.state[at] = PENDING;
    this.pending[at] = pending;
    this.frameIndex[at] = index;
    return at;
  }

  /**
   * {@link begin} for the sequenced messages (sequence > 0) of one frame, in order; returns the
   * first one's slot (the others follow it), or -1 when none was remembered.
   */
  beginFrame(
    producer: string,
    messages: readonly { sequence: number }[],
    ticks: readonly bigint[],
    pending: PendingAppend,
  ): number {
    let first = -1;
    for (let i = 0; i < messages.length; i++) {
      const sequence = (messages[i] as { sequence: number }).sequence;
      if (sequence <= 0) continue;
      const at = this.begin(producer, sequence, ticks[i] as bigint, pending, i);
      if (first < 0) first = at;
    }
    return first;
  }

  /** {@link stored} for a frame begun at `first`, with the positions its append gave. */
  storedFrame(
    first: number,
    producer: string,
    messages: readonly { sequence: number }[],
    ids: readonly LogPosition[],
    ticks: readonly bigint[],
  ): void {
    for (let i = 0, k = 0; i < messages.length; i++) {
      const sequence = (messages[i] as { sequence: number }).sequence;
      if (sequence <= 0) continue;
      // Checked by `stored`: a slot reused meanwhile (a frame larger than the ring, a
      // duplicate within the frame) is left alone; such a message stays answerable from its
      // pending append.
      const slot = (first + k++) % this.capacity;
      this.stored(slot, producer, sequence, ids[i] as LogPosition, ticks[i] as bigint);
    }
  }

  /** {@link forget} for a frame begun at `first`. */
  forgetFrame(first: number, producer: string, messages: readonly { sequence: number }[]): void {
    for (let i = 0, k = 0; i < messages.length; i++) {
      const sequence = (messages[i] as { sequence: number }).sequence;
      if (sequence <= 0) continue;
      this.forget((first + k++) % this.capacity, producer, sequence);
    }
  }

  private slotOf(producer: string, sequence: number): number | undefined {
    const p = this.producers.get(producer);
    if (p === undefined || sequence > p.maxSequence) return undefined;
    const cell = this.find(p.id, sequence);
    return cell < 0 ? undefined : this.indexSlot[cell];
  }

  private cellOf(producerId: number, sequence: number): number {
    // Mix both halves of the sequence (it may pass 2^32) with the producer.
    let h = Math.imul((sequence >>> 0) ^ Math.imul(producerId, 0x9e3779b1), 0x85ebca6b);
    h ^= Math.floor(sequence / 0x1_0000_0000);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    return (h ^ (h >>> 16)) & this.indexMask;
  }

  /** The index cell of (producer, sequence), or -1. */
  private find(producerId: number, sequence: number): number {
    for (let cell = this.cellOf(producerId, sequence); ; cell = (cell + 1) & this.indexMask) {
      const owner = this.indexProducer[cell] as number;
      if (owner === 0) return -1;
      if (owner === producerId && this.indexSequence[cell] === sequence) return cell;
    }
  }

  private insert(producerId: number, sequence: number, slot: number): void {
    let cell = this.cellOf(producerId, sequence);
    while (this.indexProducer[cell] !== 0) cell = (cell + 1) & this.indexMask;
    this.indexProducer[cell] = producerId;
    this.indexSequence[cell] = sequence;
    this.indexSlot[cell] = slot;
  }

  /** Frees a cell, moving later cells of its probe chain back so that every lookup still finds them. */
  private remove(cell: number): void {
    const mask = this.indexMask;
    let hole = cell;
    for (let at = (hole + 1) & mask; this.indexProducer[at] !== 0; at = (at + 1) & mask) {
      const home = this.cellOf(this.indexProducer[at] as number, this.indexSequence[at] as number);
      // Stays where it is when its home lies cyclically in (hole, at].
      const stays = hole <= at ? hole < home && home <= at : hole < home || home <= at;
      if (stays) continue;
      this.indexProducer[hole] = this.indexProducer[at] as number;
      this.indexSequence[hole] = this.indexSequence[at] as number;
      this.indexSlot[hole] = this.indexSlot[at] as number;
      hole = at;
    }
    this.indexProducer[hole] = 0;
  }

  /**
   * Remembers a stored message (from the log), unless it is remembered already: the first copy
   * stays (the log may hold older duplicates).
   */
  remember(producer: string, sequence: number, result: StoredResult): void {
    if (this.capacity === 0 || this.slotOf(producer, sequence) !== undefined) return;
    const at = this.take(producer, sequence, result.timeTick);
    this.state[at] = STORED;
    this.segmentId[at] = result.id.segmentId;
    this.entryId[at] = result.id.entryId;
  }

  /** Records where the message in `slot` was stored, with its tick, if the slot still holds it. */
  stored(
    slot: number,
    producer: string,
    sequence: number,
    id: LogPosition,
    timeTick: bigint,
  ): void {
    if (!this.holds(slot, producer, sequence)) return;
    this.state[slot] = STORED;
    this.timeTick[slot] = timeTick;
    this.pending[slot] = undefined;
    this.segmentId[slot] = id.segmentId;
    this.entryId[slot] = id.entryId;
  }

  /** Forgets the message in `slot` (its append failed: nothing was stored), if the slot still holds it. */
  forget(slot: number, producer: string, sequence: number): void {
    if (!this.holds(slot, producer, sequence)) return;
    this.clear(slot);
  }

  private holds(slot: number, producer: string, sequence: number): boolean {
    return (
      slot >= 0 &&
      this.state[slot] !== EMPTY &&
      this.sequence[slot] === sequence &&
      this.owner[slot]?.key === producer
    );
  }

  /** A slot for a message not remembered yet: the next free one, or the oldest one's. */
  private take(producer: string, sequence: number, timeTick: bigint): number {
    let at: number;
    if (this.count < this.capacity) {
      at = (this.next + this.count) % this.capacity;
      this.count++;
    } else {
      at = this.next;
      this.next = (this.next + 1) % this.capacity;
      if (this.state[at] !== EMPTY) this.clear(at);
    }
    // After the eviction: it may have dropped this very producer.
    let p = this.producers.get(producer);
    if (p === undefined) {
      p = { key: producer, id: this.nextProducerId++, live: 0, maxSequence: 0 };
      this.producers.set(producer, p);
    }
    this.owner[at] = p;
    this.sequence[at] = sequence;
    this.timeTick[at] = timeTick;
    this.insert(p.id, sequence, at);
    p.live++;
    this.live++;
    if (sequence > p.maxSequence) p.maxSequence = sequence;
    return at;
  }

  private clear(at: number): void {
    const p = this.owner[at] as ProducerState;
    const cell = this.find(p.id, this.sequence[at] as number);
    assert(cell >= 0, 'a remembered message is in the index');
    this.remove(cell);
    p.live--;
    this.live--;
    // A producer's last remembered message gone: so is the producer (memory stays bounded
    // however many producers come and go).
    if (p.live === 0 && this.producers.get(p.key) === p) this.producers.delete(p.key);
    this.state[at] = EMPTY;
    this.owner[at] = undefined;
    this.pending[at] = undefined;
  }
}
