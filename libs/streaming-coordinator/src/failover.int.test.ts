import { streamingKeys, type PChannelMeta } from '@woodstream/streaming';
import { harness, uniqueName, waitFor } from '@woodstream/testing';
import { EtcdMetadataStore, type MetadataStore } from '@woodstream/woodpecker';
import { afterEach, describe, expect, it } from 'vitest';
import { registerSession, startFakeNode } from '../test/fake-streaming-node.js';
import type { CoordinatorOptions } from './coordinator-options.js';
import { StreamingCoordinator } from './streaming-coordinator.js';

const OPTIONS: CoordinatorOptions = {
  pchannelCount: 6,
  sessionTtlMs: 2000,
  balanceIntervalMs: 100,
  moveCooldownMs: 0,
  channelBackoffInitialMs: 10,
  channelBackoffMaxMs: 200,
};
const WAIT = { timeoutMs: 30_000 };
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function openStore(rootPrefix: string): Promise<MetadataStore> {
  const store = await EtcdMetadataStore.open({ endpoints: [harness().etcdEndpoint], rootPrefix });
  cleanups.push(() => store.close());
  return store;
}

async function startCoordinator(
  store: MetadataStore,
  coordinatorId: string,
): Promise<StreamingCoordinator> {
  const coordinator = await StreamingCoordinator.start(
    { ...OPTIONS, coordinatorId },
    { metadata: store },
  );
  cleanups.push(() => coordinator.stop());
  return coordinator;
}

/** Watches every pchannel record and records any term that went backwards. */
function monitorTerms(store: MetadataStore): {
  regressions: string[];
  maxTerm: Map<string, number>;
} {
  const controller = new AbortController();
  cleanups.push(() => controller.abort());
  const regressions: string[] = [];
  const maxTerm = new Map<string, number>();
  void (async () => {
    try {
      for await (const batch of store.watch(streamingKeys.pchannelPrefix, {
        signal: controller.signal,
        fromRevision: 0,
      })) {
        for (const event of batch) {
          const kvs = event.type === 'put' ? [event.kv] : event.type === 'reset' ? event.kvs : [];
          for (const kv of kvs) {
            const meta = JSON.parse(Buffer.from(kv.value).toString('utf8')) as PChannelMeta;
            const previous = maxTerm.get(meta.name) ?? 0;
            if (meta.term < previous) regressions.push(`${meta.name}: ${previous} → ${meta.term}`);
            maxTerm.set(meta.name, Math.max(previous, meta.term));
          }
        }
      }
    } catch {
      // aborted at the end of the test
    }
  })();
  return { regressions, maxTerm };
}

describe('coordinator failover on etcd', () => {
  it('keeps one active coordinator, fails over on stop, key loss and lease expiry, and never lowers a term', async () => {
    const root = `${uniqueName('coord-failover')}/`;
    const observer = await openStore(root);
    const monitor = monitorTerms(observer);
    for (const id of [1, 2]) {
      const node = await startFakeNode(id);
      cleanups.push(() => node.stop());
      await registerSession(observer, node);
    }

    const a = await startCoordinator(await openStore(root), 'a');
    const bStore = await openStore(root);
    const b = await startCoordinator(bStore, 'b');
    expect(a.isActive).toBe(true);
    expect(b.isActive).toBe(false);
    await waitFor(() => a.listChannels().every((c) => c.state === 'ASSIGNED'), WAIT);
    const globalA = a.status().version.global;

    // 1. Graceful stop revokes the lease: b takes over at once.
    await a.stop();
    await waitFor(() => b.isActive, WAIT);
    expect(b.status().version.global).toBeGreaterThan(globalA);
    await waitFor(() => b.listChannels().every((c) => c.state === 'ASSIGNED'), WAIT);
    const moved = b.listChannels()[0]!;
    const other = moved.nodeId === 1 ? 2 : 1;
    const term = await b.moveChannel(moved.name, other);
    expect(term).toBeGreaterThan(moved.term);

    // 2. The leader key disappears (as when its lease is revoked behind its back): b steps
    //    down, and exactly one of b and c becomes active.
    const cStore = await openStore(root);
    const c = await startCoordinator(cStore, 'c');
    expect(c.isActive).toBe(false);
    await observer.txn([], [{ type: 'delete', key: streamingKeys.coordinatorLeader }]);
    await waitFor(() => {
      const active = [b, c].filter((x) => x.isActive);
      return active.length === 1 && active[0]!.status().version.global > 2;
    }, WAIT);
    const survivor = b.isActive ? b : c;
    await waitFor(() => survivor.listChannels().every((ch) => ch.state === 'ASSIGNED'), WAIT);

    // 3. A crash: the active one's store closes (no revoke, keep-alives stop); its lease
    //    expires after the TTL and the standby takes over.
    const standby = survivor === b ? c : b;
    await (survivor === b ? bStore : cStore).close();
    await waitFor(() => standby.isActive, WAIT);
    await waitFor(() => standby.listChannels().every((ch) => ch.state === 'ASSIGNED'), WAIT);

    expect(monitor.regressions).toEqual([]);
    for (const channel of standby.listChannels()) {
      expect(channel.term).toBeGreaterThanOrEqual(monitor.maxTerm.get(channel.name) ?? 0);
    }
  });
});
