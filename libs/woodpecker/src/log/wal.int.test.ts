import { appendFile, open, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { createTestBucket, harness, makeTempDir, uniqueName } from '@woodstream/testing';
import { describe, expect, it } from 'vitest';
import { EtcdMetadataStore } from '../storage/etcd-metadata-store.js';
import { FileMetadataStore } from '../storage/file-metadata-store.js';
import { S3ObjectStore } from '../storage/s3-object-store.js';
import { Woodpecker } from '../woodpecker.js';
import { describeWalSuite, take } from './wal-suite.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

// The full WAL suite on real backends.
describeWalSuite('local files + embedded metadata on disk', async () => {
  const dir = await makeTempDir('wal-local');
  const metadata = await FileMetadataStore.open({ path: join(dir.path, 'meta.log') });
  return {
    metadata,
    rootDir: join(dir.path, 'data'),
    storage: { mode: 'local', rootDir: join(dir.path, 'data') },
    cleanup: async () => {
      await metadata.close();
      await dir.remove();
    },
  };
});

describeWalSuite('local files + etcd', async () => {
  const dir = await makeTempDir('wal-local-etcd');
  const metadata = await EtcdMetadataStore.open({
    endpoints: [harness().etcdEndpoint],
    rootPrefix: `/${uniqueName('wal')}/`,
  });
  return {
    metadata,
    storage: { mode: 'local', rootDir: dir.path },
    cleanup: async () => {
      await metadata.close();
      await dir.remove();
    },
  };
});

for (const server of ['radosgw', 's3rver'] as const) {
  describeWalSuite(`${server} + etcd`, async () => {
    const s3 = harness()[server];
    const bucket = await createTestBucket(s3, `wal-${server}`);
    const { endpoint, region, accessKeyId, secretAccessKey } = s3;
    const objects = await S3ObjectStore.open({
      endpoint,
      region,
      accessKeyId,
      secretAccessKey,
      bucket: bucket.name,
    });
    expect(objects.capabilities.conditionalWrites).toBe(server === 'radosgw');
    const metadata = await EtcdMetadataStore.open({
      endpoints: [harness().etcdEndpoint],
      rootPrefix: `/${uniqueName('wal')}/`,
    });
    return {
      metadata,
      objects,
      storage: { mode: 'object', objectStore: objects },
      cleanup: async () => {
        await metadata.close();
        await objects.close();
        await bucket.remove();
      },
    };
  });
}

describe('local segment files', () => {
  async function setup() {
    const dir = await makeTempDir('wal-files');
    const metadata = await FileMetadataStore.open({ path: join(dir.path, 'meta.log') });
    const rootDir = join(dir.path, 'data');
    const wp = Woodpecker.open({ metadata, storage: { mode: 'local', rootDir } });
    const segmentFile = async (segmentId: number): Promise<string> => {
      const [logDir] = await readdir(rootDir);
      return join(rootDir, logDir ?? '', `${String(segmentId).padStart(10, '0')}.wal`);
    };
    return {
      wp,
      segmentFile,
      [Symbol.asyncDispose]: async () => {
        await wp.close();
        await metadata.close();
        await dir.remove();
      },
    };
  }

  it('recovers a segment with a torn tail to its last whole block and keeps going', async () => {
    await using env = await setup();
    const log = await env.wp.createLog('torn');
    const crashed = await log.openWriter();
    const acked = await Promise.all(
      Array.from({ length: 10 }, (_, i) => crashed.append(enc.encode(`ok-${i}`))),
    );
    // A crash in the middle of the next block leaves half of it on disk.
    const file = await env.segmentFile(0);
    await appendFile(file, Buffer.from('WPBK\u0001\u0000garbage-of-a-torn-write'));
    const next = await log.openWriter();
    await next.append(enc.encode('after'));
    const read = await take(await log.openReader(), 11);
    expect(read.map((e) => dec.decode(e.payload))).toEqual([
      ...acked.map((_, i) => `ok-${i}`),
      'after',
    ]);
    expect((await log.listSegments())[0]).toMatchObject({ state: 'completed', lastEntryId: 9 });
    await next.close();
  });

  it('stops a reader with WAL_CORRUPT at a flipped byte inside a completed segment, after the valid entries', async () => {
    await using env = await setup();
    const log = await env.wp.createLog('flipped');
    const writer = await log.openWriter();
    await writer.append(enc.encode('first'));
    await writer.append(enc.encode('second'));
    await writer.close();
    const file = await env.segmentFile(0);
    const size = (await stat(file)).size;
    const fh = await open(file, 'r+');
    const last = Buffer.alloc(1);
    await fh.read(last, 0, 1, size - 1);
    last[0] = (last[0] as number) ^ 0x01;
    await fh.write(last, 0, 1, size - 1);
    await fh.close();
    const reader = await log.openReader();
    expect(dec.decode((await reader.next())?.payload)).toBe('first');
    await expect(reader.next()).rejects.toMatchObject({ code: 'WAL_CORRUPT' });
  });

  it('removes truncated segment files from disk', async () => {
    await using env = await setup();
    const log = await env.wp.createLog('gc');
    for (let i = 0; i < 3; i++) {
      const w = await log.openWriter();
      await w.append(enc.encode(`s${i}`));
      await w.close();
    }
    const first = await env.segmentFile(0);
    await expect(stat(first)).resolves.toBeDefined();
    await log.truncate({ segmentId: 2, entryId: 0 });
    await expect(stat(first)).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(stat(await env.segmentFile(1))).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(stat(await env.segmentFile(2))).resolves.toBeDefined();
  });
});
