import { assert } from '@woodstream/common';

/** Bits of a time tick used by the logical counter. */
export const LOGICAL_BITS = 18n;

/** A hybrid timestamp: physical milliseconds << 18 | logical counter. */
export function makeTimeTick(physicalMs: number, logical = 0): bigint {
  return (BigInt(physicalMs) << LOGICAL_BITS) | BigInt(logical);
}

export function physicalMs(tick: bigint): number {
  return Number(tick >> LOGICAL_BITS);
}

/**
 * Allocates strictly increasing time ticks for one pchannel: the wall clock when it moved on,
 * else the previous tick + 1 (so a clock that stalls or steps back never breaks the order).
 */
export class TimeTickAllocator {
  // Invariant: every tick returned is > last.
  private last: bigint;

  constructor(
    /** Every tick allocated will be greater than this (the highest tick ever written). */
    floor: bigint,
    private readonly nowMs: () => number = Date.now,
  ) {
    this.last = floor;
  }

  // The wall-clock tick of the last millisecond seen: within one millisecond (thousands of
  // appends under load) no BigInt is built from the clock again.
  private wallMs = Number.NaN;
  private wallTick = 0n;

  next(): bigint {
    const ms = this.nowMs();
    if (ms !== this.wallMs) {
      this.wallMs = ms;
      this.wallTick = makeTimeTick(ms);
    }
    const tick = this.wallTick > this.last ? this.wallTick : this.last + 1n;
    assert(tick > this.last, 'time ticks increase');
    this.last = tick;
    return tick;
  }

  /** The last tick allocated (or the floor). */
  get current(): bigint {
    return this.last;
  }
}
