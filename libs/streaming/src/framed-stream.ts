// The framed stream: one bidi call of HandlerService over a plain TCP connection, on the node's
// gRPC port, for the produce path. It carries the same protobuf messages as the gRPC call and ends
// with the same status (code, details, trailers with the StreamingError), so the node's handler and
// the client's producer work on it unchanged. What it saves is the work of HTTP/2 and grpc-js per
// message: framing copies on both sides, per-DATA-frame processing, and the joining of a large
// message's frames on receive. ADR 0007 explains the choice; docs/wire/framed-stream.md is the format.
//
// Connection: the client sends the 8-byte preface, then frames; the server answers with frames.
// Frame: u8 type | u32 body length (big-endian) | body.
//   OPEN    (client, first frame, once): the method path, UTF-8.
//   MESSAGE (both ways): one protobuf message of the method.
//   END     (client): no more messages (the half-close of gRPC).
//   STATUS  (server, last frame): u8 code | u32 details length | details | u16 trailer count |
//           per trailer: u16 key length | key | u32 value length | value.
// The server closes the connection after STATUS. A client cancels by closing the connection.
import { EventEmitter } from 'node:events';
import { connect, type Socket } from 'node:net';
import {
  Metadata,
  status as GrpcStatus,
  type ServiceError,
  type StatusObject,
} from '@grpc/grpc-js';
import { assert } from '@woodstream/common';

/** First bytes of a framed connection. An HTTP/2 connection starts with "PRI *", so they differ. */
export const FRAMED_PREFACE = Buffer.from('WSFRAME1', 'latin1');

export const FrameType = { Open: 1, Message: 2, End: 3, Status: 4 } as const;
type FrameTypeValue = (typeof FrameType)[keyof typeof FrameType];

const HEADER_BYTES = 5;
/** Bodies shorter than this are copied out of the received chunk, so they do not pin it. */
const COPY_BELOW_BYTES = 16 * 1024;
/** Largest STATUS body a client accepts: details and trailers are small. */
const MAX_STATUS_BYTES = 1024 * 1024;
/** Longest method path. */
const MAX_METHOD_BYTES = 256;

/** A frame that breaks the format: the connection cannot be trusted past it. */
export class FrameFormatError extends Error {}

export interface Frame {
  type: FrameTypeValue;
  body: Buffer;
}

/** The header of one frame. */
export function frameHeader(type: FrameTypeValue, bodyBytes: number): Buffer {
  const h = Buffer.allocUnsafe(HEADER_BYTES);
  h[0] = type;
  h.writeUInt32BE(bodyBytes, 1);
  return h;
}

/**
 * Cuts received bytes into frames. Holds at most one incomplete frame beyond what was pushed
 * since the last `next()` returned undefined: the caller stops reading the connection while it
 * does not take frames (pause), so what waits here stays bounded by `maxBodyBytes`.
 */
export class FrameReader {
  // Invariant: `buffered` is the sum of the lengths of `chunks`; none of them is empty.
  private readonly chunks: Buffer[] = [];
  private buffered = 0;

  constructor(private readonly maxBodyBytes: number) {
    assert(Number.isSafeInteger(maxBodyBytes) && maxBodyBytes > 0, 'frame limit is positive');
  }

  get bufferedBytes(): number {
    return this.buffered;
  }

