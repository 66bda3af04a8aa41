import type { ServerDuplexStream } from '@grpc/grpc-js';
import { context, SpanKind, SpanStatusCode, trace, type Link } from '@opentelemetry/api';
import { assert } from '@woodstream/common';
import { extractTraceContext, SPANS, TRACE_PROPERTIES } from '@woodstream/observability';
import {
  HandlerServiceService,
  MessageType,
  streamingCodeToJSON,
  type ConsumeRequest,
  type ConsumeResponse,
  type DeliverFilter,
  type HandlerServiceServer,
  type MessageID,
  type OpenConsumer,
  type ProduceMessage,
  type ProduceRequest,
  type ProduceResponse,
  type ProduceResult,
} from '@woodstream/proto';
import {
  PROP,
  RESERVED_PREFIX,
  StreamingError,
  toServiceError,
  toStreamingError,
  validateChannelName,
} from '@woodstream/streaming';
import {
  comparePositions,
  type LogEntry,
  type LogReader,
  type LogPosition,
  type ReadFrom,
} from '@woodstream/woodpecker';
import type { AppendResult, BatchMessage, ChannelWal, SafeTick } from './channel-wal.js';
import { NodeTelemetry, type ChannelCounters } from './node-telemetry.js';
import type { WalManager } from './wal-manager.js';

/**
 * Payload bytes of unanswered produce requests over all streams of the node: what the per-stream
 * limits cannot bound when many producers connect. A stream that admits a frame while the node is
 * at its limit pauses as at its own; the paused streams are woken once the node is below half of
 * it (each resumes if it is below half of its own limits too).
 */
export class NodeProduceBudget {
  bytes = 0;
  private waiting = new Set<() => void>();
  constructor(readonly limitBytes: number) {
    assert(Number.isSafeInteger(limitBytes) && limitBytes > 0, 'the node budget is positive');
  }

  get isFull(): boolean {
    return this.bytes >= this.limitBytes;
  }

  get hasRoom(): boolean {
    return this.bytes < this.limitBytes / 2;
  }

  add(bytes: number): void {
    this.bytes += bytes;
  }

  remove(bytes: number): void {
    this.bytes -= bytes;
    assert(this.bytes >= 0, 'the node released no more than its streams admitted');
    if (!this.hasRoom || this.waiting.size === 0) return;
    const waiting = this.waiting;
    this.waiting = new Set();
    for (const wake of waiting) wake();
  }

  /** Calls `wake` once, the next time the node drops below half its limit. */
  waitForRoom(wake: () => void): void {
    this.waiting.add(wake);
  }

  /** Forgets `wake` (its stream ended). */
  cancel(wake: () => void): void {
    this.waiting.delete(wake);
  }
}

/**
 * The unanswered produce requests of one stream and their payload bytes. Reading pauses when
 * either reaches its limit, or the node's budget is full, and resumes (`onResume`) when the
 * stream is below half of both its limits and the node below half of its budget, so a stream
 * does not flap. While paused, HTTP/2 flow control holds the producer back. The frame that
 * crosses a limit is still admitted: a message larger than the byte limit gets through alone.
 */
export class ProduceWindow {
  messages = 0;
  bytes = 0;
  isPaused = false;
  constructor(
    private readonly limits: Pick<
      HandlerLimits,
      'maxInflightPerProducer' | 'maxInflightBytesPerProducer'
    >,
    private readonly budget: NodeProduceBudget | undefined,
    private readonly onResume: () => void,
  ) {}

  /** Counts a frame in; true when reading must pause now. */
  admit(messages: number, bytes: number): boolean {
    this.messages += messages;
    this.bytes += bytes;
    this.budget?.add(bytes);
    if (this.isPaused) return false;
    this.isPaused =
      this.messages >= this.limits.maxInflightPerProducer ||
      this.bytes >= this.limits.maxInflightBytesPerProducer ||
      this.budget?.isFull === true;
    if (this.isPaused) this.budget?.waitForRoom(this.wake);
    return this.isPaused;
  }

  /** Counts an answered frame out; calls `onResume` if reading may resume now. */
  release(messages: number, bytes: number): void {
    this.messages -= messages;
    this.bytes -= bytes;
    assert(this.messages >= 0 && this.bytes >= 0, 'released no more than was admitted');
    this.budget?.remove(bytes); // may wake this window (and others)
    this.wake();
  }

