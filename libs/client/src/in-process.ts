import { EventEmitter } from 'node:events';
import {
  Metadata,
  status as GrpcStatus,
  type ClientDuplexStream,
  type ServerDuplexStream,
  type ServiceError,
  type StatusObject,
} from '@grpc/grpc-js';
import type {
  ConsumeRequest,
  ConsumeResponse,
  HandlerServiceServer,
  ProduceMessage,
  ProduceRequest,
  ProduceResponse,
} from '@woodstream/proto';

/**
 * A streaming node in the same process as the client (standalone): its HandlerService
 * implementation, reached without gRPC. Messages are handed over as objects — no protobuf
 * encoding, no HTTP/2 — with the same ordering, flow control and error trailers as the wire.
 */
export interface InProcessNode {
  /** The address the coordinator publishes for the node; routes to it use this object instead. */
  address: string;
  handlers: HandlerServiceServer;
}

/** What the producers and consumers use of a node client: one bidi stream per call. */
export interface NodeHandlerClient {
  produce(): ClientDuplexStream<ProduceRequest, ProduceResponse>;
  consume(): ClientDuplexStream<ConsumeRequest, ConsumeResponse>;
  close(): void;
}

/**
 * Messages queued towards a paused reader before the writer's `write` returns false. The
 * producer and consumer bound their own in-flight work; this only makes `write` honest.
 */
const HIGH_WATER_MESSAGES = 256;

/**
 * One direction of a stream: messages wait here and are delivered in order, in batches on a
 * later macrotask (never inside `write`, so no handler re-enters itself), while not paused.
 */
class Lane<T> {
  // Invariant: holds only messages not yet delivered, in write order.
  private readonly queue: T[] = [];
  private isScheduled = false;
  isPaused = false;
  private isEnded = false;
  private isDiscarded = false;
  private wasFull = false;

  constructor(
    private readonly deliver: (message: T) => void,
    private readonly onEnd: () => void,
    private readonly onDrain: () => void,
    /** Like a Readable stream, nothing is delivered (or dropped) before a `data` listener exists. */
    private readonly hasReader: () => boolean,
  ) {}

  /** Queues `message`; false when the reader is behind (the writer should wait for drain). */
  push(message: T): boolean {
    if (this.isEnded) return false;
    this.queue.push(message);
    this.schedule();
    const isFull = this.queue.length >= HIGH_WATER_MESSAGES;
    if (isFull) this.wasFull = true;
    return !isFull;
  }

  /** No more messages: the reader gets its end after what is queued. */
  end(): void {
    if (this.isEnded) return;
    this.isEnded = true;
    this.schedule();
  }

  /** Drops what is queued and delivers nothing more, not even the end (the stream was torn down). */
  discard(): void {
    this.queue.length = 0;
    this.isEnded = true;
    this.isDiscarded = true;
  }

  resume(): void {
    this.isPaused = false;
    this.schedule();
  }

  /** A reader attached: deliver what waited for it, on a later turn (its listener is in place). */
  kick(): void {
    this.schedule();
  }

  private schedule(): void {
    if (this.isScheduled || this.isPaused || this.isDiscarded) return;
    this.isScheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.isScheduled = false;
    if (this.isDiscarded) return;
    if (!this.hasReader()) return; // flushed again when a reader attaches
    while (!this.isPaused && this.queue.length > 0) {
      this.deliver(this.queue.shift() as T);
    }
    if (this.wasFull && this.queue.length < HIGH_WATER_MESSAGES / 2) {
      this.wasFull = false;
      this.onDrain();
    }
    if (this.queue.length === 0 && this.isEnded && !this.isPaused) {
      this.isDiscarded = true; // the end is delivered once
      this.onEnd();
    }
  }
}

/**
 * Connects a client-side and a server-side stream object in memory. The client side behaves
 * like grpc-js's ClientDuplexStream as far as the producer and consumer use it (`write`,
 * `end`, `cancel`, `pause`, `resume`, events `data`, `error`, `status`); the server side like
 * ServerDuplexStream as far as the node's handlers use it (`write`, `end`, `pause`, `resume`,
 * an `error` emitted with a ServiceError, events `data`, `end`, `cancelled`, `drain`, and
 * `close` once the stream is over, whichever way).
 */
