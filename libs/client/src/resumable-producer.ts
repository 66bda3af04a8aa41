import { randomBytes } from 'node:crypto';
import { status as GrpcStatus, type ClientDuplexStream, type StatusObject } from '@grpc/grpc-js';
import { AbortFanout, assert, sleep } from '@woodstream/common';
import {
  PRODUCE_VIEW_MIN_BYTES,
  type Message,
  type ProduceMessage,
  type ProduceRequest,
  type ProduceResponse,
  type ProduceResult,
} from '@woodstream/proto';
import { fromServiceError, MESSAGE_BYTES, StreamingError } from '@woodstream/streaming';
import type { Route } from './assignment-snapshot.js';
import type { AssignmentWatcher } from './assignment-watcher.js';

import type { AppendResults } from './append-results.js';
import { Backoff } from './backoff.js';
import { abortReason, deferred, type Deferred } from './deferred.js';
import type { NodePool } from './node-pool.js';
import type { ResolvedOptions } from './options.js';
import { fromProtoId, type AppendResult, type ClientStats } from './types.js';

/** Most messages in one produce_batch frame. */
const MAX_BATCH_MESSAGES = 512;
/**
 * A batch frame is closed once its payloads reach this size. Small: the node can start on a frame
 * only once all of it has arrived, and answers it as a whole, so large frames serialise transfer,
 * group commit and acknowledgement (1 MiB frames held 64 KiB produces at about half the rate of
 * one message per frame). 64 small messages still share a frame.
 */
const MAX_BATCH_BYTES = 64 * 1024;

type ProduceCall = ClientDuplexStream<ProduceRequest, ProduceResponse>;

/** A message validated and converted for the wire. */
export interface WireMessage {
  readonly vchannel: string;
  /** Payload and properties as sent (the same object on every send). */
  readonly body: Message;
  /** What the message counts against maxInflightBytes. */
  readonly bytes: number;
}

interface PendingAppend {
  readonly message: WireMessage;
  // Order of admission: a retried append is re-sent before every later one. Also the message's
  // sequence on the wire, the same on every send: the node answers a re-send of a message it
  // stored with the stored result (see OpenProducer.producer_id).
  readonly seq: number;
  /** Where its outcome goes: slot `index` of its call's results. */
  readonly results: AppendResults;
  readonly index: number;
  readonly signal: AbortSignal | undefined;
  /** Only with a signal: no closure per append otherwise. */
  onAbort: (() => void) | undefined;
  /** The request id of its latest send. */
  requestId: number;
  state: 'queued' | 'sent' | 'settled';
  /** The caller gave up (aborted) after the append was sent; its result is dropped. */
  abandoned: boolean;
  attempts: number;
  /** A retry after RESOURCE_EXHAUSTED waits until then. */
  notBeforeMs: number;
  lastError: StreamingError | undefined;
}

interface CapacityWaiter {
  readonly bytes: number;
  readonly ready: Deferred<void>;
  readonly signal: AbortSignal | undefined;
  readonly onAbort: () => void;
}

/**
 * The payload to put in a frame. Large payloads go to the framed stream's socket as they are
 * (not copied), and the socket may still hold them when an aborted append has settled, after
 * which its caller may reuse the buffer: an append that can be aborted sends a private copy.
 */
function sendable(p: PendingAppend): Message {
  const body = p.message.body;
  return p.signal !== undefined && body.payload.byteLength >= PRODUCE_VIEW_MIN_BYTES
    ? { payload: Buffer.from(body.payload), properties: body.properties }
    : body;
}

/** One Produce call to one node at one term. */
interface Session {
  readonly call: ProduceCall;
  readonly route: Route;
  // Sent and unanswered from inflightHead on, in send order (so in request id order). The node
  // answers in send order, so a result overtaking an entry means that entry's result was lost.
  // A queue, not a Map by request id: the answer is nearly always the head.
  readonly inflight: PendingAppend[];
  inflightHead: number;
  isOpen: boolean;
  isEnded: boolean;
  isCloseRequested: boolean;
  /** Why the stream ended, when we know better than the gRPC status (closed frame, result). */
  reason: StreamingError | undefined;
  grpcError: Error | undefined;
  readonly opened: Deferred<void>;
  readonly ended: Deferred<StreamingError | undefined>;
}

