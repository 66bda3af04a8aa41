import { status as GrpcStatus, type ClientDuplexStream, type StatusObject } from '@grpc/grpc-js';
import { sleep } from '@woodstream/common';
import {
  MessageType,
  type ConsumeRequest,
  type ConsumeResponse,
  type DeliverFilter,
  type DeliverPolicy,
  type ImmutableMessage,
  type MessageID as MessageIdProto,
} from '@woodstream/proto';
import { fromServiceError, StreamingError } from '@woodstream/streaming';
import type { Route } from './assignment-snapshot.js';
import type { AssignmentWatcher } from './assignment-watcher.js';
import { Backoff } from './backoff.js';
import { abortReason, deferred, type Deferred } from './deferred.js';
import type { NodePool } from './node-pool.js';
import type { ResolvedOptions } from './options.js';
import {
  fromProtoId,
  toProtoId,
  type ClientStats,
  type ReadEvent,
  type ReadFilter,
  type ReadFrom,
} from './types.js';

type ConsumeCall = ClientDuplexStream<ConsumeRequest, ConsumeResponse>;

/** A stream re-reads the assignment at least this often, besides on every change. */
const MOVE_CHECK_INTERVAL_MS = 60_000;

/**
 * A live read of one vchannel. Iterate it once with `for await`; leaving the loop (`break`,
 * `return`, an exception), `close()`, `await using` and aborting the read's `signal` all end it
 * the same way: the node stream is closed (handshake, then cancel), the buffer is dropped and
 * `closed` resolves.
 *
 * The iterator ends (`done`) after `close()`/`break`/dispose, rejects with `signal.reason` after
 * an abort, and — after yielding what was already buffered — throws the error that ended the
 * read (a non-retryable StreamingError such as INVALID_ARGUMENT or UNRECOVERABLE). Moves, node
 * loss and retryable errors never end a read: it resumes on the current owner.
 */
export interface Subscription extends AsyncIterable<ReadEvent>, AsyncDisposable {
  /**
   * Resolves once the read has ended and its stream is gone: to the error that ended it, or
   * undefined when the caller ended it (close, break, dispose, abort, client close). Never rejects.
   */
  readonly closed: Promise<Error | undefined>;
  /** Events received and not yet pulled; never above maxBufferedMessages. */
  readonly bufferedCount: number;
  /** Ends the read; resolves when `closed` does. Idempotent. */
  close(): Promise<void>;
}

/** The immutable inputs of a read, validated by the client. */
export interface ConsumerSpec {
  readonly vchannel: string;
  readonly pchannel: string;
  readonly from: ReadFrom;
  readonly filters: readonly ReadFilter[];
  readonly maxBufferedMessages: number;
  readonly signal: AbortSignal | undefined;
}

interface Session {
  readonly call: ConsumeCall;
  isOpen: boolean;
  isEnded: boolean;
  isPaused: boolean;
  isCloseRequested: boolean;
  reason: StreamingError | undefined;
  grpcError: Error | undefined;
  readonly opened: Deferred<void>;
  readonly ended: Deferred<StreamingError | undefined>;
}

/** Converts the caller's start position to the wire policy; throws INVALID_ARGUMENT. */
export function toDeliverPolicy(from: ReadFrom): DeliverPolicy {
  if (from === 'earliest') return { policy: { $case: 'all', all: {} } };
  if (from === 'latest') return { policy: { $case: 'latest', latest: {} } };
  if (typeof from === 'object' && 'after' in from) {
    return { policy: { $case: 'startAfter', startAfter: toProtoId(from.after, 'from.after') } };
  }
  if (typeof from === 'object' && 'from' in from) {
    return { policy: { $case: 'startFrom', startFrom: toProtoId(from.from, 'from.from') } };
  }
  throw new StreamingError('INVALID_ARGUMENT', `unknown read start ${JSON.stringify(from)}`);
}

