/** Options for {@link waitFor}. */
export interface WaitForOptions {
  /** Give up after this long. Required: every wait in a test has a time limit. */
  timeoutMs: number;
  /** Pause between checks. @default 25 */
  intervalMs?: number;
  /** Named in the timeout error so a failing test says what it was waiting for. */
  description?: string;
  signal?: AbortSignal;
}

/** Thrown by {@link waitFor} when the condition did not hold within the time limit. */
export class WaitTimeoutError extends Error {
  constructor(
    message: string,
    readonly lastError: unknown,
  ) {
    super(message, lastError === undefined ? undefined : { cause: lastError });
    this.name = 'WaitTimeoutError';
  }
}

/**
 * Re-checks `condition` until it returns a value other than `false`, `undefined` or `null`
 * and returns that value. A condition that throws counts as "not yet"; the last error is
 * attached to the timeout error. Rejects with `signal.reason` when aborted.
 */
export async function waitFor<T>(
  condition: () => T | Promise<T>,
  options: WaitForOptions,
): Promise<Exclude<T, false | undefined | null>> {
  const { timeoutMs, intervalMs = 25, description = 'condition', signal } = options;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    signal?.throwIfAborted();
    try {
      const value = await condition();
      if (value !== false && value !== undefined && value !== null) {
        return value as Exclude<T, false | undefined | null>;
      }
    } catch (err) {
      lastError = err;
    }
    const remainingMs = deadline - Date.now();
    if (remainingMs <= 0) {
      const why = lastError instanceof Error ? `: last error: ${lastError.message}` : '';
      throw new WaitTimeoutError(
        `timed out after ${timeoutMs} ms waiting for ${description}${why}`,
        lastError,
      );
    }
    await pause(Math.min(intervalMs, remainingMs), signal);
  }
}

// Not the shared `sleep` of @woodstream/common: this module also runs in vitest's global
// setup, where workspace packages do not resolve to their sources.
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason as Error);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
