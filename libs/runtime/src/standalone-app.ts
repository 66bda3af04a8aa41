import { join } from 'node:path';
import type { Static } from '@sinclair/typebox';
import type { HandlerServiceServer } from '@woodstream/proto';
import { Value } from '@sinclair/typebox/value';
import type { Logger } from './logger.js';
import { startCoordinatorApp, type CoordinatorApp } from './coordinator-app.js';
import { startNodeApp, type NodeApp } from './node-app.js';
import { MetadataSchema, StorageSchema, type StandaloneConfig } from './schemas.js';
import { openMetadataStore, openWal } from './stores.js';

/** What the standalone app itself needs; the HTTP server, telemetry and logs are the process's. */
export type StandaloneSettings = Omit<
  StandaloneConfig,
  'httpPort' | 'adminTokenFile' | 'adminProtectReads' | 'otlpEndpoint' | 'logLevel'
>;

export interface StandaloneApp {
  readonly coordinatorAddress: string;
  readonly nodeAddress: string;
  readonly coordinator: CoordinatorApp;
  readonly node: NodeApp;
  /**
   * The node as a client in this process can reach it without gRPC: pass it in the client's
   * `inProcessNodes` (the in-process short-circuit).
   */
  readonly inProcessNode: { address: string; handlers: HandlerServiceServer };
  stop(): Promise<void>;
}

/**
 * Coordinator + one streaming node in one process, with embedded metadata and local WAL files
 * under `dataDir`. Restarting on the same dataDir recovers everything.
 */
export async function startStandalone(
  config: StandaloneSettings,
  logger: Logger,
): Promise<StandaloneApp> {
  // The same schemas as a cluster, with their defaults: only the paths differ.
  const metadata = await openMetadataStore(
    Value.Default(MetadataSchema, {
      kind: 'embedded',
      embeddedPath: join(config.dataDir, 'meta.log'),
    }) as Static<typeof MetadataSchema>,
  );
  const { wal } = await openWal(
    Value.Default(StorageSchema, {
      mode: 'local',
      localDir: join(config.dataDir, 'wal'),
      localDirectIo: config.directIo,
    }) as Static<typeof StorageSchema>,
    config.wal,
    metadata,
  );
  let node: NodeApp | undefined;
  let coordinator: CoordinatorApp | undefined;
  try {
    node = await startNodeApp(
      {
        grpc: { host: config.host, port: config.nodePort, advertiseAddress: '' },
        advertiseHost: advertiseHostOf(config),
        // One process: the session only ends with it, and there is nobody to drain to.
        sessionTtlMs: 10_000,
        timeTickIntervalMs: config.timeTickIntervalMs,
        maxMessageBytes: config.maxMessageBytes,
        maxInflightPerProducer: config.maxInflightPerProducer,
        maxInflightBytesPerProducer: config.maxInflightBytesPerProducer,
        maxInflightBytesPerNode: config.maxInflightBytesPerNode,
        maxStreamsPerNode: config.maxStreamsPerNode,
        maxVChannelsPerPChannel: config.maxVChannelsPerPChannel,
        dedupWindowEntries: config.dedupWindowEntries,
        dedupRecoveryBytes: config.dedupRecoveryBytes,
        flowControlWindowBytes: config.flowControlWindowBytes,
        drainTimeoutMs: 0,
      },
      logger.child({ service: 'streaming-node' }),
      { metadata, wal },
    );
    coordinator = await startCoordinatorApp(
      { ...config, sessionTtlMs: 10_000 },
      { host: config.host, port: config.coordinatorPort },
      logger.child({ service: 'streaming-coordinator' }),
      { metadata },
    );
  } catch (err) {
    await coordinator?.stop().catch(() => undefined);
    await node?.stop({ drain: false }).catch(() => undefined);
    await wal.close();
    await metadata.close();
    throw err;
  }
  const c = coordinator;
  const n = node;
  return {
    coordinatorAddress: c.address,
    nodeAddress: n.node.address,
    coordinator: c,
    node: n,
    inProcessNode: { address: n.node.address, handlers: n.node.handlers },
    async stop() {
      await n.stop({ drain: false });
      await c.stop();
      await wal.close();
      await metadata.close();
    },
  };
}

/**
 * The host the node puts in its address for clients. A wildcard listen address is not an
 * address anyone can connect to, so it falls back to loopback unless advertiseHost says better.
 */
function advertiseHostOf(config: { host: string; advertiseHost: string }): string {
  if (config.advertiseHost !== '') return config.advertiseHost;
  return config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
}
