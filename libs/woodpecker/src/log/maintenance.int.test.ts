import { join } from 'node:path';
import { createTestBucket, harness, makeTempDir, uniqueName, waitFor } from '@woodstream/testing';
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

const enc = new TextEncoder();
const dec = new TextDecoder();

interface Backend {
  config: CrashWriterConfig;
  metadata: () => Promise<MetadataStore>;
  storage: () => Promise<StorageOptions>;
}

/**
 * A writer process is killed in the middle of appending; nobody opens a writer again. After
 * the idle age, maintenance alone must fence and seal the segment with every acked entry.
 */
async function sealsAfterCrash(backend: Backend): Promise<void> {
  const { logName } = backend.config;
  let metadata = await backend.metadata();
  let wp = Woodpecker.open({ metadata, storage: await backend.storage() });
  await wp.createLog(logName);
  await wp.close();
  // The embedded store admits one process at a time: close it while the child owns it.
  if (backend.config.metadataPath !== undefined) await metadata.close();
  const acks = await crashWriter(
    // A short lease, so that the dead writer's session expires quickly.
    { ...backend.config, limits: { writerSessionTtlMs: 1_000 } },
    200,
  );
  if (backend.config.metadataPath !== undefined) metadata = await backend.metadata();
  const storage = await backend.storage();
  wp = Woodpecker.open({ metadata, storage });
  const maintainer = Woodpecker.open({ metadata, storage, limits: { maxSegmentAgeMs: 100 } });
  try {
    const log = await wp.openLog(logName);
    expect((await log.listSegments()).map((s) => s.state)).toEqual(['active']);
    const reader = await log.openReader({ from: 'earliest' });
    const lastAck = [...acks.values()].reduce((a, b) => (a.entryId > b.entryId ? a : b));
    const seen: { n: number; position: LogPosition }[] = [];
    const readThrough = async (until: (text: string, position: LogPosition) => boolean) => {
      for (;;) {
        const entry = await reader.next();
        if (entry === undefined) throw new Error('reader ended early');
        const text = dec.decode(entry.payload);
        if (text !== 'end') seen.push({ n: Number(text.slice(1)), position: entry.position });
        if (until(text, entry.position)) return;
      }
    };
    // Everything acked is readable while the segment is still active.
    await readThrough((_, p) => p.entryId >= lastAck.entryId);

    await waitFor(async () => (await maintainer.maintain()).sealedSegments === 1, {
      timeoutMs: 30_000,
      intervalMs: 200,
      description: 'maintenance to seal the dead writer segment',
    });
    const [sealed] = await log.listSegments();
    expect(sealed).toMatchObject({ segmentId: 0, state: 'completed' });
    expect(sealed?.lastEntryId).toBeGreaterThanOrEqual(lastAck.entryId);

    // A new writer opens without anything to recover and continues in the next segment.
    const writer = await log.openWriter();
    expect(await writer.append(enc.encode('end'))).toEqual({ segmentId: 1, entryId: 0 });
    await readThrough((text) => text === 'end');
    await reader.close();
    // Contiguous from e0, nothing twice, every ack at its acknowledged position.
    expect(seen.map((s) => s.n)).toEqual(seen.map((_, i) => i));
    expect(seen.length).toBe((sealed?.lastEntryId ?? -1) + 1);
    for (const [n, position] of acks) expect(seen[n]?.position).toEqual(position);
    await writer.close();
  } finally {
    await maintainer.close();
    await wp.close();
    await metadata.close();
    if (storage.mode === 'object') await storage.objectStore.close();
  }
}

function etcdBackend(
  logName: string,
  storage: Pick<CrashWriterConfig, 's3' | 'rootDir'>,
): Pick<Backend, 'config' | 'metadata'> {
  const { etcdEndpoint } = harness();
  const rootPrefix = `/${uniqueName('maint')}/`;
  return {
    config: { logName, etcd: { endpoint: etcdEndpoint, rootPrefix }, ...storage },
    metadata: () => EtcdMetadataStore.open({ endpoints: [etcdEndpoint], rootPrefix }),
  };
}

describe('maintenance after a writer crash', () => {
  it('seals the segment of a SIGKILLed writer (local files, embedded metadata)', async () => {
    await using dir = await makeTempDir('maint-local');
    const config: CrashWriterConfig = {
      logName: 'orphan',
      metadataPath: join(dir.path, 'meta.log'),
      rootDir: join(dir.path, 'data'),
    };
    await sealsAfterCrash({
      config,
      metadata: () => FileMetadataStore.open({ path: config.metadataPath as string }),
      storage: () => Promise.resolve({ mode: 'local', rootDir: config.rootDir as string }),
    });
  });

  it('seals the segment of a SIGKILLed writer (local files, etcd)', async () => {
    await using dir = await makeTempDir('maint-local-etcd');
    const rootDir = join(dir.path, 'data');
    await sealsAfterCrash({
      ...etcdBackend('orphan', { rootDir }),
      storage: () => Promise.resolve({ mode: 'local', rootDir }),
    });
  });

  for (const server of ['s3rver', 'radosgw'] as const) {
    it(`seals the segment of a SIGKILLed writer (${server}, etcd)`, async () => {
      const s3 = harness()[server];
      await using bucket = await createTestBucket(s3, `maint-${server}`);
      const s3Config = s3BucketConfig(s3, bucket.name);
      await sealsAfterCrash({
        ...etcdBackend('orphan', { s3: s3Config }),
        storage: async () => ({ mode: 'object', objectStore: await S3ObjectStore.open(s3Config) }),
      });
    });
  }
});
