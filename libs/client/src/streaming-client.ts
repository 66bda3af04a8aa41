import { context, SpanKind, SpanStatusCode, trace, type Context } from '@opentelemetry/api';
import {
  injectTraceContext,
  isTraceProperty,
  SCOPES,
  SPANS,
  TRACE_PROPERTIES,
} from '@woodstream/observability';
import { RESERVED_PREFIX, StreamingError, validateChannelName } from '@woodstream/streaming';
import { AssignmentWatcher } from './assignment-watcher.js';
import { NodePool } from './node-pool.js';
import {
  MAX_BUFFERED_MESSAGES_LIMIT,
  withDefaults,
  type ResolvedOptions,
  type StreamingClientOptions,
} from './options.js';
import {
  ResumableConsumer,
  toDeliverFilters,
  toDeliverPolicy,
  type Subscription,
} from './resumable-consumer.js';
import { AppendResults } from './append-results.js';
import { ResumableProducer, type WireMessage } from './resumable-producer.js';
import {
  newStats,
  type AppendMessage,
  type AppendResult,
  type ClientStats,
  type ReadFilter,
  type ReadFrom,
} from './types.js';

/** Options of {@link StreamingClient.read}. */
export interface ReadOptions {
  readonly vchannel: string;
  readonly from: ReadFrom;
  readonly filters?: readonly ReadFilter[];
  /** Read this pchannel instead of the one the vchannel hashes to. */
  readonly pchannel?: string;
  /** Aborting ends the read (see {@link Subscription}). */
  readonly signal?: AbortSignal;
  /** Events buffered before the stream pauses. @default the client's (1024), max 65536 */
  readonly maxBufferedMessages?: number;
}

/** Options of a single call. */
export interface CallOptions {
  readonly signal?: AbortSignal;
}

const closedError = () => new StreamingError('ON_SHUTDOWN', 'the client is closed');

// A proxy: it records once the application registers an OpenTelemetry SDK, and is a no-op before.
const tracer = trace.getTracer(SCOPES.client);

/**
 * The client of a Woodstream streaming cluster. It keeps one discovery stream to the coordinator
 * (the assignment of pchannels to nodes), one resumable producer per pchannel it appends to, and
 * one resumable consumer per read. Safe to share: all calls may run concurrently.
 */