/** Converts the caller's filters to wire filters; throws INVALID_ARGUMENT. */
export function toDeliverFilters(filters: readonly ReadFilter[]): DeliverFilter[] {
  return filters.map((f): DeliverFilter => {
    if ('timeTickGt' in f) return { filter: { $case: 'timeTickGt', timeTickGt: f.timeTickGt } };
    if ('timeTickGte' in f) return { filter: { $case: 'timeTickGte', timeTickGte: f.timeTickGte } };
    if ('messageTypes' in f) {
      const types = f.messageTypes.map((t) =>
        t === 'data' ? MessageType.MESSAGE_TYPE_DATA : MessageType.MESSAGE_TYPE_TIME_TICK,
      );
      return { filter: { $case: 'messageTypes', messageTypes: { types } } };
    }
    throw new StreamingError('INVALID_ARGUMENT', `unknown read filter ${JSON.stringify(f)}`);
  });
}

/**
 * The resume point of a read: after a break it reopens with `startFrom(lastConfirmedId)` plus
 * `timeTickGt(lastMessageTick)`. The last confirmed id of the last delivered message is a
 * position from which every message with a larger time tick is visible, and the filter drops
 * what was already delivered: the resumed stream has no gap and no duplicate.
 *
 * The filter is the last delivered message's tick, never a time-tick event's. Ticks are only
 * ordered within the log: a new owner continues from the highest tick stored there, while idle
 * ticks are not stored, so an old owner whose clock ran ahead may have announced ticks above
 * the next stored message. Filtering by such a tick would drop that message.
 * Before the first message it keeps the original start: nothing of the vchannel was delivered.
 */
export function resumeRequest(
  from: ReadFrom,
  filters: readonly ReadFilter[],
  lastConfirmedId: MessageIdProto | undefined,
  lastMessageTick: bigint | undefined,
): { deliverPolicy: DeliverPolicy; deliverFilters: DeliverFilter[] } {
  const deliverPolicy: DeliverPolicy =
    lastConfirmedId === undefined
      ? toDeliverPolicy(from)
      : { policy: { $case: 'startFrom', startFrom: lastConfirmedId } };
  const deliverFilters = toDeliverFilters(filters);
  // Filters are ANDed on the node, so the caller's own time-tick filters can stay.
  if (lastMessageTick !== undefined) {
    deliverFilters.push({ filter: { $case: 'timeTickGt', timeTickGt: lastMessageTick } });
  }
  return { deliverPolicy, deliverFilters };
}

/**
 * A resumable consumer of one vchannel (see {@link Subscription}).
 *
 * Flow control is pull-driven: received events go into a buffer of at most maxBufferedMessages;
 * when it is full the gRPC call is paused, so HTTP/2 flow control stops the node from sending,
 * and it resumes as the caller pulls. Re-opening waits for room, so a slow caller never has a
 * half-open stream time out. Retryable errors (moves, node loss) are retried forever with
 * backoff: a read lives as long as its caller wants; the caller bounds it with close/signal.
 */
export class ResumableConsumer implements Subscription {
  readonly closed: Promise<Error | undefined>;
  // Events received and not yet pulled, from index `head`. Invariant: length - head <= max.
  private buffer: ReadEvent[] = [];
  private head = 0;
  private lastConfirmedId: MessageIdProto | undefined;
  // The largest time tick delivered, by message or time-tick event: older ticks are not
  // repeated to the caller. Not a resume bound (see resumeRequest).
  private watermark: bigint | undefined;
  // The time tick of the last delivered message: the resume filter.
  private lastMessageTick: bigint | undefined;
  private session: Session | undefined;
  private wake: Deferred<void> | undefined;
  private roomWaiter: Deferred<void> | undefined;
  private isDone = false;
  private isIterated = false;
  private endError: Error | undefined;
  private abortError: Error | undefined;
  private opens = 0;
  private readonly lifetime = new AbortController();
  private readonly onSignalAbort: () => void;

