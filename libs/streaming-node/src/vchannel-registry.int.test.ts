import { join } from 'node:path';
import { StreamingError, streamingKeys } from '@woodstream/streaming';
import { makeTempDir, waitFor, type TempDir } from '@woodstream/testing';
import {
  FileMetadataStore,
  MetadataUnavailableError,
  Woodpecker,
  type MetadataStore,
} from '@woodstream/woodpecker';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StreamingNode } from './streaming-node.js';

/** The real file store, counting the transactions that touch the vchannel registry. */
function countingRegistryWrites(store: MetadataStore): {
  store: MetadataStore;
  writes: () => string[];
  /** While set, registry writes fail with this error (a metadata outage). */
  failWith: (error: Error | undefined) => void;
  /** While set, registry writes hang until their signal aborts (a stalled store). */
  hang: (isHanging: boolean) => void;
  /** While set, registry loads hang until their signal aborts, or for ever without one. */
  hangLoads: (isHanging: boolean) => void;
  /** Registry loads that are hanging now. */
  hangingLoads: () => number;
} {
  const written: string[] = [];
  let failure: Error | undefined;
  let isHanging = false;
  let isHangingLoads = false;
  let hangingLoads = 0;
  const wrapped: MetadataStore = {
    get: (key, options) => store.get(key, options),
    range: (prefix, options) => {
      if (!isHangingLoads || !prefix.startsWith(streamingKeys.vchannelPrefix))
        return store.range(prefix, options);
      hangingLoads += 1;
      return new Promise((_, reject) => {
        options?.signal?.addEventListener(
          'abort',
          () => {
            hangingLoads -= 1;
            reject(options.signal?.reason as Error);
          },
          { once: true },
        );
      });
    },
    txn: (compares, onSuccess, options) => {
      for (const op of onSuccess) {
        if (!('key' in op) || !op.key.startsWith(streamingKeys.vchannelPrefix)) continue;
        if (failure !== undefined) return Promise.reject(failure);
        const signal = options?.signal;
        if (isHanging && signal !== undefined) {
          return new Promise((_, reject) =>
            signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true }),
          );
        }
        written.push(op.key);
      }
      return store.txn(compares, onSuccess, options);
    },
    grantLease: (ttlMs, options) => store.grantLease(ttlMs, options),
    watch: (prefix, options) => store.watch(prefix, options),
    close: () => store.close(),
  };
  return {
    store: wrapped,
    writes: () => [...written],
    failWith: (error) => {
      failure = error;
    },
    hang: (value) => {
      isHanging = value;
    },
    hangLoads: (value) => {
      isHangingLoads = value;
    },
    hangingLoads: () => hangingLoads,
  };
}

const payload = new Uint8Array(8);

