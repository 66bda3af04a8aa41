import { join } from 'node:path';
import { pchannelForVChannel } from '@woodstream/streaming';
import { makeTempDir, waitFor } from '@woodstream/testing';
import { describe, expect, it } from 'vitest';
import { startLocalCluster } from '../test/local-cluster.js';

describe('planned move of a channel', () => {
  it('moves a pchannel between nodes while producing and consuming: nothing lost, no duplicate delivered', async () => {
    await using dir = await makeTempDir('move');
    // Two nodes with their own WAL clients over one shared directory, as two processes would be.
    await using cluster = await startLocalCluster({
      nodeCount: 2,
      wal: { storage: { mode: 'local', rootDir: join(dir.path, 'wal') } },
      node: { sessionTtlMs: 2_000, timeTickIntervalMs: 50, drainTimeoutMs: 0 },
      coordinator: { pchannelCount: 2, balanceIntervalMs: 200, moveCooldownMs: 0 },
    });
    const { coordinator, nodes } = cluster;
    const client = await cluster.connect();
    const vchannel = 'moving';
    const pchannel = pchannelForVChannel(
      vchannel,
      coordinator.listChannels().map((c) => c.name),
    );
    const before = coordinator.listChannels().find((c) => c.name === pchannel);
    const target = nodes.find((n) => n.serverId !== before?.nodeId);

    const delivered: { id: string; seq: number }[] = [];
    const subscription = client.read({ vchannel, from: 'earliest' });
    const consuming = (async () => {
      for await (const event of subscription) {
        if (event.type === 'message') {
          delivered.push({
            id: `${event.messageId.segmentId}:${event.messageId.entryId}`,
            seq: Number(event.properties.seq),
          });
        }
      }
    })();

    const total = 600;
    const acked: number[] = [];
    const inflight = new Set<Promise<void>>();
    for (let seq = 0; seq < total; seq++) {
      if (inflight.size >= 32) await Promise.race(inflight);
      const p = client
        .append({ vchannel, payload: new Uint8Array(64), properties: { seq: String(seq) } })
        .then(() => void acked.push(seq))
        .finally(() => inflight.delete(p));
      inflight.add(p);
      if (seq === total / 3) await coordinator.moveChannel(pchannel, target?.serverId ?? -1);
    }
    await Promise.all(inflight);
    const after = coordinator.listChannels().find((c) => c.name === pchannel);
    expect(after?.nodeId).toBe(target?.serverId);
    expect(after?.term).toBeGreaterThan(before?.term ?? Infinity);

    await waitFor(() => new Set(delivered.map((d) => d.seq)).size === total, {
      timeoutMs: 30_000,
      description: 'all messages delivered',
    });
    // Each stored message delivered once; acked messages all there.
    expect(new Set(delivered.map((d) => d.id)).size).toBe(delivered.length);
    expect(new Set(delivered.map((d) => d.seq))).toEqual(new Set(acked));
    const duplicates = delivered.length - total;
    expect(duplicates).toBeLessThanOrEqual(client.stats().retries);
    await subscription.close();
    await consuming;
  });
});
