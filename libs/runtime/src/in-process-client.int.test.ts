import { join } from 'node:path';
import type { ServerDuplexStream } from '@grpc/grpc-js';
import { StreamingClient, type ReadEvent } from '@woodstream/client';
import type { ConsumeRequest, ConsumeResponse, HandlerServiceServer } from '@woodstream/proto';
import { StreamingError, toServiceError } from '@woodstream/streaming';
import { makeTempDir, waitFor } from '@woodstream/testing';
import { Value } from '@sinclair/typebox/value';
import { describe, expect, it } from 'vitest';
import { createLogger } from './logger.js';
import { StandaloneSchema } from './schemas.js';
import { startStandalone } from './standalone-app.js';

const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const decode = (b: Uint8Array): string => Buffer.from(b).toString('utf8');

/** Pulls `n` messages (skipping time ticks) from a running iterator. */
async function take(
  it: AsyncIterator<ReadEvent>,
  n: number,
): Promise<{ id: string; payload: string; seq: string | undefined }[]> {
  const out: { id: string; payload: string; seq: string | undefined }[] = [];
  while (out.length < n) {
    const r = await it.next();
    if (r.done === true) throw new Error(`read ended after ${out.length} of ${n} messages`);
    if (r.value.type !== 'message') continue;
    out.push({
      id: `${r.value.messageId.segmentId}:${r.value.messageId.entryId}`,
      payload: decode(r.value.payload),
      seq: r.value.properties.seq,
    });
  }
  return out;
}

/** A standalone app in `dir` on free ports, with the schema's defaults and `overrides`. */
function standalone(
  dir: string,
  overrides: { pchannelCount: number; maxMessageBytes?: number; maxStreamsPerNode?: number },
): ReturnType<typeof startStandalone> {
  const config = Value.Default(StandaloneSchema, {
    dataDir: join(dir, 'data'),
    coordinatorPort: 0,
    nodePort: 0,
    timeTickIntervalMs: 50,
    ...overrides,
  }) as Parameters<typeof startStandalone>[0];
  return startStandalone(config, createLogger({ component: 'test', level: 'silent' }));
}

