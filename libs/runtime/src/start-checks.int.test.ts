import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { ConfigError } from '@woodstream/config';
import { makeTempDir } from '@woodstream/testing';
import { FileMetadataStore } from '@woodstream/woodpecker';
import { describe, expect, it } from 'vitest';
import { readAdminToken } from './process-http.js';
import { StorageSchema, WalSchema } from './schemas.js';
import { openWal } from './stores.js';

describe('start-time checks', () => {
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
    const storage = Value.Default(StorageSchema, {
      mode: 'local',
      localDir: join(dir.path, 'wal'),
    }) as Static<typeof StorageSchema>;
    const wal = (maintenanceIntervalMs: number): Static<typeof WalSchema> =>
      Value.Default(WalSchema, { maintenanceIntervalMs }) as Static<typeof WalSchema>;
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
});
