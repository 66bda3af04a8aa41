/**
 * Shares one `abort` listener per signal among every operation waiting on it. Applications pass
 * one signal to thousands of concurrent appends; a listener each would trip Node's listener-leak
 * warning and make every settle an O(n) removal on the signal.
 */
export class AbortFanout {
  // Invariant: an entry exists exactly while its signal has our listener and a non-empty set.
  private readonly bySignal = new Map<
    AbortSignal,
    { listener: () => void; callbacks: Set<() => void> }
  >();

  /**
   * Calls `onAbort` once when `signal` aborts, unless removed first; at once when it has
   * aborted already (also while its abort is being dispatched).
   */
  add(signal: AbortSignal, onAbort: () => void): void {
    if (signal.aborted) {
      onAbort();
      return;
    }
    let entry = this.bySignal.get(signal);
    if (entry === undefined) {
      const callbacks = new Set<() => void>();
      const listener = (): void => {
        this.bySignal.delete(signal);
        // Each callback runs even when an earlier one throws; the first error is rethrown.
        let failure: { error: unknown } | undefined;
        for (const callback of callbacks) {
          try {
            callback();
          } catch (error) {
            failure ??= { error };
          }
        }
        if (failure !== undefined) throw failure.error;
      };
      entry = { listener, callbacks };
      this.bySignal.set(signal, entry);
      signal.addEventListener('abort', listener, { once: true });
    }
    entry.callbacks.add(onAbort);
  }

  remove(signal: AbortSignal, onAbort: () => void): void {
    const entry = this.bySignal.get(signal);
    if (entry === undefined) return;
    entry.callbacks.delete(onAbort);
    if (entry.callbacks.size === 0) {
      this.bySignal.delete(signal);
      signal.removeEventListener('abort', entry.listener);
    }
  }
}
