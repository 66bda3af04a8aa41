import { assert } from '@woodstream/common';
import { StreamingNode } from '@woodstream/streaming-node';
import type { MetadataStore, ObjectStore, Woodpecker } from '@woodstream/woodpecker';
import type { Logger } from './logger.js';
import type { NodeConfig } from './schemas.js';
import { openMetadataStore, openWal } from './stores.js';

/** A running node process's parts; `stop()` drains and releases everything in order. */
export interface NodeApp {
  readonly node: StreamingNode;
  /** The metadata store the node registers in (its readiness depends on reaching it). */
  readonly metadata: MetadataStore;
  stop(options?: { drain?: boolean }): Promise<void>;
}

/** The node's own settings; metadata, storage and WAL settings are needed only for stores it opens. */
export type NodeSettings = Omit<
  NodeConfig,
  'metadata' | 'storage' | 'wal' | 'http' | 'otlpEndpoint' | 'logLevel'
> &
  Partial<Pick<NodeConfig, 'metadata' | 'storage' | 'wal'>> & {
    /** Host combined with the bound port into the advertised address (standalone). */
    advertiseHost?: string;
  };

/**
 * Builds a streaming node. It opens its metadata store and WAL from the config unless they are
 * passed in `shared` (standalone shares one of each with its coordinator).
 */
export async function startNodeApp(
  config: NodeSettings,
  logger: Logger,
  shared: { metadata?: MetadataStore; wal?: Woodpecker } = {},
): Promise<NodeApp> {
  const need = <T>(value: T | undefined, what: string): T => {
    assert(value !== undefined, `startNodeApp needs ${what} when it is not shared`);
    return value;
  };
  const metadata =
    shared.metadata ?? (await openMetadataStore(need(config.metadata, 'metadata settings')));
  let wal: Woodpecker;
  let objects: ObjectStore | undefined;
  if (shared.wal !== undefined) wal = shared.wal;
  else
    ({ wal, objects } = await openWal(
      need(config.storage, 'storage settings'),
      need(config.wal, 'WAL settings'),
      metadata,
    ));
  const node = await StreamingNode.start(
    {
      host: config.grpc.host,
      port: config.grpc.port,
      ...(config.grpc.advertiseAddress ? { advertiseAddress: config.grpc.advertiseAddress } : {}),
      ...(config.advertiseHost ? { advertiseHost: config.advertiseHost } : {}),
      sessionTtlMs: config.sessionTtlMs,
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
      drainTimeoutMs: config.drainTimeoutMs,
    },
    { wal, metadata, logger },
  );
  return {
    node,
    metadata,
    async stop(options = {}) {
      await node.stop(options);
      if (shared.wal === undefined) await wal.close();
      await objects?.close();
      if (shared.metadata === undefined) await metadata.close();
    },
  };
}
