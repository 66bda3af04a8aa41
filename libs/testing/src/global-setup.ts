// Vitest global setup shared by the integration and e2e projects: starts etcd, s3rver and a
// radosgw cluster once per test run and stops them at the end, also when tests fail.
//
// Both projects' setups run in vitest's main process, so the servers are shared through a
// process-wide registry with a reference count: the second project reuses the first's
// servers and the last teardown stops them.
import type { TestProject } from 'vitest/node';
import { startEtcd, type EtcdServer } from './etcd-server.js';
import type { HarnessInfo } from './harness-info.js';
import { startRadosgw, type RadosgwServer } from './radosgw-server.js';
import { startS3rver, type S3rverServer } from './s3rver-server.js';

interface Shared {
  refs: number;
  started: Promise<{ info: HarnessInfo; stop: () => Promise<void> }>;
}

const REGISTRY = Symbol.for('woodstream.testing.harness');
type Registry = { [REGISTRY]?: Shared };

async function startAll(): Promise<{ info: HarnessInfo; stop: () => Promise<void> }> {
  const results = await Promise.allSettled([startEtcd(), startS3rver(), startRadosgw()]);
  const [etcd, s3rver, radosgw] = results;
  const running = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const stop = async (): Promise<void> => {
    await Promise.allSettled(running.map((server) => server.stop()));
  };
  const failed = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  if (
    failed.length > 0 ||
    etcd.status !== 'fulfilled' ||
    s3rver.status !== 'fulfilled' ||
    radosgw.status !== 'fulfilled'
  ) {
    await stop();
    throw new AggregateError(
      failed,
      `test servers failed to start: ${failed.map(String).join('; ')}`,
    );
  }
  const e: EtcdServer = etcd.value;
  const s: S3rverServer = s3rver.value;
  const r: RadosgwServer = radosgw.value;
  return { info: { etcdEndpoint: e.endpoint, s3rver: s.s3, radosgw: r.s3 }, stop };
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const registry = globalThis as Registry;
  let shared = registry[REGISTRY];
  if (shared === undefined) {
    shared = { refs: 0, started: startAll() };
    registry[REGISTRY] = shared;
  }
  shared.refs += 1;
  const current = shared;
  try {
    const { info } = await current.started;
    project.provide('harness', info);
  } catch (err) {
    current.refs -= 1;
    if (current.refs === 0) delete registry[REGISTRY];
    throw err;
  }
  return async () => {
    current.refs -= 1;
    if (current.refs > 0) return;
    delete registry[REGISTRY];
    const { stop } = await current.started;
    await stop();
  };
}
