import { StreamingClient } from '@woodstream/client';
import type { ManagedProcess } from '@woodstream/testing';
import { createTestBucket, harness, waitFor } from '@woodstream/testing';
import { describe, expect, it } from 'vitest';
import { fetchAssignment, ROUND_ROBIN, startCluster, type Cluster } from './cluster.js';

const VCHANNELS = Array.from({ length: 8 }, (_, i) => `orders-${i}`);
const MAX_IN_FLIGHT = 64;

type Acked = Map<string, { id: string; seq: number }[]>;

/** Produces `total` messages round-robin over the vchannels; runs `during` once a third is sent. */
async function produceWhile(
  client: StreamingClient,
  total: number,
  during: () => Promise<void>,
): Promise<Acked> {
  const acked: Acked = new Map(VCHANNELS.map((v) => [v, []]));
  let sent = 0;
  let fired = false;
  const inflight = new Set<Promise<void>>();
  while (sent < total) {
    if (inflight.size >= MAX_IN_FLIGHT) await Promise.race(inflight);
    const seq = sent++;
    const vchannel = VCHANNELS[seq % VCHANNELS.length] as string;
    const p = client
      .append({
        vchannel,
        payload: new TextEncoder().encode(`m-${seq}`),
        properties: { seq: String(seq) },
      })
      .then((r) => {
        acked.get(vchannel)?.push({ id: `${r.messageId.segmentId}:${r.messageId.entryId}`, seq });
      })
      .finally(() => inflight.delete(p));
    inflight.add(p);
    if (!fired && sent === Math.floor(total / 3)) {
      fired = true;
      await during();
    }
  }
  await Promise.all(inflight);
  return acked;
}

/** Reads every vchannel back; asserts each acked id once, in ack order. Returns duplicates in the log. */
async function verifyAcked(client: StreamingClient, acked: Acked): Promise<number> {
  let duplicates = 0;
  for (const vchannel of VCHANNELS) {
    const want = acked.get(vchannel) ?? [];
    const wanted = new Set(want.map((a) => a.id));
    const seenIds: string[] = [];
    const seqCount = new Map<string, number>();
    const sub = client.read({ vchannel, from: 'earliest' });
    for await (const event of sub) {
      if (event.type !== 'message') continue;
      const id = `${event.messageId.segmentId}:${event.messageId.entryId}`;
      const seq = event.properties.seq ?? '';
      seqCount.set(seq, (seqCount.get(seq) ?? 0) + 1);
      if (wanted.has(id)) seenIds.push(id);
      if (seenIds.length === want.length) break;
    }
    expect(seenIds).toEqual(want.map((a) => a.id));
    duplicates += [...seqCount.values()].reduce((n, c) => n + c - 1, 0);
  }
  return duplicates;
}

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
  it('loses no acknowledged message when a node is killed with SIGKILL while producing to 8 vchannels', async () => {
    await using bucket = await createTestBucket(harness().radosgw, 'failover');
    const cluster = await startCluster({ bucket, nodeCount: 3, pchannelCount: 8 });
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
      expect(duplicates).toBeLessThanOrEqual(retries);
    } finally {
      await client.close();
    }
  });

  it('loses nothing and duplicates nothing when a node drains on SIGTERM', async () => {
    await using bucket = await createTestBucket(harness().radosgw, 'drain');
    const cluster = await startCluster({
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
    const cluster = await startCluster({
      bucket,
      nodeCount: 2,
      pchannelCount: 4,
      coordinatorCount: 2,
    });
    const terms = (s: Awaited<ReturnType<typeof fetchAssignment>>): Map<string, number> =>
      new Map(
        s.assignments.flatMap((a) => a.channels.map((c) => [c.name, Number(c.term)] as const)),
      );
    const before = terms(await fetchAssignment(cluster.coordinator));
    const client = await StreamingClient.connect({
      coordinator: cluster.coordinator,
      connectTimeoutMs: 30_000,
      channelOptions: ROUND_ROBIN,
    });
    const seen: Map<string, number>[] = [];
    try {
      const acked = await produceWhile(client, 800, async () => {
        await cluster.coordinators[0]?.stop({ signal: 'SIGKILL' });
        // The standby takes over once the dead one's lease expires; then the old one comes back.
        await waitFor(async () => terms(await fetchAssignment(cluster.coordinator)).size === 4, {
          timeoutMs: 30_000,
        });
        seen.push(terms(await fetchAssignment(cluster.coordinator)));
        await cluster.restartCoordinator(0);
      });
      seen.push(terms(await fetchAssignment(cluster.coordinator)));
      for (const snapshot of seen) {
        for (const [name, term] of before) expect(snapshot.get(name)).toBeGreaterThanOrEqual(term);
      }
      // Nothing moved: the nodes were healthy the whole time.
      expect(seen.at(-1)).toEqual(before);
      expect(await verifyAcked(client, acked)).toBe(0);
    } finally {
      await client.close();
    }
  });
});
