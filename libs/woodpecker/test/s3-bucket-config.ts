import type { S3Endpoint } from '@woodstream/testing';

/** Where one bucket lives and how to sign in: what `S3ObjectStore.open` needs at least. */
export interface S3BucketConfig {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  bucket: string;
}

/** The config of `bucket` on the harness S3 server `s3`. */
export function s3BucketConfig(s3: S3Endpoint, bucket: string): S3BucketConfig {
  return {
    endpoint: s3.endpoint,
    region: s3.region,
    bucket,
    accessKeyId: s3.accessKeyId,
    secretAccessKey: s3.secretAccessKey,
  };
}
