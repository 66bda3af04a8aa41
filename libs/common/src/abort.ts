import { AbortFanout } from './abort-fanout.js';

// One `abort` listener per signal for every sleep and abortable call waiting on it: callers
// share a signal among many concurrent operations (a lifetime signal, a test's signal), and a
// listener each tripped Node's listener-leak warning past ten.
const waiting = new AbortFanout();

/** Resolves after `ms`, or rejects with `signal.reason` as soon as the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason as Error);
    };
    const timer = setTimeout(() => {
      if (signal !== undefined) waiting.remove(signal, onAbort);
      resolve();
    }, ms);
    if (signal !== undefined) waiting.add(signal, onAbort);
  });
}

/**
 * Races `promise` against `signal`: rejects with `signal.reason` when the signal aborts first.
 * The underlying operation is not cancelled; use it only for operations that cannot take a signal.
 */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error);
    waiting.add(signal, onAbort);
    promise.then(
      (value) => {
        waiting.remove(signal, onAbort);
        resolve(value);
      },
      (err: unknown) => {
        waiting.remove(signal, onAbort);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}
