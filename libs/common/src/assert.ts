/**
 * A broken invariant: a programmer error, never an expected outcome. It is not a
 * WoodstreamError, so nothing retries it; it should crash the process.
 */
export class AssertionError extends Error {
  constructor(message: string) {
    super(`assertion failed: ${message}`);
    this.name = 'AssertionError';
  }
}

/** Throws {@link AssertionError} when `condition` is falsy. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(message);
}
