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

type ServerName = 'etcd' | 's3rver' | 'radosgw';
const ALL_SERVERS: readonly ServerName[] = ['etcd', 's3rver', 'radosgw'];

/**
 * Which servers to start. All of them by default (and always in CI); a developer running one
 * test file can set WOODSTREAM_TEST_SERVERS=etcd,s3rver to skip the 16 s radosgw start. A
 * test that needs a server that was not started fails with a message naming the variable.
 */
function selectedServers(): Set<ServerName> {
  const raw = process.env.WOODSTREAM_TEST_SERVERS;
  if (raw === undefined || raw.trim() === '' || raw === 'all') return new Set(ALL_SERVERS);
  const names = raw.split(',').map((s) => s.trim());
  const unknown = names.filter((n) => !ALL_SERVERS.includes(n as ServerName));
  if (unknown.length > 0) {
    throw new Error(
      `WOODSTREAM_TEST_SERVERS: unknown server(s) ${unknown.join(', ')}; use ${ALL_SERVERS.join(',')}`,
    );
  }
  return new Set(names as ServerName[]);
}

/** Starts radosgw, retrying once: a cold single-node Ceph start occasionally fails. */
async function startRadosgwWithRetry(): Promise<RadosgwServer> {
  try {
    return await startRadosgw();
  } catch (err) {
    console.error(`radosgw failed to start, retrying once: ${String(err)}`);
    return startRadosgw();
  }
}

async function startAll(): Promise<{ info: HarnessInfo; stop: () => Promise<void> }> {
  const wanted = selectedServers();
  const skip = Promise.resolve(undefined);
  const results = await Promise.allSettled([
    wanted.has('etcd') ? startEtcd() : skip,
    wanted.has('s3rver') ? startS3rver() : skip,
    wanted.has('radosgw') ? startRadosgwWithRetry() : skip,
  ] as const);
  const running = results.flatMap((r) =>
    r.status === 'fulfilled' && r.value !== undefined ? [r.value] : [],
  );
  const stop = async (): Promise<void> => {
    await Promise.allSettled(running.map((server) => server.stop()));
  };
  const failed = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  if (failed.length > 0) {
    await stop();
    throw new AggregateError(
      failed,
      `test servers failed to start: ${failed.map(String).join('; ')}`,
    );
  }
  const [etcd, s3rver, radosgw] = results.map((r) =>
    r.status === 'fulfilled' ? r.value : undefined,
  ) as [EtcdServer | undefined, S3rverServer | undefined, RadosgwServer | undefined];
  const info: HarnessInfo = {};
  if (etcd) info.etcdEndpoint = etcd.endpoint;
  if (s3rver) info.s3rver = s3rver.s3;
  if (radosgw) info.radosgw = radosgw.s3;
  return { info, stop };
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
