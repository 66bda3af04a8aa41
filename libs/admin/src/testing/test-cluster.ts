import { join } from 'node:path';
import { StreamingCoordinator, type CoordinatorOptions } from '@woodstream/streaming-coordinator';
import { StreamingNode } from '@woodstream/streaming-node';
import { makeTempDir, waitFor } from '@woodstream/testing';
import { FileMetadataStore, Woodpecker } from '@woodstream/woodpecker';

/** A real cluster in this process: file metadata store, local WAL, streaming nodes, coordinator. */
export interface TestCluster {
  coordinator: StreamingCoordinator;
  nodes: StreamingNode[];
  metadata: FileMetadataStore;
  /** A second coordinator on the same store; STANDBY while `coordinator` leads. */
  startStandby(): Promise<StreamingCoordinator>;
  /** Stops everything started here, in reverse order; safe to call after a failure. */
  stop(): Promise<void>;
}

export const WAIT = { timeoutMs: 20_000 };

export async function startTestCluster(
  options: { nodeCount?: number; coordinator?: CoordinatorOptions } = {},
): Promise<TestCluster> {
  const cleanups: (() => Promise<void>)[] = [];
  const stop = async (): Promise<void> => {
    for (const cleanup of cleanups.splice(0).reverse()) {
      await cleanup().catch(() => undefined);
    }
  };
  try {
    const dir = await makeTempDir('admin');
    cleanups.push(async () => {
      await dir[Symbol.asyncDispose]();
    });
    const metadata = await FileMetadataStore.open({ path: join(dir.path, 'metadata.log') });
    cleanups.push(() => metadata.close());
    const nodes: StreamingNode[] = [];
    for (let i = 0; i < (options.nodeCount ?? 2); i++) {
      // One WAL client per node over one directory, as separate processes would have.
      const wal = Woodpecker.open({
        metadata,
        storage: { mode: 'local', rootDir: join(dir.path, 'wal') },
      });
      cleanups.push(() => wal.close());
      const node = await StreamingNode.start(
        { sessionTtlMs: 2_000, timeTickIntervalMs: 50, drainTimeoutMs: 0 },
        { wal, metadata },
      );
      cleanups.push(() => node.stop({ drain: false }));
      nodes.push(node);
    }
    const coordinatorOptions: CoordinatorOptions = {
      pchannelCount: 4,
      balanceIntervalMs: 100,
      moveCooldownMs: 0,
      ...options.coordinator,
    };
    const coordinator = await StreamingCoordinator.start(coordinatorOptions, { metadata });
    cleanups.push(() => coordinator.stop());
    await waitFor(() => coordinator.listChannels().every((c) => c.state === 'ASSIGNED'), {
      ...WAIT,
      description: 'every channel assigned',
    });
    return {
      coordinator,
      nodes,
      metadata,
      startStandby: async () => {
        const standby = await StreamingCoordinator.start(coordinatorOptions, { metadata });
        cleanups.push(() => standby.stop());
        return standby;
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