  /**
   * The stream ended: it is never resumed, and the node's budget forgets it. Its frames still
   * in flight are released as they are answered.
   */
  close(): void {
    this.isPaused = false;
    this.budget?.cancel(this.wake);
  }

  private readonly wake = (): void => {
    if (!this.isPaused) return;
    // Still at or above half of its own limits: its own next release calls again.
    if (
      this.messages >= this.limits.maxInflightPerProducer / 2 ||
      this.bytes >= this.limits.maxInflightBytesPerProducer / 2
    )
      return;
    if (this.budget !== undefined && !this.budget.hasRoom) {
      this.budget.waitForRoom(this.wake);
      return;
    }
    this.isPaused = false;
    this.onResume();
  };
}

/**
 * Produce and consume streams open on the node at once. Each holds buffers (a consumer's read
 * batch, a producer's window), so their number is bounded too: past the limit a new stream is
 * refused with RESOURCE_EXHAUSTED (retryable; clients back off and try again).
 */
export class StreamSlots {
  open = 0;
  constructor(readonly limit: number) {
    assert(Number.isSafeInteger(limit) && limit > 0, 'the stream limit is positive');
  }

  /** Takes a slot for `call` until it ends (finished, closed or cancelled); false when full. */
  take(call: ServerDuplexStream<unknown, unknown>): boolean {
    if (this.open >= this.limit) return false;
    this.open += 1;
    let isReleased = false;
    const release = (): void => {
      if (isReleased) return;
      isReleased = true;
      this.open -= 1;
    };
    call.once('finish', release);
    call.once('close', release);
    call.once('cancelled', release);
    return true;
  }
}

/** Limits of produce and consume streams. */
export interface HandlerLimits {
  /** Produce and consume streams open at once on the node. @default 2048 */
  maxStreamsPerNode: number;
  /**
   * Payload bytes of unanswered produce requests over all streams of the node before streams
   * that send more are paused. @default 512 MiB
   */
  maxInflightBytesPerNode: number;
  /** Produce requests accepted but not yet answered before the server stops reading the stream. @default 4096 */
  maxInflightPerProducer: number;
  /** Payload bytes of those requests before the server stops reading the stream. @default 64 MiB */
  maxInflightBytesPerProducer: number;
}

/**
 * A position is a wire id as it is: both are two safe integers (MessageID's parts are numbers
 * below 2^53), so no object per answered or delivered message. Positions are never changed.
 */
const toWire = (p: LogPosition): MessageID => p;
const fromWire = (id: MessageID): LogPosition => {
  const { segmentId, entryId } = id;
  if (
    !Number.isSafeInteger(segmentId) ||
    !Number.isSafeInteger(entryId) ||
    segmentId < 0 ||
    entryId < 0
  ) {
    throw new StreamingError(
      'INVALID_ARGUMENT',
      `invalid message id ${id.segmentId}:${id.entryId}`,
    );
  }
  return { segmentId, entryId };
};

// Links per produce span: enough to follow the producers of a batch, bounded for large ones.
const MAX_PRODUCE_LINKS = 32;

/**
 * The most results one response carries when answers of several frames are sent together
 * (about 40 bytes each: far below any receive limit). The produce window bounds how many wait.
 */
const MAX_RESULTS_PER_RESPONSE = 1024;

/** What a consumer gets: the producer's properties, including its trace context (`_tp`, `_ts`). */
function userProperties(all: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(all ?? {})) {
    if (
      !k.startsWith(RESERVED_PREFIX) ||
      k === TRACE_PROPERTIES.traceParent ||
      k === TRACE_PROPERTIES.traceState
    )
      out[k] = v;
  }
  return out;
}

// Frames the server could not decode, with why. grpc-js would end such a stream with a bare
// INTERNAL status; decoded as an empty frame instead, they reach the handlers, which answer with
// a typed INVALID_ARGUMENT like any other bad frame.
const malformedFrames = new WeakMap<object, string>();

