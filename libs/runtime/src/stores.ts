import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Static } from '@sinclair/typebox';
import { ConfigError } from '@woodstream/config';
import {
  EtcdMetadataStore,
  FileMetadataStore,
  instrumentMetadataStore,
  S3ObjectStore,
  Woodpecker,
  type MetadataStore,
  type ObjectStore,
} from '@woodstream/woodpecker';
import type { MetadataSchema, StorageSchema, WalSchema } from './schemas.js';

/**
 * Opens the configured metadata store (the caller closes it), instrumented: every request of
 * the node, the coordinator and the WAL is counted, timed and traced.
 */
export async function openMetadataStore(
  config: Static<typeof MetadataSchema>,
  signal?: AbortSignal,
): Promise<MetadataStore> {
  return instrumentMetadataStore(await openRawMetadataStore(config, signal));
}

async function openRawMetadataStore(
  config: Static<typeof MetadataSchema>,
  signal?: AbortSignal,
): Promise<MetadataStore> {
  if (config.kind === 'etcd') {
    return EtcdMetadataStore.open(
      {
        endpoints: [...config.etcdEndpoints],
        rootPrefix: config.rootPrefix,
        requestTimeoutMs: config.requestTimeoutMs,
      },
      signal ? { signal } : {},
    );
  }
  await mkdir(dirname(config.embeddedPath), { recursive: true });
  return FileMetadataStore.open({ path: config.embeddedPath, ...(signal ? { signal } : {}) });
}

/** Opens the WAL client over the configured storage. Returns the object store too (to close it). */
export async function openWal(
  storage: Static<typeof StorageSchema>,
  wal: Static<typeof WalSchema>,
  metadata: MetadataStore,
  signal?: AbortSignal,
): Promise<{ wal: Woodpecker; objects?: ObjectStore }> {
  const { maintenanceIntervalMs, maxBlockBytes, ...walLimits } = wal;
  const problems: string[] = [];
  if (maintenanceIntervalMs > 0 && maintenanceIntervalMs < 1000)
    problems.push(
      `wal.maintenanceIntervalMs: 0 (off) or at least 1000, got ${maintenanceIntervalMs}`,
    );
  if (maxBlockBytes > 0 && maxBlockBytes < 4096)
    problems.push(
      `wal.maxBlockBytes: 0 (the mode's default) or at least 4096, got ${maxBlockBytes}`,
    );
  if (storage.mode === 'object' && storage.s3.bucket === '')
    problems.push('storage.s3.bucket: required when storage.mode is object');
  if (problems.length > 0) throw new ConfigError(problems);
  const maintenance =
    maintenanceIntervalMs > 0 ? { maintenance: { intervalMs: maintenanceIntervalMs } } : {};
  const limits = { ...walLimits, ...(maxBlockBytes > 0 ? { maxBlockBytes } : {}) };
  if (storage.mode === 'local') {
    await mkdir(storage.localDir, { recursive: true });
    return {
      wal: Woodpecker.open({
        metadata,
        storage: { mode: 'local', rootDir: storage.localDir, directIo: storage.localDirectIo },
        limits,
        ...maintenance,
      }),
    };
  }
  const s3 = storage.s3;
  const objects = await S3ObjectStore.open(
    {
      ...(s3.endpoint ? { endpoint: s3.endpoint } : {}),
      region: s3.region,
      bucket: s3.bucket,
      ...(s3.accessKeyId
        ? { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey }
        : {}),
      ...(s3.keyPrefix ? { keyPrefix: s3.keyPrefix } : {}),
      conditionalWrites: s3.conditionalWrites,
    },
    signal ? { signal } : {},
  );
  return {
    wal: Woodpecker.open({
      metadata,
      storage: { mode: 'object', objectStore: objects },
      limits,
      ...maintenance,
    }),
    objects,
  };
}
