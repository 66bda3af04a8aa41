import { StreamingClient } from '@woodstream/client';
import type { ManagedProcess } from '@woodstream/testing';
import { createTestBucket, harness, waitFor } from '@woodstream/testing';
import { describe, expect, it } from 'vitest';
import { adminCall, fetchAssignment, ROUND_ROBIN, startCluster, type Cluster } from './cluster.js';
import { produceWhile, verifyAcked } from './traffic.js';

async function busiestNode(cluster: Cluster): Promise<ManagedProcess> {
  const snapshot = await fetchAssignment(cluster.coordinator);
  const busiest = [...snapshot.assignments].sort(
    (a, b) => b.channels.length - a.channels.length,
  )[0];
  const victim = cluster.nodes.find((n) =>
    n.output().includes(`"address":"${busiest?.node?.address ?? '?'}"`),
  );
  if (victim === undefined) throw new Error('no process for the busiest node');
  return victim;
}

const liveNodes = async (cluster: Cluster): Promise<number> =>
  (await fetchAssignment(cluster.coordinator)).assignments.filter((a) => a.channels.length > 0)
    .length;

describe('cluster failover (etcd + radosgw + coordinator + 3 nodes, object mode)', () => {
  it('loses no acknowledged message and stores none twice when a node is killed with SIGKILL while producing to 8 vchannels', async () => {
    await using bucket = await createTestBucket(harness().radosgw, 'failover');
    await using cluster = await startCluster({ bucket, nodeCount: 3, pchannelCount: 8 });
    const client = await StreamingClient.connect({
      coordinator: cluster.coordinator,
      connectTimeoutMs: 30_000,
    });
    try {
      const total = 2_400;
      const acked = await produceWhile(client, total, async () => {
        await (await busiestNode(cluster)).stop({ signal: 'SIGKILL' });
      });
      expect([...acked.values()].reduce((n, a) => n + a.length, 0)).toBe(total);
      await waitFor(async () => (await liveNodes(cluster)) === 2, { timeoutMs: 30_000 });
      const duplicates = await verifyAcked(client, acked);
      const { retries } = client.stats();
      console.log(
        `SIGKILL failover: ${total} acked, ${duplicates} duplicates in the log from ${retries} producer retries`,
      );
      // Re-sends carry their producer id and sequence: the new owner, having read the log's
      // tail, answers those the killed node stored with their stored result.
      expect(duplicates).toBe(0);
    } finally {
      await client.close();
    }
  });

  it('loses nothing and duplicates nothing when a node drains on SIGTERM', async () => {
    await using bucket = await createTestBucket(harness().radosgw, 'drain');
    await using cluster = await startCluster({
      bucket,
      nodeCount: 3,
      pchannelCount: 8,
      drainTimeoutMs: 20_000,
    });
    const client = await StreamingClient.connect({
      coordinator: cluster.coordinator,
      connectTimeoutMs: 30_000,
    });
    try {
      let exit: Promise<unknown> = Promise.resolve();
      const acked = await produceWhile(client, 1_600, async () => {
        const victim = await busiestNode(cluster);
        exit = victim.stop({ signal: 'SIGTERM', graceMs: 30_000 });
      });
      expect(await exit).toMatchObject({ code: 0 });
      await waitFor(async () => (await liveNodes(cluster)) === 2, { timeoutMs: 30_000 });
      const duplicates = await verifyAcked(client, acked);
      expect(duplicates).toBe(0);
    } finally {
      await client.close();
    }
  });

  it('keeps assignments and terms when the active coordinator is killed: the standby takes over, clients keep working', async () => {
    await using bucket = await createTestBucket(harness().radosgw, 'coord');
    await using cluster = await startCluster({
      bucket,
      nodeCount: 2,
      pchannelCount: 4,
      coordinatorCount: 2,
    });
    const terms = (s: Awaited<ReturnType<typeof fetchAssignment>>): Map<string, number> =>
      new Map(
        s.assignments.flatMap((a) => a.channels.map((c) => [c.name, Number(c.term)] as const)),
      );
    // Rebalancing off (persisted, so the standby reads it too): the vchannels this test creates
    // could otherwise make the balancer move a channel, and this test is about the takeover.
    const suspend = await adminCall(cluster.adminUrls[0] as string, 'PUT', '/api/v1/balance', {
      allowRebalance: false,
    });
    expect(suspend.status).toBe(200);
    const before = terms(await fetchAssignment(cluster.coordinator));
    const client = await StreamingClient.connect({
      coordinator: cluster.coordinator,
      connectTimeoutMs: 30_000,
      channelOptions: ROUND_ROBIN,
    });
    const seen: Map<string, number>[] = [];
    // Terms as clients see them, sampled back to back through the kill, the takeover and the
    // restart (a bounded number of samples; a sample fails while no coordinator leads).
    let isSampling = true;
    const sampling = (async () => {
      for (let i = 0; isSampling && i < 5_000; i++) {
        const snapshot = await fetchAssignment(cluster.coordinator).then(terms, () => undefined);
        if (snapshot !== undefined && snapshot.size > 0) seen.push(snapshot);
      }
    })();
    try {
      const acked = await produceWhile(client, 800, async () => {
        await cluster.coordinators[0]?.stop({ signal: 'SIGKILL' });
        // The standby takes over once the dead one's lease expires; then the old one comes back.
        await waitFor(async () => terms(await fetchAssignment(cluster.coordinator)).size === 4, {
          timeoutMs: 30_000,
        });
        await cluster.restartCoordinator(0);
      });
      isSampling = false;
      await sampling;
      seen.push(terms(await fetchAssignment(cluster.coordinator)));
      expect(seen.length).toBeGreaterThan(2);
      // No term ever goes backwards, from before the kill to the end, sample by sample.
      let floor = before;
      for (const snapshot of seen) {
        for (const [name, term] of floor)
          expect(snapshot.get(name) ?? term).toBeGreaterThanOrEqual(term);
        floor = new Map([...floor, ...snapshot]);
      }
      // Nothing moved: the nodes were healthy the whole time.
      expect(seen.at(-1)).toEqual(before);
      expect(await verifyAcked(client, acked)).toBe(0);
    } finally {
      await client.close();
    }
  });
});