  /** Drops everything buffered. */
  clear(): void {
    this.chunks.length = 0;
    this.buffered = 0;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** The next whole frame, or undefined until more bytes arrive. Throws FrameFormatError. */
  next(): Frame | undefined {
    if (this.buffered < HEADER_BYTES) return undefined;
    const header = this.peek(HEADER_BYTES);
    const type = header[0] as number;
    if (type < FrameType.Open || type > FrameType.Status)
      throw new FrameFormatError(`unknown frame type ${type}`);
    const length = header.readUInt32BE(1);
    if (length > this.maxBodyBytes)
      throw new FrameFormatError(
        `frame of ${length} bytes is above the limit of ${this.maxBodyBytes}`,
      );
    if (this.buffered < HEADER_BYTES + length) return undefined;
    this.skip(HEADER_BYTES);
    return { type: type as FrameTypeValue, body: this.take(length) };
  }

  /** The first `n` buffered bytes (n <= buffered), without consuming them. */
  private peek(n: number): Buffer {
    const first = this.chunks[0] as Buffer;
    if (first.length >= n) return first;
    // Only as many chunks as the n bytes span: a peer sending a byte at a time costs O(n) here.
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    for (let i = 0; at < n; i++) {
      const c = this.chunks[i] as Buffer;
      at += c.copy(out, at, 0, Math.min(c.length, n - at));
    }
    return out;
  }

  private skip(n: number): void {
    while (n > 0) {
      const first = this.chunks[0] as Buffer;
      if (first.length <= n) {
        this.chunks.shift();
        n -= first.length;
        this.buffered -= first.length;
      } else {
        this.chunks[0] = first.subarray(n);
        this.buffered -= n;
        n = 0;
      }
    }
  }

  private take(n: number): Buffer {
    const first = this.chunks[0];
    if (n === 0) return Buffer.alloc(0);
    if (first !== undefined && first.length >= n) {
      // A large body stays a view of the received chunk: the node keeps payloads as views of
      // their frame, and the chunk is not reused by the socket.
      const body = n < COPY_BELOW_BYTES ? Buffer.from(first.subarray(0, n)) : first.subarray(0, n);
      this.skip(n);
      return body;
    }
    const body = Buffer.allocUnsafeSlow(n);
    let at = 0;
    while (at < n) {
      const c = this.chunks[0] as Buffer;
      const part = Math.min(c.length, n - at);
      c.copy(body, at, 0, part);
      at += part;
      this.skip(part);
    }
    return body;
  }
}

/** The STATUS frame of `status`. */
export function encodeStatus(status: {
  code: number;
  details: string;
  metadata?: Metadata;
}): Buffer {
  const details = Buffer.from(status.details, 'utf8');
  const entries: [Buffer, Buffer][] = [];
  const map = status.metadata?.toJSON() ?? {};
  for (const key of Object.keys(map)) {
    for (const value of map[key] ?? []) {
      entries.push([
        Buffer.from(key, 'utf8'),
        typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value),
      ]);
    }
  }
  let size = 1 + 4 + details.length + 2;
  for (const [k, v] of entries) size += 2 + k.length + 4 + v.length;
  const out = Buffer.allocUnsafe(HEADER_BYTES + size);
  let at = frameHeader(FrameType.Status, size).copy(out, 0);
  out[at++] = status.code;
  at = out.writeUInt32BE(details.length, at);
  at += details.copy(out, at);
  at = out.writeUInt16BE(entries.length, at);
  for (const [k, v] of entries) {
    at = out.writeUInt16BE(k.length, at);
    at += k.copy(out, at);
    at = out.writeUInt32BE(v.length, at);
    at += v.copy(out, at);
  }
  return out;
}

/** Reads a STATUS body; throws FrameFormatError when it does not parse. */
export function decodeStatus(body: Buffer): StatusObject {
  try {
    let at = 0;
    const code = body.readUInt8(at++);
    const detailsBytes = body.readUInt32BE(at);
    at += 4;
    if (at + detailsBytes > body.length) throw new RangeError('details past the end');
    const details = body.toString('utf8', at, at + detailsBytes);
    at += detailsBytes;
    const count = body.readUInt16BE(at);
    at += 2;
    const metadata = new Metadata();
    for (let i = 0; i < count; i++) {
      const keyBytes = body.readUInt16BE(at);
      at += 2;
      const key = body.toString('utf8', at, at + keyBytes);
      at += keyBytes;
      const valueBytes = body.readUInt32BE(at);
      at += 4;
      if (at + valueBytes > body.length) throw new RangeError('trailer past the end');
      const value = body.subarray(at, at + valueBytes);
      at += valueBytes;
      if (key.endsWith('-bin')) metadata.add(key, Buffer.from(value));
      else metadata.add(key, value.toString('utf8'));
    }
    if (at !== body.length) throw new RangeError('bytes after the trailers');
    return { code, details, metadata };
  } catch (err) {
    throw new FrameFormatError(`malformed status frame: ${(err as Error).message}`);
  }
}

/** How messages of one method are turned into bytes and back. */
export interface FramedCodec<Req, Res> {
  serializeRequest: (req: Req) => Buffer;
  /**
   * The same bytes in consecutive parts, some of them views of the request's own memory (large
   * payloads): written with writev, they are not copied in user space. Optional.
   */
  serializeRequestParts?: (req: Req) => Buffer[];
  deserializeRequest: (bytes: Buffer) => Req;
  serializeResponse: (res: Res) => Buffer;
  deserializeResponse: (bytes: Buffer) => Res;
}

