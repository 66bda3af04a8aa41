import { join } from 'node:path';
import { createTestBucket, harness, makeTempDir, uniqueName } from '@woodstream/testing';
import { describe, expect, it } from 'vitest';
import { crashWriter } from '../../test/crash-child.js';
import type { CrashWriterConfig } from '../../test/crash-writer.js';
import { s3BucketConfig } from '../../test/s3-bucket-config.js';
import { EtcdMetadataStore } from '../storage/etcd-metadata-store.js';
import { FileMetadataStore } from '../storage/file-metadata-store.js';
import type { MetadataStore } from '../storage/metadata-store.js';
import { S3ObjectStore } from '../storage/s3-object-store.js';
import { Woodpecker, type StorageOptions } from '../woodpecker.js';
import type { LogPosition } from './position.js';

const dec = new TextDecoder();

interface Backend {
  config: CrashWriterConfig;
  metadata: () => Promise<MetadataStore>;
  storage: () => Promise<StorageOptions>;
  cleanup: () => Promise<void>;
}

async function verifyRecovery(backend: Backend, acks: Map<number, LogPosition>): Promise<void> {
  const metadata = await backend.metadata();
  const wp = Woodpecker.open({ metadata, storage: await backend.storage() });
  try {
    const log = await wp.openLog(backend.config.logName);
    const writer = await log.openWriter();
    await writer.append(new TextEncoder().encode('end'));
    const reader = await log.openReader({ from: 'earliest' });
    const seen: { n: number; position: LogPosition }[] = [];
    for (;;) {
      const entry = await reader.next();
      if (entry === undefined) throw new Error('reader ended before the end marker');
      const text = dec.decode(entry.payload);
      if (text === 'end') break;
      seen.push({ n: Number(text.slice(1)), position: entry.position });
    }
    await reader.close();
    // Contiguous from e0, no duplicates, nothing but what the child appended.
    expect(seen.map((s) => s.n)).toEqual(seen.map((_, i) => i));
    // Every acknowledged entry is there, at the position it was acknowledged with.
    const maxAcked = Math.max(...acks.keys());
    expect(seen.length).toBeGreaterThan(maxAcked);
    for (const [n, position] of acks) expect(seen[n]?.position).toEqual(position);
    await writer.close();
  } finally {
    await wp.close();
    await metadata.close();
  }
}

async function createLog(backend: Backend): Promise<void> {
  const metadata = await backend.metadata();
  const wp = Woodpecker.open({ metadata, storage: await backend.storage() });
  await wp.createLog(backend.config.logName);
  await wp.close();
  await metadata.close();
}

describe('crash recovery', () => {
  it('keeps every entry acked by a writer killed with SIGKILL (local files, embedded metadata)', async () => {
    await using dir = await makeTempDir('crash-local');
    const config: CrashWriterConfig = {
      logName: 'crash',
      metadataPath: join(dir.path, 'meta.log'),
      rootDir: join(dir.path, 'data'),
    };
    const backend: Backend = {
      config,
      metadata: () => FileMetadataStore.open({ path: config.metadataPath as string }),
      storage: () => Promise.resolve({ mode: 'local', rootDir: config.rootDir as string }),
      cleanup: () => dir.remove(),
    };
    await createLog(backend);
    const acks = await crashWriter(config, 2_000);
    await verifyRecovery(backend, acks);
  });

  it('keeps every entry acked by a writer killed with SIGKILL (radosgw, etcd)', async () => {
    const { radosgw, etcdEndpoint } = harness();
    await using bucket = await createTestBucket(radosgw, 'crash');
    const config: CrashWriterConfig = {
      logName: 'crash',
      etcd: { endpoint: etcdEndpoint, rootPrefix: `/${uniqueName('crash')}/` },
      s3: s3BucketConfig(radosgw, bucket.name),
    };
    const backend: Backend = {
      config,
      metadata: () =>
        EtcdMetadataStore.open({
          endpoints: [etcdEndpoint],
          rootPrefix: config.etcd?.rootPrefix ?? '',
        }),
      storage: async () => ({
        mode: 'object',
        objectStore: await S3ObjectStore.open(config.s3 as NonNullable<CrashWriterConfig['s3']>),
      }),
      cleanup: () => Promise.resolve(),
    };
    await createLog(backend);
    const acks = await crashWriter(config, 300);
    await verifyRecovery(backend, acks);
  });
});