const clientClosed = () => new StreamingError('ON_SHUTDOWN', 'the client is closed');

/** A random, non-zero producer id: unique among a channel's producers with overwhelming odds. */
function newProducerId(): bigint {
  for (;;) {
    const id = randomBytes(8).readBigUInt64LE();
    if (id !== 0n) return id;
  }
}

/**
 * Appends to one pchannel through whichever node owns it, surviving moves and node loss.
 *
 * It opens a Produce stream lazily on the first append and keeps it while it works. When the
 * stream breaks (server `closed`, call error, node gone) or the node denies ownership, it
 * reports wrong-node errors to the coordinator, waits for a newer assignment (or a backoff),
 * reopens on the current owner and re-sends every append that has no result yet;
 * `stats.retries` counts every re-send. Each stream is opened with this producer's id and each
 * message carries its sequence, the same on every send, so a node answers a re-sent message it
 * (or an earlier owner) stored with the stored result instead of storing it twice — within the
 * node's dedup window (see docs/design/idempotent-produce.md); past it, delivery degrades to
 * at-least-once. Non-retryable errors (INVALID_ARGUMENT, UNRECOVERABLE, INNER, ...) fail the
 * affected appends at once.
 *
 * Bounded: at most maxInflightAppends appends and maxInflightBytes bytes are admitted and not
 * yet settled; further appends wait (FIFO) for room. Each append tries at most
 * maxAppendAttempts sends.
 */
export class ResumableProducer {
  // Admitted, unsettled appends. Each is in exactly one place: the send queue ('queued') or the
  // open session's in-flight queue ('sent'; a session's end puts them back in the send queue).
  // A count, not a set of them: no hashing per message. Invariant: usedSlots === unsettled and
  // usedBytes === their bytes (plus reservations handed to waiters being admitted).
  private unsettled = 0;
  // Appends to send, ordered by seq. Invariant: every entry has state 'queued'.
  private readonly sendQueue: PendingAppend[] = [];
  private readonly waiters: CapacityWaiter[] = [];
  // One abort listener per caller signal, shared by the waiters and appends using it.
  private readonly aborts = new AbortFanout();
  private usedSlots = 0;
  private usedBytes = 0;
  // From 1: sequence 0 means "none" on the wire.
  private nextSeq = 1;
  private readonly producerId = newProducerId();
  // Unique per producer, so also unique per stream as the protocol requires.
  private nextRequestId = 1;
  private session: Session | undefined;
  private loop: Promise<void> | undefined;
  private opens = 0;
  private flushTimer: NodeJS.Timeout | undefined;
  private isClosing = false;
  private readonly lifetime = new AbortController();

  constructor(
    readonly pchannel: string,
    private readonly watcher: AssignmentWatcher,
    private readonly pool: NodePool,
    private readonly options: ResolvedOptions,
    private readonly stats: ClientStats,
  ) {}

  /**
   * Admits the messages in order (waiting for room when the producer is full); message i's
   * outcome goes to slot `indexes[i]` of `results` (slot i without `indexes`). Sends them back
   * to back once a stream is open. Rejects, without admitting the rest, with `signal.reason`
   * when aborted while waiting for room.
   */
  async append(
    messages: readonly WireMessage[],
    results: AppendResults,
    indexes: readonly number[] | undefined,
    signal?: AbortSignal,
  ): Promise<void> {
    for (let i = 0; i < messages.length; i++) {
      const message = messages[i] as WireMessage;
      if (this.isClosing) throw clientClosed();
      signal?.throwIfAborted();
      // No node takes more (its own limit may be lower and answers that message alone).
      if (message.body.payload.byteLength > MESSAGE_BYTES.max) {
        throw new StreamingError(
          'INVALID_ARGUMENT',
          `a message of ${message.body.payload.byteLength} bytes exceeds the largest a node accepts (${MESSAGE_BYTES.max})`,
        );
      }
      if (message.bytes > this.options.maxInflightBytes) {
        throw new StreamingError(
          'INVALID_ARGUMENT',
          `a message of ${message.bytes} bytes exceeds maxInflightBytes ${this.options.maxInflightBytes}`,
        );
      }
      if (!this.tryReserve(message.bytes)) {
        // Whatever this batch admitted so far must go out, or it would wait on itself.
        this.kick();
        await this.reserve(message.bytes, signal);
      }
      this.enqueue(message, results, indexes === undefined ? i : (indexes[i] as number), signal);
    }
    this.kick();
  }

