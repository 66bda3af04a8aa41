/**
 * Exponential backoff with full jitter for loops that retry forever (discovery, re-routing):
 * attempt n waits a random time in [min/2, min(max, min * 2^n)], so many clients that lost the
 * same node do not reconnect in lock-step. `reset()` after a success.
 */
export class Backoff {
  private attempt = 0;

  constructor(
    private readonly minMs: number,
    private readonly maxMs: number,
    private readonly random: () => number = Math.random,
  ) {
    if (!(minMs > 0 && maxMs >= minMs)) throw new RangeError('backoff needs 0 < minMs <= maxMs');
  }

  /** The delay before the next attempt, in ms. */
  nextDelayMs(): number {
    // Cap the exponent so the multiplication never overflows to Infinity.
    const ceiling = Math.min(this.maxMs, this.minMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    const floor = Math.min(this.minMs / 2, ceiling);
    return Math.round(floor + this.random() * (ceiling - floor));
  }

  reset(): void {
    this.attempt = 0;
  }
}
