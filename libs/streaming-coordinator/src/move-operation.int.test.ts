import { StreamingError } from '@woodstream/streaming';
import { waitFor } from '@woodstream/testing';
import type { MetadataStore } from '@woodstream/woodpecker';
import { describe, expect, it } from 'vitest';
import { coordinatorFixture, FAST_COORDINATOR } from '../test/coordinator-fixture.js';
import type { FakeNode } from '../test/fake-streaming-node.js';
import type { CoordinatorOptions } from './coordinator-options.js';
import type { ChannelView, StreamingCoordinator } from './streaming-coordinator.js';

const { openStore, addNode, startCoordinator } = coordinatorFixture({
  ...FAST_COORDINATOR,
  pchannelCount: 4,
  operationTimeoutMs: 20_000,
});
const WAIT = { timeoutMs: 15_000 };

/** A store, two fake nodes and an active coordinator with every channel assigned, balancing off. */
async function setup(options: CoordinatorOptions = {}): Promise<{
  store: MetadataStore;
  nodes: FakeNode[];
  coordinator: StreamingCoordinator;
  channels: ChannelView[];
}> {
  const store = await openStore();
  const nodes: FakeNode[] = [];
  for (const id of [1, 2]) nodes.push((await addNode(store, id)).node);
  const coordinator = await startCoordinator(store, options);
  const channels = await waitFor(() => {
    const all = coordinator.listChannels();
    return all.every((c) => c.state === 'ASSIGNED') && all;
  }, WAIT);
  // Keeps the balancer from moving channels back while a test looks at them.
  await coordinator.setAllowRebalance(false);
  return { store, nodes, coordinator, channels };
}

describe('StreamingCoordinator move operations', () => {
  it('reports a move as assigning while the target opens the channel, then done at the new term', async () => {
    const { nodes, coordinator, channels } = await setup();
    const channel = channels.find((c) => c.nodeId === 1)!;
    nodes[1]!.hangAssign(channel.name);
    const { operationId } = await coordinator.startMove(channel.name, 2);
    const assigning = await waitFor(() => {
      const op = coordinator.getOperation(operationId);
      return op?.state === 'assigning' && op;
    }, WAIT);
    expect(assigning).toMatchObject({
      pchannel: channel.name,
      targetNodeId: 2,
      term: channel.term + 1,
      reason: null,
      finishedAtMs: null,
    });
    // The old owner removed the channel before the new term was assigned.
    expect(nodes[0]!.held.has(channel.name)).toBe(false);
    // A second request for the same move joins the running one.
    expect(await coordinator.startMove(channel.name, 2)).toEqual({ operationId });
    nodes[1]!.release(channel.name);
    const done = await waitFor(() => {
      const op = coordinator.getOperation(operationId);
      return op?.state === 'done' && op;
    }, WAIT);
    expect(done.term).toBe(channel.term + 1);
    expect(done.finishedAtMs).toBeGreaterThanOrEqual(done.createdAtMs);
    expect(coordinator.listChannels().find((c) => c.name === channel.name)).toMatchObject({
      state: 'ASSIGNED',
      nodeId: 2,
      term: channel.term + 1,
    });
  });

  it('reports a failed Assign as a failed operation with the reason', async () => {
    const { nodes, coordinator, channels } = await setup();
    const channel = channels.find((c) => c.nodeId === 1)!;
    nodes[1]!.failAssign(channel.name, new StreamingError('UNRECOVERABLE', 'disk broken'));
    const { operationId } = await coordinator.startMove(channel.name, 2);
    const failed = await waitFor(() => {
      const op = coordinator.getOperation(operationId);
      return op?.state === 'failed' && op;
    }, WAIT);
    expect(failed.reason).toContain('disk broken');
    expect(failed.term).toBe(channel.term + 1);
  });

  it('fails a move that a later move to another node supersedes', async () => {
    const { nodes, coordinator, channels } = await setup();
    const channel = channels.find((c) => c.nodeId === 1)!;
    nodes[1]!.hangAssign(channel.name);
    const first = await coordinator.startMove(channel.name, 2);
    await waitFor(() => coordinator.getOperation(first.operationId)?.state === 'assigning', WAIT);
    const second = await coordinator.startMove(channel.name, 1);
    expect(coordinator.getOperation(first.operationId)).toMatchObject({
      state: 'failed',
      reason: expect.stringContaining('superseded') as unknown,
    });
    await waitFor(() => coordinator.getOperation(second.operationId)?.state === 'done', WAIT);
  });

  it('gives a done operation for a channel already on the target and rejects bad moves', async () => {
    const { coordinator, channels } = await setup();
    const channel = channels.find((c) => c.nodeId === 2)!;
    const { operationId } = await coordinator.startMove(channel.name, 2);
    expect(coordinator.getOperation(operationId)).toMatchObject({
      state: 'done',
      term: channel.term,
    });
    await expect(coordinator.startMove('nope', 2)).rejects.toMatchObject({
      code: 'CHANNEL_NOT_EXIST',
    });
    await expect(coordinator.startMove(channel.name, 99)).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    expect(coordinator.getOperation('unknown')).toBeUndefined();
  });

  it('remembers only the last maxOperations operations', async () => {
    const { coordinator, channels } = await setup({ maxOperations: 1 });
    const [a, b] = channels;
    const first = await coordinator.startMove(a!.name, a!.nodeId!);
    const second = await coordinator.startMove(b!.name, b!.nodeId!);
    expect(coordinator.getOperation(first.operationId)).toBeUndefined();
    expect(coordinator.getOperation(second.operationId)?.state).toBe('done');
  });
});
