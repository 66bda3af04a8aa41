import { EventEmitter } from 'node:events';
import { createServer, connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import {
  credentials,
  makeGenericClientConstructor,
  Metadata,
  Server,
  ServerCredentials,
  status as GrpcStatus,
  type ClientDuplexStream,
  type ServiceError,
  type StatusObject,
} from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import type { FramedServerCall } from './framed-stream.js';
import {
  decodeStatus,
  encodeStatus,
  FRAMED_PREFACE,
  FramedClientCall,
  FrameFormatError,
  frameHeader,
  FrameReader,
  FrameType,
  splitAddress,
  type FramedCodec,
} from './framed-stream.js';
import { SharedPortListener } from './shared-port.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

async function until(check: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 1));
  }
}

function frame(type: number, body: Buffer): Buffer {
  return Buffer.concat([frameHeader(type as 1, body.length), body]);
}

describe('FrameReader', () => {
  it('reassembles frames cut at every byte boundary, in order', () => {
    const big = Buffer.alloc(40_000, 9);
    const bytes = Buffer.concat([
      frame(FrameType.Open, Buffer.from('/a/B')),
      frame(FrameType.Message, Buffer.from('hello')),
      frame(FrameType.Message, big),
      frame(FrameType.End, Buffer.alloc(0)),
    ]);
    for (const cut of [1, 2, 3, 5, 7, 4096, 40_003, bytes.length]) {
      const reader = new FrameReader(1 << 20);
      const frames = [];
      for (let at = 0; at < bytes.length; at += cut) {
        reader.push(bytes.subarray(at, at + cut));
        for (let f = reader.next(); f !== undefined; f = reader.next()) frames.push(f);
      }
      expect(frames.map((f) => f.type)).toEqual([1, 2, 2, 3]);
      expect(frames[0]?.body.toString()).toBe('/a/B');
      expect(frames[1]?.body.toString()).toBe('hello');
      expect(frames[2]?.body.equals(big)).toBe(true);
      expect(frames[3]?.body.length).toBe(0);
      expect(reader.bufferedBytes).toBe(0);
    }
  });

  it('keeps a large body as a view of its chunk and copies a small one', () => {
    const reader = new FrameReader(1 << 20);
    const chunk = Buffer.concat([
      frame(FrameType.Message, Buffer.alloc(32 * 1024, 1)),
      frame(FrameType.Message, Buffer.from('x')),
    ]);
    reader.push(chunk);
    const large = reader.next();
    const small = reader.next();
    expect(large?.body.buffer).toBe(chunk.buffer);
    expect(small?.body.buffer).not.toBe(chunk.buffer);
    expect(small?.body.toString()).toBe('x');
  });

  it('refuses an unknown type and an oversize length before the body arrives', () => {
    const bad = new FrameReader(100);
    bad.push(Buffer.from([9, 0, 0, 0, 1, 0]));
    expect(() => bad.next()).toThrow(FrameFormatError);
    const big = new FrameReader(100);
    big.push(frameHeader(FrameType.Message, 101)); // no body: the header alone is refused
    expect(() => big.next()).toThrow(/101 bytes is above the limit of 100/);
  });
});

describe('status frames', () => {
  it('carry code, details and text and binary trailers', () => {
    const metadata = new Metadata();
    metadata.set('x-text', 'value');
    metadata.set('x-thing-bin', Buffer.from([0, 1, 2, 255]));
    const bytes = encodeStatus({ code: GrpcStatus.ABORTED, details: 'stale term ✓', metadata });
    expect(bytes[0]).toBe(FrameType.Status);
    expect(bytes.readUInt32BE(1)).toBe(bytes.length - 5);
    const status = decodeStatus(bytes.subarray(5));
    expect(status.code).toBe(GrpcStatus.ABORTED);
    expect(status.details).toBe('stale term ✓');
    expect(status.metadata.get('x-text')).toEqual(['value']);
    expect(status.metadata.get('x-thing-bin')).toEqual([Buffer.from([0, 1, 2, 255])]);
  });

  it('a truncated or padded one is a FrameFormatError', () => {
    const body = encodeStatus({ code: 3, details: 'bad' }).subarray(5);
    expect(() => decodeStatus(body.subarray(0, body.length - 1))).toThrow(FrameFormatError);
    expect(() => decodeStatus(Buffer.concat([body, Buffer.from([0])]))).toThrow(FrameFormatError);
  });
});