/** A gRPC method definition as grpc-js has it (its path and (de)serialisers). */
export interface GrpcMethodDefinition<Req, Res> {
  path: string;
  requestSerialize: (req: Req) => Buffer;
  requestDeserialize: (bytes: Buffer) => Req;
  responseSerialize: (res: Res) => Buffer;
  responseDeserialize: (bytes: Buffer) => Res;
}

/** The framed codec of a gRPC method: the same bytes as on gRPC. */
export function framedCodecOf<Req, Res>(
  method: GrpcMethodDefinition<Req, Res>,
): FramedCodec<Req, Res> {
  return {
    serializeRequest: method.requestSerialize,
    deserializeRequest: method.requestDeserialize,
    serializeResponse: method.responseSerialize,
    deserializeResponse: method.responseDeserialize,
  };
}

// --- server side ------------------------------------------------------------------------------

/**
 * The server end of one framed call, shaped like grpc-js's ServerDuplexStream as far as the
 * node's handlers use it: `write` (false when the connection is backed up; `drain` follows),
 * `end`, `pause`, `resume`, `cancelled`, an `error` emitted with a ServiceError (sent as the
 * status), events `data`, `end`, `drain`, `finish`, `cancelled` and `close`.
 * Created once the OPEN frame named a method the server has.
 */
export class FramedServerCall<Req, Res> extends EventEmitter {
  private isPaused = false;
  private isFinished = false;
  private isCancelled = false;
  private isInputEnded = false;
  readonly metadata = new Metadata();

  constructor(
    private readonly socket: Socket,
    private readonly reader: FrameReader,
    private readonly codec: FramedCodec<Req, Res>,
    /** A typed error for input that breaks the protocol (the call ends with it). */
    private readonly protocolError: (message: string) => Partial<ServiceError>,
  ) {
    super();
    socket.on('data', (chunk: Buffer) => {
      // After the status nothing is read any more: what a client still sends is dropped.
      if (this.isFinished) return;
      this.reader.push(chunk);
      this.deliver();
    });
    socket.on('drain', () => this.emit('drain'));
    socket.on('error', () => undefined); // 'close' follows
    socket.on('close', () => {
      if (!this.isFinished) {
        this.isFinished = true;
        this.isCancelled = true;
        EventEmitter.prototype.emit.call(this, 'cancelled');
      }
      EventEmitter.prototype.emit.call(this, 'close');
    });
  }

  get cancelled(): boolean {
    return this.isCancelled;
  }

  /** Whether the connection is being read (false while paused: the peer is held back). */
  get isReading(): boolean {
    return this.socket.readableFlowing === true;
  }

  /** True once the status is sent (or the client went away). */
  get writableEnded(): boolean {
    return this.isFinished;
  }

  getPeer(): string {
    return `${this.socket.remoteAddress ?? ''}:${this.socket.remotePort ?? ''}`;
  }

  /** Starts delivering frames: call after the handler attached its listeners. */
  start(): void {
    this.deliver();
  }

  write(message: Res): boolean {
    if (this.isFinished) return false;
    const body = this.codec.serializeResponse(message);
    this.socket.cork();
    this.socket.write(frameHeader(FrameType.Message, body.length));
    const ok = this.socket.write(body);
    this.socket.uncork();
    return ok;
  }

  end(): void {
    this.finish({ code: GrpcStatus.OK, details: 'OK', metadata: new Metadata() });
    EventEmitter.prototype.emit.call(this, 'finish');
  }

  pause(): void {
    this.isPaused = true;
    this.socket.pause();
  }

  resume(): void {
    if (!this.isPaused) return;
    this.isPaused = false;
    // Frames already received go first; then the connection is read again.
    this.deliver();
    if (!this.isPaused && !this.isFinished) this.socket.resume();
  }

