import { credentials, Server, ServerCredentials, type ServiceError } from '@grpc/grpc-js';
import {
  AccessMode,
  AssignmentServiceClient,
  AssignmentServiceService,
  type AssignmentDiscoverResponse,
  type FullAssignment,
} from '@woodstream/proto';
import { fromServiceError } from '@woodstream/streaming';
import { waitFor } from '@woodstream/testing';
import { FileMetadataStore, type MetadataStore } from '@woodstream/woodpecker';
import { afterEach, describe, expect, it } from 'vitest';
import { registerSession, startFakeNode } from '../test/fake-streaming-node.js';
import { createAssignmentServiceHandlers } from './assignment-service.js';
import { StreamingCoordinator } from './streaming-coordinator.js';

const WAIT = { timeoutMs: 15_000 };
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function serve(coordinator: StreamingCoordinator): Promise<AssignmentServiceClient> {
  const server = new Server();
  server.addService(AssignmentServiceService, createAssignmentServiceHandlers(coordinator));
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  cleanups.push(() => server.forceShutdown());
  const client = new AssignmentServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
  cleanups.push(() => client.close());
  return client;
}

async function setup(): Promise<{ store: MetadataStore; coordinator: StreamingCoordinator }> {
  const store = await FileMetadataStore.open({});
  cleanups.push(() => store.close());
  for (const id of [1, 2]) {
    const node = await startFakeNode(id);
    cleanups.push(() => node.stop());
    await registerSession(store, node);
  }
  const coordinator = await StreamingCoordinator.start(
    {
      pchannelCount: 4,
      balanceIntervalMs: 50,
      moveCooldownMs: 60_000,
      channelBackoffInitialMs: 10,
      channelBackoffMaxMs: 100,
    },
    { metadata: store },
  );
  cleanups.push(() => coordinator.stop());
  return { store, coordinator };
}

function channelsOf(full: FullAssignment): Map<string, { term: bigint; serverId: bigint }> {
  const out = new Map<string, { term: bigint; serverId: bigint }>();
  for (const a of full.assignments)
    for (const c of a.channels) out.set(c.name, { term: c.term, serverId: a.node!.serverId });
  return out;
}

describe('AssignmentService.AssignmentDiscover', () => {
  it('pushes snapshots with growing versions, handles report_error and close', async () => {
    const { coordinator } = await setup();
    const client = await serve(coordinator);
    const call = client.assignmentDiscover();
    const snapshots: FullAssignment[] = [];
    let closed = false;
    let ended = false;
    call.on('data', (response: AssignmentDiscoverResponse) => {
      if (response.response?.$case === 'fullAssignment')
        snapshots.push(response.response.fullAssignment);
      if (response.response?.$case === 'close') closed = true;
    });
    call.on('end', () => (ended = true));
    call.on('error', () => undefined);

    const full = await waitFor(() => snapshots.find((s) => channelsOf(s).size === 4), WAIT);
    expect(full.pchannelCount).toBe(4);
    expect(full.pchannels).toEqual(['wal-0000', 'wal-0001', 'wal-0002', 'wal-0003']);
    expect(
      full.assignments
        .flatMap((a) => a.channels)
        .every((c) => c.accessMode === AccessMode.ACCESS_MODE_READ_WRITE),
    ).toBe(true);
    expect(full.version!.global).toBeGreaterThanOrEqual(1n);

    const [name, current] = [...channelsOf(full)][0]!;
    // A stale report (older term) changes nothing; a current one re-assigns the channel.
    call.write({
      command: {
        $case: 'reportError',
        reportError: {
          pchannel: { name, term: current.term - 1n, accessMode: 1 },
          error: undefined,
        },
      },
    });
    call.write({
      command: {
        $case: 'reportError',
        reportError: { pchannel: { name, term: current.term, accessMode: 1 }, error: undefined },
      },
    });
    const moved = await waitFor(() => {
      const last = snapshots.at(-1);
      const channel = last && channelsOf(last).get(name);
      return channel !== undefined && channel.term === current.term + 1n && last;
    }, WAIT);
    expect(coordinator.listChannels().find((c) => c.name === name)).toMatchObject({
      state: 'ASSIGNED',
      term: Number(current.term) + 1,
    });
    expect(channelsOf(moved).size).toBe(4);

    const versions = snapshots.map((s) => [s.version!.global, s.version!.local] as const);
    for (let i = 1; i < versions.length; i++) {
      const [g0, l0] = versions[i - 1]!;
      const [g1, l1] = versions[i]!;
      expect(g1 > g0 || (g1 === g0 && l1 > l0)).toBe(true);
    }

    call.write({ command: { $case: 'close', close: {} } });
    await waitFor(() => closed && ended, WAIT);
  });

  it('refuses streams on a standby with a retryable ON_SHUTDOWN', async () => {
    const { store, coordinator } = await setup();
    const standby = await StreamingCoordinator.start({ pchannelCount: 4 }, { metadata: store });
    cleanups.push(() => standby.stop());
    expect(coordinator.isActive).toBe(true);
    expect(standby.isActive).toBe(false);
    expect(standby.status().leaderId).toBe(coordinator.status().coordinatorId);
    const client = await serve(standby);
    const call = client.assignmentDiscover();
    call.on('data', () => undefined);
    const error = await new Promise<ServiceError>((resolve) => call.on('error', resolve));
    const streamingError = fromServiceError(error);
    expect(streamingError.code).toBe('ON_SHUTDOWN');
    expect(streamingError.retryable).toBe(true);
  });
});