describe('splitAddress', () => {
  it('splits host:port and [v6]:port and refuses the rest', () => {
    expect(splitAddress('127.0.0.1:19530')).toEqual({ host: '127.0.0.1', port: 19530 });
    expect(splitAddress('[::1]:80')).toEqual({ host: '::1', port: 80 });
    expect(() => splitAddress('nohost')).toThrow(RangeError);
    expect(() => splitAddress('h:0')).toThrow(RangeError);
    expect(() => splitAddress('h:70000')).toThrow(RangeError);
  });
});

// --- over loopback: a gRPC server and the framed stream on one port ---------------------------

const METHOD = '/test.Echo/Chat';
const text: FramedCodec<string, string> = {
  serializeRequest: (s) => Buffer.from(s),
  deserializeRequest: (b) => b.toString(),
  serializeResponse: (s) => Buffer.from(s),
  deserializeResponse: (b) => b.toString(),
};
const echoDef = {
  chat: {
    path: METHOD,
    requestStream: true,
    responseStream: true,
    requestSerialize: (s: string) => Buffer.from(s),
    requestDeserialize: (b: Buffer) => b.toString(),
    responseSerialize: (s: string) => Buffer.from(s),
    responseDeserialize: (b: Buffer) => b.toString(),
  },
} as const;

type Call = FramedServerCall<string, string>;

/**
 * The handler of both protocols: answers each message with `echo:<message>`; `fail` ends the
 * call with ABORTED and a binary trailer; `pause` stops reading until `release()`.
 */
function chatHandler(seen: { calls: Call[]; cancelled: number; closed: number }) {
  return (call: Call): void => {
    seen.calls.push(call);
    call.on('cancelled', () => seen.cancelled++);
    call.on('close', () => seen.closed++);
    call.on('data', (m: string) => {
      if (m === 'fail') {
        const metadata = new Metadata();
        metadata.set('why-bin', Buffer.from('because'));
        call.emit('error', { code: GrpcStatus.ABORTED, details: 'told to fail', metadata });
        return;
      }
      if (m === 'pause') return call.pause();
      call.write(`echo:${m}`);
    });
    call.on('end', () => call.end());
  };
}

async function startShared(maxFramedConnections?: number): Promise<{
  port: number;
  seen: { calls: Call[]; cancelled: number; closed: number };
  listener: SharedPortListener;
}> {
  const seen = { calls: [] as Call[], cancelled: 0, closed: 0 };
  const server = new Server();
  const handler = chatHandler(seen);
  server.addService(echoDef, {
    chat: (call: unknown) => handler(call as Call),
  });
  const listener = new SharedPortListener(
    server,
    {
      methods: new Map([
        [
          METHOD,
          {
            codec: text as FramedCodec<unknown, unknown>,
            handler: handler as (c: unknown) => void,
          },
        ],
      ]),
      maxBodyBytes: 1 << 20,
      openTimeoutMs: 5_000,
      protocolError: (message) => ({
        code: GrpcStatus.INVALID_ARGUMENT,
        details: message,
        metadata: new Metadata(),
      }),
    },
    maxFramedConnections,
  );
  cleanups.push(() => server.forceShutdown());
  cleanups.push(() => listener.close());
  const port = await listener.listen('127.0.0.1', 0);
  return { port, seen, listener };
}

interface Outcome {
  data: string[];
  status: Promise<StatusObject>;
  error: ServiceError | undefined;
}

function watch(call: FramedClientCall<string, string>): Outcome {
  const out: Outcome = { data: [], status: undefined as never, error: undefined };
  call.on('data', (m: string) => out.data.push(m));
  call.on('error', (e: ServiceError) => (out.error = e));
  out.status = new Promise((resolve) => call.once('status', resolve));
  return out;
}

function framedCall(port: number, extra: { onNotFramed?: () => void } = {}) {
  const call = new FramedClientCall(
    { address: `127.0.0.1:${port}`, method: METHOD, maxBodyBytes: 1 << 20, ...extra },
    text,
  );
  cleanups.push(() => call.cancel());
  return call;
}

