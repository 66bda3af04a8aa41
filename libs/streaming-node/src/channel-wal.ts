import { abortable, assert } from '@woodstream/common';
import { isTraceProperty } from '@woodstream/observability';
import {
  PROP,
  StreamingError,
  TimeTickAllocator,
  toStreamingError,
  RESERVED_PREFIX,
} from '@woodstream/streaming';
import {
  comparePositions,
  LogExistsError,
  TruncatedError,
  type LogHandle,
  type LogReader,
  type LogPosition,
  type LogWriter,
  type MetadataStore,
  type Woodpecker,
} from '@woodstream/woodpecker';
import {
  consecutiveRun,
  parseProducerStamp,
  producerStamp,
  ProducerDedup,
  WHOLE_RESULT,
} from './producer-dedup.js';
import { VChannelRegistry } from './vchannel-registry.js';

/** Result of one produce. */
export interface AppendResult {
  id: LogPosition;
  timeTick: bigint;
  /** Reading from here sees every message with a larger time tick (entries are stored in tick order). */
  lastConfirmedId: LogPosition;
}

/** A tick every consumer that has read up to `position` may announce: all earlier messages have smaller ticks. */
export interface SafeTick {
  timeTick: bigint;
  /**
   * A position every message before which is acknowledged and every message from which has a
   * larger tick: after the last acknowledged message, or after the persisted tick entry.
   */
  position: LogPosition;
}

export interface ChannelWalOptions {
  /** Largest payload accepted. */
  maxMessageBytes: number;
  /** How often idle time ticks advance (and are persisted when data was written since the last). */
  timeTickIntervalMs: number;
  /** Vchannels one pchannel may carry; see {@link VChannelRegistry}. */
  maxVChannelsPerPChannel: number;
  /** The wall clock time ticks follow, in ms. @default Date.now (tests set a skewed one) */
  nowMs?: () => number;
  /**
   * Messages of identified producers remembered for deduplication (0: none); see
   * {@link ProducerDedup}. @default 8192
   */
  dedupWindowEntries?: number;
  /**
   * On open, the tail of the log read to rebuild that memory: at most dedupWindowEntries
   * entries and about this many bytes. @default 64 MiB
   */
  dedupRecoveryBytes?: number;
  /** Called for every re-send answered from the dedup memory (for metrics). */
  onDeduplicated?: (pchannel: string) => void;
}

/** Who sent a message, for deduplication: a producer key and the message's sequence (> 0). */
export interface ProducerRef {
  readonly producer: string;
  readonly sequence: number;
}

export const DEDUP_DEFAULTS = { windowEntries: 8192, recoveryBytes: 64 * 1024 * 1024 } as const;

type Listener = (tick: SafeTick) => void;

/** A message of a produce frame; `sequence` > 0 when its producer identified itself. */
export interface BatchMessage {
  vchannel: string;
  payload: Uint8Array;
  properties: Record<string, string>;
  sequence: number;
}

/** An append queued behind a vchannel registration. */
interface Waiter {
  /** True once its own registration (if any) succeeded or failed. */
  isSettled: boolean;
  /** Why its registration failed; the append then fails with it. */
  error: unknown;
  start: () => Promise<void>;
  fail: (err: unknown) => void;
}

/**
 * The open WAL of one pchannel at one term, owned by this node: the Woodpecker log writer
 * (opening it fenced the previous owner), a time-tick allocator seeded above every tick in the
 * log, and the periodic tick. Appends are stamped and handed to the writer synchronously, so
 * the log's order is the time-tick order.
 */
export class ChannelWal {
  private readonly ticks: TimeTickAllocator;
  private inflight = 0;
  private isTickInflight = false;
  private dataSinceTick = false;
  /**
   * True when the last tick handed out was only announced (idle), not stored. Such ticks are
   * above everything in the log, so a new owner, which starts above the log's highest tick,
   * could hand out smaller ones if its clock is behind: close stores one more tick first.
   */
  private announcedAboveLog = false;
  private lastAcked: LogPosition;
  private safe: SafeTick;
  private readonly listeners = new Set<Listener>();
  /**
   * Appends that arrived while a vchannel registration was in flight, in arrival order.
   * Invariant: empty, or its head waits for a registration. Bounded by the producers' in-flight
   * limits (maxInflightPerProducer per stream).
   */
  private readonly waiting: Waiter[] = [];
  private readonly closeListeners = new Set<(reason: StreamingError) => void>();
  private tickTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** The term as stamped on every entry. */
  private readonly termText: string;
  /** Retries answered from {@link ProducerDedup} instead of being appended again. */
  deduplicated = 0;
  /**
   * What the open did after fencing, for operators: its time (reading the last tick, the
   * vchannels and the log's tail, writing the first tick), the tail entries read and the
   * messages remembered from them.
   */
  recovery = { durationMs: 0, tailEntriesRead: 0, dedupEntries: 0 };

