import { StreamingCode } from '@woodstream/proto';
import { pchannelForVChannel, StreamingError } from '@woodstream/streaming';
import { freePort, waitFor } from '@woodstream/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeCluster } from '../test/fake-cluster.js';
import {
  StreamingClient,
  type ReadEvent,
  type StreamingClientOptions,
  type Subscription,
} from './index.js';

const PCHANNELS = ['pc-0000', 'pc-0001', 'pc-0002'];
const text = (s: string) => new TextEncoder().encode(s);
const decode = (b: Uint8Array) => Buffer.from(b).toString('utf8');

/** A vchannel whose hash lands on `pchannel`. */
function vchannelOn(pchannel: string, prefix = 'v'): string {
  for (let i = 0; ; i++) {
    const v = `${prefix}-${i}`;
    if (pchannelForVChannel(v, PCHANNELS) === pchannel) return v;
  }
}

let cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups = [];
});

async function startCluster(nodes = 2): Promise<FakeCluster> {
  const cluster = await FakeCluster.start({ pchannels: PCHANNELS, nodes });
  cleanups.push(() => cluster.stop());
  return cluster;
}

async function connect(
  cluster: FakeCluster,
  options: Partial<StreamingClientOptions> = {},
): Promise<StreamingClient> {
  const client = await StreamingClient.connect({
    coordinator: cluster.coordinator.address,
    connectTimeoutMs: 10_000,
    ...options,
  });
  cleanups.push(() => client.close());
  return client;
}

/** Pulls `n` message events (skipping time ticks) from a running iterator. */
async function take(it: AsyncIterator<ReadEvent>, n: number): Promise<string[]> {
  const out: string[] = [];
  while (out.length < n) {
    const r = await it.next();
    if (r.done === true) throw new Error(`read ended after ${out.length} of ${n} messages`);
    if (r.value.type === 'message') out.push(decode(r.value.payload));
  }
  return out;
}

describe('StreamingClient.connect', () => {
  it('waits for the first assignment snapshot before resolving', async () => {
    const cluster = await startCluster(1);
    cluster.coordinator.isWithholding = true;
    let isConnected = false;
    const connecting = StreamingClient.connect({ coordinator: cluster.coordinator.address }).then(
      (c) => {
        isConnected = true;
        cleanups.push(() => c.close());
        return c;
      },
    );
    await waitFor(() => cluster.coordinator.streams.size === 1, { timeoutMs: 5_000 });
    expect(isConnected).toBe(false);
    cluster.coordinator.isWithholding = false;
    cluster.coordinator.publish();
    const client = await connecting;
    expect(isConnected).toBe(true);
    expect(client.stats().appended).toBe(0);
  });

  it('fails with ON_SHUTDOWN when no snapshot arrives in time', async () => {
    const cluster = await startCluster(1);
    cluster.coordinator.isWithholding = true;
    await expect(
      StreamingClient.connect({ coordinator: cluster.coordinator.address, connectTimeoutMs: 300 }),
    ).rejects.toMatchObject({
      code: 'ON_SHUTDOWN',
      message: expect.stringMatching(/no assignment/) as unknown,
    });
    await waitFor(() => cluster.coordinator.streams.size === 0, { timeoutMs: 5_000 });
  });
});

describe('discovery', () => {
  it('reconnects after the coordinator drops the stream and follows later snapshots', async () => {
    const cluster = await startCluster(2);
    const client = await connect(cluster, { minBackoffMs: 10, maxBackoffMs: 50 });
    const v = vchannelOn('pc-0001');
    await client.append({ vchannel: v, payload: text('a') });
    cluster.coordinator.dropStreams();
    await waitFor(() => client.stats().discoveryReconnects === 1, { timeoutMs: 5_000 });
    await waitFor(() => cluster.coordinator.streams.size === 1, { timeoutMs: 5_000 });
    cluster.assign('pc-0001', cluster.node(1));
    await expect(client.append({ vchannel: v, payload: text('b') })).resolves.toMatchObject({
      messageId: { segmentId: 1, entryId: 0 },
    });
  });

  it('gives up connecting to an unreachable coordinator after connectTimeoutMs', async () => {
    const port = await freePort();
    await expect(
      StreamingClient.connect({ coordinator: `127.0.0.1:${port}`, connectTimeoutMs: 300 }),
    ).rejects.toMatchObject({ code: 'ON_SHUTDOWN' });
  });
});

