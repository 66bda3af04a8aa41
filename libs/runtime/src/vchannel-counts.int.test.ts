import { join } from 'node:path';
import { streamingKeys } from '@woodstream/streaming';
import type { StreamingCoordinator } from '@woodstream/streaming-coordinator';
import { makeTempDir, waitFor } from '@woodstream/testing';
import type { KeyValue } from '@woodstream/woodpecker';
import { describe, expect, it } from 'vitest';
import { startLocalCluster } from '../test/local-cluster.js';

const WAIT = { timeoutMs: 20_000 };

describe('vchannel counts across the cluster', () => {
  it('registers produced vchannels once, balances skewed counts, and keeps the counts across a move and a coordinator restart', async () => {
    await using dir = await makeTempDir('vchannels');
    await using cluster = await startLocalCluster({
      nodeCount: 2,
      metadataPath: join(dir.path, 'meta.log'),
      wal: { storage: { mode: 'local', rootDir: join(dir.path, 'wal') } },
      node: { sessionTtlMs: 2_000, timeTickIntervalMs: 50, drainTimeoutMs: 0 },
      coordinator: { pchannelCount: 4, balanceIntervalMs: 100, moveCooldownMs: 0 },
    });
    const { metadata, nodes } = cluster;
    const [a, b] = nodes.map((n) => n.serverId) as [number, number];
    let coordinator = cluster.coordinator;
    const registry = async (pchannel: string): Promise<KeyValue[]> =>
      (await metadata.range(streamingKeys.vchannelsOf(pchannel))).kvs;
    const counts = (c: StreamingCoordinator): Record<string, number> =>
      Object.fromEntries(c.listChannels().map((ch) => [ch.name, ch.vchannelCount]));
    const settled = (c: StreamingCoordinator): boolean =>
      c.listChannels().every((ch) => ch.state === 'ASSIGNED');
    await coordinator.setAllowRebalance(false);
    const [h1, h2, e1, e2] = coordinator.listChannels().map((c) => c.name) as [
      string,
      string,
      string,
      string,
    ];
    // Both channels that will be busy on node a, both idle ones on node b.
    await Promise.all([
      coordinator.moveChannel(h1, a),
      coordinator.moveChannel(h2, a),
      coordinator.moveChannel(e1, b),
      coordinator.moveChannel(e2, b),
    ]);
    await waitFor(
      () =>
        settled(coordinator) &&
        coordinator.listChannels().every((c) => c.nodeId === ([h1, h2].includes(c.name) ? a : b)),
      WAIT,
    );

    const client = await cluster.connect();
    const produce = async (pchannel: string, vchannels: string[], perVChannel: number) => {
      await Promise.all(
        vchannels.flatMap((vchannel) =>
          Array.from({ length: perVChannel }, () =>
            client.append({ vchannel, pchannel, payload: new Uint8Array(16) }),
          ),
        ),
      );
    };
    const ten = Array.from({ length: 10 }, (_, i) => `v${i}`);
    await Promise.all([produce(h1, ten, 5), produce(h2, ten, 5)]);
    // Once each: every key was created and never written again.
    for (const pchannel of [h1, h2]) {
      const kvs = await registry(pchannel);
      expect(kvs.map((kv) => kv.key.slice(-2)).sort()).toEqual(ten);
      expect(kvs.every((kv) => kv.version === 1)).toBe(true);
    }
    expect(await registry(e1)).toEqual([]);
    await waitFor(() => counts(coordinator)[h1] === 10 && counts(coordinator)[h2] === 10, WAIT);
    expect(counts(coordinator)).toEqual({ [h1]: 10, [h2]: 10, [e1]: 0, [e2]: 0 });
    expect(coordinator.listNodes().map((n) => [n.serverId, n.vchannelCount])).toEqual([
      [a, 20],
      [b, 0],
    ]);

    // Skewed: node a carries every vchannel. Balancing gives each node one busy channel.
    await coordinator.setAllowRebalance(true);
    await waitFor(
      () =>
        settled(coordinator) &&
        coordinator.listNodes().every((n) => n.vchannelCount === 10 && n.channels.length === 2),
      WAIT,
    );
    await coordinator.setAllowRebalance(false);

    // A move: the new owner loads the registry; only a new vchannel is written.
    const from = coordinator.listChannels().find((c) => c.name === h1)!;
    const to = from.nodeId === a ? b : a;
    const before = new Map((await registry(h1)).map((kv) => [kv.key, kv.modRevision]));
    await coordinator.moveChannel(h1, to);
    await waitFor(
      () =>
        coordinator.listChannels().find((c) => c.name === h1 && c.state === 'ASSIGNED')?.nodeId ===
        to,
      WAIT,
    );
    await produce(h1, [...ten, 'v10'], 2);
    const after = await registry(h1);
    expect(after).toHaveLength(11);
    for (const kv of after) {
      if (before.has(kv.key)) expect(kv.modRevision).toBe(before.get(kv.key));
    }
    const owner = nodes.find((n) => n.serverId === to)!;
    const term = coordinator.listChannels().find((c) => c.name === h1)!.term;
    expect(owner.manager.get(h1, term).vchannels.size).toBe(11);
    await waitFor(() => counts(coordinator)[h1] === 11, WAIT);

    // A coordinator restart reads the counts back from the registry.
    coordinator = await cluster.restartCoordinator();
    expect(counts(coordinator)).toEqual({ [h1]: 11, [h2]: 10, [e1]: 0, [e2]: 0 });
    expect(coordinator.listNodes().reduce((sum, n) => sum + n.vchannelCount, 0)).toBe(21);
  });
});
