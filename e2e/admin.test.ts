import { StreamingClient } from '@woodstream/client';
import { pchannelForVChannel } from '@woodstream/streaming';
import { createTestBucket, harness, waitFor, type ManagedProcess } from '@woodstream/testing';
import { describe, expect, it } from 'vitest';
import { adminCall, adminGet, httpAddressOf, startCluster } from './cluster.js';
import { produceWhile, VCHANNELS, verifyAcked } from './traffic.js';

interface NodeJson {
  id: number;
  address: string;
  state: 'active' | 'frozen' | 'stopping';
  channels: string[];
  load: number;
}
interface ChannelJson {
  name: string;
  state: string;
  term: number;
  nodeId: number | null;
}

const nodes = async (admin: string): Promise<NodeJson[]> =>
  (await adminGet<{ nodes: NodeJson[] }>(admin, '/api/v1/nodes')).nodes;
const node = (admin: string, id: number): Promise<NodeJson> =>
  adminGet<NodeJson>(admin, `/api/v1/nodes/${id}`);

/** The server id a node process logged when it became ready. */
function serverIdOf(proc: ManagedProcess): number {
  const match = /"serverId":(\d+)[^\n]*"msg":"ready"/.exec(proc.output());
  if (match?.[1] === undefined) throw new Error(`${proc.name} has not logged its server id`);
  return Number(match[1]);
}

async function scrape(address: string): Promise<string> {
  const res = await fetch(`http://${address}/metrics`, { signal: AbortSignal.timeout(10_000) });
  expect(res.status).toBe(200);
  return res.text();
}

/** Sum of the samples of `name` whose labels include every `labels` pair (Prometheus text). */
function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (match?.[1] !== name) continue;
    const labelText = match[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => labelText.includes(`${k}="${v}"`))) {
      sum += Number(match[3]);
    }
  }
  return sum;
}

