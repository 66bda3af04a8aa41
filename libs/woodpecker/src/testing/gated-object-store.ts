import type { ObjectStore } from '../storage/object-store.js';

/** An object store whose puts can be held back; see {@link gatedObjectStore}. */
export interface GatedObjectStore {
  readonly store: ObjectStore;
  /** From now on, puts wait until {@link open}. */
  close(): void;
  /** Lets waiting and later puts through. */
  open(): void;
  /** Puts that reached the store so far (waiting ones included). */
  puts(): number;
}

/**
 * `inner` behind a gate, for tests that need appends to stay in flight (or uploads to stall) for
 * as long as they choose. Only the timing changes: every call goes to `inner` as it is, so a store
 * that passes the contract suite stays a valid store.
 */
export function gatedObjectStore(
  inner: ObjectStore,
  options: { isClosed?: boolean } = {},
): GatedObjectStore {
  let gate: Promise<void> | undefined;
  let release: () => void = () => undefined;
  let puts = 0;
  const close = (): void => {
    gate ??= new Promise<void>((resolve) => (release = resolve));
  };
  if (options.isClosed === true) close();
  return {
    store: {
      capabilities: inner.capabilities,
      put: async (key, body, putOptions) => {
        puts += 1;
        if (gate !== undefined) await gate;
        return inner.put(key, body, putOptions);
      },
      get: (key, getOptions) => inner.get(key, getOptions),
      head: (key, headOptions) => inner.head(key, headOptions),
      list: (prefix, listOptions) => inner.list(prefix, listOptions),
      deleteMany: (keys, deleteOptions) => inner.deleteMany(keys, deleteOptions),
      close: () => inner.close(),
    },
    close,
    open: () => {
      gate = undefined;
      release();
    },
    puts: () => puts,
  };
}
