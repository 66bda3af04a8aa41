// Helpers to run a real cluster for e2e tests: a coordinator and N nodes as processes on the
// harness etcd and radosgw, each stopped when the test ends.
import { credentials } from '@grpc/grpc-js';
import { AssignmentServiceClient, type FullAssignment } from '@woodstream/proto';
import {
  freePort,
  harness,
  type ManagedProcess,
  uniqueName,
  waitFor,
  type TestBucket,
} from '@woodstream/testing';
import { onTestFailed, onTestFinished } from 'vitest';
import { spawnCli } from './cli.js';

/**
 * A running cluster. Disposing it kills its processes: declare it after the test bucket
 * (`await using`), so the processes are gone before the bucket is emptied and deleted.
 */
export interface Cluster extends AsyncDisposable {
  /** Client target: one address, or `ipv4:a,b` when there are standby coordinators. */
  coordinator: string;
  /** Base URL of each coordinator's HTTP server (admin API, /metrics), by index. */
  adminUrls: string[];
  coordinators: ManagedProcess[];
  nodes: ManagedProcess[];
  startNode(): Promise<ManagedProcess>;
  /** Starts coordinator `index` again on its port (after it was stopped). */
  restartCoordinator(index: number): Promise<ManagedProcess>;
}

/** Spawns `woodstream <args>`, prints its output if the test fails and kills it when the test ends. */
function spawnOwned(name: string, args: string[], owned: ManagedProcess[]): ManagedProcess {
  const proc = spawnCli(name, args);
  owned.push(proc);
  onTestFailed(() =>
    console.error(
      `--- ${name} (pid ${proc.pid ?? '?'}) ---\n${proc.output().split('\n').slice(-60).join('\n')}`,
    ),
  );
  onTestFinished(async () => {
    await proc.stop({ signal: 'SIGKILL' });
  });
  return proc;
}

/** Starts a coordinator and `nodeCount` nodes in object mode; resolves when every channel is assigned. */
export async function startCluster(options: {
  bucket: TestBucket;
  nodeCount: number;
  pchannelCount: number;
  /** Coordinators (the first becomes active). @default 1 */
  coordinatorCount?: number;
  /** How long a node's SIGTERM waits for its channels to move away. @default 20000 */
  drainTimeoutMs?: number;
}): Promise<Cluster> {
  const { etcdEndpoint, radosgw } = harness();
  const rootPrefix = `/${uniqueName('cluster')}/`;
  // Every process of this cluster, for dispose (and onTestFinished, as a safety net).
  const owned: ManagedProcess[] = [];
  const metadata = [
    '--metadata.kind=etcd',
    `--metadata.etcdEndpoints=${etcdEndpoint}`,
    `--metadata.rootPrefix=${rootPrefix}`,
  ];
  const ports: number[] = [];
  const httpPorts: number[] = [];
  for (let i = 0; i < (options.coordinatorCount ?? 1); i++) {
    ports.push(await freePort());
    httpPorts.push(await freePort());
  }
  const startCoordinator = async (index: number): Promise<ManagedProcess> => {
    const proc = spawnOwned(
      `coordinator-${index}`,
      [
        'run',
        'coordinator',
        `--grpc.port=${ports[index] ?? 0}`,
        `--http.port=${httpPorts[index] ?? 0}`,
        `--pchannelCount=${options.pchannelCount}`,
        '--balanceIntervalMs=500',
        '--sessionTtlMs=2000',
        '--moveCooldownMs=0',
        '--operationTimeoutMs=20000',
        ...metadata,
      ],
      owned,
    );
    await proc.waitForOutput(/"msg":"ready"/, { timeoutMs: 60_000 });
    return proc;
  };
  const coordinators: ManagedProcess[] = [];
  for (let i = 0; i < ports.length; i++) coordinators.push(await startCoordinator(i));
  const coordinator =
    ports.length === 1
      ? `127.0.0.1:${ports[0]}`
      : `ipv4:${ports.map((p) => `127.0.0.1:${p}`).join(',')}`;
  const probe = coordinator;
  let nodeIndex = 0;
  const startNode = async (): Promise<ManagedProcess> => {
    const n = ++nodeIndex;
    const proc = spawnOwned(
      `node-${n}`,
      [
        'run',
        'node',
        '--grpc.port=0',
        '--http.port=0',
        '--sessionTtlMs=2000',
        '--timeTickIntervalMs=100',
        `--drainTimeoutMs=${options.drainTimeoutMs ?? 20_000}`,
        '--wal.flushAgeMs=5',
        ...metadata,
        '--storage.mode=object',
        `--storage.s3.endpoint=${radosgw.endpoint}`,
        `--storage.s3.region=${radosgw.region}`,
        `--storage.s3.bucket=${options.bucket.name}`,
        `--storage.s3.accessKeyId=${radosgw.accessKeyId}`,
        `--storage.s3.secretAccessKey=${radosgw.secretAccessKey}`,
      ],
      owned,
    );
    await proc.waitForOutput(/"msg":"ready"/, { timeoutMs: 60_000 });
    return proc;
  };
  const nodes: ManagedProcess[] = [];
  for (let i = 0; i < options.nodeCount; i++) nodes.push(await startNode());
  await waitFor(
    async () => {
      const snapshot = await fetchAssignment(probe);
      const assigned = snapshot.assignments.reduce((n, a) => n + a.channels.length, 0);
      return (
        assigned === options.pchannelCount &&
        snapshot.assignments.filter((a) => a.channels.length > 0).length === options.nodeCount
      );
    },
    { timeoutMs: 90_000, intervalMs: 250, description: 'every pchannel assigned across all nodes' },
  );
  return {
    coordinator,
    adminUrls: httpPorts.map((p) => `http://127.0.0.1:${p}`),
    coordinators,
    nodes,
    startNode,
    restartCoordinator: async (index) => {
      const proc = await startCoordinator(index);
      coordinators[index] = proc;
      return proc;
    },
    async [Symbol.asyncDispose]() {
      await Promise.all(owned.map((p) => p.stop({ signal: 'SIGKILL' })));
    },
  };
}