export class StreamingClient {
  private readonly producers = new Map<string, ResumableProducer>();
  private readonly subscriptions = new Set<ResumableConsumer>();
  private isClosing = false;
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly options: ResolvedOptions,
    private readonly watcher: AssignmentWatcher,
    private readonly pool: NodePool,
    // Shared with the watcher, producers and consumers, which count into it.
    private readonly counters: ClientStats,
  ) {}

  /**
   * Connects to the coordinator and resolves once the first assignment snapshot arrived.
   * Rejects with ON_SHUTDOWN when none arrives within `connectTimeoutMs` (default 30 s), with
   * `signal.reason` when aborted, and with RangeError on invalid options. On failure nothing
   * is left open.
   */
  static async connect(options: StreamingClientOptions): Promise<StreamingClient> {
    const resolved = withDefaults(options);
    options.signal?.throwIfAborted();
    const stats = newStats();
    const watcher = new AssignmentWatcher(resolved, stats);
    const client = new StreamingClient(resolved, watcher, new NodePool(resolved, stats), stats);
    watcher.start();
    try {
      await watcher.ready(resolved.connectTimeoutMs, options.signal);
    } catch (err) {
      await client.close();
      throw err;
    }
    return client;
  }

  /**
   * Appends one message to its vchannel and resolves once a node acknowledged it. The payload is
   * not copied: leave it unchanged until the append settles (a retry sends it again). At-least-once:
   * after a move or a lost result the message is sent again and may be stored twice.
   * Waits while the pchannel's producer is full (maxInflightAppends / maxInflightBytes).
   * Rejects with INVALID_ARGUMENT (bad names, unknown pchannel, message larger than
   * maxInflightBytes, or the node refused it), another non-retryable StreamingError from the
   * node, ON_SHUTDOWN when the client closes first, or `signal.reason` on abort (the message
   * may still be stored when it was already sent).
   */
  async append(message: AppendMessage, options: CallOptions = {}): Promise<AppendResult> {
    const [result] = await this.appendBatch([message], options);
    return result as AppendResult;
  }

  /**
   * Appends messages, sent back to back per pchannel; resolves to their results in the order
   * given. Messages of one pchannel are sent in order; across pchannels there is no order.
   * When any fails it rejects with the first failure in input order, after all have settled —
   * the others may have been stored. Errors as for {@link append}.
   */
  async appendBatch(
    messages: readonly AppendMessage[],
    options: CallOptions = {},
  ): Promise<AppendResult[]> {
    // One producer span per call; its context goes into every message so that readers can link
    // their processing to it.
    const span = tracer.startSpan(SPANS.clientProduce.name, { kind: SpanKind.PRODUCER });
    if (!span.isRecording()) return this.appendTraced(messages, options, undefined);
    span.setAttribute('messaging.batch.message_count', messages.length);
    try {
      return await this.appendTraced(messages, options, trace.setSpan(context.active(), span));
    } catch (err) {
      span.setStatus({
        code: SpanStatusCode.ERROR,
        message: err instanceof Error ? err.message : String(err),
      });
      throw err;
    } finally {
      span.end();
    }
  }

  private async appendTraced(
    messages: readonly AppendMessage[],
    options: CallOptions,
    traceContext: Context | undefined,
  ): Promise<AppendResult[]> {
    if (this.isClosing) throw closedError();
    options.signal?.throwIfAborted();
    const snapshot = this.watcher.current;
    if (snapshot === undefined) throw closedError(); // connect() guarantees one
    const pchannelOf = (m: AppendMessage): string =>
      snapshot.pchannelFor(validateChannelName(m.vchannel, 'vchannel'), m.pchannel);
    if (messages.length === 0) return [];
    const results = new AppendResults(messages.length);
    if (messages.length === 1) {
      // The common call (`append`): one producer, no grouping by pchannel.
      const m = messages[0] as AppendMessage;
      await this.producer(pchannelOf(m)).append(
        [toWire(m, traceContext)],
        results,
        undefined,
        options.signal,
      );
      return results.promise;
    }
    const byPChannel = new Map<string, { indexes: number[]; wire: WireMessage[] }>();
    messages.forEach((m, i) => {
      const pchannel = pchannelOf(m);
      let group = byPChannel.get(pchannel);
      if (group === undefined) byPChannel.set(pchannel, (group = { indexes: [], wire: [] }));
      group.indexes.push(i);
      group.wire.push(toWire(m, traceContext));
    });
    if (byPChannel.size === 1) {
      // One pchannel: message i is slot i.
      const [pchannel, group] = byPChannel.entries().next().value as [
        string,
        { wire: WireMessage[] },
      ];
      await this.producer(pchannel).append(group.wire, results, undefined, options.signal);
    } else {
      await Promise.all(
        [...byPChannel].map(([pchannel, group]) =>
          this.producer(pchannel).append(group.wire, results, group.indexes, options.signal),
        ),
      );
    }
    return results.promise;
  }

  /**
   * Starts a resumable read of a vchannel (see {@link Subscription}). Throws INVALID_ARGUMENT
   * for bad names, positions or filters, an unknown pchannel, or maxBufferedMessages out of
   * [1, 65536]; ON_SHUTDOWN when the client is closed.
   */
  read(options: ReadOptions): Subscription {
    if (this.isClosing) throw closedError();
    const snapshot = this.watcher.current;
    if (snapshot === undefined) throw closedError();
    const vchannel = validateChannelName(options.vchannel, 'vchannel');
    const pchannel = snapshot.pchannelFor(vchannel, options.pchannel);
    const filters = options.filters ?? [];
    // Validate now so a bad argument throws here, not later from the iterator.
    toDeliverPolicy(options.from);
    toDeliverFilters(filters);
    const maxBufferedMessages = options.maxBufferedMessages ?? this.options.maxBufferedMessages;
    if (
      !Number.isInteger(maxBufferedMessages) ||
      maxBufferedMessages < 1 ||
      maxBufferedMessages > MAX_BUFFERED_MESSAGES_LIMIT
    ) {
      throw new StreamingError(
        'INVALID_ARGUMENT',
        `maxBufferedMessages must be an integer in [1, ${MAX_BUFFERED_MESSAGES_LIMIT}]`,
      );
    }
    const consumer = new ResumableConsumer(
      {
        vchannel,
        pchannel,
        from: options.from,
        filters,
        maxBufferedMessages,
        signal: options.signal,
      },
      this.watcher,
      this.pool,
      this.options,
      this.counters,
    );
    this.subscriptions.add(consumer);
    void consumer.closed.then(() => this.subscriptions.delete(consumer));
    return consumer;
  }

  /** A copy of the client's counters (retries are possible duplicates in the log). */
  stats(): ClientStats {
    return { ...this.counters };
  }

  /**
   * Closes every producer (in-flight appends get up to closeTimeoutMs to finish; the rest fail
   * with ON_SHUTDOWN), every read (their `closed` resolves to undefined), the discovery stream
   * (with the `close` handshake) and all gRPC channels. Idempotent; later calls fail with
   * ON_SHUTDOWN.
   */
  close(): Promise<void> {
    this.isClosing = true;
    this.closing ??= (async () => {
      await Promise.all([
        ...[...this.producers.values()].map((p) => p.close()),
        ...[...this.subscriptions].map((s) => s.close()),
      ]);
      await this.watcher.close();
      this.pool.close();
    })();
    return this.closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private producer(pchannel: string): ResumableProducer {
    let producer = this.producers.get(pchannel);
    if (producer === undefined) {
      producer = new ResumableProducer(
        pchannel,
        this.watcher,
        this.pool,
        this.options,
        this.counters,
      );
      this.producers.set(pchannel, producer);
    }
    return producer;
  }
}

