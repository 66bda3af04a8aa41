import { StreamingNode } from '@woodstream/streaming-node';
import type { MetadataStore, ObjectStore, Woodpecker } from '@woodstream/woodpecker';
import type { Logger } from './logger.js';
import type { NodeConfig } from './schemas.js';
import { openMetadataStore, openWal } from './stores.js';

/** A running node process's parts; `stop()` drains and releases everything in order. */
export interface NodeApp {
  readonly node: StreamingNode;
  stop(options?: { drain?: boolean }): Promise<void>;
}

/** Builds a streaming node from its config, with injectable metadata (standalone shares one store). */
export async function startNodeApp(
  config: NodeConfig,
  logger: Logger,
  shared: { metadata?: MetadataStore; wal?: Woodpecker } = {},
): Promise<NodeApp> {
  const metadata = shared.metadata ?? (await openMetadataStore(config.metadata));
  let wal: Woodpecker;
  let objects: ObjectStore | undefined;
  if (shared.wal !== undefined) wal = shared.wal;
  else ({ wal, objects } = await openWal(config.storage, config.wal, metadata));
  const node = await StreamingNode.start(
    {
      host: config.grpc.host,
      port: config.grpc.port,
      ...(config.grpc.advertiseAddress ? { advertiseAddress: config.grpc.advertiseAddress } : {}),
      sessionTtlMs: config.sessionTtlMs,
      timeTickIntervalMs: config.timeTickIntervalMs,
      maxMessageBytes: config.maxMessageBytes,
      maxInflightPerProducer: config.maxInflightPerProducer,
      drainTimeoutMs: config.drainTimeoutMs,
    },
    { wal, metadata, logger },
  );
  return {
    node,
    async stop(options = {}) {
      await node.stop(options);
      if (shared.wal === undefined) await wal.close();
      await objects?.close();
      if (shared.metadata === undefined) await metadata.close();
    },
  };
}