function tolerantDecoder<T extends object>(decode: (bytes: Buffer) => T): (bytes: Buffer) => T {
  return (bytes) => {
    try {
      return decode(bytes);
    } catch (err) {
      const frame = {} as T;
      malformedFrames.set(frame, err instanceof Error ? err.message : String(err));
      return frame;
    }
  };
}

/** What a frame that is neither of the expected kinds was: malformed bytes, or empty/unknown. */
function badFrame(frame: object, stream: 'produce' | 'consume'): string {
  const why = malformedFrames.get(frame);
  return why === undefined
    ? `empty or unknown ${stream} frame`
    : `malformed ${stream} frame (${why})`;
}

/** The HandlerService definition the node serves: undecodable frames get typed errors. */
export const HANDLER_SERVICE_DEFINITION: typeof HandlerServiceService = {
  ...HandlerServiceService,
  produce: {
    ...HandlerServiceService.produce,
    requestDeserialize: tolerantDecoder(HandlerServiceService.produce.requestDeserialize),
  },
  consume: {
    ...HandlerServiceService.consume,
    requestDeserialize: tolerantDecoder(HandlerServiceService.consume.requestDeserialize),
  },
};

/** Ends a stream with a typed error (gRPC status + StreamingError trailer). */
function fail(call: ServerDuplexStream<unknown, unknown>, err: unknown): void {
  call.emit('error', toServiceError(err));
}

/**
 * `HandlerService`: produce and consume over the WALs this node holds. `telemetry` records its
 * metrics and spans (default: instruments of whatever telemetry the process registered).
 */
export function createHandlerService(
  manager: WalManager,
  serverId: number,
  limits: HandlerLimits,
  telemetry: NodeTelemetry = new NodeTelemetry(manager),
): HandlerServiceServer {
  const budget = new NodeProduceBudget(limits.maxInflightBytesPerNode);
  const slots = new StreamSlots(limits.maxStreamsPerNode);
  telemetry.observeLimits(() => ({ inflightBytes: budget.bytes, openStreams: slots.open }));
  const full = (): StreamingError => {
    telemetry.streamsRefused.add(1);
    return new StreamingError(
      'RESOURCE_EXHAUSTED',
      `this node has its limit of ${slots.limit} open streams (maxStreamsPerNode); retry later, or raise the limit or add nodes`,
    );
  };
  return {
    produce(call) {
      if (!slots.take(call)) return fail(call, full());
      serveProducer(call, manager, serverId, limits, budget, telemetry);
    },
    consume(call) {
      if (!slots.take(call)) return fail(call, full());
      void serveConsumer(call, manager, serverId, telemetry).catch((err: unknown) =>
        fail(call, err),
      );
    },
  };
}