  constructor(
    private readonly spec: ConsumerSpec,
    private readonly watcher: AssignmentWatcher,
    private readonly pool: NodePool,
    private readonly options: ResolvedOptions,
    private readonly stats: ClientStats,
  ) {
    this.onSignalAbort = () => {
      this.abortError = abortReason(spec.signal as AbortSignal);
      this.finish(undefined);
    };
    const loop = spec.signal?.aborted === true ? Promise.resolve() : this.run();
    this.closed = loop.then(() => {
      spec.signal?.removeEventListener('abort', this.onSignalAbort);
      return this.endError;
    });
    if (spec.signal?.aborted === true) this.onSignalAbort();
    else spec.signal?.addEventListener('abort', this.onSignalAbort, { once: true });
  }

  get bufferedCount(): number {
    return this.buffer.length - this.head;
  }

  async close(): Promise<void> {
    this.finish(undefined);
    await this.closed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  [Symbol.asyncIterator](): AsyncIterator<ReadEvent> {
    if (this.isIterated) throw new Error('a subscription can be iterated only once');
    this.isIterated = true;
    return {
      next: () => this.next(),
      return: async (): Promise<IteratorResult<ReadEvent>> => {
        await this.close();
        return { done: true, value: undefined };
      },
    };
  }

  private async next(): Promise<IteratorResult<ReadEvent>> {
    for (;;) {
      if (this.abortError !== undefined) throw this.abortError;
      if (this.head < this.buffer.length) {
        const event = this.buffer[this.head] as ReadEvent;
        this.buffer[this.head] = undefined as unknown as ReadEvent; // let it be collected
        this.head++;
        if (this.head > 1024 && this.head * 2 > this.buffer.length) {
          this.buffer = this.buffer.slice(this.head);
          this.head = 0;
        }
        this.updateFlow();
        return { done: false, value: event };
      }
      if (this.isDone) {
        if (this.endError !== undefined) throw this.endError;
        return { done: true, value: undefined };
      }
      this.wake ??= deferred<void>();
      await this.wake.promise;
    }
  }

  private wakeReader(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.resolve();
  }

  /** Pauses the stream when the buffer is full, resumes it when there is room again. */
  private updateFlow(): void {
    const hasRoom = this.bufferedCount < this.spec.maxBufferedMessages;
    if (hasRoom && this.roomWaiter !== undefined) {
      this.roomWaiter.resolve();
      this.roomWaiter = undefined;
    }
    const s = this.session;
    if (s === undefined || s.isEnded) return;
    if (!hasRoom && !s.isPaused) {
      s.isPaused = true;
      s.call.pause();
    } else if (hasRoom && s.isPaused) {
      s.isPaused = false;
      s.call.resume();
    }
  }

  private waitForRoom(): Promise<void> {
    if (this.bufferedCount < this.spec.maxBufferedMessages) return Promise.resolve();
    this.roomWaiter ??= deferred<void>();
    return this.roomWaiter.promise;
  }

  /**
   * Ends the read once: `error` is what `closed` resolves to. Drops the buffer when the caller
   * ended it; keeps it (to be drained before the error is thrown) when an error did.
   */
  private finish(error: Error | undefined): void {
    if (this.isDone) return;
    this.isDone = true;
    this.endError = error;
    if (error === undefined) {
      this.buffer = [];
      this.head = 0;
    }
    this.roomWaiter?.resolve();
    this.roomWaiter = undefined;
    this.lifetime.abort(new StreamingError('ON_SHUTDOWN', 'the read was closed'));
    const s = this.session;
    if (s !== undefined && !s.isEnded) {
      if (s.isOpen) {
        // Close handshake: the node answers `closed {}` and ends. A paused call would never
        // read that answer, so let it flow; its data is dropped now that the read is done.
        s.isCloseRequested = true;
        s.isPaused = false;
        s.call.resume();
        s.call.write({ request: { $case: 'close', close: {} } });
        const timer = setTimeout(() => s.call.cancel(), this.options.closeTimeoutMs);
        void s.ended.promise.then(() => clearTimeout(timer));
      } else {
        s.call.cancel();
      }
    }
    this.wakeReader();
  }

  /** Opens streams one after another until the read ends; never rejects. */
  private async run(): Promise<void> {
    const backoff = new Backoff(this.options.minBackoffMs, this.options.maxBackoffMs);
    const signal = this.lifetime.signal;
    try {
      while (!this.isDone) {
        const route = this.watcher.route(this.spec.pchannel, 'read');
        if (route === undefined) {
          await this.watcher.waitForNewer(
            this.watcher.current?.version,
            backoff.nextDelayMs(),
            signal,
          );
          continue;
        }
        await this.waitForRoom();
        if (this.isDone) break;
        if (this.opens++ > 0) this.stats.reopens++;
        let reason: StreamingError | undefined;
        let s: Session | undefined;
        let stopWatching: (() => void) | undefined;
        try {
          s = this.openSession(route);
          this.session = s;
          stopWatching = this.endWhenMoved(route, s);
          await s.opened.promise;
          backoff.reset();
          reason = await s.ended.promise;
        } catch (err) {
          if (s !== undefined) await s.ended.promise;
          reason = err instanceof StreamingError ? err : new StreamingError('INNER', String(err));
        } finally {
          stopWatching?.();
        }
        this.session = undefined;
        if (this.isDone) break;
        reason ??= new StreamingError('ON_SHUTDOWN', 'the consumer stream ended');
        if (reason.isWrongNode) {
          this.watcher.reportError(this.spec.pchannel, route.term, reason);
          await this.watcher.waitForNewer(route.version, backoff.nextDelayMs(), signal);
        } else if (reason.retryable) {
          await sleep(backoff.nextDelayMs(), signal);
        } else {
          this.finish(reason);
        }
      }
    } catch {
      // Only the lifetime signal rejects above: the read is done.
    }
  }

  /**
   * Ends session `s` when the assignment names a newer term of the pchannel than `route`'s: the
   * stream's node may not know it lost the channel (it lost its session, say, and nobody could
   * tell it), and an idle old owner would keep sending time ticks with no messages. The next
   * stream resumes after the last delivered message on the new owner. Returns the stop.
   */
  private endWhenMoved(route: Route, s: Session): () => void {
    const stop = new AbortController();
    const signal = AbortSignal.any([stop.signal, this.lifetime.signal]);
    void (async () => {
      let version = route.version;
      while (!signal.aborted && !s.isEnded && !this.watcher.isClosed) {
        await this.watcher.waitForNewer(version, MOVE_CHECK_INTERVAL_MS, signal);
        const snapshot = this.watcher.current;
        if (snapshot === undefined) continue;
        version = snapshot.version;
        const next = this.watcher.route(this.spec.pchannel, 'read');
        if (next === undefined || next.term <= route.term || s.isEnded) continue;
        s.reason ??= new StreamingError(
          'ON_SHUTDOWN',
          `${route.pchannel} moved from term ${route.term} to ${next.term}`,
        );
        s.call.cancel();
        return;
      }
    })().catch(() => undefined); // only the signal rejects: the session ended or the read did
    return () => stop.abort();
  }

  private openSession(route: Route): Session {
    const { deliverPolicy, deliverFilters } = resumeRequest(
      this.spec.from,
      this.spec.filters,
      this.lastConfirmedId,
      this.lastMessageTick,
    );
    const call = this.pool.get(route.address).consume();
    const s: Session = {
      call,
      isOpen: false,
      isEnded: false,
      isPaused: false,
      isCloseRequested: false,
      reason: undefined,
      grpcError: undefined,
      opened: deferred<void>(),
      ended: deferred<StreamingError | undefined>(),
    };
    const openTimer = setTimeout(() => {
      s.reason ??= new StreamingError(
        'ON_SHUTDOWN',
        `${route.address} did not open the consumer of ${route.pchannel} within ${this.options.openTimeoutMs} ms`,
      );
      call.cancel();
    }, this.options.openTimeoutMs);
    call.on('data', (res: ConsumeResponse) => {
      // After the read ended, or once this stream failed, its events are stale: the next stream
      // resumes after the last delivered message.
      if (this.isDone || s.isEnded || s.reason !== undefined) return;
      const r = res.response;
      if (r === undefined) return;
      switch (r.$case) {
        case 'opened':
          clearTimeout(openTimer);
          s.isOpen = true;
          // A read from `latest` pins its start once the node resolved it, so a reopen before
          // the first message resumes there instead of at a later `latest` (no gap).
          if (
            this.lastConfirmedId === undefined &&
            this.spec.from === 'latest' &&
            r.opened.startId !== undefined
          ) {
            this.lastConfirmedId = r.opened.startId;
          }
          s.opened.resolve();
          return;
        case 'message':
          this.onMessage(s, r.message);
          return;
        case 'timeTick':
          this.onTimeTick(r.timeTick.timeTick);
          return;
        case 'closed':
          if (r.closed.error !== undefined) s.reason = StreamingError.fromProto(r.closed.error);
          else if (!s.isCloseRequested) {
            s.reason = new StreamingError('ON_SHUTDOWN', 'the node closed the consumer');
          }
          return;
      }
    });
    call.on('error', (err: Error) => {
      s.grpcError = err;
    });
    call.on('status', (status: StatusObject) => {
      clearTimeout(openTimer);
      s.isEnded = true;
      let reason = s.reason;
      if (reason === undefined && status.code !== GrpcStatus.OK && !s.isCloseRequested) {
        reason = fromServiceError(s.grpcError ?? status);
      }
      if (reason === undefined && !s.isCloseRequested) {
        reason = new StreamingError('ON_SHUTDOWN', 'the consumer stream ended');
      }
      s.opened.reject(reason ?? new StreamingError('ON_SHUTDOWN', 'the read was closed'));
      s.ended.resolve(reason);
    });
    call.write({
      request: {
        $case: 'open',
        open: {
          pchannel: { name: route.pchannel, term: route.term, accessMode: route.accessMode },
          vchannel: this.spec.vchannel,
          deliverPolicy,
          deliverFilters,
        },
      },
    });
    return s;
  }

  private onMessage(s: Session, message: ImmutableMessage): void {
    let event: ReadEvent;
    try {
      event = {
        type: 'message',
        messageId: fromProtoId(message.id, 'message id'),
        timeTick: message.timeTick,
        vchannel: message.vchannel,
        payload: message.payload,
        properties: message.properties,
        lastConfirmedId: fromProtoId(message.lastConfirmedId, 'last confirmed id'),
      };
    } catch (err) {
      // A message we cannot represent: the node is broken, retrying would loop on it.
      s.reason = err as StreamingError;
      this.finish(s.reason);
      return;
    }
    this.lastConfirmedId = message.lastConfirmedId;
    this.lastMessageTick = message.timeTick;
    if (this.watermark === undefined || message.timeTick > this.watermark) {
      this.watermark = message.timeTick;
    }
    this.push(event);
  }

  private onTimeTick(timeTick: bigint): void {
    if (this.watermark !== undefined && timeTick <= this.watermark) return; // nothing new
    this.watermark = timeTick;
    // A newer tick says everything an older, still unread one says: replace it in place so
    // idle channels do not fill the buffer with ticks.
    const last = this.buffer[this.buffer.length - 1];
    if (this.bufferedCount > 0 && last?.type === 'timeTick') {
      this.buffer[this.buffer.length - 1] = { type: 'timeTick', timeTick };
      return;
    }
    this.push({ type: 'timeTick', timeTick });
  }

  private push(event: ReadEvent): void {
    this.buffer.push(event);
    this.updateFlow();
    this.wakeReader();
  }
}