  private constructor(
    readonly name: string,
    readonly term: number,
    readonly log: LogHandle,
    private readonly writer: LogWriter,
    /** The pchannel's vchannels; a message is appended only once its vchannel is registered. */
    readonly vchannels: VChannelRegistry,
    floor: bigint,
    firstTick: { tick: bigint; position: LogPosition },
    private readonly options: ChannelWalOptions,
    /** Rebuilt from the log's tail at open, then kept up to date by every stamped append. */
    readonly dedup: ProducerDedup,
  ) {
    assert(firstTick.tick > floor, 'the first tick is above every earlier one');
    this.termText = String(term);
    // Seeded with the first tick, so it is never handed out again.
    this.ticks = new TimeTickAllocator(firstTick.tick, options.nowMs);
    this.lastAcked = {
      segmentId: firstTick.position.segmentId,
      entryId: firstTick.position.entryId + 1,
    };
    this.safe = { timeTick: firstTick.tick, position: this.lastAcked };
    this.tickTimer = setInterval(() => void this.tick(), options.timeTickIntervalMs);
    this.tickTimer.unref();
  }

  /**
   * Opens the pchannel's WAL for `term`: creates the log on first use, opens its writer (which
   * fences whoever wrote before), finds the highest time tick in the log and writes a first
   * tick above it, and loads the pchannel's registered vchannels from `metadata`. Only then
   * does it accept appends.
   */
  static async open(
    wal: Woodpecker,
    metadata: MetadataStore,
    name: string,
    term: number,
    options: ChannelWalOptions,
    signal?: AbortSignal,
  ): Promise<ChannelWal> {
    let log: LogHandle;
    try {
      log = await wal.createLog(name, { signal });
    } catch (err) {
      if (!(err instanceof LogExistsError)) throw err;
      log = await wal.openLog(name, { signal });
    }
    // The term orders owners in the log itself: a superseded owner's late open is refused there.
    const writer = await log.openWriter({ signal, ownerTerm: term });
    try {
      // After the writer fenced the previous owner (the log's content is final up to here);
      // the three reads are independent.
      const dedup = new ProducerDedup(options.dedupWindowEntries ?? DEDUP_DEFAULTS.windowEntries);
      const startedAt = performance.now();
      const [floor, vchannels, scanned] = await Promise.all([
        lastTimeTick(log, signal),
        VChannelRegistry.load(metadata, name, options, signal),
        rebuildDedup(
          log,
          dedup,
          options.dedupRecoveryBytes ?? DEDUP_DEFAULTS.recoveryBytes,
          signal,
        ),
      ]);
      const ticks = new TimeTickAllocator(floor, options.nowMs);
      const tick = ticks.next();
      // A writer cannot withdraw an entry it is writing: on storage that does not answer, this
      // append never settles. An open that a newer Assign or Remove superseded must give way
      // anyway, or the channel's transitions wait behind it for as long as storage hangs.
      const position = await abortable(
        writer.append(new Uint8Array(0), {
          properties: {
            [PROP.timeTick]: tick.toString(),
            [PROP.type]: 'tick',
            [PROP.term]: String(term),
          },
          ...(signal ? { signal } : {}),
        }),
        signal,
      );
      const wal = new ChannelWal(
        name,
        term,
        log,
        writer,
        vchannels,
        floor,
        { tick, position },
        options,
        dedup,
      );
      wal.recovery = {
        durationMs: Math.round(performance.now() - startedAt),
        tailEntriesRead: scanned,
        dedupEntries: dedup.size,
      };
      return wal;
    } catch (err) {
      // Closing waits for what the writer is writing: after an abort, possibly forever. The
      // writer is released in the background then; a newer owner's writer fences it anyway.
      const closed = writer.close().catch(() => undefined);
      if (signal?.aborted !== true) await closed;
      throw err;
    }
  }

