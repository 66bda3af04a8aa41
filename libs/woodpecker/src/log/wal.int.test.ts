import { constants } from 'node:fs';
import { appendFile, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
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

// Page-cache writes (directIo off), as on file systems without direct I/O; the suite above
// runs with direct I/O where the temp directory's file system has it.
describeWalSuite('local files (page cache) + etcd', async () => {
  const dir = await makeTempDir('wal-local-etcd');
  const metadata = await EtcdMetadataStore.open({
    endpoints: [harness().etcdEndpoint],
    rootPrefix: `/${uniqueName('wal')}/`,
  });
  return {
    metadata,
    storage: { mode: 'local', rootDir: dir.path, directIo: false },
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

/** Whether `dir`'s file system accepts O_DIRECT (tmpfs before Linux 6.6 does not). */
async function supportsDirectIo(dir: string): Promise<boolean> {
  const path = join(dir, 'o-direct-check');
  try {
    await (await open(path, constants.O_CREAT | constants.O_WRONLY | constants.O_DIRECT)).close();
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EINVAL') return false;
    throw err;
  } finally {
    await rm(path, { force: true });
  }
}

describe('local segment files', () => {
  async function setup(directIo?: boolean) {
    const dir = await makeTempDir('wal-files');
    const metadata = await FileMetadataStore.open({ path: join(dir.path, 'meta.log') });
    const rootDir = join(dir.path, 'data');
    const wp = Woodpecker.open({
      metadata,
      storage: { mode: 'local', rootDir, ...(directIo === undefined ? {} : { directIo }) },
    });
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
    // Flip a byte of the second entry's payload (the file may end with padding after it).
    const file = await env.segmentFile(0);
    const bytes = await readFile(file);
    const at = bytes.lastIndexOf(Buffer.from('second')) + 5;
    expect(at).toBeGreaterThan(5);
    const fh = await open(file, 'r+');
    await fh.write(Buffer.from([(bytes[at] as number) ^ 0x01]), 0, 1, at);
    await fh.close();
    const reader = await log.openReader();
    expect(dec.decode((await reader.next())?.payload)).toBe('first');
    await expect(reader.next()).rejects.toMatchObject({ code: 'WAL_CORRUPT' });
  });

  it('with direct I/O, pads every write to 4 KiB; the entries read back, and recovery keeps them', async () => {
    await using env = await setup();
    const log = await env.wp.createLog('aligned');
    const writer = await log.openWriter();
    const sizes = [1, 100, 4048, 4049, 70_000];
    const payload = (i: number): Uint8Array => new Uint8Array(sizes[i] as number).fill(i + 1);
    for (let i = 0; i < sizes.length; i++) await writer.append(payload(i));
    const file = await env.segmentFile(0);
    const size = (await stat(file)).size;
    // On file systems without direct I/O the store falls back to page-cache writes (no padding).
    const isDirect = await supportsDirectIo(dirname(file));
    expect(size % 4096 === 0).toBe(isDirect);
    if (isDirect) {
      // Each one-at-a-time append was its own write, padded to the next 4 KiB.
      const bytes = await readFile(file);
      let paddings = 0;
      for (let at = bytes.indexOf('WPBK'); at >= 0; at = bytes.indexOf('WPBK', at + 1))
        if (bytes.readUInt16LE(at + 4) === 2) paddings++;
      expect(paddings).toBeGreaterThanOrEqual(sizes.length - 1);
    }
    const read = async (): Promise<Uint8Array[]> =>
      (await take(await log.openReader(), sizes.length)).map((e) => e.payload);
    expect(await read()).toEqual(sizes.map((_, i) => payload(i)));
    // A new writer recovers the segment (scan across the padding) and seals it whole.
    await writer.close();
    const next = await log.openWriter();
    expect((await log.listSegments())[0]).toMatchObject({
      state: 'completed',
      lastEntryId: sizes.length - 1,
      ...(isDirect ? { sizeBytes: size } : {}),
    });
    expect(await read()).toEqual(sizes.map((_, i) => payload(i)));
    await next.close();
  });

  it('with direct I/O, stops recovery at padding torn by a crash, not past the end of the file', async () => {
    await using env = await setup();
    const file = async () => env.segmentFile(0);
    const log = await env.wp.createLog('torn-padding');
    const crashed = await log.openWriter();
    await crashed.append(enc.encode('a'));
    await crashed.append(enc.encode('b'));
    if (!(await supportsDirectIo(dirname(await file())))) return;
    // The second write: block 'b' (48 + 12 + 1 bytes) and its padding up to 8 KiB. A crash
    // inside the padding leaves the block whole and the padding cut short.
    const fh = await open(await file(), 'r+');
    await fh.truncate(4096 + 200);
    await fh.close();
    const next = await log.openWriter();
    expect((await log.listSegments())[0]).toMatchObject({
      state: 'completed',
      lastEntryId: 1,
      sizeBytes: 4096 + 61,
    });
    expect((await take(await log.openReader(), 2)).map((e) => dec.decode(e.payload))).toEqual([
      'a',
      'b',
    ]);
    await next.close();
  });

  it('without direct I/O writes blocks back to back, unpadded', async () => {
    await using env = await setup(false);
    const log = await env.wp.createLog('unpadded');
    const writer = await log.openWriter();
    await writer.append(enc.encode('a'));
    await writer.append(enc.encode('b'));
    await writer.close();
    const bytes = await readFile(await env.segmentFile(0));
    // Two blocks of one 1-byte record each: 48-byte header + 12-byte record head + 1 byte.
    expect(bytes.byteLength).toBe(2 * (48 + 12 + 1));
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