/** Shared by every message without properties; nothing writes to a message's properties. */
const NO_PROPERTIES: Record<string, string> = Object.freeze({});

function isEmpty(properties: Readonly<Record<string, string>>): boolean {
  for (const key in properties) if (Object.hasOwn(properties, key)) return false;
  return true;
}

function toWire(m: AppendMessage, traceContext: Context | undefined): WireMessage {
  if (!(m.payload instanceof Uint8Array)) {
    throw new StreamingError('INVALID_ARGUMENT', 'payload must be a Uint8Array');
  }
  // A view, not a copy: the caller's bytes are encoded when the frame is written.
  const payload = Buffer.isBuffer(m.payload)
    ? m.payload
    : Buffer.from(m.payload.buffer, m.payload.byteOffset, m.payload.byteLength);
  if (traceContext === undefined && (m.properties === undefined || isEmpty(m.properties))) {
    // The common message: no properties to copy or check.
    return {
      vchannel: m.vchannel,
      body: { payload, properties: NO_PROPERTIES },
      bytes: payload.byteLength,
    };
  }
  const properties: Record<string, string> = { ...m.properties };
  let bytes = m.payload.byteLength;
  for (const [key, value] of Object.entries(properties)) {
    // The node writes its own bookkeeping under this prefix; it would refuse the message anyway.
    // The trace context a read delivered may be passed on (forwarding a message keeps its trace).
    if (key.startsWith(RESERVED_PREFIX) && !isTraceProperty(key, String(value))) {
      throw new StreamingError(
        'INVALID_ARGUMENT',
        `property ${key}: keys starting with ${RESERVED_PREFIX} are reserved`,
      );
    }
    if (typeof value !== 'string') {
      throw new StreamingError('INVALID_ARGUMENT', `property ${key} must be a string`);
    }
    bytes += Buffer.byteLength(key) + Buffer.byteLength(value);
  }
  if (traceContext !== undefined) {
    // This append's span replaces any context the caller passed on.
    bytes -= traceContextBytes(properties);
    injectTraceContext(properties, traceContext);
    bytes += traceContextBytes(properties);
  }
  return { vchannel: m.vchannel, body: { payload, properties }, bytes };
}

function traceContextBytes(properties: Record<string, string>): number {
  let bytes = 0;
  for (const key of [TRACE_PROPERTIES.traceParent, TRACE_PROPERTIES.traceState]) {
    const value = properties[key];
    if (value !== undefined) bytes += key.length + value.length;
  }
  return bytes;
}