const OPEN_FRAME = frame(FrameType.Open, Buffer.from(METHOD));

/**
 * A framed client written by hand: connects, collects what comes back, and sends the preface,
 * OPEN and `frames` in one write.
 */
function rawCall(
  port: number,
  frames: Buffer[],
  options: { allowHalfOpen?: boolean } = {},
): { socket: Socket; got: Buffer[] } {
  const socket = netConnect({ port, host: '127.0.0.1', allowHalfOpen: options.allowHalfOpen });
  cleanups.push(() => socket.destroy());
  const got: Buffer[] = [];
  socket.on('data', (d: Buffer) => got.push(d));
  socket.on('error', () => undefined);
  socket.write(Buffer.concat([FRAMED_PREFACE, OPEN_FRAME, ...frames]));
  return { socket, got };
}

/** Sends raw bytes to `port` and collects every byte until the server closes. */
async function raw(port: number, bytes: Buffer): Promise<Buffer> {
  const socket: Socket = netConnect(port, '127.0.0.1');
  cleanups.push(() => socket.destroy());
  const got: Buffer[] = [];
  socket.on('data', (d: Buffer) => got.push(d));
  socket.write(bytes);
  await new Promise<void>((resolve) => socket.on('close', () => resolve()));
  return Buffer.concat(got);
}

/** A framed call that writes `messages`, ends, and waits for its status. */
async function chat(port: number, messages: string[]): Promise<Outcome & { final: StatusObject }> {
  const call = framedCall(port);
  const out = watch(call);
  for (const m of messages) call.write(m);
  call.end();
  return { ...out, final: await out.status };
}

/** A gRPC client of the chat method. */
function echoClient(port: number): { chat(): ClientDuplexStream<string, string> } {
  const Client = makeGenericClientConstructor(echoDef, 'Echo');
  const client = new Client(`127.0.0.1:${port}`, credentials.createInsecure()) as unknown as {
    chat(): ClientDuplexStream<string, string>;
    close(): void;
  };
  cleanups.push(() => client.close());
  return client;
}

/** A plain gRPC server (no framed stream) serving the chat method with `handler`. */
async function startGrpcOnly(handler: (call: Call) => void): Promise<number> {
  const server = new Server();
  server.addService(echoDef, { chat: (call: unknown) => handler(call as Call) });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  cleanups.push(() => server.forceShutdown());
  return port;
}