function serveProducer(
  call: ServerDuplexStream<ProduceRequest, ProduceResponse>,
  manager: WalManager,
  serverId: number,
  limits: HandlerLimits,
  budget: NodeProduceBudget,
  telemetry: NodeTelemetry,
): void {
  let wal: ChannelWal | undefined;
  let counters: ChannelCounters | undefined;
  const produceWindow = new ProduceWindow(limits, budget, () => call.resume());
  let isClosing = false;
  let isEnded = false;
  let pending = Promise.resolve();
  // Who sends, when the producer identified itself at open: its messages' sequences dedup retries.
  let producer: string | undefined;
  // The stream counts as connected from a successful open until it ends, whichever way.
  const disconnect = (): void => {
    produceWindow.close();
    if (counters === undefined) return;
    telemetry.producersConnected.add(-1, counters.attrs);
    counters.producers -= 1;
    counters = undefined;
  };
  // Answers of frames that complete in the same turn go out as one `results` frame: the client
  // matches results to requests by id, so one response may answer several produce frames. One
  // response per group commit instead of one per frame saves both sides most of the per-message
  // gRPC work when messages are large and frames small. Bounded by the produce window.
  let unsent: ProduceResult[] = [];
  let isAnswerQueued = false;
  const sendAnswers = (): void => {
    isAnswerQueued = false;
    const all = unsent;
    unsent = [];
    if (isEnded) return;
    for (let i = 0; i < all.length; i += MAX_RESULTS_PER_RESPONSE) {
      const results = all.slice(i, i + MAX_RESULTS_PER_RESPONSE);
      call.write(
        results.length === 1
          ? { response: { $case: 'result', result: results[0] as ProduceResult } }
          : { response: { $case: 'results', results: { results } } },
      );
    }
  };
  const answer = (results: readonly ProduceResult[]): void => {
    for (const result of results) unsent.push(result);
    if (isAnswerQueued) return;
    isAnswerQueued = true;
    // After the microtasks of this turn: every frame whose outcome is known by then joins.
    process.nextTick(sendAnswers);
  };
  const end = (closed?: StreamingError): void => {
    if (isEnded) return;
    // Results before `closed`: the client learns what was acknowledged first.
    sendAnswers();
    isEnded = true;
    disconnect();
    call.write({ response: { $case: 'closed', closed: { error: closed?.toProto() } } });
    call.end();
  };
  const maybeFinish = (): void => {
    if (isClosing && produceWindow.messages === 0) end();
  };
  call.on('data', (req: ProduceRequest) => {
    if (isEnded) return;
    const r = req.request;
    try {
      switch (r?.$case) {
        case 'open': {
          if (wal !== undefined)
            throw new StreamingError('INVALID_ARGUMENT', 'the producer is already open');
          const info = r.open.pchannel;
          if (info === undefined)
            throw new StreamingError('INVALID_ARGUMENT', 'open needs a pchannel');
          wal = manager.get(validateChannelName(info.name, 'pchannel'), Number(info.term));
          if (r.open.producerId !== 0n) producer = r.open.producerId.toString(16);
          counters = telemetry.channel(wal.name);
          telemetry.producersConnected.add(1, counters.attrs);
          counters.producers += 1;
          const opened = wal;
          opened.onClose((reason) => {
            // Answer what was accepted first (close flushed it), then tell the client why.
            void pending.then(() => end(reason));
          });
          call.write({ response: { $case: 'opened', opened: { serverId: BigInt(serverId) } } });
          return;
        }
        case 'produce':
        case 'produceBatch': {
          if (wal === undefined)
            throw new StreamingError('INVALID_ARGUMENT', 'send open before produce');
          if (isClosing) throw new StreamingError('INVALID_ARGUMENT', 'produce after close');
          const messages = r.$case === 'produce' ? [r.produce] : r.produceBatch.messages;
          if (messages.length === 0) throw new StreamingError('INVALID_ARGUMENT', 'empty batch');
          const target = wal;
          const channel = telemetry.channel(target.name);
          const receivedAt = performance.now();
          channel.produceInflight += messages.length;
          let frameBytes = 0;
          for (const m of messages) frameBytes += m.message?.payload.byteLength ?? 0;
          // Backpressure: stop reading the stream until answers catch up.
          if (produceWindow.admit(messages.length, frameBytes)) call.pause();
          // Appends start now, in frame order (that is the log order); answers follow in order.
          const span = telemetry.tracer.startSpan(SPANS.nodeProduce.name, {
            kind: SpanKind.SERVER,
          });
          let outcomes: Promise<ProduceResult[]>;
          if (span.isRecording()) {
            span.setAttributes({
              pchannel: target.name,
              'messaging.batch.message_count': messages.length,
            });
            span.addLinks(producerLinks(messages));
            // The WAL's append spans become children of this one.
            outcomes = context.with(trace.setSpan(context.active(), span), () =>
              produceFrame(target, messages, producer),
            );
          } else {
            outcomes = produceFrame(target, messages, producer);
          }
          pending = pending.then(async () => {
            const results = await outcomes;
            countResults(channel, messages, results);
            channel.produceInflight -= messages.length;
            telemetry.produceDuration.record(performance.now() - receivedAt, channel.attrs);
            if (span.isRecording()) {
              if (results.some((x) => x.outcome?.$case === 'error'))
                span.setStatus({ code: SpanStatusCode.ERROR, message: 'some messages failed' });
              span.end();
            }
            if (!isEnded) answer(results);
            produceWindow.release(messages.length, frameBytes);
            maybeFinish();
          });
          return;
        }
        case 'close':
          isClosing = true;
          void pending.then(maybeFinish);
          return;
        case undefined:
          throw new StreamingError('INVALID_ARGUMENT', badFrame(req, 'produce'));
      }
    } catch (err) {
      sendAnswers();
      isEnded = true;
      disconnect();
      fail(call, err);
    }
  });
  call.on('end', () => {
    isClosing = true;
    void pending.then(maybeFinish);
  });
  call.on('error', () => {
    isEnded = true;
    disconnect();
  });
  call.on('cancelled', () => {
    isEnded = true;
    disconnect();
  });
}