  get currentTick(): bigint {
    return this.ticks.current;
  }

  get safeTick(): SafeTick {
    return this.safe;
  }

  /** The position after the last acknowledged message. */
  get endPosition(): LogPosition {
    return this.lastAcked;
  }

  /**
   * Stamps and appends one message of `vchannel`. Rejects with a StreamingError.
   *
   * The first message of a vchannel new to this pchannel waits for its registration
   * (INVALID_ARGUMENT past the vchannel limit, RESOURCE_EXHAUSTED if it cannot be written), and
   * so does every message that arrives after it, of any vchannel: the log keeps the arrival
   * order (a producer's stream order) also across vchannels. Registrations of several new
   * vchannels run concurrently. Without a registration in flight, a message goes straight to
   * the writer: the hot path makes no metadata call.
   */
  append(
    vchannel: string,
    payload: Uint8Array,
    properties: Record<string, string>,
    from?: ProducerRef,
  ): Promise<AppendResult> {
    // Not async: the hot path returns the writer's promise as is, without wrapping it again.
    let registration: Promise<void> | undefined;
    try {
      this.validate(payload, properties);
      if (from !== undefined) {
        // A retry of a message stored (or being stored) here: its first result, not a copy.
        const known = this.dedup.lookup(from.producer, from.sequence);
        if (known !== undefined) {
          this.deduplicated++;
          this.options.onDeduplicated?.(this.name);
          return Promise.resolve(known);
        }
      }
      registration = this.vchannels.ensure(vchannel);
    } catch (err) {
      return Promise.reject(toStreamingError(err));
    }
    // The hot path: a known vchannel and nobody waiting ahead.
    if (registration === undefined && this.waiting.length === 0)
      return this.write(vchannel, payload, properties, from);
    const queued = new Promise<AppendResult>((resolve, reject) => {
      const waiter: Waiter = {
        isSettled: registration === undefined,
        error: undefined,
        start: () => this.write(vchannel, payload, properties, from).then(resolve, reject),
        fail: reject,
      };
      this.waiting.push(waiter);
      registration?.then(
        () => this.settle(waiter, undefined),
        (err: unknown) => this.settle(waiter, err),
      );
    });
    if (from !== undefined) {
      // Recognised while it waits too; `write` keeps this slot and records the outcome in it.
      const slot = this.dedup.begin(from.producer, from.sequence, 0n, queued, WHOLE_RESULT);
      if (slot >= 0) queued.catch(() => this.dedup.forget(slot, from.producer, from.sequence));
    }
    return queued;
  }

  /**
   * Stamps and appends the messages of one produce frame as one WAL batch (one promise for
   * all), or returns undefined when the frame needs the one-by-one path of {@link append}:
   * a vchannel not registered yet, appends waiting ahead, a message that would be refused
   * (that path answers each message on its own), or a retry of a message already stored here.
   * Rejects with a StreamingError for the whole frame when the writer fails. `producer`: who
   * sent the frame, when the messages carry sequences.
   */
  appendBatch(
    messages: readonly BatchMessage[],
    producer?: string,
  ): Promise<AppendResult[]> | undefined {
    if (this.closed || this.waiting.length > 0) return undefined;
    for (const m of messages) {
      if (!this.vchannels.has(m.vchannel)) return undefined;
      // `has`, not `lookup`: a lookup of a message being written makes a promise that nobody
      // would handle if that write failed.
      if (producer !== undefined && m.sequence > 0 && this.dedup.has(producer, m.sequence))
        return undefined;
      try {
        this.validate(m.payload, m.properties);
        this.writer.checkEntry(m.payload, m.properties);
      } catch {
        return undefined;
      }
    }
    return this.writeBatch(messages, producer);
  }

  /** Throws what makes a message unacceptable here, before anything is registered or stamped. */
  private validate(payload: Uint8Array, properties: Record<string, string>): void {
    if (this.closed)
      throw new StreamingError(
        'CHANNEL_FENCED',
        `pchannel ${this.name} at term ${this.term} is closed on this node`,
      );
    if (payload.byteLength > this.options.maxMessageBytes) {
      throw new StreamingError(
        'INVALID_ARGUMENT',
        `message of ${payload.byteLength} bytes exceeds the limit of ${this.options.maxMessageBytes}`,
      );
    }
    for (const key in properties) {
      // The producer's trace context is the one reserved pair a producer may set.
      if (
        Object.hasOwn(properties, key) &&
        key.startsWith(RESERVED_PREFIX) &&
        !isTraceProperty(key, properties[key] as string)
      )
        throw new StreamingError(
          'INVALID_ARGUMENT',
          `property ${JSON.stringify(key)}: names starting with _ are reserved`,
        );
    }
  }