  /**
   * Stops admitting appends, sends what is queued, asks the node to finish in-flight appends
   * (the Produce close handshake, at most closeTimeoutMs), then cancels the stream. Appends
   * without a result by then fail with ON_SHUTDOWN. Idempotent.
   */
  async close(): Promise<void> {
    if (this.isClosing) return this.loop;
    this.isClosing = true;
    for (const waiter of this.waiters.splice(0)) {
      if (waiter.signal !== undefined) this.aborts.remove(waiter.signal, waiter.onAbort);
      waiter.ready.reject(clientClosed());
    }
    const session = this.session;
    if (session?.isOpen === true && !session.isEnded) {
      this.flush();
      this.requestClose(session);
      const timer = setTimeout(() => session.call.cancel(), this.options.closeTimeoutMs);
      await session.ended.promise;
      clearTimeout(timer);
    }
    this.lifetime.abort(clientClosed());
    this.session?.call.cancel();
    await this.loop;
    // The loop has ended, and with it every session: what is unsettled waits in the send queue.
    for (const p of this.sendQueue.splice(0)) this.settle(p, clientClosed());
    assert(this.unsettled === 0, 'a closed producer leaves no append unsettled');
    clearTimeout(this.flushTimer);
  }

  private hasRoom(bytes: number): boolean {
    return (
      this.usedSlots < this.options.maxInflightAppends &&
      this.usedBytes + bytes <= this.options.maxInflightBytes
    );
  }

  private tryReserve(bytes: number): boolean {
    // FIFO: a newcomer never overtakes a waiter, or large messages could starve.
    if (this.waiters.length > 0 || !this.hasRoom(bytes)) return false;
    this.usedSlots++;
    this.usedBytes += bytes;
    return true;
  }