  override emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'error') {
      const err = (args[0] ?? {}) as Partial<ServiceError>;
      this.finish({
        code: err.code ?? GrpcStatus.UNKNOWN,
        details: err.details ?? 'error',
        metadata: err.metadata ?? new Metadata(),
      });
      return true;
    }
    return super.emit(event, ...args);
  }

  private finish(status: StatusObject): void {
    if (this.isFinished) return;
    this.isFinished = true;
    this.reader.clear();
    endWithStatus(this.socket, encodeStatus(status));
  }

  /** Bytes received and not yet delivered as messages. */
  get bufferedBytes(): number {
    return this.reader.bufferedBytes;
  }

  private deliver(): void {
    while (!this.isPaused && !this.isFinished) {
      let frame: Frame | undefined;
      try {
        frame = this.reader.next();
      } catch (err) {
        this.fail((err as Error).message);
        return;
      }
      if (frame === undefined) return;
      if (this.isInputEnded) return this.fail('a frame after END');
      switch (frame.type) {
        case FrameType.Message: {
          // The method's decoder turns undecodable bytes into a request the handler refuses
          // with a typed error, as on the gRPC path.
          const message = this.codec.deserializeRequest(frame.body);
          super.emit('data', message);
          break;
        }
        case FrameType.End:
          this.isInputEnded = true;
          super.emit('end');
          break;
        case FrameType.Open:
        case FrameType.Status:
          return this.fail(`unexpected frame type ${frame.type} from the client`);
      }
    }
  }

  private fail(message: string): void {
    this.emit('error', this.protocolError(`malformed framed stream: ${message}`));
  }
}

/** How long a client has to close its connection after the status before the server does. */
export const STATUS_LINGER_MS = 1_000;

/**
 * Sends the status and half-closes. The client closes on reading it; one that does not is
 * disconnected after STATUS_LINGER_MS (what it sends meanwhile is not read).
 */
function endWithStatus(socket: Socket, status: Buffer): void {
  socket.end(status);
  setTimeout(() => socket.destroy(), STATUS_LINGER_MS).unref();
}

/**
 * One entry of FramedMethods: a gRPC bidi method served on the framed stream by `handler`, which
 * gets the framed call in place of grpc-js's server stream.
 */
export function framedMethod<Req, Res>(
  method: GrpcMethodDefinition<Req, Res>,
  handler: (call: FramedServerCall<Req, Res>) => void,
): [string, FramedMethods extends ReadonlyMap<string, infer V> ? V : never] {
  return [
    method.path,
    {
      codec: framedCodecOf(method) as FramedCodec<unknown, unknown>,
      handler: handler as (call: FramedServerCall<unknown, unknown>) => void,
    },
  ];
}

/** What a framed connection may call: method path → handler of one bidi call. */
export type FramedMethods = ReadonlyMap<
  string,
  {
    codec: FramedCodec<unknown, unknown>;
    handler: (call: FramedServerCall<unknown, unknown>) => void;
  }
>;

export interface FramedServerOptions {
  methods: FramedMethods;
  /** Largest frame body accepted. */
  maxBodyBytes: number;
  /** How long a connection may take to send its preface and OPEN frame. */
  openTimeoutMs: number;
  protocolError: (message: string) => Partial<ServiceError>;
}

/**
 * Takes over a connection that started with FRAMED_PREFACE (already consumed; `rest` is what
 * followed it): waits for OPEN, then hands the call to the method's handler. A connection that
 * does not open properly gets a status when it can be told, and is closed.
 */
export function serveFramedConnection(
  socket: Socket,
  rest: Buffer,
  options: FramedServerOptions,
): void {
  if (socket.destroyed) return;
  const reader = new FrameReader(options.maxBodyBytes);
  reader.push(rest);
  const refuse = (code: number, details: string, metadata?: Metadata): void => {
    cleanup();
    endWithStatus(socket, encodeStatus({ code, details, ...(metadata ? { metadata } : {}) }));
  };
  const timer = setTimeout(() => {
    cleanup();
    socket.destroy();
  }, options.openTimeoutMs);
  const onData = (chunk: Buffer): void => {
    reader.push(chunk);
    tryOpen();
  };
  const cleanup = (): void => {
    clearTimeout(timer);
    socket.off('data', onData);
  };
  const tryOpen = (): void => {
    let frame: Frame | undefined;
    try {
      frame = reader.next();
    } catch (err) {
      const e = options.protocolError(`malformed framed stream: ${(err as Error).message}`);
      return refuse(e.code ?? GrpcStatus.INTERNAL, e.details ?? 'malformed', e.metadata);
    }
    if (frame === undefined) return;
    if (frame.type !== FrameType.Open || frame.body.length > MAX_METHOD_BYTES) {
      const e = options.protocolError('malformed framed stream: the first frame must be OPEN');
      return refuse(e.code ?? GrpcStatus.INTERNAL, e.details ?? 'malformed', e.metadata);
    }
    const path = frame.body.toString('utf8');
    const method = options.methods.get(path);
    if (method === undefined)
      return refuse(GrpcStatus.UNIMPLEMENTED, `the framed stream does not serve ${path}`);
    cleanup();
    // While the handler sets up, bytes wait in the socket (paused reading starts in start()).
    const call = new FramedServerCall(socket, reader, method.codec, options.protocolError);
    method.handler(call);
    call.start();
  };
  socket.on('data', onData);
  socket.on('error', () => cleanup());
  socket.on('close', () => cleanup());
  socket.resume(); // whoever read the preface may have left the socket paused
  tryOpen();
}