/** Round-robin over the targets, so that a standby (which refuses) does not pin every call. */
export const ROUND_ROBIN = {
  'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }),
};

/**
 * One assignment snapshot from the active coordinator. A standby (or a coordinator that just
 * died) refuses the stream; with round-robin the next attempt goes to the next address.
 */
export async function fetchAssignment(
  coordinator: string,
  timeoutMs = 10_000,
): Promise<FullAssignment> {
  const client = new AssignmentServiceClient(
    coordinator,
    credentials.createInsecure(),
    ROUND_ROBIN,
  );
  try {
    return await waitFor(
      () =>
        new Promise<FullAssignment>((resolve, reject) => {
          const call = client.assignmentDiscover();
          const timer = setTimeout(() => {
            call.cancel();
            reject(new Error('no assignment snapshot'));
          }, 2_000);
          call.on(
            'data',
            (frame: { response?: { $case: string; fullAssignment?: FullAssignment } }) => {
              if (
                frame.response?.$case !== 'fullAssignment' ||
                frame.response.fullAssignment === undefined
              )
                return;
              clearTimeout(timer);
              resolve(frame.response.fullAssignment);
              call.cancel();
            },
          );
          call.on('error', (err) => {
            clearTimeout(timer);
            reject(err);
          });
        }),
      {
        timeoutMs,
        intervalMs: 50,
        description: 'an assignment snapshot from the active coordinator',
      },
    );
  } finally {
    client.close();
  }
}

/** The HTTP address (host:port) a service process logged in its "ready" line. */
export function httpAddressOf(proc: ManagedProcess): string {
  const match = /"http":"([^"]+)"[^\n]*"msg":"ready"/.exec(proc.output());
  if (match?.[1] === undefined) throw new Error(`${proc.name} has not logged its HTTP address`);
  return match[1];
}

/** One admin API call; resolves with the status and the parsed JSON body. */
export async function adminCall(
  baseUrl: string,
  method: 'GET' | 'PUT' | 'POST',
  path: string,
  body?: unknown,
): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${baseUrl}${path}`, {
    method,
    signal: AbortSignal.timeout(10_000),
    ...(body !== undefined
      ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }
      : {}),
  });
  const text = await res.text();
  return { status: res.status, body: text === '' ? undefined : (JSON.parse(text) as unknown) };
}

/** GET `path` and expect 200; the parsed body. */
export async function adminGet<T>(baseUrl: string, path: string): Promise<T> {
  const { status, body } = await adminCall(baseUrl, 'GET', path);
  if (status !== 200) throw new Error(`GET ${path}: HTTP ${status} ${JSON.stringify(body)}`);
  return body as T;
}
