import { StreamingError, streamingKeys, type PChannelMeta } from '@woodstream/streaming';
import { waitFor } from '@woodstream/testing';
import type { MetadataStore } from '@woodstream/woodpecker';
import { describe, expect, it } from 'vitest';
import { coordinatorFixture, FAST_COORDINATOR } from '../test/coordinator-fixture.js';
import type { CoordinatorLogger } from './coordinator-logger.js';
import { StreamingCoordinator, type ChannelView } from './streaming-coordinator.js';

const { openStore, addNode, startCoordinator } = coordinatorFixture({
  ...FAST_COORDINATOR,
  pchannelCount: 6,
  operationTimeoutMs: 20_000,
});
const WAIT = { timeoutMs: 15_000 };

async function readMeta(store: MetadataStore, name: string): Promise<PChannelMeta> {
  const kv = await store.get(streamingKeys.pchannel(name));
  if (kv === undefined) throw new Error(`no meta for ${name}`);
  return JSON.parse(Buffer.from(kv.value).toString('utf8')) as PChannelMeta;
}

function allAssigned(
  coordinator: StreamingCoordinator,
  where?: (c: ChannelView) => boolean,
): ChannelView[] | false {
  const channels = coordinator.listChannels();
  return channels.every((c) => c.state === 'ASSIGNED' && (where?.(c) ?? true)) && channels;
}