describe('in-process short-circuit in standalone', () => {
  it('frees the node stream slots of in-process streams that end, so later streams are taken', async () => {
    await using dir = await makeTempDir('in-process-slots');
    const app = await standalone(dir.path, { pchannelCount: 1, maxStreamsPerNode: 2 });
    try {
      // Ten clients one after another, each with a producer and a read: five times the limit.
      for (let round = 0; round < 10; round++) {
        const client = await StreamingClient.connect({
          coordinator: app.coordinatorAddress,
          inProcessNodes: [app.inProcessNode],
        });
        try {
          await client.append({ vchannel: 'v', payload: text(`m${round}`) });
          const sub = client.read({ vchannel: 'v', from: 'earliest' });
          const got = await take(sub[Symbol.asyncIterator](), round + 1);
          expect(got.map((m) => m.payload).at(-1)).toBe(`m${round}`);
          await sub.close();
        } finally {
          await client.close();
        }
        expect(client.stats().inProcessStreams).toBeGreaterThan(0);
      }
    } finally {
      await app.stop();
    }
  });

  it('produces and consumes through the node in the same process without gRPC, with the same results, errors and live tailing', async () => {
    await using dir = await makeTempDir('in-process');
    const app = await standalone(dir.path, { pchannelCount: 2, maxMessageBytes: 4096 });
    const local = await StreamingClient.connect({
      coordinator: app.coordinatorAddress,
      inProcessNodes: [app.inProcessNode],
    });
    const remote = await StreamingClient.connect({ coordinator: app.coordinatorAddress });
    try {
      const vchannels = ['a', 'b', 'c'];
      const batch = await local.appendBatch(
        Array.from({ length: 90 }, (_, i) => ({
          vchannel: vchannels[i % 3] as string,
          payload: text(`m-${i}`),
          properties: { seq: String(i) },
        })),
      );
      const singles = await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          local.append({
            vchannel: vchannels[i % 3] as string,
            payload: text(`m-${90 + i}`),
            properties: { seq: String(90 + i) },
          }),
        ),
      );
      const acked = [...batch, ...singles];
      expect(acked).toHaveLength(120);
      expect(local.stats().inProcessStreams).toBeGreaterThan(0);
      expect(local.stats().appended).toBe(120);

      // Both paths read the same log: the in-process consumer and a gRPC one agree.
      for (const vchannel of vchannels) {
        const want = acked
          .map((r, i) => ({ id: `${r.messageId.segmentId}:${r.messageId.entryId}`, i }))
          .filter(({ i }) => vchannels[i % 3] === vchannel);
        const fromLocal = local.read({ vchannel, from: 'earliest' });
        const fromRemote = remote.read({ vchannel, from: 'earliest' });
        const got = await take(fromLocal[Symbol.asyncIterator](), want.length);
        const gotRemote = await take(fromRemote[Symbol.asyncIterator](), want.length);
        await fromLocal.close();
        await fromRemote.close();
        expect(got.map((m) => m.id)).toEqual(want.map((w) => w.id));
        expect(got.map((m) => m.payload)).toEqual(want.map((w) => `m-${w.i}`));
        expect(got.map((m) => m.seq)).toEqual(want.map((w) => String(w.i)));
        expect(gotRemote).toEqual(got);
      }

      // A typed error from the node arrives as it would over gRPC, and the stream keeps working.
      const oversize = await local.append({ vchannel: 'a', payload: new Uint8Array(8192) }).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(oversize).toBeInstanceOf(StreamingError);
      expect((oversize as StreamingError).code).toBe('INVALID_ARGUMENT');
      await expect(local.append({ vchannel: 'a', payload: text('after') })).resolves.toBeDefined();

      // A tailing consumer gets what is appended after it caught up.
      const tail = local.read({ vchannel: 'live', from: 'latest' });
      const iterator = tail[Symbol.asyncIterator]();
      const first = iterator.next(); // opens the stream and waits at the live end
      const ack = await local.append({ vchannel: 'live', payload: text('fresh') });
      let event = await first;
      while (event.done !== true && event.value.type !== 'message') event = await iterator.next();
      expect(event.done).toBe(false);
      if (event.done !== true && event.value.type === 'message') {
        expect(decode(event.value.payload)).toBe('fresh');
        expect(event.value.messageId).toEqual(ack.messageId);
      }
      await tail.close();

      // A caller may reuse a payload once its append settled: the node (whose WAL keeps payloads
      // as handed over) must not see the change, not even at the live end.
      const watcher = local.read({ vchannel: 'reuse', from: 'latest' });
      const watching = watcher[Symbol.asyncIterator]();
      const firstEvent = watching.next();
      const reused = text('original');
      await local.append({ vchannel: 'reuse', payload: reused });
      reused.fill(0x21);
      let seen = await firstEvent;
      while (seen.done !== true && seen.value.type !== 'message') seen = await watching.next();
      expect(
        seen.done !== true && seen.value.type === 'message' ? decode(seen.value.payload) : '',
      ).toBe('original');
      await watcher.close();
      // One producer stream per pchannel written, a consumer per read: none went over gRPC.
      expect(local.stats().inProcessStreams).toBeGreaterThanOrEqual(2 + 3 + 1 + 1);
      expect(remote.stats().inProcessStreams).toBe(0);
    } finally {
      await local.close();
      await remote.close();
      await app.stop();
    }
  });

  it('a message at the node size limit, above gRPC default 4 MiB, is acknowledged and read back over gRPC', async () => {
    await using dir = await makeTempDir('big-message');
    const limit = 6 * 1024 * 1024;
    const app = await standalone(dir.path, { pchannelCount: 1, maxMessageBytes: limit });
    const remote = await StreamingClient.connect({ coordinator: app.coordinatorAddress });
    try {
      const payload = Buffer.alloc(limit, 7);
      payload.writeUInt32LE(0xfeedf00d, limit - 4);
      const ack = await remote.append({ vchannel: 'big', payload, properties: { seq: 'big' } });
      const events = remote.read({ vchannel: 'big', from: 'earliest' })[Symbol.asyncIterator]();
      try {
        for (;;) {
          const r = await events.next();
          if (r.done === true) throw new Error('the read ended before the message');
          if (r.value.type !== 'message') continue;
          expect(r.value.messageId).toEqual(ack.messageId);
          expect(Buffer.from(r.value.payload).equals(payload)).toBe(true);
          break;
        }
      } finally {
        await events.return?.();
      }
    } finally {
      await remote.close();
      await app.stop();
    }
  });

  it('a read from latest whose first stream breaks before any message resumes where the node resolved latest (no gap)', async () => {
    await using dir = await makeTempDir('latest-gap');
    const app = await standalone(dir.path, { pchannelCount: 1 });
    const writer = await StreamingClient.connect({ coordinator: app.coordinatorAddress });
    // The first consume stream is cut right after the node opened it: everything the node sends
    // afterwards is lost, as on a broken connection, while a message is appended; then it fails.
    let consumeStreams = 0;
    const gapAppend: { done?: Promise<unknown> } = {};
    const node = app.inProcessNode;
    const handlers = {
      produce: node.handlers.produce.bind(node.handlers),
      consume: (call: ServerDuplexStream<ConsumeRequest, ConsumeResponse>) => {
        if (++consumeStreams === 1) {
          const write = call.write.bind(call);
          let isCut = false;
          Object.assign(call, {
            write: (res: ConsumeResponse): boolean => {
              if (isCut) return true;
              const ok = write(res);
              if (res.response?.$case === 'opened') {
                isCut = true;
                gapAppend.done = writer
                  .append({ vchannel: 'gap', payload: text('in the gap') })
                  .then(() =>
                    call.emit(
                      'error',
                      toServiceError(new StreamingError('ON_SHUTDOWN', 'connection lost')),
                    ),
                  );
              }
              return ok;
            },
          });
        }
        node.handlers.consume(call);
      },
    } as unknown as HandlerServiceServer;
    const reader = await StreamingClient.connect({
      coordinator: app.coordinatorAddress,
      inProcessNodes: [{ address: node.address, handlers }],
      minBackoffMs: 10,
    });
    try {
      const subscription = reader.read({ vchannel: 'gap', from: 'latest' });
      const events = subscription[Symbol.asyncIterator]();
      const first = events.next(); // opens the first stream
      await waitFor(() => gapAppend.done, { timeoutMs: 10_000, description: 'the cut stream' });
      await gapAppend.done;
      await waitFor(() => consumeStreams >= 2, { timeoutMs: 10_000, description: 'a reopen' });
      await writer.append({ vchannel: 'gap', payload: text('after') });
      // Everything up to 'after': a resume at a later 'latest' would skip the gap message.
      const got: string[] = [];
      for (let event = await first; got.at(-1) !== 'after'; event = await events.next()) {
        if (event.done === true) throw new Error('the read ended');
        if (event.value.type === 'message') got.push(decode(event.value.payload));
      }
      expect(got).toEqual(['in the gap', 'after']);
      expect(consumeStreams).toBeGreaterThanOrEqual(2);
      expect(reader.stats().reopens).toBeGreaterThanOrEqual(1);
      await subscription.close();
    } finally {
      await reader.close();
      await writer.close();
      await app.stop();
    }
  });
});
