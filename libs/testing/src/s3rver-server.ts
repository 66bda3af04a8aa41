import { createRequire } from 'node:module';
import { ManagedProcess } from './managed-process.js';
import { makeTempDir } from './temp-dir.js';
import type { S3Endpoint } from './s3-endpoint.js';

/** A running s3rver (npm) on loopback. It ignores conditional writes (`If-None-Match`, `If-Match`). */
export interface S3rverServer {
  readonly s3: S3Endpoint;
  readonly process: ManagedProcess;
  stop(): Promise<void>;
}

/**
 * Starts s3rver in its own Node process. It needs `--openssl-legacy-provider`: without it every
 * truncated ListObjectsV2 fails with HTTP 500 (its continuation tokens use DES).
 */
export async function startS3rver(options: { timeoutMs?: number } = {}): Promise<S3rverServer> {
  const dir = await makeTempDir('s3rver');
  const bin = createRequire(import.meta.url).resolve('s3rver/bin/s3rver.js');
  const proc = ManagedProcess.spawn({
    name: 's3rver',
    command: process.execPath,
    args: ['--openssl-legacy-provider', bin, '-d', dir.path, '-a', '127.0.0.1', '-p', '0'],
  });
  const stop = async (): Promise<void> => {
    await proc.stop({ graceMs: 5_000 });
    await dir.remove();
  };
  try {
    const match = await proc.waitForOutput(/listening on 127\.0\.0\.1:(\d+)/, {
      timeoutMs: options.timeoutMs ?? 30_000,
    });
    const endpoint = `http://127.0.0.1:${match[1] ?? ''}`;
    return {
      // s3rver accepts any well-formed signature for these default credentials.
      s3: {
        endpoint,
        region: 'us-east-1',
        accessKeyId: 'S3RVER',
        secretAccessKey: 'S3RVER',
        conditionalWrites: false,
      },
      process: proc,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
