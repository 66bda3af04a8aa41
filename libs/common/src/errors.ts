/**
 * Base of every error Woodstream raises on purpose. The code is stable (one row in
 * docs/errors.md) and the retryable flag is decided by the error class, never by the catcher.
 */
export abstract class WoodstreamError extends Error {
  abstract readonly code: string;
  abstract readonly retryable: boolean;
  /** A hint from the server or store, in ms, of when a retry may succeed. */
  readonly retryAfterMs: number | undefined;

  constructor(message: string, options?: ErrorOptions & { retryAfterMs?: number }) {
    super(message, options);
    this.name = new.target.name;
    this.retryAfterMs = options?.retryAfterMs;
  }
}

/**
 * Whether retrying may help. Fails closed: anything that is not a retryable WoodstreamError
 * (TypeErrors, assertion failures, unknown errors) is not retried.
 */
export function isRetryable(err: unknown): boolean {
  return err instanceof WoodstreamError && err.retryable;
}

/** The stable code of an error, or `UNKNOWN` for errors Woodstream did not classify. */
export function errorCode(err: unknown): string {
  return err instanceof WoodstreamError ? err.code : 'UNKNOWN';
}