describe('admin API on a real cluster (etcd + radosgw + coordinator + nodes, object mode)', () => {
  it('freezing a node while producing drains it and loses nothing; the freeze survives a coordinator restart; /metrics shows the traffic', async () => {
    await using bucket = await createTestBucket(harness().radosgw, 'freeze');
    await using cluster = await startCluster({ bucket, nodeCount: 3, pchannelCount: 8 });
    const admin = cluster.adminUrls[0] as string;
    const client = await StreamingClient.connect({
      coordinator: cluster.coordinator,
      connectTimeoutMs: 30_000,
    });
    let frozenId = -1;
    try {
      const total = 1_600;
      const acked = await produceWhile(client, total, async () => {
        const busiest = [...(await nodes(admin))].sort((a, b) => b.load - a.load)[0];
        frozenId = busiest?.id ?? -1;
        const put = await adminCall(admin, 'PUT', `/api/v1/nodes/${frozenId}/state`, {
          state: 'frozen',
        });
        expect(put.status).toBe(200);
      });
      await waitFor(
        async () => {
          const n = await node(admin, frozenId);
          return n.state === 'frozen' && n.load === 0;
        },
        { timeoutMs: 60_000, description: 'the frozen node drained' },
      );
      expect(await verifyAcked(client, acked)).toBe(0);

      // The traffic shows on the nodes' and the coordinator's /metrics.
      let produced = 0;
      let consumed = 0;
      let appended = 0;
      for (const proc of cluster.nodes) {
        const text = await scrape(httpAddressOf(proc));
        produced += metricSum(text, 'woodstream_produce_messages_total', { outcome: 'ok' });
        consumed += metricSum(text, 'woodstream_consume_messages_total');
        appended += metricSum(text, 'woodpecker_append_entries_total');
        expect(
          metricSum(text, 'woodpecker_storage_requests_total', {
            woodpecker_store: 'object',
            woodpecker_operation: 'put',
          }),
        ).toBeGreaterThan(0);
        expect(text).toContain('woodstream_produce_duration_bucket');
        // Lag is observed per open WAL: the drained node has none.
        if (metricSum(text, 'woodstream_wal_channels', { state: 'open' }) > 0) {
          expect(text).toMatch(/^woodstream_timetick_lag\{pchannel="wal-\d+"/m);
        }
      }
      expect(produced).toBeGreaterThanOrEqual(total);
      expect(consumed).toBeGreaterThanOrEqual(total);
      // Every message is one WAL entry, plus the time ticks.
      expect(appended).toBeGreaterThan(produced);
      const coord = await scrape(new URL(admin).host);
      expect(metricSum(coord, 'woodstream_coordinator_active')).toBe(1);
      expect(metricSum(coord, 'woodstream_coordinator_nodes', { state: 'frozen' })).toBe(1);
      expect(metricSum(coord, 'woodstream_coordinator_nodes', { state: 'active' })).toBe(2);
      expect(metricSum(coord, 'woodstream_coordinator_channels', { state: 'ASSIGNED' })).toBe(8);
      expect(metricSum(coord, 'woodstream_coordinator_balance_rounds_total')).toBeGreaterThan(0);
      expect(metricSum(coord, 'woodstream_coordinator_channel_moves_total')).toBeGreaterThan(8);

      // A restarted coordinator reads the freeze back and keeps the node empty.
      expect(await cluster.coordinators[0]?.stop({ graceMs: 20_000 })).toMatchObject({ code: 0 });
      await cluster.restartCoordinator(0);
      await waitFor(
        async () => {
          const after = await scrape(new URL(admin).host);
          return metricSum(after, 'woodstream_coordinator_active') === 1;
        },
        { timeoutMs: 30_000, description: 'the restarted coordinator is active' },
      );
      const rounds = async (): Promise<number> =>
        metricSum(await scrape(new URL(admin).host), 'woodstream_coordinator_balance_rounds_total');
      const before = await rounds();
      expect((await adminCall(admin, 'POST', '/api/v1/balance/trigger')).status).toBeLessThan(300);
      await waitFor(async () => (await rounds()) >= before + 1, {
        timeoutMs: 30_000,
        description: 'a balance round after the trigger',
      });
      expect(await node(admin, frozenId)).toMatchObject({ state: 'frozen', load: 0 });

      // Unfreezing lets the balancer give it channels again.
      const put = await adminCall(admin, 'PUT', `/api/v1/nodes/${frozenId}/state`, {
        state: 'active',
      });
      expect(put.status).toBe(200);
      await waitFor(async () => (await node(admin, frozenId)).load > 0, {
        timeoutMs: 60_000,
        description: 'the unfrozen node gets channels',
      });
    } finally {
      await client.close();
    }
  });

  it('a move operation under traffic reaches done with the channel on its target, loses nothing, and a tailing reader sees each message once; with balancing suspended a new node gets no channels until resumed', async () => {
    await using bucket = await createTestBucket(harness().radosgw, 'move');
    await using cluster = await startCluster({ bucket, nodeCount: 2, pchannelCount: 4 });
    const admin = cluster.adminUrls[0] as string;
    const [a, b] = await nodes(admin);
    if (a === undefined || b === undefined) throw new Error('expected two nodes');
    const channel = a.channels[0] as string;
    const pchannels = (
      await adminGet<{ channels: ChannelJson[] }>(admin, '/api/v1/channels')
    ).channels
      .map((c) => c.name)
      .sort();
    const tailed = VCHANNELS.find((v) => pchannelForVChannel(v, pchannels) === channel);
    if (tailed === undefined) throw new Error(`no test vchannel maps to ${channel}`);

    const client = await StreamingClient.connect({
      coordinator: cluster.coordinator,
      connectTimeoutMs: 30_000,
    });
    try {
      // A reader tailing a vchannel of the moved channel from before the traffic to its end.
      const tail = client.read({ vchannel: tailed, from: 'earliest' })[Symbol.asyncIterator]();
      const delivered: string[] = [];
      let stopTail = false;
      const tailing = (async () => {
        while (!stopTail) {
          const r = await tail.next();
          if (r.done === true) return;
          if (r.value.type === 'message')
            delivered.push(`${r.value.messageId.segmentId}:${r.value.messageId.entryId}`);
        }
      })();
      // The move runs while the producers go on: its completion is awaited alongside them.
      let moveDone: Promise<{ state: string }> | undefined;
      let movedWhileProducing = false;
      let isProducing = true;
      const acked = await produceWhile(client, 3_000, async () => {
        const move = await adminCall(admin, 'POST', `/api/v1/channels/${channel}/move`, {
          targetNodeId: b.id,
        });
        expect(move.status).toBe(202);
        const { operationId } = move.body as { operationId: string };
        moveDone = waitFor(
          async () => {
            const op = await adminGet<{ state: string; reason: string | null }>(
              admin,
              `/api/v1/operations/${operationId}`,
            );
            if (op.state === 'failed') throw new Error(`move failed: ${op.reason ?? '?'}`);
            if (op.state !== 'done') return undefined;
            movedWhileProducing = isProducing;
            return op;
          },
          { timeoutMs: 60_000, intervalMs: 10, description: 'the move operation is done' },
        );
      });
      isProducing = false;
      const done = await (moveDone as Promise<{ state: string }>);
      expect(movedWhileProducing).toBe(true);
      expect(done.state).toBe('done');
      expect(await adminGet<ChannelJson>(admin, `/api/v1/channels/${channel}`)).toMatchObject({
        state: 'ASSIGNED',
        nodeId: b.id,
      });
      expect(await verifyAcked(client, acked)).toBe(0);
      // The tailing reader, resumed across the move, got every acknowledged message of its
      // vchannel in order and no message twice.
      const want = (acked.get(tailed) ?? []).map((m) => m.id);
      await waitFor(() => want.every((id) => delivered.includes(id)), {
        timeoutMs: 30_000,
        description: `the tailing reader has all ${want.length} acknowledged messages`,
      });
      expect(new Set(delivered).size).toBe(delivered.length);
      expect(delivered.filter((id) => want.includes(id))).toEqual(want);
      stopTail = true;
      await tail.return?.();
      await tailing;
    } finally {
      await client.close();
    }

    // Suspended: a new node stays empty through balance rounds.
    expect(
      (await adminCall(admin, 'PUT', '/api/v1/balance', { allowRebalance: false })).status,
    ).toBe(200);
    const newcomer = serverIdOf(await cluster.startNode());
    await waitFor(async () => (await nodes(admin)).some((n) => n.id === newcomer), {
      timeoutMs: 30_000,
      description: 'the new node registered',
    });
    const rounds = async (): Promise<number> =>
      metricSum(await scrape(new URL(admin).host), 'woodstream_coordinator_balance_rounds_total');
    const before = await rounds();
    expect((await adminCall(admin, 'POST', '/api/v1/balance/trigger')).status).toBeLessThan(300);
    await waitFor(async () => (await rounds()) >= before + 2, {
      timeoutMs: 30_000,
      description: 'balance rounds while suspended',
    });
    expect((await node(admin, newcomer)).load).toBe(0);
    expect(await adminGet(admin, '/api/v1/balance')).toMatchObject({ allowRebalance: false });

    // Resumed: the balancer spreads channels onto it.
    expect(
      (await adminCall(admin, 'PUT', '/api/v1/balance', { allowRebalance: true })).status,
    ).toBe(200);
    await waitFor(async () => (await node(admin, newcomer)).load > 0, {
      timeoutMs: 60_000,
      description: 'the new node gets channels after resuming',
    });
  });
});
