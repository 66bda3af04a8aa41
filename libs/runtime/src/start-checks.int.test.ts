import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { ConfigError } from '@woodstream/config';
import { makeTempDir } from '@woodstream/testing';
import { FileMetadataStore } from '@woodstream/woodpecker';
import { describe, expect, it } from 'vitest';
import { configFromArgs } from './mains.js';
import { readAdminToken } from './process-http.js';
import { NodeSchema, StorageSchema, WalSchema } from './schemas.js';
import { openWal } from './stores.js';

/** Storage settings with the schema's defaults and `settings`. */
const storageOf = (settings: Partial<Static<typeof StorageSchema>>): Static<typeof StorageSchema> =>
  Value.Default(StorageSchema, settings) as Static<typeof StorageSchema>;
/** WAL settings with the schema's defaults and `settings`. */
const walOf = (settings: Partial<Static<typeof WalSchema>>): Static<typeof WalSchema> =>
  Value.Default(WalSchema, settings) as Static<typeof WalSchema>;

describe('start-time checks', () => {
  it('refuses stray words, flags without a value and unknown variables of its own prefix', async () => {
    const problems = async (argv: string[], env: Record<string, string> = {}) =>
      configFromArgs(NodeSchema, argv, env, 'WOODSTREAM_NODE').then(
        () => [],
        (err: unknown) => (err as ConfigError).problems,
      );
    expect(await problems(['standalone'])).toEqual(["unexpected argument 'standalone'"]);
    expect(await problems(['--sessionTtlMs'])).toEqual(['option --sessionTtlMs needs a value']);
    expect(await problems([], { WOODSTREAM_NODE_SESION_TTL_MS: '5000' })).toEqual([
      'unknown environment variable WOODSTREAM_NODE_SESION_TTL_MS',
    ]);
    expect(
      await problems(['--sessionTtlMs', '5000'], { WOODSTREAM_NODE_SESSION_TTL_MS: '6000' }),
    ).toEqual([]);
  });

  it('reads the admin token from its file, trimmed; no file means no token', async () => {
    await using dir = await makeTempDir('token');
    const path = join(dir.path, 'token');
    await writeFile(path, '  s3cret\n');
    await expect(readAdminToken(path, true)).resolves.toBe('s3cret');
    await expect(readAdminToken('', false)).resolves.toBeUndefined();
  });

  it('refuses an empty or unreadable token file, and protected reads without a token', async () => {
    await using dir = await makeTempDir('token');
    const empty = join(dir.path, 'empty');
    await writeFile(empty, ' \n');
    await expect(readAdminToken(empty, false)).rejects.toThrow(ConfigError);
    await expect(readAdminToken(join(dir.path, 'missing'), false)).rejects.toThrow(
      /adminTokenFile: cannot read/,
    );
    await expect(readAdminToken('', true)).rejects.toThrow(
      /adminProtectReads: needs adminTokenFile/,
    );
  });

  it('accepts WAL maintenance off or at least a second apart, and refuses less', async () => {
    await using dir = await makeTempDir('maintenance');
    const metadata = await FileMetadataStore.open({});
    const storage = storageOf({ mode: 'local', localDir: join(dir.path, 'wal') });
    const wal = (maintenanceIntervalMs: number) => walOf({ maintenanceIntervalMs });
    try {
      await expect(openWal(storage, wal(500), metadata)).rejects.toThrow(
        /wal.maintenanceIntervalMs: 0 \(off\) or at least 1000/,
      );
      for (const interval of [0, 1000]) {
        const { wal: opened } = await openWal(storage, wal(interval), metadata);
        await opened.close();
      }
    } finally {
      await metadata.close();
    }
  });

  it('passes every WAL setting to the log, with the block size of the storage mode unless one is set', async () => {
    await using dir = await makeTempDir('wal-settings');
    const metadata = await FileMetadataStore.open({});
    const storage = storageOf({ mode: 'local', localDir: join(dir.path, 'wal') });
    const wal = walOf;
    try {
      const noBucket = storageOf({ mode: 'object' });
      await expect(openWal(noBucket, wal({}), metadata)).rejects.toThrow(ConfigError);
      await expect(openWal(noBucket, wal({}), metadata)).rejects.toThrow(
        /storage.s3.bucket: required when storage.mode is object/,
      );
      await expect(openWal(storage, wal({ maxBlockBytes: 100 }), metadata)).rejects.toThrow(
        /wal.maxBlockBytes: 0 \(the mode's default\) or at least 4096/,
      );
      const byDefault = await openWal(storage, wal({}), metadata);
      expect(byDefault.wal.limits.maxBlockBytes).toBe(1024 * 1024);
      await byDefault.wal.close();
      const tuned = await openWal(
        storage,
        wal({
          maxBlockBytes: 2 * 1024 * 1024,
          tailCacheBytes: 32 * 1024 * 1024,
          readBatchBytes: 65536,
          writerSessionTtlMs: 5000,
          maxSegmentBlocks: 500,
        }),
        metadata,
      );
      expect(tuned.wal.limits).toMatchObject({
        maxBlockBytes: 2 * 1024 * 1024,
        tailCacheBytes: 32 * 1024 * 1024,
        readBatchBytes: 65536,
        writerSessionTtlMs: 5000,
        maxSegmentBlocks: 500,
      });
      await tuned.wal.close();
    } finally {
      await metadata.close();
    }
  });
});
