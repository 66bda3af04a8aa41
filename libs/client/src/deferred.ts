/** A promise with its settle functions, for state machines driven by stream events. */
export interface Deferred<T> {
  readonly promise: Promise<T>;
  readonly resolve: (value: T) => void;
  readonly reject: (err: Error) => void;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A deferred may be rejected before anyone awaits it (a stream that fails while opening);
  // that is not an unhandled rejection, the owner reads it later or on purpose never does.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

/** `signal.reason` as an Error, for rejecting on abort. */
export function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new Error(String(reason));
}