  /** Marks `waiter`'s registration done and starts every waiter at the head that may go. */
  private settle(waiter: Waiter, error: unknown): void {
    waiter.isSettled = true;
    waiter.error = error;
    for (let head = this.waiting[0]; head?.isSettled === true; head = this.waiting[0]) {
      this.waiting.shift();
      // Synchronously, in arrival order: each write takes its tick and enters the writer here.
      if (head.error === undefined) void head.start();
      else head.fail(head.error);
    }
  }

  /** Stamps the message and hands it to the writer; the part before the first await is synchronous. */
  private async write(
    vchannel: string,
    payload: Uint8Array,
    properties: Record<string, string>,
    from: ProducerRef | undefined,
  ): Promise<AppendResult> {
    if (this.closed)
      throw new StreamingError(
        'CHANNEL_FENCED',
        `pchannel ${this.name} at term ${this.term} is closed on this node`,
      );
    // Allocate and hand over in one synchronous step: log order == time-tick order.
    const timeTick = this.ticks.next();
    this.announcedAboveLog = false;
    const stamped: Record<string, string> = {
      ...properties,
      [PROP.timeTick]: timeTick.toString(),
      [PROP.vchannel]: vchannel,
      [PROP.term]: this.termText,
      [PROP.type]: 'data',
    };
    if (from !== undefined) stamped[PROP.producer] = producerStamp(from.producer, from.sequence);
    this.inflight += 1;
    this.dataSinceTick = true;
    let slot = -1;
    try {
      // transfer: payloads are views of received frames that nobody changes afterwards (the
      // in-process client copies its callers' payloads), so the WAL keeps them as they are.
      const appended = this.writer.append(payload, { properties: stamped, transfer: true });
      if (from !== undefined)
        slot = this.dedup.begin(from.producer, from.sequence, timeTick, appended, 0);
      const id = await appended;
      this.advance(id);
      if (from !== undefined) this.dedup.stored(slot, from.producer, from.sequence, id, timeTick);
      return { id, timeTick, lastConfirmedId: id };
    } catch (err) {
      if (from !== undefined) this.dedup.forget(slot, from.producer, from.sequence);
      throw this.onWriteError(err);
    } finally {
      this.inflight -= 1;
    }
  }

  /** The StreamingError for a failed append; closes this WAL when its writer is done for. */
  private onWriteError(err: unknown): StreamingError {
    const se = toStreamingError(err);
    // A fenced or failed writer never recovers: this WAL is done; its streams must re-route.
    if (se.code === 'CHANNEL_FENCED' || (err as { code?: string }).code === 'WAL_WRITER_FAILED') {
      void this.close(
        new StreamingError(
          'CHANNEL_FENCED',
          `pchannel ${this.name} at term ${this.term}: ${se.message}`,
        ),
      );
    }
    return se;
  }

  /** Like {@link write} for a whole frame: the part before the first await is synchronous. */
  private async writeBatch(
    messages: readonly BatchMessage[],
    producer: string | undefined,
  ): Promise<AppendResult[]> {
    const ticks = new Array<bigint>(messages.length);
    this.announcedAboveLog = false;
    // A frame of consecutive sequences is stamped once, on its first message (see producerStamp).
    const run = producer === undefined ? 0 : consecutiveRun(messages);
    const entries = messages.map((m, i) => {
      const timeTick = this.ticks.next();
      ticks[i] = timeTick;
      const properties: Record<string, string> = {
        ...m.properties,
        [PROP.timeTick]: timeTick.toString(),
        [PROP.vchannel]: m.vchannel,
        [PROP.term]: this.termText,
        [PROP.type]: 'data',
      };
      if (producer !== undefined && m.sequence > 0 && (run === 0 || i === 0))
        properties[PROP.producer] = producerStamp(producer, m.sequence, run === 0 ? 1 : run);
      return { payload: m.payload, properties };
    });
    this.inflight += messages.length;
    this.dataSinceTick = true;
    // transfer: see write.
    const appended = this.writer.appendBatch(entries, { transfer: true });
    const first =
      producer === undefined ? -1 : this.dedup.beginFrame(producer, messages, ticks, appended);
    try {
      const ids = await appended;
      this.advance(ids[ids.length - 1] as LogPosition);
      const results = ids.map((id, i) => ({
        id,
        timeTick: ticks[i] as bigint,
        lastConfirmedId: id,
      }));
      if (first >= 0) this.dedup.storedFrame(first, producer as string, messages, ids, ticks);
      return results;
    } catch (err) {
      if (first >= 0) this.dedup.forgetFrame(first, producer as string, messages);
      throw this.onWriteError(err);
    } finally {
      this.inflight -= messages.length;
    }
  }