  private reserve(bytes: number, signal: AbortSignal | undefined): Promise<void> {
    const ready = deferred<void>();
    const waiter: CapacityWaiter = {
      bytes,
      ready,
      signal,
      onAbort: () => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        ready.reject(abortReason(signal as AbortSignal));
        this.wakeWaiters(); // the head may have been the one blocking smaller ones
      },
    };
    if (signal !== undefined) this.aborts.add(signal, waiter.onAbort);
    this.waiters.push(waiter);
    return ready.promise;
  }

  private wakeWaiters(): void {
    for (;;) {
      const head = this.waiters[0];
      if (head === undefined || !this.hasRoom(head.bytes)) return;
      this.waiters.shift();
      if (head.signal !== undefined) this.aborts.remove(head.signal, head.onAbort);
      // Reserve now, not when the waiter resumes: otherwise several waiters would see the same room.
      this.usedSlots++;
      this.usedBytes += head.bytes;
      head.ready.resolve();
    }
  }

  private enqueue(
    message: WireMessage,
    results: AppendResults,
    index: number,
    signal: AbortSignal | undefined,
  ): void {
    const p: PendingAppend = {
      message,
      seq: this.nextSeq++,
      results,
      index,
      signal,
      onAbort: undefined,
      requestId: 0,
      state: 'queued',
      abandoned: false,
      attempts: 0,
      notBeforeMs: 0,
      lastError: undefined,
    };
    this.unsettled++;
    this.sendQueue.push(p);
    if (signal !== undefined) {
      const onAbort = (): void => {
        if (p.state === 'queued') {
          this.sendQueue.splice(this.sendQueue.indexOf(p), 1);
          this.settle(p, abortReason(signal));
        } else if (p.state === 'sent') {
          // On the wire already: the outcome will be known only when its result comes back or
          // the stream ends; keep the slot until then, but let the caller go now.
          p.abandoned = true;
          p.results.reject(p.index, abortReason(signal));
        }
      };
      p.onAbort = onAbort;
      if (signal.aborted) onAbort();
      else this.aborts.add(signal, onAbort);
    }
  }

  /** Settles an append exactly once and frees its room. */
  private settle(p: PendingAppend, outcome: AppendResult | Error): void {
    if (p.state === 'settled') return;
    p.state = 'settled';
    this.unsettled--;
    this.usedSlots--;
    this.usedBytes -= p.message.bytes;
    assert(this.usedSlots >= 0 && this.usedBytes >= 0, 'producer capacity never goes negative');
    if (p.signal !== undefined && p.onAbort !== undefined) this.aborts.remove(p.signal, p.onAbort);
    if (!p.abandoned) {
      if (outcome instanceof Error) p.results.reject(p.index, outcome);
      else p.results.resolve(p.index, outcome);
    }
    this.wakeWaiters();
  }

  /**
   * Puts a sent append back in the send queue (keeping seq order) or fails it when it ran out
   * of attempts. `isUnknown`: the stream ended before its result came.
   */
  private requeue(p: PendingAppend, error: StreamingError, isUnknown: boolean): void {
    if (p.state !== 'sent') return;
    if (isUnknown) this.stats.unknownOutcomes++;
    p.lastError = error;
    if (p.abandoned) {
      this.settle(p, error);
      return;
    }
    if (p.attempts >= this.options.maxAppendAttempts) {
      this.settle(
        p,
        new StreamingError(
          error.code,
          `append gave up after ${p.attempts} attempts: ${error.message}`,
          { cause: error },
        ),
      );
      return;
    }
    p.state = 'queued';
    let i = this.sendQueue.length;
    while (i > 0 && (this.sendQueue[i - 1] as PendingAppend).seq > p.seq) i--;
    this.sendQueue.splice(i, 0, p);
  }

  /** Sends work now if a stream is open, else makes sure the loop that opens one runs. */
  private kick(): void {
    if (this.session?.isOpen === true) this.scheduleFlush();
    else if (this.loop === undefined && !this.isClosing && this.unsettled > 0) {
      this.loop = this.run().finally(() => {
        this.loop = undefined;
        // Appends admitted while the loop was winding down.
        if (!this.isClosing && this.unsettled > 0) this.kick();
      });
    }
  }

  /**
   * Writes queued appends, in seq order, to the open stream: one `produce_batch` frame for
   * everything ready (bounded by MAX_BATCH_MESSAGES / MAX_BATCH_BYTES), which the node answers
   * in order, in `results` frames that may cover several produce frames — far fewer frames
   * than one per message.
   */
  private flush(): void {
    const s = this.session;
    if (s === undefined || !s.isOpen || s.isEnded || s.isCloseRequested) return;
    const now = Date.now();
    for (;;) {
      const batch: ProduceMessage[] = [];
      let bytes = 0;
      let delayedUntil: number | undefined;
      while (batch.length < MAX_BATCH_MESSAGES && bytes < MAX_BATCH_BYTES) {
        const p = this.sendQueue[0];
        if (p === undefined) break;
        // A large message goes in a frame of its own, so frames stay under the gRPC limit.
        if (batch.length > 0 && bytes + p.message.body.payload.byteLength > MAX_BATCH_BYTES) break;
        if (p.notBeforeMs > now) {
          // Order is kept: later appends wait behind a delayed retry.
          delayedUntil = p.notBeforeMs;
          break;
        }
        this.sendQueue.shift();
        const requestId = this.nextRequestId++;
        p.state = 'sent';
        p.attempts++;
        if (p.attempts > 1) this.stats.retries++;
        p.requestId = requestId;
        s.inflight.push(p);
        bytes += p.message.body.payload.byteLength;
        batch.push({
          requestId,
          vchannel: p.message.vchannel,
          message: sendable(p),
          sequence: p.seq,
        });
      }
      // write() may return false; the bound on in-flight appends bounds this buffer instead.
      if (batch.length === 1)
        s.call.write({ request: { $case: 'produce', produce: batch[0] as ProduceMessage } });
      else if (batch.length > 1)
        s.call.write({ request: { $case: 'produceBatch', produceBatch: { messages: batch } } });
      if (delayedUntil !== undefined) {
        if (this.flushTimer === undefined) {
          this.flushTimer = setTimeout(() => {
            this.flushTimer = undefined;
            this.flush();
          }, delayedUntil - now);
        }
        return;
      }
      if (this.sendQueue.length === 0) return;
    }
  }

  /** Flushes once the current synchronous burst of appends has been queued (one frame for all). */
  private scheduleFlush(): void {
    if (this.isFlushScheduled) return;
    this.isFlushScheduled = true;
    queueMicrotask(() => {
      this.isFlushScheduled = false;
      this.flush();
    });
  }

  private isFlushScheduled = false;

  private requestClose(s: Session): void {
    if (s.isCloseRequested || s.isEnded) return;
    s.isCloseRequested = true;
    s.call.write({ request: { $case: 'close', close: {} } });
  }

  /** Opens streams one after another while appends are pending; never rejects. */
  private async run(): Promise<void> {
    const backoff = new Backoff(this.options.minBackoffMs, this.options.maxBackoffMs);
    const signal = this.lifetime.signal;
    try {
      while (!this.isClosing && this.unsettled > 0) {
        const route = this.watcher.route(this.pchannel, 'write');
        if (route === undefined) {
          // Not assigned (or read-only) right now: wait for the coordinator to publish an owner.
          await this.watcher.waitForNewer(
            this.watcher.current?.version,
            backoff.nextDelayMs(),
            signal,
          );
          continue;
        }
        if (this.opens++ > 0) this.stats.reopens++;
        const s = this.openSession(route);
        this.session = s;
        let reason: StreamingError | undefined;
        try {
          await s.opened.promise;
          backoff.reset();
          this.flush();
          reason = await s.ended.promise;
        } catch (err) {
          reason = err as StreamingError; // the open failed; `ended` has resolved too
        }
        if (this.session === s) this.session = undefined;
        if (this.isClosing) break;
        if (reason === undefined) continue;
        if (reason.isWrongNode) {
          this.watcher.reportError(this.pchannel, route.term, reason);
          await this.watcher.waitForNewer(route.version, backoff.nextDelayMs(), signal);
        } else if (reason.retryable) {
          await sleep(backoff.nextDelayMs(), signal);
        } else {
          // The channel cannot take appends (for example UNRECOVERABLE): fail them all now.
          for (const p of this.sendQueue.splice(0)) this.settle(p, reason);
        }
      }
    } catch {
      // Only the lifetime signal rejects above: the producer is closing.
    }
  }

  private openSession(route: Route): Session {
    const call = this.pool.get(route.address).produce();
    const s: Session = {
      call,
      route,
      inflight: [],
      inflightHead: 0,
      isOpen: false,
      isEnded: false,
      isCloseRequested: false,
      reason: undefined,
      grpcError: undefined,
      opened: deferred<void>(),
      ended: deferred<StreamingError | undefined>(),
    };
    const openTimer = setTimeout(() => {
      s.reason ??= new StreamingError(
        'ON_SHUTDOWN',
        `${route.address} did not open the producer of ${route.pchannel} within ${this.options.openTimeoutMs} ms`,
      );
      call.cancel();
    }, this.options.openTimeoutMs);
    call.on('data', (res: ProduceResponse) => {
      const r = res.response;
      if (r === undefined) return;
      switch (r.$case) {
        case 'opened':
          clearTimeout(openTimer);
          s.isOpen = true;
          s.opened.resolve();
          return;
        case 'result':
          this.onResult(s, r.result);
          this.flush();
          return;
        case 'results':
          for (const result of r.results.results) this.onResult(s, result);
          this.flush();
          return;
        case 'closed':
          // The node closes on our request (no error) or because the channel left it.
          if (r.closed.error !== undefined) s.reason ??= StreamingError.fromProto(r.closed.error);
          else if (!s.isCloseRequested) {
            s.reason ??= new StreamingError('ON_SHUTDOWN', 'the node closed the producer');
          }
          return;
      }
    });
    call.on('error', (err: Error) => {
      s.grpcError = err;
    });
    call.on('status', (status: StatusObject) => {
      clearTimeout(openTimer);
      this.onSessionEnd(s, status);
    });
    call.write({
      request: {
        $case: 'open',
        open: {
          pchannel: { name: route.pchannel, term: route.term, accessMode: route.accessMode },
          producerId: this.producerId,
        },
      },
    });
    return s;
  }

  private onResult(s: Session, result: ProduceResult): void {
    const q = s.inflight;
    let at = s.inflightHead;
    while (at < q.length && (q[at] as PendingAppend).requestId !== result.requestId) at++;
    const p = q[at];
    if (p === undefined) return; // not ours on this stream (already requeued): ignore
    // Results come in send order: every earlier entry still waiting lost its result.
    for (let i = s.inflightHead; i < at; i++) {
      const earlier = q[i] as PendingAppend;
      this.requeue(
        earlier,
        new StreamingError('INNER', `the node skipped the result of request ${earlier.requestId}`),
        true,
      );
    }
    s.inflightHead = at + 1;
    if (s.inflightHead === q.length) {
      q.length = 0;
      s.inflightHead = 0;
    } else if (s.inflightHead >= 1024 && s.inflightHead * 2 >= q.length) {
      q.splice(0, s.inflightHead);
      s.inflightHead = 0;
    }
    const outcome = result.outcome;
    if (outcome?.$case === 'success') {
      let value: AppendResult;
      try {
        const success = outcome.success;
        const messageId = fromProtoId(success.id, 'message id');
        value = {
          messageId,
          timeTick: success.timeTick,
          // Nearly always the message's own id, decoded as the same object: convert it once.
          lastConfirmedId:
            success.lastConfirmedId === success.id
              ? messageId
              : fromProtoId(success.lastConfirmedId, 'last confirmed id'),
        };
      } catch (err) {
        this.settle(p, err as Error);
        return;
      }
      this.stats.appended++;
      this.settle(p, value);
    } else {
      const error =
        outcome === undefined
          ? new StreamingError('INNER', 'the node sent a result without an outcome')
          : StreamingError.fromProto(outcome.error);
      if (!error.retryable) {
        this.settle(p, error);
      } else if (error.isWrongNode) {
        // The node no longer owns the channel: let it finish what is in flight, then re-route.
        this.requeue(p, error, false);
        s.reason ??= error;
        this.requestClose(s);
      } else {
        // For example RESOURCE_EXHAUSTED: the same node, later.
        this.requeue(p, error, false);
        const delayMs = this.options.minBackoffMs * 2 ** Math.min(p.attempts, 16);
        p.notBeforeMs = Date.now() + Math.min(this.options.maxBackoffMs, delayMs);
      }
    }
  }

  private onSessionEnd(s: Session, status: StatusObject): void {
    s.isEnded = true;
    let reason = s.reason;
    if (reason === undefined && status.code !== GrpcStatus.OK) {
      reason = fromServiceError(s.grpcError ?? status);
    }
    if (reason === undefined && !s.isCloseRequested) {
      reason = new StreamingError('ON_SHUTDOWN', 'the producer stream ended');
    }
    const why = reason ?? new StreamingError('ON_SHUTDOWN', 'the producer stream was closed');
    // No result: the append may or may not be in the log. Send it again, with its sequence: a
    // node that has it answers with the stored result.
    for (let i = s.inflightHead; i < s.inflight.length; i++)
      this.requeue(s.inflight[i] as PendingAppend, why, true);
    s.inflight.length = 0;
    s.inflightHead = 0;
    s.opened.reject(why);
    s.ended.resolve(reason);
  }
}