describe('the framed stream and gRPC on one port', () => {
  it('a framed call exchanges messages in order and ends with OK after END', async () => {
    const { port } = await startShared();
    const out = await chat(
      port,
      Array.from({ length: 100 }, (_, i) => `m${i}`),
    );
    expect(out.final.code).toBe(GrpcStatus.OK);
    expect(out.error).toBeUndefined();
    expect(out.data).toEqual(Array.from({ length: 100 }, (_, i) => `echo:m${i}`));
  });

  it('a gRPC call on the same port works alongside', async () => {
    const { port } = await startShared();
    const grpcCall = echoClient(port).chat();
    const got: string[] = [];
    grpcCall.on('data', (m: string) => got.push(m));
    const done = new Promise<StatusObject>((resolve) => grpcCall.on('status', resolve));
    const framed = framedCall(port);
    const out = watch(framed);
    grpcCall.write('over grpc');
    framed.write('over frames');
    grpcCall.end();
    framed.end();
    expect((await done).code).toBe(GrpcStatus.OK);
    expect((await out.status).code).toBe(GrpcStatus.OK);
    expect(got).toEqual(['echo:over grpc']);
    expect(out.data).toEqual(['echo:over frames']);
  });

  it("the server's error reaches the client as a ServiceError with its trailers", async () => {
    const { port } = await startShared();
    const call = framedCall(port);
    const out = watch(call);
    call.write('a');
    call.write('fail');
    call.write('never answered');
    const status = await out.status;
    expect(status.code).toBe(GrpcStatus.ABORTED);
    expect(out.error?.code).toBe(GrpcStatus.ABORTED);
    expect(out.error?.details).toBe('told to fail');
    expect(out.error?.metadata.get('why-bin')).toEqual([Buffer.from('because')]);
    expect(out.data).toEqual(['echo:a']);
  });

  it('a client cancel reaches the handler as cancelled, then close', async () => {
    const { port, seen } = await startShared();
    const call = framedCall(port);
    const out = watch(call);
    call.write('x');
    await until(() => out.data.length === 1);
    call.cancel();
    expect((await out.status).code).toBe(GrpcStatus.CANCELLED);
    await until(() => seen.closed === 1);
    expect(seen.cancelled).toBe(1);
    expect(seen.calls[0]?.cancelled).toBe(true);
  });

  it('a paused handler stops the client: writes report the backup until it resumes', async () => {
    const { port, seen } = await startShared();
    const call = framedCall(port);
    const out = watch(call);
    call.write('pause');
    await until(() => seen.calls.length === 1);
    const chunk = 'y'.repeat(64 * 1024);
    let sent = 0;
    // Bounded: socket buffers on both sides hold a few MiB at most.
    while (call.write(chunk) && sent < 4096) sent++;
    expect(sent).toBeLessThan(4096);
    const drained = new Promise<void>((resolve) => call.once('drain', resolve));
    (seen.calls[0] as Call).resume();
    await drained;
    call.end();
    expect((await out.status).code).toBe(GrpcStatus.OK);
    expect(out.data.length).toBe(sent + 1);
  });

  it('a call paused by the first chunk it gets stays paused (the socket is not read on)', async () => {
    const { port, seen } = await startShared();
    // Preface, OPEN and a message that pauses the handler, in one write.
    rawCall(port, [frame(FrameType.Message, Buffer.from('pause'))]);
    await until(() => seen.calls.length === 1);
    // Past the ticks and turns the socket's own bookkeeping takes.
    for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
    const call = seen.calls[0] as Call;
    expect(call.isReading).toBe(false);
    call.resume();
    expect(call.isReading).toBe(true);
  });

  it('garbage after the preface gets INVALID_ARGUMENT and the port keeps serving', async () => {
    const { port } = await startShared();
    const open = OPEN_FRAME;
    for (const garbage of [
      Buffer.from([0xff, 1, 2, 3, 4, 5]), // unknown type instead of OPEN
      Buffer.concat([open, Buffer.from([77, 0, 0, 0, 0])]), // unknown type after OPEN
      Buffer.concat([open, frame(FrameType.Status, Buffer.alloc(0))]), // STATUS from a client
      Buffer.concat([open, frameHeader(FrameType.Message, 2 << 20)]), // above the frame limit
    ]) {
      const answer = await raw(port, Buffer.concat([FRAMED_PREFACE, garbage]));
      expect(answer[0]).toBe(FrameType.Status);
      const status = decodeStatus(answer.subarray(5));
      expect(status.code).toBe(GrpcStatus.INVALID_ARGUMENT);
      expect(status.details).toMatch(/malformed framed stream/);
    }
    const out = await chat(port, ['still here']);
    expect(out.final.code).toBe(GrpcStatus.OK);
    expect(out.data).toEqual(['echo:still here']);
  });

  it('closes framed connections past its limit and takes new ones once one ends', async () => {
    const { port, seen } = await startShared(1);
    const first = framedCall(port);
    const a = watch(first);
    first.write('a');
    await until(() => a.data.length === 1);
    const second = framedCall(port);
    const b = watch(second);
    second.write('b');
    expect((await b.status).code).toBe(GrpcStatus.UNAVAILABLE);
    first.end();
    expect((await a.status).code).toBe(GrpcStatus.OK);
    await until(() => seen.closed === 1);
    const c = await chat(port, ['c']);
    expect(c.final.code).toBe(GrpcStatus.OK);
    expect(c.data).toEqual(['echo:c']);
  });

  it('after its status the server reads nothing more and closes a client that stays', async () => {
    const { port, seen } = await startShared();
    // The client sends on after the message that fails the call (it has not seen the status yet,
    // or ignores it); none of it is kept. Half-open allowed: it does not close when the server
    // has ended its side.
    const { got } = rawCall(
      port,
      [
        frame(FrameType.Message, Buffer.from('fail')),
        ...Array.from({ length: 16 }, () => frame(FrameType.Message, Buffer.alloc(64 * 1024))),
      ],
      { allowHalfOpen: true },
    );
    // The server lets go of the connection itself (the client never closes its side).
    await until(() => seen.closed === 1);
    const call = seen.calls[0] as Call;
    expect(call.bufferedBytes).toBe(0);
    expect(decodeStatus(Buffer.concat(got).subarray(5)).code).toBe(GrpcStatus.ABORTED);
  });

  it('an unknown method gets UNIMPLEMENTED', async () => {
    const { port } = await startShared();
    const method = Buffer.from('/no.Such/Method');
    const answer = await raw(
      port,
      Buffer.concat([FRAMED_PREFACE, frameHeader(FrameType.Open, method.length), method]),
    );
    expect(decodeStatus(answer.subarray(5)).code).toBe(GrpcStatus.UNIMPLEMENTED);
  });

  it('a server without the framed stream: UNAVAILABLE, and the caller is told to use gRPC', async () => {
    const port = await startGrpcOnly(() => undefined);
    let told = 0;
    const call = framedCall(port, { onNotFramed: () => told++ });
    const out = watch(call);
    call.write('hello?');
    const status = await out.status;
    expect(status.code).toBe(GrpcStatus.UNAVAILABLE);
    expect(status.details).toMatch(/does not serve the framed stream/);
    expect(told).toBe(1);
  });

  it('with a fallback, a call to a gRPC-only server goes on over gRPC with what was written', async () => {
    const seen = { calls: [] as Call[], cancelled: 0, closed: 0 };
    const port = await startGrpcOnly(chatHandler(seen));
    const client = echoClient(port);
    let told = 0;
    const call = new FramedClientCall(
      {
        address: `127.0.0.1:${port}`,
        method: METHOD,
        maxBodyBytes: 1 << 20,
        onNotFramed: () => told++,
        fallback: () => client.chat(),
      },
      text,
    );
    cleanups.push(() => call.cancel());
    const out = watch(call);
    call.write('one');
    call.write('two');
    await until(() => out.data.length === 2);
    call.write('three');
    call.end();
    expect((await out.status).code).toBe(GrpcStatus.OK);
    expect(out.error).toBeUndefined();
    expect(out.data).toEqual(['echo:one', 'echo:two', 'echo:three']);
    expect(told).toBe(1);
    expect(seen.calls).toHaveLength(1);
  });

  it('a server that accepts and closes without a byte gets the call over the fallback', async () => {
    const closer = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => closer.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => closer.close());
    const port = (closer.address() as AddressInfo).port;
    // A stand-in for the gRPC call: records what it is given and answers each message.
    class StandIn extends EventEmitter {
      written: string[] = [];
      ended = false;
      write(m: string): boolean {
        this.written.push(m);
        setImmediate(() => this.emit('data', `grpc:${m}`));
        return true;
      }
      end(): void {
        this.ended = true;
        const status = { code: 0, details: 'OK', metadata: new Metadata() };
        setImmediate(() => this.emit('status', status));
      }
      cancel(): void {}
      pause(): void {}
      resume(): void {}
    }
    const fallback = new StandIn();
    let told = 0;
    const call = new FramedClientCall(
      {
        address: `127.0.0.1:${port}`,
        method: METHOD,
        maxBodyBytes: 1 << 20,
        onNotFramed: () => told++,
        fallback: () => fallback,
      },
      text,
    );
    cleanups.push(() => call.cancel());
    const out = watch(call);
    call.write('open');
    await until(() => out.data.length === 1);
    call.write('later');
    call.end();
    expect((await out.status).code).toBe(GrpcStatus.OK);
    expect(fallback.written).toEqual(['open', 'later']);
    expect(fallback.ended).toBe(true);
    expect(out.data).toEqual(['grpc:open', 'grpc:later']);
    expect(told).toBe(1);
  });

  it('a lost connection ends the call with UNAVAILABLE', async () => {
    const { port, listener } = await startShared();
    const call = framedCall(port);
    const out = watch(call);
    call.write('x');
    await until(() => out.data.length === 1);
    listener.close(); // closes the framed connections
    const status = await out.status;
    expect(status.code).toBe(GrpcStatus.UNAVAILABLE);
    expect(status.details).toMatch(/connection to 127\.0\.0\.1:\d+ lost/);
  });
});