  private advance(id: LogPosition): void {
    if (
      id.segmentId > this.lastAcked.segmentId ||
      (id.segmentId === this.lastAcked.segmentId && id.entryId + 1 > this.lastAcked.entryId)
    ) {
      this.lastAcked = { segmentId: id.segmentId, entryId: id.entryId + 1 };
    }
  }

  /** Called on every safe tick (about every timeTickIntervalMs). */
  onTick(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Advances the channel's watermark, also under steady load. If data was written since the
   * last persisted tick, the tick is appended as a log entry: the writer acknowledges in log
   * order, so once it is acknowledged every message with a smaller tick is too, however many
   * appends stay in flight after it. Otherwise the tick is only announced, and only when nothing
   * is in flight; an idle channel writes nothing. One tick entry is in flight at a time.
   */
  private async tick(): Promise<void> {
    if (this.closed || this.isTickInflight) return;
    if (this.dataSinceTick) {
      this.dataSinceTick = false;
      const timeTick = this.ticks.next();
      this.announcedAboveLog = false;
      this.inflight += 1;
      this.isTickInflight = true;
      let id: LogPosition;
      try {
        id = await this.writer.append(new Uint8Array(0), {
          properties: {
            [PROP.timeTick]: timeTick.toString(),
            [PROP.type]: 'tick',
            [PROP.term]: String(this.term),
          },
        });
        this.advance(id);
      } catch {
        // The writer failed or was fenced; appends report it. Nothing to announce.
        return;
      } finally {
        this.inflight -= 1;
        this.isTickInflight = false;
      }
      // Safe for a consumer that has read past the tick entry itself (appends that followed it
      // have larger ticks, whether or not they are acknowledged yet).
      if (!this.closed)
        this.publish({ timeTick, position: { segmentId: id.segmentId, entryId: id.entryId + 1 } });
      return;
    }
    if (this.inflight > 0) return;
    const timeTick = this.ticks.next();
    this.announcedAboveLog = true;
    this.publish({ timeTick, position: this.lastAcked });
  }

  private publish(tick: SafeTick): void {
    this.safe = tick;
    for (const listener of this.listeners) listener(tick);
  }

  /** Called once when the WAL closes here (removed, fenced, node stopping), with the reason streams report. */
  onClose(listener: (reason: StreamingError) => void): () => void {
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Stops accepting appends, flushes and acknowledges what was accepted, releases the writer,
   * then tells the streams on this WAL why (default: the channel is no longer here).
   */
  async close(reason?: StreamingError): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.vchannels.close(
      new StreamingError(
        'CHANNEL_FENCED',
        `pchannel ${this.name} at term ${this.term} is closed on this node`,
      ),
    );
    if (this.tickTimer !== undefined) clearInterval(this.tickTimer);
    this.listeners.clear();
    if (this.announcedAboveLog) {
      // Store a tick above every announced one, so the next owner starts above them too and
      // consumers' watermarks never step back across a move, whatever the owners' clocks say.
      // A fenced or failed writer refuses it; then the move was not planned, and what remains
      // is the skew between the clocks against the time the move took.
      await this.writer
        .append(new Uint8Array(0), {
          properties: {
            [PROP.timeTick]: this.ticks.next().toString(),
            [PROP.type]: 'tick',
            [PROP.term]: this.termText,
          },
        })
        .catch(() => undefined);
    }
    await this.writer.close().catch(() => undefined);
    const why =
      reason ??
      new StreamingError(
        'CHANNEL_NOT_EXIST',
        `pchannel ${this.name} at term ${this.term} moved away from this node`,
      );
    for (const listener of this.closeListeners) listener(why);
    this.closeListeners.clear();
  }
}

/** The highest time tick stored in the log (0 for an empty log): that of its last entry. */
async function lastTimeTick(log: LogHandle, signal?: AbortSignal): Promise<bigint> {
  const segments = await log.listSegments({ ...(signal ? { signal } : {}) });
  for (let i = segments.length - 1; i >= 0; i--) {
    const seg = segments[i];
    if (seg === undefined || seg.state === 'active' || seg.lastEntryId < 0) continue;
    const reader = await log.openReader({
      from: { segmentId: seg.segmentId, entryId: seg.lastEntryId },
      ...(signal ? { signal } : {}),
    });
    try {
      const entry = await reader.next();
      const tick = entry?.properties?.[PROP.timeTick];
      if (tick !== undefined) return BigInt(tick);
    } finally {
      await reader.close();
    }
  }
  return 0n;
}

/**
 * Fills `dedup` with the producer stamps of the log's last entries (returns how many it read) — at most its capacity, and
 * about `maxBytes` (segments' sizes tell entries' average size) — so that retries of messages a
 * previous owner stored but could not acknowledge are recognised here. Reads completed segments
 * only: called after the writer's open completed every segment a previous owner left.
 */
async function rebuildDedup(
  log: LogHandle,
  dedup: ProducerDedup,
  maxBytes: number,
  signal?: AbortSignal,
): Promise<number> {
  if (dedup.capacity === 0 || maxBytes === 0) return 0;
  const segments = (await log.listSegments({ ...(signal ? { signal } : {}) })).filter(
    (s) => s.state === 'completed' && s.lastEntryId >= 0,
  );
  const last = segments[segments.length - 1];
  if (last === undefined) return 0;
  // Walk back from the end until the entry or byte budget is spent.
  let from: LogPosition = { segmentId: last.segmentId, entryId: 0 };
  let entries = dedup.capacity;
  let bytes = maxBytes;
  for (let i = segments.length - 1; i >= 0 && entries > 0 && bytes > 0; i--) {
    const seg = segments[i] as (typeof segments)[number];
    const count = seg.lastEntryId + 1;
    const perEntry = Math.max(1, seg.sizeBytes / count);
    const take = Math.min(count, entries, Math.ceil(bytes / perEntry));
    from = { segmentId: seg.segmentId, entryId: count - take };
    entries -= take;
    bytes -= take * perEntry;
  }
  const end = { segmentId: last.segmentId, entryId: last.lastEntryId };
  let reader: LogReader;
  try {
    reader = await log.openReader({ from, ...(signal ? { signal } : {}) });
  } catch (err) {
    // Truncation reached into the tail (it may cut a segment): what is left of it is the tail.
    if (!(err instanceof TruncatedError)) throw err;
    reader = await log.openReader({ from: 'earliest', ...(signal ? { signal } : {}) });
  }
  let scanned = 0;
  // The rest of a frame stamped on its first message: the `left` entries right after it. A
  // frame is stored contiguously; a frame cut short (its writer failed, its segment was
  // completed) ends where the next entry is anything else, which then belongs to nobody's run.
  let run = { producer: '', next: 0, left: 0, segmentId: -1, entryId: -1 };
  try {
    for (;;) {
      const entry = await reader.next();
      if (entry === undefined) return scanned;
      scanned++;
      const props = entry.properties;
      const { segmentId, entryId } = entry.position;
      const inRun = run.left > 0 && segmentId === run.segmentId && entryId === run.entryId;
      if (!inRun) run.left = 0;
      if (props?.[PROP.type] === 'data') {
        const stamp = parseProducerStamp(props[PROP.producer]);
        let producer: string | undefined;
        let sequence = 0;
        if (stamp !== undefined) {
          producer = stamp.producer;
          sequence = stamp.sequence;
          run = {
            producer,
            next: sequence + 1,
            left: stamp.count - 1,
            segmentId,
            entryId: entryId + 1,
          };
        } else if (inRun) {
          producer = run.producer;
          sequence = run.next++;
          run.left--;
          run.entryId = entryId + 1;
        }
        if (producer !== undefined) {
          const tick = BigInt(props[PROP.timeTick] ?? '0');
          const id = entry.position;
          dedup.remember(producer, sequence, { id, timeTick: tick, lastConfirmedId: id });
        }
      }
      if (comparePositions(entry.position, end) >= 0) return scanned;
    }
  } finally {
    await reader.close();
  }
}