/** Adds a frame's outcomes to the channel's totals: ok messages and bytes, failures by code. */
function countResults(
  channel: ChannelCounters,
  messages: readonly ProduceMessage[],
  results: readonly ProduceResult[],
): void {
  for (let i = 0; i < results.length; i++) {
    const outcome = results[i]?.outcome;
    if (outcome?.$case === 'success') {
      channel.producedOk++;
      channel.producedBytes += messages[i]?.message?.payload.byteLength ?? 0;
    } else {
      // The short code of docs/errors.md (e.g. CHANNEL_FENCED), without the proto prefix.
      const code =
        outcome?.$case === 'error'
          ? streamingCodeToJSON(outcome.error.code).replace(/^STREAMING_CODE_/, '')
          : 'UNKNOWN';
      channel.produceErrors.set(code, (channel.produceErrors.get(code) ?? 0) + 1);
    }
  }
}

/** Links to the producers' spans carried in the messages (only built while tracing records). */
function producerLinks(messages: readonly ProduceMessage[]): Link[] {
  const links: Link[] = [];
  for (const m of messages) {
    if (links.length >= MAX_PRODUCE_LINKS) break;
    const producer = extractTraceContext(m.message?.properties);
    if (producer !== undefined) links.push({ context: producer });
  }
  return links;
}

interface Filters {
  gt?: bigint;
  gte?: bigint;
  types?: Set<MessageType>;
}

function compileFilters(filters: readonly DeliverFilter[]): Filters {
  const out: Filters = {};
  for (const f of filters) {
    const filter = f.filter;
    switch (filter?.$case) {
      case 'timeTickGt':
        out.gt = out.gt === undefined || filter.timeTickGt > out.gt ? filter.timeTickGt : out.gt;
        break;
      case 'timeTickGte':
        out.gte =
          out.gte === undefined || filter.timeTickGte > out.gte ? filter.timeTickGte : out.gte;
        break;
      case 'messageTypes':
        out.types = new Set(filter.messageTypes.types);
        break;
      case undefined:
        throw new StreamingError('INVALID_ARGUMENT', 'empty deliver filter');
    }
  }
  return out;
}

function passesTick(tick: bigint, f: Filters): boolean {
  return (f.gt === undefined || tick > f.gt) && (f.gte === undefined || tick >= f.gte);
}

function startPosition(open: OpenConsumer, wal: ChannelWal): ReadFrom {
  const policy = open.deliverPolicy?.policy;
  switch (policy?.$case) {
    case undefined:
    case 'all':
      return 'earliest';
    case 'latest':
      return wal.endPosition;
    case 'startFrom':
      return fromWire(policy.startFrom);
    case 'startAfter': {
      const p = fromWire(policy.startAfter);
      return { segmentId: p.segmentId, entryId: p.entryId + 1 };
    }
  }
}

/** The last vchannel name that passed validateChannelName (a pure check of the string). */
let lastValidVchannel: string | undefined;

const EMPTY_PAYLOAD = new Uint8Array(0);

/**
 * Appends the messages of one frame; resolves with one result each (success or typed error),
 * never rejects. A frame of several messages goes to the WAL as one batch when every message
 * is acceptable; otherwise, and for one message, each is appended and answered on its own.
 */
function produceFrame(
  wal: ChannelWal,
  messages: readonly ProduceMessage[],
  producer: string | undefined,
): Promise<ProduceResult[]> {
  if (messages.length > 1) {
    const batch = appendFrame(wal, messages, producer);
    if (batch !== undefined) {
      return batch.then(
        (oks) => oks.map((ok, i) => successResult((messages[i] as ProduceMessage).requestId, ok)),
        (err: unknown) => messages.map((m) => failedResult(m.requestId, err)),
      );
    }
  }
  return Promise.all(messages.map((m) => produceOne(wal, m, producer)));
}

