import { randomBytes } from 'node:crypto';
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';
import { inject } from 'vitest';
import type { HarnessInfo } from './harness-info.js';
import type { S3Endpoint } from './s3-endpoint.js';

/** The servers started by the global setup, each one guaranteed present. */
export interface Harness {
  readonly etcdEndpoint: string;
  readonly s3rver: S3Endpoint;
  readonly radosgw: S3Endpoint;
}

/**
 * The servers started by the global setup. Only valid inside integration and e2e tests.
 * Reading a server that was not started throws an error that says how to start it.
 */
export function harness(): Harness {
  const info: HarnessInfo | undefined = inject('harness');
  if (info === undefined) {
    throw new Error('no test servers: harness() works only in the integration and e2e projects');
  }
  const need = <K extends keyof HarnessInfo>(
    key: K,
    server: string,
  ): NonNullable<HarnessInfo[K]> => {
    const value = info[key];
    if (value === undefined) {
      throw new Error(
        `${server} was not started for this run; unset WOODSTREAM_TEST_SERVERS or include '${server}'`,
      );
    }
    return value;
  };
  return {
    get etcdEndpoint() {
      return need('etcdEndpoint', 'etcd');
    },
    get s3rver() {
      return need('s3rver', 's3rver');
    },
    get radosgw() {
      return need('radosgw', 'radosgw');
    },
  };
}

/**
 * A name no other test uses: lowercase letters, digits and dashes, at most 63 characters,
 * so it is valid as an S3 bucket name, an etcd key segment and a log name.
 */
export function uniqueName(prefix: string): string {
  const clean = prefix
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 40);
  return `${clean || 't'}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

/** An S3 client for a harness server: path-style, checksums only when the API requires them. */
export function makeS3Client(s3: S3Endpoint): S3Client {
  return new S3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 1,
  });
}

/** A bucket that belongs to one test. `remove()` empties and deletes it. */
export interface TestBucket extends AsyncDisposable {
  readonly name: string;
  readonly client: S3Client;
  remove(): Promise<void>;
}

/** Creates a fresh bucket on `s3` for one test. */
export async function createTestBucket(s3: S3Endpoint, prefix = 'bucket'): Promise<TestBucket> {
  const client = makeS3Client(s3);
  const name = uniqueName(prefix);
  await client.send(new CreateBucketCommand({ Bucket: name }));
  const remove = async (): Promise<void> => {
    try {
      let token: string | undefined;
      do {
        const page = await client.send(
          new ListObjectsV2Command({ Bucket: name, ContinuationToken: token }),
        );
        // One key at a time: s3rver's multi-object delete races on shared directories.
        for (const object of page.Contents ?? []) {
          if (object.Key !== undefined)
            await client.send(new DeleteObjectCommand({ Bucket: name, Key: object.Key }));
        }
        token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
      } while (token !== undefined);
      await client.send(new DeleteBucketCommand({ Bucket: name }));
    } finally {
      client.destroy();
    }
  };
  return { name, client, remove, [Symbol.asyncDispose]: remove };
}
