import { connect } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { credentials, makeGenericClientConstructor, type ClientDuplexStream } from '@grpc/grpc-js';
import {
  HandlerServiceClient,
  HandlerServiceService,
  ManagerServiceClient,
  ProduceRequest,
  MessageType,
  type CollectStatusResponse,
  type MessageID,
  type OpenConsumer,
  type ConsumeRequest,
  type ConsumeResponse,
  type ProduceResponse,
  type ProduceResult,
} from '@woodstream/proto';
import { decodeStatus, FramedClientCall, fromServiceError } from '@woodstream/streaming';
import { makeTempDir, waitFor, type TempDir } from '@woodstream/testing';
import {
  FileMetadataStore,
  Woodpecker,
  type Lease,
  type MetadataStore,
} from '@woodstream/woodpecker';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StreamingNode } from './streaming-node.js';

const PRODUCE_PATH = HandlerServiceService.produce.path;
const enc = new TextEncoder();
const dec = new TextDecoder();

/** The produce results a response carries: one (`result`) or several (`results`). */
function answers(frame: ProduceResponse): ProduceResult[] {
  const r = frame.response;
  if (r?.$case === 'result') return [r.result];
  if (r?.$case === 'results') return r.results.results;
  return [];
}

/** Collects the frames of a bidi call and the error that ended it. */
function collect<Req, Res>(call: ClientDuplexStream<Req, Res>) {
  const frames: Res[] = [];
  let error: unknown;
  let ended = false;
  call.on('data', (f: Res) => frames.push(f));
  call.on('error', (e) => (error = e));
  call.on('end', () => (ended = true));
  call.on('status', () => (ended = true));
  return { frames, error: () => error, ended: () => ended };
}

