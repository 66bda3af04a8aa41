import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestBucket, harness, uniqueName, type TestBucket } from './index.js';

function statusOf(err: unknown): number | undefined {
  return err instanceof S3ServiceException ? err.$metadata.httpStatusCode : undefined;
}

describe('etcd from the harness', () => {
  let etcd: Etcd3;
  beforeAll(() => {
    etcd = new Etcd3({ hosts: harness().etcdEndpoint });
  });
  afterAll(() => etcd.close());

  it('stores and reads back a key', async () => {
    const ns = etcd.namespace(`/${uniqueName('smoke')}/`);
    await ns.put('greeting').value('hello');
    expect(await ns.get('greeting').string()).toBe('hello');
  });

  it('delivers a put to a prefix watcher', async () => {
    const ns = etcd.namespace(`/${uniqueName('watch')}/`);
    const watcher = await ns.watch().prefix('k/').create();
    try {
      const seen = new Promise<string>((resolve) =>
        watcher.on('put', (kv) => resolve(kv.value.toString())),
      );
      await ns.put('k/1').value('v1');
      expect(await seen).toBe('v1');
    } finally {
      await watcher.cancel();
    }
  });
});

describe('radosgw from the harness', () => {
  let bucket: TestBucket;
  beforeAll(async () => {
    expect(harness().radosgw.conditionalWrites).toBe(true);
    bucket = await createTestBucket(harness().radosgw, 'rgw-smoke');
  });
  afterAll(async () => bucket.remove());

  it('rejects a second create-if-absent PUT of the same key with 412', async () => {
    const put = (body: string): Promise<unknown> =>
      bucket.client.send(
        new PutObjectCommand({ Bucket: bucket.name, Key: 'once', Body: body, IfNoneMatch: '*' }),
      );
    await put('first');
    const second = await put('second').then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(statusOf(second)).toBe(412);
    const got = await bucket.client.send(
      new GetObjectCommand({ Bucket: bucket.name, Key: 'once' }),
    );
    expect(await got.Body?.transformToString()).toBe('first');
  });

  it('lets exactly one of 16 concurrent create-if-absent PUTs win', async () => {
    const results = await Promise.allSettled(
      Array.from({ length: 16 }, (_, i) =>
        bucket.client.send(
          new PutObjectCommand({
            Bucket: bucket.name,
            Key: 'race',
            Body: `racer-${i}`,
            IfNoneMatch: '*',
          }),
        ),
      ),
    );
    const winners = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
    const losers = results.flatMap((r) => (r.status === 'rejected' ? [statusOf(r.reason)] : []));
    expect(winners).toHaveLength(1);
    expect(losers).toEqual(Array(15).fill(412));
    const got = await bucket.client.send(
      new GetObjectCommand({ Bucket: bucket.name, Key: 'race' }),
    );
    expect(await got.Body?.transformToString()).toBe(`racer-${winners[0]}`);
  });

  it('applies If-Match only when the ETag (unquoted) is current', async () => {
    await bucket.client.send(new PutObjectCommand({ Bucket: bucket.name, Key: 'cas', Body: 'v1' }));
    const head = await bucket.client.send(
      new HeadObjectCommand({ Bucket: bucket.name, Key: 'cas' }),
    );
    const etag = (head.ETag ?? '').replace(/"/g, '');
    await bucket.client.send(
      new PutObjectCommand({ Bucket: bucket.name, Key: 'cas', Body: 'v2', IfMatch: etag }),
    );
    const stale = await bucket.client
      .send(new PutObjectCommand({ Bucket: bucket.name, Key: 'cas', Body: 'v3', IfMatch: etag }))
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    expect(statusOf(stale)).toBe(412);
  });
});

describe('s3rver from the harness', () => {
  let bucket: TestBucket;
  beforeAll(async () => {
    bucket = await createTestBucket(harness().s3rver, 's3rver-smoke');
  });
  afterAll(async () => bucket.remove());

  it('puts, gets and lists keys across pages', async () => {
    const keys = Array.from({ length: 7 }, (_, i) => `page/key-${i}`);
    for (const key of keys) {
      await bucket.client.send(
        new PutObjectCommand({ Bucket: bucket.name, Key: key, Body: `body of ${key}` }),
      );
    }
    const got = await bucket.client.send(
      new GetObjectCommand({ Bucket: bucket.name, Key: 'page/key-3' }),
    );
    expect(await got.Body?.transformToString()).toBe('body of page/key-3');

    const listed: string[] = [];
    let pages = 0;
    let token: string | undefined;
    do {
      const page = await bucket.client.send(
        new ListObjectsV2Command({
          Bucket: bucket.name,
          Prefix: 'page/',
          MaxKeys: 3,
          ContinuationToken: token,
        }),
      );
      pages += 1;
      listed.push(...(page.Contents ?? []).map((o) => o.Key ?? ''));
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (token !== undefined && pages < 10);
    expect(pages).toBe(3);
    expect(listed).toEqual([...keys].sort());
  });

  it('ignores If-None-Match on PUT, which is why it is not used to test fencing', async () => {
    expect(harness().s3rver.conditionalWrites).toBe(false);
    const key = 'no-conditional';
    await bucket.client.send(
      new PutObjectCommand({ Bucket: bucket.name, Key: key, Body: 'a', IfNoneMatch: '*' }),
    );
    await bucket.client.send(
      new PutObjectCommand({ Bucket: bucket.name, Key: key, Body: 'b', IfNoneMatch: '*' }),
    );
    const got = await bucket.client.send(new GetObjectCommand({ Bucket: bucket.name, Key: key }));
    expect(await got.Body?.transformToString()).toBe('b');
  });
});
