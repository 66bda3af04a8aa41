import { StreamingClient } from '@woodstream/client';
import {
  resolveCoordinatorOptions,
  type StreamingCoordinator,
} from '@woodstream/streaming-coordinator';
import { StreamingNode, type StreamingNodeOptions } from '@woodstream/streaming-node';
import { waitFor } from '@woodstream/testing';
import { FileMetadataStore, Woodpecker, type WoodpeckerOptions } from '@woodstream/woodpecker';
import { startCoordinatorApp, type CoordinatorApp } from '../src/coordinator-app.js';
import { createLogger } from '../src/logger.js';

type CoordinatorSettings = Parameters<typeof startCoordinatorApp>[0];

export interface LocalClusterOptions {
  /** Nodes, each with its own WAL client over the shared metadata store. @default 1 */
  nodeCount?: number;
  /** File of the shared metadata store; in memory when absent. */
  metadataPath?: string;
  /** Options of every node's WAL client (the metadata store is added). */
  wal: Omit<WoodpeckerOptions, 'metadata'>;
  node: Partial<StreamingNodeOptions>;
  /** Coordinator settings; the rest are the coordinator's defaults. */
  coordinator: Partial<CoordinatorSettings>;
}

/**
 * Streaming nodes and a coordinator in this process, as separate processes would run them: over
 * one metadata store, with the coordinator's AssignmentService served on a loopback port.
 * Disposing it closes the clients from {@link LocalCluster.connect}, then the coordinator, the
 * nodes, their WALs and the metadata store, in that order.
 */
export interface LocalCluster extends AsyncDisposable {
  readonly metadata: FileMetadataStore;
  readonly wals: readonly Woodpecker[];
  readonly nodes: readonly StreamingNode[];
  /** The running coordinator; replaced by {@link LocalCluster.restartCoordinator}. */
  readonly coordinator: StreamingCoordinator;
  /** Connects a client to the coordinator. */
  connect(): Promise<StreamingClient>;
  /** Stops the coordinator and starts a new one with the same settings (and a new address). */
  restartCoordinator(): Promise<StreamingCoordinator>;
}

/** Starts a {@link LocalCluster} and waits until every pchannel is assigned. */
export async function startLocalCluster(options: LocalClusterOptions): Promise<LocalCluster> {
  const metadata = await FileMetadataStore.open(
    options.metadataPath === undefined ? {} : { path: options.metadataPath },
  );
  const wals = Array.from({ length: options.nodeCount ?? 1 }, () =>
    Woodpecker.open({ ...options.wal, metadata }),
  );
  const nodes = await Promise.all(
    wals.map((wal) => StreamingNode.start(options.node, { wal, metadata })),
  );
  // startCoordinatorApp wants every setting spelled out: the coordinator's own defaults.
  const settings = resolveCoordinatorOptions(options.coordinator);
  const logger = createLogger({ level: 'silent', component: 'coordinator' });
  const startApp = () =>
    startCoordinatorApp(settings, { host: '127.0.0.1', port: 0 }, logger, { metadata });
  let app: CoordinatorApp = await startApp();
  const clients: StreamingClient[] = [];
  const cluster: LocalCluster = {
    metadata,
    wals,
    nodes,
    get coordinator() {
      return app.coordinator;
    },
    async connect() {
      const client = await StreamingClient.connect({ coordinator: app.address });
      clients.push(client);
      return client;
    },
    async restartCoordinator() {
      await app.stop();
      app = await startApp();
      return app.coordinator;
    },
    async [Symbol.asyncDispose]() {
      for (const client of clients) await client.close();
      await app.stop();
      for (const node of nodes) await node.stop({ drain: false });
      for (const wal of wals) await wal.close();
      await metadata.close();
    },
  };
  try {
    await waitFor(() => app.coordinator.listChannels().every((c) => c.state === 'ASSIGNED'), {
      timeoutMs: 20_000,
    });
  } catch (err) {
    await cluster[Symbol.asyncDispose]();
    throw err;
  }
  return cluster;
}