describe('streaming node', () => {
  let dir: TempDir;
  let metadata: FileMetadataStore;
  let wal: Woodpecker;
  let node: StreamingNode;
  let manager: InstanceType<typeof ManagerServiceClient>;
  let handler: InstanceType<typeof HandlerServiceClient>;
  /** Every lease the node was granted, latest last. */
  let leases: Lease[];

  const status = (): Promise<CollectStatusResponse> =>
    new Promise((resolve, reject) =>
      manager.collectStatus({}, (err, res) => (err ? reject(err) : resolve(res))),
    );
  const assign = (name: string, term: number): Promise<void> =>
    new Promise((resolve, reject) =>
      manager.assign({ pchannel: { name, term: BigInt(term), accessMode: 1 } }, (err) =>
        err ? reject(fromServiceError(err)) : resolve(),
      ),
    );
  const remove = (name: string, term: number): Promise<void> =>
    new Promise((resolve, reject) =>
      manager.remove({ pchannel: { name, term: BigInt(term), accessMode: 1 } }, (err) =>
        err ? reject(fromServiceError(err)) : resolve(),
      ),
    );

  /** Another node on the same WAL and metadata, with `options`; `stop` closes its clients too. */
  async function startNode(options: Parameters<typeof StreamingNode.start>[0]) {
    const other = await StreamingNode.start(
      { timeTickIntervalMs: 50, drainTimeoutMs: 0, ...options },
      { wal, metadata },
    );
    const otherManager = new ManagerServiceClient(other.address, credentials.createInsecure());
    const otherHandler = new HandlerServiceClient(other.address, credentials.createInsecure());
    return {
      handler: otherHandler,
      assign: (name: string): Promise<void> =>
        new Promise((resolve, reject) =>
          otherManager.assign({ pchannel: { name, term: 1n, accessMode: 1 } }, (err) =>
            err ? reject(fromServiceError(err)) : resolve(),
          ),
        ),
      async stop(): Promise<void> {
        otherManager.close();
        otherHandler.close();
        await other.stop({ drain: false });
      },
    };
  }

  /** A producer on `handler` that sends `count` messages of `bytes` bytes (filled with their index) to `vchannel` of `pchannel` (term 1). */
  function bulkProducer(
    handler: InstanceType<typeof HandlerServiceClient>,
    pchannel: string,
    vchannel: string,
    count: number,
    bytes: number,
  ) {
    const call = handler.produce();
    const state = collect<ProduceRequest, ProduceResponse>(call);
    call.write({
      request: {
        $case: 'open',
        open: { pchannel: { name: pchannel, term: 1n, accessMode: 1 }, producerId: 0n },
      },
    });
    for (let i = 0; i < count; i++) {
      call.write({
        request: {
          $case: 'produce',
          produce: {
            requestId: i + 1,
            vchannel,
            message: { payload: Buffer.alloc(bytes, i), properties: {} },
            sequence: 0,
          },
        },
      });
    }
    return { call, state, count };
  }

  /** Waits for every answer of `p`, checks they are successes in request order, then ends it cleanly. */
  async function expectAllAnsweredInOrder(
    p: ReturnType<typeof bulkProducer>,
    timeoutMs: number,
  ): Promise<void> {
    const results = (): ProduceResult[] => p.state.frames.flatMap((f) => answers(f));
    await waitFor(() => results().length === p.count, {
      timeoutMs,
      description: 'every message of the producer answered',
    });
    expect(results().map((r) => [r.requestId, r.outcome?.$case])).toEqual(
      Array.from({ length: p.count }, (_, i) => [i + 1, 'success']),
    );
    p.call.end();
    await waitFor(() => p.state.ended(), { timeoutMs: 10_000 });
    expect(p.state.error()).toBeUndefined();
  }

  function producer(name: string, term: number, producerId = 0n) {
    const call = handler.produce();
    const state = collect<ProduceRequest, ProduceResponse>(call);
    call.write({
      request: {
        $case: 'open',
        open: { pchannel: { name, term: BigInt(term), accessMode: 1 }, producerId },
      },
    });
    let next = 1;
    return {
      ...state,
      call,
      send(
        vchannel: string,
        text: string | Uint8Array,
        properties: Record<string, string> = {},
        sequence = 0,
      ): number {
        const requestId = next++;
        const payload =
          typeof text === 'string' ? Buffer.from(enc.encode(text)) : Buffer.from(text);
        call.write({
          request: {
            $case: 'produce',
            produce: { requestId, vchannel, message: { payload, properties }, sequence },
          },
        });
        return requestId;
      },
      // One response may answer several frames (`results`), a lone one comes as `result`.
      results: () => state.frames.flatMap((f) => answers(f)),
    };
  }

  function consumer(
    name: string,
    term: number,
    vchannel: string,
    deliver: Pick<OpenConsumer, 'deliverPolicy' | 'deliverFilters'> = {
      deliverPolicy: { policy: { $case: 'all', all: {} } },
      deliverFilters: [],
    },
  ) {
    const call = handler.consume();
    const state = collect<ConsumeRequest, ConsumeResponse>(call);
    call.write({
      request: {
        $case: 'open',
        open: { pchannel: { name, term: BigInt(term), accessMode: 1 }, vchannel, ...deliver },
      },
    });
    return {
      ...state,
      call,
      messages: () =>
        state.frames.flatMap((f) => (f.response?.$case === 'message' ? [f.response.message] : [])),
      ticks: () =>
        state.frames.flatMap((f) =>
          f.response?.$case === 'timeTick' ? [f.response.timeTick.timeTick] : [],
        ),
    };
  }

  beforeEach(async () => {
    dir = await makeTempDir('node');
    metadata = await FileMetadataStore.open({ path: join(dir.path, 'meta.log') });
    wal = Woodpecker.open({ metadata, storage: { mode: 'local', rootDir: join(dir.path, 'wal') } });
    leases = [];
    const store = metadata;
    const tracked = new Proxy(store, {
      get(target, prop) {
        if (prop === 'grantLease') {
          return async (...args: Parameters<MetadataStore['grantLease']>) => {
            const lease = await store.grantLease(...args);
            leases.push(lease);
            return lease;
          };
        }
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === 'function' ? (value as () => unknown).bind(target) : value;
      },
    });
    node = await StreamingNode.start(
      { timeTickIntervalMs: 50, maxMessageBytes: 1024, drainTimeoutMs: 0 },
      { wal, metadata: tracked },
    );
    manager = new ManagerServiceClient(node.address, credentials.createInsecure());
    handler = new HandlerServiceClient(node.address, credentials.createInsecure());
  });
  afterEach(async () => {
    manager.close();
    handler.close();
    await node.stop({ drain: false });
    await wal.close();
    await metadata.close();
    await dir.remove();
  });

  it('advertises a 4 MiB HTTP/2 receive window, so large produces do not wait for window updates', async () => {
    const session = connect(`http://${node.address}`);
    try {
      await new Promise<void>((resolve, reject) => {
        session.once('remoteSettings', () => resolve());
        session.once('error', reject);
      });
      expect(session.remoteSettings.initialWindowSize).toBe(4 * 1024 * 1024);
      await waitFor(() => (session.state.remoteWindowSize ?? 0) >= 4 * 1024 * 1024, {
        timeoutMs: 5_000,
      });
    } finally {
      session.destroy();
    }
  });

  it('answers every message of a producer whose messages each exceed its in-flight byte limit, in order (the stream pauses and resumes without stalling)', async () => {
    const limited = await startNode({
      maxMessageBytes: 2 * 1024 * 1024,
      maxInflightBytesPerProducer: 1024 * 1024,
      flowControlWindowBytes: 64 * 1024,
    });
    try {
      await limited.assign('wal-0009');
      // Each message is over the 1 MiB limit: every frame pauses the stream until answered.
      const p = bulkProducer(limited.handler, 'wal-0009', 'big', 6, 1536 * 1024);
      await expectAllAnsweredInOrder(p, 20_000);
    } finally {
      await limited.stop();
    }
  });

  it('answers every message of many producers that together exceed the node budget, each in order (paused streams resume)', async () => {
    const limited = await startNode({
      maxMessageBytes: 2 * 1024 * 1024,
      maxInflightBytesPerNode: 1024 * 1024,
      flowControlWindowBytes: 64 * 1024,
    });
    try {
      const channels = ['wal-0010', 'wal-0011'];
      for (const name of channels) await limited.assign(name);
      // Three producers over two channels, 8 x 512 KiB each: 12 MiB against a 1 MiB node budget.
      const producers = [0, 1, 2].map((p) =>
        bulkProducer(limited.handler, channels[p % 2] as string, `p${p}`, 8, 512 * 1024),
      );
      for (const p of producers) await expectAllAnsweredInOrder(p, 30_000);
    } finally {
      await limited.stop();
    }
  });

  it('refuses streams past maxStreamsPerNode with RESOURCE_EXHAUSTED and takes new ones once one ends', async () => {
    const limited = await startNode({ maxStreamsPerNode: 2 });
    const limitedHandler = limited.handler;
    const pchannel = { name: 'wal-0012', term: 1n, accessMode: 1 };
    const openProducer = () => {
      const call = limitedHandler.produce();
      const state = collect<ProduceRequest, ProduceResponse>(call);
      call.write({ request: { $case: 'open', open: { pchannel, producerId: 0n } } });
      return { call, state };
    };
    const openConsumer = () => {
      const call = limitedHandler.consume();
      const state = collect<ConsumeRequest, ConsumeResponse>(call);
      call.write({
        request: {
          $case: 'open',
          open: {
            pchannel,
            vchannel: 'v',
            deliverPolicy: { policy: { $case: 'all', all: {} } },
            deliverFilters: [],
          },
        },
      });
      return { call, state };
    };
    const isOpen = (frames: { response?: { $case: string } }[]) =>
      frames.some((f) => f.response?.$case === 'opened');
    try {
      await limited.assign(pchannel.name);
      const p = openProducer();
      const c = openConsumer();
      await waitFor(() => isOpen(p.state.frames) && isOpen(c.state.frames), {
        timeoutMs: 10_000,
      });
      const third = openConsumer();
      await waitFor(() => third.state.error() !== undefined, { timeoutMs: 10_000 });
      expect(fromServiceError(third.state.error())).toMatchObject({
        code: 'RESOURCE_EXHAUSTED',
        retryable: true,
      });
      // The two open ones keep working.
      p.call.write({
        request: {
          $case: 'produce',
          produce: {
            requestId: 1,
            vchannel: 'v',
            message: { payload: Buffer.from('x'), properties: {} },
            sequence: 0,
          },
        },
      });
      await waitFor(() => c.state.frames.some((f) => f.response?.$case === 'message'), {
        timeoutMs: 10_000,
      });
      // A producer that ends frees its slot.
      p.call.end();
      await waitFor(() => p.state.ended(), { timeoutMs: 10_000 });
      const fourth = await waitFor(
        async () => {
          const q = openProducer();
          await waitFor(() => isOpen(q.state.frames) || q.state.error() !== undefined, {
            timeoutMs: 10_000,
          });
          if (isOpen(q.state.frames)) return q;
          return false;
        },
        { timeoutMs: 10_000, description: 'a new stream taken after one ended' },
      );
      fourth.call.end();
      c.call.cancel();
    } finally {
      await limited.stop();
    }
  });

  it('registers a lease-bound session with its address', async () => {
    const kv = await metadata.get(`session/node/${node.serverId}`);
    expect(JSON.parse(dec.decode(kv?.value))).toMatchObject({
      serverId: node.serverId,
      address: node.address,
      stopping: false,
    });
    expect(kv?.leaseId).toBeDefined();
  });

  it('reports its open channels with their terms, ticks and open streams through CollectStatus', async () => {
    await assign('wal-0000', 2);
    const p = producer('wal-0000', 2);
    const c = consumer('wal-0000', 2, 'v');
    const isOpen = (frames: { response?: { $case: string } }[]) =>
      frames.some((f) => f.response?.$case === 'opened');
    await waitFor(() => isOpen(p.frames) && isOpen(c.frames), { timeoutMs: 10_000 });
    const before = await status();
    expect(before.stopping).toBe(false);
    expect(before.channels).toHaveLength(1);
    expect(before.channels[0]).toMatchObject({
      pchannel: { name: 'wal-0000', term: 2n },
      producers: 1,
      consumers: 1,
    });
    expect(before.channels[0]?.timeTick).toBeGreaterThan(0n);
    p.call.end();
    c.call.write({ request: { $case: 'close', close: {} } });
    await waitFor(
      async () => {
        const s = (await status()).channels[0];
        return s?.producers === 0 && s.consumers === 0;
      },
      { timeoutMs: 10_000, description: 'both streams counted as closed' },
    );
  });

  it('stops reporting a channel whose WAL was fenced by another writer, and refuses streams on it', async () => {
    await assign('wal-0008', 1);
    const p = producer('wal-0008', 1);
    p.send('v', 'before');
    await waitFor(() => p.results().length === 1, { timeoutMs: 10_000 });
    expect((await status()).channels.map((c) => c.pchannel?.name)).toEqual(['wal-0008']);
    // Another writer of the same log fences the node's: its next append fails and the WAL closes.
    const log = await wal.openLog('wal-0008');
    const other = await log.openWriter();
    p.send('v', 'after');
    await waitFor(() => p.results().length === 2, { timeoutMs: 10_000 });
    expect(p.results()[1]?.outcome).toMatchObject({ $case: 'error' });
    await waitFor(async () => (await status()).channels.length === 0, {
      timeoutMs: 10_000,
      description: 'the fenced channel no longer reported',
    });
    const late = producer('wal-0008', 1);
    await waitFor(() => late.error() !== undefined, { timeoutMs: 5_000 });
    expect(fromServiceError(late.error())).toMatchObject({ code: 'CHANNEL_NOT_EXIST' });
    // Once the coordinator removed that term, a late Assign of it does not reopen it (which
    // would fence the writer that holds the log now).
    await remove('wal-0008', 1);
    await expect(assign('wal-0008', 1)).rejects.toMatchObject({ code: 'IGNORED_OPERATION' });
    // The coordinator re-places it with a new term: the node opens it again.
    await other.close();
    await assign('wal-0008', 2);
    expect((await status()).channels.map((c) => [c.pchannel?.name, c.pchannel?.term])).toEqual([
      ['wal-0008', 2n],
    ]);
  });

  it('acknowledges produces in order with growing time ticks and delivers one vchannel in order with time ticks', async () => {
    await assign('wal-0000', 1);
    const p = producer('wal-0000', 1);
    for (let i = 0; i < 20; i++) p.send(i % 2 === 0 ? 'even' : 'odd', `m${i}`, { i: String(i) });
    await waitFor(() => p.results().length === 20, { timeoutMs: 10_000 });
    const results = p.results();
    expect(results.map((r) => r.requestId)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    const ticks = results.map((r) =>
      r.outcome?.$case === 'success' ? r.outcome.success.timeTick : -1n,
    );
    for (let i = 1; i < ticks.length; i++) expect(ticks[i]).toBeGreaterThan(ticks[i - 1] as bigint);

    const c = consumer('wal-0000', 1, 'even');
    await waitFor(() => c.messages().length === 10, { timeoutMs: 10_000 });
    expect(c.messages().map((m) => dec.decode(m.payload))).toEqual(
      Array.from({ length: 10 }, (_, i) => `m${i * 2}`),
    );
    expect(c.messages()[1]?.properties).toEqual({ i: '2' });
    // Idle ticks keep coming and pass the last message's tick.
    const lastTick = c.messages().at(-1)?.timeTick ?? 0n;
    await waitFor(() => c.ticks().some((t) => t > lastTick), {
      timeoutMs: 10_000,
      description: 'a time tick past the last message',
    });
    p.call.end();
    c.call.write({ request: { $case: 'close', close: {} } });
    await waitFor(() => c.frames.some((f) => f.response?.$case === 'closed'), { timeoutMs: 5_000 });
  });

  it('orders Assign and Remove by term: stale ones are IGNORED_OPERATION, streams need the current term', async () => {
    await assign('wal-0001', 2);
    await expect(assign('wal-0001', 1)).rejects.toMatchObject({ code: 'IGNORED_OPERATION' });
    await expect(remove('wal-0001', 1)).rejects.toMatchObject({ code: 'IGNORED_OPERATION' });
    const stale = producer('wal-0001', 1);
    await waitFor(() => stale.error() !== undefined, { timeoutMs: 5_000 });
    expect(fromServiceError(stale.error())).toMatchObject({ code: 'UNMATCHED_CHANNEL_TERM' });
    const unknown = producer('wal-0099', 1);
    await waitFor(() => unknown.error() !== undefined, { timeoutMs: 5_000 });
    expect(fromServiceError(unknown.error())).toMatchObject({ code: 'CHANNEL_NOT_EXIST' });
  });

  it('answers a produce_batch frame with one results frame, in order, with per-message errors', async () => {
    await assign('wal-0004', 1);
    const p = producer('wal-0004', 1);
    const payload = (t: string): Buffer => Buffer.from(enc.encode(t));
    p.call.write({
      request: {
        $case: 'produceBatch',
        produceBatch: {
          messages: [
            {
              requestId: 1,
              vchannel: 'b',
              message: { payload: payload('one'), properties: {} },
              sequence: 0,
            },
            {
              requestId: 2,
              vchannel: 'bad/name',
              message: { payload: payload('two'), properties: {} },
              sequence: 0,
            },
            {
              requestId: 3,
              vchannel: 'b',
              message: { payload: payload('three'), properties: {} },
              sequence: 0,
            },
          ],
        },
      },
    });
    await waitFor(() => p.frames.some((f) => f.response?.$case === 'results'), {
      timeoutMs: 10_000,
    });
    const frame = p.frames.find((f) => f.response?.$case === 'results');
    const results = frame?.response?.$case === 'results' ? frame.response.results.results : [];
    expect(results.map((r) => [r.requestId, r.outcome?.$case])).toEqual([
      [1, 'success'],
      [2, 'error'],
      [3, 'success'],
    ]);
    const c = consumer('wal-0004', 1, 'b');
    await waitFor(() => c.messages().length === 2, { timeoutMs: 10_000 });
    expect(c.messages().map((m) => dec.decode(m.payload))).toEqual(['one', 'three']);
    p.call.end();
  });

  it('answers a message its producer re-sends on a new stream with the first result, and stores it once', async () => {
    await assign('wal-0020', 1);
    const success = (r: ProduceResult | undefined) =>
      r?.outcome?.$case === 'success' ? r.outcome.success : undefined;
    const first = producer('wal-0020', 1, 0xfeedn);
    first.send('d', 'one', {}, 1);
    first.send('d', 'two', {}, 2);
    await waitFor(() => first.results().length === 2, { timeoutMs: 10_000 });
    // The stream breaks; the producer cannot know whether "two" was stored, and sends it again.
    first.call.cancel();
    const again = producer('wal-0020', 1, 0xfeedn);
    again.send('d', 'two', {}, 2);
    again.send('d', 'three', {}, 3);
    // Another producer's sequence 2 is a message of its own; one without an id is never deduplicated.
    const other = producer('wal-0020', 1, 0xbeefn);
    other.send('d', 'theirs', {}, 2);
    const anonymous = producer('wal-0020', 1);
    anonymous.send('d', 'anon', {}, 2);
    await waitFor(
      () =>
        again.results().length === 2 &&
        other.results().length === 1 &&
        anonymous.results().length === 1,
      { timeoutMs: 10_000 },
    );
    expect(success(again.results()[0])).toEqual(success(first.results()[1]));
    expect(success(again.results()[1])?.timeTick).toBeGreaterThan(
      success(first.results()[1])?.timeTick ?? 0n,
    );
    const c = consumer('wal-0020', 1, 'd');
    await waitFor(() => c.messages().length === 5, { timeoutMs: 10_000 });
    // Streams run side by side: their messages interleave in any order.
    expect(
      c
        .messages()
        .map((m) => dec.decode(m.payload))
        .sort(),
    ).toEqual(['anon', 'one', 'theirs', 'three', 'two']);
    // The stamp is the node's own: consumers do not see it.
    for (const m of c.messages()) expect(Object.keys(m.properties)).toEqual([]);
    for (const p of [again, other, anonymous]) p.call.end();
    c.call.cancel();
  });

  it('answers frames whose appends complete together with one response, in request order', async () => {
    await assign('wal-0007', 1);
    const p = producer('wal-0007', 1);
    // Register the vchannel first, so the burst below goes through one group commit path.
    p.send('burst', 'first');
    await waitFor(() => p.results().length === 1, { timeoutMs: 10_000 });
    const count = 50;
    for (let i = 0; i < count; i++) p.send('burst', `m${i}`);
    await waitFor(() => p.results().length === count + 1, { timeoutMs: 10_000 });
    const results = p.results();
    expect(results.map((r) => [r.requestId, r.outcome?.$case])).toEqual(
      Array.from({ length: count + 1 }, (_, i) => [i + 1, 'success']),
    );
    // One response per frame would be 50; frames appended in the same turn share one.
    const responses = p.frames.filter((f) => answers(f).length > 0).length - 1;
    expect(responses).toBeLessThan(count);
    const c = consumer('wal-0007', 1, 'burst');
    await waitFor(() => c.messages().length === count + 1, { timeoutMs: 10_000 });
    expect(c.messages().map((m) => dec.decode(m.payload))).toEqual([
      'first',
      ...Array.from({ length: count }, (_, i) => `m${i}`),
    ]);
    p.call.end();
    c.call.write({ request: { $case: 'close', close: {} } });
    await waitFor(() => c.frames.some((f) => f.response?.$case === 'closed'), { timeoutMs: 5_000 });
  });

  it('answers a frame of acceptable messages of known vchannels in order: consecutive ids, rising ticks, delivered per vchannel', async () => {
    await assign('wal-0006', 1);
    const p = producer('wal-0006', 1);
    const frame = (first: number, vchannels: string[]) =>
      p.call.write({
        request: {
          $case: 'produceBatch',
          produceBatch: {
            messages: vchannels.map((vchannel, i) => ({
              requestId: first + i,
              vchannel,
              message: { payload: Buffer.from(`m${first + i}`), properties: { k: 'v' } },
              sequence: 0,
            })),
          },
        },
      });
    // The first frame registers x and y one by one; the second finds both known.
    const resultFrames = () =>
      p.frames.flatMap((f) =>
        f.response?.$case === 'results' ? [f.response.results.results] : [],
      );
    frame(1, ['x', 'y']);
    await waitFor(() => resultFrames().length === 1, { timeoutMs: 10_000 });
    frame(3, ['x', 'y', 'x', 'y']);
    await waitFor(() => resultFrames().length === 2, { timeoutMs: 10_000 });
    const all = resultFrames().flat();
    expect(all.map((r) => [r.requestId, r.outcome?.$case])).toEqual(
      [1, 2, 3, 4, 5, 6].map((id) => [id, 'success']),
    );
    const ok = all.map((r) => (r.outcome?.$case === 'success' ? r.outcome.success : undefined));
    const entryIds = ok.map((s) => Number(s?.id?.entryId));
    expect(entryIds).toEqual(entryIds.map((_, i) => (entryIds[0] as number) + i));
    const ticks = ok.map((s) => s?.timeTick ?? 0n);
    for (let i = 1; i < ticks.length; i++) expect(ticks[i]).toBeGreaterThan(ticks[i - 1] as bigint);
    const c = consumer('wal-0006', 1, 'y');
    await waitFor(() => c.messages().length === 3, { timeoutMs: 10_000 });
    expect(c.messages().map((m) => dec.decode(m.payload))).toEqual(['m2', 'm4', 'm6']);
    expect(c.messages()[0]?.properties).toMatchObject({ k: 'v' });
    p.call.end();
  });

  it('applies deliver policies and filters itself: start_from, start_after, latest, tick > and >=, message types', async () => {
    await assign('wal-0001', 1);
    const p = producer('wal-0001', 1);
    for (let i = 0; i < 6; i++) p.send('f', `m${i}`);
    await waitFor(() => p.results().length === 6, { timeoutMs: 10_000 });
    const ok = p
      .results()
      .map((r) => (r.outcome?.$case === 'success' ? r.outcome.success : undefined));
    const id = (i: number) => ok[i]?.id;
    const tick = (i: number) => ok[i]?.timeTick ?? 0n;
    const read = async (
      deliver: Pick<OpenConsumer, 'deliverPolicy' | 'deliverFilters'>,
      count: number,
    ) => {
      const c = consumer('wal-0001', 1, 'f', deliver);
      await waitFor(() => c.messages().length >= count, { timeoutMs: 10_000 });
      // Everything there is has been read once a time tick above the last message arrives.
      await waitFor(() => c.ticks().some((t) => t > tick(5)), { timeoutMs: 10_000 });
      c.call.write({ request: { $case: 'close', close: {} } });
      return c.messages().map((m) => dec.decode(m.payload));
    };
    const all = { policy: { $case: 'all' as const, all: {} } };
    expect(
      await read(
        {
          deliverPolicy: { policy: { $case: 'startFrom', startFrom: id(2) as MessageID } },
          deliverFilters: [],
        },
        4,
      ),
    ).toEqual(['m2', 'm3', 'm4', 'm5']);
    expect(
      await read(
        {
          deliverPolicy: { policy: { $case: 'startAfter', startAfter: id(2) as MessageID } },
          deliverFilters: [],
        },
        3,
      ),
    ).toEqual(['m3', 'm4', 'm5']);
    expect(
      await read(
        {
          deliverPolicy: all,
          deliverFilters: [{ filter: { $case: 'timeTickGt', timeTickGt: tick(3) } }],
        },
        2,
      ),
    ).toEqual(['m4', 'm5']);
    expect(
      await read(
        {
          deliverPolicy: all,
          deliverFilters: [{ filter: { $case: 'timeTickGte', timeTickGte: tick(3) } }],
        },
        3,
      ),
    ).toEqual(['m3', 'm4', 'm5']);
    // Only time ticks: no message at all, while ticks still come.
    expect(
      await read(
        {
          deliverPolicy: all,
          deliverFilters: [
            {
              filter: {
                $case: 'messageTypes',
                messageTypes: { types: [MessageType.MESSAGE_TYPE_TIME_TICK] },
              },
            },
          ],
        },
        0,
      ),
    ).toEqual([]);
    // Latest: only what is appended after the open.
    const latest = consumer('wal-0001', 1, 'f', {
      deliverPolicy: { policy: { $case: 'latest', latest: {} } },
      deliverFilters: [],
    });
    await waitFor(() => latest.frames.some((f) => f.response?.$case === 'opened'), {
      timeoutMs: 5_000,
    });
    p.send('f', 'm6');
    await waitFor(() => latest.messages().length === 1, { timeoutMs: 10_000 });
    expect(dec.decode(latest.messages()[0]?.payload)).toBe('m6');
    latest.call.write({ request: { $case: 'close', close: {} } });
    p.call.end();
  });

  it('tells a latest consumer where it starts, so a client can resume there without a gap', async () => {
    await assign('wal-0005', 1);
    const p = producer('wal-0005', 1);
    p.send('v', 'a');
    p.send('v', 'b');
    await waitFor(() => p.results().length === 2, { timeoutMs: 10_000 });
    const last = p.results()[1]?.outcome;
    const call = handler.consume();
    const state = collect<ConsumeRequest, ConsumeResponse>(call);
    call.write({
      request: {
        $case: 'open',
        open: {
          pchannel: { name: 'wal-0005', term: 1n, accessMode: 1 },
          vchannel: 'v',
          deliverPolicy: { policy: { $case: 'latest', latest: {} } },
          deliverFilters: [],
        },
      },
    });
    await waitFor(() => state.frames.some((f) => f.response?.$case === 'opened'), {
      timeoutMs: 5_000,
    });
    const opened = state.frames.find((f) => f.response?.$case === 'opened');
    const startId =
      opened?.response?.$case === 'opened' ? opened.response.opened.startId : undefined;
    expect(last?.$case).toBe('success');
    const lastId = last?.$case === 'success' ? last.success.id : undefined;
    // After every acknowledged message (a persisted time tick may have followed them).
    expect(startId?.segmentId).toBe(lastId?.segmentId);
    expect(startId?.entryId).toBeGreaterThan(lastId?.entryId ?? Infinity);
    call.write({ request: { $case: 'close', close: {} } });
    p.call.end();
  });

  it('answers bad input with typed errors, loses nothing and keeps serving', async () => {
    await assign('wal-0002', 1);
    const p = producer('wal-0002', 1);
    p.send('ok', 'fine');
    p.send('ok', new Uint8Array(2048));
    p.send('bad/name', 'x');
    p.send('ok', 'props', { _tt: '1' });
    p.send('ok', 'still fine');
    // Far above this node's limit (1 KiB) and gRPC's default 4 MiB: refused alone.
    p.send('ok', new Uint8Array(6 * 1024 * 1024));
    p.send('ok', 'after big');
    await waitFor(() => p.results().length === 7, { timeoutMs: 10_000 });
    expect(
      p.results().map((r) => (r.outcome?.$case === 'error' ? r.outcome.error.code : 'ok')),
    ).toEqual(['ok', 7, 7, 7, 'ok', 7, 'ok']);
    const typed = (err: unknown) => fromServiceError(err);

    // Frames in the wrong order end that stream only, with a typed error.
    const early = handler.produce();
    const state = collect(early);
    early.write({
      request: {
        $case: 'produce',
        produce: {
          requestId: 1,
          vchannel: 'ok',
          message: { payload: Buffer.from('x'), properties: {} },
          sequence: 0,
        },
      },
    });
    await waitFor(() => state.error() !== undefined, { timeoutMs: 5_000 });
    expect(typed(state.error())).toMatchObject({ code: 'INVALID_ARGUMENT' });
    const twice = producer('wal-0002', 1);
    twice.call.write({
      request: {
        $case: 'open',
        open: { pchannel: { name: 'wal-0002', term: 1n, accessMode: 1 }, producerId: 0n },
      },
    });
    await waitFor(() => twice.error() !== undefined, { timeoutMs: 5_000 });
    expect(typed(twice.error()).code).toBe('INVALID_ARGUMENT');
    expect(typed(twice.error()).message).toMatch(/already open/);
    const c2 = consumer('wal-0002', 1, 'ok');
    c2.call.write({
      request: {
        $case: 'open',
        open: {
          pchannel: { name: 'wal-0002', term: 1n, accessMode: 1 },
          vchannel: 'ok',
          deliverPolicy: { policy: { $case: 'all', all: {} } },
          deliverFilters: [],
        },
      },
    });
    await waitFor(() => c2.frames.some((f) => f.response?.$case === 'closed'), {
      timeoutMs: 5_000,
    });
    const closed = c2.frames.find((f) => f.response?.$case === 'closed')?.response;
    expect(closed?.$case === 'closed' && closed.closed.error?.code).toBe(7);

    // Invalid and unknown channel names on open.
    const badName = producer('wal/0002', 1);
    await waitFor(() => badName.error() !== undefined, { timeoutMs: 5_000 });
    expect(typed(badName.error())).toMatchObject({ code: 'INVALID_ARGUMENT' });
    const unknown = producer('wal-0099', 1);
    await waitFor(() => unknown.error() !== undefined, { timeoutMs: 5_000 });
    expect(typed(unknown.error())).toMatchObject({ code: 'CHANNEL_NOT_EXIST' });

    // Garbage bytes on the wire, on both streams: a typed error, not a bare INTERNAL.
    const raw = (method: 'Produce' | 'Consume') => {
      const Raw = makeGenericClientConstructor(
        {
          call: {
            path: `/woodstream.streaming.v1.HandlerService/${method}`,
            requestStream: true,
            responseStream: true,
            requestSerialize: (b: Buffer) => b,
            requestDeserialize: (b: Buffer) => b,
            responseSerialize: (b: Buffer) => b,
            responseDeserialize: (b: Buffer) => b,
          },
        },
        'Raw',
      );
      return new Raw(node.address, credentials.createInsecure()) as unknown as {
        call(): ClientDuplexStream<Buffer, Buffer>;
        close(): void;
      };
    };
    for (const method of ['Produce', 'Consume'] as const) {
      const client = raw(method);
      const garbage = client.call();
      const g = collect(garbage);
      garbage.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]));
      await waitFor(() => g.error() !== undefined, { timeoutMs: 5_000 });
      expect(typed(g.error()).code).toBe('INVALID_ARGUMENT');
      expect(typed(g.error()).message).toMatch(/malformed/);
      client.close();
    }

    // The same on the framed stream (the node's port, the SDK's produce path).
    const framedRaw = () =>
      new FramedClientCall<Buffer, Buffer>(
        { address: node.address, method: PRODUCE_PATH, maxBodyBytes: 1 << 20 },
        {
          serializeRequest: (b) => b,
          deserializeRequest: (b) => b,
          serializeResponse: (b) => b,
          deserializeResponse: (b) => b,
        },
      );
    const openFrame = Buffer.from(
      ProduceRequest.encode({
        request: {
          $case: 'open',
          open: { pchannel: { name: 'wal-0002', term: 1n, accessMode: 1 }, producerId: 0n },
        },
      }).finish(),
    );
    for (const frames of [
      [Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x01])], // undecodable message
      [openFrame, Buffer.from([0x0a, 0x7f])], // open, then a truncated one
      // open, then a produce whose request id is 2^53 (request ids are below it)
      [openFrame, Buffer.from([18, 9, 8, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10])],
    ]) {
      const call = framedRaw();
      const f = collect(call as unknown as ClientDuplexStream<Buffer, Buffer>);
      for (const frame of frames) call.write(frame);
      await waitFor(() => f.error() !== undefined, { timeoutMs: 5_000 });
      expect(typed(f.error()).code).toBe('INVALID_ARGUMENT');
      expect(typed(f.error()).message).toMatch(/malformed/);
    }
    // Bytes that break the framing itself: a typed status, then the connection is closed.
    const [host, port] = node.address.split(':') as [string, string];
    const method = Buffer.from(PRODUCE_PATH);
    const openHeader = Buffer.from([1, 0, 0, 0, method.length]);
    for (const junk of [
      Buffer.from([0x99, 1, 2, 3, 4]),
      Buffer.concat([openHeader, method, Buffer.from([0x42, 0, 0, 0, 1, 0])]),
    ]) {
      const socket = netConnect(Number(port), host);
      const got: Buffer[] = [];
      socket.on('data', (d: Buffer) => got.push(d));
      const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
      socket.write(Buffer.concat([Buffer.from('WSFRAME1'), junk]));
      await closed;
      const answer = Buffer.concat(got);
      const st = decodeStatus(answer.subarray(5));
      expect(typed({ ...st, details: st.details })).toMatchObject({ code: 'INVALID_ARGUMENT' });
    }

    // The first producer kept going, and everything it was told is stored is there, in order.
    p.send('ok', 'after garbage');
    await waitFor(() => p.results().length === 8, { timeoutMs: 10_000 });
    expect(p.results()[7]?.outcome?.$case).toBe('success');
    const c = consumer('wal-0002', 1, 'ok');
    await waitFor(() => c.messages().length === 4, { timeoutMs: 10_000 });
    expect(c.messages().map((m) => dec.decode(m.payload))).toEqual([
      'fine',
      'still fine',
      'after big',
      'after garbage',
    ]);
    p.call.end();
    c.call.write({ request: { $case: 'close', close: {} } });
  });

  it('closes its channels when its session is lost, registers again and opens channels the coordinator assigns anew', async () => {
    // wal-0005's open at term 1 fails (another writer holds term 2): a retry of term 1 would
    // be allowed until something ends that term.
    const other = await (await wal.createLog('wal-0005')).openWriter({ ownerTerm: 2 });
    await expect(assign('wal-0005', 1)).rejects.toMatchObject({ code: 'CHANNEL_FENCED' });
    await other.close();
    await assign('wal-0004', 1);
    const p = producer('wal-0004', 1);
    const c = consumer('wal-0004', 1, 'v');
    p.send('v', 'before');
    await waitFor(() => c.messages().length === 1, { timeoutMs: 10_000 });
    // The lease is gone (etcd unreachable longer than the TTL, say): the coordinator counts the
    // node as gone and places its channels elsewhere without telling it.
    expect(leases).toHaveLength(1);
    await leases[0]?.revoke();
    for (const s of [p, c]) {
      await waitFor(() => s.frames.some((f) => f.response?.$case === 'closed'), {
        timeoutMs: 10_000,
        description: 'the stream closed by the node',
      });
    }
    await waitFor(
      async () =>
        leases.length === 2 &&
        (await metadata.get(`session/node/${node.serverId}`))?.leaseId === leases[1]?.id,
      { timeoutMs: 10_000, description: 'the session registered again under a new lease' },
    );
    expect((await status()).channels).toEqual([]);
    // The old terms stay closed, also the one whose open had failed; the next one opens, and
    // the acked message is still there.
    await expect(assign('wal-0004', 1)).rejects.toMatchObject({ code: 'IGNORED_OPERATION' });
    await expect(assign('wal-0005', 1)).rejects.toMatchObject({ code: 'IGNORED_OPERATION' });
    await assign('wal-0004', 2);
    const c2 = consumer('wal-0004', 2, 'v');
    await waitFor(() => c2.messages().length === 1, { timeoutMs: 10_000 });
    expect(dec.decode(c2.messages()[0]?.payload)).toBe('before');
    c2.call.write({ request: { $case: 'close', close: {} } });
  });

  it('closes producers and consumers with CHANNEL_NOT_EXIST when the channel is removed, and ticks stay above old ones after reassignment', async () => {
    await assign('wal-0003', 1);
    const p = producer('wal-0003', 1);
    p.send('v', 'before');
    await waitFor(() => p.results().length === 1, { timeoutMs: 10_000 });
    const firstOutcome = p.results()[0]?.outcome;
    const firstTick = firstOutcome?.$case === 'success' ? firstOutcome.success.timeTick : undefined;
    const c = consumer('wal-0003', 1, 'v');
    await waitFor(() => c.messages().length === 1, { timeoutMs: 10_000 });
    await remove('wal-0003', 1);
    for (const s of [p, c]) {
      await waitFor(() => s.frames.some((f) => f.response?.$case === 'closed'), {
        timeoutMs: 5_000,
      });
    }
    const closed = p.frames.find((f) => f.response?.$case === 'closed');
    expect(closed?.response?.$case === 'closed' && closed.response.closed.error?.code).toBe(1);
    await assign('wal-0003', 2);
    const p2 = producer('wal-0003', 2);
    p2.send('v', 'after');
    await waitFor(() => p2.results().length === 1, { timeoutMs: 10_000 });
    const second = p2.results()[0]?.outcome;
    expect(second?.$case === 'success' && second.success.timeTick).toBeGreaterThan(
      firstTick ?? Infinity,
    );
    p2.call.end();
  });
});
