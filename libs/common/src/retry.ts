import { sleep } from './abort.js';
import { isRetryable, WoodstreamError } from './errors.js';

/** How {@link retry} spaces and bounds its attempts. */
export interface RetryPolicy {
  /** Total attempts including the first. @default 5 (max 100) */
  maxAttempts?: number;
  /** Backoff before the second attempt. @default 50 */
  initialDelayMs?: number;
  /** Backoff cap. @default 2000 */
  maxDelayMs?: number;
  /** Stop retrying once this much time has passed since the first attempt. @default 30000 */
  maxElapsedMs?: number;
}

const MAX_ATTEMPTS_LIMIT = 100;

/**
 * Runs `fn` until it succeeds, retrying only errors that {@link isRetryable} accepts, with
 * exponential backoff and full jitter, honouring `retryAfterMs`. Never sleeps past the
 * elapsed-time budget; rejects with `signal.reason` when aborted. `onRetry` sees every
 * error that will be retried (for logging and metrics).
 */
export async function retry<T>(
  fn: (attempt: number) => Promise<T>,
  options: {
    signal?: AbortSignal;
    policy?: RetryPolicy;
    onRetry?: (err: unknown, attempt: number) => void;
  } = {},
): Promise<T> {
  const { signal, policy = {}, onRetry } = options;
  const maxAttempts = Math.min(Math.max(policy.maxAttempts ?? 5, 1), MAX_ATTEMPTS_LIMIT);
  const initialDelayMs = policy.initialDelayMs ?? 50;
  const maxDelayMs = policy.maxDelayMs ?? 2_000;
  const deadline = Date.now() + (policy.maxElapsedMs ?? 30_000);
  for (let attempt = 1; ; attempt++) {
    signal?.throwIfAborted();
    try {
      return await fn(attempt);
    } catch (err) {
      if (!isRetryable(err) || attempt >= maxAttempts || signal?.aborted === true) throw err;
      const backoff = Math.min(maxDelayMs, initialDelayMs * 2 ** (attempt - 1));
      const hinted = err instanceof WoodstreamError ? (err.retryAfterMs ?? 0) : 0;
      const delay = Math.max(hinted, Math.random() * backoff);
      if (Date.now() + delay > deadline) throw err;
      onRetry?.(err, attempt);
      await sleep(delay, signal);
    }
  }
}
