import { streamingKeys } from '@woodstream/streaming';
import { waitFor } from '@woodstream/testing';
import type { MetadataStore } from '@woodstream/woodpecker';
import { describe, expect, it } from 'vitest';
import { coordinatorFixture, FAST_COORDINATOR } from '../test/coordinator-fixture.js';
import type { StreamingCoordinator } from './streaming-coordinator.js';

const { openStore, addNode, startCoordinator } = coordinatorFixture({
  ...FAST_COORDINATOR,
  pchannelCount: 4,
});
const WAIT = { timeoutMs: 15_000 };

/** What a streaming node writes on the first produce to `vchannel` (create-if-absent). */
async function register(store: MetadataStore, pchannel: string, vchannel: string): Promise<void> {
  const key = streamingKeys.vchannel(pchannel, vchannel);
  await store.txn(
    [{ key, modRevision: 0 }],
    [{ type: 'put', key, value: new TextEncoder().encode('{}') }],
  );
}

function counts(coordinator: StreamingCoordinator): Record<string, number> {
  return Object.fromEntries(coordinator.listChannels().map((c) => [c.name, c.vchannelCount]));
}

describe('vchannel counts in the coordinator', () => {
  it('counts registered vchannels per pchannel from the watch, per node too, and again after a restart', async () => {
    const store = await openStore();
    await addNode(store, 1);
    const coordinator = await startCoordinator(store, { pchannelCount: 2 });
    await waitFor(() => coordinator.listChannels().every((c) => c.state === 'ASSIGNED'), WAIT);
    expect(counts(coordinator)).toEqual({ 'wal-0000': 0, 'wal-0001': 0 });

    for (const v of ['a', 'b', 'c']) await register(store, 'wal-0000', v);
    await register(store, 'wal-0001', 'a');
    // Registering again (a lost race) and a pchannel outside the cluster change nothing.
    await register(store, 'wal-0000', 'a');
    await register(store, 'wal-9999', 'x');
    // An overwrite of an existing key (version 2) is not a new vchannel.
    await store.txn(
      [],
      [{ type: 'put', key: streamingKeys.vchannel('wal-0000', 'a'), value: new Uint8Array(0) }],
    );
    await waitFor(() => counts(coordinator)['wal-0001'] === 1, WAIT);
    expect(counts(coordinator)).toEqual({ 'wal-0000': 3, 'wal-0001': 1 });
    expect(coordinator.listNodes()).toMatchObject([{ serverId: 1, vchannelCount: 4 }]);

    // Deleting is not done by the service, but an operator's delete is counted.
    await store.txn([], [{ type: 'delete', key: streamingKeys.vchannel('wal-0000', 'c') }]);
    await waitFor(() => counts(coordinator)['wal-0000'] === 2, WAIT);

    await coordinator.stop();
    const restarted = await startCoordinator(store, { pchannelCount: 2 });
    // Loaded before the coordinator runs: no wait needed.
    expect(counts(restarted)).toEqual({ 'wal-0000': 2, 'wal-0001': 1 });
  });

  it('moves channels to even out skewed vchannel counts', async () => {
    const store = await openStore();
    await Promise.all([1, 2].map((id) => addNode(store, id)));
    const coordinator = await startCoordinator(store);
    await waitFor(() => coordinator.listChannels().every((c) => c.state === 'ASSIGNED'), WAIT);
    await coordinator.setAllowRebalance(false);
    // Two channels per node, both heavy ones on node 1.
    const channels = coordinator.listChannels().map((c) => c.name);
    const [h1, h2, e1, e2] = channels as [string, string, string, string];
    await Promise.all([
      coordinator.moveChannel(h1, 1),
      coordinator.moveChannel(h2, 1),
      coordinator.moveChannel(e1, 2),
      coordinator.moveChannel(e2, 2),
    ]);
    await waitFor(
      () =>
        coordinator
          .listChannels()
          .every((c) => c.state === 'ASSIGNED' && c.nodeId === ([h1, h2].includes(c.name) ? 1 : 2)),
      WAIT,
    );
    for (let i = 0; i < 20; i++) {
      await register(store, h1, `v${i}`);
      await register(store, h2, `v${i}`);
    }
    await waitFor(() => coordinator.listNodes()[0]?.vchannelCount === 40, WAIT);
    await coordinator.setAllowRebalance(true);
    await waitFor(() => {
      const settled = coordinator.listChannels().every((c) => c.state === 'ASSIGNED');
      return (
        settled &&
        coordinator.listNodes().every((n) => n.vchannelCount === 20 && n.channels.length === 2)
      );
    }, WAIT);
  });
});