// --- client side ------------------------------------------------------------------------------

export interface FramedClientOptions<Req = unknown> {
  /** host:port of the node. */
  address: string;
  /** The method path, as gRPC names it. */
  method: string;
  /** Largest frame body accepted from the server. */
  maxBodyBytes: number;
  /**
   * Called when the server answers with something other than frames before its first frame:
   * it does not speak the framed stream (a gRPC-only server answers with HTTP/2). The caller
   * should use gRPC for that server from then on.
   */
  onNotFramed?: () => void;
  /**
   * The same call over gRPC, for a server that does not speak the framed stream: what was
   * written so far is written to it again and the call goes on there. Without it (or when more
   * than MAX_HELD_BYTES were written before the server's first frame) such a call ends with
   * UNAVAILABLE.
   */
  fallback?: () => DuplexLike<Req>;
}

/** What the framed client call hands over to its gRPC fallback: grpc-js's ClientDuplexStream. */
export interface DuplexLike<Req> extends EventEmitter {
  write(message: Req): boolean;
  end(): void;
  cancel(): void;
  pause(): void;
  resume(): void;
}

/** Bytes of messages kept for a fallback until the server's first frame shows it speaks frames. */
const MAX_HELD_BYTES = 16 * 1024 * 1024;

/** host and port of `host:port` or `[v6]:port`. */
export function splitAddress(address: string): { host: string; port: number } {
  const at = address.lastIndexOf(':');
  const host = address.slice(0, at).replace(/^\[(.*)\]$/, '$1');
  const port = Number(address.slice(at + 1));
  if (at <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535)
    throw new RangeError(`address ${address} is not host:port`);
  return { host, port };
}

/**
 * The client end of one framed call, shaped like grpc-js's ClientDuplexStream as far as the
 * producer uses it: `write` (false when the connection is backed up; `drain` follows), `end`,
 * `cancel`, `pause`, `resume`, events `data`, `error` (a ServiceError, for a status other than
 * OK) and `status`, once. A connection lost before the status ends the call with UNAVAILABLE.
 */
export class FramedClientCall<Req, Res> extends EventEmitter {
  private readonly socket: Socket;
  private readonly reader: FrameReader;
  private isPaused = false;
  private isFinished = false;
  private isEnded = false;
  private hasFrame = false;
  private isConnected = false;
  private hasBytes = false;
  /** Messages written before the server's first frame, for the fallback; then undefined. */
  private held: Req[] | undefined = [];
  private heldBytes = 0;
  /** The gRPC call this one moved to (the server does not speak frames). */
  private delegate: DuplexLike<Req> | undefined;

  constructor(
    private readonly options: FramedClientOptions<Req>,
    private readonly codec: FramedCodec<Req, Res>,
  ) {
    super();
    this.reader = new FrameReader(Math.max(options.maxBodyBytes, MAX_STATUS_BYTES));
    const { host, port } = splitAddress(options.address);
    // Keep-alive probes find a peer that vanished without closing (its host died).
    this.socket = connect({
      host,
      port,
      noDelay: true,
      keepAlive: true,
      keepAliveInitialDelay: 30_000,
    });
    const method = Buffer.from(options.method, 'utf8');
    this.socket.cork();
    this.socket.write(FRAMED_PREFACE);
    this.socket.write(frameHeader(FrameType.Open, method.length));
    this.socket.write(method);
    this.socket.uncork();
    this.socket.once('connect', () => {
      this.isConnected = true;
    });
    this.socket.on('data', (chunk: Buffer) => {
      this.hasBytes = true;
      this.reader.push(chunk);
      this.deliver();
    });
    this.socket.on('drain', () => this.emit('drain'));
    this.socket.on('error', (err: Error) => this.lost(err.message));
    this.socket.on('close', () => this.lost('the connection closed'));
  }

  getPeer(): string {
    return this.options.address;
  }

