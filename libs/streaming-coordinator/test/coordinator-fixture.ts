import { FileMetadataStore, type MetadataStore } from '@woodstream/woodpecker';
import { afterEach } from 'vitest';
import type { CoordinatorLogger } from '../src/coordinator-logger.js';
import type { CoordinatorOptions } from '../src/coordinator-options.js';
import { StreamingCoordinator } from '../src/streaming-coordinator.js';
import {
  registerSession,
  startFakeNode,
  type FakeNode,
  type FakeSession,
} from './fake-streaming-node.js';

/** Fast timers for tests: balance rounds, session expiry and channel retries in milliseconds. */
export const FAST_COORDINATOR: CoordinatorOptions = {
  balanceIntervalMs: 50,
  moveCooldownMs: 0,
  sessionTtlMs: 1000,
  channelBackoffInitialMs: 10,
  channelBackoffMaxMs: 100,
};

export interface CoordinatorFixture {
  /** An in-memory metadata store. */
  openStore: () => Promise<MetadataStore>;
  /** A fake streaming node with a session registered in `store`. */
  addNode: (
    store: MetadataStore,
    serverId: number,
  ) => Promise<{ node: FakeNode; session: FakeSession }>;
  /** A coordinator with the fixture's options, overridden by `options`. */
  startCoordinator: (
    store: MetadataStore,
    options?: CoordinatorOptions,
    logger?: CoordinatorLogger,
  ) => Promise<StreamingCoordinator>;
}

/**
 * Stores, fake nodes and coordinators for the tests of one file, each stopped after the test in
 * reverse order of creation (coordinators before the nodes and the store they use). Call it at
 * module level: it registers an `afterEach` hook.
 */
export function coordinatorFixture(defaults: CoordinatorOptions): CoordinatorFixture {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  return {
    openStore: async () => {
      const store = await FileMetadataStore.open({});
      cleanups.push(() => store.close());
      return store;
    },
    addNode: async (store, serverId) => {
      const node = await startFakeNode(serverId);
      cleanups.push(() => node.stop());
      const session = await registerSession(store, node);
      return { node, session };
    },
    startCoordinator: async (store, options = {}, logger) => {
      const coordinator = await StreamingCoordinator.start(
        { ...defaults, ...options },
        { metadata: store, ...(logger ? { logger } : {}) },
      );
      cleanups.push(() => coordinator.stop());
      return coordinator;
    },
  };
}