describe('vchannel registry on a streaming node', () => {
  let dir: TempDir;
  let metadata: FileMetadataStore;
  let counted: ReturnType<typeof countingRegistryWrites>;
  const started: { node: StreamingNode; wal: Woodpecker }[] = [];

  async function startNode(options: { maxVChannelsPerPChannel?: number } = {}) {
    const wal = Woodpecker.open({
      metadata,
      storage: { mode: 'local', rootDir: join(dir.path, 'wal') },
    });
    const node = await StreamingNode.start(
      { timeTickIntervalMs: 50, drainTimeoutMs: 0, ...options },
      { wal, metadata: counted.store },
    );
    started.push({ node, wal });
    return node;
  }

  async function registered(pchannel: string): Promise<string[]> {
    const prefix = streamingKeys.vchannelsOf(pchannel);
    const { kvs } = await metadata.range(prefix);
    return kvs.map((kv) => kv.key.slice(prefix.length)).sort();
  }

  beforeEach(async () => {
    dir = await makeTempDir('vchannels');
    metadata = await FileMetadataStore.open({ path: join(dir.path, 'meta.log') });
    counted = countingRegistryWrites(metadata);
  });
  afterEach(async () => {
    for (const { node, wal } of started.splice(0).reverse()) {
      await node.stop({ drain: false });
      await wal.close();
    }
    await metadata.close();
    await dir.remove();
  });

  it('registers each vchannel once, before its first message, with no metadata write after', async () => {
    const node = await startNode();
    await node.manager.assign('wal-0000', 1);
    const wal = node.manager.get('wal-0000', 1);
    // Concurrent first produces of five vchannels: one write each, shared by their messages.
    const first = await Promise.all(
      Array.from({ length: 100 }, (_, i) => wal.append(`v${i % 5}`, payload, {})),
    );
    expect(first).toHaveLength(100);
    expect(counted.writes()).toHaveLength(5);
    expect(await registered('wal-0000')).toEqual(['v0', 'v1', 'v2', 'v3', 'v4']);
    // The hot path: known vchannels cost no metadata call.
    await Promise.all(Array.from({ length: 100 }, (_, i) => wal.append(`v${i % 5}`, payload, {})));
    expect(counted.writes()).toHaveLength(5);
  });

  it('keeps the arrival order across vchannels while a new vchannel registers', async () => {
    const node = await startNode();
    await node.manager.assign('wal-0000', 1);
    const wal = node.manager.get('wal-0000', 1);
    await wal.append('known', payload, {});
    // Messages of known vchannels that arrive after a new vchannel's first one wait behind it.
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        wal.append(i % 4 === 0 ? `fresh${i % 8}` : 'known', payload, {}),
      ),
    );
    const ticks = results.map((r) => r.timeTick);
    for (let i = 1; i < ticks.length; i++) expect(ticks[i]).toBeGreaterThan(ticks[i - 1] as bigint);
    expect(counted.writes()).toHaveLength(3);
  });

  it('refuses a vchannel past maxVChannelsPerPChannel with INVALID_ARGUMENT and serves the others', async () => {
    const node = await startNode({ maxVChannelsPerPChannel: 3 });
    await node.manager.assign('wal-0000', 1);
    const wal = node.manager.get('wal-0000', 1);
    await Promise.all(['a', 'b', 'c'].map((v) => wal.append(v, payload, {})));
    const refused = await wal.append('d', payload, {}).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(StreamingError);
    expect(refused).toMatchObject({ code: 'INVALID_ARGUMENT', retryable: false });
    expect((refused as Error).message).toContain('maxVChannelsPerPChannel');
    await expect(wal.append('b', payload, {})).resolves.toMatchObject({});
    expect(await registered('wal-0000')).toEqual(['a', 'b', 'c']);
  });

  it('fails a first produce with RESOURCE_EXHAUSTED when the registry cannot be written, and lets the others through', async () => {
    const node = await startNode();
    await node.manager.assign('wal-0002', 1);
    const wal = node.manager.get('wal-0002', 1);
    await wal.append('known', payload, {});
    counted.failWith(new MetadataUnavailableError('etcd is down'));
    const [fresh, known] = await Promise.allSettled([
      wal.append('fresh', payload, {}),
      wal.append('known', payload, {}),
    ]);
    expect(fresh).toMatchObject({
      status: 'rejected',
      reason: { code: 'RESOURCE_EXHAUSTED', retryable: true },
    });
    expect(known.status).toBe('fulfilled');
    expect(await registered('wal-0002')).toEqual(['known']);
    // The outage ends: the retry registers it.
    counted.failWith(undefined);
    await wal.append('fresh', payload, {});
    expect(await registered('wal-0002')).toEqual(['fresh', 'known']);
  });

  it('fails appends waiting for a registration when the WAL closes', async () => {
    const node = await startNode();
    await node.manager.assign('wal-0003', 1);
    const wal = node.manager.get('wal-0003', 1);
    await wal.append('known', payload, {});
    counted.hang(true);
    // The known vchannel's message arrived after the new one's: it waits behind it.
    const pending = Promise.allSettled([
      wal.append('fresh', payload, {}),
      wal.append('known', payload, {}),
    ]);
    await node.manager.remove('wal-0003', 1);
    for (const outcome of await pending) {
      expect(outcome).toMatchObject({ status: 'rejected', reason: { code: 'CHANNEL_FENCED' } });
    }
    expect(await registered('wal-0003')).toEqual(['known']);
    await expect(wal.append('late', payload, {})).rejects.toMatchObject({
      code: 'CHANNEL_FENCED',
    });
  });

  it('loads the registry when a new owner opens the WAL: known vchannels are not written again', async () => {
    const first = await startNode();
    await first.manager.assign('wal-0001', 1);
    await Promise.all(
      ['x', 'y'].map((v) => first.manager.get('wal-0001', 1).append(v, payload, {})),
    );
    await first.manager.remove('wal-0001', 1);
    const second = await startNode();
    await second.manager.assign('wal-0001', 2);
    const wal = second.manager.get('wal-0001', 2);
    expect(wal.vchannels.size).toBe(2);
    const before = counted.writes().length;
    await Promise.all(['x', 'y', 'z'].map((v) => wal.append(v, payload, {})));
    expect(counted.writes().slice(before)).toEqual([streamingKeys.vchannel('wal-0001', 'z')]);
    expect(await registered('wal-0001')).toEqual(['x', 'y', 'z']);
  });

  it('a newer Assign aborts an open that hangs on the metadata store instead of waiting behind it', async () => {
    const node = await startNode();
    counted.hangLoads(true);
    const stuck = node.manager.assign('wal-0002', 1);
    await waitFor(() => counted.hangingLoads() === 1, {
      timeoutMs: 10_000,
      description: 'the open waiting for the registry',
    });
    counted.hangLoads(false);
    const superseded = expect(stuck).rejects.toMatchObject({ code: 'IGNORED_OPERATION' });
    await node.manager.assign('wal-0002', 2);
    await superseded;
    expect(counted.hangingLoads()).toBe(0);
    const wal = node.manager.get('wal-0002', 2);
    await wal.append('after', payload, {});
    expect(await registered('wal-0002')).toEqual(['after']);
  });
});