/** The frame as one WAL batch, or undefined when some message needs the one-by-one path. */
function appendFrame(
  wal: ChannelWal,
  messages: readonly ProduceMessage[],
  producer: string | undefined,
): Promise<AppendResult[]> | undefined {
  const items = new Array<BatchMessage>(messages.length);
  for (let i = 0; i < messages.length; i++) {
    const { vchannel, message, sequence } = messages[i] as ProduceMessage;
    if (vchannel !== lastValidVchannel) {
      try {
        validateChannelName(vchannel, 'vchannel');
      } catch {
        return undefined;
      }
      lastValidVchannel = vchannel;
    }
    items[i] = {
      vchannel,
      payload: message?.payload ?? EMPTY_PAYLOAD,
      properties: message?.properties ?? {},
      sequence,
    };
  }
  return wal.appendBatch(items, producer);
}

/** Validates and appends one message; resolves with its result (success or typed error), never rejects. */
function produceOne(
  wal: ChannelWal,
  m: ProduceMessage,
  producer: string | undefined,
): Promise<ProduceResult> {
  const { requestId, vchannel, message, sequence } = m;
  let appended: Promise<AppendResult>;
  try {
    // A stream nearly always writes one vchannel: validate a name only when it changes.
    if (vchannel !== lastValidVchannel) {
      validateChannelName(vchannel, 'vchannel');
      lastValidVchannel = vchannel;
    }
    appended = wal.append(
      vchannel,
      message?.payload ?? EMPTY_PAYLOAD,
      message?.properties ?? {},
      producer !== undefined && sequence > 0 ? { producer, sequence } : undefined,
    );
  } catch (err) {
    return Promise.resolve(failedResult(requestId, err));
  }
  return appended.then(
    (ok) => successResult(requestId, ok),
    (err: unknown) => failedResult(requestId, err),
  );
}

function successResult(requestId: number, ok: AppendResult): ProduceResult {
  const id = toWire(ok.id);
  // A message's own position is its last-confirmed id (log order is tick order): one object.
  const lastConfirmedId = ok.lastConfirmedId === ok.id ? id : toWire(ok.lastConfirmedId);
  return {
    requestId,
    outcome: { $case: 'success', success: { id, timeTick: ok.timeTick, lastConfirmedId } },
  };
}

function failedResult(requestId: number, err: unknown): ProduceResult {
  return { requestId, outcome: { $case: 'error', error: toStreamingError(err).toProto() } };
}