  write(message: Req): boolean {
    if (this.delegate !== undefined) return this.delegate.write(message);
    if (this.isFinished) return false;
    const parts = this.codec.serializeRequestParts?.(message) ?? [
      this.codec.serializeRequest(message),
    ];
    let length = 0;
    for (const part of parts) length += part.length;
    if (this.held !== undefined && this.options.fallback !== undefined) {
      this.heldBytes += length;
      if (this.heldBytes <= MAX_HELD_BYTES) this.held.push(message);
      else this.held = undefined;
    }
    // Header and parts go out in one writev: nothing is copied again.
    this.socket.cork();
    let ok = this.socket.write(frameHeader(FrameType.Message, length));
    for (const part of parts) ok = this.socket.write(part);
    this.socket.uncork();
    return ok;
  }

  end(): void {
    if (this.delegate !== undefined) return this.delegate.end();
    if (this.isFinished || this.isEnded) return;
    this.isEnded = true;
    this.socket.write(frameHeader(FrameType.End, 0));
  }

  cancel(): void {
    if (this.delegate !== undefined) return this.delegate.cancel();
    this.finish(
      { code: GrpcStatus.CANCELLED, details: 'Cancelled on client', metadata: new Metadata() },
      true,
    );
  }

  pause(): void {
    if (this.delegate !== undefined) return this.delegate.pause();
    this.isPaused = true;
    this.socket.pause();
  }

  resume(): void {
    if (this.delegate !== undefined) return this.delegate.resume();
    if (!this.isPaused) return;
    this.isPaused = false;
    this.deliver();
    if (!this.isPaused && !this.isFinished) this.socket.resume();
  }

  /** Goes on over `call`: replays what was written, then forwards everything both ways. */
  private moveTo(call: DuplexLike<Req>, held: Req[]): void {
    this.isFinished = true;
    this.socket.destroy();
    this.delegate = call;
    call.on('data', (m: unknown) => this.emit('data', m));
    call.on('error', (e: unknown) => this.emit('error', e));
    call.on('status', (st: unknown) => this.emit('status', st));
    call.on('drain', () => this.emit('drain'));
    for (const m of held) call.write(m);
    if (this.isEnded) call.end();
    if (this.isPaused) call.pause();
  }

  private deliver(): void {
    while (!this.isPaused && !this.isFinished) {
      let frame: Frame | undefined;
      try {
        frame = this.reader.next();
        if (frame === undefined) return;
        this.hasFrame = true;
        this.held = undefined;
        if (frame.type === FrameType.Message) {
          this.emit('data', this.codec.deserializeResponse(frame.body));
        } else if (frame.type === FrameType.Status) {
          this.finish(decodeStatus(frame.body), true);
        } else {
          throw new FrameFormatError(`unexpected frame type ${frame.type} from the server`);
        }
      } catch (err) {
        if (!this.hasFrame && err instanceof FrameFormatError) {
          this.options.onNotFramed?.();
          if (this.options.fallback !== undefined && this.held !== undefined)
            return this.moveTo(this.options.fallback(), this.held);
          return this.finish(
            {
              code: GrpcStatus.UNAVAILABLE,
              details: `${this.options.address} does not serve the framed stream (${err.message}); use gRPC`,
              metadata: new Metadata(),
            },
            true,
          );
        }
        this.finish(
          {
            code: GrpcStatus.INTERNAL,
            details: `${this.options.address} broke the framed stream: ${(err as Error).message}`,
            metadata: new Metadata(),
          },
          true,
        );
        return;
      }
    }
  }

  private lost(why: string): void {
    if (this.isFinished) return;
    // Accepted, then closed without a byte: what a proxy that speaks only HTTP/2 does with
    // frames, and what a real node does only when it stops or is at its connection limit. The
    // gRPC call gets the node's own answer to those.
    if (this.isConnected && !this.hasBytes) {
      this.options.onNotFramed?.();
      if (this.options.fallback !== undefined && this.held !== undefined)
        return this.moveTo(this.options.fallback(), this.held);
    }
    this.finish(
      {
        code: GrpcStatus.UNAVAILABLE,
        details: `connection to ${this.options.address} lost: ${why}`,
        metadata: new Metadata(),
      },
      true,
    );
  }

  private finish(status: StatusObject, close: boolean): void {
    if (this.isFinished) return;
    this.isFinished = true;
    if (close) this.socket.destroy();
    if (status.code !== GrpcStatus.OK) {
      const err = Object.assign(new Error(`${status.code} ${status.details}`), {
        code: status.code,
        details: status.details,
        metadata: status.metadata,
      });
      this.emit('error', err);
    }
    this.emit('status', status);
  }
}
