import type { S3Endpoint } from './s3-endpoint.js';

/** What the global setup started, provided to every integration and e2e test. A field is
 * absent when that server was not selected (see WOODSTREAM_TEST_SERVERS). */
export interface HarnessInfo {
  /** Client URL of the shared etcd. Tests isolate themselves by key prefix. */
  etcdEndpoint?: string;
  /** s3rver: fast, but ignores conditional writes. Tests isolate themselves by bucket. */
  s3rver?: S3Endpoint;
  /** Ceph radosgw: honours `If-None-Match: *` and `If-Match`. Tests isolate themselves by bucket. */
  radosgw?: S3Endpoint;
}

declare module 'vitest' {
  export interface ProvidedContext {
    harness: HarnessInfo;
  }
}