async function serveConsumer(
  call: ServerDuplexStream<ConsumeRequest, ConsumeResponse>,
  manager: WalManager,
  serverId: number,
  telemetry: NodeTelemetry,
): Promise<void> {
  // The first frame, or undefined when the stream ends (half-close, cancel, transport error)
  // before one arrives; then there is nobody left to answer.
  const first = await new Promise<ConsumeRequest | undefined>((resolve) => {
    call.once('data', resolve);
    for (const event of ['end', 'cancelled', 'error', 'close'])
      call.once(event, () => resolve(undefined));
  });
  if (first === undefined && call.cancelled) return;
  const r = first?.request;
  if (r?.$case !== 'open')
    throw new StreamingError(
      'INVALID_ARGUMENT',
      r === undefined && first !== undefined
        ? `the first consume frame must be open: ${badFrame(first, 'consume')}`
        : 'the first consume frame must be open',
    );
  const info = r.open.pchannel;
  if (info === undefined) throw new StreamingError('INVALID_ARGUMENT', 'open needs a pchannel');
  const wal = manager.get(validateChannelName(info.name, 'pchannel'), Number(info.term));
  const vchannel = validateChannelName(r.open.vchannel, 'vchannel');
  const filters = compileFilters(r.open.deliverFilters);
  const abort = new AbortController();
  // A cancel while the reader opens aborts the open; one just after it ends the stream here.
  const onEarlyCancel = (): void =>
    abort.abort(new StreamingError('ON_SHUTDOWN', 'cancelled by the client'));
  call.once('cancelled', onEarlyCancel);
  let reader: LogReader;
  try {
    reader = await wal.log.openReader({ from: startPosition(r.open, wal), signal: abort.signal });
  } finally {
    call.off('cancelled', onEarlyCancel);
  }
  if (call.cancelled || abort.signal.aborted) {
    await reader.close();
    return;
  }

  let isEnded = false;
  let lastTick = 0n;
  // Position after the last entry handled: every entry before it went out (or was filtered).
  let delivered: LogPosition = reader.nextPosition;
  const finish = (error?: StreamingError): void => {
    if (isEnded) return;
    isEnded = true;
    abort.abort(error ?? new StreamingError('ON_SHUTDOWN', 'consumer closed'));
    call.write({ response: { $case: 'closed', closed: { error: error?.toProto() } } });
    call.end();
  };
  const sendTick = (tick: bigint): void => {
    if (isEnded || tick <= lastTick || !passesTick(tick, filters)) return;
    if (filters.types !== undefined && !filters.types.has(MessageType.MESSAGE_TYPE_TIME_TICK)) {
      lastTick = tick;
      return;
    }
    lastTick = tick;
    call.write({ response: { $case: 'timeTick', timeTick: { timeTick: tick } } });
  };
  const offTick = wal.onTick((tick: SafeTick) => {
    // Safe only once this consumer has handled everything acknowledged before the tick.
    if (comparePositions(delivered, tick.position) >= 0) sendTick(tick.timeTick);
  });
  const offClose = wal.onClose((reason) => finish(reason));
  call.on('data', (req: ConsumeRequest) => {
    if (req.request?.$case === 'close') finish();
    else
      finish(
        new StreamingError('INVALID_ARGUMENT', 'only close may follow open on a consume stream'),
      );
  });
  call.on('end', () => finish());
  call.on('cancelled', () => {
    isEnded = true;
    abort.abort(new StreamingError('ON_SHUTDOWN', 'cancelled by the client'));
  });
  call.write({
    response: {
      $case: 'opened',
      opened: { serverId: BigInt(serverId), startId: toWire(reader.nextPosition) },
    },
  });
  const counters = telemetry.channel(wal.name);
  telemetry.consumersConnected.add(1, counters.attrs);
  counters.consumers += 1;

  try {
    for (;;) {
      const entry: LogEntry | undefined = await reader.next();
      if (entry === undefined || isEnded) break;
      delivered = { segmentId: entry.position.segmentId, entryId: entry.position.entryId + 1 };
      const props = entry.properties ?? {};
      const tick = BigInt(props[PROP.timeTick] ?? '0');
      if (props[PROP.type] === 'tick') {
        sendTick(tick);
        continue;
      }
      if (props[PROP.vchannel] !== vchannel || !passesTick(tick, filters)) continue;
      if (filters.types !== undefined && !filters.types.has(MessageType.MESSAGE_TYPE_DATA))
        continue;
      const id = toWire(entry.position);
      counters.consumed++;
      counters.consumedBytes += entry.payload.byteLength;
      // Delivery happens in its own trace (maybe much later); a link leads to the producer.
      const span = telemetry.tracer.startSpan(SPANS.nodeDeliver.name, { kind: SpanKind.CONSUMER });
      if (span.isRecording()) {
        const producer = extractTraceContext(props);
        if (producer !== undefined) span.addLink({ context: producer });
        span.setAttributes({
          pchannel: wal.name,
          vchannel,
          'woodstream.message.id': `${entry.position.segmentId}:${entry.position.entryId}`,
        });
      }
      const ok = call.write({
        response: {
          $case: 'message',
          message: {
            id,
            payload: Buffer.from(
              entry.payload.buffer,
              entry.payload.byteOffset,
              entry.payload.byteLength,
            ),
            properties: userProperties(props),
            timeTick: tick,
            vchannel,
            lastConfirmedId: id,
            type: MessageType.MESSAGE_TYPE_DATA,
          },
        },
      });
      span.end();
      // Flow control: wait for the client to take what was sent before reading more.
      if (!ok) {
        await new Promise<void>((resolve) => {
          const done = (): void => {
            call.off('drain', done);
            abort.signal.removeEventListener('abort', done);
            resolve();
          };
          call.once('drain', done);
          abort.signal.addEventListener('abort', done, { once: true });
        });
      }
    }
  } catch (err) {
    if (!isEnded) finish(toStreamingError(err));
  } finally {
    telemetry.consumersConnected.add(-1, counters.attrs);
    counters.consumers -= 1;
    offTick();
    offClose();
    await reader.close();
  }
}