function streamPair<Req, Res>(): { client: EventEmitter; server: EventEmitter } {
  const client = new EventEmitter();
  const server = new EventEmitter();
  let isFinished = false;
  const finish = (status: StatusObject, error?: Partial<ServiceError>): void => {
    if (isFinished) return;
    isFinished = true;
    toServer.discard();
    toClient.discard();
    if (error !== undefined) client.emit('error', Object.assign(new Error(error.details), error));
    client.emit('status', status);
    // As a grpc-js server stream does once it is done: what the node holds for the stream
    // (its slot among the node's open streams) is released on it.
    setImmediate(() => EventEmitter.prototype.emit.call(server, 'close'));
  };
  const toServer: Lane<Req> = new Lane<Req>(
    (m) => server.emit('data', m),
    () => server.emit('end'),
    () => client.emit('drain'),
    () => server.listenerCount('data') > 0,
  );
  const toClient: Lane<Res> = new Lane<Res>(
    (m) => client.emit('data', m),
    () => finish({ code: GrpcStatus.OK, details: 'OK', metadata: new Metadata() }),
    () => server.emit('drain'),
    () => client.listenerCount('data') > 0,
  );
  // A reader attaching later gets what waited for it (after its listener is in place).
  server.on('newListener', (event: string | symbol) => {
    if (event === 'data') toServer.kick();
  });
  client.on('newListener', (event: string | symbol) => {
    if (event === 'data') toClient.kick();
  });
  Object.assign(client, {
    write: (message: Req): boolean => !isFinished && toServer.push(message),
    end: (): void => toServer.end(),
    cancel: (): void => {
      if (isFinished) return;
      const metadata = new Metadata();
      finish(
        { code: GrpcStatus.CANCELLED, details: 'Cancelled on client', metadata },
        { code: GrpcStatus.CANCELLED, details: 'Cancelled on client', metadata },
      );
      setImmediate(() => server.emit('cancelled'));
    },
    pause: (): void => {
      toClient.isPaused = true;
    },
    resume: (): void => toClient.resume(),
  });
  // The node fails a stream by emitting 'error' with a ServiceError (code, details, trailer).
  const emitOnServer = server.emit.bind(server);
  Object.assign(server, {
    emit: (event: string | symbol, ...args: unknown[]): boolean => {
      if (event === 'error') {
        const err = (args[0] ?? {}) as Partial<ServiceError>;
        const code = err.code ?? GrpcStatus.UNKNOWN;
        const details = err.details ?? 'error';
        const metadata = err.metadata ?? new Metadata();
        finish({ code, details, metadata }, { code, details, metadata });
        return true;
      }
      return emitOnServer(event, ...args);
    },
    write: (message: Res): boolean => !isFinished && toClient.push(message),
    end: (): void => toClient.end(),
    pause: (): void => {
      toServer.isPaused = true;
    },
    resume: (): void => toServer.resume(),
    get cancelled(): boolean {
      return isFinished;
    },
  });
  return { client, server };
}

/** The request with a private copy of every payload it carries. */
function copyPayloads(req: ProduceRequest): ProduceRequest {
  const r = req.request;
  if (r?.$case === 'produce')
    return { request: { $case: 'produce', produce: copyMessage(r.produce) } };
  if (r?.$case === 'produceBatch')
    return {
      request: {
        $case: 'produceBatch',
        produceBatch: { ...r.produceBatch, messages: r.produceBatch.messages.map(copyMessage) },
      },
    };
  return req;
}

function copyMessage(m: ProduceMessage): ProduceMessage {
  if (m.message === undefined) return m;
  return { ...m, message: { ...m.message, payload: Buffer.from(m.message.payload) } };
}

/** A node client whose streams go straight to an in-process node's handlers. */
export class InProcessNodeClient implements NodeHandlerClient {
  constructor(
    private readonly node: InProcessNode,
    private readonly onStream: () => void = () => {},
  ) {}

  produce(): ClientDuplexStream<ProduceRequest, ProduceResponse> {
    const call = this.open<ProduceRequest, ProduceResponse>((c) => this.node.handlers.produce(c));
    // The node keeps produced payloads (its WAL takes them over and hands the same bytes to
    // readers at the live end), while the SDK lets a caller reuse a payload once its append has
    // settled: copy each one here, where encoding for the wire would have copied it.
    const write = call.write.bind(call) as (req: ProduceRequest, ...rest: unknown[]) => boolean;
    call.write = ((req: ProduceRequest, ...rest: unknown[]) =>
      write(copyPayloads(req), ...rest)) as typeof call.write;
    return call;
  }

  consume(): ClientDuplexStream<ConsumeRequest, ConsumeResponse> {
    return this.open((call) => this.node.handlers.consume(call));
  }

  private open<Req, Res>(
    serve: (call: ServerDuplexStream<Req, Res>) => void,
  ): ClientDuplexStream<Req, Res> {
    this.onStream();
    const { client, server } = streamPair<Req, Res>();
    // Started on a later turn, as a server would: the caller attaches its listeners first.
    setImmediate(() => serve(server as unknown as ServerDuplexStream<Req, Res>));
    return client as unknown as ClientDuplexStream<Req, Res>;
  }

  close(): void {
    // Nothing to release: streams end with their producers and consumers.
  }
}