describe('append', () => {
  it('routes by the vchannel hash and returns the ids the node assigned', async () => {
    const cluster = await startCluster(1);
    const client = await connect(cluster);
    const v1 = vchannelOn('pc-0001');
    const v2 = vchannelOn('pc-0002');
    const r1 = await client.append({ vchannel: v1, payload: text('a'), properties: { k: 'x' } });
    const r2 = await client.append({ vchannel: v2, payload: text('b') });
    const r3 = await client.append({ vchannel: v1, payload: text('c') });
    expect(r1.messageId).toEqual({ segmentId: 0, entryId: 0 });
    expect(r3.messageId).toEqual({ segmentId: 0, entryId: 1 });
    expect(r3.timeTick).toBeGreaterThan(r1.timeTick);
    expect(r2.messageId).toEqual({ segmentId: 0, entryId: 0 });
    expect(cluster.log('pc-0001').payloads()).toEqual(['a', 'c']);
    expect(cluster.log('pc-0001').entries[0]?.properties).toEqual({ k: 'x' });
    expect(cluster.log('pc-0002').payloads()).toEqual(['b']);
    // A caller-named pchannel wins over the hash.
    await client.append({ vchannel: v1, payload: text('d'), pchannel: 'pc-0000' });
    expect(cluster.log('pc-0000').payloads()).toEqual(['d']);
  });

  it('produces over gRPC to nodes without the framed stream, and over gRPC when asked to', async () => {
    for (const [framed, framedProduce] of [
      [false, true],
      [true, false],
    ] as const) {
      const cluster = await FakeCluster.start({ pchannels: PCHANNELS, nodes: 1, framed });
      cleanups.push(() => cluster.stop());
      const client = await connect(cluster, { framedProduce });
      const v = vchannelOn('pc-0001');
      const first = await client.append({ vchannel: v, payload: text('a') });
      const batch = await client.appendBatch(
        Array.from({ length: 20 }, (_, i) => ({ vchannel: v, payload: text(`b${i}`) })),
      );
      expect(first.messageId).toEqual({ segmentId: 0, entryId: 0 });
      expect(batch.map((r) => r.messageId.entryId)).toEqual(
        Array.from({ length: 20 }, (_, i) => i + 1),
      );
      expect(cluster.log('pc-0001').payloads()).toEqual([
        'a',
        ...Array.from({ length: 20 }, (_, i) => `b${i}`),
      ]);
      // The move to gRPC is not a failure: nothing retried, reopened or reported.
      expect(client.stats()).toMatchObject({ appended: 21, retries: 0, reopens: 0 });
      expect(cluster.coordinator.reports).toHaveLength(0);
      expect(cluster.node(0).openAttempts).toBe(1);
    }
  });

  it('an aborted append that was sent stores its payload as appended, though its caller reuses the buffer', async () => {
    const cluster = await startCluster(1);
    const client = await connect(cluster);
    const v = vchannelOn('pc-0002');
    cluster.node(0).pauseProducersAfterOpen = true;
    const first = client.append({ vchannel: v, payload: text('opens the stream') });
    await waitFor(() => cluster.node(0).producers.size === 1, { timeoutMs: 5_000 });
    // Far more than the socket buffers of both ends hold while the node does not read.
    const payload = Buffer.alloc(14 * 1024 * 1024, 0x11);
    const abort = new AbortController();
    const appending = client.append({ vchannel: v, payload }, { signal: abort.signal });
    // The producer writes on a microtask of this turn: after it, the append has been sent.
    await new Promise((resolve) => setImmediate(resolve));
    abort.abort(new Error('caller gave up'));
    await expect(appending).rejects.toThrow('caller gave up');
    payload.fill(0xee); // allowed once the append settled
    cluster.node(0).resumeProducers();
    await first;
    await waitFor(() => cluster.log('pc-0002').entries.length === 2, { timeoutMs: 10_000 });
    const stored = cluster.log('pc-0002').entries[1]?.payload ?? new Uint8Array();
    expect(stored.length).toBe(payload.length);
    expect(Buffer.from(stored).every((b) => b === 0x11)).toBe(true);
  });

  it('appendBatch sends many messages and returns their results in order', async () => {
    const cluster = await startCluster(1);
    const client = await connect(cluster, { maxInflightAppends: 8 });
    const v = vchannelOn('pc-0000');
    const w = vchannelOn('pc-0001');
    const batch = Array.from({ length: 50 }, (_, i) => ({
      vchannel: i % 2 === 0 ? v : w,
      payload: text(`m${i}`),
    }));
    // An empty batch appends nothing and answers with no results.
    expect(await client.appendBatch([])).toEqual([]);
    const results = await client.appendBatch(batch);
    expect(results).toHaveLength(50);
    expect(results.filter((_, i) => i % 2 === 0).map((r) => r.messageId.entryId)).toEqual(
      Array.from({ length: 25 }, (_, i) => i),
    );
    expect(cluster.log('pc-0000').payloads()).toEqual(
      batch.filter((_, i) => i % 2 === 0).map((_, i) => `m${i * 2}`),
    );
    expect(client.stats()).toMatchObject({ appended: 50, retries: 0 });
  });

  it('surfaces INVALID_ARGUMENT from the node at once, without retrying', async () => {
    const cluster = await startCluster(1);
    const client = await connect(cluster);
    cluster.node(0).produceHook = (m) =>
      m.message?.properties['bad'] === 'yes'
        ? new StreamingError('INVALID_ARGUMENT', 'property bad is not allowed')
        : undefined;
    const v = vchannelOn('pc-0000');
    await expect(
      client.append({ vchannel: v, payload: text('x'), properties: { bad: 'yes' } }),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', retryable: false });
    await expect(client.append({ vchannel: v, payload: text('ok') })).resolves.toBeDefined();
    expect(client.stats().retries).toBe(0);
    // Client-side validation fails before anything is sent.
    await expect(
      client.append({ vchannel: 'bad name!', payload: text('x') }),
    ).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
  });

  it('refuses a message larger than any node accepts before sending it, even with room in flight', async () => {
    const cluster = await startCluster(1);
    const client = await connect(cluster, { maxInflightBytes: 256 * 1024 * 1024 });
    const v = vchannelOn('pc-0000');
    const refused = await client
      .append({ vchannel: v, payload: new Uint8Array(64 * 1024 * 1024 + 1) })
      .then(
        () => undefined,
        (err: unknown) => err as StreamingError,
      );
    expect(refused?.code).toBe('INVALID_ARGUMENT');
    expect(refused?.message).toMatch(/largest a node accepts/);
    await expect(client.append({ vchannel: v, payload: text('ok') })).resolves.toBeDefined();
    expect(cluster.log('pc-0000').payloads(v)).toEqual(['ok']);
  });

  it('re-routes after a move mid-stream: nothing acknowledged is lost, unknown outcomes are retried and counted', async () => {
    const cluster = await startCluster(2);
    const client = await connect(cluster);
    const v = vchannelOn('pc-0000');
    const first = await client.appendBatch(
      Array.from({ length: 10 }, (_, i) => ({ vchannel: v, payload: text(`a${i}`) })),
    );
    // The old owner stores the next five but its results never leave: the move cuts them off.
    cluster.node(0).produceHook = () => 'hold';
    const pending = client.appendBatch(
      Array.from({ length: 5 }, (_, i) => ({ vchannel: v, payload: text(`b${i}`) })),
    );
    await waitFor(() => cluster.log('pc-0000').entries.length === 15, { timeoutMs: 5_000 });
    cluster.assign('pc-0000', cluster.node(1));
    const second = await pending;
    const third = await client.append({ vchannel: v, payload: text('c') });

    const log = cluster.log('pc-0000').payloads();
    for (const r of [...first, ...second, third]) {
      const entry = cluster
        .log('pc-0000')
        .entries.find(
          (e) =>
            Number(e.id.segmentId) === r.messageId.segmentId &&
            Number(e.id.entryId) === r.messageId.entryId,
        );
      expect(entry).toBeDefined();
    }
    expect(second.every((r) => r.messageId.segmentId === 1)).toBe(true);
    expect(third.messageId.segmentId).toBe(1);
    const duplicates = log.length - new Set(log).size;
    // This fake stores re-sends again; a node recognises them (same producer id and sequence).
    expect(duplicates).toBe(5);
    const entries = cluster.log('pc-0000').entries;
    const origins = (payload: string) =>
      entries.filter((e) => e.payload.toString() === payload).map((e) => e.origin);
    for (let i = 0; i < 5; i++) {
      const [sent, resent] = origins(`b${i}`);
      expect(sent).toMatch(/^\d+:\d+$/);
      expect(resent).toBe(sent);
    }
    // One producer id for the pchannel, a distinct sequence per message.
    expect(new Set(entries.map((e) => e.origin?.split(':')[0])).size).toBe(1);
    expect(new Set(entries.map((e) => e.origin)).size).toBe(new Set(log).size);
    expect(client.stats()).toMatchObject({ retries: 5, unknownOutcomes: 5 });
    expect(cluster.node(1).producers.size).toBe(1);
  });

  it('re-opens on the new owner after the old node is lost', async () => {
    const cluster = await startCluster(2);
    const client = await connect(cluster, { minBackoffMs: 10, maxBackoffMs: 50 });
    const v = vchannelOn('pc-0000');
    await client.append({ vchannel: v, payload: text('before') });
    const sub = client.read({ vchannel: v, from: 'earliest' });
    const it = sub[Symbol.asyncIterator]();
    expect(await take(it, 1)).toEqual(['before']);
    cluster.node(0).stop();
    const appending = client.append({ vchannel: v, payload: text('after') });
    await waitFor(() => cluster.coordinator.reports.length >= 1, { timeoutMs: 5_000 });
    // A node that went away counts as "not the owner" (ON_SHUTDOWN) and is reported.
    expect(cluster.coordinator.reports[0]?.error?.code).toBe(
      StreamingCode.STREAMING_CODE_ON_SHUTDOWN,
    );
    cluster.assign('pc-0000', cluster.node(1));
    await expect(appending).resolves.toMatchObject({ messageId: { segmentId: 1, entryId: 0 } });
    expect(await take(it, 1)).toEqual(['after']);
    expect(cluster.log('pc-0000').payloads()).toEqual(['before', 'after']);
    await sub.close();
  });

  it('re-sends an append the node refused with RESOURCE_EXHAUSTED, after a pause', async () => {
    const cluster = await startCluster(1);
    const client = await connect(cluster, { minBackoffMs: 10, maxBackoffMs: 50 });
    const v = vchannelOn('pc-0000');
    let refusals = 0;
    cluster.node(0).produceHook = () =>
      refusals++ < 2 ? new StreamingError('RESOURCE_EXHAUSTED', 'node buffer full') : undefined;
    await expect(client.append({ vchannel: v, payload: text('x') })).resolves.toBeDefined();
    expect(cluster.log('pc-0000').payloads()).toEqual(['x']);
    expect(client.stats()).toMatchObject({ retries: 2, reopens: 0 });
  });

  it('fails every pending append at once when the node refuses the channel for good', async () => {
    const cluster = await startCluster(1);
    const client = await connect(cluster);
    const v = vchannelOn('pc-0000');
    cluster.node(0).owned.delete('pc-0000');
    cluster.node(0).openError = new StreamingError('UNRECOVERABLE', 'log is damaged');
    const results = await Promise.allSettled([
      client.append({ vchannel: v, payload: text('a') }),
      client.append({ vchannel: v, payload: text('b') }),
    ]);
    expect(
      results.map((r) => r.status === 'rejected' && (r.reason as StreamingError).code),
    ).toEqual(['UNRECOVERABLE', 'UNRECOVERABLE']);
    expect(cluster.coordinator.reports).toHaveLength(0);
  });

  it('re-sends an append whose result the node dropped', async () => {
    const cluster = await startCluster(1);
    const client = await connect(cluster);
    const v = vchannelOn('pc-0000');
    let dropped = false;
    cluster.node(0).produceHook = (m) => {
      if (!dropped && m.message?.payload.toString() === 'm3') {
        dropped = true;
        return 'drop';
      }
      return undefined;
    };
    const results = await client.appendBatch(
      Array.from({ length: 8 }, (_, i) => ({ vchannel: v, payload: text(`m${i}`) })),
    );
    expect(results).toHaveLength(8);
    expect(
      cluster
        .log('pc-0000')
        .payloads()
        .filter((p) => p === 'm3'),
    ).toHaveLength(2);
    expect(client.stats().retries).toBe(1);
  });

  it('reports a node that denies ownership once per term, then follows the new owner', async () => {
    const cluster = await startCluster(2);
    const client = await connect(cluster, { minBackoffMs: 20, maxBackoffMs: 40 });
    const v = vchannelOn('pc-0002');
    // The coordinator still says node 0 at term 1, but node 0 lost the channel.
    cluster.node(0).owned.delete('pc-0002');
    const appending = client.append({ vchannel: v, payload: text('x') });
    await waitFor(() => cluster.node(0).openAttempts >= 4, { timeoutMs: 5_000 });
    await waitFor(() => cluster.coordinator.reports.length >= 1, { timeoutMs: 5_000 });
    expect(cluster.coordinator.reports).toHaveLength(1);
    expect(cluster.coordinator.reports[0]).toMatchObject({
      pchannel: { name: 'pc-0002', term: 1n },
      error: { cause: expect.stringMatching(/does not own/) as unknown },
    });
    const term = cluster.assign('pc-0002', cluster.node(1));
    expect(term).toBe(2n);
    await expect(appending).resolves.toMatchObject({ messageId: { segmentId: 0, entryId: 0 } });
    // The new owner denies at term 2: a second report, once.
    cluster.node(1).remove('pc-0002', new StreamingError('CHANNEL_NOT_EXIST', 'gone'));
    const again = client.append({ vchannel: v, payload: text('y') });
    await waitFor(() => cluster.node(1).openAttempts >= 4, { timeoutMs: 5_000 });
    expect(cluster.coordinator.reports.map((r) => [r.pchannel?.name, r.pchannel?.term])).toEqual([
      ['pc-0002', 1n],
      ['pc-0002', 2n],
    ]);
    cluster.assign('pc-0002', cluster.node(0));
    await expect(again).resolves.toBeDefined();
  });

  it('waits for room when the in-flight limit is reached, and an abort gives the slot back', async () => {
    const cluster = await startCluster(1);
    const client = await connect(cluster, { maxInflightAppends: 2 });
    const v = vchannelOn('pc-0000');
    cluster.node(0).produceHook = () => 'hold';
    const a = client.append({ vchannel: v, payload: text('a') });
    const b = client.append({ vchannel: v, payload: text('b') });
    await waitFor(() => cluster.log('pc-0000').entries.length === 2, { timeoutMs: 5_000 });
    const abort = new AbortController();
    const c = client.append({ vchannel: v, payload: text('c') }, { signal: abort.signal });
    abort.abort(new Error('caller gave up'));
    await expect(c).rejects.toThrow('caller gave up');
    expect(cluster.log('pc-0000').entries).toHaveLength(2);
    cluster.node(0).produceHook = undefined;
    cluster.node(0).releaseHeldResults();
    await Promise.all([a, b]);
    await client.append({ vchannel: v, payload: text('d') });
    expect(cluster.log('pc-0000').payloads()).toEqual(['a', 'b', 'd']);
  });
});

describe('read', () => {
  it('delivers every message exactly once, in order, across a move and a broken stream', async () => {
    const cluster = await startCluster(2);
    const client = await connect(cluster, { minBackoffMs: 10, maxBackoffMs: 50 });
    const v = vchannelOn('pc-0001');
    const other = vchannelOn('pc-0001', 'other');
    const expected: string[] = [];
    const put = async (from: number, to: number) => {
      const batch = [];
      for (let i = from; i < to; i++) {
        batch.push(
          { vchannel: v, payload: text(`m${i}`) },
          { vchannel: other, payload: text(`o${i}`) },
        );
        expected.push(`m${i}`);
      }
      await client.appendBatch(batch);
    };
    await put(0, 20);
    const sub = client.read({ vchannel: v, from: 'earliest' });
    const it = sub[Symbol.asyncIterator]();
    const got = await take(it, 10);
    cluster.assign('pc-0001', cluster.node(1));
    await put(20, 40);
    got.push(...(await take(it, 20)));
    cluster.node(1).breakConsumers('pc-0001');
    await put(40, 60);
    got.push(...(await take(it, 30)));
    expect(got).toEqual(expected);
    expect(client.stats().reopens).toBeGreaterThanOrEqual(2);
    // A time tick follows once the reader caught up.
    const next = await it.next();
    expect(next.value).toMatchObject({ type: 'timeTick' });
    await sub.close();
    expect(await sub.closed).toBeUndefined();
  });

  it('moves a read to the newer term of its pchannel even when the old node keeps serving it', async () => {
    const cluster = await startCluster(2);
    const client = await connect(cluster, { minBackoffMs: 10, maxBackoffMs: 50 });
    const v = vchannelOn('pc-0001');
    await client.append({ vchannel: v, payload: text('m0') });
    const sub = client.read({ vchannel: v, from: 'earliest' });
    const it = sub[Symbol.asyncIterator]();
    expect(await take(it, 1)).toEqual(['m0']);
    expect(cluster.node(0).consumers.size).toBe(1);
    // The old owner is not told (it has no session, say) and keeps its stream open.
    cluster.assign('pc-0001', cluster.node(1), true, false);
    await waitFor(
      () => cluster.node(1).consumers.size === 1 && cluster.node(0).consumers.size === 0,
      { timeoutMs: 10_000, description: 'the read reopened on the new owner' },
    );
    await client.append({ vchannel: v, payload: text('m1') });
    expect(await take(it, 1)).toEqual(['m1']);
    await sub.close();
  });

  it('after a move, delivers messages the new owner stamped below an idle time tick of the old owner (clocks apart)', async () => {
    const cluster = await startCluster(2);
    const client = await connect(cluster, { minBackoffMs: 10, maxBackoffMs: 50 });
    const v = vchannelOn('pc-0001');
    await client.append({ vchannel: v, payload: text('before') });
    const sub = client.read({ vchannel: v, from: 'earliest' });
    const it = sub[Symbol.asyncIterator]();
    const deadline = AbortSignal.timeout(10_000);
    const next = async (): Promise<ReadEvent> => {
      const r = await Promise.race([
        it.next(),
        new Promise<never>((_, reject) =>
          deadline.addEventListener('abort', () => reject(new Error('no event within 10 s')), {
            once: true,
          }),
        ),
      ]);
      if (r.done === true) throw new Error('the read ended');
      return r.value;
    };
    expect(await take(it, 1)).toEqual(['before']);
    // The old owner's clock runs ahead: its idle tick (never persisted) is far above the log's.
    const ahead = cluster.log('pc-0001').lastTick + 1_000_000n;
    cluster.node(0).sendTimeTick('pc-0001', ahead);
    for (let e = await next(); !(e.type === 'timeTick' && e.timeTick === ahead); e = await next());
    // The new owner continues from the highest tick in the log, below the announced one.
    cluster.assign('pc-0001', cluster.node(1));
    await client.append({ vchannel: v, payload: text('after') });
    let e = await next();
    while (e.type !== 'message') e = await next();
    expect(decode(e.payload)).toBe('after');
    expect(e.timeTick).toBeLessThan(ahead);
    await sub.close();
  });

  it('reads from a given position, inclusive or exclusive', async () => {
    const cluster = await startCluster(1);
    const client = await connect(cluster);
    const v = vchannelOn('pc-0002');
    const rs = await client.appendBatch(
      ['a', 'b', 'c', 'd'].map((p) => ({ vchannel: v, payload: text(p) })),
    );
    const pos = (rs[1] as (typeof rs)[number]).messageId;
    const from = client.read({ vchannel: v, from: { from: pos } });
    expect(await take(from[Symbol.asyncIterator](), 3)).toEqual(['b', 'c', 'd']);
    await from.close();
    const after = client.read({ vchannel: v, from: { after: pos } });
    expect(await take(after[Symbol.asyncIterator](), 2)).toEqual(['c', 'd']);
    await after.close();
  });

  it('keeps at most maxBufferedMessages buffered for a slow reader while the node backs up', async () => {
    const cluster = await startCluster(1);
    // The smallest receive window, so the bound below is tight: the transport's share of it is
    // the window (flowControlWindowBytes), not the client's buffer.
    const client = await connect(cluster, { flowControlWindowBytes: 64 * 1024 });
    const v = vchannelOn('pc-0000');
    const total = 3000;
    const filler = 'x'.repeat(1024);
    await client.appendBatch(
      Array.from({ length: total }, (_, i) => ({ vchannel: v, payload: text(`${i}:${filler}`) })),
    );
    const sub = client.read({ vchannel: v, from: 'earliest', maxBufferedMessages: 32 });
    const it = sub[Symbol.asyncIterator]();
    await it.next();
    const node = cluster.node(0);
    // Steady state: the reader's buffer is full, the call is paused and the node's writes back up.
    const stream = await waitFor(
      () =>
        sub.bufferedCount === 32 && [...node.consumers].find((c) => c.isBlocked && c.written > 32),
      { timeoutMs: 10_000, description: 'the node to block on a paused stream' },
    );
    // What the node got rid of is the reader's 32, plus what the transport holds: grpc-js's
    // 16-message stream buffers on each side and the HTTP/2 window (64 KiB here, ~63 messages).
    expect(stream.written).toBeLessThan(32 + 16 + 16 + 100);
    expect(stream.written).toBeLessThan(total);
    let count = 1;
    let maxBuffered = 0;
    while (count < total) {
      const r: IteratorResult<ReadEvent> = await it.next();
      maxBuffered = Math.max(maxBuffered, sub.bufferedCount);
      if (r.done !== true && r.value.type === 'message') {
        expect(decode(r.value.payload).split(':')[0]).toBe(String(count));
        count++;
      }
    }
    expect(maxBuffered).toBeLessThanOrEqual(32);
    await sub.close();
  });

  describe('teardown', () => {
    async function started(cluster: FakeCluster, client: StreamingClient, signal?: AbortSignal) {
      const v = vchannelOn('pc-0000');
      await client.append({ vchannel: v, payload: text('one') });
      const sub = client.read({ vchannel: v, from: 'earliest', signal });
      await waitFor(() => cluster.node(0).consumers.size === 1, { timeoutMs: 5_000 });
      return sub;
    }
    const gone = (cluster: FakeCluster) =>
      waitFor(() => cluster.node(0).consumers.size === 0, { timeoutMs: 5_000 });

    it('break in for-await closes the stream and resolves closed', async () => {
      const cluster = await startCluster(1);
      const client = await connect(cluster);
      const sub = await started(cluster, client);
      for await (const e of sub) {
        expect(e.type).toBe('message');
        break;
      }
      expect(await sub.closed).toBeUndefined();
      await gone(cluster);
      expect(cluster.node(0).closeRequests).toBe(1);
      expect(() => sub[Symbol.asyncIterator]()).toThrow(/only once/);
    });

    it('close() ends the iterator and resolves closed', async () => {
      const cluster = await startCluster(1);
      const client = await connect(cluster);
      const sub = await started(cluster, client);
      const it = sub[Symbol.asyncIterator]();
      await it.next();
      const waiting = it.next(); // blocks: nothing more to read but a time tick
      await sub.close();
      const tail = await waiting;
      expect(tail.done === true || tail.value.type === 'timeTick').toBe(true);
      expect(await it.next()).toEqual({ done: true, value: undefined });
      expect(await sub.closed).toBeUndefined();
      await gone(cluster);
    });

    it('await using disposes the subscription', async () => {
      const cluster = await startCluster(1);
      const client = await connect(cluster);
      let kept: Subscription | undefined;
      {
        await using sub = await started(cluster, client);
        kept = sub;
      }
      expect(await kept.closed).toBeUndefined();
      await gone(cluster);
    });

    it('aborting the signal ends the read and rejects the pending next with the reason', async () => {
      const cluster = await startCluster(1);
      const client = await connect(cluster);
      const abort = new AbortController();
      const sub = await started(cluster, client, abort.signal);
      const it = sub[Symbol.asyncIterator]();
      await it.next();
      const reason = new Error('stop reading');
      const pending = (async () => {
        for (;;) {
          const r = await it.next();
          if (r.done === true) return r;
        }
      })();
      abort.abort(reason);
      await expect(pending).rejects.toBe(reason);
      expect(await sub.closed).toBeUndefined();
      await gone(cluster);
    });
  });
});

describe('close', () => {
  it('fails appends still waiting for an owner with ON_SHUTDOWN when closed', async () => {
    const cluster = await startCluster(1);
    const client = await connect(cluster, { minBackoffMs: 10, maxBackoffMs: 50 });
    const v = vchannelOn('pc-0000');
    await client.append({ vchannel: v, payload: text('a') });
    cluster.node(0).stop();
    const waiting = client.appendBatch([
      { vchannel: v, payload: text('b') },
      { vchannel: v, payload: text('c') },
    ]);
    const failed = expect(waiting).rejects.toMatchObject({ code: 'ON_SHUTDOWN' });
    await waitFor(() => cluster.coordinator.reports.length >= 1, { timeoutMs: 5_000 });
    await client.close();
    await failed;
    expect(cluster.log('pc-0000').payloads()).toEqual(['a']);
  });

  it('closes producers, reads and the discovery stream with the close handshake', async () => {
    const cluster = await startCluster(1);
    const client = await connect(cluster);
    const v = vchannelOn('pc-0000');
    await client.append({ vchannel: v, payload: text('a') });
    const sub = client.read({ vchannel: v, from: 'earliest' });
    await waitFor(() => cluster.node(0).consumers.size === 1, { timeoutMs: 5_000 });
    await client.close();
    expect(cluster.coordinator.closeRequests).toBe(1);
    expect(await sub.closed).toBeUndefined();
    expect(cluster.node(0).producers.size).toBe(0);
    expect(cluster.node(0).consumers.size).toBe(0);
    await waitFor(() => cluster.coordinator.streams.size === 0, { timeoutMs: 5_000 });
    await expect(client.append({ vchannel: v, payload: text('b') })).rejects.toMatchObject({
      code: 'ON_SHUTDOWN',
    });
    expect(() => client.read({ vchannel: v, from: 'latest' })).toThrow(/closed/);
  });
});