describe('StreamingCoordinator', () => {
  it('creates the cluster once and keeps its pchannel count forever', async () => {
    const store = await openStore();
    const warnings: string[] = [];
    const first = await startCoordinator(store, { pchannelCount: 4 });
    expect(first.listChannels().map((c) => c.name)).toEqual([
      'wal-0000',
      'wal-0001',
      'wal-0002',
      'wal-0003',
    ]);
    expect(await readMeta(store, 'wal-0002')).toMatchObject({
      state: 'UNINITIALIZED',
      term: 0,
      nodeId: null,
    });
    await first.stop();

    const logger: CoordinatorLogger = {
      debug: () => undefined,
      info: () => undefined,
      warn: (message) => warnings.push(message),
      error: () => undefined,
    };
    const second = await startCoordinator(store, { pchannelCount: 8 }, logger);
    expect(second.status().pchannelCount).toBe(4);
    const cluster = JSON.parse(
      Buffer.from((await store.get(streamingKeys.cluster))!.value).toString(),
    ) as {
      pchannels: string[];
    };
    expect(cluster.pchannels).toHaveLength(4);
    expect(warnings.some((w) => w.includes('pchannelCount ignored'))).toBe(true);
  });

  it('spreads 16 channels evenly over 3 nodes and tells each node its channels', async () => {
    const store = await openStore();
    const nodes = await Promise.all([1, 2, 3].map((id) => addNode(store, id)));
    const coordinator = await startCoordinator(store, { pchannelCount: 16 });
    expect(coordinator.isActive).toBe(true);
    const channels = await waitFor(() => allAssigned(coordinator), WAIT);
    const perNode = [1, 2, 3].map((id) => channels.filter((c) => c.nodeId === id).length).sort();
    expect(perNode).toEqual([5, 5, 6]);
    for (const { node } of nodes) {
      const mine = channels.filter((c) => c.nodeId === node.serverId);
      expect([...node.held.keys()].sort()).toEqual(mine.map((c) => c.name).sort());
    }
    expect(
      coordinator
        .listNodes()
        .map((n) => n.channels.length)
        .sort(),
    ).toEqual([5, 5, 6]);
  });

  it('persists ASSIGNING with the new term before it calls Assign', async () => {
    const store = await openStore();
    const { node } = await addNode(store, 1);
    const violations: string[] = [];
    let checked = 0;
    node.onAssign = async (pchannel, term) => {
      const meta = await readMeta(store, pchannel);
      checked++;
      if (meta.state !== 'ASSIGNING' || meta.term !== term || meta.nodeId !== 1) {
        violations.push(`${pchannel}@${term}: ${JSON.stringify(meta)}`);
      }
    };
    const coordinator = await startCoordinator(store);
    await waitFor(() => allAssigned(coordinator), WAIT);
    expect(checked).toBe(6);
    expect(violations).toEqual([]);
  });

  it('assigns the other channels while one Assign hangs', async () => {
    const store = await openStore();
    const { node } = await addNode(store, 1);
    node.hangAssign('wal-0003');
    const coordinator = await startCoordinator(store);
    const channels = await waitFor(() => {
      const all = coordinator.listChannels();
      const others = all.filter((c) => c.name !== 'wal-0003');
      return others.every((c) => c.state === 'ASSIGNED') && all;
    }, WAIT);
    // The hang is still going on while the others are done.
    expect(node.hanging()).toBe(1);
    expect(channels.find((c) => c.name === 'wal-0003')).toMatchObject({
      state: 'ASSIGNING',
      task: 'RUNNING',
    });
    node.release('wal-0003');
    await waitFor(() => allAssigned(coordinator), WAIT);
  });

  it('aborts a hanging Assign when its node leaves and places the channel elsewhere', async () => {
    const store = await openStore();
    const a = await addNode(store, 1);
    a.node.hangAssign('wal-0000');
    const coordinator = await startCoordinator(store, { pchannelCount: 2 });
    await waitFor(() => a.node.hanging() === 1, WAIT);
    const b = await addNode(store, 2);
    await a.session.remove();
    const channels = await waitFor(() => allAssigned(coordinator, (c) => c.nodeId === 2), WAIT);
    // The call was cancelled (not left to its 20 s deadline) and the new term went to node 2.
    await waitFor(() => a.node.hanging() === 0, WAIT);
    expect(channels.find((c) => c.name === 'wal-0000')?.term).toBe(2);
    expect(b.node.held.get('wal-0000')).toBe(2);
  });

  it('retries a failing channel with backoff without holding up the others', async () => {
    const store = await openStore();
    const { node } = await addNode(store, 1);
    node.failAssign('wal-0001', new StreamingError('RESOURCE_EXHAUSTED', 'disk busy'));
    const coordinator = await startCoordinator(store);
    await waitFor(() => {
      const all = coordinator.listChannels();
      const failing = all.find((c) => c.name === 'wal-0001');
      return (
        all.filter((c) => c.name !== 'wal-0001').every((c) => c.state === 'ASSIGNED') &&
        (failing?.failedAttempts ?? 0) >= 2
      );
    }, WAIT);
    expect(coordinator.listChannels().find((c) => c.name === 'wal-0001')?.lastError).toContain(
      'disk busy',
    );
    node.release('wal-0001');
    const channels = await waitFor(() => allAssigned(coordinator), WAIT);
    // Every retry reuses the persisted term: failures do not burn terms.
    expect(channels.find((c) => c.name === 'wal-0001')?.term).toBe(1);
  });

  it('places a channel whose WAL keeps failing to open on one node on another, with a new term', async () => {
    const store = await openStore();
    const a = await addNode(store, 1);
    const b = await addNode(store, 2);
    // wal-0000 is placed first, on node 1 (lowest id), where its open always fails.
    a.node.failAssign('wal-0000', new StreamingError('RESOURCE_EXHAUSTED', 'disk full'));
    // On node 2 its first open fails once, a passing failure: it must not move it again.
    let failedOnB = 0;
    b.node.onAssign = (pchannel) =>
      pchannel === 'wal-0000' && failedOnB++ === 0
        ? Promise.reject(new StreamingError('RESOURCE_EXHAUSTED', 'passing'))
        : Promise.resolve();
    const coordinator = await startCoordinator(store, { moveCooldownMs: 60_000 });
    const channels = await waitFor(
      () => allAssigned(coordinator, (c) => c.name !== 'wal-0000' || c.nodeId === 2),
      WAIT,
    );
    const attemptsOnA = a.node.calls.filter((c) => c.op === 'assign' && c.pchannel === 'wal-0000');
    expect(attemptsOnA.length).toBeGreaterThanOrEqual(3);
    // Retries on node 1 kept the term; node 2 got the next one.
    expect(new Set(attemptsOnA.map((c) => c.term))).toEqual(new Set([1]));
    expect(channels.find((c) => c.name === 'wal-0000')?.term).toBe(2);
    expect(b.node.held.get('wal-0000')).toBe(2);
    expect(failedOnB).toBe(2);
  });

  it('moves the channels of a node whose session disappears, skipping Remove to it', async () => {
    const store = await openStore();
    const a = await addNode(store, 1);
    const b = await addNode(store, 2);
    const coordinator = await startCoordinator(store);
    const before = await waitFor(() => allAssigned(coordinator), WAIT);
    const lost = before.filter((c) => c.nodeId === 1);
    expect(lost.length).toBeGreaterThan(0);
    await a.session.remove();
    const after = await waitFor(() => allAssigned(coordinator, (c) => c.nodeId === 2), WAIT);
    for (const channel of lost) {
      expect(after.find((c) => c.name === channel.name)!.term).toBeGreaterThan(channel.term);
    }
    expect(a.node.calls.filter((c) => c.op === 'remove')).toEqual([]);
    expect(b.node.held.size).toBe(6);
  });

  it('re-places a channel its node no longer holds (CollectStatus), leaving the others alone', async () => {
    const store = await openStore();
    const a = await addNode(store, 1);
    const b = await addNode(store, 2);
    const coordinator = await startCoordinator(store);
    const before = await waitFor(() => allAssigned(coordinator), WAIT);
    const lost = before.find((c) => c.nodeId === 1)!;
    // The node's WAL of that channel failed: it stops reporting it, nobody told the coordinator.
    a.node.held.delete(lost.name);
    const after = await waitFor(
      () => allAssigned(coordinator, (c) => c.name !== lost.name || c.term > lost.term),
      WAIT,
    );
    const replaced = after.find((c) => c.name === lost.name)!;
    expect(replaced.term).toBeGreaterThan(lost.term);
    const owner = replaced.nodeId === 1 ? a.node : b.node;
    expect(owner.held.get(lost.name)).toBe(replaced.term);
    for (const channel of before) {
      if (channel.name === lost.name) continue;
      expect(after.find((c) => c.name === channel.name)).toMatchObject({
        term: channel.term,
        nodeId: channel.nodeId,
      });
    }
    expect((await readMeta(store, lost.name)).term).toBe(replaced.term);
  });

  it('removes the old copy a node still holds of a channel placed elsewhere, leaving the owner alone', async () => {
    const store = await openStore();
    const a = await addNode(store, 1);
    const b = await addNode(store, 2);
    const coordinator = await startCoordinator(store);
    const before = await waitFor(() => allAssigned(coordinator), WAIT);
    const moved = before.find((c) => c.nodeId === 2)!;
    // Node 1 still holds an older term of node 2's channel (it lost its session while the
    // channel moved, say): nobody told it to close, and an idle WAL never learns of the fence.
    a.node.held.set(moved.name, moved.term - 1);
    await waitFor(() => !a.node.held.has(moved.name), {
      ...WAIT,
      description: 'the stale copy removed',
    });
    expect(a.node.calls.find((c) => c.op === 'remove' && c.pchannel === moved.name)?.term).toBe(
      moved.term - 1,
    );
    // The owner and every assignment are untouched.
    expect(b.node.held.get(moved.name)).toBe(moved.term);
    expect(b.node.calls.filter((c) => c.op === 'remove')).toEqual([]);
    expect(allAssigned(coordinator)).toEqual(before);
  });

  it('drains a stopping node: Remove on it before Assign elsewhere', async () => {
    const store = await openStore();
    const a = await addNode(store, 1);
    const b = await addNode(store, 2);
    const coordinator = await startCoordinator(store);
    const before = await waitFor(() => allAssigned(coordinator), WAIT);
    const drained = before.filter((c) => c.nodeId === 1);
    await a.session.setStopping(true);
    await waitFor(() => allAssigned(coordinator, (c) => c.nodeId === 2), WAIT);
    expect(a.node.held.size).toBe(0);
    for (const channel of drained) {
      const removed = a.node.calls.find((c) => c.op === 'remove' && c.pchannel === channel.name);
      const assigned = b.node.calls.find((c) => c.op === 'assign' && c.pchannel === channel.name);
      expect(removed?.term).toBe(channel.term);
      expect(assigned?.term).toBe(channel.term + 1);
      expect(removed!.seq).toBeLessThan(assigned!.seq);
    }
    expect(coordinator.listNodes().find((n) => n.serverId === 1)).toMatchObject({
      stopping: true,
      healthy: false,
    });
  });

  it('keeps freeze and allowRebalance across a coordinator restart', async () => {
    const store = await openStore();
    await addNode(store, 1);
    await addNode(store, 2);
    const first = await startCoordinator(store);
    await waitFor(() => allAssigned(first), WAIT);
    await first.freezeNode(1);
    await first.setAllowRebalance(false);
    await waitFor(() => allAssigned(first, (c) => c.nodeId === 2), WAIT);
    await first.stop();

    const second = await startCoordinator(store);
    expect(second.currentSettings()).toEqual({ allowRebalance: false, frozenNodeIds: [1] });
    expect(second.listNodes().find((n) => n.serverId === 1)).toMatchObject({
      frozen: true,
      healthy: false,
    });
    // Unfrozen but rebalancing off: the node may receive channels only when asked.
    await second.unfreezeNode(1);
    await second.setAllowRebalance(true);
    const spread = await waitFor(() => allAssigned(second, (c) => c.nodeId !== null), WAIT).then(
      () =>
        waitFor(() => {
          const channels = second.listChannels();
          return (
            channels.filter((c) => c.nodeId === 1 && c.state === 'ASSIGNED').length === 3 &&
            channels
          );
        }, WAIT),
    );
    expect(spread.filter((c) => c.nodeId === 2)).toHaveLength(3);
    await second.stop();
    const third = await startCoordinator(store);
    expect(third.currentSettings()).toEqual({ allowRebalance: true, frozenNodeIds: [] });
  });

  it('moves a channel on request and bumps its term', async () => {
    const store = await openStore();
    const a = await addNode(store, 1);
    const b = await addNode(store, 2);
    const coordinator = await startCoordinator(store);
    const before = await waitFor(() => allAssigned(coordinator), WAIT);
    await coordinator.setAllowRebalance(false); // keep the balancer from moving it back
    const channel = before.find((c) => c.nodeId === 1)!;
    const term = await coordinator.moveChannel(channel.name, 2);
    expect(term).toBe(channel.term + 1);
    await waitFor(
      () =>
        coordinator
          .listChannels()
          .find((c) => c.name === channel.name && c.state === 'ASSIGNED' && c.nodeId === 2),
      WAIT,
    );
    expect(a.node.held.has(channel.name)).toBe(false);
    expect(b.node.held.get(channel.name)).toBe(term);
    expect(await coordinator.moveChannel(channel.name, 2)).toBe(term); // already there
    await expect(coordinator.moveChannel('nope', 2)).rejects.toMatchObject({
      code: 'CHANNEL_NOT_EXIST',
    });
    await expect(coordinator.moveChannel(channel.name, 99)).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
  });

  it('assigns nothing without a healthy node and catches up when one arrives', async () => {
    const store = await openStore();
    const coordinator = await startCoordinator(store);
    expect(coordinator.status()).toMatchObject({ role: 'ACTIVE', healthyNodes: 0 });
    expect(coordinator.listChannels().every((c) => c.state === 'UNINITIALIZED')).toBe(true);
    await addNode(store, 7);
    await waitFor(() => allAssigned(coordinator, (c) => c.nodeId === 7 && c.term === 1), WAIT);
  });

  it('rejects invalid options listing every problem', async () => {
    const store = await openStore();
    const error: unknown = await StreamingCoordinator.start(
      { pchannelCount: 5000, balanceIntervalMs: -1 },
      { metadata: store },
    ).catch((err: unknown) => err);
    expect(error).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect((error as Error).message).toMatch(/pchannelCount.*balanceIntervalMs/);
  });
});
