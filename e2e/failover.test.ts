import { StreamingClient } from '@woodstream/client';
import { createTestBucket, harness, waitFor } from '@woodstream/testing';
import { describe, expect, it } from 'vitest';
import { fetchAssignment, startCluster } from './cluster.js';

const VCHANNELS = Array.from({ length: 8 }, (_, i) => `orders-${i}`);
const MESSAGES = 2_400;
const MAX_IN_FLIGHT = 64;

describe('cluster failover', () => {
  it('loses no acknowledged message when a node is killed with SIGKILL while producing to 8 vchannels', async () => {
    await using bucket = await createTestBucket(harness().radosgw, 'failover');
    const cluster = await startCluster({ bucket, nodeCount: 3, pchannelCount: 8 });
    const client = await StreamingClient.connect({
      coordinator: cluster.coordinator,
      connectTimeoutMs: 30_000,
    });
    try {
      // Acked ids per vchannel, in the order the acks arrived.
      const acked = new Map<string, { id: string; seq: number }[]>(VCHANNELS.map((v) => [v, []]));
      let sent = 0;
      let done = 0;
      let killed = false;
      const inflight = new Set<Promise<void>>();
      while (sent < MESSAGES) {
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
            acked
              .get(vchannel)
              ?.push({ id: `${r.messageId.segmentId}:${r.messageId.entryId}`, seq });
            done += 1;
          })
          .finally(() => inflight.delete(p));
        inflight.add(p);
        if (!killed && sent === MESSAGES / 3) {
          killed = true;
          // Kill the node that holds the most channels, mid-stream.
          const snapshot = await fetchAssignment(cluster.coordinator);
          const busiest = [...snapshot.assignments].sort(
            (a, b) => b.channels.length - a.channels.length,
          )[0];
          const victim = cluster.nodes.find((n) =>
            n.output().includes(`"address":"${busiest?.node?.address ?? '?'}"`),
          );
          expect(victim).toBeDefined();
          await victim?.stop({ signal: 'SIGKILL' });
        }
      }
      await Promise.all(inflight);
      expect(done).toBe(MESSAGES);
      // The dead node's channels moved to the survivors.
      await waitFor(
        async () =>
          (await fetchAssignment(cluster.coordinator)).assignments.filter(
            (a) => a.channels.length > 0,
          ).length === 2,
        {
          timeoutMs: 30_000,
        },
      );

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
        // Every acknowledged message exactly once, in acknowledgement order.
        expect(seenIds).toEqual(want.map((a) => a.id));
        duplicates += [...seqCount.values()].reduce((n, c) => n + c - 1, 0);
      }
      const stats = client.stats();
      console.log(
        `failover: ${MESSAGES} acked, ${duplicates} duplicates in the log from ${stats.retries} producer retries`,
      );
      expect(duplicates).toBeLessThanOrEqual(stats.retries);
    } finally {
      await client.close();
    }
  });
});
